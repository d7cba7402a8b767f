//! The web API suite: every test takes a [`Backend`], so the JSON API and the console's
//! protections are exercised over real HTTP on port 0, with the TestRail simulator, on each
//! store back end (`tests/api.rs` instantiates it for SQLite, `tests/api_postgres.rs` for
//! PostgreSQL).

// Each test binary runs the suite on one back end: the other variant goes unused there.
#![allow(dead_code)]

use accessrail_store::{AnyStore, PgStore, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, KEY, Service, TOKEN};

/// The store back end a suite test runs on, each test with a new, empty store.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the test PostgreSQL server (see `accessrail-test-support`).
    Postgres,
}

impl Backend {
    /// The service on a new store of this back end, with the simulator seeded with `users` and
    /// `groups`.
    pub async fn start(self, users: u32, groups: u32) -> Service {
        match self {
            Self::Sqlite => common::start(users, groups).await,
            Self::Postgres => {
                let url = accessrail_test_support::fresh_postgres_url().await;
                let store = AnyStore::from(PgStore::open(&url).await.unwrap());
                common::start_on(store, users, groups).await
            }
        }
    }
}

/// One `#[tokio::test]` per suite test, on the back end `$backend`.
#[macro_export]
macro_rules! api_suite {
    ($backend:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn api_end_to_end() {
            api_suite::api_end_to_end($backend).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn project_access_over_the_api() {
            api_suite::project_access_over_the_api($backend).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn reviews_over_the_api() {
            api_suite::reviews_over_the_api($backend).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn evidence_and_seats_over_the_api() {
            api_suite::evidence_and_seats_over_the_api($backend).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn scim_on_this_store() {
            api_suite::scim_on_this_store($backend).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn console_forms_need_csrf_and_cookies_are_strict() {
            api_suite::console_forms_need_csrf_and_cookies_are_strict($backend).await;
        }
    };
}

pub async fn api_end_to_end(backend: Backend) {
    let svc = backend.start(40, 3).await;
    // Health needs no token; the API does.
    let (s, body) = svc.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, body) = svc
        .call(reqwest::Method::GET, "/api/v1/connections", None, None)
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (s, _) = svc
        .call(
            reqwest::Method::GET,
            "/api/v1/connections",
            Some("ar_wrong"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Create: Test then Save; a bad key saves nothing; the key is never returned.
    let (s, body) = svc
        .post("/api/v1/connections", json!({"base_url": svc.sim.base_url(), "email": "admin@example.com", "api_key": "nope", "name": "acme"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["connection"], Value::Null);
    assert!(
        body["test"]["checks"][1]["hint"]
            .as_str()
            .unwrap()
            .contains("no extra spaces")
    );
    let (s, body) = svc
        .post("/api/v1/connections", json!({"base_url": svc.sim.base_url(), "email": "admin@example.com", "api_key": KEY, "name": "acme"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert!(!body.to_string().contains(KEY));
    let (_, list) = svc.get("/api/v1/connections").await;
    assert_eq!(list[0]["name"], "acme");
    assert!(!list.to_string().contains(KEY));
    let (s, _) = svc
        .post("/api/v1/connections", json!({"base_url": svc.sim.base_url(), "email": "admin@example.com", "api_key": KEY, "name": "acme"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "a name in use needs replace");
    let (s, body) = svc.post("/api/v1/connections/acme/test", json!({})).await;
    assert_eq!((s, body["passed"].as_bool()), (StatusCode::OK, Some(true)));

    // Scans.
    let scan = svc.scan().await;
    assert_eq!(scan["status"], "succeeded");
    assert_eq!(scan["users"], 41);
    let (s, one) = svc.get(&format!("/api/v1/scans/{}", scan["id"])).await;
    assert_eq!((s, one["id"].clone()), (StatusCode::OK, scan["id"].clone()));
    assert_eq!(
        svc.get("/api/v1/scans/99999").await.0,
        StatusCode::NOT_FOUND
    );

    // Accounts: filters and paging.
    let (_, page) = svc
        .get("/api/v1/connections/acme/accounts?limit=10&offset=5")
        .await;
    assert_eq!(
        (
            page["total"].clone(),
            page["accounts"].as_array().unwrap().len()
        ),
        (json!(41), 10)
    );
    assert_eq!(page["accounts"][0]["id"], 6);
    let (_, inactive) = svc
        .get("/api/v1/connections/acme/accounts?active=false&limit=1000")
        .await;
    let snap = svc.sim.sim().snapshot();
    assert_eq!(
        inactive["total"].as_u64().unwrap() as usize,
        snap.users.values().filter(|u| !u.is_active).count()
    );
    let (_, testers) = svc
        .get("/api/v1/connections/acme/accounts?role=tester&limit=1000")
        .await;
    assert_eq!(
        testers["total"].as_u64().unwrap() as usize,
        snap.users.values().filter(|u| u.role_id == 3).count()
    );
    let (s, body) = svc
        .get("/api/v1/connections/acme/accounts?role=Astronaut")
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_input"))
    );
    assert_eq!(
        svc.get("/api/v1/connections/nope/accounts").await.0,
        StatusCode::NOT_FOUND
    );
    let (_, groups) = svc.get("/api/v1/connections/acme/groups").await;
    assert_eq!(groups.as_array().unwrap().len(), 3);
    let (_, roles) = svc.get("/api/v1/connections/acme/roles").await;
    assert!(roles.as_array().unwrap().len() >= 5);

    // Identities (bulk), matching.
    let people: Vec<Value> = snap
        .users
        .values()
        .filter(|u| u.email.contains('@') && u.id != 1 && u.id % 2 == 0)
        .map(|u| json!({"id": format!("p{}", u.id), "name": u.name, "email": u.email, "status": if u.id == 2 { "leaver" } else { "active" }}))
        .collect();
    let (s, r) = svc
        .post("/api/v1/identities", Value::Array(people.clone()))
        .await;
    assert_eq!(
        (s, r["added"].as_u64()),
        (StatusCode::OK, Some(people.len() as u64))
    );
    assert_eq!(r["flows_queued"], json!([]), "no connection has flows yet");
    let (s, r) = svc
        .post("/api/v1/identities", json!([{"id": "x", "email": "bad"}]))
        .await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_input"))
    );
    let (_, matched) = svc
        .get("/api/v1/connections/acme/accounts?match=matched&limit=1000")
        .await;
    assert_eq!(matched["total"].as_u64().unwrap() as usize, people.len());
    assert_eq!(
        svc.get("/api/v1/identities")
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        people.len()
    );

    // Provisioning: read-only refuses; a plan with a fingerprint; apply; a stale plan refused.
    let (s, plan) = svc
        .post(
            "/api/v1/connections/acme/plans",
            json!({"actions": [{"action": "deactivate", "email": snap.users[&4].email}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{plan}");
    assert!(plan["fingerprint"].as_str().unwrap().len() >= 16);
    // A deactivation is marked when it takes away an administrator, and only then.
    assert_eq!(
        plan["steps"][0].get("caution").and_then(|c| c.as_str()),
        snap.users[&4].is_admin.then_some("administrator"),
        "{plan}"
    );
    // Deactivating the connection's own account (or an administrator) is marked.
    let (s, own) = svc
        .post(
            "/api/v1/connections/acme/plans",
            json!({"actions": [{"action": "deactivate", "email": "ADMIN@example.com"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{own}");
    assert_eq!(own["steps"][0]["caution"], "own_account", "{own}");
    if let Some(plain) = snap
        .users
        .values()
        .find(|u| !u.is_admin && u.is_active && u.id != 1 && u.email.contains('@'))
    {
        let (s, other) = svc
            .post(
                "/api/v1/connections/acme/plans",
                json!({"actions": [{"action": "deactivate", "email": plain.email}]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{other}");
        assert!(
            other["steps"][0].get("caution").is_none(),
            "an ordinary deactivation needs no extra care: {other}"
        );
    }
    if let Some(admin) = snap
        .users
        .values()
        .find(|u| u.is_admin && u.is_active && u.id != 1 && u.email.contains('@'))
    {
        let (s, other) = svc
            .post(
                "/api/v1/connections/acme/plans",
                json!({"actions": [{"action": "deactivate", "email": admin.email}]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{other}");
        assert_eq!(other["steps"][0]["caution"], "administrator", "{other}");
    }
    let (s, body) = svc
        .post(
            &format!("/api/v1/plans/{}/apply", plan["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("read_only"))
    );
    let conn = svc
        .engine
        .store()
        .connection("acme")
        .await
        .unwrap()
        .unwrap();
    svc.engine
        .store()
        .set_provisioning(&conn.id, true)
        .await
        .unwrap();
    // (Confirmed: whoever user 4 is, an administrator or not, the apply goes ahead.)
    let (s, body) = svc
        .post(
            &format!(
                "/api/v1/plans/{}/apply?acknowledge=true",
                plan["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["done"], 1);
    assert!(!svc.sim.sim().snapshot().users[&4].is_active);
    // Deactivating Accessrail's own account needs ?acknowledge=true: refused without it, and
    // nothing is sent (the plan is handed back).
    let (s, own) = svc
        .post(
            "/api/v1/connections/acme/plans",
            json!({"actions": [{"action": "deactivate", "email": snap.users[&1].email}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{own}");
    assert_eq!(own["steps"][0]["caution"], "own_account", "{own}");
    let (s, body) = svc
        .post(
            &format!("/api/v1/plans/{}/apply", own["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("needs_acknowledgement")),
        "{body}"
    );
    assert!(svc.sim.sim().snapshot().users[&1].is_active);
    // The apply ran as a job; the plan keeps how it ended, and is never applied again.
    let applied_id = plan["id"].as_str().unwrap().to_string();
    let (s, kept) = svc.get(&format!("/api/v1/plans/{applied_id}")).await;
    assert_eq!(s, StatusCode::OK, "{kept}");
    assert_eq!(kept["status"], "applied");
    assert_eq!(kept["outcome"]["result"], "applied");
    assert_eq!(kept["outcome"]["done"], 1);
    assert!(kept["started_at"].is_string(), "{kept}");
    let (s, body) = svc
        .post(&format!("/api/v1/plans/{applied_id}/apply"), json!({}))
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("plan_already_applied"))
    );
    assert_eq!(svc.get("/api/v1/plans/nope").await.0, StatusCode::NOT_FOUND);
    let email6 = snap.users[&6].email.clone();
    let (_, plan) = svc
        .post(
            "/api/v1/connections/acme/plans",
            json!({"actions": [{"action": "deactivate", "email": email6}]}),
        )
        .await;
    svc.sim
        .sim()
        .with_instance(|inst| inst.users.get_mut(&6).unwrap().is_active = false);
    let (s, body) = svc
        .post(
            &format!("/api/v1/plans/{}/apply", plan["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("stale_plan"))
    );
    let (_, kept) = svc
        .get(&format!("/api/v1/plans/{}", plan["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (kept["status"].as_str(), kept["outcome"]["code"].as_str()),
        (Some("ready"), Some("stale_plan")),
        "nothing was sent: {kept}"
    );

    // Flows after an identity import run as a job: the leavers' accounts are deactivated.
    svc.engine
        .store()
        .set_flows(&conn.id, Some(accessrail_engine::flows::STARTER), 0)
        .await
        .unwrap();
    let leavers: Vec<Value> = people
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if p["id"] == "p8" {
                p["status"] = json!("leaver");
            }
            p
        })
        .collect();
    let (s, r) = svc.post("/api/v1/identities", Value::Array(leavers)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["flows_queued"], json!(["acme"]));
    let waited = std::time::Instant::now();
    while svc.sim.sim().snapshot().users[&8].is_active
        || svc.sim.sim().snapshot().users[&2].is_active
    {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(30),
            "the flows job did not deactivate the leavers (users 2 and 8)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, audit) = svc.get("/api/v1/audit").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["actor"] == "flow:deactivate-leavers" && a["outcome"] == "done"),
        "{audit}"
    );
    let (s, body) = svc
        .post(
            "/api/v1/connections/acme/plans",
            json!({"actions": [{"action": "deactivate", "email": "ghost@example.com"}]}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    // The audit log names the token; changes point at the audit entry.
    let (_, audit) = svc.get("/api/v1/audit").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["actor"] == "token:admin" && a["target"] == snap.users[&4].email),
        "{audit}"
    );
    let (_, changes) = svc.get("/api/v1/connections/acme/changes").await;
    assert!(
        changes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "account_deactivated" && c["audit_id"].is_i64())
    );
    // Access at a point in time.
    let (_, then) = svc
        .get(&format!(
            "/api/v1/connections/acme/access?scan={}",
            scan["id"]
        ))
        .await;
    assert_eq!(
        then.as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == 4)
            .unwrap()["is_active"],
        true
    );
    let (s, _) = svc.get("/api/v1/connections/acme/access").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // A revoked token is refused at once.
    svc.engine.store().revoke_token("admin", 1).await.unwrap();
    assert_eq!(
        svc.get("/api/v1/connections").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(svc.stop().await.is_ok(), "graceful shutdown");
}

pub async fn console_forms_need_csrf_and_cookies_are_strict(backend: Backend) {
    let svc = backend.start(3, 1).await;
    let jar_client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The sign-in page sets an HttpOnly, SameSite session cookie and carries a CSRF token.
    let resp = jar_client
        .get(format!("{}/login", svc.base))
        .send()
        .await
        .unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let html = resp.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    // Sign-in without the CSRF token: refused.
    let resp = jar_client
        .post(format!("{}/login", svc.base))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // With a wrong one: refused.
    let resp = jar_client
        .post(format!("{}/login", svc.base))
        .form(&[("token", TOKEN), ("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // With it: signed in.
    let resp = jar_client
        .post(format!("{}/login", svc.base))
        .form(&[("token", TOKEN), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    // A form post (setup) without the CSRF token is refused even when signed in.
    let resp = jar_client
        .post(format!("{}/setup", svc.base))
        .form(&[
            ("op", "save"),
            ("subdomain", "x"),
            ("email", "admin@example.com"),
            ("api_key", KEY),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(svc.engine.store().connections().await.unwrap().is_empty());
    // Pages without a session redirect to sign-in.
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/users", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status(), resp.headers()["location"].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/login")
    );
    svc.stop().await.unwrap();
}

/// Projects, who can reach one, and one account's access across projects, each row with its
/// source; the same answer now and at the scan; a project-role change through a plan.
pub async fn project_access_over_the_api(backend: Backend) {
    let svc = backend.start(60, 4).await;
    svc.sim.sim().set_settings(testrail_sim::Settings {
        edition: testrail_sim::model::Edition::Enterprise,
        ..testrail_sim::Settings::default()
    });
    svc.connect().await;
    let scan = svc.scan().await;
    let scan_id = scan["id"]
        .as_i64()
        .or_else(|| scan["scan_id"].as_i64())
        .unwrap();
    let snap = svc.sim.sim().snapshot();
    let (s, projects) = svc.get("/api/v1/connections/acme/projects").await;
    assert_eq!(s, StatusCode::OK, "{projects}");
    let list = projects.as_array().unwrap();
    assert_eq!(
        list.len(),
        snap.projects.len(),
        "every project TestRail has"
    );
    for p in list {
        let raw = &snap.projects[&p["id"].as_u64().unwrap()];
        assert_eq!(p["name"], raw.name.as_str());
        assert_eq!(p["is_completed"], raw.is_completed);
        assert_eq!(p["access"], "known");
        assert_eq!(p["group_roles"], raw.group_roles.len() as u64);
        assert_eq!(p["user_roles"], raw.user_roles.len() as u64);
        assert_eq!(p["default_role_id"], raw.default_role_id);
    }
    // Who can reach each project agrees with the simulator's own rule (active accounts only).
    for p in list {
        let id = p["id"].as_u64().unwrap();
        let (s, v) = svc
            .get(&format!("/api/v1/connections/acme/projects/{id}/access"))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let mut got: Vec<u64> = v["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["account_id"].as_u64().unwrap())
            .collect();
        got.sort_unstable();
        let mut want: Vec<u64> = snap
            .project_members(id, true)
            .into_iter()
            .map(|(u, _)| u)
            .collect();
        want.sort_unstable();
        assert_eq!(got, want, "project {id}: {v}");
        assert_eq!(p["active_with_access"], want.len() as u64);
        assert_eq!(v["total"], want.len() as u64);
        // Pages: the same order, `limit` at a time from `offset`.
        if want.len() >= 3 {
            let (s, page) = svc
                .get(&format!(
                    "/api/v1/connections/acme/projects/{id}/access?limit=2&offset=1"
                ))
                .await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(page["total"], v["total"]);
            assert_eq!(
                page["accounts"].as_array().unwrap()[..],
                v["accounts"].as_array().unwrap()[1..3]
            );
        }
        for a in v["accounts"].as_array().unwrap() {
            assert!(
                a["source"]["kind"].is_string(),
                "every row has its source: {a}"
            );
        }
    }
    let (s, err) = svc
        .get("/api/v1/connections/acme/projects/no-such-project/access")
        .await;
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    // One account across projects, now and at the scan.
    let (s, mine) = svc
        .get("/api/v1/connections/acme/accounts/1/projects")
        .await;
    assert_eq!(s, StatusCode::OK, "{mine}");
    assert_eq!(mine["projects"].as_array().unwrap().len(), list.len());
    assert!(
        mine["projects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["source"]["kind"] == "administrator")
    );
    let (s, then) = svc
        .get(&format!(
            "/api/v1/connections/acme/accounts/1/projects?scan={scan_id}"
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(then["projects"], mine["projects"]);
    let (s, _) = svc
        .get("/api/v1/connections/acme/projects?scan=999999")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A user's project role through a plan: planned, applied, read back, shown, audited.
    let conn = svc
        .engine
        .store()
        .connection("acme")
        .await
        .unwrap()
        .unwrap();
    svc.engine
        .store()
        .set_provisioning(&conn.id, true)
        .await
        .unwrap();
    let target = snap
        .users
        .values()
        .find(|u| u.is_active && !u.is_admin && u.email.contains('@'))
        .unwrap();
    let pid = list[0]["id"].as_u64().unwrap();
    let (s, plan) = svc
        .post(
            "/api/v1/connections/acme/plans",
            json!({"actions": [{"action": "set_project_role", "email": target.email,
                                "project": pid.to_string(), "role": "Lead"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{plan}");
    assert_eq!(
        plan["steps"][0]["calls"],
        json!([
            format!("get_project/{pid}"),
            format!("update_project/{pid}"),
            format!("get_project/{pid}")
        ]),
        "{plan}"
    );
    let (s, body) = svc
        .post(
            &format!("/api/v1/plans/{}/apply", plan["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, body["done"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    assert_eq!(
        svc.sim.sim().snapshot().projects[&pid]
            .user_roles
            .get(&target.id),
        Some(&1),
        "TestRail has it"
    );
    let (_, mine) = svc
        .get(&format!(
            "/api/v1/connections/acme/accounts/{}/projects",
            target.id
        ))
        .await;
    let row = mine["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["project_id"] == pid)
        .unwrap();
    assert_eq!(
        (row["role"].as_str(), row["source"]["kind"].as_str()),
        (Some("Lead"), Some("user_role")),
        "{row}"
    );
    let (_, audit) = svc.get("/api/v1/audit").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "set_project_role" && a["outcome"] == "done"),
        "{audit}"
    );
    // The OpenAPI document lists the routes.
    let (_, doc) = svc.get("/api/openapi.json").await;
    assert!(
        doc["paths"]
            .get("/api/v1/connections/{name}/projects/{project}/access")
            .is_some()
    );
}

/// An access review through the API: an administrator starts it, a reviewer sign-in sees and
/// decides only its own items and reaches nothing else, an administrator approves (never the
/// reviewer's own submission) and closes it (dry run first), and the export carries the audit
/// head hash.
pub async fn reviews_over_the_api(backend: Backend) {
    const MGR: &str = "mgr@corp.example";
    const FALLBACK: &str = "audit@corp.example";
    let svc = backend.start(30, 3).await;
    svc.connect().await;
    svc.scan().await;
    let conn = svc
        .engine
        .store()
        .connection("acme")
        .await
        .unwrap()
        .unwrap();
    svc.engine
        .store()
        .set_provisioning(&conn.id, true)
        .await
        .unwrap();
    // Two active, non-administrator accounts report to the manager.
    let (_, accounts) = svc
        .get("/api/v1/connections/acme/accounts?active=true&limit=1000")
        .await;
    let people: Vec<String> = accounts["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["is_admin"] != true && a["email"].as_str().is_some_and(|e| e.contains('@')))
        .map(|a| a["email"].as_str().unwrap().to_string())
        .take(2)
        .collect();
    let (a, b) = (people[0].clone(), people[1].clone());
    let (s, body) = svc
        .post(
            "/api/v1/identities",
            json!([
                {"id": "1", "name": "A", "email": a, "status": "active", "manager_email": MGR},
                {"id": "2", "name": "B", "email": b, "status": "active", "manager_email": MGR},
            ]),
        )
        .await;
    assert!(s.is_success(), "{body}");

    // Start: bad input changes nothing; then a review of every active account.
    let (s, body) = svc
        .post(
            "/api/v1/connections/acme/reviews",
            json!({"fallback_reviewers": [FALLBACK], "scope": "everyone"}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_input"))
    );
    let (_, list) = svc.get("/api/v1/reviews").await;
    assert_eq!(list, json!([]));
    let (s, review) = svc
        .post(
            "/api/v1/connections/acme/reviews",
            json!({"fallback_reviewers": [FALLBACK], "undecided": "keep", "due": "2099-12-31"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{review}");
    let id = review["id"].as_i64().unwrap();
    let total = review["items"].as_u64().unwrap();
    assert!(total > 2);

    // The reviewer's sign-in.
    let mgr_token = accessrail_engine::tokens::generate();
    svc.engine
        .store()
        .create_reviewer_token("mgr", &accessrail_engine::tokens::hash(&mgr_token), MGR, 0)
        .await
        .unwrap();
    let as_mgr = |m: reqwest::Method, path: String, body: Option<Value>| {
        let tok = mgr_token.clone();
        let svc = &svc;
        async move { svc.call(m, &path, Some(&tok), body).await }
    };
    let (s, mine) = as_mgr(reqwest::Method::GET, "/api/v1/reviews".into(), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(mine[0]["items"], 2, "its own items only: {mine}");
    let (_, detail) = as_mgr(reqwest::Method::GET, format!("/api/v1/reviews/{id}"), None).await;
    let emails: Vec<&str> = detail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails.len(), 2, "{detail}");
    assert!(emails.iter().all(|e| *e == a || *e == b));
    assert_eq!(detail["reviewers"].as_array().unwrap().len(), 1);
    assert_eq!(
        detail["review"]["fallback_reviewers"],
        json!([]),
        "a reviewer does not see who else reviews"
    );
    assert!(!detail.to_string().contains(FALLBACK));
    // Probing an account that is not in the review at all gets the same answer as another
    // reviewer's account: nothing is learnt.
    let (s1, nobody) = as_mgr(
        reqwest::Method::POST,
        format!("/api/v1/reviews/{id}/decisions"),
        Some(json!({"decisions": [{"account": "ghost@nowhere.example", "decision": "keep"}]})),
    )
    .await;
    assert_eq!(s1, StatusCode::FORBIDDEN);
    assert!(
        nobody["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not one of your items")
    );
    // Another reviewer's items, and everything else, are out of reach.
    let (s, _) = as_mgr(
        reqwest::Method::GET,
        format!("/api/v1/reviews/{id}?reviewer={FALLBACK}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, undecided) = svc
        .get(&format!(
            "/api/v1/reviews/{id}?decided=false&limit=2&offset=1"
        ))
        .await;
    assert_eq!(
        undecided["total"].as_u64(),
        Some(total),
        "nothing decided yet"
    );
    assert_eq!(undecided["items"].as_array().unwrap().len(), 2);
    assert_eq!(undecided["items"][0]["item"], 2, "paged in item order");
    let (_, all) = svc.get(&format!("/api/v1/reviews/{id}?limit=5000")).await;
    let theirs = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reviewer"] == FALLBACK)
        .unwrap()["email"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, body) = as_mgr(
        reqwest::Method::POST,
        format!("/api/v1/reviews/{id}/decisions"),
        Some(json!({"decisions": [{"account": theirs, "decision": "keep"}]})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not one of your items"),
        "the same answer as for an account not under review: {body}"
    );
    assert!(
        !body.to_string().contains(FALLBACK),
        "names nobody else: {body}"
    );
    for (m, path) in [
        (reqwest::Method::GET, "/api/v1/connections".to_string()),
        (
            reqwest::Method::GET,
            "/api/v1/connections/acme/accounts".to_string(),
        ),
        (reqwest::Method::GET, "/api/v1/audit".to_string()),
        (reqwest::Method::GET, "/api/v1/identities".to_string()),
        (
            reqwest::Method::GET,
            format!("/api/v1/reviews/{id}/export?format=csv"),
        ),
        (reqwest::Method::POST, format!("/api/v1/reviews/{id}/close")),
        (
            reqwest::Method::POST,
            format!("/api/v1/reviews/{id}/approve"),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/connections/acme/reviews".to_string(),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/connections/acme/plans".to_string(),
        ),
    ] {
        let (s, body) = as_mgr(m.clone(), path.clone(), Some(json!({}))).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{m} {path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }

    // Decisions: a revoke needs a comment; decisions change until submitted.
    let decide = |body: Value| {
        as_mgr(
            reqwest::Method::POST,
            format!("/api/v1/reviews/{id}/decisions"),
            Some(body),
        )
    };
    let (s, _) = decide(json!({"decisions": [{"account": b, "decision": "revoke"}]})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, body) = decide(json!({"decisions": [
        {"account": a, "decision": "keep"},
        {"account": b, "decision": "revoke", "comment": "left the company"}
    ]}))
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body[1]["action"], "deactivate");
    let (s, body) = as_mgr(
        reqwest::Method::POST,
        format!("/api/v1/reviews/{id}/submit"),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["submission"], "submitted");
    let (s, _) =
        decide(json!({"decisions": [{"account": a, "decision": "revoke", "comment": "x"}]})).await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "submitted decisions are final until sent back"
    );

    // Approval: never the reviewer's own.
    let (s, _) = svc
        .post(
            &format!("/api/v1/reviews/{id}/approve"),
            json!({"reviewer": MGR, "approver": MGR}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, body) = svc
        .post(
            &format!("/api/v1/reviews/{id}/approve"),
            json!({"reviewer": MGR, "approver": "ciso@corp.example"}),
        )
        .await;
    assert_eq!(
        (s, body["submission"].as_str()),
        (StatusCode::OK, Some("approved")),
        "{body}"
    );

    // Close: the dry run first (the default), then applied.
    let (s, dry) = svc
        .post(&format!("/api/v1/reviews/{id}/close"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["revoke"], 1, "{dry}");
    assert_eq!(
        dry["keep"].as_u64().unwrap(),
        total - 1,
        "undecided items are kept"
    );
    assert_eq!(dry["steps"][0]["action"], "deactivate");
    let user_b = || svc.sim.sim().snapshot().user_by_email(&b).cloned().unwrap();
    assert!(user_b().is_active, "a dry run changes nothing");
    let (s, done) = svc
        .post(
            &format!("/api/v1/reviews/{id}/close"),
            json!({"dry_run": false}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done["result"]["closed"], true);
    assert_eq!(done["result"]["revoked"], 1);
    assert!(!user_b().is_active);
    let (_, closed) = svc
        .get(&format!("/api/v1/reviews/{id}?reviewer={MGR}"))
        .await;
    assert_eq!(closed["review"]["status"], "closed");
    let item_b = closed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["email"] == b.as_str())
        .unwrap()
        .clone();
    assert_eq!(item_b["outcome"], "done: deactivate");
    let (_, audit) = svc.get("/api/v1/audit?limit=500").await;
    let entries = audit
        .as_array()
        .cloned()
        .or_else(|| audit["entries"].as_array().cloned())
        .unwrap();
    let entry = entries
        .iter()
        .find(|e| e["id"] == item_b["outcome_audit_id"])
        .expect("the outcome's audit entry");
    assert!(
        entry["actor"]
            .as_str()
            .unwrap()
            .starts_with(&format!("review:{id} item "))
    );
    assert_eq!(entry["action"], "deactivate");

    // The export: rows match the decisions; the head hash is the export's own audit entry.
    let resp = svc
        .http
        .get(format!(
            "{}/api/v1/reviews/{id}/export?format=csv",
            svc.base
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let head = resp.headers()["x-accessrail-audit-head"]
        .to_str()
        .unwrap()
        .to_string();
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines.len() as u64,
        total + 1,
        "a header and one row per item"
    );
    let row_b = lines.iter().find(|l| l.contains(b.as_str())).unwrap();
    assert!(
        row_b.contains("revoke") && row_b.contains("left the company") && row_b.contains(&head)
    );
    let (_, audit) = svc.get("/api/v1/audit?limit=5").await;
    let entries = audit
        .as_array()
        .cloned()
        .or_else(|| audit["entries"].as_array().cloned())
        .unwrap();
    let newest = entries
        .iter()
        .find(|e| e["action"] == "review_export")
        .unwrap();
    assert_eq!(newest["hash"], head.as_str());
    let (s, _) = svc
        .get(&format!("/api/v1/reviews/{id}/export?format=pdf"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// Activity evidence and the seat figures through the API: an evidence scan on request (its
/// requests equal what it needed), its record, and seats without recorded activity.
pub async fn evidence_and_seats_over_the_api(backend: Backend) {
    let svc = backend.start(30, 2).await;
    svc.connect().await;
    svc.scan().await;
    let (s, seats) = svc.get("/api/v1/connections/acme/seats").await;
    assert_eq!(s, StatusCode::OK, "{seats}");
    assert_eq!(seats["evidence_from"], Value::Null);
    assert_eq!(
        seats["without_evidence_90_days"],
        Value::Null,
        "no evidence yet: not guessed"
    );
    let (s, run) = svc
        .post("/api/v1/connections/acme/evidence", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{run}");
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["requests"], run["estimate"]);
    let (_, runs) = svc.get("/api/v1/connections/acme/evidence").await;
    assert_eq!(runs.as_array().unwrap().len(), 1);
    let (_, seats) = svc
        .get("/api/v1/connections/acme/seats?seat_price=30&billing_day=1")
        .await;
    let active = seats["active_seats"].as_u64().unwrap();
    assert!(active > 0);
    // The seeded instance has no artefacts: nobody has recorded activity.
    assert_eq!(
        seats["without_evidence_90_days"].as_u64(),
        Some(active),
        "{seats}"
    );
    assert!(seats["billing_period_end"].is_string());
    let (s, _) = svc
        .get("/api/v1/connections/acme/seats?seat_price=-1")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Offboarding: a run and its tests assigned to a leaver, handed to a colleague, then the
    // leaver deactivated; a dry run first, applied only with the dry run's fingerprint.
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
    let made: Value = svc
        .http
        .post(format!("{}/__sim/runs", svc.sim.base_url()))
        .json(&json!({"project_id": project, "user_id": leaver.id, "assignedto_id": leaver.id, "tests": 3, "tests_assignedto_id": leaver.id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = made["id"].as_u64().expect("the simulator made the run");
    let body = json!({"email": leaver.email, "reassign_to": colleague.email});
    let (s, dry) = svc
        .post("/api/v1/connections/acme/offboard", body.clone())
        .await;
    assert_eq!(s, StatusCode::OK, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["impact"]["runs"][0]["id"], run_id, "{dry}");
    assert_eq!(dry["impact"]["tests"].as_array().unwrap().len(), 3);
    assert_eq!(dry["reassign_to"][0], colleague.id);
    assert_eq!(
        dry["steps"].as_array().unwrap().len(),
        2,
        "the run, then its tests"
    );
    assert!(
        svc.sim.sim().snapshot().users[&leaver.id].is_active,
        "a dry run changes nothing"
    );
    let mut apply = body.clone();
    apply["dry_run"] = json!(false);
    // Provisioning is off: refused.
    let (s, e) = svc
        .post("/api/v1/connections/acme/offboard", apply.clone())
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    let conn = svc
        .engine
        .store()
        .connection("acme")
        .await
        .unwrap()
        .unwrap();
    svc.engine
        .store()
        .set_provisioning(&conn.id, true)
        .await
        .unwrap();
    // No fingerprint (no dry run read): refused, nothing sent.
    let (s, e) = svc
        .post("/api/v1/connections/acme/offboard", apply.clone())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    // A fingerprint that is not the plan's: refused, nothing sent.
    apply["fingerprint"] = json!("0000");
    let (s, e) = svc
        .post("/api/v1/connections/acme/offboard", apply.clone())
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(
        svc.sim
            .sim()
            .snapshot()
            .artefacts
            .run(run_id)
            .unwrap()
            .assignedto_id,
        Some(leaver.id)
    );
    apply["fingerprint"] = dry["fingerprint"].clone();
    let (s, done) = svc.post("/api/v1/connections/acme/offboard", apply).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done["result"]["deactivation_ran"], true, "{done}");
    let now = svc.sim.sim().snapshot();
    assert!(!now.users[&leaver.id].is_active);
    assert_eq!(
        now.artefacts.run(run_id).unwrap().assignedto_id,
        Some(colleague.id)
    );
    for t in now.artefacts.tests.iter().filter(|t| t.run_id == run_id) {
        assert_eq!(t.assignedto_id, Some(colleague.id));
    }
    let audit_ids: Vec<i64> = done["result"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .chain(done["result"]["deactivation"].as_array().unwrap())
        .map(|x| x["audit_id"].as_i64().unwrap())
        .collect();
    assert_eq!(audit_ids.len(), 3);
    let (s, e) = svc
        .post(
            "/api/v1/connections/acme/offboard",
            json!({"email": "nobody@nowhere.example"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
}

/// SCIM on this store: a create, a group with a member, a filter, and concurrent
/// deactivations that stop at the cap (the claim is one store transaction).
pub async fn scim_on_this_store(backend: Backend) {
    const SCIM: &str = "ar_scim_token_for_the_store_suite_000000000000000";
    let svc = backend.start(30, 2).await;
    svc.connect().await;
    svc.scan().await;
    let store = svc.engine.store();
    let conn = store.connection("acme").await.unwrap().unwrap();
    store.set_provisioning(&conn.id, true).await.unwrap();
    store
        .create_scim_token("idp", &accessrail_engine::tokens::hash(SCIM), &conn.id, 0)
        .await
        .unwrap();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let http = svc.http.clone();
        let base = svc.base.clone();
        async move {
            let mut req = http
                .request(method, format!("{base}/scim/v2/acme{path}"))
                .bearer_auth(SCIM);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, made) = call(
        reqwest::Method::POST,
        "/Users".into(),
        Some(json!({"userName": "sam.store@example.com", "name": {"givenName": "Sam", "familyName": "Store"}, "externalId": "s-1"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    let (s, g) = call(
        reqwest::Method::POST,
        "/Groups".into(),
        Some(json!({"displayName": "Store QA", "members": [{"value": id}]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    assert_eq!(g["members"][0]["value"], id.as_str());
    let (_, found) = call(
        reqwest::Method::GET,
        "/Users?filter=externalId%20eq%20%22s-1%22".into(),
        None,
    )
    .await;
    assert_eq!(found["totalResults"], 1);
    let (_, u) = call(reqwest::Method::GET, format!("/Users/{id}"), None).await;
    assert_eq!(u["groups"][0]["display"], "Store QA");
    // 14 deactivations at once: 10 go, the rest are held (one each).
    let people: Vec<u64> = svc
        .sim
        .sim()
        .snapshot()
        .users
        .values()
        .filter(|u| {
            u.is_active
                && !u.is_admin
                && u.email.contains('@')
                && u.email != "sam.store@example.com"
        })
        .map(|u| u.id)
        .take(14)
        .collect();
    assert_eq!(people.len(), 14);
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": false}}]});
    let tasks: Vec<_> = people
        .iter()
        .map(|p| {
            call(
                reqwest::Method::PATCH,
                format!("/Users/{p}"),
                Some(body.clone()),
            )
        })
        .collect();
    let results = futures_join_all(tasks).await;
    let ok = results.iter().filter(|r| r.0 == StatusCode::OK).count();
    let held = results
        .iter()
        .filter(|r| r.0 == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!((ok, held), (10, 4), "{results:?}");
    let inactive = people
        .iter()
        .filter(|p| !svc.sim.sim().snapshot().users[p].is_active)
        .count();
    assert_eq!(inactive, 10);
    let holds = store.scim_holds(Some(&conn.id)).await.unwrap();
    assert_eq!(holds.iter().filter(|h| h.status == "held").count(), 4);
    svc.stop().await.unwrap();
}

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_join_all<F>(fs: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
