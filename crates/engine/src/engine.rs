//! The engine: a store, the master keyring and how to reach TestRail.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use accessrail_store::{Connection, NewConnection, Store};
use testrail_client::{ApiKey, Client};

use crate::check::{self, TestReport};
use crate::connector::{self, CLOUD_DEFAULT_BUDGET, ClientOptions};
use crate::error::{EngineError, EngineResult};
use crate::secrets::Keyring;

/// Wall-clock time in Unix seconds; replaceable in tests.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now(&self) -> i64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// Which TestRail instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Cloud subdomain (`company` for company.testrail.io) or a pasted Cloud address.
    Subdomain(String),
    /// A TestRail Server address.
    BaseUrl(String),
}

#[derive(Debug, Clone)]
pub struct ConnectRequest {
    pub target: Target,
    pub email: String,
    pub key: ApiKey,
    pub name: Option<String>,
    pub replace: bool,
    /// Requests per minute; `None` takes the default (60 on TestRail Cloud, none elsewhere),
    /// `Some(0)` turns the budget off.
    pub request_budget: Option<u32>,
    /// Seconds between scheduled scans of this connection (`None`: the service's default).
    pub scan_interval_secs: Option<i64>,
}

pub struct Engine<S: Store> {
    store: S,
    keyring: Keyring,
    data_dir: PathBuf,
    options: ClientOptions,
    clock: Arc<dyn Clock>,
    /// Names this process in lease holders (host, pid, a random part), so its leases can be
    /// told apart and released together when it stops.
    instance: String,
    lease_ttl_secs: i64,
}

/// How long a lease lives without a heartbeat: after a crash, the next holder waits at most
/// this long. Holders renew every third of it.
pub const DEFAULT_LEASE_TTL_SECS: i64 = 60;

impl<S: Store> fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.data_dir)
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

fn new_id() -> String {
    crate::tokens::random_hex(16)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl<S: Store> Engine<S> {
    pub fn new(
        store: S,
        keyring: Keyring,
        data_dir: PathBuf,
        options: ClientOptions,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        Self {
            store,
            keyring,
            data_dir,
            options,
            clock,
            instance: format!(
                "{host}:{}:{}",
                std::process::id(),
                crate::tokens::random_hex(4)
            ),
            lease_ttl_secs: DEFAULT_LEASE_TTL_SECS,
        }
    }

    /// Sets the lease lifetime (seconds, at least 1).
    pub fn with_lease_ttl(mut self, secs: i64) -> Self {
        self.lease_ttl_secs = secs.max(1);
        self
    }

    pub fn lease_ttl_secs(&self) -> i64 {
        self.lease_ttl_secs
    }

    /// This process's name in lease holders.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Releases every lease this process holds and records its unfinished scans as
    /// interrupted. Called when the process is stopping (a signal, the end of a grace period).
    pub async fn release_everything(&self, reason: &str) -> EngineResult<u64> {
        self.store.release_leases_held_by(&self.instance).await?;
        Ok(self
            .store
            .abandon_running_scans(self.clock.now(), reason)
            .await?)
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Whether this process's master key opens every stored API key. Replicas on one database
    /// must share one master key (`ACCESSRAIL_MASTER_KEY` / `_FILE`); a replica started with
    /// another gets an error that says so, instead of failing on every scan later.
    pub async fn check_master_key(&self) -> EngineResult<()> {
        let known = self.keyring.known_ids();
        let foreign: Vec<String> = self
            .store
            .connections()
            .await?
            .into_iter()
            .filter(|c| !known.contains(&c.secret.key_id.as_str()))
            .map(|c| format!("{} (sealed with master key {})", c.name, c.secret.key_id))
            .collect();
        if foreign.is_empty() {
            // The first process on a database records its key's id; every later one must know it
            // (also before any connection exists, when no sealed key could tell them apart).
            let recorded = self
                .store
                .claim_setting(MASTER_KEY_SETTING, self.keyring.current_id())
                .await?;
            if !known.contains(&recorded.as_str()) {
                return Err(EngineError::Secret(format!(
                    "this process's master key (id {}) is not the one this database uses (id {recorded}): every process on this database must use the same master key (set ACCESSRAIL_MASTER_KEY or ACCESSRAIL_MASTER_KEY_FILE to it)",
                    self.keyring.current_id()
                )));
            }
            return Ok(());
        }
        Err(EngineError::Secret(format!(
            "this process's master key (id {}) cannot open the API keys of {}: every process on this database must use the same master key (set ACCESSRAIL_MASTER_KEY or ACCESSRAIL_MASTER_KEY_FILE to it)",
            self.keyring.current_id(),
            foreign.join(", ")
        )))
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The named connection, or the only one when no name is given.
    pub async fn resolve(&self, name: Option<&str>) -> EngineResult<Connection> {
        if let Some(n) = name {
            return self.store.connection(n).await?.ok_or_else(|| {
                EngineError::Usage(format!(
                    "no connection named {n:?} (see `accessrail connections`)"
                ))
            });
        }
        let mut all = self.store.connections().await?;
        match all.len() {
            0 => Err(EngineError::Usage(
                "no TestRail connection yet: run `accessrail connect` first".into(),
            )),
            1 => Ok(all.remove(0)),
            _ => Err(EngineError::Usage(format!(
                "several connections exist ({}): choose one with --connection NAME",
                all.iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// A client for a saved connection.
    pub fn client_for(
        &self,
        conn: &Connection,
        on_event: Option<testrail_client::EventHook>,
    ) -> EngineResult<Client> {
        let key = self.keyring.open(&conn.id, &conn.secret)?;
        let base = connector::parse_base(
            &conn.base_url,
            &ClientOptions {
                allow_http: true,
                ..self.options.clone()
            },
        )?;
        // TestRail's rate limit is per instance: every process on this store takes its
        // requests to one instance from one budget (keyed by the instance's address).
        let shared = conn.request_budget.filter(|n| *n > 0).map(
            |per_minute| -> Arc<dyn testrail_client::SharedBudget> {
                Arc::new(StoreBudget {
                    store: self.store.clone(),
                    clock: self.clock.clone(),
                    instance: base.to_string(),
                    per_minute,
                })
            },
        );
        connector::build_client(
            base,
            &conn.email,
            key,
            conn.request_budget,
            shared,
            &self.options,
            on_event,
        )
    }

    /// Test, then Save only if Test passed. Returns the report and the saved connection.
    pub async fn connect(
        &self,
        req: ConnectRequest,
    ) -> EngineResult<(TestReport, Option<Connection>)> {
        let base = match &req.target {
            Target::Subdomain(s) => testrail_client::BaseUrl::cloud(s)
                .map_err(|e| EngineError::InvalidInput(e.to_string()))?,
            Target::BaseUrl(u) => connector::parse_base(u, &self.options)?,
        };
        let email = req.email.trim().to_string();
        if accessrail_domain::EmailKey::parse(&email).is_none() {
            return Err(EngineError::InvalidInput(format!(
                "{email:?} is not an email address"
            )));
        }
        let name = match &req.name {
            Some(n) => n.trim().to_string(),
            None => match &req.target {
                Target::Subdomain(_) => base
                    .host()
                    .split('.')
                    .next()
                    .unwrap_or(base.host())
                    .to_string(),
                Target::BaseUrl(_) => base.host().to_string(),
            },
        };
        if !valid_name(&name) {
            return Err(EngineError::InvalidInput(format!(
                "{name:?} is not a usable connection name (letters, digits, '-', '_', '.')"
            )));
        }
        let existing = self.store.connection(&name).await?;
        if existing.is_some() && !req.replace {
            return Err(EngineError::Conflict(format!(
                "a connection named {name:?} already exists: pass --replace to replace it, or --name to choose another name"
            )));
        }
        // One TestRail instance, one connection: a second one would scan and count every seat
        // twice.
        if let Some(twin) = self
            .store
            .connections()
            .await?
            .into_iter()
            .find(|c| c.name != name && c.base_url.eq_ignore_ascii_case(base.as_str()))
        {
            return Err(EngineError::Conflict(format!(
                "connection {:?} already points at {}: to change it, connect with --name {:?} --replace",
                twin.name,
                base.as_str(),
                twin.name
            )));
        }
        let budget = match req.request_budget {
            Some(0) => None,
            Some(n) => Some(n),
            None if base.is_cloud() => Some(CLOUD_DEFAULT_BUDGET),
            None => None,
        };
        let client = connector::build_client(
            base.clone(),
            &email,
            req.key.clone(),
            budget,
            None,
            &self.options,
            None,
        )?;
        let report = check::note_assumed_scheme(check::run(&client).await, &req.target);
        if !report.passed {
            return Ok((report, None));
        }
        let id = existing.as_ref().map_or_else(new_id, |c| c.id.clone());
        let secret = self.keyring.seal(&id, &req.key)?;
        let new = NewConnection {
            id,
            name,
            base_url: base.as_str().to_string(),
            email,
            secret,
            request_budget: budget,
            groups_supported: report.groups_supported,
            scan_interval_secs: req.scan_interval_secs.filter(|s| *s > 0),
            now: self.now(),
        };
        let saved = if existing.is_some() {
            self.store.replace_connection(new).await?
        } else {
            self.store.insert_connection(new).await?
        };
        Ok((report, Some(saved)))
    }

    /// The console's Test button: runs the checks on what was typed, saves nothing.
    pub async fn test_candidate(
        &self,
        target: &Target,
        email: &str,
        key: ApiKey,
    ) -> EngineResult<TestReport> {
        let base = match target {
            Target::Subdomain(s) => testrail_client::BaseUrl::cloud(s)
                .map_err(|e| EngineError::InvalidInput(e.to_string()))?,
            Target::BaseUrl(u) => connector::parse_base(u, &self.options)?,
        };
        if accessrail_domain::EmailKey::parse(email).is_none() {
            return Err(EngineError::InvalidInput(format!(
                "{:?} is not an email address",
                email.trim()
            )));
        }
        let client =
            connector::build_client(base, email.trim(), key, None, None, &self.options, None)?;
        Ok(check::note_assumed_scheme(
            check::run(&client).await,
            target,
        ))
    }

    /// Runs the Test on a saved connection.
    pub async fn test(&self, name: Option<&str>) -> EngineResult<TestReport> {
        let conn = self.resolve(name).await?;
        let client = self.client_for(&conn, None)?;
        let report = check::run(&client).await;
        if let Some(g) = report.groups_supported {
            self.store.set_groups_supported(&conn.id, g).await?;
        }
        Ok(report)
    }

    /// Reseals every stored API key with a new master key. Returns how many were resealed.
    pub async fn rotate_master_key(&mut self) -> EngineResult<usize> {
        let conns = self.store.connections().await?;
        // Open everything first: a secret that cannot be opened stops the rotation unchanged.
        let mut plain = Vec::new();
        for c in &conns {
            plain.push((c.id.clone(), self.keyring.open(&c.id, &c.secret)?));
        }
        let managed_here = matches!(
            self.keyring.source(),
            crate::secrets::KeySource::DataDir(_) | crate::secrets::KeySource::Generated(_)
        );
        if managed_here {
            self.keyring.begin_rotation(&self.data_dir)?;
        } else if conns
            .iter()
            .all(|c| c.secret.key_id == self.keyring.current_id())
        {
            return Err(EngineError::Usage(
                "every secret is already sealed with the current master key; to rotate an externally managed key, set the new key in ACCESSRAIL_MASTER_KEY and the old one in ACCESSRAIL_PREVIOUS_MASTER_KEY".into(),
            ));
        }
        let mut sealed = Vec::new();
        for (id, key) in &plain {
            sealed.push((id.clone(), self.keyring.seal(id, key)?));
        }
        self.store.reseal_secrets(sealed).await?;
        // Keys kept between a console Test and its Save were sealed with the old master key:
        // they could not be opened after the rotation (that Save asks for the key again).
        self.store.forget_setup_keys(None).await?;
        self.store
            .set_setting(MASTER_KEY_SETTING, self.keyring.current_id())
            .await?;
        if managed_here {
            self.keyring.finish_rotation(&self.data_dir);
        }
        Ok(plain.len())
    }
}

/// The instance setting that records the id of the master key every process must use.
const MASTER_KEY_SETTING: &str = "master_key_id";

/// The request budget of one TestRail instance, kept in the store so every process shares it.
struct StoreBudget<S> {
    store: S,
    clock: Arc<dyn Clock>,
    instance: String,
    per_minute: u32,
}

impl<S: Store> testrail_client::SharedBudget for StoreBudget<S> {
    fn take(
        &self,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Option<std::time::Duration>, String>>
                + Send
                + '_,
        >,
    > {
        Box::pin(async move {
            self.store
                .take_request_slot(&self.instance, self.per_minute, self.clock.now())
                .await
                .map(|wait| {
                    wait.map(|s| std::time::Duration::from_secs(u64::try_from(s).unwrap_or(1)))
                })
                .map_err(|e| e.to_string())
        })
    }
}
