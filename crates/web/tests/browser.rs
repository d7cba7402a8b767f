//! The console in a real headless Chromium, driven through chromedriver (Debian's `chromium`
//! and `chromium-driver`, installed by `scripts/install-test-deps.sh`). Where Chromium is
//! absent the test says so and skips, except under CI (`CI=true`), where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use accessrail_store::Store;
use common::{KEY, TOKEN, start};
use fantoccini::{Client, ClientBuilder, Locator};

fn find(bin: &str, candidates: &[&str]) -> Option<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(bin))
                    .find(|p| p.exists())
            })
        })
}

fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../out/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

async fn text(c: &Client) -> String {
    text_of(c, "body").await
}

/// The visible text of the first element matching `css`.
async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the page shows `needle` (a form post navigates asynchronously).
async fn wait_for(c: &Client, needle: &str) -> String {
    let mut last = String::new();
    for _ in 0..400 {
        if let Ok(el) = c.find(Locator::Css("body")).await
            && let Ok(t) = el.text().await
        {
            if t.contains(needle) {
                return t;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at = c
        .current_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_default();
    panic!("the page at {at} never showed {needle:?}; it shows:\n{last}");
}

async fn fill(c: &Client, css: &str, value: &str) {
    let el = c.find(Locator::Css(css)).await.unwrap();
    el.clear().await.unwrap();
    el.send_keys(value).await.unwrap();
}

/// Clicks something that loads a new page and waits until the new document has loaded (a
/// marker set on the old page is gone and the new one is complete).
async fn click(c: &Client, css: &str) {
    mark(c).await;
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    settle(c).await;
}

async fn click_link(c: &Client, text: &str) {
    mark(c).await;
    c.find(Locator::LinkText(text))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    settle(c).await;
}

async fn mark(c: &Client) {
    c.execute("window.__accessrail_old_page = true; return true;", vec![])
        .await
        .unwrap();
}

async fn settle(c: &Client) {
    for _ in 0..800 {
        if let Ok(v) = c
            .execute(
                "return [window.__accessrail_old_page === true, document.readyState];",
                vec![],
            )
            .await
            && v[0] == serde_json::Value::Bool(false)
            && v[1] == "complete"
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the page did not load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium() {
    let chromium = find(
        "chromium",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    );
    let driver = find("chromedriver", &["/usr/bin/chromedriver"]);
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "Chromium and chromedriver are required under CI: run scripts/install-test-deps.sh"
            );
        }
        eprintln!(
            "SKIPPED console_in_headless_chromium: chromium / chromedriver not installed (scripts/install-test-deps.sh installs them)"
        );
        return;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut chromedriver = tokio::process::Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1366,900",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-quic", format!("--user-data-dir={}", profile.path().display())]
        }
    }))
    .unwrap();
    let mut client = None;
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let c = client.expect("chromedriver answers");
    let svc = start(30, 3).await;
    let url = |p: &str| format!("{}{p}", svc.base);

    // Sign in.
    c.goto(&url("/users")).await.unwrap();
    assert!(c.current_url().await.unwrap().as_str().ends_with("/login"));
    shot(&c, "01-sign-in").await;
    fill(&c, "#token", TOKEN).await;
    click(&c, "#sign-in").await;
    wait_for(&c, "Sign out").await;
    c.goto(&url("/setup")).await.unwrap();

    // The integration form: a bad key shows the error and its hint.
    fill(&c, "#base_url", &svc.sim.base_url()).await;
    fill(&c, "#email", "admin@example.com").await;
    fill(&c, "#api_key", "not-the-key").await;
    click(&c, "#test").await;
    let body = text(&c).await;
    assert!(
        body.contains("Invalid email or API key") && body.contains("no extra spaces"),
        "{body}"
    );
    shot(&c, "02-setup-bad-key").await;
    // The good key: Test, then Save.
    fill(&c, "#api_key", KEY).await;
    click(&c, "#test").await;
    wait_for(&c, "Test passed").await;
    // Save from a freshly loaded form (the key field is never filled back in).
    c.goto(&url("/setup")).await.unwrap();
    fill(&c, "#base_url", &svc.sim.base_url()).await;
    fill(&c, "#email", "admin@example.com").await;
    fill(&c, "#api_key", KEY).await;
    click(&c, "#save").await;
    let body = wait_for(&c, "Saved connection").await;
    assert!(
        body.contains("Saved connection") && body.contains("will not be shown again"),
        "{body}"
    );
    assert!(
        !c.source().await.unwrap().contains(KEY),
        "the key never reaches a page"
    );
    shot(&c, "03-setup-saved").await;

    // Run a scan and see it succeed.
    c.goto(&url("/scans")).await.unwrap();
    click(&c, "#scan-now").await;
    let mut ok = false;
    for _ in 0..300 {
        c.goto(&url("/scans")).await.unwrap();
        let t = text_of(&c, "#scans").await;
        if t.contains("succeeded") && !t.contains("running") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "a scan succeeded");
    shot(&c, "04-scans").await;

    // Find a user by email.
    let target = svc
        .sim
        .sim()
        .snapshot()
        .users
        .values()
        .find(|u| u.is_active && u.id != 1 && u.email.contains('@'))
        .unwrap()
        .clone();
    c.goto(&url("/users")).await.unwrap();
    shot(&c, "05-users").await;
    fill(&c, "#q", &target.email).await;
    click(&c, "#search").await;
    for _ in 0..200 {
        if c.current_url().await.unwrap().as_str().contains("q=") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for(&c, "of 1").await;
    let table = text_of(&c, "#users").await;
    assert!(table.contains(&target.email), "{table}");
    assert_eq!(
        table.matches('@').count(),
        1,
        "only the searched account: {table}"
    );

    // Open a group.
    c.goto(&url("/groups")).await.unwrap();
    shot(&c, "06-groups").await;
    click(&c, "#groups a").await;
    let members = text_of(&c, "#members").await;
    let g1 = svc.sim.sim().snapshot().groups[&1].clone();
    for uid in &g1.user_ids {
        let email = svc.sim.sim().snapshot().users[uid].email.clone();
        assert!(members.contains(&email), "{email} in {members}");
    }
    shot(&c, "07-group").await;

    // Add a member to the group through its confirmation page.
    let conn = svc.engine.store().connections().await.unwrap().remove(0);
    svc.engine
        .store()
        .set_provisioning(&conn.id, true)
        .await
        .unwrap();
    let newcomer = svc
        .sim
        .sim()
        .snapshot()
        .users
        .values()
        .find(|u| u.is_active && u.id != 1 && !g1.user_ids.contains(&u.id) && u.email.contains('@'))
        .unwrap()
        .clone();
    fill(&c, "#add-email", &newcomer.email).await;
    click(&c, "#add-member").await;
    wait_for(&c, "Review the plan").await;
    let plan = text_of(&c, "#plan").await;
    assert!(plan.contains("update_group/1"), "{plan}");
    click(&c, "#confirm").await;
    let results = text_of(&c, "#results").await;
    assert!(results.contains("done"), "{results}");
    assert!(
        svc.sim.sim().snapshot().groups[&1]
            .user_ids
            .contains(&newcomer.id)
    );

    // Deactivate with its confirmation, then see it in the audit page.
    let conn = svc.engine.store().connections().await.unwrap().remove(0);
    svc.engine
        .store()
        .set_provisioning(&conn.id, true)
        .await
        .unwrap();
    c.goto(&url(&format!(
        "/users?q={}",
        target.email.replace('+', "%2B")
    )))
    .await
    .unwrap();
    click_link(&c, "Deactivate").await;
    wait_for(&c, "Review the plan").await;
    let plan = text_of(&c, "#plan").await;
    assert!(
        plan.contains("update_user") && plan.contains("inactive"),
        "{plan}"
    );
    assert!(
        svc.sim.sim().snapshot().users[&target.id].is_active,
        "nothing changes before Confirm"
    );
    shot(&c, "08-confirm").await;
    click(&c, "#confirm").await;
    wait_for(&c, "See the audit log").await;
    let results = text_of(&c, "#results").await;
    assert!(results.contains("done"), "{results}");
    assert!(!svc.sim.sim().snapshot().users[&target.id].is_active);
    c.goto(&url("/audit")).await.unwrap();
    let audit = text_of(&c, "#audit").await;
    assert!(
        audit.contains(&target.email)
            && audit.contains("deactivate")
            && audit.contains("token:admin"),
        "{audit}"
    );
    shot(&c, "09-audit").await;
    c.goto(&url("/changes")).await.unwrap();
    shot(&c, "10-changes").await;

    c.close().await.unwrap();
    let _ = chromedriver.kill().await;
    svc.stop().await.unwrap();
}
