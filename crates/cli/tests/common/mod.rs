//! The end-to-end harness: the `accessrail` binary against the TestRail simulator over real
//! HTTP on port 0, with a fresh data directory (SQLite file) per test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use testrail_sim::{SeedConfig, Settings, Sim, SimServer};
use tokio::io::AsyncWriteExt as _;

pub const ADMIN: &str = "admin@example.com";
pub const KEY: &str = "e2e-admin-key-7d1f0b";

pub struct Env {
    pub server: SimServer,
    pub dir: tempfile::TempDir,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

pub async fn env_with(users: u32, groups: u32, settings: Settings) -> Env {
    let sim = Sim::new(
        SeedConfig {
            users,
            groups,
            seed: 9,
            admin_key: KEY.into(),
            ..SeedConfig::default()
        },
        settings,
    );
    let server = SimServer::start("127.0.0.1:0".parse().unwrap(), sim)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    #[cfg(unix)]
    {
        // Owner-only, as Accessrail creates its own (it warns about readable ones).
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    Env { server, dir }
}

pub async fn env(users: u32, groups: u32) -> Env {
    env_with(users, groups, Settings::default()).await
}

impl Env {
    pub fn sim(&self) -> &Sim {
        self.server.sim()
    }

    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    pub async fn run_in(&self, dir: &Path, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_accessrail"));
        cmd.args(args)
            .env("ACCESSRAIL_DATA_DIR", dir)
            .env_remove("ACCESSRAIL_MASTER_KEY")
            .env_remove("ACCESSRAIL_MASTER_KEY_FILE")
            // Tables fit COLUMNS when it is set: the tests read whole values.
            .env_remove("COLUMNS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
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

    pub async fn run(&self, args: &[&str]) -> Out {
        self.run_in(self.data(), args, None).await
    }

    pub async fn connect_as(&self, email: &str, key: &str, extra: &[&str]) -> Out {
        let base = self.server.base_url();
        let mut args = vec![
            "connect",
            "--base-url",
            base.as_str(),
            "--email",
            email,
            "--api-key-stdin",
            "--name",
            "acme",
        ];
        args.extend_from_slice(extra);
        self.run_in(self.data(), &args, Some(&format!("  {key} \n")))
            .await
    }

    pub async fn connect(&self) -> Out {
        let out = self.connect_as(ADMIN, KEY, &[]).await;
        assert_eq!(out.code, 0, "connect: {}\n{}", out.stdout, out.stderr);
        out
    }

    pub async fn scan(&self) -> Value {
        let out = self.run(&["scan", "--json"]).await;
        assert_eq!(out.code, 0, "scan: {}\n{}", out.stdout, out.stderr);
        out.json()
    }

    pub async fn users(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["users", "--json"];
        args.extend_from_slice(extra);
        let out = self.run(&args).await;
        assert_eq!(out.code, 0, "users: {}", out.stderr);
        out.json().as_array().cloned().unwrap()
    }

    pub fn add_user(&self, email: &str, key: Option<&str>, is_admin: bool) -> u64 {
        self.sim().with_instance(|inst| {
            inst.insert_user(testrail_sim::model::User {
                id: 0,
                name: format!("User {email}"),
                email: email.into(),
                is_active: true,
                is_admin,
                role_id: 3,
                email_notifications: true,
                mfa_required: false,
                sso_enabled: false,
                assigned_projects: vec![],
                group_ids: Default::default(),
                api_keys: key.map(|k| vec![k.to_string()]).unwrap_or_default(),
                password: None,
            })
        })
    }
}

pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

impl Env {
    /// Connected, scanned, provisioning enabled; retries kept short for failure tests.
    pub async fn provisioned(&self) {
        self.connect().await;
        self.scan().await;
        let out = self.run(&["provisioning", "enable"]).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
    }

    pub async fn prov(&self, args: &[&str]) -> Out {
        let mut all = vec!["provision"];
        all.extend_from_slice(args);
        self.run(&all).await
    }

    pub fn user(&self, email: &str) -> testrail_sim::model::User {
        self.sim()
            .snapshot()
            .user_by_email(email)
            .cloned()
            .unwrap_or_else(|| panic!("no user {email}"))
    }

    /// Runs with one attempt per request, so an injected failure is final at once.
    pub async fn run_retrying_once(&self, args: &[&str]) -> Out {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_accessrail"))
            .args(args)
            .env("ACCESSRAIL_DATA_DIR", self.data())
            .env("ACCESSRAIL_RETRY_ATTEMPTS", "1")
            .output()
            .await
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn stat(&self, method: &str) -> u64 {
        self.sim()
            .stats()
            .by_method
            .get(method)
            .copied()
            .unwrap_or(0)
    }
}
