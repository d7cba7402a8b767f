//! Scans against a broken or hostile TestRail (a raw TCP server on port 0 inside the test): lists
//! that never end, a page larger than the byte cap, ids Accessrail cannot store exactly, one id
//! with two different records. Each scan fails with an error that says why, within bounded
//! requests, and the last good snapshot stays as it was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accessrail_engine::connector::{ClientOptions, ScanLimits};
use accessrail_engine::scan::{self, Quiet, ScanOutcome};
use accessrail_engine::secrets::Keyring;
use accessrail_engine::{
    ApiKey, ConnectRequest, Engine, EngineError, EngineResult, SystemClock, Target,
};
use accessrail_store::{Connection, ScanStatus, SqliteStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers a list route at an offset.
type List = Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>;

/// A fake TestRail whose `get_users` and `get_groups` answers can be swapped between scans.
#[derive(Clone)]
struct Fake {
    users: Arc<Mutex<List>>,
    groups: Arc<Mutex<List>>,
    user_requests: Arc<AtomicU64>,
    group_requests: Arc<AtomicU64>,
}

impl Fake {
    fn set_users(&self, f: impl Fn(u64) -> Vec<u8> + Send + Sync + 'static) {
        *self.users.lock().unwrap() = Arc::new(f);
        self.user_requests.store(0, Ordering::SeqCst);
    }
    fn set_groups(&self, f: impl Fn(u64) -> Vec<u8> + Send + Sync + 'static) {
        *self.groups.lock().unwrap() = Arc::new(f);
        self.group_requests.store(0, Ordering::SeqCst);
    }
}

fn offset(line: &str) -> u64 {
    line.split("offset=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn page(key: &str, items: &[String], next: bool) -> Vec<u8> {
    format!(
        r#"{{"offset":0,"limit":250,"size":{},"_links":{{"next":{},"prev":null}},"{key}":[{}]}}"#,
        items.len(),
        if next { r#""/api/v2/next""# } else { "null" },
        items.join(",")
    )
    .into_bytes()
}

fn user(id: u64) -> String {
    format!(
        r#"{{"id":{id},"name":"User {id}","email":"u{id}@example.com","is_active":true,"role_id":1}}"#
    )
}

fn group(id: u64) -> String {
    format!(r#"{{"id":{id},"name":"Group {id}","user_ids":[1]}}"#)
}

/// The good answers: two users, one group.
fn good(fake: &Fake) {
    fake.set_users(|_| page("users", &[user(1), user(2)], false));
    fake.set_groups(|_| page("groups", &[group(1)], false));
}

async fn fake() -> (Fake, String) {
    let fake = Fake {
        users: Arc::new(Mutex::new(Arc::new(|_| Vec::new()))),
        groups: Arc::new(Mutex::new(Arc::new(|_| Vec::new()))),
        user_requests: Arc::new(AtomicU64::new(0)),
        group_requests: Arc::new(AtomicU64::new(0)),
    };
    good(&fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let f = fake.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let f = f.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let line = req.lines().next().unwrap_or_default().to_string();
                let body = if line.contains("get_current_user") {
                    user(1)
                        .replace(r#""role_id":1"#, r#""role_id":1,"is_admin":true"#)
                        .into_bytes()
                } else if line.contains("get_users") {
                    f.user_requests.fetch_add(1, Ordering::SeqCst);
                    let list = f.users.lock().unwrap().clone();
                    list(offset(&line))
                } else if line.contains("get_groups") {
                    f.group_requests.fetch_add(1, Ordering::SeqCst);
                    let list = f.groups.lock().unwrap().clone();
                    list(offset(&line))
                } else if line.contains("get_roles") {
                    page("roles", &[r#"{"id":1,"name":"Lead"}"#.into()], false)
                } else if line.contains("get_projects") {
                    page("projects", &[], false)
                } else {
                    br#"{"error":"Unknown method"}"#.to_vec()
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (fake, format!("http://{addr}"))
}

struct Setup {
    fake: Fake,
    engine: Engine<SqliteStore>,
    conn: Connection,
    _dir: tempfile::TempDir,
}

/// An engine with a real SQLite store in a temp dir, connected to a fresh fake TestRail.
async fn setup(max_users: u64, max_groups: u64, max_response_bytes: u64) -> Setup {
    let (fake, base) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
    let engine = Engine::new(
        store,
        Keyring::load(dir.path()).unwrap(),
        dir.path().to_path_buf(),
        ClientOptions {
            retry_attempts: Some(1),
            max_response_bytes,
            limits: ScanLimits {
                max_users,
                max_groups,
            },
            ..ClientOptions::default()
        },
        Arc::new(SystemClock),
    );
    let (report, saved) = engine
        .connect(ConnectRequest {
            scan_interval_secs: None,
            target: Target::BaseUrl(base),
            email: "u1@example.com".into(),
            key: ApiKey::new("k").unwrap(),
            name: Some("hostile".into()),
            replace: false,
            request_budget: None,
        })
        .await
        .unwrap();
    assert!(report.passed, "{report:?}");
    Setup {
        fake,
        engine,
        conn: saved.unwrap(),
        _dir: dir,
    }
}

/// A scan that must end within a minute, whatever the server does.
async fn scan_bounded(engine: &Engine<SqliteStore>) -> EngineResult<ScanOutcome> {
    tokio::time::timeout(
        Duration::from_secs(60),
        scan::scan(engine, None, Arc::new(Quiet)),
    )
    .await
    .expect("the scan ends on its own")
}

/// A good scan, whose snapshot the failures below must leave alone.
async fn good_snapshot(s: &Setup) -> Vec<accessrail_domain::Account> {
    good(&s.fake);
    let ok = scan_bounded(&s.engine).await.unwrap();
    assert_eq!((ok.users, ok.groups), (2, 1));
    s.engine.store().current_accounts(&s.conn.id).await.unwrap()
}

async fn assert_failed_and_untouched(s: &Setup, before: &[accessrail_domain::Account]) {
    assert_eq!(
        s.engine.store().current_accounts(&s.conn.id).await.unwrap(),
        before,
        "the last good snapshot stays"
    );
    let scans = s.engine.store().scans(&s.conn.id).await.unwrap();
    assert_eq!(scans.last().unwrap().status, ScanStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_pages_of_new_users_stop_at_the_user_cap() {
    let s = setup(2_000, 100, 64 * 1024 * 1024).await;
    let before = good_snapshot(&s).await;
    s.fake.set_users(|from| {
        let users: Vec<String> = (from + 1..=from + 250).map(user).collect();
        page("users", &users, true)
    });
    let err = scan_bounded(&s.engine).await.unwrap_err();
    assert!(matches!(err, EngineError::Upstream { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("at most 2000 users"), "names the cap: {text}");
    assert!(
        text.contains("ACCESSRAIL_MAX_USERS"),
        "says how to raise it: {text}"
    );
    assert_eq!(
        s.fake.user_requests.load(Ordering::SeqCst),
        9,
        "2,250 users is past the cap of 2,000: nine pages, no more"
    );
    assert_failed_and_untouched(&s, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_pages_of_new_groups_stop_at_the_group_cap() {
    let s = setup(2_000, 300, 64 * 1024 * 1024).await;
    let before = good_snapshot(&s).await;
    s.fake.set_groups(|from| {
        let groups: Vec<String> = (from + 1..=from + 250).map(group).collect();
        page("groups", &groups, true)
    });
    let err = scan_bounded(&s.engine).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("at most 300 groups"), "names the cap: {text}");
    assert!(text.contains("ACCESSRAIL_MAX_GROUPS"), "{text}");
    assert_eq!(s.fake.group_requests.load(Ordering::SeqCst), 2);
    assert_failed_and_untouched(&s, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_larger_than_the_byte_cap_fails_fast() {
    let s = setup(2_000, 100, 1024 * 1024).await;
    let before = good_snapshot(&s).await;
    // One user whose name is 5 MiB long.
    let name = "x".repeat(5 * 1024 * 1024);
    s.fake.set_users(move |_| {
        page(
            "users",
            &[format!(r#"{{"id":1,"name":"{name}","is_active":true}}"#)],
            false,
        )
    });
    let started = Instant::now();
    let err = scan_bounded(&s.engine).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "fails fast: {:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(text.contains("too large"), "{text}");
    assert!(text.contains("get_users"), "names the method: {text}");
    assert!(text.contains("1 MiB"), "names the cap: {text}");
    assert!(text.contains("ACCESSRAIL_MAX_RESPONSE_MIB"), "{text}");
    assert_eq!(
        s.fake.user_requests.load(Ordering::SeqCst),
        1,
        "not retried"
    );
    assert_failed_and_untouched(&s, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_above_i64_max_fails_naming_the_record_and_stores_nothing() {
    let s = setup(2_000, 100, 64 * 1024 * 1024).await;
    // Two ids that would both become i64::MAX in an SQLite INTEGER.
    s.fake.set_users(|_| {
        page(
            "users",
            &[
                user(1),
                r#"{"id":18446744073709551615,"name":"Huge","email":"x@y","is_active":true}"#
                    .into(),
                r#"{"id":9223372036854775808,"name":"Just over","email":"z@y","is_active":true}"#
                    .into(),
            ],
            false,
        )
    });
    let err = scan_bounded(&s.engine).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("user id 18446744073709551615 (email x@y) is larger than"),
        "names the record: {text}"
    );
    assert!(
        s.engine
            .store()
            .current_accounts(&s.conn.id)
            .await
            .unwrap()
            .is_empty(),
        "nothing stored"
    );
    let scans = s.engine.store().scans(&s.conn.id).await.unwrap();
    assert_eq!(scans.last().unwrap().status, ScanStatus::Failed);

    // A group naming a member id out of range fails the same way.
    let before = good_snapshot(&s).await;
    s.fake.set_groups(|_| {
        page(
            "groups",
            &[r#"{"id":4,"name":"QA","user_ids":[1,18446744073709551615]}"#.into()],
            false,
        )
    });
    let err = scan_bounded(&s.engine).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("group id 4 (name QA) refers to member user id 18446744073709551615"),
        "{err}"
    );
    assert_failed_and_untouched(&s, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_id_with_two_records_fails_and_an_identical_repeat_is_accepted() {
    let s = setup(2_000, 100, 64 * 1024 * 1024).await;
    let before = good_snapshot(&s).await;
    s.fake.set_users(|_| {
        page(
            "users",
            &[
                user(1),
                user(2),
                r#"{"id":2,"name":"Somebody else","email":"else@example.com","is_active":true,"role_id":1}"#.into(),
            ],
            false,
        )
    });
    let err = scan_bounded(&s.engine).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("user id 2 (email else@example.com) arrived twice with different data"),
        "names the id: {err}"
    );
    assert_failed_and_untouched(&s, &before).await;

    // The same record twice in a page, and a whole page served again: one copy each.
    s.fake.set_users(|from| {
        if from == 0 {
            let mut users: Vec<String> = (1..=250).map(user).collect();
            users[249] = user(2);
            page("users", &users, true)
        } else {
            let mut users: Vec<String> = (200..=250).map(user).collect();
            users.push(user(251));
            page("users", &users, false)
        }
    });
    let ok = scan_bounded(&s.engine).await.unwrap();
    assert_eq!(ok.users, 251, "ids 1 to 251, once each");
    assert_eq!(
        s.engine
            .store()
            .current_accounts(&s.conn.id)
            .await
            .unwrap()
            .len(),
        251
    );
}
