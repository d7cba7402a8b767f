//! The console in a real headless Chromium, driven through chromedriver (Debian's `chromium`
//! and `chromium-driver`, installed by `scripts/install-test-deps.sh`).
//!
//! This test binary has a harness of its own (libtest-mimic): where Chromium or chromedriver is
//! missing, the test is reported as ignored (and a SKIPPED line with the reason goes to stderr),
//! never as passed; under CI (`CI=true`) a missing Chromium fails it instead.
//! `ACCESSRAIL_CHROMIUM` and `ACCESSRAIL_CHROMEDRIVER` name the programs where they are not
//! Debian's.
//!
//! Screenshots of the pages go to `target/screenshots/` (the users list, an account's page, a
//! confirmation page, the projects list and a project's page, a reviewer's items and an access
//! review's close, the seats page at 1366 and 390 pixels wide, among others).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use accessrail_domain::project::Project;
use accessrail_engine::access::{AccessFacts, RULE_NOTE};
use accessrail_engine::{time_fmt, tokens};
use accessrail_store::Store;
use common::{KEY, Service, TOKEN, start};
use fantoccini::{Client, ClientBuilder, Locator};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use testrail_sim::{Edition, Settings, Version};

const NAME: &str = "console_in_headless_chromium";
const PROJECTS: &str = "projects_in_headless_chromium";
const REVIEWS: &str = "reviews_in_headless_chromium";
const SEATS: &str = "seats_in_headless_chromium";

/// A program: the path in `env_var` if that is set (and nothing else), or the first
/// candidate that exists, or `bin` on the PATH.
fn find(env_var: &str, bin: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return p.exists().then_some(p);
    }
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

/// Chromium and chromedriver, or why they cannot be used.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let chromium = find(
        "ACCESSRAIL_CHROMIUM",
        "chromium",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    );
    let driver = find(
        "ACCESSRAIL_CHROMEDRIVER",
        "chromedriver",
        &["/usr/bin/chromedriver"],
    );
    match (chromium, driver) {
        (Some(c), Some(d)) => Ok((c, d)),
        (c, d) => Err(format!(
            "{} not installed (scripts/install-test-deps.sh installs chromium and chromium-driver)",
            match (c, d) {
                (None, None) => "chromium and chromedriver are",
                (None, Some(_)) => "chromium is",
                _ => "chromedriver is",
            }
        )),
    }
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn main() {
    let mut args = Arguments::from_args();
    // Each test drives a Chromium of its own: one at a time, unless asked otherwise.
    args.test_threads.get_or_insert(1);
    let found = browser();
    let trials = vec![
        trial(NAME, found.clone(), console_in_headless_chromium),
        trial(PROJECTS, found.clone(), projects_in_headless_chromium),
        trial(REVIEWS, found.clone(), reviews_in_headless_chromium),
        trial(SEATS, found, seats_in_headless_chromium),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// One browser test: run where Chromium and chromedriver are found, else ignored with the
/// reason (outside CI) or failed (under CI).
fn trial<F, Fut>(name: &'static str, found: Result<(PathBuf, PathBuf), String>, run: F) -> Trial
where
    F: FnOnce(PathBuf, PathBuf) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    // Without a browser the test is listed as ignored (outside CI), so runners count it as
    // skipped; run anyway (`--ignored`), it ignores itself with the reason.
    if let Err(why) = &found
        && !under_ci()
    {
        eprintln!("SKIPPED {name}: {why}");
    }
    let ignored = found.is_err() && !under_ci();
    Trial::ignorable_test(name, move || match found {
        Ok((chromium, driver)) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| Failed::from(format!("a runtime: {e}")))?;
            rt.block_on(run(chromium, driver));
            Ok(Completion::Completed)
        }
        Err(why) if under_ci() => Err(Failed::from(format!(
            "Chromium and chromedriver are required under CI: {why}"
        ))),
        Err(why) => {
            eprintln!("SKIPPED {name}: {why}");
            Ok(Completion::ignored_with(why))
        }
    })
    .with_ignored_flag(ignored)
}

fn shots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

/// The page's width in CSS pixels against the viewport's: a page that fits has no sideways
/// scrolling.
async fn widths(c: &Client) -> (i64, i64) {
    let v = c
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    (v[0].as_i64().unwrap(), v[1].as_i64().unwrap())
}

/// Sets the viewport to `width` CSS pixels (Chromium's window has a minimum width, so the
/// device metrics are set through chromedriver's DevTools bridge).
async fn viewport(c: &Client, width: u32, height: u32) {
    c.set_window_size(width.max(800), height + 140)
        .await
        .unwrap();
    let cmd = DevTools {
        cmd: "Emulation.setDeviceMetricsOverride",
        params: serde_json::json!({
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600
        }),
    };
    c.issue_cmd(cmd).await.unwrap();
    c.refresh().await.unwrap();
    let (_, inner) = widths(c).await;
    assert_eq!(inner, i64::from(width), "the viewport is {width} px wide");
}

/// A DevTools command through chromedriver (`POST /session/{id}/goog/cdp/execute`).
#[derive(Debug)]
struct DevTools {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or("")
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(serde_json::json!({ "cmd": self.cmd, "params": self.params }).to_string()),
        )
    }
}

/// Screenshots of the current page at a laptop's and a phone's width, checking that neither
/// scrolls sideways; back to the laptop's width after.
async fn shots_at_both_widths(c: &Client, name: &str) {
    for (width, label) in [(1366u32, "1366"), (390, "390")] {
        viewport(c, width, if width > 600 { 900 } else { 844 }).await;
        let (page, inner) = widths(c).await;
        assert!(
            page <= inner,
            "{name} at {width} px scrolls sideways: the page is {page} px wide"
        );
        shot(c, &format!("{name}-{label}")).await;
    }
    viewport(c, 1366, 900).await;
}

/// As `shots_at_both_widths`, with the element `id` scrolled to the top at each width.
async fn shots_at_both_widths_from(c: &Client, name: &str, id: &str) {
    for (width, label) in [(1366u32, "1366"), (390, "390")] {
        viewport(c, width, if width > 600 { 900 } else { 844 }).await;
        c.execute(
            "document.getElementById(arguments[0]).scrollIntoView(); return true;",
            vec![serde_json::json!(id)],
        )
        .await
        .unwrap();
        let (page, inner) = widths(c).await;
        assert!(
            page <= inner,
            "{name} at {width} px scrolls sideways: the page is {page} px wide"
        );
        shot(c, &format!("{name}-{label}")).await;
    }
    viewport(c, 1366, 900).await;
}

async fn text(c: &Client) -> String {
    text_of(c, "body").await
}

/// The visible text of the first element matching `css`.
async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn exists(c: &Client, css: &str) -> bool {
    !c.find_all(Locator::Css(css)).await.unwrap().is_empty()
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

async fn value_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

/// Clicks something that loads a new page and waits until the new document has loaded (a
/// marker set on the old page is gone and the new one is complete).
async fn click(c: &Client, css: &str) {
    mark(c).await;
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
    settle(c).await;
}

async fn click_link(c: &Client, text: &str) {
    mark(c).await;
    c.find(Locator::LinkText(text))
        .await
        .unwrap_or_else(|e| panic!("a link {text:?}: {e}"))
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

async fn path(c: &Client) -> String {
    let u = c.current_url().await.unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

/// Clicks Scan now and waits on the page it leads to (which follows the scan asked for) until
/// a scan listed after the click has succeeded; returns the scans table. (Times are whole
/// seconds: a scan that started in the second of the click, before it, is not the one asked
/// for, and the worker runs another.)
async fn scan_now(c: &Client, base: &str) -> String {
    c.goto(&format!("{base}/scans")).await.unwrap();
    let listed = c
        .find_all(Locator::Css("#scans tr[id^='scan-']"))
        .await
        .unwrap()
        .len();
    click(c, "#scan-now").await;
    let asked = path(c).await;
    assert!(asked.starts_with("/scans?requested="), "{asked}");
    let mut notice = String::new();
    for _ in 0..600 {
        c.goto(&format!("{base}{asked}")).await.unwrap();
        notice = text_of(c, "#scan-notice").await;
        let number = notice
            .strip_prefix("Scan #")
            .and_then(|n| n.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok());
        if notice.contains(" succeeded") && number.is_some_and(|n| n > listed) {
            return text_of(c, "#scans").await;
        }
        assert!(!notice.contains("failed"), "{notice}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the scan asked for did not succeed: {notice}");
}

/// Chromedriver on a free port and a headless Chromium session through it, with a profile of
/// its own (kept until the returned directory is dropped).
async fn open_browser(
    chromium: &Path,
    driver: &Path,
) -> (Client, tokio::process::Child, tempfile::TempDir) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let chromedriver = tokio::process::Command::new(driver)
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
                     "--disable-quic", "--hide-scrollbars", format!("--user-data-dir={}", profile.path().display())]
        }
    }))
    .unwrap();
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return (c, chromedriver, profile),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("chromedriver does not answer");
}

async fn console_in_headless_chromium(chromium: PathBuf, driver: PathBuf) {
    let (c, mut chromedriver, _profile) = open_browser(&chromium, &driver).await;
    let svc = start(30, 3).await;
    let url = |p: &str| format!("{}{p}", svc.base);
    let store = svc.engine.store().clone();

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

    // The good key: Test, then Save without typing it again.
    fill(&c, "#api_key", KEY).await;
    click(&c, "#test").await;
    let body = wait_for(&c, "Test passed").await;
    assert!(body.contains("leave the API Key field empty"), "{body}");
    assert_eq!(
        value_of(&c, "#api_key").await,
        "",
        "the key never comes back"
    );
    assert_eq!(value_of(&c, "#email").await, "admin@example.com");
    assert!(!c.source().await.unwrap().contains(KEY));
    // The tested key waits in the store for this session, sealed.
    let session = c
        .get_named_cookie("accessrail_session")
        .await
        .unwrap()
        .value()
        .to_string();
    let kept = store
        .setup_key(&tokens::hash(&session), 0)
        .await
        .unwrap()
        .expect("the tested key is kept for Save");
    assert!(
        !kept
            .secret
            .bytes
            .windows(KEY.len())
            .any(|w| w == KEY.as_bytes()),
        "kept sealed, not in plaintext"
    );
    shot(&c, "03-setup-tested").await;
    // Another email than the one tested: the kept key is not used.
    fill(&c, "#email", "someone-else@example.com").await;
    click(&c, "#save").await;
    let body = wait_for(&c, "changed since the Test").await;
    assert!(!body.contains("Saved connection"), "{body}");
    assert!(store.connections().await.unwrap().is_empty());
    // Back to what was tested: Save with the key field left empty.
    fill(&c, "#email", "admin@example.com").await;
    assert_eq!(value_of(&c, "#api_key").await, "");
    click(&c, "#save").await;
    let body = wait_for(&c, "Saved connection").await;
    assert!(body.contains("will not be shown again"), "{body}");
    assert!(!c.source().await.unwrap().contains(KEY));
    assert_eq!(store.connections().await.unwrap().len(), 1);
    assert_eq!(
        store.setup_key(&tokens::hash(&session), 0).await.unwrap(),
        None,
        "a saved key is not kept any longer"
    );
    shot(&c, "04-setup-saved").await;

    // Scan now shows the scan asked for, running or done, then its outcome.
    c.goto(&url("/scans")).await.unwrap();
    click(&c, "#scan-now").await;
    assert!(path(&c).await.starts_with("/scans?requested="));
    let notice = text_of(&c, "#scan-notice").await;
    assert!(
        notice.contains("Scan requested")
            || notice.contains("is running")
            || notice.contains("succeeded"),
        "{notice}"
    );
    shot(&c, "05-scan-asked").await;
    scan_now(&c, &svc.base).await;
    shot(&c, "06-scans").await;

    // Admin accounts: made an administrator in TestRail, seen by a scan.
    let snapshot = svc.sim.sim().snapshot();
    let mut people = snapshot
        .users
        .values()
        .filter(|u| u.is_active && u.id != 1 && !u.is_admin && u.email.contains('@'))
        .cloned()
        .collect::<Vec<_>>();
    people.sort_by_key(|u| u.id);
    let (target, admin) = (people[0].clone(), people[1].clone());
    svc.sim.sim().with_instance(|i| {
        i.users.get_mut(&admin.id).unwrap().is_admin = true;
    });
    let scans = scan_now(&c, &svc.base).await;
    let before = scans.matches("succeeded").count();
    assert!(before >= 2, "{scans}");

    // The users list: one page, at a laptop's and a phone's width.
    c.goto(&url("/users")).await.unwrap();
    let table = text_of(&c, "#users").await;
    assert!(table.contains(&target.email), "{table}");
    shots_at_both_widths(&c, "users").await;
    // No one-click Deactivate for an administrator or for Accessrail's own account.
    for who in ["admin@example.com", admin.email.as_str()] {
        c.goto(&url(&format!("/users?q={}", who.replace('+', "%2B"))))
            .await
            .unwrap();
        let row = text_of(&c, "#users").await;
        assert!(row.contains(who), "{row}");
        assert!(!row.contains("Deactivate"), "{who}: {row}");
        assert!(row.contains("Open…"), "{who}: {row}");
    }
    // Everyone else has it.
    c.goto(&url(&format!(
        "/users?q={}",
        target.email.replace('+', "%2B")
    )))
    .await
    .unwrap();
    wait_for(&c, "of 1").await;
    let table = text_of(&c, "#users").await;
    assert!(table.contains(&target.email), "{table}");
    assert_eq!(
        table.matches('@').count(),
        1,
        "only the searched account: {table}"
    );
    assert!(table.contains("Deactivate"), "{table}");

    // An account's page, linked from the list.
    click(&c, "#users a.user-link").await;
    assert_eq!(path(&c).await, format!("/users/{}", target.id));
    let page = text(&c).await;
    for part in [
        target.email.as_str(),
        "Account",
        "Matched identity",
        "Groups",
        "Changes",
        "Audit log",
        &format!("#{}", target.id),
    ] {
        assert!(page.contains(part), "{part} on the account's page:\n{page}");
    }
    for gid in &target.group_ids {
        assert!(
            exists(&c, &format!("#groups a[href='/groups/{gid}']")).await,
            "group {gid} listed"
        );
    }
    shots_at_both_widths(&c, "user").await;

    // Read-only until provisioning is on.
    let conn = store.connections().await.unwrap().remove(0);
    store.set_provisioning(&conn.id, true).await.unwrap();

    // The connection's own account: a plain warning and an extra confirmation, which the
    // server checks too.
    c.goto(&url("/users/1")).await.unwrap();
    assert!(
        text_of(&c, "#guard").await.contains("locks Accessrail out"),
        "the account's page warns"
    );
    click(&c, "#toggle-active").await;
    wait_for(&c, "Review the plan").await;
    let caution = text_of(&c, "#caution-own_account").await;
    assert!(
        caution.contains("locks Accessrail out of TestRail"),
        "{caution}"
    );
    assert!(exists(&c, "#acknowledge").await);
    shots_at_both_widths(&c, "confirm").await;
    // The box is required by the form; without it (the attribute taken away), the server
    // refuses and nothing changes.
    c.execute(
        "document.getElementById('acknowledge').removeAttribute('required'); return true;",
        vec![],
    )
    .await
    .unwrap();
    click(&c, "#confirm").await;
    let body = wait_for(&c, "Not applied").await;
    assert!(body.contains("confirmation box"), "{body}");
    assert!(svc.sim.sim().snapshot().users[&1].is_active);
    assert!(exists(&c, "#back").await, "a way back");

    // An administrator: warned, and deactivated once the box is ticked.
    c.goto(&url(&format!("/users/{}", admin.id))).await.unwrap();
    click(&c, "#toggle-active").await;
    wait_for(&c, "Review the plan").await;
    assert!(
        text_of(&c, "#caution-administrator")
            .await
            .contains("TestRail administrator")
    );
    assert!(!exists(&c, "#caution-own_account").await);
    c.find(Locator::Css("#acknowledge"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(&c, "#confirm").await;
    wait_for(&c, "See the audit log").await;
    assert!(text_of(&c, "#results").await.contains("done"));
    assert!(!svc.sim.sim().snapshot().users[&admin.id].is_active);

    // An ordinary deactivation from the list: no extra box.
    c.goto(&url(&format!(
        "/users?q={}",
        target.email.replace('+', "%2B")
    )))
    .await
    .unwrap();
    click_link(&c, "Deactivate").await;
    wait_for(&c, "Review the plan").await;
    assert!(!exists(&c, "#acknowledge").await);
    let plan = text_of(&c, "#plan").await;
    assert!(
        plan.contains("update user") || plan.contains("deactivate"),
        "{plan}"
    );
    assert!(
        svc.sim.sim().snapshot().users[&target.id].is_active,
        "nothing changes before Confirm"
    );
    click(&c, "#confirm").await;
    wait_for(&c, "See the audit log").await;
    assert!(text_of(&c, "#results").await.contains("done"));
    assert!(!svc.sim.sim().snapshot().users[&target.id].is_active);
    // Back leads to the account, whose page now has its change and audit entry.
    click(&c, "#back").await;
    assert_eq!(path(&c).await, format!("/users/{}", target.id));
    let history = text_of(&c, "#account-changes").await;
    assert!(history.contains("account deactivated"), "{history}");
    let audit = text_of(&c, "#account-audit").await;
    assert!(
        audit.contains("deactivate") && audit.contains("done"),
        "{audit}"
    );
    shots_at_both_widths(&c, "user-history").await;

    // Create a user from the console, with a role and a group.
    let roles = svc.sim.sim().snapshot().roles.clone();
    let role = roles
        .iter()
        .find(|r| !r.is_default)
        .or_else(|| roles.first())
        .unwrap()
        .name
        .clone();
    let g1 = svc.sim.sim().snapshot().groups[&1].clone();
    c.goto(&url("/users")).await.unwrap();
    click(&c, "#create-user").await;
    fill(&c, "#new-name", "Nova Newcomer").await;
    fill(&c, "#new-email", "nova.newcomer@example.com").await;
    c.find(Locator::Css(&format!("#new-role option[value='{role}']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("#new-groups input[value='1']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    shot(&c, "07-create-user-form").await;
    click(&c, "#plan-create").await;
    wait_for(&c, "Review the plan").await;
    let plan = text_of(&c, "#plan").await;
    assert!(
        plan.contains("create user") && plan.contains("nova.newcomer@example.com"),
        "{plan}"
    );
    assert!(
        plan.contains(&role) && plan.contains(g1.name.as_str()),
        "{plan}"
    );
    shot(&c, "08-create-user-plan").await;
    click(&c, "#confirm").await;
    wait_for(&c, "See the audit log").await;
    assert!(text_of(&c, "#results").await.contains("done"));
    let created = svc
        .sim
        .sim()
        .snapshot()
        .users
        .values()
        .find(|u| u.email == "nova.newcomer@example.com")
        .cloned()
        .expect("the user was created in TestRail");
    assert_eq!(created.name, "Nova Newcomer");
    assert!(
        svc.sim.sim().snapshot().groups[&1]
            .user_ids
            .contains(&created.id)
    );
    // Creating the same user again is nothing to do: no Confirm, a way back.
    c.goto(&url(
        "/provision/confirm?action=create_user&name=Nova&email=nova.newcomer%40example.com",
    ))
    .await
    .unwrap();
    wait_for(&c, "Nothing to do").await;
    assert!(!exists(&c, "#confirm").await, "nothing to confirm");
    shot(&c, "12-nothing-to-do").await;
    click(&c, "#back").await;
    assert_eq!(
        path(&c).await,
        format!("/users/{}", created.id),
        "back to the account that exists"
    );

    // Change the new user's role from its page.
    let other_role = roles.iter().find(|r| r.name != role).unwrap().name.clone();
    c.goto(&url(&format!("/users/{}", created.id)))
        .await
        .unwrap();
    c.find(Locator::Css(&format!(
        "#new-role option[value='{other_role}']"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    click(&c, "#change-role").await;
    wait_for(&c, "Review the plan").await;
    click(&c, "#confirm").await;
    wait_for(&c, "See the audit log").await;
    let role_id = roles.iter().find(|r| r.name == other_role).unwrap().id;
    assert_eq!(svc.sim.sim().snapshot().users[&created.id].role_id, role_id);

    // A group: its members, and a search of accounts to add.
    c.goto(&url("/groups")).await.unwrap();
    shot(&c, "09-groups").await;
    click(&c, "#groups a[href='/groups/1']").await;
    let members = text_of(&c, "#members").await;
    let g1 = svc.sim.sim().snapshot().groups[&1].clone();
    for uid in &g1.user_ids {
        let email = svc.sim.sim().snapshot().users[uid].email.clone();
        assert!(members.contains(&email), "{email} in {members}");
    }
    let newcomer = svc
        .sim
        .sim()
        .snapshot()
        .users
        .values()
        .find(|u| u.is_active && u.id != 1 && !g1.user_ids.contains(&u.id) && u.email.contains('@'))
        .unwrap()
        .clone();
    let part: String = newcomer.email.split('@').next().unwrap().to_string();
    fill(&c, "#find", &part).await;
    click(&c, "#find-account").await;
    let found = text_of(&c, "#candidates").await;
    assert!(found.contains(&newcomer.email), "{found}");
    shots_at_both_widths(&c, "group").await;
    let add = format!(
        "#candidates a[href*='email={}']",
        testrail_client::encode_query_value(&newcomer.email)
    );
    click(&c, &add).await;
    wait_for(&c, "Review the plan").await;
    assert!(text_of(&c, "#plan").await.contains("update_group/1"));
    click(&c, "#confirm").await;
    assert!(text_of(&c, "#results").await.contains("done"));
    assert!(
        svc.sim.sim().snapshot().groups[&1]
            .user_ids
            .contains(&newcomer.id)
    );
    // An unknown email: the error, and a way back to the group.
    c.goto(&url("/groups/1")).await.unwrap();
    fill(&c, "#add-email", "nobody-here@example.com").await;
    click(&c, "#add-member").await;
    let body = text(&c).await;
    assert!(body.contains("no TestRail account has the email"), "{body}");
    click(&c, "#back").await;
    assert_eq!(path(&c).await, "/groups/1");

    // Changes link to the account and to the audit entry behind them.
    c.goto(&url("/changes")).await.unwrap();
    let link = format!("#changes a[href='/users/{}']", target.id);
    assert!(exists(&c, &link).await, "the change links to the account");
    shots_at_both_widths(&c, "changes").await;
    click(&c, "#changes a[href*='#audit-']").await;
    assert!(path(&c).await.starts_with("/audit?before="));
    let fragment = c
        .current_url()
        .await
        .unwrap()
        .fragment()
        .unwrap()
        .to_string();
    assert!(
        exists(&c, &format!("#{fragment}")).await,
        "the entry is on the page"
    );
    // The audit log links to the account.
    c.goto(&url("/audit")).await.unwrap();
    let audit = text_of(&c, "#audit").await;
    assert!(
        audit.contains(&target.email)
            && audit.contains("deactivate")
            && audit.contains("token:admin"),
        "{audit}"
    );
    shots_at_both_widths(&c, "audit").await;
    let to_account = format!(
        "#audit a[href='/users/find?email={}']",
        testrail_client::encode_query_value(&target.email)
    );
    click(&c, &to_account).await;
    assert_eq!(path(&c).await, format!("/users/{}", target.id));

    // Scans are numbered on their own: provisioning in between leaves no gap.
    let scans = scan_now(&c, &svc.base).await;
    let n = scans.matches("succeeded").count();
    assert_eq!(n, before + 1, "{scans}");
    for k in 1..=n {
        assert!(scans.contains(&format!("#{k} ")), "#{k} in {scans}");
    }
    assert!(!scans.contains(&format!("#{} ", n + 1)), "no gaps: {scans}");

    c.close().await.unwrap();
    let _ = chromedriver.kill().await;
    svc.stop().await.unwrap();
}

/// Signs in with the admin token (the console leads to its sign-in form first).
async fn sign_in(c: &Client, base: &str) {
    c.goto(&format!("{base}/users")).await.unwrap();
    assert!(c.current_url().await.unwrap().as_str().ends_with("/login"));
    fill(c, "#token", TOKEN).await;
    click(c, "#sign-in").await;
    wait_for(c, "Sign out").await;
}

/// The texts of the elements matching `css`.
async fn texts_of(c: &Client, css: &str) -> Vec<String> {
    let mut out = vec![];
    for el in c.find_all(Locator::Css(css)).await.unwrap() {
        out.push(el.text().await.unwrap());
    }
    out
}

/// Scans through the API until every project in the store is as `seen` expects (a scan asked
/// for right after another may be answered by that one, which read TestRail before a change).
async fn scan_until(svc: &Service, connection: &str, seen: impl Fn(&Project) -> bool) {
    for _ in 0..5 {
        let scan = svc.scan().await;
        assert_eq!(scan["status"], "succeeded", "{scan}");
        let projects = svc.engine.store().projects(connection, None).await.unwrap();
        if !projects.is_empty() && projects.iter().all(&seen) {
            return;
        }
    }
    panic!("no scan saw the change");
}

/// Projects and who can reach them, on an Enterprise TestRail (per-user project roles
/// reported): the list against the store, one project's accounts with their sources, and an
/// account's project access.
async fn projects_in_headless_chromium(chromium: PathBuf, driver: PathBuf) {
    let (c, mut chromedriver, _profile) = open_browser(&chromium, &driver).await;
    let svc = start(30, 3).await;
    let url = |p: &str| format!("{}{p}", svc.base);
    let sim = svc.sim.sim();
    sim.set_settings(Settings {
        edition: Edition::Enterprise,
        ..sim.settings()
    });
    svc.connect().await;
    let scan = svc.scan().await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    let store = svc.engine.store().clone();
    let conn = store.connections().await.unwrap().remove(0);
    let projects = store.projects(&conn.id, None).await.unwrap();
    assert!(!projects.is_empty(), "the scan read the seeded projects");
    assert_eq!(projects.len(), sim.snapshot().projects.len());
    let facts = AccessFacts::load(&svc.engine, &conn, None).await.unwrap();
    let views = facts.projects();

    // Signed out, the projects lead to the sign-in form.
    c.goto(&url("/projects")).await.unwrap();
    assert!(c.current_url().await.unwrap().as_str().ends_with("/login"));
    sign_in(&c, &svc.base).await;

    // The projects list, from the navigation: one row per project the store has.
    click(&c, "nav a[href='/projects']").await;
    assert_eq!(path(&c).await, "/projects");
    assert!(exists(&c, "nav a.on[href='/projects']").await);
    let rows = texts_of(&c, "#projects tr.project-row").await;
    assert_eq!(rows.len(), projects.len(), "{rows:?}");
    for p in &views {
        let row = text_of(&c, &format!("#projects tr[data-project='{}']", p.id)).await;
        assert!(row.contains(&p.name), "{} in {row}", p.name);
        assert!(
            exists(
                &c,
                &format!(
                    "#projects tr[data-project='{}'] a[href='/projects/{}']",
                    p.id, p.id
                )
            )
            .await
        );
        assert_eq!(
            row.contains("completed"),
            p.is_completed,
            "the completed badge and status: {row}"
        );
        let default = p
            .default_role
            .clone()
            .expect("the seed gives a default role");
        assert!(row.contains(&default), "{default} in {row}");
        // Enterprise reports users' own roles: counts, not "not reported".
        let users = p.user_roles.expect("Enterprise reports user roles");
        let with_access = p.active_with_access.expect("access is known");
        let cells = texts_of(&c, &format!("#projects tr[data-project='{}'] td.num", p.id)).await;
        assert_eq!(
            cells,
            vec![
                p.group_roles.to_string(),
                users.to_string(),
                with_access.to_string()
            ],
            "{row}"
        );
        assert!(
            row.contains("known") && !row.contains("not reported"),
            "{row}"
        );
    }
    assert!(
        views.iter().any(|p| p.is_completed),
        "the seed completes some project"
    );
    assert!(text_of(&c, "#rule-note").await.contains(RULE_NOTE));
    assert!(!exists(&c, ".caveat").await, "no caveat on Enterprise");
    shots_at_both_widths(&c, "projects").await;

    // One project: its facts and the active accounts that can reach it, each with a source.
    let p = views
        .iter()
        .filter(|p| p.active_with_access.unwrap_or(0) > 0)
        .max_by_key(|p| (p.group_roles, std::cmp::Reverse(p.id)))
        .unwrap()
        .clone();
    let project = facts.project(&p.id.to_string()).unwrap();
    click(&c, &format!("#projects a[href='/projects/{}']", p.id)).await;
    assert_eq!(path(&c).await, format!("/projects/{}", p.id));
    assert!(text_of(&c, "#project-heading").await.contains(&p.name));
    assert_eq!(
        text_of(&c, "#default-role").await,
        p.default_role.clone().unwrap()
    );
    let expected: Vec<_> = facts
        .for_project(project, false)
        .into_iter()
        .filter(|r| r.is_active)
        .collect();
    let shown = texts_of(&c, "#access tr.access-row").await;
    assert_eq!(shown.len(), expected.len(), "{shown:?}");
    for r in &expected {
        let row = text_of(&c, &format!("#access tr[data-account='{}']", r.account_id)).await;
        let source = text_of(
            &c,
            &format!("#access tr[data-account='{}'] td.source", r.account_id),
        )
        .await;
        let s = r.source.as_ref().expect("known access has a source");
        assert!(source.starts_with(&s.label), "{} in {row}", s.label);
        assert_eq!(
            source.contains("(global role)"),
            s.via_global_role && s.kind != "administrator",
            "{row}"
        );
        assert!(row.contains(r.role.as_deref().unwrap()), "{row}");
        if let Some(email) = &r.email {
            assert!(row.contains(email.as_str()), "{email} in {row}");
        }
    }
    assert!(
        expected
            .iter()
            .any(|r| r.source.as_ref().is_some_and(|s| s.kind != "administrator")),
        "someone reaches {} other than as an administrator",
        p.name
    );
    assert!(text_of(&c, "#rule-note").await.contains(RULE_NOTE));
    shots_at_both_widths(&c, "project").await;
    // Everyone: accounts without access and inactive ones too.
    click(&c, "#toggle-everyone").await;
    assert_eq!(path(&c).await, format!("/projects/{}?all=1", p.id));
    let everyone = facts.for_project(project, true);
    assert_eq!(everyone.len(), facts.accounts.len());
    assert_eq!(
        texts_of(&c, "#access tr.access-row").await.len(),
        everyone.len()
    );
    if let Some(r) = everyone.iter().find(|r| r.can_access == Some(false)) {
        let row = text_of(&c, &format!("#access tr[data-account='{}']", r.account_id)).await;
        assert!(row.contains("no access"), "{row}");
    }
    click(&c, "#toggle-everyone").await;
    assert_eq!(path(&c).await, format!("/projects/{}", p.id));
    // A completed project: the badge and when.
    let done = views.iter().find(|p| p.is_completed).unwrap();
    c.goto(&url(&format!("/projects/{}", done.id)))
        .await
        .unwrap();
    assert!(text_of(&c, "#project-heading").await.contains("completed"));
    let facts_card = text_of(&c, "#project").await;
    let when = time_fmt::short(done.completed_on.expect("the seed dates completions"));
    assert!(
        facts_card.contains("completed") && facts_card.contains(&when),
        "{when} in {facts_card}"
    );
    // An unknown project.
    c.goto(&url("/projects/987654")).await.unwrap();
    let body = text(&c).await;
    assert!(
        body.contains("No such project") && body.contains("#987654"),
        "{body}"
    );

    // An account's page, from the project: its access to every project, with the role there.
    c.goto(&url(&format!("/projects/{}", p.id))).await.unwrap();
    let person = expected
        .iter()
        .find(|r| r.source.as_ref().is_some_and(|s| s.kind != "administrator"))
        .unwrap()
        .clone();
    click(
        &c,
        &format!("#access a[href='/users/{}']", person.account_id),
    )
    .await;
    assert_eq!(path(&c).await, format!("/users/{}", person.account_id));
    assert!(
        text_of(&c, "#project-access-heading")
            .await
            .contains("Project access")
    );
    let account = facts
        .accounts
        .iter()
        .find(|a| a.id == person.account_id)
        .unwrap();
    let access = facts.for_account(account);
    assert_eq!(
        texts_of(&c, "#account-projects tr.access-row").await.len(),
        projects.len()
    );
    let here = text_of(
        &c,
        &format!("#account-projects tr[data-project='{}']", p.id),
    )
    .await;
    assert!(
        here.contains(person.role.as_deref().unwrap())
            && here.contains(&person.source.as_ref().unwrap().label),
        "{here}"
    );
    assert!(
        exists(
            &c,
            &format!("#account-projects a[href='/projects/{}']", p.id)
        )
        .await
    );
    for r in &access {
        let css = format!("#account-projects tr[data-project='{}']", r.project_id);
        let row = text_of(&c, &css).await;
        match r.can_access {
            Some(false) => {
                assert!(row.contains("no access"), "{row}");
                assert!(
                    exists(&c, &format!("{css}.muted")).await,
                    "no access is muted: {row}"
                );
            }
            Some(true) => assert!(row.contains(r.role.as_deref().unwrap()), "{row}"),
            None => assert!(row.contains("unknown"), "{row}"),
        }
    }
    assert!(
        text_of(&c, "#project-access #rule-note")
            .await
            .contains(RULE_NOTE)
    );
    shots_at_both_widths(&c, "user-projects").await;
    // An active account kept out of a project (a restricted project's default is No Access):
    // "no access", muted, on its page.
    let (kept_out, closed) = facts
        .accounts
        .iter()
        .filter(|a| a.is_active)
        .find_map(|a| {
            facts
                .for_account(a)
                .into_iter()
                .find(|r| r.can_access == Some(false))
                .map(|r| (a.id, r.project_id))
        })
        .expect("the seed restricts some project");
    c.goto(&url(&format!("/users/{kept_out}"))).await.unwrap();
    let css = format!("#account-projects tr[data-project='{closed}']");
    assert!(text_of(&c, &css).await.contains("no access"));
    assert!(exists(&c, &format!("{css}.muted")).await);

    // Professional: users' own project roles are not reported, and every page says so.
    sim.set_settings(Settings {
        edition: Edition::Professional,
        ..sim.settings()
    });
    scan_until(&svc, &conn.id, |p| {
        p.access.as_ref().is_some_and(|a| a.users.is_none())
    })
    .await;
    c.goto(&url("/projects")).await.unwrap();
    let table = text_of(&c, "#projects").await;
    assert_eq!(
        table.matches("not reported").count(),
        2 * projects.len(),
        "user roles and the access column say so: {table}"
    );
    assert!(text_of(&c, ".caveat").await.contains("Professional"));
    shots_at_both_widths(&c, "projects-professional").await;
    c.goto(&url(&format!("/projects/{}", p.id))).await.unwrap();
    assert!(text_of(&c, ".caveat").await.contains("Professional"));
    assert!(text_of(&c, "#access").await.contains("would win"));
    c.goto(&url(&format!("/users/{}", person.account_id)))
        .await
        .unwrap();
    assert!(
        text_of(&c, "#project-access .caveat")
            .await
            .contains("Professional")
    );

    // Before 7.3: no project access at all; nothing is guessed.
    sim.set_settings(Settings {
        testrail_version: Version(7, 2, 0),
        ..sim.settings()
    });
    scan_until(&svc, &conn.id, |p| p.access.is_none()).await;
    c.goto(&url("/projects")).await.unwrap();
    let table = text_of(&c, "#projects").await;
    assert_eq!(
        table.matches("unknown (before 7.3)").count(),
        projects.len(),
        "{table}"
    );
    assert!(
        texts_of(&c, ".caveat")
            .await
            .iter()
            .any(|t| t.contains("before 7.3"))
    );
    c.goto(&url(&format!("/users/{}", person.account_id)))
        .await
        .unwrap();
    let rows = texts_of(&c, "#account-projects tr.access-row").await;
    assert!(
        rows.iter().all(|r| r.contains("unknown")),
        "a non-administrator's access is unknown: {rows:?}"
    );
    shots_at_both_widths(&c, "user-projects-before-7-3").await;

    c.close().await.unwrap();
    let _ = chromedriver.kill().await;
    svc.stop().await.unwrap();
}

/// Seats and activity evidence: before any evidence scan the page says how to run one; after
/// one on the simulator (which has no artefacts), every active account is listed without
/// recorded activity, the figures are `evidence::seats`'s, and an account's page says so.
async fn seats_in_headless_chromium(chromium: PathBuf, driver: PathBuf) {
    let (c, mut chromedriver, _profile) = open_browser(&chromium, &driver).await;
    let svc = start(30, 3).await;
    let url = |p: &str| format!("{}{p}", svc.base);
    svc.connect().await;
    let scan = svc.scan().await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    let store = svc.engine.store().clone();
    let conn = store.connections().await.unwrap().remove(0);

    // Signed out, the seats lead to the sign-in form.
    c.goto(&url("/seats")).await.unwrap();
    assert!(c.current_url().await.unwrap().as_str().ends_with("/login"));
    sign_in(&c, &svc.base).await;

    // No evidence scan yet: the page says so and names the command.
    click(&c, "nav a[href='/seats']").await;
    assert_eq!(path(&c).await, "/seats");
    assert!(exists(&c, "nav a.on[href='/seats']").await);
    assert!(
        text_of(&c, "#no-evidence")
            .await
            .contains("No evidence scan yet")
    );
    assert_eq!(
        text_of(&c, "#scan-command").await,
        "accessrail evidence scan"
    );
    assert!(!exists(&c, "#without-list").await);
    shots_at_both_widths(&c, "seats-no-evidence").await;
    let first = accessrail_engine::report::users(&svc.engine, &conn)
        .await
        .unwrap()[0]
        .id;
    c.goto(&url(&format!("/users/{first}"))).await.unwrap();
    assert_eq!(
        text_of(&c, "#activity").await,
        "No activity evidence yet. Seats"
    );

    // An evidence scan of the simulator: no artefacts, so no recorded activity.
    let out = accessrail_engine::evidence::scan(&svc.engine, &conn, None)
        .await
        .unwrap();
    let from = accessrail_engine::evidence::covered_from(&svc.engine, &conn)
        .await
        .unwrap()
        .expect("covered after a good evidence scan");
    let day = |t: i64| time_fmt::rfc3339(t)[..10].to_string();
    let report = accessrail_engine::evidence::seats(&svc.engine, &conn, Some(12.5), Some(1))
        .await
        .unwrap();
    let active: Vec<u64> = accessrail_engine::report::users(&svc.engine, &conn)
        .await
        .unwrap()
        .into_iter()
        .filter(|u| u.is_active)
        .map(|u| u.id)
        .collect();
    assert!(!active.is_empty());
    assert_eq!(report.active_seats, active.len() as u64);
    assert_eq!(report.without_evidence_90_days, Some(report.active_seats));

    // The seat price and billing day through the form.
    c.goto(&url("/seats")).await.unwrap();
    fill(&c, "#seat_price", "12.5").await;
    fill(&c, "#billing_day", "1").await;
    click(&c, "#show-savings").await;
    wait_for(&c, "per month").await;
    let figure = |id: &'static str| {
        let c = c.clone();
        async move { text_of(&c, &format!("#{id} td.figure")).await }
    };
    let n = |v: Option<u64>| {
        v.map_or("not covered by the evidence yet".to_string(), |n| {
            n.to_string()
        })
    };
    assert_eq!(
        figure("active-seats").await,
        report.active_seats.to_string()
    );
    assert_eq!(
        figure("without-30").await,
        n(report.without_evidence_30_days)
    );
    assert_eq!(
        figure("without-60").await,
        n(report.without_evidence_60_days)
    );
    assert_eq!(
        figure("without-90").await,
        n(report.without_evidence_90_days)
    );
    assert_eq!(
        figure("leavers-active").await,
        report.leavers_active.to_string()
    );
    assert_eq!(
        figure("automation").await,
        report.automation_accounts.to_string()
    );
    assert_eq!(
        text_of(&c, "#saving-leavers").await,
        format!("{:.2} per month", report.monthly_saving_leavers.unwrap())
    );
    assert!(text_of(&c, "#saving-both").await.starts_with(&format!(
        "{:.2} per month",
        report.monthly_saving_leavers_and_idle_90.unwrap()
    )));
    assert!(
        text_of(&c, "#billing-end")
            .await
            .contains(&day(report.billing_period_end.unwrap()))
    );
    assert!(
        text_of(&c, "#billing-note")
            .await
            .contains("TestRail bills every user active")
    );
    assert!(text_of(&c, "#coverage").await.contains(&day(from)));

    // Every active account is listed, with no recorded activity since the coverage began.
    let rows = texts_of(&c, "#without-list tr.without-row").await;
    assert_eq!(rows.len(), active.len(), "{rows:?}");
    for id in &active {
        let row = text_of(&c, &format!("#without-list tr[data-account='{id}']")).await;
        assert!(row.contains(&format!("none since {}", day(from))), "{row}");
        assert!(
            exists(
                &c,
                &format!("#without-list tr[data-account='{id}'] a[href='/users/{id}']")
            )
            .await
        );
    }
    // The evidence scan, as run.
    let run = text_of(&c, &format!("#evidence-run-{}", out.run_id)).await;
    assert!(run.contains("succeeded"), "{run}");
    assert!(
        run.contains(&format!("{} ({})", out.requests, out.estimate)),
        "{run}"
    );
    let body = text(&c).await.to_lowercase();
    assert!(
        !body.contains("inactive") && !body.contains("last login"),
        "{body}"
    );
    shots_at_both_widths(&c, "seats").await;
    shots_at_both_widths_from(&c, "seats-runs", "without-note").await;

    // An account's page says it has no recorded activity.
    let id = active[0];
    click(&c, &format!("#without-list a[href='/users/{id}']")).await;
    assert_eq!(path(&c).await, format!("/users/{id}"));
    assert!(text_of(&c, "#activity").await.starts_with(&format!(
        "No recorded activity in results, runs, plans or cases since {}",
        day(from)
    )),);
    shots_at_both_widths(&c, "user-activity").await;

    // Offboarding: a run with three tests assigned to a person; the deactivate confirmation
    // says so and leads to the hand-over, which applies only the plan it showed.
    let snap = svc.sim.sim().snapshot();
    let mut people = snap
        .users
        .values()
        .filter(|u| u.is_active && !u.is_admin && u.email.contains('@'));
    let (leaver, colleague) = (
        people.next().unwrap().clone(),
        people.next().unwrap().clone(),
    );
    let project = snap.projects.values().find(|p| !p.is_completed).unwrap().id;
    let sim_control = |method: reqwest::Method, p: String, body: serde_json::Value| {
        let http = svc.http.clone();
        let base = svc.sim.base_url();
        async move {
            let r = http
                .request(method, format!("{base}{p}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let made = sim_control(
        reqwest::Method::POST,
        "/__sim/runs".into(),
        serde_json::json!({"project_id": project, "user_id": leaver.id, "name": "Release 4.2 regression", "assignedto_id": leaver.id, "tests": 3, "tests_assignedto_id": leaver.id}),
    )
    .await;
    let run_id = made["id"].as_u64().unwrap();
    store.set_provisioning(&conn.id, true).await.unwrap();
    c.goto(&url(&format!("/users/{}", leaver.id)))
        .await
        .unwrap();
    click(&c, "#toggle-active").await;
    wait_for(&c, "Still assigned to them").await;
    assert!(
        path(&c)
            .await
            .starts_with("/provision/confirm?action=deactivate")
    );
    let work = text_of(&c, "#open-work").await;
    assert!(
        work.contains("1 open run, 3 untested or retest tests"),
        "{work}"
    );
    shots_at_both_widths(&c, "deactivate-open-work").await;
    click(&c, "#hand-over").await;
    wait_for(&c, "Hand the work over").await;
    assert_eq!(path(&c).await, format!("/users/{}/offboard", leaver.id));
    assert_eq!(text_of(&c, "#runs-count").await, "1");
    assert_eq!(text_of(&c, "#tests-count").await, "3");
    assert!(
        text_of(&c, "#work-runs")
            .await
            .contains("Release 4.2 regression")
    );
    assert!(exists(&c, "#stays-assigned").await);
    fill(&c, "#reassign-to", &colleague.email).await;
    click(&c, "#plan-handover").await;
    wait_for(&c, "hand over, then deactivate").await;
    let plan = text_of(&c, "#plan").await;
    for want in [
        "reassign run",
        "reassign tests",
        "deactivate",
        &colleague.email,
    ] {
        assert!(plan.contains(want), "{want}: {plan}");
    }
    assert!(!exists(&c, "#stays-assigned").await);
    shots_at_both_widths(&c, "offboard-plan").await;
    // TestRail changes after the page was read: the confirmation shows the new plan instead.
    sim_control(
        reqwest::Method::PATCH,
        format!("/__sim/runs/{run_id}"),
        serde_json::json!({"assignedto_id": null}),
    )
    .await;
    click(&c, "#confirm").await;
    wait_for(&c, "The plan changed").await;
    assert!(svc.sim.sim().snapshot().users[&leaver.id].is_active);
    assert_eq!(text_of(&c, "#runs-count").await, "0");
    click(&c, "#confirm").await;
    wait_for(&c, "Offboarded").await;
    let results = text_of(&c, "#results").await;
    assert!(results.contains("done"), "{results}");
    let now = svc.sim.sim().snapshot();
    assert!(!now.users[&leaver.id].is_active);
    for t in now.artefacts.tests.iter().filter(|t| t.run_id == run_id) {
        assert_eq!(t.assignedto_id, Some(colleague.id), "test {}", t.id);
    }
    shots_at_both_widths(&c, "offboard-result").await;

    c.close().await.unwrap();
    let _ = chromedriver.kill().await;
    svc.stop().await.unwrap();
}

const MIA: &str = "mia@corp.example";
const MIA_TOKEN: &str = "ar_reviewer_token_for_mia";
const OTHER_MANAGER: &str = "olga@corp.example";
const FALLBACK: &str = "audit@corp.example";

/// A client that does not follow redirects, for the status a page answers with.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A console request as the browser's session (its cookie), without following redirects.
async fn as_session(c: &Client, base: &str, p: &str) -> reqwest::Response {
    let session = c
        .get_named_cookie("accessrail_session")
        .await
        .unwrap()
        .value()
        .to_string();
    no_redirects()
        .get(format!("{base}{p}"))
        .header("Cookie", format!("accessrail_session={session}"))
        .send()
        .await
        .unwrap()
}

/// The `data-email` of every element matching `css`, in lower case.
async fn emails_of(c: &Client, css: &str) -> Vec<String> {
    let mut out = vec![];
    for el in c.find_all(Locator::Css(css)).await.unwrap() {
        out.push(el.attr("data-email").await.unwrap().unwrap().to_lowercase());
    }
    out.sort();
    out
}

async fn choose(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// An access review in the console: a reviewer (the manager of three people) signs in with a
/// reviewer token and sees only their items, decides (a revoke without a comment is refused and
/// nothing stored), keeps the rest after a confirmation and submits; every other page and the
/// API refuse them. An administrator sees the progress per reviewer, approves, closes through
/// the dry run (the revoked account is deactivated in TestRail) and exports the evidence.
async fn reviews_in_headless_chromium(chromium: PathBuf, driver: PathBuf) {
    use accessrail_domain::review::{Every, Scope, Undecided};
    use accessrail_engine::identities::{self, Format};
    use accessrail_engine::reviews::{self, StartOptions};

    let (c, mut chromedriver, _profile) = open_browser(&chromium, &driver).await;
    let svc = start(30, 3).await;
    let url = |p: &str| format!("{}{p}", svc.base);
    svc.connect().await;
    let scan = svc.scan().await;
    assert_eq!(scan["status"], "succeeded", "{scan}");
    let store = svc.engine.store().clone();
    let conn = store.connections().await.unwrap().remove(0);
    store.set_provisioning(&conn.id, true).await.unwrap();

    // Ana, Bo and Cy report to Mia (not a TestRail user); Dee to someone else; everyone else
    // matches nobody and goes to the fallback reviewer.
    let mut people = svc
        .sim
        .sim()
        .snapshot()
        .users
        .values()
        .filter(|u| u.is_active && u.id != 1 && !u.is_admin && u.email.contains('@'))
        .cloned()
        .collect::<Vec<_>>();
    people.sort_by_key(|u| u.id);
    let (ana, bo, cy, dee) = (
        people[0].clone(),
        people[1].clone(),
        people[2].clone(),
        people[3].clone(),
    );
    let csv = format!(
        "id,name,email,other_emails,status,manager_email\n\
         1,Ana,{},,active,{MIA}\n2,Bo,{},,active,{MIA}\n3,Cy,{},,active,{MIA}\n4,Dee,{},,active,{OTHER_MANAGER}\n",
        ana.email, bo.email, cy.email, dee.email
    );
    let parsed = identities::parse(csv.as_bytes(), Format::Csv).unwrap();
    store
        .import_identities(parsed, true, svc.engine.now())
        .await
        .unwrap();
    let started = reviews::start(
        &svc.engine,
        &conn,
        StartOptions {
            scope: Scope::Active,
            fallbacks: vec![FALLBACK.into()],
            due_at: None,
            undecided: Undecided::Keep,
            every: Some(Every::Months(3)),
        },
        "cli:test",
    )
    .await
    .unwrap();
    let id = started.id;
    // A second review, of administrators only: nothing of Mia's in it.
    let other = reviews::start(
        &svc.engine,
        &conn,
        StartOptions {
            scope: Scope::Admins,
            fallbacks: vec![FALLBACK.into()],
            due_at: None,
            undecided: Undecided::Keep,
            every: None,
        },
        "cli:test",
    )
    .await
    .unwrap()
    .id;
    store
        .create_reviewer_token("mia", &tokens::hash(MIA_TOKEN), MIA, svc.engine.now())
        .await
        .unwrap();
    let items = store.review_items(id, Some(MIA)).await.unwrap();
    assert_eq!(items.len(), 3, "Mia reviews her three reports");
    let number = |email: &str| {
        items
            .iter()
            .find(|i| i.email.eq_ignore_ascii_case(email))
            .unwrap_or_else(|| panic!("no item for {email}"))
            .item
    };
    let (na, nb, nc) = (number(&ana.email), number(&bo.email), number(&cy.email));
    let mias = || async { store.review_items(id, Some(MIA)).await.unwrap() };

    // (a) Mia signs in with her reviewer token and lands on her reviews.
    c.goto(&url("/login")).await.unwrap();
    fill(&c, "#token", MIA_TOKEN).await;
    click(&c, "#sign-in").await;
    assert_eq!(path(&c).await, "/reviews");
    assert!(text(&c).await.contains(&format!("reviewer {MIA}")));
    let rows = texts_of(&c, "#reviews tr.review-row").await;
    assert_eq!(rows.len(), 1, "only the review with her items: {rows:?}");
    assert!(
        rows[0].contains(&format!("Review #{id}")) && rows[0].contains("0/3"),
        "{rows:?}"
    );
    assert!(!exists(&c, &format!("#reviews tr[data-review='{other}']")).await);
    click(&c, "a.review-link").await;
    assert_eq!(path(&c).await, format!("/reviews/{id}"));
    // Only her items, each with what it had, who it is and why it is hers.
    let mut expected = vec![
        ana.email.to_lowercase(),
        bo.email.to_lowercase(),
        cy.email.to_lowercase(),
    ];
    expected.sort();
    assert_eq!(emails_of(&c, ".review-item").await, expected);
    let card = text_of(&c, &format!("#item-{na}")).await;
    for part in [
        "Active",
        "Role",
        "Groups",
        "Projects",
        "Ana",
        "manager",
        "undecided",
    ] {
        assert!(card.contains(part), "{part} in {card}");
    }
    assert!(
        text_of(&c, &format!("#item-{na} .route"))
            .await
            .contains("manager")
    );
    assert!(
        !text(&c).await.contains(&dee.email),
        "not another reviewer's item"
    );
    shots_at_both_widths(&c, "review-items").await;

    // Keep Ana.
    choose(&c, &format!("#decision-{na} option[value='keep']")).await;
    click(&c, &format!("#save-{na}")).await;
    assert!(path(&c).await.contains("done=decided"));
    assert_eq!(text_of(&c, "#flash").await, "Decision saved.");
    assert!(
        text_of(&c, &format!("#item-{na} .decision"))
            .await
            .contains("keep")
    );
    let ana_now = mias().await.into_iter().find(|i| i.item == na).unwrap();
    assert_eq!(ana_now.decision.as_deref(), Some("keep"));
    // Revoke Bo without a comment: refused where it was asked, nothing stored.
    choose(&c, &format!("#decision-{nb} option[value='revoke']")).await;
    click(&c, &format!("#save-{nb}")).await;
    let err = text_of(&c, &format!("#error-{nb}")).await;
    assert!(err.contains("comment is required"), "{err}");
    assert_eq!(
        value_of(&c, &format!("#decision-{nb}")).await,
        "revoke",
        "kept in the form"
    );
    let bo_now = mias().await.into_iter().find(|i| i.item == nb).unwrap();
    assert_eq!(bo_now.decision, None, "nothing stored");
    shot(&c, "review-decision-refused").await;
    // With a comment: deactivate.
    fill(&c, &format!("#comment-{nb}"), "left the team in May").await;
    click(&c, &format!("#save-{nb}")).await;
    assert_eq!(text_of(&c, "#flash").await, "Decision saved.");
    let bo_now = mias().await.into_iter().find(|i| i.item == nb).unwrap();
    assert_eq!(bo_now.decision.as_deref(), Some("revoke"));
    assert_eq!(bo_now.action.as_deref(), Some("deactivate"));
    assert_eq!(bo_now.comment.as_deref(), Some("left the team in May"));
    assert!(
        text_of(&c, &format!("#item-{nb} .current"))
            .await
            .contains("left the team in May")
    );
    // The filters.
    click(&c, "#show-undecided").await;
    assert_eq!(
        emails_of(&c, ".review-item").await,
        vec![cy.email.to_lowercase()]
    );
    click(&c, "#show-decided").await;
    assert_eq!(emails_of(&c, ".review-item").await.len(), 2);
    click(&c, "#show-all").await;
    // Submitting with an item undecided is refused, with the engine's reason.
    click(&c, "#submit").await;
    let flash = text_of(&c, "#flash").await;
    assert!(
        flash.contains("undecided") && flash.contains("nothing was submitted"),
        "{flash}"
    );
    assert!(store.review_submissions(id).await.unwrap().is_empty());
    // Keep the rest, after a confirmation.
    click(&c, "#keep-all").await;
    assert_eq!(path(&c).await, format!("/reviews/{id}/keep-all"));
    let body = text(&c).await;
    assert!(
        body.contains("Keep 1 undecided item?") && body.contains(&cy.email),
        "{body}"
    );
    assert_eq!(
        mias()
            .await
            .into_iter()
            .find(|i| i.item == nc)
            .unwrap()
            .decision,
        None,
        "nothing before the confirmation"
    );
    shots_at_both_widths(&c, "review-keep-all").await;
    click(&c, "#confirm").await;
    assert_eq!(text_of(&c, "#flash").await, "1 undecided item kept.");
    assert_eq!(
        mias()
            .await
            .into_iter()
            .find(|i| i.item == nc)
            .unwrap()
            .decision
            .as_deref(),
        Some("keep")
    );
    assert!(!exists(&c, "#keep-all").await, "nothing left undecided");
    // Submit.
    click(&c, "#submit").await;
    assert!(
        text_of(&c, "#flash")
            .await
            .contains("submitted for approval")
    );
    assert!(text_of(&c, "#state").await.contains("waiting for approval"));
    assert!(
        !exists(&c, "form.decide").await,
        "submitted decisions are not editable"
    );
    assert!(!exists(&c, "#submit").await);
    let subs = store.review_submissions(id).await.unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(
        (subs[0].reviewer.as_str(), subs[0].status.as_str()),
        (MIA, "submitted")
    );
    shot(&c, "review-submitted").await;

    // (b) Nothing else for a reviewer: the other pages lead back to the reviews ...
    for p in [
        "/users",
        "/groups",
        "/projects",
        "/scans",
        "/changes",
        "/audit",
        "/setup",
    ] {
        c.goto(&url(p)).await.unwrap();
        assert_eq!(path(&c).await, "/reviews", "{p}");
        let r = as_session(&c, &svc.base, p).await;
        assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER, "{p}");
        assert_eq!(r.headers()["location"], "/reviews", "{p}");
    }
    // (The integration form's Save, posted with her session, does not reach it either.)
    let session = c
        .get_named_cookie("accessrail_session")
        .await
        .unwrap()
        .value()
        .to_string();
    let r = no_redirects()
        .post(url("/setup"))
        .header("Cookie", format!("accessrail_session={session}"))
        .form(&[
            ("op", "save"),
            ("subdomain", "elsewhere"),
            ("email", "x@y.io"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/reviews");
    assert_eq!(store.connections().await.unwrap().len(), 1);
    // ... another reviewer's items, the close, the exports and a review without her items are
    // refused ...
    let refused = [
        (
            format!("/reviews/{id}?reviewer={OTHER_MANAGER}"),
            403,
            "acts only as its reviewer",
        ),
        (format!("/reviews/{id}/close"), 403, "only an administrator"),
        (
            format!("/reviews/{id}/export.csv"),
            403,
            "only an administrator",
        ),
        (
            format!("/reviews/{id}/export.html"),
            403,
            "only an administrator",
        ),
        (format!("/reviews/{other}"), 404, "no review"),
        (format!("/reviews/{other}/keep-all"), 404, "no review"),
    ];
    for (p, status, says) in &refused {
        c.goto(&url(p)).await.unwrap();
        let body = text(&c).await;
        assert!(body.contains(says), "{p}: {body}");
        assert!(!body.contains(&dee.email), "{p}: {body}");
        assert!(!exists(&c, "#reviewers").await, "{p}: no progress table");
        let r = as_session(&c, &svc.base, p).await;
        assert_eq!(r.status().as_u16(), *status, "{p}");
    }
    shot(&c, "review-reviewer-refused").await;
    // ... and the API answers her token with 403 outside the review API.
    let r = reqwest::Client::new()
        .get(url("/api/v1/connections"))
        .bearer_auth(MIA_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);

    // (c) Sign out; an administrator signs in.
    c.goto(&url("/reviews")).await.unwrap();
    click(&c, "header form[action='/logout'] button").await;
    assert_eq!(path(&c).await, "/login");
    sign_in(&c, &svc.base).await;
    click(&c, "nav a[href='/reviews']").await;
    assert_eq!(
        texts_of(&c, "#reviews tr.review-row").await.len(),
        2,
        "every review"
    );
    c.goto(&url(&format!("/reviews/{id}"))).await.unwrap();
    let row = text_of(&c, &format!("#reviewers tr[data-reviewer='{MIA}']")).await;
    assert!(row.contains("submitted, waiting for approval"), "{row}");
    assert!(row.contains('3'), "{row}");
    let fallback_row = text_of(&c, &format!("#reviewers tr[data-reviewer='{FALLBACK}']")).await;
    assert!(fallback_row.contains("not submitted"), "{fallback_row}");
    assert!(
        exists(
            &c,
            &format!("#reviewers tr[data-reviewer='{OTHER_MANAGER}']")
        )
        .await
    );
    assert!(exists(&c, &format!(".judge[data-reviewer='{MIA}']")).await);
    shots_at_both_widths_from(&c, "review-admin", "progress").await;
    // Mia's items, read-only now, through the administrator's link.
    click(
        &c,
        &format!("#reviewers tr[data-reviewer='{MIA}'] a.reviewer-link"),
    )
    .await;
    assert_eq!(emails_of(&c, ".review-item").await, expected);
    assert!(!exists(&c, "form.decide").await);
    click(&c, "#overview-link").await;
    // Approve.
    click(&c, &format!("form.approve[data-reviewer='{MIA}'] button")).await;
    assert_eq!(text_of(&c, "#flash").await, "Submission approved.");
    let row = text_of(&c, &format!("#reviewers tr[data-reviewer='{MIA}']")).await;
    assert!(row.contains("approved"), "{row}");
    assert!(!exists(&c, ".judge").await, "nothing waits for approval");

    // Close: the dry run first, nothing changed.
    click(&c, "#close-review").await;
    assert_eq!(path(&c).await, format!("/reviews/{id}/close"));
    assert_eq!(text_of(&c, "#revoke-count").await, "1");
    let plan = text_of(&c, "#plan").await;
    assert!(
        plan.contains(&bo.email) && plan.contains("deactivate"),
        "{plan}"
    );
    let finals = text_of(&c, "#finals").await;
    assert!(
        finals.contains("the reviewer's approved decision")
            && finals.contains("undecided (review setting: keep)"),
        "{finals}"
    );
    assert!(
        svc.sim.sim().snapshot().users[&bo.id].is_active,
        "a dry run"
    );
    shots_at_both_widths(&c, "review-close").await;
    shots_at_both_widths_from(&c, "review-close-plan", "plan-heading").await;
    click(&c, "#confirm").await;
    assert!(path(&c).await.contains("done=closed"), "{}", path(&c).await);
    assert_eq!(text_of(&c, "#review-status").await, "closed");
    assert!(
        !svc.sim.sim().snapshot().users[&bo.id].is_active,
        "the revoked account is deactivated in TestRail"
    );
    assert!(svc.sim.sim().snapshot().users[&ana.id].is_active);
    let bo_row = text_of(&c, &format!("#items tr[data-item='{nb}']")).await;
    assert!(bo_row.contains("done: deactivate"), "{bo_row}");
    assert!(
        exists(
            &c,
            &format!("#items tr[data-item='{nb}'] a[href*='#audit-']")
        )
        .await
    );
    let ana_row = text_of(&c, &format!("#items tr[data-item='{na}']")).await;
    assert!(ana_row.contains("kept"), "{ana_row}");
    assert!(text_of(&c, "#outcome").await.contains("1 revoked"));
    assert!(!exists(&c, "#close-review").await);
    shots_at_both_widths(&c, "review-closed").await;
    shots_at_both_widths_from(&c, "review-closed-items", "items-heading").await;
    // The close dry run of a closed review says so.
    c.goto(&url(&format!("/reviews/{id}/close"))).await.unwrap();
    assert!(text(&c).await.contains("already closed"));

    // The evidence: CSV and JSON to download, the report inline.
    c.goto(&url(&format!("/reviews/{id}"))).await.unwrap();
    let href = c
        .find(Locator::Css("#export-csv"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(href, format!("/reviews/{id}/export.csv"));
    let r = as_session(&c, &svc.base, &href).await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment"),
    );
    let body = r.text().await.unwrap();
    assert!(body.starts_with("review_id,item,"), "{body}");
    let bo_line = body
        .lines()
        .find(|l| l.to_lowercase().contains(&bo.email.to_lowercase()))
        .unwrap();
    assert!(
        bo_line.contains("left the team in May") && bo_line.contains("approved"),
        "{bo_line}"
    );
    let r = as_session(&c, &svc.base, &format!("/reviews/{id}/export.json")).await;
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["review"]["id"], id);
    let r = as_session(&c, &svc.base, &format!("/reviews/{id}/export.html")).await;
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline")
    );
    assert!(r.text().await.unwrap().contains("left the team in May"));

    c.close().await.unwrap();
    let _ = chromedriver.kill().await;
    svc.stop().await.unwrap();
}
