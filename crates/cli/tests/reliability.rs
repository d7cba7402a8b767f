//! Guarantees under concurrency and interruption, each attacked through the binary against the
//! simulator (docs/reliability.md lists them): provisioning during a scan, racing group
//! writers with a stalled TestRail, racing creates, scans stopped by signals and kill -9, and
//! concurrent first starts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use testrail_sim::{Faults, Settings};
use tokio::io::AsyncBufReadExt as _;

fn bin() -> tokio::process::Command {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_accessrail"))
}

fn out_of(o: std::process::Output) -> Out {
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs the binary on `e`'s data directory in the background, with extra environment.
fn spawn_cli(e: &Env, args: &[&str], env: &[(&str, String)]) -> tokio::task::JoinHandle<Out> {
    let mut cmd = bin();
    cmd.args(args)
        .env("ACCESSRAIL_DATA_DIR", e.data())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::spawn(async move { out_of(cmd.output().await.unwrap()) })
}

/// Waits until the proxy has received an `update_group`.
async fn wait_for_update_group(calls: &AtomicU32) {
    let start = Instant::now();
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no update_group sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Waits until the data directory records a running scan (the scan has begun reading).
async fn wait_for_running_scan(e: &Env) {
    let start = Instant::now();
    loop {
        let out = e.run(&["scans", "--json"]).await;
        if out.code == 0
            && out
                .json()
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["status"] == "running")
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no scan started: {}",
            out.stderr
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn last_scan_status(e: &Env) -> String {
    let scans = e.run(&["scans", "--json"]).await.json();
    scans.as_array().unwrap().last().unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Issue: a provisioning action recorded while a scan ran was overwritten by the scan's older
/// read (the account twice at the scan, the deactivation lost, a false reactivation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivation_during_a_scan_stays_in_history() {
    let e = env(3000, 5).await;
    let target = "leaver@example.com";
    e.add_user(target, None, false);
    e.provisioned().await;
    // Slow TestRail: the next scan takes seconds, and reads the leaver on its first page.
    e.sim().set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    let scan = spawn_cli(&e, &["scan", "--json"], &[]);
    wait_for_running_scan(&e).await;
    let out = e.prov(&["deactivate", "--email", target, "--json"]).await;
    assert_eq!(
        out.code, 0,
        "provisioning does not wait for the scan: {}",
        out.stderr
    );
    let scan = scan.await.unwrap();
    assert_eq!(scan.code, 0, "{}", scan.stderr);
    let scan_id = scan.json()["scan_id"].as_i64().unwrap().to_string();
    e.sim().set_faults(Faults::default());
    assert!(!e.user(target).is_active);

    let at_scan: Vec<Value> = e
        .users(&["--at-scan", &scan_id])
        .await
        .into_iter()
        .filter(|u| u["email"] == target)
        .collect();
    assert_eq!(
        at_scan.len(),
        1,
        "the account once at the scan: {at_scan:?}"
    );
    assert_eq!(at_scan[0]["is_active"], false, "{at_scan:?}");
    let now: Vec<Value> = e
        .users(&[])
        .await
        .into_iter()
        .filter(|u| u["email"] == target)
        .collect();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["is_active"], false);
    let changes = e.run(&["changes", "--json"]).await.json();
    let kinds: Vec<&str> = changes
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["subject"] == target)
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["account_deactivated"],
        "no invented reactivation"
    );
    // The next scan agrees with what provisioning recorded.
    let next = e.scan().await;
    assert_eq!(next["changes"], 0, "{next}");
}

/// A proxy in front of the simulator whose first `update_group` stalls and then answers 500
/// without passing the write on. Returns its address and the count of `update_group` calls.
async fn stalling_proxy(upstream: String, stall: Duration) -> (String, Arc<AtomicU32>) {
    proxy(upstream, stall, true).await
}

/// A proxy in front of the simulator that holds the first `update_group` for `stall`, then
/// answers 500 without passing it on (`fail`) or passes it on late.
async fn proxy(upstream: String, stall: Duration, fail: bool) -> (String, Arc<AtomicU32>) {
    let client = reqwest::Client::new();
    let stalls = Arc::new(AtomicU32::new(0));
    let counter = stalls.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (client, upstream, stalls) = (client.clone(), upstream.clone(), stalls.clone());
        async move {
            let (parts, body) = req.into_parts();
            let query = parts.uri.query().unwrap_or("").to_string();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            if query.contains("/update_group/") && stalls.fetch_add(1, Ordering::SeqCst) == 0 {
                tokio::time::sleep(stall).await;
                if !fail {
                    return forward(&client, &upstream, parts, body).await;
                }
                return axum::response::Response::builder()
                    .status(500)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(r#"{"error":"stalled"}"#))
                    .unwrap();
            }
            forward(&client, &upstream, parts, body).await
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), counter)
}

async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    parts: axum::http::request::Parts,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let url = format!("{}{}", upstream.trim_end_matches('/'), parts.uri);
    let mut fwd = client.request(parts.method, url).body(body);
    for (k, v) in &parts.headers {
        if k != "host" {
            fwd = fwd.header(k, v);
        }
    }
    let resp = fwd.send().await.unwrap();
    let status = resp.status();
    let ct = resp.headers().get("content-type").cloned();
    let bytes = resp.bytes().await.unwrap();
    let mut b = axum::response::Response::builder().status(status);
    if let Some(ct) = ct {
        b = b.header("content-type", ct);
    }
    b.body(axum::body::Body::from(bytes)).unwrap()
}

async fn connect_through(e: &Env, proxy: &str) {
    let out = e
        .run_in(
            e.data(),
            &[
                "connect",
                "--base-url",
                proxy,
                "--email",
                ADMIN,
                "--api-key-stdin",
                "--name",
                "acme",
            ],
            Some(KEY),
        )
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(e.run(&["provisioning", "enable"]).await.code, 0);
    e.scan().await;
}

/// Issue: the per-group lease was never renewed and a failed `update_group` was retried with
/// the member list read before the lease expired, so two writers both reported "done" while
/// one member was missing. Leases are now renewed while held, fenced before each write, and a
/// whole-list write is retried only from a fresh read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_group_writers_with_a_stalled_testrail_both_take_effect() {
    let e = env(0, 0).await;
    let a = e.add_user("a@example.com", None, false);
    let b = e.add_user("b@example.com", None, false);
    let base = e.add_user("base@example.com", None, false);
    let gid = e
        .sim()
        .with_instance(|inst| inst.insert_group("Shared".into(), &[base]));
    let ttl = 2;
    let (proxy, _) = stalling_proxy(e.server.base_url(), Duration::from_secs(ttl + 2)).await;
    connect_through(&e, &proxy).await;
    let mut tasks = vec![];
    for email in ["a@example.com", "b@example.com"] {
        tasks.push(spawn_cli(
            &e,
            &[
                "provision",
                "add-to-group",
                "--email",
                email,
                "--group",
                "Shared",
                "--json",
            ],
            &[("ACCESSRAIL_LEASE_TTL_SECS", ttl.to_string())],
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut done = BTreeSet::new();
    for (t, id) in tasks.into_iter().zip([a, b]) {
        let out = t.await.unwrap();
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        let outcome = out.json()["result"]["results"][0]["outcome"].clone();
        assert!(outcome == "done" || outcome == "noop", "{}", out.stdout);
        done.insert(id);
    }
    let members: BTreeSet<u64> = e.sim().snapshot().groups[&gid]
        .user_ids
        .iter()
        .copied()
        .collect();
    assert_eq!(
        members,
        BTreeSet::from([a, b, base]),
        "nobody reported done is missing"
    );
    // Accessrail's record agrees with TestRail.
    let users = e.users(&["--group", "Shared"]).await;
    let emails: BTreeSet<&str> = users.iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(
        emails,
        BTreeSet::from(["a@example.com", "b@example.com", "base@example.com"])
    );
    assert_eq!(e.run(&["audit", "verify"]).await.code, 0);
}

/// Issue: a failed `update_group` was retried with the member list read before it, so a member
/// added in TestRail meanwhile (by an admin in TestRail's UI) was silently removed, and the
/// run reported "done". A whole-list write is now retried only from a fresh read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_group_write_is_retried_from_a_fresh_read() {
    let e = env(0, 0).await;
    let a = e.add_user("a@example.com", None, false);
    let c = e.add_user("c@example.com", None, false);
    let base = e.add_user("base@example.com", None, false);
    let gid = e
        .sim()
        .with_instance(|inst| inst.insert_group("Shared".into(), &[base]));
    let (proxy, calls) = stalling_proxy(e.server.base_url(), Duration::from_secs(1)).await;
    connect_through(&e, &proxy).await;
    let run = spawn_cli(
        &e,
        &[
            "provision",
            "add-to-group",
            "--email",
            "a@example.com",
            "--group",
            "Shared",
            "--json",
        ],
        &[],
    );
    // While the first write stalls, an admin adds c in TestRail.
    wait_for_update_group(&calls).await;
    e.sim().with_instance(|inst| {
        let mut members = inst.groups[&gid].user_ids.clone();
        members.push(c);
        inst.set_group_members(gid, &members);
    });
    let out = run.await.unwrap();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let members: BTreeSet<u64> = e.sim().snapshot().groups[&gid]
        .user_ids
        .iter()
        .copied()
        .collect();
    assert_eq!(
        members,
        BTreeSet::from([a, c, base]),
        "c, added meanwhile, is kept"
    );
}

/// Issue: with TestRail accepting duplicate emails, concurrent creates of one email made
/// duplicate accounts. Creates are now serialised per email across processes; the second
/// writer finds the account and reports a no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_email_make_one_account() {
    let e = env(2, 0).await;
    e.provisioned().await;
    e.sim().set_settings(Settings {
        unique_emails: false,
        ..Settings::default()
    });
    e.sim().set_faults(Faults {
        latency_ms: 100,
        ..Faults::default()
    });
    for pair in 0..10 {
        let email = format!("pair{pair}@example.com");
        let mut tasks = vec![];
        for _ in 0..2 {
            tasks.push(spawn_cli(
                &e,
                &[
                    "provision",
                    "create-user",
                    "--name",
                    "New Person",
                    "--email",
                    &email,
                    "--json",
                ],
                &[],
            ));
        }
        let mut outcomes = vec![];
        for t in tasks {
            let out = t.await.unwrap();
            assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
            let o = &out.json()["result"]["results"][0];
            outcomes.push(o["outcome"].as_str().unwrap().to_string());
        }
        outcomes.sort();
        let accounts = e
            .sim()
            .snapshot()
            .users
            .values()
            .filter(|u| u.email == email)
            .count();
        assert_eq!(accounts, 1, "one account for {email}");
        assert_eq!(outcomes, vec!["done", "noop"], "{email}");
    }
}

/// Issue: a signal during a CLI scan left the lease for 10 minutes and the scan `running` for
/// ever. SIGTERM and SIGINT now end the scan as interrupted and release the lease at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_ends_a_scan_as_interrupted_and_frees_the_connection() {
    let e = env(3000, 5).await;
    e.connect().await;
    e.scan().await;
    for sig in ["-TERM", "-INT"] {
        e.sim().set_faults(Faults {
            latency_ms: 200,
            ..Faults::default()
        });
        let child = bin()
            .args(["scan"])
            .env("ACCESSRAIL_DATA_DIR", e.data())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_running_scan(&e).await;
        signal(child.id().unwrap(), sig);
        let out = out_of(child.wait_with_output().await.unwrap());
        assert_eq!(out.code, 130, "{sig}: {}", out.stderr);
        assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
        assert_eq!(last_scan_status(&e).await, "interrupted");
        e.sim().set_faults(Faults::default());
        // The connection is free at once.
        let out = e.run(&["scan", "--json"]).await;
        assert_eq!(out.code, 0, "{sig}: {}", out.stderr);
    }
}

/// Issue: after kill -9 the next scan was refused as busy for 10 minutes. Leases are short and
/// renewed by heartbeat: the next scan starts once the lease lapses, and records the killed
/// scan as interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_the_next_scan_starts_within_the_lease_time() {
    let e = env(3000, 5).await;
    e.connect().await;
    e.scan().await;
    // About 8 s of scanning: longer than the lease, so it must be renewed.
    e.sim().set_faults(Faults {
        latency_ms: 600,
        ..Faults::default()
    });
    let ttl = 3;
    let child = bin()
        .args(["scan"])
        .env("ACCESSRAIL_DATA_DIR", e.data())
        .env("ACCESSRAIL_LEASE_TTL_SECS", ttl.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_running_scan(&e).await;
    // Let a heartbeat or two pass: the lease is renewed while the scan runs.
    tokio::time::sleep(Duration::from_secs(ttl + 1)).await;
    let busy = e.run(&["scan"]).await;
    assert_eq!(busy.code, 1, "{}", busy.stderr);
    assert!(busy.stderr.contains("already running"), "{}", busy.stderr);
    signal(child.id().unwrap(), "-KILL");
    let killed = Instant::now();
    e.sim().set_faults(Faults::default());
    loop {
        let out = e.run(&["scan", "--json"]).await;
        if out.code == 0 {
            break;
        }
        assert!(out.stderr.contains("already running"), "{}", out.stderr);
        assert!(
            killed.elapsed() < Duration::from_secs(ttl + 10),
            "still busy {:?} after kill -9",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let scans = e.run(&["scans", "--json"]).await.json();
    let statuses: Vec<&str> = scans
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["succeeded", "interrupted", "succeeded"]);
}

/// Issue: two processes starting at once on a fresh data directory failed (migrations racing,
/// the master key written twice) and once saved a connection sealed with a key the other
/// process replaced. 20 trials of 4 concurrent first starts: every process succeeds and every
/// saved connection can be used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_starts_on_a_fresh_data_directory() {
    let e = env(3, 0).await;
    // Four TestRail instances (one connection per instance): the same seed and key.
    let mut others = vec![];
    for _ in 0..3 {
        others.push(env(3, 0).await);
    }
    let bases: Vec<String> = std::iter::once(&e)
        .chain(&others)
        .map(|x| x.server.base_url())
        .collect();
    let mut failures = vec![];
    for trial in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut tasks = vec![];
        for (p, base) in bases.iter().enumerate() {
            let mut cmd = bin();
            cmd.args([
                "connect",
                "--base-url",
                base,
                "--email",
                ADMIN,
                "--api-key-stdin",
                "--name",
                &format!("c{p}"),
            ])
            .env("ACCESSRAIL_DATA_DIR", &data)
            .env_remove("ACCESSRAIL_MASTER_KEY")
            .env_remove("ACCESSRAIL_MASTER_KEY_FILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            tasks.push(tokio::spawn(async move {
                use tokio::io::AsyncWriteExt as _;
                let mut child = cmd.spawn().unwrap();
                let mut stdin = child.stdin.take().unwrap();
                stdin.write_all(KEY.as_bytes()).await.unwrap();
                drop(stdin);
                out_of(child.wait_with_output().await.unwrap())
            }));
        }
        for t in tasks {
            let out = t.await.unwrap();
            if out.code != 0 {
                failures.push(format!("trial {trial}: {}", out.stderr));
            }
        }
        for p in 0..4 {
            let out = e
                .run_in(&data, &["test", "--connection", &format!("c{p}")], None)
                .await;
            if out.code != 0 {
                failures.push(format!(
                    "trial {trial}: c{p} unusable: {}{}",
                    out.stdout, out.stderr
                ));
            }
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for f in ["accessrail.db", "master.key"] {
                let mode = std::fs::metadata(data.join(f))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o077, 0, "{f} is owner-only ({mode:o})");
            }
            let mode = std::fs::metadata(&data).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// An existing data directory is never chmodded; one that others can read gets a warning.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_data_directory_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    let e = env(1, 0).await;
    std::fs::set_permissions(e.data(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = e.connect_as(ADMIN, KEY, &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("can be read by other users"),
        "{}",
        out.stderr
    );
    let mode = std::fs::metadata(e.data()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    let db = std::fs::metadata(e.data().join("accessrail.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(db & 0o077, 0, "the database is owner-only ({db:o})");
}

/// `accessrail users --json | head` ends quietly instead of panicking on the broken pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_output_quietly() {
    let e = env(400, 0).await;
    e.connect().await;
    e.scan().await;
    let mut child = bin()
        .args(["users", "--json"])
        .env("ACCESSRAIL_DATA_DIR", e.data())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = out_of(child.wait_with_output().await.unwrap());
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

/// Names and emails with bidi controls or other invisible characters are refused before
/// anything is sent to TestRail (exit 2: invalid input).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_characters_are_refused_before_writing() {
    let e = env(2, 0).await;
    e.provisioned().await;
    for (name, email) in [
        ("Mallory", "mallory\u{202E}moc.elpmaxe@example.com"),
        ("Mal\u{200B}lory", "mallory@example.com"),
    ] {
        let out = e
            .prov(&["create-user", "--name", name, "--email", email])
            .await;
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(
            out.stderr.contains("invisible or control character"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(e.stat("add_user"), 0, "nothing was sent");
}

/// Issue: `serve` dropped a scan after its shutdown grace period without releasing the lease,
/// so the next scan was refused as busy. README: a scan still running after the grace period is
/// recorded as interrupted; the connection is free at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_shutdown_records_an_unfinished_scan_as_interrupted_and_frees_it() {
    let e = env(3000, 5).await;
    e.connect().await;
    // The scheduler scans a never-scanned connection at start; make that scan slow.
    e.sim().set_faults(Faults {
        latency_ms: 600,
        ..Faults::default()
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = bin()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--shutdown-grace-secs",
            "1",
        ])
        .env("ACCESSRAIL_DATA_DIR", e.data())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for_running_scan(&e).await;
    signal(child.id().unwrap(), "-TERM");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("serve stops within its grace period")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(last_scan_status(&e).await, "interrupted");
    e.sim().set_faults(Faults::default());
    let out = e.run(&["scan", "--json"]).await;
    assert_eq!(out.code, 0, "the lease was released: {}", out.stderr);
}

/// Review finding: `create-user --group G` changed G without G's lease, so a whole-list write
/// of G already under way could drop the new member while both runs reported done. Here that
/// write is held in flight (a proxy delays it) while the create runs; creates now hold their
/// groups' leases, so the create waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_with_a_group_waits_for_a_write_of_that_group() {
    let e = env(0, 0).await;
    let member = e.add_user("member@example.com", None, false);
    let gid = e
        .sim()
        .with_instance(|inst| inst.insert_group("Shared".into(), &[]));
    let (proxy, calls) = proxy(e.server.base_url(), Duration::from_secs(2), false).await;
    connect_through(&e, &proxy).await;
    let writer = spawn_cli(
        &e,
        &[
            "provision",
            "add-to-group",
            "--email",
            "member@example.com",
            "--group",
            "Shared",
        ],
        &[],
    );
    wait_for_update_group(&calls).await;
    // The group write is in flight, with a member list read before this create.
    let out = e
        .prov(&[
            "create-user",
            "--name",
            "New",
            "--email",
            "new@example.com",
            "--group",
            "Shared",
        ])
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let out = writer.await.unwrap();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let snap = e.sim().snapshot();
    let new = snap.user_by_email("new@example.com").unwrap().id;
    let members: BTreeSet<u64> = snap.groups[&gid].user_ids.iter().copied().collect();
    assert_eq!(
        members,
        BTreeSet::from([member, new]),
        "neither change is undone"
    );
}

/// Replicas must share one master key: a `serve` started with another key refuses to start,
/// names the connection it cannot open and says which setting to fix (instead of failing on
/// every scan later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_master_key_that_cannot_open_the_stored_keys() {
    let e = env(3, 1).await;
    assert_eq!(e.connect().await.code, 0);
    let other_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // 32 bytes, base64
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        bin()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("ACCESSRAIL_DATA_DIR", e.data())
            .env("ACCESSRAIL_MASTER_KEY", other_key)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("serve refuses at once instead of serving")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("cannot open the API keys of acme")
            && stderr.contains("ACCESSRAIL_MASTER_KEY"),
        "{stderr}"
    );
    // With its own key it starts (and is stopped here).
    let mut child = bin()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("ACCESSRAIL_DATA_DIR", e.data())
        .env_remove("ACCESSRAIL_MASTER_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "serve with the right key keeps running"
    );
    child.kill().await.unwrap();
}

/// Before any connection exists, the first `serve` records its master key's id: a later one
/// with another key refuses to start (it would seal keys and sign forms the others cannot use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_another_master_key_on_a_database_without_connections() {
    let dir = tempfile::tempdir().unwrap();
    let key_one = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let key_two = "HxwdHhsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";
    let mut first = bin()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("ACCESSRAIL_DATA_DIR", dir.path())
        .env("ACCESSRAIL_MASTER_KEY", key_one)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Listening means the key check has run.
    let mut lines = tokio::io::BufReader::new(first.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("serve starts")
        .unwrap()
        .unwrap_or_default();
    assert!(
        line.contains("listening") || line.contains("http://"),
        "{line}"
    );
    first.kill().await.unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        bin()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("ACCESSRAIL_DATA_DIR", dir.path())
            .env("ACCESSRAIL_MASTER_KEY", key_two)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("serve refuses at once")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("is not the one this database uses"),
        "{stderr}"
    );
}
