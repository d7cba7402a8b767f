//! End to end: the `accessrail` binary against the TestRail simulator over real HTTP on port
//! 0, with a fresh data directory (SQLite file) per test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;
use serde_json::{Value, json};
use testrail_sim::{Faults, Settings, Version};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_reports_each_failure_with_guidance() {
    let e = env(5, 1).await;
    // Bad key.
    let out = e.connect_as(ADMIN, "wrong-key", &[]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("Invalid email or API key"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("copied in full with no extra spaces"));
    assert!(out.stdout.contains("Nothing was saved"));
    // Non-admin key.
    e.add_user("tess@example.com", Some("tess-key"), false);
    let out = e
        .connect_as("tess@example.com", "tess-key", &["--json"])
        .await;
    assert_eq!(out.code, 1);
    let report = out.json();
    let admin = &report["test"]["checks"][2];
    assert_eq!(
        (admin["name"].as_str(), admin["status"].as_str()),
        (Some("administrator"), Some("fail"))
    );
    assert!(
        admin["message"]
            .as_str()
            .unwrap()
            .contains("not an administrator key")
    );
    assert_eq!(report["saved"], Value::Null);
    // API disabled.
    e.sim().set_settings(Settings {
        api_enabled: false,
        ..Settings::default()
    });
    let out = e.connect_as(ADMIN, KEY, &[]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("API is disabled")
            && out.stdout.contains("Administration > Site Settings > API"),
        "{}",
        out.stdout
    );
    // A version without groups: connects, with a warning.
    e.sim().set_settings(Settings {
        testrail_version: Version(7, 4, 0),
        ..Settings::default()
    });
    let out = e.connect_as(ADMIN, KEY, &["--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let groups = &out.json()["test"]["checks"][3];
    assert_eq!(groups["status"], "warn");
    assert!(
        groups["message"]
            .as_str()
            .unwrap()
            .contains("group features are off")
    );
    // A version without is_admin: the get_users probe decides.
    e.sim().set_settings(Settings {
        testrail_version: Version(7, 2, 0),
        ..Settings::default()
    });
    let out = e.connect_as(ADMIN, KEY, &["--replace", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(
        out.json()["test"]["checks"][2]["message"],
        "can list every user (get_users)"
    );
    let out = e
        .connect_as("tess@example.com", "tess-key", &["--replace", "--json"])
        .await;
    assert_eq!(out.code, 1);
    assert!(
        out.json()["test"]["checks"][2]["message"]
            .as_str()
            .unwrap()
            .contains("get_users was refused")
    );
    // Unreachable.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let out = e
        .run_in(
            e.data(),
            &[
                "connect",
                "--base-url",
                &format!("http://{dead}"),
                "--email",
                ADMIN,
                "--api-key-stdin",
                "--name",
                "x",
            ],
            Some(KEY),
        )
        .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("cannot reach TestRail"),
        "{}",
        out.stdout
    );
    // A name in use needs --replace.
    e.sim().set_settings(Settings::default());
    let out = e.connect_as(ADMIN, KEY, &[]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--replace"), "{}", out.stderr);
    // `accessrail test` on the saved connection.
    let out = e.run(&["test"]).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.contains("Test passed."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_equals_the_simulator_field_by_field() {
    let e = env(60, 5).await;
    e.connect().await;
    let scan = e.scan().await;
    assert_eq!(scan["users"], 61);
    let users = e.users(&[]).await;
    let snap = e.sim().snapshot();
    assert_eq!(users.len(), snap.users.len());
    for u in &users {
        let s = &snap.users[&u["id"].as_u64().unwrap()];
        assert_eq!(u["email"], s.email.as_str());
        assert_eq!(u["name"], s.name.as_str());
        assert_eq!(u["is_active"], s.is_active);
        assert_eq!(u["is_admin"], s.is_admin);
        assert_eq!(u["role_id"], s.role_id);
        assert_eq!(u["role"], snap.role(s.role_id).unwrap().name.as_str());
        assert_eq!(
            u["group_ids"],
            json!(s.group_ids.iter().collect::<Vec<_>>())
        );
        let names: Vec<&str> = s
            .group_ids
            .iter()
            .map(|g| snap.groups[g].name.as_str())
            .collect();
        assert_eq!(u["groups"], json!(names));
        for key in ["identity", "identity_status", "match"] {
            assert!(u.get(key).is_some(), "{key}");
        }
    }
    let groups = e.run(&["groups", "--json"]).await.json();
    assert_eq!(groups.as_array().unwrap().len(), 5);
    for g in groups.as_array().unwrap() {
        let s = &snap.groups[&g["id"].as_u64().unwrap()];
        let mut members = s.user_ids.clone();
        members.sort_unstable();
        assert_eq!(
            (g["name"].as_str().unwrap(), g["user_ids"].clone()),
            (s.name.as_str(), json!(members))
        );
    }
    let roles = e.run(&["roles", "--json"]).await.json();
    assert_eq!(roles.as_array().unwrap().len(), snap.roles.len());
    // Filters: inactive, role, group, and an unknown role is a usage error.
    let inactive = e.users(&["--inactive"]).await;
    assert_eq!(
        inactive.len(),
        snap.users.values().filter(|u| !u.is_active).count()
    );
    let leads = e.users(&["--role", "lead"]).await;
    assert_eq!(
        leads.len(),
        snap.users.values().filter(|u| u.role_id == 1).count()
    );
    assert_eq!(e.users(&["--role", "1"]).await.len(), leads.len());
    let qa = e.users(&["--group", "QA"]).await;
    assert_eq!(qa.len(), snap.groups[&1].user_ids.len());
    let out = e.run(&["users", "--role", "Astronaut", "--json"]).await;
    assert_eq!(out.code, 2);
    let err: Value = serde_json::from_str(out.stderr.trim()).unwrap();
    assert_eq!(err["error"]["code"], "usage");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Astronaut")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_costs_the_minimum_requests_and_a_rescan_writes_no_account_rows() {
    // 500 users in all (an exact multiple of 250) and exactly 250 groups.
    let e = env(499, 250).await;
    e.connect().await;
    e.sim().reset();
    let scan = e.scan().await;
    let stats = e.sim().stats();
    assert_eq!(stats.by_method.get("get_users"), Some(&2));
    assert_eq!(stats.by_method.get("get_groups"), Some(&1));
    assert_eq!(stats.by_method.get("get_roles"), Some(&1));
    // Projects: ceil(P/250) pages of the list, then one read of each project's access.
    let projects = e.sim().snapshot().projects.len() as u64;
    assert!(projects > 0);
    assert_eq!(stats.by_method.get("get_projects"), Some(&1));
    assert_eq!(stats.by_method.get("get_project"), Some(&projects));
    assert_eq!(stats.requests_total, 4 + 1 + projects);
    assert_eq!(
        (scan["requests"].clone(), scan["minimum_requests"].clone()),
        (json!(5 + projects), json!(5 + projects))
    );
    assert_eq!(scan["account_rows_written"], 500);
    let again = e.scan().await;
    assert_eq!(again["account_rows_written"], 0, "nothing changed upstream");
    assert_eq!(again["rows_written"], 0);
    assert_eq!(again["changes"], 0);
    // 501 users: one more page.
    e.add_user("one.more@example.com", None, false);
    e.sim().reset();
    let e2 = env(500, 1).await;
    e2.connect().await;
    e2.sim().reset();
    let scan = e2.scan().await;
    let projects = e2.sim().snapshot().projects.len() as u64;
    assert_eq!(
        (scan["requests"].clone(), scan["minimum_requests"].clone()),
        (json!(6 + projects), json!(6 + projects))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_failing_half_way_keeps_the_last_good_snapshot() {
    let e = env(600, 2).await;
    e.connect().await;
    e.scan().await;
    let before = e.users(&[]).await;
    // Upstream changes, then the scan dies after its first request.
    e.sim().with_instance(|inst| {
        if let Some(u) = inst.users.get_mut(&2) {
            u.name = "Renamed During Outage".into();
        }
    });
    e.sim().set_faults(Faults {
        fail_after_requests: Some(1),
        ..Faults::default()
    });
    let out = e.run(&["scan"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("last good scan is kept"),
        "{}",
        out.stderr
    );
    assert_eq!(
        e.users(&[]).await,
        before,
        "the failed scan changed nothing"
    );
    let scans = e.run(&["scans", "--json"]).await.json();
    let last = scans.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "failed");
    assert!(last["error"].as_str().unwrap().contains("reading users"));
    let summary = e.run(&["summary", "--json"]).await.json();
    assert_eq!(summary["last_scan"], 1);
    // Once TestRail recovers, the next scan sees the change.
    e.sim().set_faults(Faults::default());
    e.scan().await;
    let after = e.users(&[]).await;
    assert_eq!(
        after.iter().find(|u| u["id"] == 2).unwrap()["name"],
        "Renamed During Outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_cases_aliases_ambiguity_forgotten_and_pins() {
    let e = env(0, 0).await;
    let ana = e.add_user("Ana.Silva@Example.com", None, false);
    let ben = e.add_user("ben@example.com", None, false);
    let shared = e.add_user("shared@example.com", None, false);
    let stray = e.add_user("stray@example.com", None, false);
    let gone = e.sim().with_instance(|inst| {
        inst.insert_user(testrail_sim::model::User {
            id: 0,
            name: "F12345678901234".into(),
            email: "F12345678901234".into(),
            is_active: false,
            is_admin: false,
            role_id: 3,
            email_notifications: false,
            mfa_required: false,
            sso_enabled: false,
            assigned_projects: vec![],
            group_ids: Default::default(),
            api_keys: vec![],
            password: None,
        })
    });
    e.connect().await;
    e.scan().await;
    let csv = "id,name,email,other_emails,status,department\n\
               p-ana,Ana Silva, ana.silva@example.COM ,,active,QA\n\
               p-ben,Ben Okafor,b.okafor@example.com,ben@example.com,leaver,Eng\n\
               p-s1,Sam One,shared@example.com,,active,\n\
               p-s2,Sam Two,SHARED@example.com,,active,\n\
               p-admin,Admin,admin@example.com,,active,IT\n";
    let file = e.data().join("people.csv");
    std::fs::write(&file, csv).unwrap();
    let out = e
        .run(&["identities", "import", file.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let users = e.users(&[]).await;
    let by = |id: u64| users.iter().find(|u| u["id"] == id).unwrap().clone();
    assert_eq!(
        (by(ana)["match"].clone(), by(ana)["identity"].clone()),
        (json!("matched"), json!("p-ana"))
    );
    assert_eq!(
        (
            by(ben)["identity"].clone(),
            by(ben)["identity_status"].clone()
        ),
        (json!("p-ben"), json!("leaver"))
    );
    assert_eq!(by(shared)["match"], "ambiguous");
    assert_eq!(by(shared)["identity"], Value::Null);
    assert_eq!(by(stray)["match"], "unmatched");
    assert_eq!(by(gone)["match"], "forgotten");
    let unmatched = e.users(&["--unmatched"]).await;
    assert_eq!(
        unmatched
            .iter()
            .map(|u| u["id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![stray]
    );
    assert_eq!(e.users(&["--ambiguous"]).await.len(), 1);
    let summary = e.run(&["summary", "--json"]).await.json();
    assert_eq!(summary["active_accounts_of_leavers"], 1);
    assert_eq!(summary["unmatched_active_accounts"], 1);
    // Pin and exclude by hand; both survive a rescan.
    let out = e.run(&["match", "set", "stray@example.com", "p-ana"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = e
        .run(&["match", "clear", &shared.to_string(), "p-s2"])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    e.scan().await;
    let users = e.users(&[]).await;
    let by = |id: u64| users.iter().find(|u| u["id"] == id).unwrap().clone();
    assert_eq!(
        (by(stray)["identity"].clone(), by(stray)["pinned"].clone()),
        (json!("p-ana"), json!(true))
    );
    assert_eq!(
        (by(shared)["match"].clone(), by(shared)["identity"].clone()),
        (json!("matched"), json!("p-s1")),
        "excluding one of the two claimants resolves the ambiguity"
    );
    // Unknown identity or account: usage errors.
    assert_eq!(
        e.run(&["match", "set", "stray@example.com", "nobody"])
            .await
            .code,
        2
    );
    assert_eq!(
        e.run(&["match", "set", "who@example.com", "p-ana"])
            .await
            .code,
        2
    );
    // A full import without Ben marks him gone (still matched); a partial one does not.
    std::fs::write(
        &file,
        "id,name,email,other_emails,status\np-ana,Ana,ana.silva@example.com,,active\n",
    )
    .unwrap();
    let out = e
        .run(&["identities", "import", file.to_str().unwrap(), "--partial"])
        .await;
    assert!(out.stdout.contains("0 marked gone"), "{}", out.stdout);
    let out = e
        .run(&["identities", "import", file.to_str().unwrap()])
        .await;
    assert!(out.stdout.contains("4 marked gone"), "{}", out.stdout);
    let users = e.users(&[]).await;
    assert_eq!(
        users.iter().find(|u| u["id"] == ben).unwrap()["identity_status"],
        "gone"
    );
    // Malformed rows are reported with line numbers, and nothing is imported.
    std::fs::write(&file, "id,name,email,other_emails,status\nx1,X,x@example.com,,active\nx2,Y,not-an-email,,active\nx3,Z,z@example.com,,fired\n").unwrap();
    let out = e
        .run(&["identities", "import", file.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("line 3")
            && out.stderr.contains("line 4")
            && out.stderr.contains("nothing was imported"),
        "{}",
        out.stderr
    );
    let ids = e.run(&["identities", "--json"]).await.json();
    assert!(!ids.as_array().unwrap().iter().any(|i| i["id"] == "x1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_history_and_access_at_each_scan() {
    let e = env(20, 2).await;
    e.connect().await;
    let first = e.scan().await;
    let at_first = e.users(&[]).await;
    // Upstream edits through TestRail's own API.
    let http = reqwest_like_post(&e).await;
    http("update_user/2", json!({"is_active": false})).await;
    http(
        "update_user/3",
        json!({"name": "Renamed Person", "role_id": 1}),
    )
    .await;
    http("update_user/4", json!({"email": "new.address@example.com"})).await;
    http("update_group/1", json!({"user_ids": [5, 6]})).await;
    http("add_group", json!({"name": "Auditors", "user_ids": [7]})).await;
    http("update_group/2", json!({"name": "Developers (renamed)"})).await;
    let second = e.scan().await;
    assert!(second["changes"].as_u64().unwrap() >= 7);
    let changes = e
        .run(&[
            "changes",
            "--json",
            "--scan",
            &second["scan_id"].to_string(),
        ])
        .await
        .json();
    let kinds: std::collections::BTreeSet<&str> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    for k in [
        "account_deactivated",
        "account_renamed",
        "role_changed",
        "email_changed",
        "group_joined",
        "group_left",
        "group_created",
        "group_renamed",
    ] {
        assert!(kinds.contains(k), "{k} missing from {kinds:?}");
    }
    http("delete_group/1", json!({})).await;
    http("update_user/2", json!({"is_active": true})).await;
    e.scan().await;
    let changes = e.run(&["changes", "--json", "--since", "1d"]).await.json();
    let kinds: Vec<&str> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"group_deleted") && kinds.contains(&"account_reactivated"));
    assert_eq!(e.run(&["changes", "--since", "someday"]).await.code, 2);
    // Who had access at scan 1: exactly what the first scan saw.
    let then = e.users(&["--at-scan", &first["scan_id"].to_string()]).await;
    let strip = |v: &Vec<Value>| {
        v.iter()
            .map(|u| {
                (
                    u["id"].clone(),
                    u["name"].clone(),
                    u["email"].clone(),
                    u["is_active"].clone(),
                    u["role_id"].clone(),
                    u["group_ids"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&then), strip(&at_first));
    let scans = e.run(&["scans", "--json"]).await.json();
    let seats: Vec<u64> = scans
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["active_seats"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seats[1] + 1,
        seats[0],
        "one deactivation between scan 1 and 2"
    );
    assert_eq!(seats[2], seats[0]);
}

/// Posts to the simulator the way a TestRail admin's own tooling would.
async fn reqwest_like_post(
    e: &Env,
) -> impl Fn(&'static str, Value) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
{
    let base = e.server.base_url();
    move |route: &'static str, body: Value| {
        let base = base.clone();
        Box::pin(async move {
            let client = testrail_client::Client::builder(
                testrail_client::BaseUrl::server(&base, false).unwrap(),
                ADMIN,
                testrail_client::ApiKey::new(KEY).unwrap(),
            )
            .build()
            .unwrap();
            let (method, id) = route
                .split_once('/')
                .map_or((route, None), |(m, i)| (m, i.parse::<u64>().ok()));
            match (method, id) {
                ("update_user", Some(id)) => {
                    let upd: testrail_client::UserUpdate = testrail_client::UserUpdate {
                        is_active: body["is_active"].as_bool(),
                        name: body["name"].as_str().map(Into::into),
                        email: body["email"].as_str().map(Into::into),
                        role_id: body["role_id"].as_u64(),
                        ..Default::default()
                    };
                    client.update_user(id, &upd).await.unwrap();
                }
                ("update_group", Some(id)) => {
                    let upd = testrail_client::GroupUpdate {
                        name: body["name"].as_str().map(Into::into),
                        user_ids: body["user_ids"]
                            .as_array()
                            .map(|a| a.iter().filter_map(Value::as_u64).collect()),
                    };
                    client.update_group(id, &upd).await.unwrap();
                }
                ("add_group", None) => {
                    let g = testrail_client::NewGroup {
                        name: body["name"].as_str().unwrap().into(),
                        user_ids: body["user_ids"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter_map(Value::as_u64)
                            .collect(),
                    };
                    client.add_group(&g).await.unwrap();
                }
                ("delete_group", Some(id)) => client.delete_group(id).await.unwrap(),
                other => panic!("unexpected {other:?}"),
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_never_in_plaintext() {
    let e = env(10, 1).await;
    let mut outputs = vec![e.connect().await];
    for args in [
        vec!["connections"],
        vec!["connections", "--json"],
        vec!["test"],
        vec!["test", "--json"],
        vec!["scan"],
        vec!["users"],
        vec!["summary", "--json"],
        vec!["rotate-master-key"],
        vec!["scan", "--json"],
    ] {
        let out = e.run(&args).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        outputs.push(out);
    }
    // A failure path too.
    e.sim().set_settings(Settings {
        api_enabled: false,
        ..Settings::default()
    });
    outputs.push(e.run(&["scan"]).await);
    outputs.push(e.run(&["test", "--json"]).await);
    for o in &outputs {
        assert!(
            !o.stdout.contains(KEY) && !o.stderr.contains(KEY),
            "leak in {}\n{}",
            o.stdout,
            o.stderr
        );
    }
    let files = all_files(e.data());
    assert!(files.iter().any(|f| f.ends_with("accessrail.db")));
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "plaintext key in {}",
            f.display()
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(e.data().join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_lease_and_master_key_rotation() {
    let e = env(5, 1).await;
    e.connect().await;
    // A second instance: commands then need --connection.
    let other = env(3, 0).await;
    let base = other.server.base_url();
    let out = e
        .run_in(
            e.data(),
            &[
                "connect",
                "--base-url",
                &base,
                "--email",
                ADMIN,
                "--api-key-stdin",
                "--name",
                "second",
            ],
            Some(KEY),
        )
        .await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    let list = e.run(&["connections", "--json"]).await.json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let out = e.run(&["scan"]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--connection"), "{}", out.stderr);
    assert_eq!(e.run(&["scan", "--connection", "second"]).await.code, 0);
    // Only one scan of a connection at a time, across processes: hold the lease elsewhere.
    let store = accessrail_store::SqliteStore::open(&e.data().join("accessrail.db"))
        .await
        .unwrap();
    let conn = accessrail_store::Store::connection(&store, "acme")
        .await
        .unwrap()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        accessrail_store::Store::acquire_lease(
            &store,
            &format!("scan:{}", conn.id),
            "another process",
            now,
            600
        )
        .await
        .unwrap()
        .is_some()
    );
    let out = e.run(&["scan", "--connection", "acme"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("already running"), "{}", out.stderr);
    accessrail_store::Store::release_lease(&store, &format!("scan:{}", conn.id), "another process")
        .await
        .unwrap();
    assert_eq!(e.run(&["scan", "--connection", "acme"]).await.code, 0);
    // Rotation: a new key id, and scans still decrypt the key.
    let key_before = std::fs::read_to_string(e.data().join("master.key")).unwrap();
    let out = e.run(&["rotate-master-key", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["resealed"], 2);
    assert_ne!(
        std::fs::read_to_string(e.data().join("master.key")).unwrap(),
        key_before
    );
    assert!(!e.data().join("master.key.previous").exists());
    assert_eq!(e.run(&["scan", "--connection", "acme"]).await.code, 0);
    // Another master key cannot open the secrets.
    let out = e
        .run_in(e.data(), &["scan", "--connection", "acme"], None)
        .await;
    assert_eq!(out.code, 0);
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_accessrail"));
    let wrong = cmd
        .args(["scan", "--connection", "acme"])
        .env("ACCESSRAIL_DATA_DIR", e.data())
        .env(
            "ACCESSRAIL_MASTER_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .output()
        .await
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("master key"));
    // Removing a connection.
    assert_eq!(e.run(&["connections", "remove", "second"]).await.code, 0);
    assert_eq!(e.run(&["connections", "remove", "second"]).await.code, 2);
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(1, 0).await;
    let out = e
        .run_in(
            dir.path(),
            &["demo", "--no-serve", "--users", "40", "--json"],
            None,
        )
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["scan"]["users"], 41);
    assert_eq!(v["scan"]["requests"], v["scan"]["minimum_requests"]);
    assert!(v["summary"]["unmatched_active_accounts"].as_u64().unwrap() >= 1);
    assert_eq!(v["summary"]["active_accounts_of_leavers"], 1);
}

// ---- provisioning ---------------------------------------------------------------------------

fn outcome(out: &Out) -> String {
    out.json()["result"]["results"][0]["outcome"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_actions_no_ops_and_errors() {
    let e = env(12, 2).await;
    e.connect().await;
    e.scan().await;
    let target = "pat.doe@example.com";
    let pat = e.add_user(target, None, false);
    e.scan().await;

    // Read-only until enabled; a dry run works and changes nothing.
    let out = e.prov(&["deactivate", "--email", target]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("provisioning is off"), "{}", out.stderr);
    let out = e
        .prov(&["deactivate", "--email", target, "--dry-run"])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("update_user/") && out.stdout.contains("dry run"),
        "{}",
        out.stdout
    );
    assert!(e.user(target).is_active);
    assert_eq!(e.stat("update_user"), 0);
    assert_eq!(e.run(&["provisioning", "enable"]).await.code, 0);

    // Deactivate, then again as a no-op; the store reflects it at once, with the audit entry.
    let out = e.prov(&["deactivate", "--email", target, "--json"]).await;
    assert_eq!(
        (out.code, outcome(&out)),
        (0, "done".to_string()),
        "{}",
        out.stderr
    );
    assert!(!e.user(target).is_active);
    let stored = e.users(&[]).await;
    assert_eq!(
        stored.iter().find(|u| u["id"] == pat).unwrap()["is_active"],
        false,
        "no scan needed"
    );
    let changes = e.run(&["changes", "--json"]).await.json();
    let ch = changes
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "account_deactivated")
        .unwrap()
        .clone();
    assert!(ch["audit_id"].as_i64().is_some());
    let out = e.prov(&["deactivate", "--email", target, "--json"]).await;
    assert_eq!((out.code, outcome(&out)), (0, "noop".to_string()));
    // A rescan finds nothing new (the store already knew).
    assert_eq!(e.scan().await["changes"], 0);

    let out = e.prov(&["reactivate", "--email", target, "--json"]).await;
    assert_eq!(outcome(&out), "done");
    assert!(e.user(target).is_active);
    assert_eq!(
        outcome(&e.prov(&["reactivate", "--email", target, "--json"]).await),
        "noop"
    );

    let out = e
        .prov(&["set-role", "--email", target, "--role", "lead", "--json"])
        .await;
    assert_eq!(outcome(&out), "done", "{}", out.stderr);
    assert_eq!(e.user(target).role_id, 1);
    assert_eq!(
        outcome(
            &e.prov(&["set-role", "--email", target, "--role", "Lead", "--json"])
                .await
        ),
        "noop"
    );

    let out = e
        .prov(&["add-to-group", "--email", target, "--group", "qa", "--json"])
        .await;
    assert_eq!(outcome(&out), "done", "{}", out.stderr);
    assert!(e.sim().snapshot().groups[&1].user_ids.contains(&pat));
    assert_eq!(
        outcome(
            &e.prov(&["add-to-group", "--email", target, "--group", "QA", "--json"])
                .await
        ),
        "noop"
    );
    let stored = e.run(&["groups", "--json"]).await.json();
    assert!(
        stored[0]["user_ids"]
            .as_array()
            .unwrap()
            .contains(&json!(pat)),
        "stored membership updated at once"
    );
    let out = e
        .prov(&[
            "remove-from-group",
            "--email",
            target,
            "--group",
            "1",
            "--json",
        ])
        .await;
    assert_eq!(outcome(&out), "done");
    assert!(!e.sim().snapshot().groups[&1].user_ids.contains(&pat));
    assert_eq!(
        outcome(
            &e.prov(&[
                "remove-from-group",
                "--email",
                target,
                "--group",
                "QA",
                "--json"
            ])
            .await
        ),
        "noop"
    );

    // Create; an existing email is never created twice; --reconcile brings it in line.
    let out = e
        .prov(&[
            "create-user",
            "--name",
            "Nia Novak",
            "--email",
            "nia@example.com",
            "--role",
            "Designer",
            "--group",
            "QA",
            "--json",
        ])
        .await;
    assert_eq!(outcome(&out), "done", "{}", out.stderr);
    let nia = e.user("nia@example.com");
    assert!(nia.is_active && nia.role_id == 2 && nia.group_ids.contains(&1));
    let stored = e.users(&[]).await;
    let stored_nia = stored
        .iter()
        .find(|u| u["id"] == nia.id)
        .expect("stored at once")
        .clone();
    assert_eq!(
        (stored_nia["role"].clone(), stored_nia["group_ids"].clone()),
        (json!("Designer"), json!([1]))
    );
    let out = e
        .prov(&[
            "create-user",
            "--name",
            "Nia",
            "--email",
            "NIA@example.com",
            "--json",
        ])
        .await;
    assert_eq!(outcome(&out), "noop");
    assert_eq!(e.stat("add_user"), 1);
    e.prov(&["deactivate", "--email", "nia@example.com"]).await;
    let out = e
        .prov(&[
            "create-user",
            "--name",
            "Nia",
            "--email",
            "nia@example.com",
            "--role",
            "Lead",
            "--reconcile",
            "--json",
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let nia = e.user("nia@example.com");
    assert!(nia.is_active && nia.role_id == 1);

    // Unknown user, role, group: refused before anything is sent.
    let writes = || e.stat("update_user") + e.stat("update_group") + e.stat("add_user");
    let before = writes();
    for (args, text) in [
        (
            vec!["deactivate", "--email", "ghost@example.com"],
            "no TestRail account",
        ),
        (
            vec!["set-role", "--email", target, "--role", "Astronaut"],
            "unknown role",
        ),
        (
            vec!["add-to-group", "--email", target, "--group", "Nope"],
            "unknown group",
        ),
    ] {
        let out = e.prov(&args).await;
        assert_eq!(out.code, 1, "{args:?}");
        assert!(out.stderr.contains(text), "{args:?}: {}", out.stderr);
    }
    assert_eq!(writes(), before);
    // TestRail rejecting the input: its message is reported.
    let long = "x".repeat(300);
    let out = e
        .prov(&[
            "create-user",
            "--name",
            &long,
            "--email",
            "long@example.com",
            "--json",
        ])
        .await;
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("too long"), "{}", out.stdout);
    // A key that is no longer an administrator's.
    e.sim()
        .with_instance(|inst| inst.users.get_mut(&1).unwrap().is_admin = false);
    let out = e.prov(&["deactivate", "--email", target, "--json"]).await;
    assert_eq!(out.code, 1);
    let err: Value = serde_json::from_str(out.stderr.trim()).unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("administrator"),
        "{}",
        out.stderr
    );
    assert!(e.user(target).is_active);
    e.sim()
        .with_instance(|inst| inst.users.get_mut(&1).unwrap().is_admin = true);

    // The audit log has every step with its outcome, and its chain holds.
    let audit = e.run(&["audit", "--json"]).await.json();
    let outcomes: std::collections::BTreeSet<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert!(outcomes.contains("done") && outcomes.contains("noop") && outcomes.contains("failed"));
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["actor"].as_str().unwrap().starts_with("cli:"))
    );
    let out = e.run(&["audit", "verify"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The log is append-only in the database itself.
    let answers = try_to_tamper(e.data()).await;
    assert_eq!(answers.matches("append-only").count(), 2, "{answers}");
    assert_eq!(e.run(&["audit", "verify"]).await.code, 0);
}

/// Tries to edit and delete audit entries directly in SQLite; returns the database's answers.
async fn try_to_tamper(dir: &Path) -> String {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}", dir.join("accessrail.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let update = sqlx::query("UPDATE audit_log SET outcome = 'done'")
        .execute(&mut conn)
        .await;
    let delete = sqlx::query("DELETE FROM audit_log")
        .execute(&mut conn)
        .await;
    format!("{:?} {:?}", update.err(), delete.err())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_group_changes_from_several_processes_lose_nothing() {
    let e = env(0, 0).await;
    let mut ids = vec![];
    for i in 0..10 {
        ids.push(e.add_user(&format!("u{i}@example.com"), None, false));
    }
    let gid = e
        .sim()
        .with_instance(|inst| inst.insert_group("Shared".into(), &ids[6..]));
    e.provisioned().await;
    // Six processes add u0..u5, four remove u6..u9, all at once.
    let mut tasks = vec![];
    for i in 0..10 {
        let (verb, email) = (
            if i < 6 {
                "add-to-group"
            } else {
                "remove-from-group"
            },
            format!("u{i}@example.com"),
        );
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_accessrail"));
        cmd.args(["provision", verb, "--email", &email, "--group", "Shared"])
            .env("ACCESSRAIL_DATA_DIR", e.data())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        tasks.push(tokio::spawn(async move { cmd.output().await.unwrap() }));
    }
    for t in tasks {
        let out = t.await.unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut members = e.sim().snapshot().groups[&gid].user_ids.clone();
    members.sort_unstable();
    assert_eq!(
        members,
        ids[..6].to_vec(),
        "every add and every remove took effect"
    );
    assert!(e.sim().snapshot().memberships_consistent());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_add_user_answers_never_duplicate() {
    let e = env(2, 0).await;
    e.provisioned().await;
    e.sim().set_settings(Settings {
        unique_emails: false,
        ..Settings::default()
    });
    e.sim().set_faults(Faults {
        drop_rate: 1.0,
        methods: vec!["add_user".into()],
        ..Faults::default()
    });
    let emails = [
        "new.one@example.com",
        "new.two+qa@example.com",
        "new.three@example.com",
    ];
    for email in emails {
        let out = e
            .prov(&[
                "create-user",
                "--name",
                "New Person",
                "--email",
                email,
                "--json",
            ])
            .await;
        assert_eq!(
            (out.code, outcome(&out)),
            (0, "done".to_string()),
            "{}\n{}",
            out.stdout,
            out.stderr
        );
    }
    let snap = e.sim().snapshot();
    for email in emails {
        assert_eq!(
            snap.users.values().filter(|u| u.email == email).count(),
            1,
            "{email}"
        );
    }
    assert_eq!(
        e.stat("add_user"),
        3,
        "add_user sent once per user that did not exist"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaver_flow_with_cap_protection_and_partial_runs() {
    let e = env(0, 1).await;
    let people: Vec<(u64, String)> = (0..6)
        .map(|i| {
            let email = format!("p{i}@example.com");
            (e.add_user(&email, None, false), email)
        })
        .collect();
    e.provisioned().await;
    assert_eq!(e.run(&["flows", "init"]).await.code, 0);
    let show = e.run(&["flows", "show"]).await;
    assert!(
        show.stdout.contains("deactivate-leavers"),
        "{}",
        show.stdout
    );
    assert_eq!(
        e.run(&[
            "protect",
            "add",
            "p2@example.com",
            "--owner",
            "ci-team",
            "--reason",
            "CI bot"
        ])
        .await
        .code,
        0
    );

    // p1 and p2 leave; p2 is protected; the admin is a leaver too but flows never touch admins.
    let csv = |leavers: &[usize]| {
        let mut s = String::from("id,name,email,other_emails,status\n");
        for (i, (_, email)) in people.iter().enumerate() {
            s += &format!(
                "e{i},P{i},{email},,{}\n",
                if leavers.contains(&i) {
                    "leaver"
                } else {
                    "active"
                }
            );
        }
        s += &format!("admin,Admin,{ADMIN},,leaver\n");
        s
    };
    let file = e.data().join("hr.csv");
    std::fs::write(&file, csv(&[1, 2])).unwrap();
    let out = e
        .run(&["identities", "import", file.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("applying"), "{}", out.stdout);
    assert!(
        !e.user("p1@example.com").is_active,
        "the leaver flow deactivated p1"
    );
    assert!(e.user("p2@example.com").is_active, "protected");
    assert!(
        e.user(ADMIN).is_active,
        "administrators are never deactivated by a flow"
    );
    let audit = e.run(&["audit", "--json"]).await.json();
    // Write-ahead: `started` before the change reaches TestRail, then its outcome.
    let entries: Vec<(Option<&str>, Option<&str>)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["target"] == "p1@example.com")
        .map(|a| (a["actor"].as_str(), a["outcome"].as_str()))
        .collect();
    assert_eq!(
        entries,
        vec![
            (Some("flow:deactivate-leavers"), Some("started")),
            (Some("flow:deactivate-leavers"), Some("done"))
        ]
    );

    // The cap stops a flow that would pass it: nothing changes.
    std::fs::write(&file, csv(&[1, 2, 3, 4, 5])).unwrap();
    let out = e
        .run(&["identities", "import", file.to_str().unwrap(), "--no-flows"])
        .await;
    assert_eq!(out.code, 0);
    let out = e.run(&["flows", "run", "--max-deactivations", "2"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("more than the cap of 2"),
        "{}",
        out.stderr
    );
    assert!(e.user("p3@example.com").is_active && e.user("p4@example.com").is_active);
    // A dry run shows the plan; the real run stops at its first failure (exit 3, the rest not
    // run), and running it again converges.
    let out = e.run(&["flows", "run", "--dry-run"]).await;
    assert!(
        out.stdout.contains("p3@example.com") && out.stdout.contains("p5@example.com"),
        "{}",
        out.stdout
    );
    e.sim().set_faults(Faults {
        fail_after_requests: Some(1),
        methods: vec!["update_user".into()],
        ..Faults::default()
    });
    let out = e.run_retrying_once(&["flows", "run", "--json"]).await;
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let result = &out.json()["result"];
    assert_eq!(
        (
            result["done"].clone(),
            result["failed"].clone(),
            result["not_run"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );
    e.sim().set_faults(Faults::default());
    let out = e.run(&["flows", "run", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    for i in [3, 4, 5] {
        assert!(!e.user(&format!("p{i}@example.com")).is_active);
    }
    assert!(e.user("p2@example.com").is_active);
    assert_eq!(e.run(&["audit", "verify"]).await.code, 0);
    // Removing the protection lets the next run act.
    assert_eq!(
        e.run(&["protect", "remove", "p2@example.com"]).await.code,
        0
    );
    let out = e.run(&["flows", "run", "--json"]).await;
    assert_eq!(out.code, 0);
    assert!(!e.user("p2@example.com").is_active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiner_flow_creates_accounts_once() {
    let e = env(0, 1).await; // group 1 is "QA"
    e.add_user("existing@example.com", None, false);
    e.provisioned().await;
    let rules = format!(
        "{}\n[[rule]]\nname = \"qa-joiners\"\nwhen = \"active\"\nmatch = {{ department = \"QA\" }}\naction = \"create_user\"\nrole = \"Tester\"\ngroups = [\"QA\"]\n",
        accessrail_engine::flows::STARTER
    );
    // A flow file of an installation from before flows were stored still applies, and says so.
    std::fs::create_dir_all(e.data().join("flows")).unwrap();
    std::fs::write(
        e.data().join("flows/acme.toml"),
        accessrail_engine::flows::STARTER,
    )
    .unwrap();
    let show = e.run(&["flows", "show"]).await;
    assert!(show.stdout.contains("flows set"), "{}", show.stdout);
    assert_eq!(
        e.run(&["flows", "init"]).await.code,
        2,
        "init does not hide a flow file"
    );
    // `flows set` checks and stores the rules; the store wins over the file from then on.
    let bad = e.data().join("bad.toml");
    std::fs::write(&bad, "[[rule]]\nname = 1\n").unwrap();
    let out = e.run(&["flows", "set", bad.to_str().unwrap()]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    let good = e.data().join("rules.toml");
    std::fs::write(&good, &rules).unwrap();
    let out = e.run(&["flows", "set", good.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(e.run(&["flows", "get"]).await.stdout, rules);
    let show = e.run(&["flows", "show"]).await.stdout;
    assert!(
        show.contains("(stored)") && show.contains("qa-joiners"),
        "{show}"
    );
    std::fs::remove_file(e.data().join("flows/acme.toml")).unwrap();
    let file = e.data().join("hr.csv");
    std::fs::write(
        &file,
        "id,name,email,other_emails,status,department\n\
         j1,Jo Joiner,jo@example.com,,active,qa\n\
         j2,Ed Existing,ed@example.com,existing@example.com,active,QA\n\
         j3,Sal Sales,sal@example.com,,active,Sales\n",
    )
    .unwrap();
    let out = e
        .run(&["identities", "import", file.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let jo = e.user("jo@example.com");
    assert!(jo.is_active && jo.role_id == 3 && jo.group_ids.contains(&1));
    assert!(
        e.sim().snapshot().user_by_email("ed@example.com").is_none(),
        "an alias already has an account"
    );
    assert!(
        e.sim()
            .snapshot()
            .user_by_email("sal@example.com")
            .is_none(),
        "not in QA"
    );
    let audit = e.run(&["audit", "--json"]).await.json();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["actor"] == "flow:qa-joiners" && a["target"] == "jo@example.com")
    );
    // Importing again creates nothing more.
    let out = e
        .run(&["identities", "import", file.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 0);
    assert_eq!(e.stat("add_user"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_tokens_and_graceful_shutdown() {
    let e = env(8, 1).await;
    e.connect().await;
    // Tokens: shown once, listed by name only, revocable.
    let out = e.run(&["tokens", "create", "ci-bot", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let token = out.json()["token"].as_str().unwrap().to_string();
    assert_eq!(
        e.run(&["tokens", "create", "ci-bot"]).await.code,
        1,
        "a live name cannot be reused"
    );
    let list = e.run(&["tokens", "list", "--json"]).await;
    assert!(list.stdout.contains("ci-bot") && !list.stdout.contains(&token));
    let db = std::fs::read(e.data().join("accessrail.db")).unwrap();
    assert!(
        !db.windows(token.len()).any(|w| w == token.as_bytes()),
        "only the hash is stored"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_accessrail"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("ACCESSRAIL_DATA_DIR", e.data())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest_client();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..400 {
        if http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "serve answers /healthz");
    let ok = http
        .get(format!("{base}/api/v1/connections"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let none = http
        .get(format!("{base}/api/v1/connections"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    // The scheduler scans a connection that never was scanned.
    let mut scanned = false;
    for _ in 0..100 {
        let scans = e.run(&["scans", "--json"]).await.json();
        if scans
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x["status"] == "succeeded"))
        {
            scanned = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(scanned, "the scheduler ran the first scan");
    assert_eq!(e.run(&["tokens", "revoke", "ci-bot"]).await.code, 0);
    let revoked = http
        .get(format!("{base}/api/v1/connections"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 401);
    // SIGTERM: a clean exit.
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::new()
}

/// Starts `serve` on a free port, reads its first stdout lines, then stops it with SIGTERM.
async fn serve_once(dir: &Path, env_token: Option<&str>) -> (String, i32) {
    use tokio::io::AsyncBufReadExt as _;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_accessrail"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("ACCESSRAIL_DATA_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    match env_token {
        Some(t) => cmd.env("ACCESSRAIL_ADMIN_TOKEN", t),
        None => cmd.env_remove("ACCESSRAIL_ADMIN_TOKEN"),
    };
    let mut child = cmd.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = String::new();
    // The banner (generous wait: a loaded machine starts slowly), then any token lines.
    let mut wait = std::time::Duration::from_secs(30);
    while let Ok(Ok(Some(line))) = tokio::time::timeout(wait, lines.next_line()).await {
        out.push_str(&line);
        out.push('\n');
        wait = std::time::Duration::from_millis(1500);
    }
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    (out, status.code().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_prints_an_admin_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let (first, code) = serve_once(dir.path(), None).await;
    assert_eq!(code, 0);
    let token = first
        .lines()
        .find(|l| l.trim().starts_with("ar_"))
        .map(|l| l.trim().to_string());
    let token = token.unwrap_or_else(|| panic!("a token is printed on first start:\n{first}"));
    let (second, _) = serve_once(dir.path(), None).await;
    assert!(!second.contains("ar_"), "never printed again:\n{second}");
    let store = accessrail_store::SqliteStore::open(&dir.path().join("accessrail.db"))
        .await
        .unwrap();
    let name = |t: &str| {
        let store = store.clone();
        let h = accessrail_engine::tokens::hash(t);
        async move {
            accessrail_store::Store::token_by_hash(&store, &h)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        name(&token).await.as_deref(),
        Some("admin"),
        "the printed token works"
    );
    // ACCESSRAIL_ADMIN_TOKEN replaces the admin token.
    let (third, _) = serve_once(dir.path(), Some("my-bootstrap-token")).await;
    assert!(!third.contains("ar_"));
    assert_eq!(name("my-bootstrap-token").await.as_deref(), Some("admin"));
    assert_eq!(
        name(&token).await,
        None,
        "the old admin token no longer works"
    );
    assert_eq!(
        accessrail_store::Store::tokens(&store).await.unwrap().len(),
        1,
        "one admin token"
    );
}
