//! The client against the simulator over real HTTP on port 0: every method, every error class,
//! both editions, older versions, both `get_users` shapes, paging, 429, 500s and lost answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use testrail_client::{
    ApiKey, BaseUrl, Client, Clock, ErrorKind, Event, GroupUpdate, NewGroup, NewUser, RetryPolicy,
    UserUpdate, clock::Sleep,
};
use testrail_sim::{
    Edition, Faults, ManualClock, SeedConfig, Settings, Sim, SimServer, UsersPagination, Version,
};

const ADMIN: &str = "admin@example.com";
const KEY: &str = "sim-admin-key";

/// A clock whose sleeps return at once: it records them and moves itself (and, when linked,
/// the simulator's rate-limit clock) forward.
#[derive(Debug, Clone, Default)]
struct TestClock {
    now: Arc<Mutex<Duration>>,
    sleeps: Arc<Mutex<Vec<Duration>>>,
    sim: Option<ManualClock>,
}

impl TestClock {
    fn linked(sim: ManualClock) -> Self {
        Self {
            sim: Some(sim),
            ..Self::default()
        }
    }
    fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().expect("lock").clone()
    }
}

impl Clock for TestClock {
    fn now(&self) -> Duration {
        *self.now.lock().expect("lock")
    }
    fn sleep(&self, d: Duration) -> Sleep {
        *self.now.lock().expect("lock") += d;
        self.sleeps.lock().expect("lock").push(d);
        if let Some(s) = &self.sim {
            s.advance(d);
        }
        Box::pin(async {})
    }
}

async fn sim_with(
    users: u32,
    groups: u32,
    settings: Settings,
    clock: Option<ManualClock>,
) -> SimServer {
    let seed = SeedConfig {
        users,
        groups,
        seed: 7,
        ..SeedConfig::default()
    };
    let sim = match clock {
        Some(c) => Sim::with_clock(seed, settings, Arc::new(c)),
        None => Sim::new(seed, settings),
    };
    SimServer::start("127.0.0.1:0".parse().expect("addr"), sim)
        .await
        .expect("sim starts")
}

async fn sim(users: u32, groups: u32) -> SimServer {
    sim_with(users, groups, Settings::default(), None).await
}

fn base(server: &SimServer) -> BaseUrl {
    BaseUrl::server(&server.base_url(), false).expect("loopback http is allowed")
}

fn client_as(server: &SimServer, email: &str, key: &str, clock: &TestClock) -> Client {
    Client::builder(base(server), email, ApiKey::new(key).expect("key"))
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("client")
}

fn admin(server: &SimServer, clock: &TestClock) -> Client {
    client_as(server, ADMIN, KEY, clock)
}

fn with_events(
    server: &SimServer,
    clock: &TestClock,
    policy: RetryPolicy,
) -> (Client, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let client = Client::builder(base(server), ADMIN, ApiKey::new(KEY).expect("key"))
        .clock(Arc::new(clock.clone()))
        .retry(policy)
        .on_event(move |e| sink.lock().expect("lock").push(e.clone()))
        .build()
        .expect("client");
    (client, events)
}

fn calls(server: &SimServer, method: &str) -> u64 {
    server
        .sim()
        .stats()
        .by_method
        .get(method)
        .copied()
        .unwrap_or(0)
}

fn add_sim_user(server: &SimServer, email: &str, key: &str, is_admin: bool) -> u64 {
    server.sim().with_instance(|inst| {
        inst.insert_user(testrail_sim::model::User {
            id: 0,
            name: email.to_string(),
            email: email.to_string(),
            is_active: true,
            is_admin,
            role_id: 3,
            email_notifications: true,
            mfa_required: false,
            sso_enabled: false,
            assigned_projects: vec![],
            group_ids: Default::default(),
            api_keys: vec![key.to_string()],
            password: None,
        })
    })
}

#[tokio::test]
async fn every_users_roles_groups_and_projects_method() {
    let server = sim(40, 3).await;
    let clock = TestClock::default();
    let c = admin(&server, &clock);

    let me = c.get_current_user().await.expect("current user");
    assert_eq!(
        (me.id, me.email.as_deref(), me.is_admin),
        (1, Some(ADMIN), Some(true))
    );
    let u2 = c.get_user(2).await.expect("get_user");
    assert_eq!(u2.id, 2);
    let by_email = c
        .get_user_by_email(&u2.email.clone().expect("email").to_uppercase())
        .await
        .expect("by email, any case");
    assert_eq!(by_email.id, 2);

    let users = c.get_users().await.expect("users");
    let snap = server.sim().snapshot();
    assert_eq!(users.len(), snap.users.len());
    for u in &users {
        let s = &snap.users[&u.id];
        assert_eq!(u.name.as_deref(), Some(s.name.as_str()));
        assert_eq!(u.email.as_deref(), Some(s.email.as_str()));
        assert_eq!(u.is_active, Some(s.is_active));
        assert_eq!(u.role_id, Some(s.role_id));
        assert_eq!(
            u.group_ids.clone().unwrap_or_default(),
            s.group_ids.iter().copied().collect::<Vec<_>>()
        );
        assert!(
            u.extra.is_empty(),
            "professional fields are all known: {:?}",
            u.extra
        );
    }

    let roles = c.get_roles().await.expect("roles");
    assert!(
        roles
            .iter()
            .any(|r| r.name.as_deref() == Some("Tester") && r.is_default == Some(true))
    );
    let groups = c.get_groups().await.expect("groups");
    assert_eq!(groups.len(), 3);
    let g1 = c.get_group(groups[0].id).await.expect("group");
    assert_eq!(g1, groups[0]);

    // Writes.
    let created = c
        .add_user(&NewUser {
            role_id: Some(1),
            group_ids: Some(vec![g1.id]),
            ..NewUser::new("Nia Novak", "nia+qa@example.com")
        })
        .await
        .expect("add_user");
    assert_eq!(
        (created.is_active, created.role.as_deref()),
        (Some(true), Some("Lead"))
    );
    assert_eq!(
        c.get_user_by_email("nia+qa@example.com")
            .await
            .expect("plus address")
            .id,
        created.id
    );
    let off = c
        .update_user(
            created.id,
            &UserUpdate {
                is_active: Some(false),
                ..UserUpdate::default()
            },
        )
        .await
        .expect("deactivate");
    assert_eq!(
        (off.is_active, off.role_id, off.name.as_deref()),
        (Some(false), Some(1), Some("Nia Novak"))
    );
    let on = c
        .update_user(
            created.id,
            &UserUpdate {
                is_active: Some(true),
                ..UserUpdate::default()
            },
        )
        .await
        .expect("reactivate");
    assert_eq!(on.is_active, Some(true));

    let g = c
        .add_group(&NewGroup {
            name: "Release".into(),
            user_ids: vec![2, 3],
        })
        .await
        .expect("add_group");
    assert_eq!(g.user_ids, vec![2, 3]);
    let g = c
        .update_group(
            g.id,
            &GroupUpdate {
                user_ids: Some(vec![3, created.id]),
                ..GroupUpdate::default()
            },
        )
        .await
        .expect("update_group");
    assert_eq!(g.user_ids, vec![3, created.id]);
    let g = c
        .update_group(
            g.id,
            &GroupUpdate {
                name: Some("Release Team".into()),
                ..GroupUpdate::default()
            },
        )
        .await
        .expect("rename");
    assert_eq!(
        (g.name.as_deref(), g.user_ids.clone()),
        (Some("Release Team"), vec![3, created.id])
    );
    c.delete_group(g.id).await.expect("delete_group");
    assert_eq!(
        c.get_group(g.id).await.expect_err("gone").kind(),
        ErrorKind::NotFound
    );
    assert!(server.sim().snapshot().memberships_consistent());

    // Projects and project users.
    let projects = c.get_projects().await.expect("projects");
    assert!(!projects.is_empty());
    let p = c.get_project(projects[0].id).await.expect("project");
    assert_eq!(p.id, projects[0].id);
    let members = c
        .project_users(p.id)
        .collect_all()
        .await
        .expect("project users");
    // The simulator's own rule for who reaches a project (what get_users/{project_id} lists).
    let expected: Vec<u64> = server
        .sim()
        .snapshot()
        .project_members(p.id, true)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(members.iter().map(|u| u.id).collect::<Vec<_>>(), expected);
    assert!(clock.sleeps().is_empty(), "nothing failed, nothing waited");
}

#[tokio::test]
async fn error_classes() {
    let server = sim(5, 1).await;
    let clock = TestClock::default();
    add_sim_user(&server, "tess@example.com", "tess-key", false);

    let bad = client_as(&server, ADMIN, "wrong-key", &clock);
    let e = bad.get_current_user().await.expect_err("bad key");
    assert_eq!(
        (e.kind(), e.status()),
        (ErrorKind::InvalidCredentials, Some(401))
    );
    assert!(
        e.testrail_message()
            .is_some_and(|m| m.starts_with("Authentication failed"))
    );

    let tess = client_as(&server, "tess@example.com", "tess-key", &clock);
    assert_eq!(
        tess.get_current_user().await.expect("own record").is_admin,
        Some(false)
    );
    let e = tess.get_users().await.expect_err("not admin");
    assert_eq!(e.kind(), ErrorKind::NotAdministrator);
    assert!(
        e.testrail_message()
            .is_some_and(|m| m.contains("not a TestRail administrator"))
    );
    let e = tess
        .add_user(&NewUser::new("X", "x@example.com"))
        .await
        .expect_err("not admin");
    assert_eq!(e.kind(), ErrorKind::NotAdministrator);

    let c = admin(&server, &clock);
    assert_eq!(
        c.get_user(999).await.expect_err("unknown").kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        c.get_user_by_email("nobody@example.com")
            .await
            .expect_err("unknown")
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        c.get_group(999).await.expect_err("unknown").kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        c.get_project(999).await.expect_err("unknown").kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        c.project_users(999)
            .collect_all()
            .await
            .expect_err("unknown")
            .kind(),
        ErrorKind::NotFound
    );
    let e = c
        .update_user(
            999,
            &UserUpdate {
                is_active: Some(false),
                ..UserUpdate::default()
            },
        )
        .await
        .expect_err("unknown");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = c
        .update_user(
            2,
            &UserUpdate {
                email: Some("not-an-email".into()),
                ..UserUpdate::default()
            },
        )
        .await
        .expect_err("bad");
    assert_eq!(e.kind(), ErrorKind::Validation);
    assert_eq!(
        e.testrail_message(),
        Some("Field :email is not a valid email address.")
    );
    let e = c
        .update_group(
            999,
            &GroupUpdate {
                name: Some("x".into()),
                ..GroupUpdate::default()
            },
        )
        .await
        .expect_err("unknown");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = c
        .update_group(
            1,
            &GroupUpdate {
                user_ids: Some(vec![999]),
                ..GroupUpdate::default()
            },
        )
        .await
        .expect_err("bad member");
    assert_eq!(e.kind(), ErrorKind::Validation);
    let e = c
        .add_user(&NewUser::new("Dup", ADMIN))
        .await
        .expect_err("duplicate");
    assert_eq!(e.kind(), ErrorKind::Validation);

    // API disabled.
    server.sim().set_settings(Settings {
        api_enabled: false,
        ..Settings::default()
    });
    let e = c.get_current_user().await.expect_err("disabled");
    assert_eq!((e.kind(), e.status()), (ErrorKind::ApiDisabled, Some(403)));

    // Maintenance and rate limiting surface once retries are spent.
    let (once, _) = with_events(&server, &clock, RetryPolicy::none());
    server.sim().set_settings(Settings {
        maintenance: true,
        ..Settings::default()
    });
    assert_eq!(
        once.get_current_user()
            .await
            .expect_err("maintenance")
            .kind(),
        ErrorKind::Maintenance
    );
    server.sim().set_settings(Settings::default());
    server.sim().set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let e = once.get_current_user().await.expect_err("500");
    assert_eq!((e.kind(), e.status()), (ErrorKind::Server, Some(500)));
    server.sim().set_faults(Faults {
        drop_rate: 1.0,
        ..Faults::default()
    });
    assert_eq!(
        once.get_current_user().await.expect_err("dropped").kind(),
        ErrorKind::ConnectionLost
    );
    server.sim().set_faults(Faults {
        truncate_rate: 1.0,
        ..Faults::default()
    });
    assert_eq!(
        once.get_current_user().await.expect_err("truncated").kind(),
        ErrorKind::ConnectionLost
    );
    server.sim().set_faults(Faults::default());

    // Timeout.
    server.sim().set_faults(Faults {
        latency_ms: 400,
        ..Faults::default()
    });
    let slow = Client::builder(base(&server), ADMIN, ApiKey::new(KEY).expect("key"))
        .clock(Arc::new(clock.clone()))
        .retry(RetryPolicy::none())
        .timeout(Duration::from_millis(100))
        .build()
        .expect("client");
    assert_eq!(
        slow.get_current_user().await.expect_err("slow").kind(),
        ErrorKind::Timeout
    );
    server.sim().set_faults(Faults::default());

    // Unreachable: nothing listens on the port any more.
    let gone_base = base(&server);
    server.shutdown().await;
    let gone = Client::builder(gone_base, ADMIN, ApiKey::new(KEY).expect("key"))
        .clock(Arc::new(clock.clone()))
        .retry(RetryPolicy::none())
        .build()
        .expect("client");
    let e = gone.get_current_user().await.expect_err("unreachable");
    assert_eq!(e.kind(), ErrorKind::Unreachable);
    assert!(!format!("{e} {e:?}").contains(KEY));
}

#[tokio::test]
async fn unexpected_bodies_are_upstream_bugs() {
    // A scripted server: a user without an id, a non-JSON body, an envelope without its list,
    // a 404 for an unknown email, a redirect.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        for (status, body) in [
            ("200 OK", r#"{"name":"no id"}"#),
            ("200 OK", "<html>login</html>"),
            ("200 OK", r#"{"offset":0,"limit":250}"#),
            (
                "404 Not Found",
                r#"{"error":"Field :email is not a valid email address."}"#,
            ),
            ("302 Found", ""),
        ] {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    let c = Client::builder(
        BaseUrl::server(&format!("http://{addr}"), false).expect("base"),
        ADMIN,
        ApiKey::new(KEY).expect("key"),
    )
    .retry(RetryPolicy::none())
    .build()
    .expect("client");
    let e = c.get_user(1).await.expect_err("no id");
    assert_eq!(e.kind(), ErrorKind::UpstreamBug);
    assert!(e.to_string().contains("id"), "{e}");
    assert_eq!(
        c.get_user(1).await.expect_err("html").kind(),
        ErrorKind::UpstreamBug
    );
    let e = c.get_users().await.expect_err("no users list");
    assert_eq!(e.kind(), ErrorKind::UpstreamBug);
    // get_user_by_email documents 400/404 for an unknown email: both are "not found".
    let e = c
        .get_user_by_email("who@example.com")
        .await
        .expect_err("404");
    assert_eq!((e.kind(), e.status()), (ErrorKind::NotFound, Some(404)));
    // A redirect (e.g. http to https, or a missing sub-path) is not followed.
    let e = c.get_user(1).await.expect_err("redirect");
    assert_eq!((e.kind(), e.status()), (ErrorKind::UpstreamBug, Some(302)));
    assert!(e.to_string().contains("redirect"), "{e}");
}

#[tokio::test]
async fn editions_and_older_versions() {
    let ent = sim_with(
        10,
        2,
        Settings {
            edition: Edition::Enterprise,
            ..Settings::default()
        },
        None,
    )
    .await;
    let clock = TestClock::default();
    let c = admin(&ent, &clock);
    let users = c.get_users().await.expect("users");
    assert!(
        users
            .iter()
            .all(|u| u.sso_enabled.is_some() && u.assigned_projects.is_some())
    );
    let roles = c.get_roles().await.expect("roles");
    assert!(roles.iter().all(|r| r.is_project_admin.is_some()));

    let pro = sim(10, 2).await;
    let c = admin(&pro, &clock);
    let users = c.get_users().await.expect("users");
    assert!(
        users.iter().all(|u| u.sso_enabled.is_none()
            && u.assigned_projects.is_none()
            && u.is_admin.is_some())
    );
    assert!(
        c.get_roles()
            .await
            .expect("roles")
            .iter()
            .all(|r| r.is_project_admin.is_none())
    );

    // 7.4: no groups.
    pro.sim().set_settings(Settings {
        testrail_version: Version(7, 4, 0),
        ..Settings::default()
    });
    assert_eq!(
        c.get_groups().await.expect_err("no groups").kind(),
        ErrorKind::Unsupported
    );
    assert!(c.get_roles().await.is_ok());
    // 7.2: no is_admin / group_ids, no add_user / update_user / get_roles.
    pro.sim().set_settings(Settings {
        testrail_version: Version(7, 2, 0),
        ..Settings::default()
    });
    let me = c.get_current_user().await.expect("current user");
    assert_eq!(
        (me.is_admin, me.group_ids.clone(), me.role_id),
        (None, None, Some(1))
    );
    assert_eq!(
        c.get_roles().await.expect_err("no roles").kind(),
        ErrorKind::Unsupported
    );
    assert_eq!(
        c.add_user(&NewUser::new("X", "x@example.com"))
            .await
            .expect_err("no add")
            .kind(),
        ErrorKind::Unsupported
    );
    assert_eq!(
        c.update_user(
            2,
            &UserUpdate {
                is_active: Some(false),
                ..UserUpdate::default()
            }
        )
        .await
        .expect_err("no update")
        .kind(),
        ErrorKind::Unsupported
    );
    assert_eq!(c.get_users().await.expect("users").len(), 11);
    // 6.5: no get_current_user.
    pro.sim().set_settings(Settings {
        testrail_version: Version(6, 5, 0),
        ..Settings::default()
    });
    assert_eq!(
        c.get_current_user().await.expect_err("too old").kind(),
        ErrorKind::Unsupported
    );
}

/// ceil(n / 250), at least one request.
fn pages(n: usize) -> u64 {
    n.div_ceil(250).max(1) as u64
}

#[tokio::test]
async fn paging_costs_the_minimum_requests() {
    // Totals (administrator included): one short page, exactly one page, exactly two pages,
    // one over, and several pages.
    for people in [9u32, 249, 499, 500, 1100] {
        let server = sim(people, 0).await;
        let clock = TestClock::default();
        let c = admin(&server, &clock);
        let users = c.get_users().await.expect("users");
        let total = people as usize + 1;
        assert_eq!(users.len(), total, "{people}");
        let mut ids: Vec<u64> = users.iter().map(|u| u.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), total, "no duplicates");
        assert_eq!(
            calls(&server, "get_users"),
            pages(total),
            "requests for {total} users"
        );
    }
    // Groups: 250 exactly and 251.
    for groups in [250u32, 251] {
        let server = sim(3, groups).await;
        let c = admin(&server, &TestClock::default());
        assert_eq!(c.get_groups().await.expect("groups").len(), groups as usize);
        assert_eq!(calls(&server, "get_groups"), pages(groups as usize));
        assert_eq!(c.get_roles().await.expect("roles").len(), 6);
        assert_eq!(calls(&server, "get_roles"), 1);
    }
}

#[tokio::test]
async fn both_get_users_shapes() {
    let server = sim_with(
        600,
        0,
        Settings {
            users_pagination: UsersPagination::Array,
            ..Settings::default()
        },
        None,
    )
    .await;
    let c = admin(&server, &TestClock::default());
    let users = c.get_users().await.expect("legacy array");
    assert_eq!(users.len(), 601);
    assert_eq!(
        calls(&server, "get_users"),
        1,
        "the bare array holds everyone"
    );
    // A legacy array of exactly 250 is checked once more; the repeat ends the walk cleanly.
    let server = sim_with(
        249,
        0,
        Settings {
            users_pagination: UsersPagination::Array,
            ..Settings::default()
        },
        None,
    )
    .await;
    let c = admin(&server, &TestClock::default());
    assert_eq!(c.get_users().await.expect("legacy array").len(), 250);
    assert_eq!(calls(&server, "get_users"), 2);
}

#[tokio::test]
async fn a_repeated_page_never_loops() {
    let server = sim(700, 0).await;
    let clock = TestClock::default();
    let (c, events) = with_events(&server, &clock, RetryPolicy::default());
    // Every page after the first repeats the previous one: the walk stops with an error.
    server.sim().set_faults(Faults {
        repeat_page_rate: 1.0,
        methods: vec!["get_users".into()],
        ..Faults::default()
    });
    let e = c.get_users().await.expect_err("repeats forever");
    assert_eq!(e.kind(), ErrorKind::UpstreamBug);
    assert!(e.to_string().contains("same page"), "{e}");
    assert_eq!(
        calls(&server, "get_users"),
        3,
        "first page, the repeat, one more try"
    );
    // An occasional repeat is fetched again and the walk completes without duplicates.
    server.sim().reset();
    server.sim().set_faults(Faults {
        repeat_page_rate: 0.5,
        seed: 4,
        methods: vec!["get_users".into()],
        ..Faults::default()
    });
    events.lock().expect("lock").clear();
    let users = c.get_users().await.expect("walk completes");
    assert_eq!(users.len(), 701);
    let repeats = events
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| matches!(e, Event::Retrying { reason, .. } if reason.contains("repeated")))
        .count();
    assert!(repeats >= 1, "this seed repeats at least one page");
    assert_eq!(calls(&server, "get_users"), 3 + repeats as u64);
}

#[tokio::test]
async fn rate_limit_honours_retry_after() {
    let sim_clock = ManualClock::default();
    let server = sim_with(
        5,
        0,
        Settings {
            rate_limit_per_minute: Some(4),
            ..Settings::default()
        },
        Some(sim_clock.clone()),
    )
    .await;
    sim_clock.advance(Duration::from_secs(50));
    let clock = TestClock::linked(sim_clock);
    let (c, events) = with_events(&server, &clock, RetryPolicy::default());
    for _ in 0..6 {
        c.get_user(1).await.expect("served after waiting");
    }
    assert_eq!(server.sim().stats().rate_limited, 1);
    assert_eq!(
        clock.sleeps(),
        vec![Duration::from_secs(10)],
        "waited exactly Retry-After"
    );
    assert!(events.lock().expect("lock").contains(&Event::RateLimited {
        method: "get_user".into(),
        wait: Duration::from_secs(10)
    }));
    // Without retries the 429 surfaces with its Retry-After.
    let (once, _) = with_events(&server, &clock, RetryPolicy::none());
    for _ in 0..2 {
        once.get_user(1).await.expect("within the limit");
    }
    let e = once.get_user(1).await.expect_err("limited");
    assert_eq!(
        (e.kind(), e.retry_after()),
        (ErrorKind::RateLimited, Some(Duration::from_secs(60)))
    );
}

#[tokio::test]
async fn injected_500s_and_dropped_connections_are_retried() {
    let server = sim(600, 0).await;
    let clock = TestClock::default();
    let (c, events) = with_events(
        &server,
        &clock,
        RetryPolicy {
            max_attempts: 8,
            ..RetryPolicy::default()
        },
    );
    server.sim().set_faults(Faults {
        error_rate: 0.4,
        drop_rate: 0.2,
        seed: 11,
        ..Faults::default()
    });
    let users = c.get_users().await.expect("retries get through");
    assert_eq!(users.len(), 601);
    let retries = events
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| matches!(e, Event::Retrying { .. }))
        .count();
    assert!(retries > 0);
    assert_eq!(
        calls(&server, "get_users"),
        3 + retries as u64,
        "one extra request per retry"
    );
    // Backoff delays grow and stay bounded.
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), retries);
    assert!(
        sleeps
            .iter()
            .all(|d| *d >= Duration::from_millis(500) && *d <= Duration::from_secs(60))
    );

    // 400/401/403/404 never retry.
    let before = server.sim().stats().requests_total;
    server.sim().set_faults(Faults::default());
    let _ = c.get_user(999).await;
    let bad = client_as(&server, ADMIN, "nope", &clock);
    let _ = bad.get_user(1).await;
    assert_eq!(server.sim().stats().requests_total, before + 2);
}

#[tokio::test]
async fn a_lost_add_user_answer_never_creates_a_duplicate() {
    let server = sim(3, 0).await;
    // Only the client can prevent the duplicate: TestRail here accepts two accounts per email.
    server.sim().set_settings(Settings {
        unique_emails: false,
        ..Settings::default()
    });
    server.sim().set_faults(Faults {
        drop_rate: 1.0,
        methods: vec!["add_user".into()],
        ..Faults::default()
    });
    let clock = TestClock::default();
    let (c, events) = with_events(&server, &clock, RetryPolicy::default());
    let emails = ["ana@example.com", "ben+ci@example.com", "cy@example.com"];
    for email in emails {
        let u = c
            .add_user(&NewUser::new("Someone", email))
            .await
            .expect("recovered by lookup");
        assert_eq!(u.email.as_deref(), Some(email));
    }
    let snap = server.sim().snapshot();
    for email in emails {
        assert_eq!(
            snap.users.values().filter(|u| u.email == email).count(),
            1,
            "{email}"
        );
    }
    assert_eq!(calls(&server, "add_user"), 3, "add_user sent once per user");
    assert_eq!(calls(&server, "get_user_by_email"), 3);
    assert_eq!(
        events
            .lock()
            .expect("lock")
            .iter()
            .filter(|e| matches!(e, Event::WriteRecovered { found: true, .. }))
            .count(),
        3
    );
    // A 500 before any effect: the lookup finds nothing and the request is sent again.
    server.sim().set_faults(Faults {
        fail_after_requests: Some(0),
        methods: vec!["add_user".into()],
        ..Faults::default()
    });
    let (once_more, _) = with_events(
        &server,
        &clock,
        RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        },
    );
    let e = once_more
        .add_user(&NewUser::new("Dee", "dee@example.com"))
        .await
        .expect_err("always 500");
    assert_eq!(e.kind(), ErrorKind::Server);
    assert_eq!(calls(&server, "add_user"), 5);
    assert!(
        server
            .sim()
            .snapshot()
            .user_by_email("dee@example.com")
            .is_none()
    );
    server.sim().set_faults(Faults {
        error_rate: 0.5,
        seed: 5,
        methods: vec!["add_user".into()],
        ..Faults::default()
    });
    let (patient, _) = with_events(
        &server,
        &clock,
        RetryPolicy {
            max_attempts: 10,
            ..RetryPolicy::default()
        },
    );
    patient
        .add_user(&NewUser::new("Dee", "dee@example.com"))
        .await
        .expect("eventually");
    assert_eq!(
        server
            .sim()
            .snapshot()
            .users
            .values()
            .filter(|u| u.email == "dee@example.com")
            .count(),
        1
    );
}

#[tokio::test]
async fn request_budget_paces_through_the_clock() {
    let server = sim(1100, 0).await; // 5 pages
    let clock = TestClock::default();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let c = Client::builder(base(&server), ADMIN, ApiKey::new(KEY).expect("key"))
        .clock(Arc::new(clock.clone()))
        .request_budget(Some(2))
        .on_event(move |e| sink.lock().expect("lock").push(e.clone()))
        .build()
        .expect("client");
    assert_eq!(c.get_users().await.expect("users").len(), 1101);
    assert_eq!(calls(&server, "get_users"), 5);
    // 2 a minute: requests 3-4 wait for the first minute to pass, request 5 for the second.
    let total: Duration = clock.sleeps().iter().sum();
    assert_eq!(total, Duration::from_secs(120));
    assert!(
        events
            .lock()
            .expect("lock")
            .iter()
            .any(|e| matches!(e, Event::BudgetWait { .. }))
    );
}

#[tokio::test]
async fn the_key_never_leaks() {
    let server = sim(2, 0).await;
    let secret = "k3y-that-must-not-leak";
    let clock = TestClock::default();
    let c = client_as(&server, ADMIN, secret, &clock);
    let e = c.get_current_user().await.expect_err("wrong key");
    let texts = format!("{c:?} {e} {e:?} {:?}", ApiKey::new(secret));
    assert!(!texts.contains(secret), "{texts}");
    let builder = Client::builder(base(&server), ADMIN, ApiKey::new(secret).expect("key"));
    assert!(!format!("{builder:?}").contains(secret));
}
