//! Shared set-up: the service on port 0 with a store (a temporary SQLite file unless given one)
//! and the simulator.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use accessrail_engine::connector::ClientOptions;
use accessrail_engine::schedule::Schedule;
use accessrail_engine::secrets::Keyring;
use accessrail_engine::{Engine, SystemClock, tokens};
use accessrail_store::{AnyStore, SqliteStore, Store};
use accessrail_web::{AppState, ServeConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testrail_sim::{SeedConfig, Settings, Sim, SimServer};

pub const KEY: &str = "web-admin-key-5c2e";
pub const TOKEN: &str = "ar_test_token_for_the_api";

pub struct Service {
    pub base: String,
    pub sim: SimServer,
    pub http: reqwest::Client,
    pub engine: Arc<accessrail_web::App>,
    pub state: Arc<AppState>,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

pub async fn start(users: u32, groups: u32) -> Service {
    start_with(users, groups, quick()).await
}

/// The service with a given configuration (e.g. a public https URL).
/// The service's defaults, with a job worker that looks for jobs often (tests wait on them).
pub fn quick() -> ServeConfig {
    ServeConfig {
        job_poll: std::time::Duration::from_millis(50),
        ..ServeConfig::default()
    }
}

pub async fn start_with(users: u32, groups: u32, cfg: ServeConfig) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let store: AnyStore = SqliteStore::open(&dir.path().join("accessrail.db"))
        .await
        .unwrap()
        .into();
    launch(dir, store, users, groups, cfg).await
}

/// The service on a given store (e.g. `AnyStore::from(PgStore::open(&url).await?)`), new and
/// empty; the keyring lives in a temporary directory.
pub async fn start_on(store: AnyStore, users: u32, groups: u32) -> Service {
    let dir = tempfile::tempdir().unwrap();
    launch(dir, store, users, groups, quick()).await
}

async fn launch(
    dir: tempfile::TempDir,
    store: AnyStore,
    users: u32,
    groups: u32,
    cfg: ServeConfig,
) -> Service {
    let sim = SimServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Sim::new(
            SeedConfig {
                users,
                groups,
                seed: 4,
                admin_key: KEY.into(),
                ..SeedConfig::default()
            },
            Settings::default(),
        ),
    )
    .await
    .unwrap();
    store
        .upsert_token("admin", &tokens::hash(TOKEN), 0)
        .await
        .unwrap();
    let keyring = Keyring::load(dir.path()).unwrap();
    let engine = Arc::new(Engine::new(
        store,
        keyring,
        dir.path().to_path_buf(),
        ClientOptions::default(),
        Arc::new(SystemClock),
    ));
    let state = AppState::open(engine.clone(), true, Schedule::default(), cfg.job_poll)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(accessrail_web::serve(
        state.clone(),
        listener,
        cfg,
        async move {
            let _ = rx.await;
        },
    ));
    Service {
        base,
        sim,
        http: reqwest::Client::new(),
        engine,
        state,
        _dir: dir,
        stop: Some(tx),
        task: Some(task),
    }
}

impl Service {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, Some(TOKEN), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(TOKEN), Some(body))
            .await
    }

    pub async fn connect(&self) {
        let (s, body) = self
            .post("/api/v1/connections", json!({"base_url": self.sim.base_url(), "email": "admin@example.com", "api_key": format!(" {KEY} "), "name": "acme"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }

    pub async fn scan(&self) -> Value {
        let earlier = self.get("/api/v1/connections/acme/scans").await.1;
        let earlier = earlier.as_array().cloned().unwrap_or_default();
        // A scan already running (the one Save starts) counts: ours then yields to it.
        let before =
            earlier.len() - usize::from(earlier.last().is_some_and(|s| s["status"] == "running"));
        let (s, _) = self.post("/api/v1/connections/acme/scans", json!({})).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        let mut last = Value::Null;
        for _ in 0..2400 {
            let scans = self.get("/api/v1/connections/acme/scans").await.1;
            let list = scans.as_array().unwrap();
            if list.len() > before && list.last().unwrap()["status"] != "running" {
                return list.last().unwrap().clone();
            }
            last = scans.clone();
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the scan did not finish within a minute; scans: {last}");
    }

    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }
}
