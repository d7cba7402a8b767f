//! Three `accessrail serve` replicas on one PostgreSQL database (a throwaway cluster, see
//! `accessrail-test-support`), each with its own data directory and the same master key,
//! against 22 simulated TestRail instances. One run, on one timeline, proves:
//!
//! 1. the scheduler: over 2.5 scan intervals every connection is scanned, and no connection is
//!    scanned twice within one interval, whichever replica takes it (and TestRail sees no
//!    request but those of the recorded scans);
//! 2. console sessions and the CSRF key are shared: a sign-in form from one replica posts to
//!    another, a session made on one works on the others, a sign-out on one ends it everywhere;
//! 3. a plan made on one replica is applied on another, once: a third refuses it;
//! 4. kill -9 of the replica running a scan: the scan's lease is renewed while it runs (no
//!    other replica takes over early), then it expires and another replica completes the
//!    connection's scan within the lease time, and the killed scan shows as interrupted;
//! 5. 50 concurrent group changes through the replicas: TestRail ends with every one of them;
//! 6. the audit chain, appended by every replica, verifies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use accessrail_store::{AnyStore, ScanRecord, ScanStatus, Store, StoreLocation};
use accessrail_test_support::fresh_postgres_url;
use common::{ADMIN, KEY, Out};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use testrail_sim::{Faults, SeedConfig, Settings, Sim, SimServer};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

/// The same on every replica and every CLI run (32 bytes, base64).
const MASTER_KEY: &str = "UmVwbGljYXMgc2hhcmUgb25lIG1hc3RlciBrZXkhISE=";
const TOKEN: &str = "ar_replicas_share_one_admin_token";
/// `--scan-interval-hours 0.005`: 18 s.
const INTERVAL_HOURS: &str = "0.005";
const INTERVAL: i64 = 18;
/// `ACCESSRAIL_LEASE_TTL_SECS`, for replicas and CLI runs alike.
const LEASE_TTL: i64 = 5;
/// The small instances the schedule is checked on.
const FAST: usize = 20;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The `accessrail` binary on the shared database and master key, with `dir` as data directory.
fn bin(url: &str, dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_accessrail"));
    cmd.env("ACCESSRAIL_DATA_DIR", dir)
        .env("ACCESSRAIL_DATABASE_URL", url)
        .env("ACCESSRAIL_MASTER_KEY", MASTER_KEY)
        .env_remove("ACCESSRAIL_MASTER_KEY_FILE")
        .env("ACCESSRAIL_LEASE_TTL_SECS", LEASE_TTL.to_string())
        .env("ACCESSRAIL_ADMIN_TOKEN", TOKEN);
    cmd
}

async fn cli(url: &str, dir: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut child = bin(url, dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(out: &Out, what: &str) {
    assert_eq!(out.code, 0, "{what}: {}\n{}", out.stdout, out.stderr);
}

async fn simulator(users: u32, groups: u32) -> SimServer {
    let sim = Sim::new(
        SeedConfig {
            users,
            groups,
            seed: 7,
            admin_key: KEY.into(),
            ..SeedConfig::default()
        },
        Settings::default(),
    );
    SimServer::start("127.0.0.1:0".parse().unwrap(), sim)
        .await
        .unwrap()
}

fn add_user(sim: &Sim, email: &str) -> u64 {
    sim.with_instance(|inst| {
        inst.insert_user(testrail_sim::model::User {
            id: 0,
            name: format!("User {email}"),
            email: email.into(),
            is_active: true,
            is_admin: false,
            role_id: 3,
            email_notifications: true,
            mfa_required: false,
            sso_enabled: false,
            assigned_projects: vec![],
            group_ids: Default::default(),
            api_keys: vec![],
            password: None,
        })
    })
}

/// One `accessrail serve` process with a data directory of its own.
struct Replica {
    name: String,
    child: tokio::process::Child,
    pid: u32,
    base: String,
    log: PathBuf,
}

impl Replica {
    async fn start(name: &str, url: &str, root: &Path) -> Replica {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let log = root.join(format!("{name}.log"));
        let mut child = bin(url, &dir)
            .args([
                "serve",
                "--json",
                "--listen",
                "127.0.0.1:0",
                // Only scans ask TestRail here: the test counts their requests exactly.
                "--no-evidence-scans",
                "--scan-interval-hours",
                INTERVAL_HOURS,
                "--scan-jitter-secs",
                "0",
                "--scheduler-tick-secs",
                "1",
                "--shutdown-grace-secs",
                "5",
            ])
            .env("ACCESSRAIL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{name} did not start: {}",
                    std::fs::read_to_string(&log).unwrap()
                )
            })
            .unwrap()
            .unwrap_or_else(|| panic!("{name} exited: {}", std::fs::read_to_string(&log).unwrap()));
        let v: Value = serde_json::from_str(&first).unwrap();
        let base = v["listening"]
            .as_str()
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        assert!(
            v["admin_token"].is_null(),
            "the admin token comes from the environment: {v}"
        );
        // Keep reading stdout, so the process never writes into a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Replica {
            name: name.to_string(),
            child,
            pid,
            base,
            log,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Scheduled scans this replica's job worker completed, from its log.
    fn scheduled_scans(&self) -> usize {
        self.logs()
            .lines()
            .filter(|l| l.contains("job done (scheduled_scan): scanned"))
            .count()
    }

    /// SIGTERM, then the exit status (a graceful stop is 0).
    async fn stop(mut self) -> (String, Option<i32>, String) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("a replica stops within its grace period")
            .unwrap();
        (self.name.clone(), status.code(), self.logs())
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn api(
    http: &reqwest::Client,
    r: &Replica,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http
        .request(method, format!("{}{path}", r.base))
        .bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn set_cookies(h: &HeaderMap) -> Vec<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// `name=value` of the cookie `name` among the Set-Cookie headers.
fn cookie_pair(h: &HeaderMap, name: &str) -> String {
    set_cookies(h)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {h:?}"))
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no CSRF field in {html}"))
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

/// The sign-in page of `r`: its CSRF cookie (`name=value`) and the form's token.
async fn login_form(http: &reqwest::Client, r: &Replica) -> (String, String) {
    let resp = http.get(format!("{}/login", r.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = cookie_pair(resp.headers(), "accessrail_csrf");
    (cookie, csrf_of(&resp.text().await.unwrap()))
}

/// Posts a sign-in to `r`; the session cookie (`name=value`).
async fn sign_in(http: &reqwest::Client, r: &Replica, form: &(String, String)) -> String {
    let resp = http
        .post(format!("{}/login", r.base))
        .header(COOKIE, &form.0)
        .form(&[("token", TOKEN), ("csrf", form.1.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::SEE_OTHER,
        "sign-in on {}: {}",
        r.name,
        resp.text().await.unwrap()
    );
    cookie_pair(resp.headers(), "accessrail_session")
}

/// A console page on `r` with `session`: its status, redirect and body.
async fn console(
    http: &reqwest::Client,
    r: &Replica,
    path: &str,
    session: &str,
) -> (StatusCode, Option<String>, String) {
    let resp = http
        .get(format!("{}{path}", r.base))
        .header(COOKIE, session)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_string());
    (status, location, resp.text().await.unwrap())
}

/// The holder and expiry of a live lease.
async fn lease(db: &sqlx::PgPool, name: &str) -> Option<(String, i64)> {
    sqlx::query_as("SELECT holder, expires_at FROM leases WHERE name = $1 AND expires_at > $2")
        .bind(name)
        .bind(unix_now())
        .fetch_optional(db)
        .await
        .unwrap()
}

fn statuses(scans: &[ScanRecord]) -> Vec<&'static str> {
    scans.iter().map(|s| s.status.as_str()).collect()
}

/// No scan of a connection starts before the one before it ended, nor within an interval of
/// the last successful one (`INTERVAL`, less 1 s of clock granularity).
fn check_spacing(name: &str, scans: &[ScanRecord]) -> Result<(), String> {
    let mut last_ok: Option<i64> = None;
    let mut prev_end: Option<i64> = None;
    for s in scans {
        if let Some(end) = prev_end
            && s.started_at < end
        {
            return Err(format!(
                "{name}: scan {} started at {} before the one before it ended at {end}",
                s.id, s.started_at
            ));
        }
        if let Some(ok) = last_ok
            && s.started_at - ok < INTERVAL - 1
        {
            return Err(format!(
                "{name}: scan {} started {} s after the last successful scan ended (interval {INTERVAL} s): {:?}",
                s.id,
                s.started_at - ok,
                scans
                    .iter()
                    .map(|s| (s.id, s.started_at, s.finished_at, s.status.as_str()))
                    .collect::<Vec<_>>()
            ));
        }
        let end = s
            .finished_at
            .ok_or_else(|| format!("{name}: scan {} never ended", s.id))?;
        prev_end = Some(end);
        if s.status == ScanStatus::Succeeded {
            last_ok = Some(end);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_postgres_database() {
    let began = Instant::now();
    let url = fresh_postgres_url().await;
    let root = tempfile::tempdir().unwrap();
    let cli_dir = root.path().join("cli");

    // 20 small instances; one that will be slow; one for group changes.
    let mut fast = Vec::new();
    for _ in 0..FAST {
        fast.push(simulator(5, 2).await);
    }
    let slow = simulator(5, 2).await;
    let groups = simulator(0, 0).await;
    let members: Vec<u64> = (0..60)
        .map(|i| add_user(groups.sim(), &format!("m{i:02}@example.com")))
        .collect();
    let x = add_user(groups.sim(), "x@example.com");
    // Shared: m40..m59. The changes add m00..m39 and remove m40..m49.
    let shared = groups
        .sim()
        .with_instance(|inst| inst.insert_group("Shared".into(), &members[40..]));
    let other = groups
        .sim()
        .with_instance(|inst| inst.insert_group("Other".into(), &[]));

    // Connect them all with the CLI (the first run creates the schema).
    let mut targets: Vec<(String, String)> = fast
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("t{:02}", i + 1), s.base_url()))
        .collect();
    targets.push(("slow".into(), slow.base_url()));
    targets.push(("groups".into(), groups.base_url()));
    let connect = |name: String, base: String| {
        let (url, dir) = (url.clone(), cli_dir.clone());
        async move {
            let out = cli(
                &url,
                &dir,
                &[
                    "connect",
                    "--base-url",
                    &base,
                    "--email",
                    ADMIN,
                    "--api-key-stdin",
                    "--name",
                    &name,
                ],
                Some(KEY),
            )
            .await;
            ok(&out, &format!("connect {name}"));
        }
    };
    let (first, rest) = targets.split_first().unwrap();
    connect(first.0.clone(), first.1.clone()).await;
    let mut connecting = tokio::task::JoinSet::new();
    for (name, base) in rest.iter().cloned() {
        connecting.spawn(connect(name, base));
    }
    while let Some(r) = connecting.join_next().await {
        r.unwrap();
    }
    ok(
        &cli(
            &url,
            &cli_dir,
            &["provisioning", "enable", "--connection", "groups"],
            None,
        )
        .await,
        "provisioning enable",
    );
    ok(
        &cli(&url, &cli_dir, &["scan", "--connection", "groups"], None).await,
        "scan groups",
    );
    let store = AnyStore::open(&StoreLocation::parse(&url).unwrap())
        .await
        .unwrap();
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let slow_id = store.connection("slow").await.unwrap().unwrap().id;
    let slow_lease = format!("scan:{slow_id}");
    // TestRail requests before the replicas start (connect's Test).
    let before: Vec<u64> = fast
        .iter()
        .map(|s| s.sim().stats().requests_total)
        .collect();
    // The slow instance's first scan takes about 12 s: longer than the lease.
    slow.sim().set_faults(Faults {
        latency_ms: 4000,
        ..Faults::default()
    });
    eprintln!("setup: {:?}", began.elapsed());

    // Three replicas.
    let started = Instant::now();
    let mut replicas = vec![];
    for name in ["a", "b", "c"] {
        replicas.push(Replica::start(name, &url, root.path()).await);
    }
    let http = http();

    // 4 (first half). One replica takes the slow instance's scan.
    let (holder, _) = loop {
        if let Some(l) = lease(&db, &slow_lease).await
            && store
                .scans(&slow_id)
                .await
                .unwrap()
                .iter()
                .any(|s| s.status == ScanStatus::Running)
        {
            break l;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no replica started scanning the slow instance"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let running_at = Instant::now();
    let victim = replicas
        .iter()
        .position(|r| holder.contains(&format!(":{}:", r.pid)))
        .unwrap_or_else(|| panic!("the lease holder {holder:?} names no replica"));

    // 2. Console sessions and the CSRF key are shared.
    let (a, b, c) = (&replicas[0], &replicas[1], &replicas[2]);
    let form = login_form(&http, a).await;
    let session = sign_in(&http, a, &form).await;
    for r in [a, b, c] {
        let (status, location, _) = console(&http, r, "/audit", &session).await;
        assert_eq!(
            (status, location),
            (StatusCode::OK, None),
            "a session made on a works on {}",
            r.name
        );
    }
    let (status, location, _) = console(&http, b, "/audit", "accessrail_session=0123abcd").await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/login")),
        "an unknown session is sent to sign in"
    );
    let form = login_form(&http, a).await;
    let session_b = sign_in(&http, b, &form).await;
    let (status, _, html) = console(&http, c, "/scans", &session_b).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a's sign-in form posted to b: {html}"
    );
    // A page's CSRF token from c signs out on a; the session is then gone on b too.
    let resp = http
        .post(format!("{}/logout", a.base))
        .header(COOKIE, &session_b)
        .form(&[("csrf", csrf_of(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (status, location, _) = console(&http, b, "/audit", &session_b).await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/login")),
        "signed out everywhere"
    );

    // 3. A plan made on a, applied on b, refused on c (and on a).
    let (status, plan) = api(
        &http,
        a,
        reqwest::Method::POST,
        "/api/v1/connections/groups/plans",
        Some(json!({"actions": [{"action": "add_to_group", "email": "x@example.com", "group": "Other"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{plan}");
    let apply = format!("/api/v1/plans/{}/apply", plan["id"].as_str().unwrap());
    let (status, body) = api(&http, b, reqwest::Method::POST, &apply, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["done"], 1, "{body}");
    let mut audit_ids = vec![body["results"][0]["audit_id"].as_i64().unwrap()];
    for r in [c, a] {
        let (status, body) = api(&http, r, reqwest::Method::POST, &apply, None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("plan_already_applied")),
            "{}: {body}",
            r.name
        );
    }
    assert_eq!(groups.sim().snapshot().groups[&other].user_ids, vec![x]);

    // 4 (second half). The scan outlives its lease, renewed: nobody takes over while it runs.
    tokio::time::sleep(
        Duration::from_secs(LEASE_TTL as u64 + 1).saturating_sub(running_at.elapsed()),
    )
    .await;
    let (still, expires_at) = lease(&db, &slow_lease)
        .await
        .expect("the running scan's lease is renewed");
    assert_eq!(still, holder, "no other replica took over the running scan");
    let scans = store.scans(&slow_id).await.unwrap();
    assert_eq!(statuses(&scans), vec!["running"]);
    let killed_scan = scans[0].id;
    // kill -9 the replica running it.
    let mut dead = replicas.remove(victim);
    dead.child.start_kill().unwrap();
    dead.child.wait().await.unwrap();
    let killed = Instant::now();
    slow.sim().set_faults(Faults::default());
    eprintln!("killed {} at {:?}", dead.name, started.elapsed());
    // A replacement joins (its start must leave the live lease's scan alone).
    replicas.push(Replica::start("d", &url, root.path()).await);
    let takeover = loop {
        let scans = store.scans(&slow_id).await.unwrap();
        if let Some(s) = scans
            .iter()
            .find(|s| s.id > killed_scan && s.status == ScanStatus::Succeeded)
        {
            break (scans.clone(), s.clone());
        }
        assert!(
            killed.elapsed() < Duration::from_secs(LEASE_TTL as u64 + 8),
            "no replica completed the slow instance's scan {:?} after the kill: {:?}",
            killed.elapsed(),
            statuses(&scans)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (scans, next) = takeover;
    eprintln!("taken over {:?} after the kill", killed.elapsed());
    assert_eq!(
        scans[0].status,
        ScanStatus::Interrupted,
        "the killed scan: {:?}",
        scans[0]
    );
    assert!(
        next.started_at >= expires_at,
        "the next scan started at {} before the killed scan's lease expired at {expires_at}",
        next.started_at
    );

    // 5. 50 concurrent group changes, planned on one replica and applied on another.
    let mut changes = tokio::task::JoinSet::new();
    for i in 0..50usize {
        let (action, email) = if i < 40 {
            ("add_to_group", format!("m{i:02}@example.com"))
        } else {
            ("remove_from_group", format!("m{i:02}@example.com"))
        };
        let planner = (replicas[i % 3].base.clone(), replicas[i % 3].name.clone());
        let applier = (
            replicas[(i + 1) % 3].base.clone(),
            replicas[(i + 1) % 3].name.clone(),
        );
        let http = http.clone();
        changes.spawn(async move {
            let body = json!({"actions": [{"action": action, "email": email, "group": "Shared"}]});
            let resp = http
                .post(format!("{}/api/v1/connections/groups/plans", planner.0))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let plan: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
            assert_eq!(status, StatusCode::CREATED, "plan on {}: {plan}", planner.1);
            let resp = http
                .post(format!(
                    "{}/api/v1/plans/{}/apply",
                    applier.0,
                    plan["id"].as_str().unwrap()
                ))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
            assert_eq!(status, StatusCode::OK, "apply on {}: {body}", applier.1);
            assert_eq!(
                body["results"][0]["outcome"], "done",
                "{email} on {}: {body}",
                applier.1
            );
            (applier.1, body["results"][0]["audit_id"].as_i64().unwrap())
        });
    }
    let mut applied_by: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(r) = changes.join_next().await {
        let (replica, audit_id) = r.unwrap();
        *applied_by.entry(replica).or_default() += 1;
        audit_ids.push(audit_id);
    }
    let expected: BTreeSet<u64> = members[..40]
        .iter()
        .chain(&members[50..])
        .copied()
        .collect();
    let actual: BTreeSet<u64> = groups.sim().snapshot().groups[&shared]
        .user_ids
        .iter()
        .copied()
        .collect();
    assert_eq!(
        actual,
        expected,
        "lost additions: {:?}; removals undone: {:?}",
        expected.difference(&actual).collect::<Vec<_>>(),
        actual.difference(&expected).collect::<Vec<_>>()
    );
    eprintln!(
        "50 group changes applied by {applied_by:?} at {:?}",
        started.elapsed()
    );

    // 1. Let the schedule run for 2.5 intervals from the start, then stop the replicas.
    tokio::time::sleep(
        Duration::from_secs(INTERVAL as u64 * 5 / 2).saturating_sub(started.elapsed()),
    )
    .await;
    let mut logs = vec![(dead.name.clone(), dead.scheduled_scans(), dead.logs())];
    for r in replicas {
        let scanned = r.scheduled_scans();
        let (name, code, log) = r.stop().await;
        assert_eq!(code, Some(0), "{name} stops gracefully: {log}");
        logs.push((name, scanned, log));
    }
    eprintln!(
        "scheduled scans by replica: {:?}; ran {:?}",
        logs.iter()
            .map(|(n, s, _)| (n.as_str(), *s))
            .collect::<Vec<_>>(),
        started.elapsed()
    );
    let scheduled: usize = logs.iter().map(|(_, s, _)| s).sum();
    assert!(
        scheduled >= fast.len(),
        "the replicas' job workers ran {scheduled} scheduled scans for {} instances",
        fast.len()
    );
    let all_logs = || {
        logs.iter()
            .map(|(n, _, l)| format!("--- {n}\n{l}"))
            .collect::<String>()
    };
    let mut failures = vec![];
    for (i, sim) in fast.iter().enumerate() {
        let name = format!("t{:02}", i + 1);
        let id = store.connection(&name).await.unwrap().unwrap().id;
        let scans = store.scans(&id).await.unwrap();
        if scans.iter().any(|s| s.status != ScanStatus::Succeeded) {
            failures.push(format!("{name}: {:?}", statuses(&scans)));
        }
        if !(2..=3).contains(&scans.len()) {
            failures.push(format!(
                "{name}: {} scans in 2.5 intervals: {:?}",
                scans.len(),
                scans
                    .iter()
                    .map(|s| (s.started_at, s.finished_at))
                    .collect::<Vec<_>>()
            ));
        }
        if let Err(e) = check_spacing(&name, &scans) {
            failures.push(e);
        }
        // TestRail saw the recorded scans' requests and nothing else.
        let recorded: u64 = scans.iter().map(|s| s.requests).sum();
        let seen = sim.sim().stats().requests_total - before[i];
        // Users, groups and roles (one page each), the project list, and each project.
        let per_scan = 4 + sim.sim().snapshot().projects.len() as u64;
        if seen != recorded || recorded != per_scan * scans.len() as u64 {
            failures.push(format!(
                "{name}: TestRail saw {seen} requests, the {} scans recorded {recorded}",
                scans.len()
            ));
        }
    }
    for name in ["slow", "groups"] {
        let id = store.connection(name).await.unwrap().unwrap().id;
        if let Err(e) = check_spacing(name, &store.scans(&id).await.unwrap()) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}\n{}", all_logs());

    // Accessrail's record of Shared agrees with TestRail (a scan ran after the changes).
    let out = cli(
        &url,
        &cli_dir,
        &[
            "users",
            "--json",
            "--connection",
            "groups",
            "--group",
            "Shared",
        ],
        None,
    )
    .await;
    ok(&out, "users --group Shared");
    let recorded: BTreeSet<String> = out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_string())
        .collect();
    let wanted: BTreeSet<String> = (0..40)
        .chain(50..60)
        .map(|i| format!("m{i:02}@example.com"))
        .collect();
    assert_eq!(recorded, wanted);

    // 6. The audit chain, appended through every replica, verifies and holds every change.
    let out = cli(&url, &cli_dir, &["audit", "verify", "--json"], None).await;
    ok(&out, "audit verify");
    let entries = out.json()["entries"].as_u64().unwrap();
    assert!(entries >= 2 * 51, "{}", out.stdout);
    let log: BTreeSet<i64> = store
        .audit_log()
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    for id in &audit_ids {
        assert!(log.contains(id), "audit entry {id} is in the log");
    }
    eprintln!("total {:?}", began.elapsed());
}
