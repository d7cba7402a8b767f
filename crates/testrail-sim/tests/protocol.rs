//! The simulator's protocol checked directly over HTTP with raw requests (not through our
//! client), so a misunderstanding shared by the client and the simulator cannot pass.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testrail_sim::{Edition, ManualClock, SeedConfig, Settings, Sim, SimServer, Version, texts};

const ADMIN: &str = "admin@example.com";
const KEY: &str = "sim-admin-key";

struct Env {
    server: SimServer,
    http: reqwest::Client,
}

async fn start_with(seed: SeedConfig, settings: Settings, clock: Option<ManualClock>) -> Env {
    let sim = match clock {
        Some(c) => Sim::with_clock(seed, settings, Arc::new(c)),
        None => Sim::new(seed, settings),
    };
    start_sim(sim).await
}

async fn start_sim(sim: Sim) -> Env {
    let server = SimServer::start("127.0.0.1:0".parse().expect("addr"), sim)
        .await
        .expect("sim starts");
    Env {
        server,
        http: reqwest::Client::new(),
    }
}

async fn start(users: u32, groups: u32) -> Env {
    start_with(
        SeedConfig {
            users,
            groups,
            ..SeedConfig::default()
        },
        Settings::default(),
        None,
    )
    .await
}

fn basic(user: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
    )
}

impl Env {
    fn url(&self, query: &str) -> String {
        format!("{}/index.php?{query}", self.server.base_url())
    }

    /// A raw request as TestRail's own bindings send it.
    async fn call(
        &self,
        method: Method,
        query: &str,
        auth: Option<(&str, &str)>,
        content_type: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let mut req = self.http.request(method, self.url(query));
        if let Some((u, k)) = auth {
            req = req.header("Authorization", basic(u, k));
        }
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.expect("body"))
    }

    async fn get(&self, route: &str) -> (StatusCode, Value) {
        self.get_as(route, ADMIN, KEY).await
    }

    async fn get_as(&self, route: &str, user: &str, key: &str) -> (StatusCode, Value) {
        let (s, _, b) = self
            .call(
                Method::GET,
                &format!("/api/v2/{route}"),
                Some((user, key)),
                Some("application/json"),
                None,
            )
            .await;
        (s, serde_json::from_str(&b).unwrap_or(Value::Null))
    }

    async fn post(&self, route: &str, body: Value) -> (StatusCode, Value) {
        self.post_as(route, ADMIN, KEY, body).await
    }

    async fn post_as(
        &self,
        route: &str,
        user: &str,
        key: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let (s, _, b) = self
            .call(
                Method::POST,
                &format!("/api/v2/{route}"),
                Some((user, key)),
                Some("application/json"),
                Some(body),
            )
            .await;
        (
            s,
            if b.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&b).expect("json body")
            },
        )
    }

    async fn control(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .request(method, format!("{}/__sim/{path}", self.server.base_url()))
            .json(&body)
            .send()
            .await
            .expect("control request");
        let s = resp.status();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    async fn settings(&self, patch: Value) {
        let (s, body) = self.control(Method::PUT, "settings", patch).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }

    async fn faults(&self, faults: Value) {
        let (s, body) = self.control(Method::PUT, "faults", faults).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }

    async fn add_sim_user(&self, body: Value) -> Value {
        let (s, u) = self.control(Method::POST, "users", body).await;
        assert_eq!(s, StatusCode::CREATED, "{u}");
        u
    }

    async fn stats(&self) -> Value {
        self.control(Method::GET, "stats", Value::Null).await.1
    }
}

fn error_text(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("<no error field>")
}

#[tokio::test]
async fn routes_on_the_query_string_and_answers_json_errors() {
    let env = start(5, 1).await;
    let (s, u) = env.get("get_user/1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(u["email"], ADMIN);
    // Parameters follow with `&`.
    let (s, page) = env.get("get_users&limit=2&offset=1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["offset"], 1);
    assert_eq!(page["users"].as_array().map(Vec::len), Some(2));
    // Unknown method: 404 with a JSON error.
    let (s, body) = env.get("get_everything").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error_text(&body).contains("get_everything"));
    // There is no delete_user in TestRail.
    let (s, _) = env.post("delete_user/2", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Not the front controller.
    let resp = env
        .http
        .get(format!("{}/api/v2/get_user/1", env.server.base_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // A TestRail Server sub-path works too.
    let resp = env
        .http
        .get(format!(
            "{}/testrail/index.php?/api/v2/get_user/1",
            env.server.base_url()
        ))
        .header("Authorization", basic(ADMIN, KEY))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn checks_run_in_the_documented_order() {
    let clock = ManualClock::default();
    let env = start_with(
        SeedConfig {
            users: 3,
            groups: 1,
            ..SeedConfig::default()
        },
        Settings::default(),
        Some(clock),
    )
    .await;
    let tester = env
        .add_sim_user(json!({"name": "Tess", "email": "tess@example.com", "api_key": "tess-key"}))
        .await;
    assert_eq!(tester["is_admin"], false);

    // 409 maintenance comes first, even before credentials.
    env.settings(json!({"maintenance": true, "rate_limit_per_minute": 1}))
        .await;
    let (s, _, b) = env
        .call(
            Method::GET,
            "/api/v2/get_user/1",
            Some((ADMIN, "wrong")),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");

    // 429 before 401: the single request of the minute was used by nobody yet, so use it up.
    env.settings(json!({"maintenance": false})).await;
    let (s, _, _) = env
        .call(
            Method::GET,
            "/api/v2/get_user/1",
            Some((ADMIN, KEY)),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = env
        .call(
            Method::GET,
            "/api/v2/get_user/1",
            Some((ADMIN, "wrong")),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    env.settings(json!({"rate_limit_per_minute": 0})).await;

    // 401 before 403 API disabled.
    env.settings(json!({"api_enabled": false})).await;
    let (s, _, b) = env
        .call(
            Method::GET,
            "/api/v2/get_user/1",
            Some((ADMIN, "wrong")),
            None,
            None,
        )
        .await;
    assert_eq!(
        (s, b.as_str()),
        (
            StatusCode::UNAUTHORIZED,
            json!({"error": texts::AUTH_FAILED}).to_string().as_str()
        )
    );
    // 403 API disabled before 404 unknown method.
    let (s, _, b) = env
        .call(
            Method::GET,
            "/api/v2/no_such_method",
            Some((ADMIN, KEY)),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(b, json!({"error": texts::API_DISABLED}).to_string());
    env.settings(json!({"api_enabled": true})).await;

    // 404 unknown method before 400 wrong verb.
    let (s, _, _) = env
        .call(
            Method::POST,
            "/api/v2/no_such_method",
            Some((ADMIN, KEY)),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // 400 wrong verb.
    let (s, _, b) = env
        .call(
            Method::GET,
            "/api/v2/add_user",
            Some((ADMIN, KEY)),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, _, _) = env
        .call(
            Method::POST,
            "/api/v2/get_user/1",
            Some((ADMIN, KEY)),
            Some("application/json"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // 400 missing / wrong content type on POST, before the administrator check.
    let (s, _, b) = env
        .call(
            Method::POST,
            "/api/v2/add_user",
            Some(("tess@example.com", "tess-key")),
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (s, b),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": texts::CONTENT_MISSING}).to_string()
        )
    );
    let (s, _, b) = env
        .call(
            Method::POST,
            "/api/v2/add_user",
            Some((ADMIN, KEY)),
            Some("text/plain"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (s, b),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": texts::CONTENT_INVALID}).to_string()
        )
    );
    // GET without a content type is accepted.
    let (s, _, _) = env
        .call(
            Method::GET,
            "/api/v2/get_user/1",
            Some((ADMIN, KEY)),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // 403 not an administrator before 400 validation.
    let (s, body) = env
        .post_as("add_user", "tess@example.com", "tess-key", json!({}))
        .await;
    assert_eq!(
        (s, error_text(&body)),
        (StatusCode::FORBIDDEN, texts::NOT_ADMIN)
    );
    let (s, body) = env.post("add_user", json!({})).await;
    assert_eq!(
        (s, error_text(&body)),
        (StatusCode::BAD_REQUEST, "Field :name is a required field.")
    );
    // Unknown ids are 400, not 404.
    let (s, body) = env.get("get_user/999").await;
    assert_eq!(
        (s, error_text(&body)),
        (StatusCode::BAD_REQUEST, texts::INVALID_USER)
    );
    // Malformed JSON.
    let (s, _, b) = env
        .call(
            Method::POST,
            "/api/v2/add_group",
            Some((ADMIN, KEY)),
            Some("application/json; charset=utf-8"),
            None,
        )
        .await;
    assert_eq!(
        (s, b),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "Field :name is a required field."}).to_string()
        ),
        "an empty body is read as an empty object"
    );
    let resp = env
        .http
        .post(env.url("/api/v2/add_group"))
        .header("Authorization", basic(ADMIN, KEY))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn basic_auth_with_keys_and_passwords() {
    let env = start(2, 0).await;
    env.add_sim_user(json!({"name": "Pat", "email": "Pat@Example.com", "password": "pw", "api_keys": ["k1", "k2"], "is_admin": true}))
        .await;
    env.add_sim_user(
        json!({"name": "Gone", "email": "gone@example.com", "api_key": "g", "is_active": false}),
    )
    .await;
    for secret in ["pw", "k1", "k2"] {
        let (s, u) = env
            .get_as("get_current_user", "pat@example.com", secret)
            .await;
        assert_eq!(s, StatusCode::OK, "{secret}");
        assert_eq!(u["name"], "Pat");
    }
    // Inactive users cannot authenticate.
    let (s, body) = env
        .get_as("get_current_user", "gone@example.com", "g")
        .await;
    assert_eq!(
        (s, error_text(&body)),
        (StatusCode::UNAUTHORIZED, texts::AUTH_FAILED)
    );
    // Missing header.
    let (s, _, _) = env
        .call(Method::GET, "/api/v2/get_current_user", None, None, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Require API keys: passwords are refused, keys still work.
    env.settings(json!({"require_api_keys": true})).await;
    let (s, _) = env
        .get_as("get_current_user", "pat@example.com", "pw")
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = env
        .get_as("get_current_user", "pat@example.com", "k2")
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn users_methods() {
    let env = start(30, 3).await;
    let plus = env
        .add_sim_user(
            json!({"name": "Plus Person", "email": "plus+qa@example.com", "api_key": "pk"}),
        )
        .await;
    // get_current_user with or without an id (the id is ignored).
    let (_, me) = env.get("get_current_user").await;
    let (_, me_id) = env.get("get_current_user/7").await;
    assert_eq!(me["email"], ADMIN);
    assert_eq!(me, me_id);
    // get_user_by_email: %2B is a plus, a raw + is a space (PHP decoding).
    let (s, u) = env
        .get("get_user_by_email&email=plus%2Bqa%40example.com")
        .await;
    assert_eq!((s, &u["id"]), (StatusCode::OK, &plus["id"]));
    let (s, body) = env.get("get_user_by_email&email=plus+qa@example.com").await;
    assert_eq!(
        (s, error_text(&body)),
        (StatusCode::BAD_REQUEST, texts::INVALID_EMAIL)
    );
    let (s, u) = env
        .get("get_user_by_email&email=PLUS%2BQA%40EXAMPLE.COM")
        .await;
    assert_eq!((s, &u["id"]), (StatusCode::OK, &plus["id"]));
    let (s, body) = env.get("get_user_by_email").await;
    assert_eq!(
        (s, error_text(&body)),
        (StatusCode::BAD_REQUEST, "Field :email is a required field.")
    );
    // Non-admins: get_users needs a project; their own record is readable, others' are not.
    let (s, body) = env.get_as("get_users", "plus+qa@example.com", "pk").await;
    assert_eq!(
        (s, error_text(&body)),
        (StatusCode::FORBIDDEN, texts::NOT_ADMIN_GET_USERS)
    );
    let own = format!("get_user/{}", plus["id"]);
    assert_eq!(
        env.get_as(&own, "plus+qa@example.com", "pk").await.0,
        StatusCode::OK
    );
    assert_eq!(
        env.get_as("get_user/1", "plus+qa@example.com", "pk")
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    // Seeded data: N people plus the administrator, some inactive, some forgotten.
    let (_, page) = env.get("get_users").await;
    let users = page["users"].as_array().expect("users");
    assert_eq!(users.len(), 32);
    let forgotten: Vec<&Value> = users
        .iter()
        .filter(|u| u["email"].as_str().is_some_and(|e| !e.contains('@')))
        .collect();
    assert!(!forgotten.is_empty());
    for f in &forgotten {
        let e = f["email"].as_str().unwrap_or_default();
        assert!(
            e.starts_with('F') && e.len() == 15 && e[1..].chars().all(|c| c.is_ascii_digit()),
            "{e}"
        );
        assert_eq!(f["name"], f["email"]);
        assert_eq!(f["is_active"], false);
    }
    assert!(
        users.iter().any(
            |u| u["is_active"] == false && u["email"].as_str().is_some_and(|e| e.contains('@'))
        )
    );
    let roles: std::collections::BTreeSet<&str> =
        users.iter().filter_map(|u| u["role"].as_str()).collect();
    assert!(roles.len() >= 3, "a mix of roles: {roles:?}");
}

#[tokio::test]
async fn add_and_update_users() {
    let env = start(3, 2).await;
    // is_active defaults to false as TestRail's reference says.
    let (s, u) = env
        .post(
            "add_user",
            json!({"name": "New Person", "email": "new@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["is_active"], false);
    assert_eq!(u["role"], "Tester");
    assert_eq!(u["email_notifications"], true);
    // Duplicate email, case-insensitively.
    let (s, body) = env
        .post(
            "add_user",
            json!({"name": "Dup", "email": "NEW@example.com", "is_active": true}),
        )
        .await;
    assert_eq!(
        (s, error_text(&body)),
        (StatusCode::BAD_REQUEST, texts::EMAIL_IN_USE)
    );
    // Validation texts.
    for (body, text) in [
        (
            json!({"email": "x@example.com"}),
            "Field :name is a required field.",
        ),
        (json!({"name": "X"}), "Field :email is a required field."),
        (
            json!({"name": "X", "email": "not-an-email"}),
            texts::INVALID_EMAIL,
        ),
        (
            json!({"name": "X", "email": "x@example.com", "role_id": 99}),
            "Field :role_id is not a valid role.",
        ),
        (
            json!({"name": "X", "email": "x@example.com", "group_ids": [99]}),
            "Field :group_ids is not a valid group.",
        ),
        (
            json!({"name": "X", "email": "x@example.com", "is_active": "yes"}),
            "Field :is_active is not a valid boolean.",
        ),
        (
            json!({"name": "x".repeat(251), "email": "x@example.com"}),
            "Field :name is too long (250 characters at most).",
        ),
    ] {
        let (s, resp) = env.post("add_user", body).await;
        assert_eq!((s, error_text(&resp)), (StatusCode::BAD_REQUEST, text));
    }
    // The switch for add_user's default and for unique emails.
    env.settings(json!({"add_user_active_default": true, "unique_emails": false}))
        .await;
    let (_, u2) = env
        .post(
            "add_user",
            json!({"name": "Other", "email": "new@example.com", "group_ids": [1]}),
        )
        .await;
    assert_eq!(u2["is_active"], true);
    assert_eq!(u2["group_ids"], json!([1]));
    let (_, g1) = env.get("get_group/1").await;
    assert!(
        g1["user_ids"]
            .as_array()
            .is_some_and(|ids| ids.contains(&u2["id"]))
    );

    // update_user is partial; is_active deactivates and reactivates.
    let id = u["id"].as_u64().expect("id");
    let (s, upd) = env
        .post(
            &format!("update_user/{id}"),
            json!({"is_active": true, "role_id": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            upd["is_active"].clone(),
            upd["role"].clone(),
            upd["name"].clone()
        ),
        (json!(true), json!("Lead"), json!("New Person"))
    );
    let (_, upd) = env
        .post(&format!("update_user/{id}"), json!({"is_active": false}))
        .await;
    assert_eq!(upd["is_active"], false);
    assert_eq!(upd["role_id"], 1);
    // group_ids on update_user replaces the user's groups, and the groups follow.
    let (_, upd) = env
        .post(&format!("update_user/{id}"), json!({"group_ids": [1, 2]}))
        .await;
    assert_eq!(upd["group_ids"], json!([1, 2]));
    let (_, upd) = env
        .post(&format!("update_user/{id}"), json!({"group_ids": [2]}))
        .await;
    assert_eq!(upd["group_ids"], json!([2]));
    let (_, g1) = env.get("get_group/1").await;
    assert!(
        !g1["user_ids"]
            .as_array()
            .is_some_and(|ids| ids.contains(&json!(id)))
    );
    // Unknown user, bad email.
    let (s, body) = env
        .post("update_user/999", json!({"is_active": false}))
        .await;
    assert_eq!(
        (s, error_text(&body)),
        (StatusCode::BAD_REQUEST, texts::INVALID_USER)
    );
    let (s, body) = env
        .post(&format!("update_user/{id}"), json!({"email": "bad"}))
        .await;
    assert_eq!(
        (s, error_text(&body)),
        (StatusCode::BAD_REQUEST, texts::INVALID_EMAIL)
    );
    assert!(env.server.sim().snapshot().memberships_consistent());
}

#[tokio::test]
async fn paging_envelope_links_and_the_legacy_array() {
    let env = start(599, 0).await; // 600 users in all
    let (_, p0) = env.get("get_users").await;
    assert_eq!(
        (
            p0["offset"].clone(),
            p0["limit"].clone(),
            p0["size"].clone()
        ),
        (json!(0), json!(250), json!(250))
    );
    assert_eq!(
        p0["_links"],
        json!({"next": "/api/v2/get_users&limit=250&offset=250", "prev": null})
    );
    let (_, p2) = env.get("get_users&limit=250&offset=500").await;
    assert_eq!(p2["size"], 100);
    assert_eq!(
        p2["_links"],
        json!({"next": null, "prev": "/api/v2/get_users&limit=250&offset=250"})
    );
    // A limit over 250 is clamped; 0 is refused.
    let (_, big) = env.get("get_users&limit=1000").await;
    assert_eq!(big["limit"], 250);
    let (s, _) = env.get("get_users&limit=0").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = env.get("get_users&offset=abc").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Legacy mode: one bare array of every user.
    env.settings(json!({"users_pagination": "array"})).await;
    let (_, all) = env.get("get_users&limit=250&offset=0").await;
    assert_eq!(all.as_array().map(Vec::len), Some(600));
    // Roles and groups use the envelope too.
    let (_, roles) = env.get("get_roles").await;
    assert!(roles["roles"].as_array().is_some_and(|r| r.len() >= 5));
    assert_eq!(roles["_links"]["next"], Value::Null);
}

#[tokio::test]
async fn project_users_are_explicit_active_and_project_roled() {
    let env = start(4, 0).await;
    let a = env
        .add_sim_user(json!({"name": "A", "email": "a@example.com", "role_id": 3}))
        .await;
    let b = env
        .add_sim_user(json!({"name": "B", "email": "b@example.com", "is_active": false}))
        .await;
    let c = env
        .add_sim_user(json!({"name": "C", "email": "c@example.com", "role_id": 3}))
        .await;
    let (s, p) = env
        .control(
            Method::POST,
            "projects",
            json!({"name": "Explicit", "users": [{"user_id": a["id"], "role_id": 1}, {"user_id": b["id"]}, {"user_id": c["id"]}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, page) = env.get(&format!("get_users/{}", p["id"])).await;
    assert_eq!(s, StatusCode::OK);
    let users = page["users"].as_array().expect("users");
    let ids: Vec<&Value> = users.iter().map(|u| &u["id"]).collect();
    // The administrator (1) reaches every project; the project's default is "No Access".
    assert_eq!(
        ids,
        vec![&json!(1), &a["id"], &c["id"]],
        "inactive B is left out"
    );
    assert_eq!(users[1]["role"], "Lead", "project-level role");
    assert_eq!(
        users[2]["role"], "Tester",
        "global role when no project role"
    );
    let (s, body) = env.get("get_users/999").await;
    assert_eq!(
        (s, error_text(&body)),
        (StatusCode::BAD_REQUEST, texts::INVALID_PROJECT)
    );
    let (s, projects) = env.get("get_projects").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        projects["projects"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x["name"] == "Explicit"))
    );
    let (s, project) = env.get(&format!("get_project/{}", p["id"])).await;
    assert_eq!(
        (s, project["name"].clone()),
        (StatusCode::OK, json!("Explicit"))
    );
}

#[tokio::test]
async fn groups_replace_membership_and_stay_consistent() {
    let env = start(10, 0).await;
    let (s, g) = env.post("add_group", json!({"name": "QA"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(g["user_ids"], json!([]));
    let gid = g["id"].as_u64().expect("id");
    let (_, g) = env
        .post(
            &format!("update_group/{gid}"),
            json!({"user_ids": [2, 3, 4]}),
        )
        .await;
    assert_eq!(g["user_ids"], json!([2, 3, 4]));
    // user_ids replaces the whole list.
    let (_, g) = env
        .post(&format!("update_group/{gid}"), json!({"user_ids": [4, 5]}))
        .await;
    assert_eq!(g["user_ids"], json!([4, 5]));
    let (_, u2) = env.get("get_user/2").await;
    assert_eq!(u2["group_ids"], json!([]));
    let (_, u5) = env.get("get_user/5").await;
    assert_eq!(u5["group_ids"], json!([gid]));
    // A name-only update keeps the members.
    let (_, g) = env
        .post(&format!("update_group/{gid}"), json!({"name": "Quality"}))
        .await;
    assert_eq!(
        (g["name"].clone(), g["user_ids"].clone()),
        (json!("Quality"), json!([4, 5]))
    );
    // Invalid members or group.
    let (s, body) = env
        .post(&format!("update_group/{gid}"), json!({"user_ids": [999]}))
        .await;
    assert_eq!(
        (s, error_text(&body)),
        (
            StatusCode::BAD_REQUEST,
            "Field :user_ids is not a valid user."
        )
    );
    let (s, body) = env.post("update_group/999", json!({"name": "x"})).await;
    assert_eq!(
        (s, error_text(&body)),
        (StatusCode::BAD_REQUEST, texts::INVALID_GROUP)
    );
    let (s, body) = env.get("get_group/999").await;
    assert_eq!(
        (s, error_text(&body)),
        (StatusCode::BAD_REQUEST, texts::INVALID_GROUP)
    );
    // delete_group: 200 with an empty body; members lose the group.
    let (s, _, body) = env
        .call(
            Method::POST,
            &format!("/api/v2/delete_group/{gid}"),
            Some((ADMIN, KEY)),
            Some("application/json"),
            Some(json!({})),
        )
        .await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, ""));
    let (_, u5) = env.get("get_user/5").await;
    assert_eq!(u5["group_ids"], json!([]));
    let (s, _) = env.post(&format!("delete_group/{gid}"), json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(env.server.sim().snapshot().memberships_consistent());
}

#[tokio::test]
async fn concurrent_group_writes_are_last_write_wins_and_consistent() {
    let env = Arc::new(start(40, 1).await);
    let lists: Vec<Vec<u64>> = (0..24u64)
        .map(|i| (2..=41).filter(|u| (u + i) % 3 == 0).collect())
        .collect();
    let mut tasks = Vec::new();
    for list in lists.clone() {
        let env = env.clone();
        tasks.push(tokio::spawn(async move {
            env.post("update_group/1", json!({"user_ids": list}))
                .await
                .0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), StatusCode::OK);
    }
    let snap = env.server.sim().snapshot();
    assert!(snap.memberships_consistent());
    let final_list = snap.groups[&1].user_ids.clone();
    assert!(
        lists.contains(&final_list),
        "the final membership is one of the written lists"
    );
}

#[tokio::test]
async fn editions_and_versions_shape_the_api() {
    let env = start(3, 1).await;
    let (_, u) = env.get("get_user/1").await;
    assert!(u.get("sso_enabled").is_none() && u.get("assigned_projects").is_none());
    assert!(u.get("is_admin").is_some() && u.get("group_ids").is_some());
    let (_, roles) = env.get("get_roles").await;
    assert!(roles["roles"][0].get("is_project_admin").is_none());

    env.settings(json!({"edition": "enterprise"})).await;
    let (_, u) = env.get("get_user/1").await;
    assert!(u.get("sso_enabled").is_some() && u.get("assigned_projects").is_some());
    let (_, roles) = env.get("get_roles").await;
    assert!(roles["roles"][0].get("is_project_admin").is_some());

    env.settings(json!({"edition": "professional", "testrail_version": "7.4"}))
        .await;
    assert_eq!(env.get("get_groups").await.0, StatusCode::NOT_FOUND);
    assert_eq!(env.get("get_group/1").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        env.post("add_group", json!({"name": "x"})).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(env.get("get_roles").await.0, StatusCode::OK);

    env.settings(json!({"testrail_version": "7.2"})).await;
    assert_eq!(
        env.post("add_user", json!({"name": "x", "email": "x@example.com"}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        env.post("update_user/2", json!({"is_active": false}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(env.get("get_roles").await.0, StatusCode::NOT_FOUND);
    let (_, u) = env.get("get_user/1").await;
    assert!(u.get("is_admin").is_none() && u.get("group_ids").is_none());
    assert!(u.get("role_id").is_some());
    assert_eq!(env.get("get_current_user").await.0, StatusCode::OK);

    env.settings(json!({"testrail_version": "6.5"})).await;
    assert_eq!(env.get("get_current_user").await.0, StatusCode::NOT_FOUND);
    assert_eq!(env.get("get_users").await.0, StatusCode::OK);

    let (s, _) = env
        .control(
            Method::PUT,
            "settings",
            json!({"testrail_version": "seven"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = env
        .control(Method::PUT, "settings", json!({"no_such_setting": 1}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        env.server.sim().settings().testrail_version,
        Version(6, 5, 0)
    );
}

#[tokio::test]
async fn rate_limit_uses_the_replaceable_clock() {
    let clock = ManualClock::default();
    let env = start_with(
        SeedConfig {
            users: 2,
            groups: 0,
            ..SeedConfig::default()
        },
        Settings::default(),
        Some(clock.clone()),
    )
    .await;
    env.settings(json!({"rate_limit_per_minute": 3})).await;
    clock.advance(Duration::from_secs(45));
    for _ in 0..3 {
        assert_eq!(env.get("get_user/1").await.0, StatusCode::OK);
    }
    let (s, headers, body) = env
        .call(
            Method::GET,
            "/api/v2/get_user/1",
            Some((ADMIN, KEY)),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("15")
    );
    assert_eq!(
        body,
        json!({"error": "API Rate Limit Exceeded - 3 per minute maximum allowed. Retry after 15 seconds."}).to_string()
    );
    // The control API is never limited or counted.
    assert_eq!(
        env.control(Method::GET, "settings", Value::Null).await.0,
        StatusCode::OK
    );
    clock.advance(Duration::from_secs(15));
    assert_eq!(env.get("get_user/1").await.0, StatusCode::OK);
    let stats = env.stats().await;
    assert_eq!(stats["rate_limited"], 1);
    assert_eq!(stats["requests_total"], 5);
    assert_eq!(stats["by_method"]["get_user"], 5);
}

#[tokio::test]
async fn faults_error_drop_truncate_repeat_and_fail_after() {
    let env = start(300, 0).await;
    // error_rate: a 500 before any effect.
    env.faults(json!({"error_rate": 1.0, "methods": ["add_user"]}))
        .await;
    let (s, body) = env
        .post(
            "add_user",
            json!({"name": "E", "email": "e@example.com", "is_active": true}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body["error"].is_string());
    assert_eq!(
        env.get("get_user_by_email&email=e%40example.com").await.0,
        StatusCode::BAD_REQUEST,
        "no effect"
    );
    // drop_rate: the effect happens, the answer never comes.
    env.faults(json!({"drop_rate": 1.0, "methods": ["add_user"]}))
        .await;
    let resp = env
        .http
        .post(env.url("/api/v2/add_user"))
        .header("Authorization", basic(ADMIN, KEY))
        .header("Content-Type", "application/json")
        .body(json!({"name": "D", "email": "d@example.com", "is_active": true}).to_string())
        .send()
        .await;
    assert!(resp.is_err(), "the connection is cut before any answer");
    assert_eq!(
        env.get("get_user_by_email&email=d%40example.com").await.0,
        StatusCode::OK,
        "it took effect"
    );
    // truncate_rate: half a body.
    env.faults(json!({"truncate_rate": 1.0, "methods": ["get_user"]}))
        .await;
    let resp = env
        .http
        .get(env.url("/api/v2/get_user/1"))
        .header("Authorization", basic(ADMIN, KEY))
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.is_err(), "the body is cut short");
    // repeat_page_rate: the previous page again.
    env.faults(json!({"repeat_page_rate": 1.0})).await;
    let (_, p) = env.get("get_users&limit=250&offset=250").await;
    assert_eq!(p["offset"], 0);
    assert_eq!(p["users"][0]["id"], 1);
    // fail_after_requests: every request after the Nth fails.
    env.faults(json!({"fail_after_requests": 2})).await;
    assert_eq!(env.get("get_user/1").await.0, StatusCode::OK);
    assert_eq!(env.get("get_user/1").await.0, StatusCode::OK);
    assert_eq!(
        env.get("get_user/1").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        env.get("get_roles").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // latency.
    env.faults(json!({"latency_ms": 150})).await;
    let started = std::time::Instant::now();
    assert_eq!(env.get("get_user/1").await.0, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
    // Bad fault settings change nothing.
    let (s, _) = env
        .control(Method::PUT, "faults", json!({"error_rate": 2.0}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(env.server.sim().faults().latency_ms, 150);
}

#[tokio::test]
async fn reset_restores_the_seeded_state() {
    let env = start(5, 1).await;
    let before = env.server.sim().snapshot();
    env.post("add_user", json!({"name": "X", "email": "x@example.com"}))
        .await;
    env.settings(json!({"api_enabled": false})).await;
    env.faults(json!({"latency_ms": 5})).await;
    let (s, _) = env.control(Method::POST, "reset", Value::Null).await;
    assert_eq!(s, StatusCode::OK);
    let after = env.server.sim().snapshot();
    assert_eq!(before.users, after.users);
    assert_eq!(before.groups, after.groups);
    assert!(env.server.sim().settings().api_enabled);
    assert_eq!(env.server.sim().faults().latency_ms, 0);
    assert_eq!(env.stats().await["requests_total"], 0);
}

#[tokio::test]
async fn seeding_is_deterministic() {
    let cfg = SeedConfig {
        users: 120,
        groups: 7,
        seed: 42,
        ..SeedConfig::default()
    };
    let a = testrail_sim::seed::generate(&cfg);
    let b = testrail_sim::seed::generate(&cfg);
    let c = testrail_sim::seed::generate(&SeedConfig {
        seed: 43,
        ..cfg.clone()
    });
    assert_eq!(a.users, b.users);
    assert_eq!(a.groups, b.groups);
    assert_ne!(a.users, c.users);
    assert_eq!(a.users.len(), 121, "N people plus the administrator");
    assert_eq!(a.groups.len(), 7);
    assert!(a.memberships_consistent());
    assert!(!a.projects.is_empty());
    let emails: std::collections::HashSet<String> =
        a.users.values().map(|u| u.email.to_lowercase()).collect();
    assert_eq!(emails.len(), a.users.len(), "unique emails");
    let _ = Edition::Enterprise;
}

#[tokio::test]
async fn binary_prints_the_base_url_first() {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_testrail-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--users",
            "10",
            "--groups",
            "2",
            "--admin-email",
            "root@example.com",
            "--admin-key",
            "rk",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn testrail-sim");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("prints in time")
        .expect("read")
        .expect("a line");
    assert!(
        first.starts_with("http://127.0.0.1:") && !first.ends_with(":0"),
        "{first}"
    );
    let resp = reqwest::Client::new()
        .get(format!("{first}/index.php?/api/v2/get_users"))
        .header("Authorization", basic("root@example.com", "rk"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["users"].as_array().map(Vec::len), Some(11));
    child.kill().await.expect("kill");
}

// ---- projects and project access ------------------------------------------------------------

impl Env {
    /// Every project with its raw access (`GET /__sim/projects`).
    async fn raw_projects(&self) -> Value {
        let (s, v) = self.control(Method::GET, "projects", Value::Null).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    async fn raw_project(&self, id: u64) -> Value {
        self.raw_projects()
            .await
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["id"] == id).cloned())
            .expect("project in /__sim/projects")
    }

    async fn new_project(&self, body: Value) -> u64 {
        let (s, p) = self.control(Method::POST, "projects", body).await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        p["id"].as_u64().expect("project id")
    }

    async fn patch_project(&self, id: u64, body: Value) -> Value {
        let (s, p) = self
            .control(Method::PATCH, &format!("projects/{id}"), body)
            .await;
        assert_eq!(s, StatusCode::OK, "{p}");
        p
    }

    /// `get_users/{project_id}` as the administrator: (id, role) of every listed user.
    async fn project_users(&self, id: u64) -> Vec<(u64, String)> {
        let (s, page) = self.get(&format!("get_users/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        page["users"]
            .as_array()
            .expect("users")
            .iter()
            .map(|u| {
                (
                    u["id"].as_u64().expect("id"),
                    u["role"].as_str().unwrap_or("<none>").to_string(),
                )
            })
            .collect()
    }
}

#[tokio::test]
async fn projects_render_per_version_and_edition() {
    let env = start_with(
        SeedConfig {
            users: 4,
            groups: 2,
            ..SeedConfig::default()
        },
        Settings::default(),
        Some(ManualClock::default()),
    )
    .await;
    let id = env
        .new_project(json!({
            "name": "Access Matrix",
            "announcement": "Release freeze on Friday",
            "show_announcement": true,
            "is_completed": true,
            "default_role_id": 3,
            "users": [
                {"user_id": 4, "role_id": 1},
                {"user_id": 2, "role_id": 0},
                {"user_id": 3, "role_id": 7},
            ],
            "groups": [{"group_id": 2, "role_id": 1}, {"group_id": 1, "role_id": 0}],
        }))
        .await;
    let base = json!({
        "id": id,
        "name": "Access Matrix",
        "announcement": "Release freeze on Friday",
        "show_announcement": true,
        "is_completed": true,
        "completed_on": 1_767_225_600,
        "suite_mode": 1,
        "url": format!("{}/index.php?/projects/overview/{id}", env.server.base_url()),
    });
    let route = format!("get_project/{id}");

    // Before 7.3: no access fields at all.
    env.settings(json!({"testrail_version": "7.2"})).await;
    let (s, got) = env.get(&route).await;
    assert_eq!((s, &got), (StatusCode::OK, &base));

    // 7.3 and 7.4: the default role, and no groups yet.
    let mut v73 = base.clone();
    v73["default_role_id"] = json!(3);
    v73["default_role"] = json!("Tester");
    v73["groups"] = json!([]);
    for version in ["7.3", "7.4"] {
        env.settings(json!({"testrail_version": version})).await;
        let (s, got) = env.get(&route).await;
        assert_eq!((s, &got), (StatusCode::OK, &v73), "{version}");
    }

    // Latest Professional: groups by id, role 0 named "Global Role"; no users key.
    env.settings(json!({"testrail_version": Version::LATEST.to_string()}))
        .await;
    let mut pro = v73.clone();
    pro["groups"] = json!([
        {"id": 1, "role_id": 0, "role": "Global Role"},
        {"id": 2, "role_id": 1, "role": "Lead"},
    ]);
    let (s, got) = env.get(&route).await;
    assert_eq!((s, &got), (StatusCode::OK, &pro));
    assert!(got.get("users").is_none());

    // Latest Enterprise: every user with a project role, by id.
    env.settings(json!({"edition": "enterprise"})).await;
    let mut users = Vec::new();
    for (uid, role_id, role) in [(2, 0, "Global Role"), (3, 7, "No Access"), (4, 1, "Lead")] {
        let (_, u) = env.get(&format!("get_user/{uid}")).await;
        users.push(json!({
            "id": uid,
            "global_role_id": u["role_id"],
            "global_role": u["role"],
            "project_role_id": role_id,
            "project_role": role,
        }));
    }
    let mut ent = pro.clone();
    ent["users"] = Value::Array(users);
    let (s, got) = env.get(&route).await;
    assert_eq!((s, &got), (StatusCode::OK, &ent));
    // get_projects renders each item the same way.
    let (s, list) = env.get("get_projects").await;
    assert_eq!(s, StatusCode::OK);
    let item = list["projects"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["id"] == id))
        .expect("listed");
    assert_eq!(item, &ent);

    // Default roles 0 and "No Access" by name; a TestRail Server sub-path reaches the url.
    env.patch_project(id, json!({"default_role_id": 0})).await;
    let (_, got) = env.get(&route).await;
    assert_eq!(
        (&got["default_role_id"], &got["default_role"]),
        (&json!(0), &json!("Global Role"))
    );
    env.patch_project(id, json!({"default_role_id": 7})).await;
    let (_, got) = env.get(&route).await;
    assert_eq!(got["default_role"], "No Access");
    let resp = env
        .http
        .get(format!(
            "{}/testrail/index.php?/api/v2/{route}",
            env.server.base_url()
        ))
        .header("Authorization", basic(ADMIN, KEY))
        .send()
        .await
        .expect("request");
    let got: Value = resp.json().await.expect("json");
    assert_eq!(
        got["url"],
        format!(
            "{}/testrail/index.php?/projects/overview/{id}",
            env.server.base_url()
        )
    );
}

#[tokio::test]
async fn get_projects_filters_completed_and_pages() {
    let sim = Sim::with_projects(
        SeedConfig {
            users: 10,
            groups: 2,
            ..SeedConfig::default()
        },
        Some(260),
        Settings::default(),
        Arc::new(ManualClock::default()),
    );
    let env = start_sim(sim).await;
    let snap = env.server.sim().snapshot();
    assert_eq!(snap.projects.len(), 260);

    let (s, first) = env.get("get_projects").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            &first["offset"],
            &first["limit"],
            &first["size"],
            &first["_links"]
        ),
        (
            &json!(0),
            &json!(250),
            &json!(250),
            &json!({"next": "/api/v2/get_projects&limit=250&offset=250", "prev": null})
        )
    );
    let (_, second) = env.get("get_projects&limit=250&offset=250").await;
    assert_eq!(second["size"], 10);
    assert_eq!(
        second["_links"],
        json!({"next": null, "prev": "/api/v2/get_projects&limit=250&offset=0"})
    );
    let ids: Vec<u64> = first["projects"]
        .as_array()
        .into_iter()
        .chain(second["projects"].as_array())
        .flatten()
        .filter_map(|p| p["id"].as_u64())
        .collect();
    assert_eq!(ids, (1..=260).collect::<Vec<u64>>());
    let (_, page) = env.get("get_projects&limit=100&offset=200").await;
    assert_eq!(
        (&page["size"], &page["_links"]["next"]),
        (&json!(60), &Value::Null)
    );

    // Names: the list first, then numbered.
    assert_eq!(first["projects"][0]["name"], "Web Storefront");
    assert_eq!(first["projects"][40]["name"], "Web Storefront 2");

    // is_completed=1|0 filters, and the filter stays in the links.
    let done = snap.projects.values().filter(|p| p.is_completed).count();
    assert!(done > 0 && done < 250);
    let (s, page) = env.get("get_projects&is_completed=1").await;
    assert_eq!(s, StatusCode::OK);
    let items = page["projects"].as_array().expect("projects");
    assert_eq!(items.len(), done);
    assert!(
        items
            .iter()
            .all(|p| p["is_completed"] == true && p["completed_on"].is_i64())
    );
    let (_, page) = env.get("get_projects&is_completed=0").await;
    let items = page["projects"].as_array().expect("projects");
    assert_eq!(items.len(), 260 - done);
    assert!(
        items
            .iter()
            .all(|p| p["is_completed"] == false && p["completed_on"].is_null())
    );
    let (_, page) = env.get("get_projects&is_completed=0&limit=100").await;
    assert_eq!(
        page["_links"]["next"],
        "/api/v2/get_projects&is_completed=0&limit=100&offset=100"
    );
    let (s, body) = env.get("get_projects&is_completed=maybe").await;
    assert_eq!(
        (s, error_text(&body)),
        (
            StatusCode::BAD_REQUEST,
            "Field :is_completed is not a valid boolean."
        )
    );
}

#[tokio::test]
async fn update_project_sets_and_clears_roles() {
    let clock = ManualClock::default();
    let env = start_with(
        SeedConfig {
            users: 6,
            groups: 2,
            ..SeedConfig::default()
        },
        Settings {
            edition: Edition::Enterprise,
            ..Settings::default()
        },
        Some(clock.clone()),
    )
    .await;
    let id = env
        .new_project(json!({
            "name": "Roles",
            "default_role_id": 3,
            "users": [{"user_id": 2, "role_id": 4}, {"user_id": 3, "role_id": 5}],
            "groups": [{"group_id": 1, "role_id": 2}],
        }))
        .await;
    let route = format!("update_project/{id}");
    let roles_of = |p: &Value, key: &str, role_key: &str| -> Vec<(u64, u64)> {
        p[key]
            .as_array()
            .expect("list")
            .iter()
            .map(|e| (e["id"].as_u64().unwrap(), e[role_key].as_u64().unwrap()))
            .collect()
    };

    // A user's project role; the other user is left alone.
    let (s, p) = env
        .post(&route, json!({"users": [{"user_id": 2, "role_id": 1}]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(
        roles_of(&p, "users", "project_role_id"),
        vec![(2, 1), (3, 5)]
    );
    assert_eq!(p["users"][0]["project_role"], "Lead");
    assert_eq!(p, env.get(&format!("get_project/{id}")).await.1);
    // Role 0 is "use the global role" (kept, shown as "Global Role"); `id` works as the key.
    let (_, p) = env
        .post(&route, json!({"users": [{"id": 3, "role_id": 0}]}))
        .await;
    assert_eq!(
        roles_of(&p, "users", "project_role_id"),
        vec![(2, 1), (3, 0)]
    );
    assert_eq!(p["users"][1]["project_role"], "Global Role");
    // null clears the user's project role.
    let (_, p) = env
        .post(&route, json!({"users": [{"user_id": 2, "role_id": null}]}))
        .await;
    assert_eq!(roles_of(&p, "users", "project_role_id"), vec![(3, 0)]);
    // Group roles: set, then clear, the other group untouched.
    let (_, p) = env
        .post(&route, json!({"groups": [{"group_id": 2, "role_id": 1}]}))
        .await;
    assert_eq!(roles_of(&p, "groups", "role_id"), vec![(1, 2), (2, 1)]);
    let (_, p) = env
        .post(&route, json!({"groups": [{"id": 1, "role_id": null}]}))
        .await;
    assert_eq!(roles_of(&p, "groups", "role_id"), vec![(2, 1)]);
    // The default role: No Access, then the global role.
    let (_, p) = env.post(&route, json!({"default_role_id": 7})).await;
    assert_eq!(
        (&p["default_role_id"], &p["default_role"]),
        (&json!(7), &json!("No Access"))
    );
    let (_, p) = env.post(&route, json!({"default_role_id": 0})).await;
    assert_eq!(p["default_role"], "Global Role");

    // A partial update leaves the access alone.
    let before = env.raw_project(id).await;
    let (s, p) = env
        .post(
            &route,
            json!({"name": "Renamed", "announcement": "Read me", "show_announcement": true, "unknown_field": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (&p["name"], &p["announcement"], &p["show_announcement"]),
        (&json!("Renamed"), &json!("Read me"), &json!(true))
    );
    let after = env.raw_project(id).await;
    for key in [
        "default_role_id",
        "user_roles",
        "group_roles",
        "is_completed",
    ] {
        assert_eq!(before[key], after[key], "{key}");
    }

    // Completing sets completed_on to the simulator clock; completing again keeps it;
    // reopening clears it.
    let (_, p) = env.post(&route, json!({"is_completed": true})).await;
    assert_eq!(
        (&p["is_completed"], &p["completed_on"]),
        (&json!(true), &json!(1_767_225_600))
    );
    clock.advance(Duration::from_secs(3600));
    let (_, p) = env.post(&route, json!({"is_completed": 1})).await;
    assert_eq!(p["completed_on"], 1_767_225_600);
    let (_, p) = env.post(&route, json!({"is_completed": false})).await;
    assert_eq!(
        (&p["is_completed"], &p["completed_on"]),
        (&json!(false), &Value::Null)
    );

    // The raw view, and the method is counted like every other.
    let raw = env.raw_project(id).await;
    assert_eq!(
        (
            &raw["user_roles"],
            &raw["group_roles"],
            &raw["default_role_id"]
        ),
        (
            &json!([{"user_id": 3, "role_id": 0}]),
            &json!([{"group_id": 2, "role_id": 1}]),
            &json!(0)
        )
    );
    assert_eq!(env.stats().await["by_method"]["update_project"], 11);

    // Professional accepts users too; it only does not report them.
    env.settings(json!({"edition": "professional"})).await;
    let (s, p) = env
        .post(&route, json!({"users": [{"user_id": 4, "role_id": 2}]}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(p.get("users").is_none());
    assert_eq!(
        env.raw_project(id).await["user_roles"],
        json!([{"user_id": 3, "role_id": 0}, {"user_id": 4, "role_id": 2}])
    );
}

#[tokio::test]
async fn update_project_rejects_bad_requests_and_changes_nothing() {
    let env = start(5, 2).await;
    env.add_sim_user(
        json!({"name": "Lead", "email": "lead@example.com", "role_id": 1, "api_key": "lk"}),
    )
    .await;
    let id = env
        .new_project(json!({
            "name": "Guarded",
            "default_role_id": 3,
            "users": [{"user_id": 2, "role_id": 4}],
            "groups": [{"group_id": 1, "role_id": 2}],
        }))
        .await;
    let route = format!("update_project/{id}");
    let before = env.raw_projects().await;

    let cases = [
        (json!({"name": ""}), texts::NAME_REQUIRED),
        (
            json!({"name": "ok", "users": [{"user_id": 999, "role_id": 1}]}),
            texts::INVALID_PROJECT_USERS,
        ),
        (
            json!({"users": [{"user_id": 2, "role_id": 1}, {"role_id": 1}]}),
            texts::INVALID_PROJECT_USERS,
        ),
        (
            json!({"users": [{"user_id": 2, "role_id": 1}], "groups": [{"group_id": 99, "role_id": 1}]}),
            texts::INVALID_PROJECT_GROUPS,
        ),
        (
            json!({"users": [{"user_id": 2, "role_id": 99}]}),
            texts::INVALID_ROLE,
        ),
        (
            json!({"name": "ok", "groups": [{"group_id": 1, "role_id": "3"}]}),
            texts::INVALID_ROLE,
        ),
        (json!({"users": [{"user_id": 2}]}), texts::ROLE_REQUIRED),
        (
            json!({"name": "ok", "default_role_id": 99}),
            texts::INVALID_DEFAULT_ROLE,
        ),
        (
            json!({"users": {"user_id": 2, "role_id": 1}}),
            "Field :users is not a valid array.",
        ),
        (
            json!({"name": "ok", "is_completed": "yes"}),
            "Field :is_completed is not a valid boolean.",
        ),
    ];
    for (body, text) in cases {
        let (s, got) = env.post(&route, body.clone()).await;
        assert_eq!(
            (s, error_text(&got)),
            (StatusCode::BAD_REQUEST, text),
            "{body}"
        );
    }
    // Administrators only; unknown projects; the transport rules of every POST.
    let (s, got) = env
        .post_as(&route, "lead@example.com", "lk", json!({"name": "Mine"}))
        .await;
    assert_eq!(
        (s, error_text(&got)),
        (StatusCode::FORBIDDEN, texts::NOT_ADMIN)
    );
    for bad_route in ["update_project/999", "update_project/abc"] {
        let (s, got) = env.post(bad_route, json!({"name": "x"})).await;
        assert_eq!(
            (s, error_text(&got)),
            (StatusCode::BAD_REQUEST, texts::INVALID_PROJECT)
        );
    }
    let q = format!("/api/v2/{route}");
    let (s, _, b) = env
        .call(
            Method::POST,
            &q,
            Some((ADMIN, KEY)),
            None,
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(
        (s, b.contains(texts::CONTENT_MISSING)),
        (StatusCode::BAD_REQUEST, true)
    );
    let (s, _, b) = env
        .call(
            Method::POST,
            &q,
            Some((ADMIN, KEY)),
            Some("application/json"),
            Some(json!("x")),
        )
        .await;
    assert_eq!(
        (s, b.contains(texts::INVALID_JSON)),
        (StatusCode::BAD_REQUEST, true)
    );
    let (s, _) = env.get(&route).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Injected faults reach it like every method.
    env.faults(json!({"error_rate": 1.0, "methods": ["update_project"]}))
        .await;
    let (s, _) = env.post(&route, json!({"name": "Faulted"})).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    env.faults(json!({})).await;
    assert_eq!(env.raw_projects().await, before, "nothing changed");

    // "No Access" is a project role only: not listed by get_roles, refused as a global role.
    let (_, roles) = env.get("get_roles").await;
    let names: Vec<&str> = roles["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names.len(), 6);
    assert!(!names.contains(&"No Access"));
    let (s, got) = env
        .post(
            "add_user",
            json!({"name": "N", "email": "n@example.com", "role_id": 7}),
        )
        .await;
    assert_eq!(
        (s, error_text(&got)),
        (StatusCode::BAD_REQUEST, texts::INVALID_ROLE)
    );
    let (s, got) = env.post("update_user/2", json!({"role_id": 7})).await;
    assert_eq!(
        (s, error_text(&got)),
        (StatusCode::BAD_REQUEST, texts::INVALID_ROLE)
    );

    // Before 7.3 the access fields are ignored like any unknown field; before 7.5 `groups` is.
    env.settings(json!({"testrail_version": "7.2"})).await;
    let (s, p) = env
        .post(
            &route,
            json!({"name": "Old", "default_role_id": 99, "users": [{"user_id": 999, "role_id": 1}]}),
        )
        .await;
    assert_eq!((s, &p["name"]), (StatusCode::OK, &json!("Old")));
    env.settings(json!({"testrail_version": "7.4"})).await;
    let (s, _) = env
        .post(
            &route,
            json!({"users": [{"user_id": 3, "role_id": 1}], "groups": [{"group_id": 99, "role_id": 1}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let raw = env.raw_project(id).await;
    assert_eq!(
        (
            &raw["default_role_id"],
            &raw["user_roles"],
            &raw["group_roles"]
        ),
        (
            &json!(3),
            &json!([{"user_id": 2, "role_id": 4}, {"user_id": 3, "role_id": 1}]),
            &json!([{"group_id": 1, "role_id": 2}])
        )
    );
}

#[tokio::test]
async fn project_users_follow_the_effective_role_rule() {
    let env = start(0, 0).await;
    let mut ids = std::collections::BTreeMap::new();
    for (name, role_id, is_admin, is_active) in [
        ("own", 3, false, true),
        ("own-na", 3, false, true),
        ("groups", 3, false, true),
        ("group-zero", 4, false, true),
        ("none", 2, false, true),
        ("inactive", 3, false, false),
        ("admin2", 2, true, true),
    ] {
        let u = env
            .add_sim_user(json!({
                "name": name,
                "email": format!("{name}@example.com"),
                "role_id": role_id,
                "is_admin": is_admin,
                "is_active": is_active,
                "api_key": name,
            }))
            .await;
        ids.insert(name, u["id"].as_u64().expect("id"));
    }
    let id = |n: &str| ids[n];
    let mut group = std::collections::BTreeMap::new();
    for (name, members) in [
        ("G1", vec![id("own"), id("own-na")]),
        ("G2", vec![id("groups")]),
        ("G3", vec![id("groups")]),
        ("G4", vec![id("group-zero")]),
    ] {
        let (s, g) = env
            .post("add_group", json!({"name": name, "user_ids": members}))
            .await;
        assert_eq!(s, StatusCode::OK, "{g}");
        group.insert(name, g["id"].as_u64().expect("group id"));
    }
    let pid = env
        .new_project(json!({
            "name": "Restricted",
            "default_role_id": 7,
            "users": [
                {"user_id": id("own"), "role_id": 4},
                {"user_id": id("own-na"), "role_id": 7},
                {"user_id": id("inactive"), "role_id": 1},
                {"user_id": id("admin2"), "role_id": 7},
            ],
            "groups": [
                {"group_id": group["G1"], "role_id": 1},
                {"group_id": group["G2"], "role_id": 5},
                {"group_id": group["G3"], "role_id": 2},
                {"group_id": group["G4"], "role_id": 0},
            ],
        }))
        .await;
    let expected = |extra: Vec<(u64, &str)>| {
        let mut rows: Vec<(u64, String)> = vec![
            (1, "Lead".to_string()),                // the administrator: global role
            (id("own"), "Read-only".into()),        // own role beats G1's Lead
            (id("groups"), "Designer".into()),      // G3's Designer beats G2's Guest
            (id("group-zero"), "Read-only".into()), // G4's 0: the global role
            (id("admin2"), "Designer".into()),      // administrators ignore their No Access
        ];
        rows.extend(extra.into_iter().map(|(i, r)| (i, r.to_string())));
        rows.sort();
        rows
    };
    // Default No Access: "none" is left out, as are "own-na" (own No Access beats G1's Lead)
    // and the inactive user.
    assert_eq!(env.project_users(pid).await, expected(vec![]));

    // Default "Global Role", then Tester: "none" gets in.
    env.patch_project(pid, json!({"default_role_id": 0})).await;
    assert_eq!(
        env.project_users(pid).await,
        expected(vec![(id("none"), "Designer")])
    );
    env.patch_project(pid, json!({"default_role_id": 3})).await;
    assert_eq!(
        env.project_users(pid).await,
        expected(vec![(id("none"), "Tester")])
    );
    // Clearing "own-na"'s role leaves them to G1: Lead.
    env.patch_project(
        pid,
        json!({"users": [{"user_id": id("own-na"), "role_id": null}]}),
    )
    .await;
    assert_eq!(
        env.project_users(pid).await,
        expected(vec![(id("none"), "Tester"), (id("own-na"), "Lead")])
    );

    // Non-administrators see only projects they reach.
    env.patch_project(
        pid,
        json!({"default_role_id": 7, "users": [{"user_id": id("own-na"), "role_id": 7}]}),
    )
    .await;
    let listed = |v: &Value| {
        v["projects"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["id"] == pid))
    };
    let (s, list) = env.get_as("get_projects", "none@example.com", "none").await;
    assert_eq!(s, StatusCode::OK);
    assert!(!listed(&list));
    for route in [format!("get_project/{pid}"), format!("get_users/{pid}")] {
        let (s, body) = env.get_as(&route, "none@example.com", "none").await;
        assert_eq!(
            (s, error_text(&body)),
            (StatusCode::BAD_REQUEST, texts::INVALID_PROJECT),
            "{route}"
        );
    }
    let (_, list) = env.get_as("get_projects", "own@example.com", "own").await;
    assert!(listed(&list));
    let (s, p) = env
        .get_as(
            &format!("get_project/{pid}"),
            "groups@example.com",
            "groups",
        )
        .await;
    assert_eq!((s, &p["name"]), (StatusCode::OK, &json!("Restricted")));
    let (s, _) = env
        .get_as(&format!("get_users/{pid}"), "own@example.com", "own")
        .await;
    assert_eq!(s, StatusCode::OK);

    // Before 7.5 there are no groups, so group roles do not apply.
    env.settings(json!({"testrail_version": "7.4"})).await;
    let rows = env.project_users(pid).await;
    assert_eq!(
        rows,
        vec![
            (1, "Lead".to_string()),
            (id("own"), "Read-only".into()),
            (id("admin2"), "Designer".into()),
        ]
    );
}

#[tokio::test]
async fn deleting_a_group_drops_its_project_roles() {
    let env = start(3, 0).await;
    let (_, g) = env
        .post("add_group", json!({"name": "Contractors", "user_ids": [2]}))
        .await;
    let gid = g["id"].as_u64().expect("group id");
    let pid = env
        .new_project(json!({
            "name": "Vendor Portal",
            "groups": [{"group_id": gid, "role_id": 1}],
        }))
        .await;
    assert!(
        env.project_users(pid)
            .await
            .contains(&(2, "Lead".to_string()))
    );
    let (s, _) = env.post(&format!("delete_group/{gid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(env.raw_project(pid).await["group_roles"], json!([]));
    let (_, p) = env.get(&format!("get_project/{pid}")).await;
    assert_eq!(p["groups"], json!([]));
    assert_eq!(env.project_users(pid).await, vec![(1, "Lead".to_string())]);
}

#[tokio::test]
async fn control_api_creates_lists_and_patches_projects() {
    let env = start(3, 1).await;
    // The body accepted before: users with or without a role; the default is No Access.
    let (s, p) = env
        .control(
            Method::POST,
            "projects",
            json!({"name": "Plain", "users": [{"user_id": 2, "role_id": 1}, {"user_id": 3}], "is_completed": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let pid = p["id"].as_u64().expect("id");
    assert_eq!(
        p,
        json!({"id": pid, "name": "Plain", "user_ids": [2, 3], "default_role_id": 7})
    );
    let raw = env.raw_project(pid).await;
    assert_eq!(
        (
            &raw["user_roles"],
            &raw["default_role_id"],
            &raw["is_completed"]
        ),
        (
            &json!([{"user_id": 2, "role_id": 1}, {"user_id": 3, "role_id": 0}]),
            &json!(7),
            &json!(true)
        )
    );
    assert!(raw["completed_on"].is_i64());
    // Bad bodies.
    for body in [
        json!({"name": "x", "users": [{"user_id": 99}]}),
        json!({"name": "x", "groups": [{"group_id": 99}]}),
        json!({"name": "x", "default_role_id": 99}),
        json!({"name": "x", "colour": "red"}),
        json!({"name": " "}),
    ] {
        let (s, _) = env.control(Method::POST, "projects", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    }
    // PATCH: update_project's semantics, not counted, whatever the version.
    env.settings(json!({"testrail_version": "7.2"})).await;
    let raw = env
        .patch_project(
            pid,
            json!({"users": [{"user_id": 2, "role_id": null}, {"id": 3, "role_id": 7}], "groups": [{"group_id": 1, "role_id": 0}], "default_role_id": 4}),
        )
        .await;
    assert_eq!(
        (
            &raw["user_roles"],
            &raw["group_roles"],
            &raw["default_role_id"]
        ),
        (
            &json!([{"user_id": 3, "role_id": 7}]),
            &json!([{"group_id": 1, "role_id": 0}]),
            &json!(4)
        )
    );
    let (s, body) = env
        .control(
            Method::PATCH,
            &format!("projects/{pid}"),
            json!({"users": [{"user_id": 2, "role_id": 99}]}),
        )
        .await;
    assert_eq!(
        (s, error_text(&body)),
        (StatusCode::BAD_REQUEST, texts::INVALID_ROLE)
    );
    let (s, _) = env
        .control(Method::PATCH, "projects/999", json!({"name": "x"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(env.stats().await["requests_total"], 0);
}

#[test]
fn seeded_projects_have_a_realistic_spread() {
    use testrail_sim::seed::{default_project_count, generate, generate_with_projects};
    let cfg = SeedConfig {
        users: 1000,
        groups: 8,
        seed: 5,
        ..SeedConfig::default()
    };
    assert_eq!(default_project_count(&cfg), 40);
    for (users, count) in [(0, 4), (25, 4), (250, 10), (5000, 40)] {
        let c = SeedConfig {
            users,
            ..SeedConfig::default()
        };
        assert_eq!(default_project_count(&c), count, "{users} users");
    }
    let inst = generate(&cfg);
    assert_eq!(inst.projects, generate(&cfg).projects, "deterministic");
    let projects: Vec<_> = inst.projects.values().collect();
    assert_eq!(projects.len(), 40);
    let with_default = |r: u64| projects.iter().filter(|p| p.default_role_id == r).count();
    assert_eq!(
        (
            with_default(7),
            with_default(0),
            with_default(4),
            with_default(3)
        ),
        (8, 5, 6, 21),
        "restricted, global role, read-only, tester"
    );
    assert!(
        projects
            .iter()
            .filter(|p| p.default_role_id == 7)
            .all(|p| !p.group_roles.is_empty()),
        "restricted projects let a group in"
    );
    assert_eq!(
        projects
            .iter()
            .filter(|p| !p.group_roles.is_empty())
            .count(),
        13
    );
    assert!(
        projects
            .iter()
            .all(|p| p.group_roles.len() <= 2 && p.user_roles.len() <= 3)
    );
    let user_roles: Vec<u64> = projects
        .iter()
        .flat_map(|p| p.user_roles.values().copied())
        .collect();
    assert!(
        user_roles.contains(&0) && user_roles.contains(&7),
        "{user_roles:?}"
    );
    let completed: Vec<_> = projects.iter().filter(|p| p.is_completed).collect();
    assert_eq!(completed.len(), 7);
    assert!(completed.iter().all(|p| {
        p.completed_on
            .is_some_and(|t| (1_640_995_200..1_704_067_200).contains(&t))
    }));
    assert!(
        projects
            .iter()
            .all(|p| p.is_completed || p.completed_on.is_none())
    );
    let names: std::collections::BTreeSet<&str> =
        projects.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), 40, "unique names");

    // The project count never changes who is seeded.
    let more = generate_with_projects(&cfg, Some(260));
    assert_eq!(more.projects.len(), 260);
    assert_eq!((&more.users, &more.groups), (&inst.users, &inst.groups));
    assert_eq!(more.projects[&41].name, "Web Storefront 2");
}

#[tokio::test]
async fn binary_takes_a_project_count() {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_testrail-sim"))
        .args(["--listen", "127.0.0.1:0", "--users", "3", "--projects", "7"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn testrail-sim");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let base = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("prints in time")
        .expect("read")
        .expect("a line");
    let body: Value = reqwest::Client::new()
        .get(format!("{base}/index.php?/api/v2/get_projects"))
        .header("Authorization", basic(ADMIN, KEY))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(body["projects"].as_array().map(Vec::len), Some(7));
    child.kill().await.expect("kill");
}
