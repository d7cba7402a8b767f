//! Artefact methods (suites, cases, runs, plans, tests, results) checked with raw HTTP requests,
//! plus the seeded spread of activity.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testrail_sim::seed::{DAY, generate_with_artefacts, generate_with_projects};
use testrail_sim::{ManualClock, SeedConfig, Settings, Sim, SimServer, Version};

const ADMIN: &str = "admin@example.com";
const KEY: &str = "sim-admin-key";
/// The simulator clock's now in these tests (2026-09-21).
const NOW: i64 = 1_790_000_000;

struct Env {
    server: SimServer,
    http: reqwest::Client,
    clock: ManualClock,
}

fn clock() -> ManualClock {
    ManualClock::new(Duration::from_secs(NOW as u64))
}

fn cfg(users: u32) -> SeedConfig {
    SeedConfig {
        users,
        groups: 3,
        seed: 7,
        ..SeedConfig::default()
    }
}

async fn start(users: u32, projects: u32, results: u32, settings: Settings) -> Env {
    let clock = clock();
    let sim = Sim::with_artefacts(
        cfg(users),
        Some(projects),
        results,
        settings,
        Arc::new(clock.clone()),
    );
    let server = SimServer::start("127.0.0.1:0".parse().expect("addr"), sim)
        .await
        .expect("sim starts");
    Env {
        server,
        http: reqwest::Client::new(),
        clock,
    }
}

fn basic(user: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
    )
}

fn error_text(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("<no error field>")
}

impl Env {
    async fn call(
        &self,
        method: Method,
        route: &str,
        auth: (&str, &str),
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(
                method,
                format!("{}/index.php?/api/v2/{route}", self.server.base_url()),
            )
            .header("Authorization", basic(auth.0, auth.1))
            .header("Content-Type", "application/json");
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let s = resp.status();
        let text = resp.text().await.expect("body");
        (s, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, route: &str) -> (StatusCode, Value) {
        self.call(Method::GET, route, (ADMIN, KEY), None).await
    }

    async fn ok(&self, route: &str) -> Value {
        let (s, v) = self.get(route).await;
        assert_eq!(s, StatusCode::OK, "{route}: {v}");
        v
    }

    async fn post(&self, route: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, route, (ADMIN, KEY), Some(body))
            .await
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

    async fn created(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.control(Method::POST, path, body).await;
        assert_eq!(s, StatusCode::CREATED, "{path}: {v}");
        v
    }

    /// A fresh project only the listed users (and administrators) reach.
    async fn project(&self, users: &[u64]) -> u64 {
        let users: Vec<Value> = users.iter().map(|u| json!({"user_id": u})).collect();
        self.created("projects", json!({"name": "Evidence", "users": users}))
            .await["id"]
            .as_u64()
            .unwrap()
    }

    async fn run(&self, body: Value) -> Value {
        self.created("runs", body).await
    }

    async fn result(&self, run: &Value, test: usize, user: u64, at: i64, status: u64) -> Value {
        self.created(
            "results",
            json!({"run_id": run["id"], "test_id": run["test_ids"][test], "user_id": user,
                   "created_on": at, "status_id": status}),
        )
        .await
    }

    async fn user(&self, email: &str, key: &str) -> u64 {
        self.created(
            "users",
            json!({"email": email, "api_key": key, "role_id": 3}),
        )
        .await["id"]
            .as_u64()
            .unwrap()
    }
}

fn ids(v: &Value, key: &str) -> Vec<u64> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .iter()
        .map(|x| x["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn artefact_methods_have_testrail_shapes() {
    let env = start(40, 6, 3_000, Settings::default()).await;
    let inst = env.server.sim().snapshot();
    let a = &inst.artefacts;
    let pid = 1;

    // get_suites: a bare array.
    let suites = env.ok(&format!("get_suites/{pid}")).await;
    let suites = suites.as_array().expect("bare array");
    assert!(!suites.is_empty());
    for k in [
        "id",
        "name",
        "project_id",
        "is_master",
        "is_completed",
        "url",
    ] {
        assert!(suites[0].get(k).is_some(), "suite has {k}");
    }
    let sid = suites[0]["id"].as_u64().unwrap();

    // get_cases: paged under `cases`.
    let cases = env.ok(&format!("get_cases/{pid}&suite_id={sid}")).await;
    assert_eq!(cases["offset"], 0);
    assert_eq!(cases["limit"], 250);
    let c = &cases["cases"][0];
    for k in [
        "id",
        "title",
        "section_id",
        "suite_id",
        "created_by",
        "created_on",
        "updated_by",
        "updated_on",
    ] {
        assert!(c.get(k).is_some(), "case has {k}");
    }
    assert_eq!(
        cases["size"].as_u64().unwrap() as usize,
        a.suite(sid).unwrap().case_ids.len()
    );

    // get_runs: paged under `runs`, standalone runs only by default.
    let runs = env.ok(&format!("get_runs/{pid}")).await;
    let r = &runs["runs"][0];
    for k in [
        "id",
        "suite_id",
        "name",
        "assignedto_id",
        "is_completed",
        "completed_on",
        "project_id",
        "plan_id",
        "created_on",
        "created_by",
        "updated_on",
        "passed_count",
        "untested_count",
        "url",
    ] {
        assert!(r.get(k).is_some(), "run has {k}");
    }
    assert!(
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["plan_id"].is_null())
    );
    let run_id = r["id"].as_u64().unwrap();
    assert_eq!(env.ok(&format!("get_run/{run_id}")).await, *r);

    // get_plans: no entries in the list; get_plan has entries[].runs[].
    let (plan_project, plan) = a
        .plans
        .iter()
        .map(|p| (p.project_id, p.id))
        .next()
        .expect("a seeded plan");
    let plans = env.ok(&format!("get_plans/{plan_project}")).await;
    assert!(plans["plans"][0].get("entries").is_none());
    assert!(plans["plans"][0].get("created_by").is_some());
    let plan = env.ok(&format!("get_plan/{plan}")).await;
    let entry = &plan["entries"][0];
    assert!(
        entry["id"].as_str().is_some_and(|g| g.len() == 36),
        "{entry}"
    );
    let prun = &entry["runs"][0];
    assert_eq!(prun["plan_id"], plan["id"]);
    assert_eq!(prun["entry_id"], entry["id"]);
    for k in ["created_by", "assignedto_id", "created_on"] {
        assert!(prun.get(k).is_some());
    }

    // get_tests and get_results_for_run.
    let tests = env.ok(&format!("get_tests/{run_id}")).await;
    let t = &tests["tests"][0];
    for k in [
        "id",
        "case_id",
        "status_id",
        "assignedto_id",
        "run_id",
        "title",
    ] {
        assert!(t.get(k).is_some(), "test has {k}");
    }
    let results = env.ok(&format!("get_results_for_run/{run_id}")).await;
    let res = &results["results"][0];
    for k in [
        "id",
        "test_id",
        "status_id",
        "created_by",
        "created_on",
        "assignedto_id",
        "comment",
    ] {
        assert!(res.get(k).is_some(), "result has {k}");
    }

    // Unknown ids: 400 with TestRail-like texts.
    for (route, text) in [
        (
            "get_suites/999",
            "Field :project_id is not a valid or accessible project.",
        ),
        (
            "get_cases/999",
            "Field :project_id is not a valid or accessible project.",
        ),
        (
            "get_runs/999",
            "Field :project_id is not a valid or accessible project.",
        ),
        (
            "get_plans/999",
            "Field :project_id is not a valid or accessible project.",
        ),
        ("get_run/999999", "Field :run_id is not a valid run."),
        ("get_run/abc", "Field :run_id is not a valid run."),
        ("get_tests/999999", "Field :run_id is not a valid run."),
        ("get_results_for_run/0", "Field :run_id is not a valid run."),
        ("get_plan/999999", "Field :plan_id is not a valid plan."),
        ("get_run", "Field :run_id is a required field."),
    ] {
        let (s, body) = env.get(route).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{route}");
        assert_eq!(error_text(&body), text, "{route}");
    }
    let (s, body) = env.get(&format!("get_cases/{pid}&suite_id=99999")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_text(&body), "Field :suite_id is not a valid suite.");

    // A project with several suites needs suite_id for get_cases; a single-suite one does not.
    for (id, p) in &inst.projects {
        let (s, body) = env.get(&format!("get_cases/{id}")).await;
        if p.suite_mode == 3 {
            assert_eq!(s, StatusCode::BAD_REQUEST);
            assert_eq!(error_text(&body), "Field :suite_id is a required field.");
        } else {
            assert_eq!(s, StatusCode::OK, "{body}");
        }
    }

    // Counted like every method.
    let stats = env.control(Method::GET, "stats", Value::Null).await.1;
    assert!(stats["by_method"]["get_runs"].as_u64().unwrap() >= 2);
    assert!(stats["by_method"]["get_results_for_run"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn results_page_250_250_100_newest_first() {
    let env = start(5, 1, 0, Settings::default()).await;
    let pid = env.project(&[]).await;
    let run = env
        .run(json!({"project_id": pid, "user_id": 1, "tests": 3, "created_on": NOW - DAY}))
        .await;
    let tests = run["test_ids"].as_array().unwrap().clone();
    let batch = |n: usize| -> Value {
        json!({"results": (0..n).map(|i| json!({"test_id": tests[i % 3], "status_id": 1}))
            .collect::<Vec<_>>()})
    };
    let rid = run["id"].as_u64().unwrap();
    let (s, added) = env.post(&format!("add_results/{rid}"), batch(300)).await;
    assert_eq!(s, StatusCode::OK, "{added}");
    assert_eq!(added.as_array().unwrap().len(), 300);
    env.clock.advance(Duration::from_secs(60));
    let (s, _) = env.post(&format!("add_results/{rid}"), batch(300)).await;
    assert_eq!(s, StatusCode::OK);

    let mut seen = Vec::new();
    let mut route = format!("get_results_for_run/{rid}");
    let mut sizes = Vec::new();
    loop {
        let page = env.ok(&route).await;
        sizes.push(page["size"].as_u64().unwrap());
        seen.extend(
            page["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r["created_on"].as_i64().unwrap(), r["id"].as_u64().unwrap())),
        );
        match page["_links"]["next"].as_str() {
            Some(next) => {
                let offset = seen.len();
                assert_eq!(
                    next,
                    format!("/api/v2/get_results_for_run/{rid}&limit=250&offset={offset}")
                );
                route = next.trim_start_matches("/api/v2/").to_string();
            }
            None => break,
        }
    }
    assert_eq!(sizes, vec![250, 250, 100]);
    assert_eq!(seen.len(), 600);
    // Newest first: by time, then by id, both descending.
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert_eq!(seen[0].0, NOW + 60);
    let last = env
        .ok(&format!("get_results_for_run/{rid}&offset=500"))
        .await;
    assert_eq!(
        last["_links"],
        json!({"next": null, "prev": format!("/api/v2/get_results_for_run/{rid}&limit=250&offset=250")})
    );
}

#[tokio::test]
async fn list_filters_are_inclusive_and_kept_in_links() {
    let env = start(5, 1, 0, Settings::default()).await;
    let u2 = env.user("tess@example.com", "tess").await;
    let u3 = env.user("ravi@example.com", "ravi").await;
    let pid = env.project(&[u2, u3]).await;
    let t0 = NOW - 30 * DAY;
    let r1 = env
        .run(json!({"project_id": pid, "user_id": u2, "created_on": t0, "tests": 4}))
        .await;
    let r2 = env
        .run(json!({"project_id": pid, "user_id": u3, "created_on": t0 + 10}))
        .await;
    let r3 = env
        .run(json!({"project_id": pid, "user_id": u2, "created_on": t0 + 20, "plan": "Release 1"}))
        .await;
    let (id1, id2, id3) = (
        r1["id"].as_u64().unwrap(),
        r2["id"].as_u64().unwrap(),
        r3["id"].as_u64().unwrap(),
    );
    env.control(
        Method::PATCH,
        &format!("runs/{id2}"),
        json!({"is_completed": true}),
    )
    .await;

    let runs = |q: String| {
        let env = &env;
        async move { ids(&env.ok(&format!("get_runs/{pid}{q}")).await, "runs") }
    };
    // Plan runs only with include_plan_runs=1.
    assert_eq!(runs(String::new()).await, vec![id1, id2]);
    assert_eq!(
        runs("&include_plan_runs=1".into()).await,
        vec![id1, id2, id3]
    );
    assert_eq!(runs("&include_plan_runs=0".into()).await, vec![id1, id2]);
    // Boundaries are inclusive.
    assert_eq!(
        runs(format!("&created_after={}&include_plan_runs=1", t0 + 10)).await,
        vec![id2, id3]
    );
    assert_eq!(
        runs(format!("&created_before={}", t0 + 10)).await,
        vec![id1, id2]
    );
    assert_eq!(
        runs(format!("&created_after={0}&created_before={0}", t0 + 10)).await,
        vec![id2]
    );
    assert_eq!(runs(format!("&created_by={u3}")).await, vec![id2]);
    assert_eq!(
        runs(format!("&created_by={u2},{u3}&include_plan_runs=1")).await,
        vec![id1, id2, id3]
    );
    assert_eq!(runs("&is_completed=1".into()).await, vec![id2]);
    assert_eq!(runs("&is_completed=0".into()).await, vec![id1]);
    let sid = r1["suite_id"].as_u64().unwrap();
    assert_eq!(runs(format!("&suite_id={sid}")).await, vec![id1, id2]);
    // Filters are kept in `_links`.
    let page = env
        .ok(&format!(
            "get_runs/{pid}&created_by={u2},{u3}&include_plan_runs=1&limit=1"
        ))
        .await;
    assert_eq!(
        page["_links"]["next"],
        format!("/api/v2/get_runs/{pid}&created_by={u2},{u3}&include_plan_runs=1&limit=1&offset=1")
    );
    // Bad values: 400.
    for (q, text) in [
        (
            "&created_after=yesterday",
            "Field :created_after is not a valid timestamp.",
        ),
        (
            "&created_by=me",
            "Field :created_by is not a valid list of users.",
        ),
        (
            "&is_completed=2",
            "Field :is_completed is not a valid boolean.",
        ),
        (
            "&include_plan_runs=yes",
            "Field :include_plan_runs is not a valid boolean.",
        ),
        ("&suite_id=9999", "Field :suite_id is not a valid suite."),
        ("&limit=0", "Field :limit is too small (1 at least)."),
    ] {
        let (s, body) = env.get(&format!("get_runs/{pid}{q}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(error_text(&body), text, "{q}");
    }

    // Plans: created_by, is_completed, created_after.
    let plan_ids = ids(&env.ok(&format!("get_plans/{pid}")).await, "plans");
    assert_eq!(plan_ids.len(), 1);
    assert_eq!(
        ids(
            &env.ok(&format!("get_plans/{pid}&created_by={u3}")).await,
            "plans"
        ),
        Vec::<u64>::new()
    );
    assert_eq!(
        ids(
            &env.ok(&format!(
                "get_plans/{pid}&is_completed=0&created_after={}",
                t0 + 20
            ))
            .await,
            "plans"
        ),
        plan_ids
    );
    assert!(
        ids(
            &env.ok(&format!("get_plans/{pid}&created_after={}", t0 + 21))
                .await,
            "plans"
        )
        .is_empty()
    );

    // Results: created_after / before inclusive, created_by, status_id.
    env.result(&r1, 0, u2, t0 + 100, 1).await;
    env.result(&r1, 1, u3, t0 + 200, 5).await;
    env.result(&r1, 2, u2, t0 + 300, 4).await;
    let results = |q: String| {
        let env = &env;
        async move {
            env.ok(&format!("get_results_for_run/{id1}{q}")).await["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["created_on"].as_i64().unwrap() - t0)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(results(String::new()).await, vec![300, 200, 100]);
    assert_eq!(
        results(format!("&created_after={}", t0 + 200)).await,
        vec![300, 200]
    );
    assert_eq!(
        results(format!("&created_before={}", t0 + 200)).await,
        vec![200, 100]
    );
    assert_eq!(results(format!("&created_by={u3}")).await, vec![200]);
    assert_eq!(results("&status_id=1,4".into()).await, vec![300, 100]);

    // Tests: status_id.
    let tests = env.ok(&format!("get_tests/{id1}&status_id=3")).await;
    assert_eq!(tests["size"], 1, "one of four tests is still untested");
    let tests = env.ok(&format!("get_tests/{id1}&status_id=5,4")).await;
    assert_eq!(tests["size"], 2);

    // Cases: created and updated filters.
    let cases = |q: String| {
        let env = &env;
        async move {
            env.ok(&format!("get_cases/{pid}{q}")).await["size"]
                .as_u64()
                .unwrap()
        }
    };
    // r1 made 4 cases by u2 at t0; r2 and r3 used them.
    assert_eq!(cases(String::new()).await, 4);
    assert_eq!(cases(format!("&created_by={u2}")).await, 4);
    assert_eq!(cases(format!("&created_by={u3}")).await, 0);
    assert_eq!(cases(format!("&created_after={t0}")).await, 4);
    assert_eq!(cases(format!("&created_after={}", t0 + 1)).await, 0);
    assert_eq!(cases(format!("&created_before={t0}")).await, 4);
    assert_eq!(
        cases(format!("&updated_after={t0}&updated_by={u2}")).await,
        4
    );
    assert_eq!(cases(format!("&updated_before={}", t0 - 1)).await, 0);
    assert_eq!(cases(format!("&updated_by={u3}")).await, 0);
}

#[tokio::test]
async fn update_run_and_runs_inside_plans() {
    let env = start(5, 1, 0, Settings::default()).await;
    let u2 = env.user("tess@example.com", "tess").await;
    let pid = env.project(&[u2]).await;
    let solo = env.run(json!({"project_id": pid, "user_id": u2})).await;
    let planned = env
        .run(json!({"project_id": pid, "user_id": u2, "plan": "P", "assignedto_id": u2}))
        .await;
    let (solo, planned) = (
        solo["id"].as_u64().unwrap(),
        planned["id"].as_u64().unwrap(),
    );

    let (s, run) = env
        .post(
            &format!("update_run/{solo}"),
            json!({"assignedto_id": u2, "name": "Renamed", "description": "d"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{run}");
    assert_eq!(
        (&run["assignedto_id"], &run["name"], &run["description"]),
        (&json!(u2), &json!("Renamed"), &json!("d"))
    );
    let (s, body) = env
        .post(
            &format!("update_run/{planned}"),
            json!({"assignedto_id": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        error_text(&body).contains("update_run_in_plan_entry"),
        "{body}"
    );
    let (s, run) = env
        .post(
            &format!("update_run_in_plan_entry/{planned}"),
            json!({"assignedto_id": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{run}");
    assert_eq!(run["assignedto_id"], 1);
    assert!(run["plan_id"].as_u64().is_some());
    let (s, body) = env
        .post(
            &format!("update_run_in_plan_entry/{solo}"),
            json!({"assignedto_id": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_text(&body),
        "Field :run_id is not part of a test plan."
    );
    // Null clears the assignee; unknown or inactive users are refused.
    let (_, run) = env
        .post(
            &format!("update_run/{solo}"),
            json!({"assignedto_id": null}),
        )
        .await;
    assert!(run["assignedto_id"].is_null());
    let (s, body) = env
        .post(
            &format!("update_run/{solo}"),
            json!({"assignedto_id": 4242}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_text(&body),
        "Field :assignedto_id is not a valid user."
    );
    let (s, _) = env.post("update_run/99999", json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // GET is the wrong verb.
    let (s, _) = env.get(&format!("update_run/{solo}")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Completed runs (and plans) refuse writes; the control API reopens them.
    let (s, _) = env
        .control(
            Method::PATCH,
            &format!("runs/{planned}"),
            json!({"is_completed": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let plan_id = env.ok(&format!("get_run/{planned}")).await["plan_id"]
        .as_u64()
        .unwrap();
    let plan = env.ok(&format!("get_plan/{plan_id}")).await;
    assert_eq!(plan["is_completed"], true, "the whole plan closes");
    assert_eq!(plan["completed_on"], NOW);
    let (s, body) = env
        .post(
            &format!("update_run_in_plan_entry/{planned}"),
            json!({"assignedto_id": u2}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_text(&body).contains("completed"), "{body}");
    env.control(
        Method::PATCH,
        &format!("runs/{solo}"),
        json!({"is_completed": true}),
    )
    .await;
    let tid = env.ok(&format!("get_tests/{solo}")).await["tests"][0]["id"].clone();
    for (route, body) in [
        (format!("update_run/{solo}"), json!({"name": "x"})),
        (
            format!("add_results/{solo}"),
            json!({"results": [{"test_id": tid, "status_id": 1}]}),
        ),
    ] {
        let (s, b) = env.post(&route, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{route}");
        assert!(error_text(&b).contains("completed"), "{b}");
    }
    let (_, run) = env
        .control(
            Method::PATCH,
            &format!("runs/{solo}"),
            json!({"is_completed": false, "assignedto_id": u2}),
        )
        .await;
    assert_eq!(
        (&run["is_completed"], &run["completed_on"]),
        (&json!(false), &Value::Null)
    );
    assert_eq!(run["assignedto_id"], u2);
    let (s, _) = env
        .post(&format!("update_run/{solo}"), json!({"name": "x"}))
        .await;
    assert_eq!(s, StatusCode::OK);

    // update_run_in_plan_entry came with TestRail 6.4.
    env.control(Method::PUT, "settings", json!({"testrail_version": "6.3"}))
        .await;
    let (s, _) = env
        .post(&format!("update_run_in_plan_entry/{planned}"), json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn add_results_rules() {
    let env = start(5, 1, 0, Settings::default()).await;
    let tess = env.user("tess@example.com", "tess").await;
    let ravi = env.user("ravi@example.com", "ravi").await;
    let pid = env.project(&[tess, ravi]).await;
    let run = env
        .run(json!({"project_id": pid, "user_id": ravi, "tests": 3, "tests_assignedto_id": ravi}))
        .await;
    let other = env.run(json!({"project_id": pid, "user_id": ravi})).await;
    let rid = run["id"].as_u64().unwrap();
    let t = run["test_ids"].as_array().unwrap().clone();
    let add = |body: Value| {
        let env = &env;
        async move {
            env.call(
                Method::POST,
                &format!("add_results/{rid}"),
                ("tess@example.com", "tess"),
                Some(body),
            )
            .await
        }
    };
    for (body, text) in [
        (json!({}), "Field :results is a required field."),
        (
            json!({"results": []}),
            "Field :results is a required field.",
        ),
        (
            json!({"results": 5}),
            "Field :results is not a valid array.",
        ),
        (
            json!({"results": [{"test_id": t[0], "status_id": 3}]}),
            "Field :status_id uses an invalid status (Untested).",
        ),
        (
            json!({"results": [{"test_id": t[0], "status_id": 9}]}),
            "Field :status_id is not a valid status.",
        ),
        (
            json!({"results": [{"test_id": t[0]}]}),
            "Field :results requires at least one of status_id, comment or assignedto_id per result.",
        ),
        (
            json!({"results": [{"test_id": other["test_ids"][0], "status_id": 1}]}),
            "Field :test_id is not a valid test.",
        ),
        (
            // A valid entry before a bad one: nothing is added.
            json!({"results": [{"test_id": t[0], "status_id": 1}, {"test_id": t[1], "assignedto_id": 9999}]}),
            "Field :assignedto_id is not a valid user.",
        ),
    ] {
        let (s, b) = add(body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_text(&b), text, "{body}");
    }
    assert_eq!(
        env.ok(&format!("get_results_for_run/{rid}")).await["size"],
        0
    );

    // Reassign only (no status): the test's assignee changes, the result is by the caller.
    let (s, added) = add(json!({"results": [
        {"test_id": t[0], "assignedto_id": tess},
        {"test_id": t[1], "status_id": 5, "comment": "broken"},
        {"test_id": t[2], "comment": "looked at it"}
    ]}))
    .await;
    assert_eq!(s, StatusCode::OK, "{added}");
    let added = added.as_array().unwrap();
    assert_eq!(added.len(), 3);
    assert!(
        added
            .iter()
            .all(|r| r["created_by"] == tess && r["created_on"] == NOW)
    );
    assert_eq!(added[0]["assignedto_id"], tess);
    assert!(added[0]["status_id"].is_null());
    assert_eq!(
        added[1]["assignedto_id"], ravi,
        "the test's current assignee"
    );
    let tests = env.ok(&format!("get_tests/{rid}")).await;
    let by_id: BTreeMap<u64, &Value> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_u64().unwrap(), t))
        .collect();
    let t0 = by_id[&t[0].as_u64().unwrap()];
    assert_eq!(
        (&t0["assignedto_id"], &t0["status_id"]),
        (&json!(tess), &json!(3))
    );
    let t1 = by_id[&t[1].as_u64().unwrap()];
    assert_eq!(
        (&t1["assignedto_id"], &t1["status_id"]),
        (&json!(ravi), &json!(5))
    );
    let run_now = env.ok(&format!("get_run/{rid}")).await;
    assert_eq!(run_now["failed_count"], 1);
    assert_eq!(run_now["untested_count"], 2);

    // A non-member cannot reach the run (the same 400 as an unknown run).
    let _ = env.user("out@example.com", "out").await;
    let (s, b) = env
        .call(
            Method::POST,
            &format!("add_results/{rid}"),
            ("out@example.com", "out"),
            Some(json!({"results": [{"test_id": t[0], "status_id": 1}]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_text(&b), "Field :run_id is not a valid run.");
}

#[tokio::test]
async fn non_administrators_read_the_projects_they_reach() {
    let env = start(5, 1, 0, Settings::default()).await;
    let tess = env.user("tess@example.com", "tess").await;
    let _out = env.user("out@example.com", "out").await;
    let pid = env.project(&[tess]).await;
    let run = env
        .run(json!({"project_id": pid, "user_id": tess, "plan": "P"}))
        .await;
    let rid = run["id"].as_u64().unwrap();
    let plan = env.ok(&format!("get_run/{rid}")).await["plan_id"]
        .as_u64()
        .unwrap();
    let routes = [
        format!("get_suites/{pid}"),
        format!("get_cases/{pid}"),
        format!("get_runs/{pid}&include_plan_runs=1"),
        format!("get_plans/{pid}"),
        format!("get_run/{rid}"),
        format!("get_plan/{plan}"),
        format!("get_tests/{rid}"),
        format!("get_results_for_run/{rid}"),
    ];
    for route in &routes {
        let (s, body) = env
            .call(Method::GET, route, ("tess@example.com", "tess"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{route}: {body}");
        let (s, body) = env
            .call(Method::GET, route, ("out@example.com", "out"), None)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{route}");
        assert!(error_text(&body).starts_with("Field :"), "{body}");
    }
}

#[test]
fn seeding_artefacts_is_deterministic_and_leaves_people_alone() {
    let c = cfg(300);
    let plain = generate_with_projects(&c, Some(12));
    let a = generate_with_artefacts(&c, Some(12), 20_000, NOW);
    let b = generate_with_artefacts(&c, Some(12), 20_000, NOW);
    assert_eq!(a.artefacts, b.artefacts, "same seed, same artefacts");
    let other = generate_with_artefacts(
        &SeedConfig {
            seed: 8,
            ..c.clone()
        },
        Some(12),
        20_000,
        NOW,
    );
    assert_ne!(a.artefacts, other.artefacts);
    // Users, groups and projects are those of the seed, plus the automation account last.
    assert_eq!(a.groups, plain.groups);
    assert_eq!(a.projects, plain.projects);
    let bot = a.artefacts.automation_user.expect("automation account");
    assert_eq!(bot, plain.users.len() as u64 + 1);
    let mut without_bot = a.users.clone();
    let bot_user = without_bot.remove(&bot).unwrap();
    assert_eq!(without_bot, plain.users);
    assert_eq!(bot_user.email, "ci-bot@example.com");
    assert!(bot_user.is_active && !bot_user.is_admin && bot_user.role_id == 3);
    // No results, no artefacts.
    let none = generate_with_artefacts(&c, Some(12), 0, NOW);
    assert_eq!(none.users, plain.users);
    assert!(none.artefacts.runs.is_empty());
}

#[test]
fn seeded_activity_has_a_realistic_spread() {
    let c = cfg(2_000);
    let started = std::time::Instant::now();
    let inst = generate_with_artefacts(&c, Some(50), 200_000, NOW);
    eprintln!(
        "seeded 2,000 users / 50 projects / 200,000 results in {:?} (this build's profile)",
        started.elapsed()
    );
    let a = &inst.artefacts;
    assert_eq!(a.results.len(), 200_000);
    let bot = a.automation_user.unwrap();

    // The latest evidence of everyone, by a plain walk of every artefact.
    let mut latest: BTreeMap<u64, i64> = BTreeMap::new();
    let mut see = |u: u64, t: i64| {
        let e = latest.entry(u).or_insert(t);
        *e = (*e).max(t);
    };
    for r in &a.results {
        see(r.created_by, r.created_on);
    }
    for r in &a.runs {
        see(r.created_by, r.created_on);
    }
    for p in &a.plans {
        see(p.created_by, p.created_on);
    }
    for c in &a.cases {
        see(c.created_by, c.created_on);
        see(c.updated_by, c.updated_on);
    }
    assert!(latest.values().all(|t| *t <= NOW), "nothing in the future");
    let active: Vec<u64> = inst
        .users
        .values()
        .filter(|u| u.is_active && u.id != bot)
        .map(|u| u.id)
        .collect();
    let n = active.len() as f64;
    let within = |days: i64| {
        active
            .iter()
            .filter(|u| latest.get(u).is_some_and(|t| NOW - t < days * DAY))
            .count() as f64
            / n
    };
    let never = active.iter().filter(|u| !latest.contains_key(u)).count() as f64 / n;
    assert!(
        (0.13..=0.17).contains(&within(7)),
        "this week: {}",
        within(7)
    );
    assert!(
        (0.32..=0.38).contains(&within(90)),
        "90 days: {}",
        within(90)
    );
    assert!((0.25..=0.35).contains(&never), "never: {never}");
    assert!(latest[&bot] > NOW - DAY, "the automation account is busy");
    let by_bot = a.results.iter().filter(|r| r.created_by == bot).count() as f64 / 200_000.0;
    assert!((0.55..=0.65).contains(&by_bot), "automation share {by_bot}");
    // Some leavers have old evidence.
    assert!(
        inst.users
            .values()
            .any(|u| !u.is_active && latest.contains_key(&u.id))
    );

    // Runs: about half completed, with completed_on; plans of one to three runs.
    let completed = a.runs.iter().filter(|r| r.is_completed).count() as f64 / a.runs.len() as f64;
    assert!(
        (0.35..=0.7).contains(&completed),
        "completed runs {completed}"
    );
    assert!(
        a.runs
            .iter()
            .all(|r| r.is_completed == r.completed_on.is_some())
    );
    assert!(
        a.runs
            .iter()
            .all(|r| r.completed_on.is_none_or(|c| c >= r.created_on))
    );
    assert!(!a.plans.is_empty());
    for p in &a.plans {
        let runs: Vec<u64> = p.entries.iter().flat_map(|e| e.run_ids.clone()).collect();
        assert!((1..=3).contains(&runs.len()));
        for r in runs {
            let r = a.run(r).unwrap();
            assert_eq!(r.plan_id, Some(p.id));
            assert_eq!(r.is_completed, p.is_completed);
        }
    }
    // Results lie inside their runs' lifetimes.
    for r in &a.results {
        let run = a.run(r.run_id).unwrap();
        assert!(r.created_on >= run.created_on);
        assert!(run.completed_on.is_none_or(|c| r.created_on <= c));
    }
    // Open runs have untested or retest tests assigned to people.
    let open_assigned = a
        .tests
        .iter()
        .filter(|t| matches!(t.status_id, 3 | 4) && t.assignedto_id.is_some())
        .filter(|t| a.run(t.run_id).is_some_and(|r| !r.is_completed))
        .count();
    assert!(open_assigned > 100, "{open_assigned}");
    // Cases come from a few designers per project.
    let authors: std::collections::BTreeSet<u64> = a.cases.iter().map(|c| c.created_by).collect();
    assert!(
        authors.len() >= 2 && authors.len() <= 4 * 50,
        "{}",
        authors.len()
    );
    assert!(a.cases.iter().all(|c| c.updated_on >= c.created_on));
}

#[tokio::test]
async fn binary_seeds_artefacts_with_results() {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_testrail-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--users",
            "30",
            "--projects",
            "5",
            "--results",
            "2000",
        ])
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
    let summary: Value = reqwest::get(format!("{base}/__sim/artefacts/summary"))
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(summary["results"], 2000);
    assert!(summary["runs"].as_u64().unwrap() > 0);
    let body: Value = reqwest::Client::new()
        .get(format!(
            "{base}/index.php?/api/v2/get_runs/1&include_plan_runs=1"
        ))
        .header("Authorization", basic(ADMIN, KEY))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(
        body["runs"].as_array().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    child.kill().await.expect("kill");
}

#[tokio::test]
async fn reset_restores_the_seeded_artefacts() {
    let env = start(
        20,
        3,
        500,
        Settings {
            testrail_version: Version::LATEST,
            ..Settings::default()
        },
    )
    .await;
    let before = env.server.sim().snapshot().artefacts;
    let run = &before
        .runs
        .iter()
        .find(|r| !r.is_completed)
        .expect("an open run");
    let (s, _) = env
        .post(
            &format!("add_results/{}", run.id),
            json!({"results": [{"test_id": run.test_ids[0], "comment": "x"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(env.server.sim().snapshot().artefacts, before);
    env.control(Method::POST, "reset", Value::Null).await;
    assert_eq!(env.server.sim().snapshot().artefacts, before);
}
