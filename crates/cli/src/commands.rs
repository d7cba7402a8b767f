//! Each command: parse, call the engine, print.

use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use accessrail_domain::OverrideKind;
use accessrail_engine::check::{CheckStatus, TestReport};
use accessrail_engine::connector::ClientOptions;
use accessrail_engine::identities::{self, Format};
use accessrail_engine::report::{self, UserFilter, UserView};
use accessrail_engine::scan::{self, ScanObserver, ScanOutcome};
use accessrail_engine::secrets::{KeySource, Keyring};
use accessrail_engine::{
    ApiKey, ConnectRequest, Engine, EngineError, Event, SystemClock, Target, time_fmt,
};
use accessrail_store::{
    AnyStore, OverrideRecord, PgStore, SqliteStore, Store, StoreError, StoreLocation,
    sqlite_to_postgres,
};
use serde_json::json;

use crate::cli::*;
use crate::output::{Failure, fail, opt, print_json, table};

pub type App = Engine<AnyStore>;

fn default_data_dir() -> Result<PathBuf, Failure> {
    directories::ProjectDirs::from("", "", "accessrail")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or_else(|| {
            Failure::Usage("no home directory: pass --data-dir or set ACCESSRAIL_DATA_DIR".into())
        })
}

/// Creates the data directory owner-only (0700) when it does not exist. An existing directory
/// is never changed (it may be shared on purpose); it gets a warning when others can read it.
fn prepare_data_dir(dir: &Path, quiet: bool) -> Result<(), Failure> {
    let cannot = |e: std::io::Error| {
        fail(
            "data_dir",
            format!("cannot create the data directory {}: {e}", dir.display()),
        )
    };
    if dir.is_dir() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            if let Ok(meta) = std::fs::metadata(dir) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 && !quiet {
                    eprintln!(
                        "accessrail: warning: the data directory {} can be read by other users (mode {mode:o}); it holds the database and perhaps the master key: consider `chmod 700 {}`",
                        dir.display(),
                        dir.display()
                    );
                }
            }
        }
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(cannot)?;
    }
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    match b.create(dir) {
        Ok(()) => Ok(()),
        // Another process created it at the same moment.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(cannot(e)),
    }
}

/// The store `database_url` names, or `accessrail.db` in the data directory `dir`.
fn store_location(dir: &Path, database_url: Option<&str>) -> Result<StoreLocation, Failure> {
    Ok(match database_url.filter(|u| !u.trim().is_empty()) {
        Some(url) => StoreLocation::parse(url).map_err(|e| {
            Failure::Usage(format!("--database-url / ACCESSRAIL_DATABASE_URL: {e}"))
        })?,
        None => StoreLocation::Sqlite(dir.join("accessrail.db")),
    })
}

/// Opens the store (`database_url`, or `accessrail.db` in `dir`) and the keyring in `dir`.
pub async fn open_app(
    dir: &Path,
    database_url: Option<&str>,
    allow_http: bool,
    quiet: bool,
) -> Result<App, Failure> {
    prepare_data_dir(dir, quiet)?;
    let location = store_location(dir, database_url)?;
    let store = AnyStore::open(&location).await?;
    let keyring = Keyring::load(dir)?;
    if let KeySource::Generated(p) = keyring.source()
        && !quiet
    {
        eprintln!(
            "accessrail: generated a master key in {} (owner-only). Backups of the data directory now hold it: keep them as secret as the key, or supply ACCESSRAIL_MASTER_KEY instead.",
            p.display()
        );
    }
    let retry_attempts = match std::env::var("ACCESSRAIL_RETRY_ATTEMPTS") {
        Ok(v) => Some(v.trim().parse::<u32>().map_err(|_| {
            Failure::Usage(format!("ACCESSRAIL_RETRY_ATTEMPTS={v:?} is not a number"))
        })?),
        Err(_) => None,
    };
    let options = ClientOptions {
        allow_http,
        retry_attempts,
        ..ClientOptions::default()
    };
    let lease_ttl = match std::env::var("ACCESSRAIL_LEASE_TTL_SECS") {
        Ok(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "ACCESSRAIL_LEASE_TTL_SECS={v:?} is not a number of seconds (at least 1)"
                ))
            })?,
        Err(_) => accessrail_engine::DEFAULT_LEASE_TTL_SECS,
    };
    Ok(Engine::new(
        store,
        keyring,
        dir.to_path_buf(),
        options,
        Arc::new(SystemClock),
    )
    .with_lease_ttl(lease_ttl))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, with the signal's name.
pub async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// Whether a command can start from an empty installation (it may create the database and the
/// master key). The others need data that an empty installation cannot have, and fail before
/// creating anything.
fn may_start_fresh(command: &Command) -> bool {
    matches!(
        command,
        Command::Connect(_)
            | Command::Serve(_)
            | Command::Tokens { .. }
            | Command::Identities {
                action: Some(crate::cli::IdentitiesAction::Import { .. })
            }
    )
}

pub async fn run(mut cli: Cli) -> Result<ExitCode, Failure> {
    cli.route_connection().map_err(Failure::Usage)?;
    if let Command::Demo(args) = &cli.command {
        return crate::demo::run(args, cli.data_dir.clone(), cli.json).await;
    }
    let dir = match &cli.data_dir {
        Some(d) => d.clone(),
        None => default_data_dir()?,
    };
    if let Command::MigrateStore { to } = &cli.command {
        // Before the app opens anything: the source must already exist, and the master key is
        // only named, never generated.
        return migrate_store(&dir, cli.database_url.as_deref(), to, cli.json).await;
    }
    if let StoreLocation::Sqlite(db) = store_location(&dir, cli.database_url.as_deref())?
        && !db.exists()
        && matches!(cli.command, Command::Connections { action: None })
    {
        // Listing nothing needs no database: answer without creating one.
        if cli.json {
            print_json(&json!([]));
        } else {
            println!(
                "No connections yet: connect one with `accessrail connect --subdomain COMPANY --email ADMIN --api-key-stdin`."
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let StoreLocation::Sqlite(db) = store_location(&dir, cli.database_url.as_deref())?
        && !db.exists()
        && !may_start_fresh(&cli.command)
    {
        return Err(Failure::Usage(format!(
            "nothing here yet: no Accessrail database at {}. Connect a TestRail instance first (`accessrail connect --subdomain COMPANY --email ADMIN --api-key-stdin`), or try `accessrail demo`; --data-dir / ACCESSRAIL_DATA_DIR choose another directory",
            db.display()
        )));
    }
    let app = open_app(&dir, cli.database_url.as_deref(), cli.allow_http, cli.json).await?;
    let json = cli.json;
    let demo_dir = dir.join(crate::demo::MARKER).exists();
    let ran = dispatch(app, cli.command, json).await;
    match ran {
        // The demo's simulated TestRail lived in the demo's process: say so, and how to get it
        // back, instead of leaving "unreachable" unexplained.
        Err(Failure::Failed { code, message })
            if demo_dir
                && matches!(code, "upstream" | "scan_failed" | "test_failed")
                && message.contains("unreachable") =>
        {
            Err(Failure::Failed {
                code,
                message: format!(
                    "{message}\nThis is a demo's data directory: its simulated TestRail ran inside the demo and stopped with it. Bring it back (in another terminal) with:\n  {} demo --resume {}",
                    crate::demo::invocation(),
                    dir.display()
                ),
            })
        }
        other => other,
    }
}

async fn dispatch(mut app: App, command: Command, json: bool) -> Result<ExitCode, Failure> {
    match command {
        Command::Connect(a) => connect(&app, a, json).await,
        Command::Connections { action: None } => connections(&app, json).await,
        Command::Connections {
            action: Some(ConnectionsAction::Remove { name }),
        } => {
            if app.store().remove_connection(&name).await? {
                if json {
                    print_json(&json!({ "removed": name }));
                } else {
                    println!("Removed connection {name} and its history.");
                }
                Ok(ExitCode::SUCCESS)
            } else {
                Err(Failure::Usage(format!("no connection named {name:?}")))
            }
        }
        Command::Test(sel) => {
            let report = app.test(sel.connection.as_deref()).await?;
            print_test(&report, json);
            Ok(if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Scan(sel) => {
            let outcome = scan_with_progress(&app, sel.connection.as_deref(), json).await?;
            print_scan(&outcome, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Scans(sel) => scans(&app, sel, json).await,
        Command::Changes { conn, since, scan } => changes(&app, conn, since, scan, json).await,
        Command::Identities { action: None } => list_identities(&app, json).await,
        Command::Identities {
            action:
                Some(IdentitiesAction::Import {
                    file,
                    partial,
                    no_flows,
                    connection,
                }),
        } => {
            let code = import_identities(&app, &file, partial, json).await?;
            if !no_flows {
                after_import_flows(&app, connection.as_deref(), json).await?;
            }
            Ok(code)
        }
        Command::Match { action } => match_cmd(&app, action, json).await,
        Command::Users(a) => users(&app, a, json).await,
        Command::Summary(sel) => {
            let conn = app.resolve(sel.connection.as_deref()).await?;
            let s = report::summary(&app, &conn).await?;
            print_summary(&s, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Groups(sel) => groups(&app, sel, json).await,
        Command::Roles(sel) => roles(&app, sel, json).await,
        Command::Projects(a) => crate::access::projects(&app, a, json).await,
        Command::Access(a) => crate::access::access(&app, a, json).await,
        Command::RotateMasterKey => {
            let n = app.rotate_master_key().await?;
            if json {
                print_json(&json!({ "resealed": n, "master_key_id": app.keyring().current_id() }));
            } else {
                println!(
                    "Resealed {n} API key(s) with master key {}.",
                    app.keyring().current_id()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Provision { action } => {
            crate::provisioning::provision_cmd(&app, action, json).await
        }
        Command::Provisioning { action } => {
            crate::provisioning::provisioning_switch(&app, action, json).await
        }
        Command::Protect { action } => crate::provisioning::protect_cmd(&app, action, json).await,
        Command::Audit { action } => crate::provisioning::audit_cmd(&app, action, json).await,
        Command::Flows { action } => crate::provisioning::flows_cmd(&app, action, json).await,
        Command::Serve(a) => serve_cmd(app, a, json).await,
        Command::Tokens { action } => tokens_cmd(&app, action, json).await,
        Command::Reviews { action } => crate::reviews::run(&app, action, json).await,
        Command::Evidence { action } => evidence_cmd(&app, action, json).await,
        Command::Seats {
            conn,
            seat_price,
            billing_day,
        } => seats_cmd(&app, conn, seat_price, billing_day, json).await,
        Command::Offboard {
            opts,
            email,
            reassign_to,
        } => offboard_cmd(&app, opts, &email, reassign_to.as_deref(), json).await,
        Command::Demo(_) | Command::MigrateStore { .. } => Ok(ExitCode::SUCCESS),
    }
}

/// `migrate-store --to URL`: copies the SQLite store (the usual location: `--database-url`, or
/// accessrail.db in the data directory) into an empty PostgreSQL database, all or nothing.
async fn migrate_store(
    dir: &Path,
    database_url: Option<&str>,
    to: &str,
    json: bool,
) -> Result<ExitCode, Failure> {
    let source = match store_location(dir, database_url)? {
        StoreLocation::Sqlite(path) => path,
        StoreLocation::Postgres(_) => {
            return Err(Failure::Usage(
                "migrate-store copies a SQLite store, but --database-url / ACCESSRAIL_DATABASE_URL names PostgreSQL: point it at the SQLite file, or leave it unset for accessrail.db in the data directory".into(),
            ));
        }
    };
    if !source.is_file() {
        return Err(Failure::Usage(format!(
            "there is no SQLite store at {}: nothing to migrate",
            source.display()
        )));
    }
    let target = match StoreLocation::parse(to) {
        Ok(StoreLocation::Postgres(url)) => url,
        Ok(StoreLocation::Sqlite(_)) => {
            return Err(Failure::Usage(
                "--to must be a PostgreSQL URL (postgres://... or postgresql://...)".into(),
            ));
        }
        Err(e) => return Err(Failure::Usage(format!("--to: {e}"))),
    };
    let from_desc = StoreLocation::Sqlite(source.clone()).describe();
    let to_desc = StoreLocation::Postgres(target.clone()).describe();
    let from = SqliteStore::open(&source).await?;
    // Opening creates Accessrail's schema in an empty database; the copy then refuses a
    // database that already holds data.
    let into = match PgStore::open(&target).await {
        Ok(s) => s,
        Err(e) => {
            from.close().await;
            return Err(e.into());
        }
    };
    let copied = sqlite_to_postgres(&from, &into).await;
    into.close().await;
    from.close().await;
    let report = copied.map_err(|e| match e {
        // The target is not empty: refused before anything was written.
        StoreError::Invalid(m) => Failure::Usage(m),
        other => Failure::from(other),
    })?;
    // The API keys were copied sealed: whoever runs on PostgreSQL needs this same master key.
    let master_key = if std::env::var_os("ACCESSRAIL_MASTER_KEY").is_some() {
        "ACCESSRAIL_MASTER_KEY".to_string()
    } else if let Some(p) = std::env::var_os("ACCESSRAIL_MASTER_KEY_FILE") {
        format!("ACCESSRAIL_MASTER_KEY_FILE ({})", Path::new(&p).display())
    } else {
        dir.join("master.key").display().to_string()
    };
    if json {
        let tables: serde_json::Map<String, serde_json::Value> = report
            .tables
            .iter()
            .map(|(t, n)| ((*t).to_string(), json!(n)))
            .collect();
        print_json(&json!({
            "from": from_desc,
            "to": to_desc,
            "tables": tables,
            "skipped": report.skipped,
            "master_key": { "ids": report.secret_key_ids, "source": master_key },
        }));
        return Ok(ExitCode::SUCCESS);
    }
    println!("Copied {from_desc} into {to_desc} (one transaction):");
    let mut t = table(&["table", "rows"]);
    for (name, n) in &report.tables {
        t.add_row(vec![(*name).to_string(), n.to_string()]);
    }
    crate::output::print_table(t);
    if !report.skipped.is_empty() {
        println!(
            "Not copied (transient, recreated as needed): {}.",
            report.skipped.join(", ")
        );
    }
    let ids = if report.secret_key_ids.is_empty() {
        String::new()
    } else {
        format!(" (master key {})", report.secret_key_ids.join(", "))
    };
    println!(
        "The API keys were copied still sealed{ids}: the master key does not change. Run Accessrail on PostgreSQL with the same master key: {master_key}."
    );
    println!(
        "Next: set ACCESSRAIL_DATABASE_URL (or --database-url) to the PostgreSQL URL. The SQLite file is left as it was."
    );
    Ok(ExitCode::SUCCESS)
}

fn read_key(a: &ConnectArgs) -> Result<ApiKey, Failure> {
    let raw = if a.api_key_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| {
            Failure::Usage(format!("cannot read the API key from standard input: {e}"))
        })?;
        s
    } else if let Some(p) = &a.api_key_file {
        std::fs::read_to_string(p).map_err(|e| {
            Failure::Usage(format!("cannot read the API key file {}: {e}", p.display()))
        })?
    } else {
        return Err(Failure::Usage(
            "give the API key with --api-key-stdin or --api-key-file".into(),
        ));
    };
    ApiKey::new(raw).ok_or_else(|| Failure::Usage("the API key is empty".into()))
}

async fn connect(app: &App, a: ConnectArgs, json: bool) -> Result<ExitCode, Failure> {
    let key = read_key(&a)?;
    let target = match (&a.subdomain, &a.base_url) {
        (Some(s), _) => Target::Subdomain(s.clone()),
        (None, Some(u)) => Target::BaseUrl(u.clone()),
        (None, None) => return Err(Failure::Usage("give --subdomain or --base-url".into())),
    };
    let (report, saved) = app
        .connect(ConnectRequest {
            target,
            email: a.email.clone(),
            key,
            name: a.name.clone(),
            replace: a.replace,
            request_budget: a.request_budget,
            scan_interval_secs: match a.scan_interval_hours {
                Some(h) if h.is_finite() && h > 0.0 => Some((h * 3600.0) as i64),
                Some(_) => {
                    return Err(Failure::Usage(
                        "--scan-interval-hours must be positive".into(),
                    ));
                }
                None => None,
            },
        })
        .await
        .map_err(|e| match e {
            EngineError::InvalidInput(m) => Failure::Usage(m),
            other => Failure::from(other),
        })?;
    if json {
        print_json(&json!({
            "test": report,
            "saved": saved.as_ref().map(|c| json!({
                "name": c.name, "base_url": c.base_url, "email": c.email, "request_budget": c.request_budget,
            })),
        }));
    } else {
        print_test(&report, false);
        match &saved {
            Some(c) => println!(
                "\nSaved connection {} ({}). The API key is stored encrypted and will not be shown again.\nNext: accessrail scan{}",
                c.name,
                c.base_url,
                if app.store().connections().await?.len() > 1 {
                    format!(" --connection {}", c.name)
                } else {
                    String::new()
                }
            ),
            None => println!("\nNothing was saved: fix the failing check and run connect again."),
        }
    }
    Ok(if saved.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn print_test(r: &TestReport, json: bool) {
    if json {
        print_json(r);
        return;
    }
    println!("Test of {}", r.base_url);
    for c in &r.checks {
        let mark = match c.status {
            CheckStatus::Pass => "ok  ",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skipped => "skip",
        };
        println!("  [{mark}] {}: {}", c.title, c.message);
        if let (Some(h), CheckStatus::Fail | CheckStatus::Warn) = (c.hint, c.status) {
            println!("         {h}");
        }
    }
    println!(
        "{}",
        if r.passed {
            "Test passed."
        } else {
            "Test failed."
        }
    );
}

async fn connections(app: &App, json: bool) -> Result<ExitCode, Failure> {
    let all = app.store().connections().await?;
    if json {
        let v: Vec<_> = all
            .iter()
            .map(|c| {
                json!({
                    "name": c.name, "base_url": c.base_url, "email": c.email, "request_budget": c.request_budget,
                    "groups_supported": c.groups_supported, "provisioning_enabled": c.provisioning_enabled,
                    "scan_interval_hours": c.scan_interval_secs.map(|s| s as f64 / 3600.0),
                    "created_at": time_fmt::rfc3339(c.created_at),
                })
            })
            .collect();
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!(
            "No connections yet. Run `accessrail connect --subdomain SUB --email EMAIL --api-key-stdin`."
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&[
        "name",
        "TestRail",
        "administrator email",
        "budget/min",
        "groups",
        "since",
    ]);
    for c in &all {
        t.add_row(vec![
            c.name.clone(),
            c.base_url.clone(),
            c.email.clone(),
            opt(&c.request_budget),
            match c.groups_supported {
                Some(true) => "yes".into(),
                Some(false) => "no (before 7.5)".into(),
                None => "-".into(),
            },
            time_fmt::short(c.created_at),
        ]);
    }
    crate::output::print_table(t);
    Ok(ExitCode::SUCCESS)
}

/// Shows a progress bar on a terminal and reports retries and waits as they happen.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    json: bool,
}

impl ScanObserver for Progress {
    fn users_read(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_message(format!("{n} users read"));
        }
    }
    fn phase(&self, phase: &str) {
        if let Some(b) = &self.bar {
            b.set_prefix(phase.to_string());
        }
    }
    fn client_event(&self, event: &Event) {
        let line = match event {
            Event::Retrying {
                method,
                attempt,
                delay,
                reason,
            } => {
                format!(
                    "retrying {method} (attempt {attempt} failed: {reason}) in {:.1}s",
                    delay.as_secs_f64()
                )
            }
            Event::RateLimited { method, wait } => {
                format!(
                    "TestRail rate limit reached on {method}: waiting {}s as Retry-After asks",
                    wait.as_secs()
                )
            }
            Event::BudgetWait { wait } => {
                format!(
                    "request budget used up: waiting {:.0}s to leave room for other TestRail clients",
                    wait.as_secs_f64()
                )
            }
            Event::WriteRecovered { method, found } => {
                format!("{method}: lost answer checked (found: {found})")
            }
            Event::SharedBudgetUnavailable { error } => {
                format!(
                    "the shared request budget could not be read ({error}); this process's own budget applies"
                )
            }
            _ => return,
        };
        match &self.bar {
            Some(b) => b.println(format!("  {line}")),
            None if !self.json => eprintln!("accessrail: {line}"),
            None => eprintln!("{}", json!({ "event": line })),
        }
    }
}

pub async fn scan_with_progress(
    app: &App,
    connection: Option<&str>,
    json: bool,
) -> Result<ScanOutcome, Failure> {
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} scanning {prefix}: {msg} [{elapsed}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    let progress = Arc::new(Progress {
        bar: bar.clone(),
        json,
    });
    let conn = app.resolve(connection).await?;
    let last_before = app
        .store()
        .scans(&conn.id)
        .await?
        .last()
        .map_or(0, |s| s.id);
    // A signal ends the scan as interrupted: its lease is released at once, nothing is saved.
    let result = tokio::select! {
        r = scan::scan(app, Some(&conn.name), progress) => r,
        sig = stop_signal() => {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            let _ = app
                .release_everything(&format!("interrupted: the scan was stopped by {sig}"))
                .await;
            // The signal may have come while the commit was finishing: say what happened.
            let saved = app
                .store()
                .scans(&conn.id)
                .await?
                .into_iter()
                .find(|s| s.id > last_before && s.status == accessrail_store::ScanStatus::Succeeded);
            return Err(Failure::Interrupted(match saved {
                Some(s) => format!("stopped by {sig} after scan {} was saved", s.id),
                None => format!(
                    "scan interrupted by {sig}; nothing was saved, the last good scan is kept"
                ),
            }));
        }
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result.map_err(|e| match e {
        EngineError::Upstream { .. } => fail(
            "scan_failed",
            format!("scan failed, the last good scan is kept: {e}"),
        ),
        other => Failure::from(other),
    })
}

fn print_scan(o: &ScanOutcome, json: bool) {
    if json {
        print_json(o);
        return;
    }
    println!(
        "Scan {} of {}: {} users ({} active seats), {} groups, {} roles in {} requests ({} retries) in {:.1}s; {} change(s).",
        o.scan_id,
        o.connection,
        o.users,
        o.active_seats,
        o.groups,
        o.roles,
        o.requests,
        o.retries,
        o.seconds,
        o.changes
    );
    for w in &o.warnings {
        println!("  warning: {w}");
    }
}

async fn scans(app: &App, sel: ConnSel, json: bool) -> Result<ExitCode, Failure> {
    let conn = app.resolve(sel.connection.as_deref()).await?;
    let all = app.store().scans(&conn.id).await?;
    // `#`: the scan's number among this connection's scans, as the console shows it. `id`: the
    // revision id that `--at-scan` and `changes --scan` take (provisioning revisions share that
    // counter, so ids have gaps).
    let mut ids: Vec<i64> = all.iter().map(|s| s.id).collect();
    ids.sort_unstable();
    let number = |id: i64| ids.binary_search(&id).map_or(0, |i| i + 1);
    if json {
        let v: Vec<_> = all
            .iter()
            .map(|s| {
                json!({
                    "number": number(s.id), "id": s.id, "status": s.status.as_str(), "started_at": time_fmt::rfc3339(s.started_at),
                    "finished_at": s.finished_at.map(time_fmt::rfc3339), "users": s.users_seen, "groups": s.groups_seen,
                    "active_seats": s.active_seats, "requests": s.requests, "retries": s.retries, "changes": s.changes,
                    "error": s.error, "warnings": s.warnings,
                })
            })
            .collect();
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&[
        "#",
        "id",
        "started",
        "status",
        "duration",
        "users",
        "active seats",
        "requests",
        "changes",
        "error",
    ]);
    for s in &all {
        t.add_row(vec![
            format!("#{}", number(s.id)),
            s.id.to_string(),
            time_fmt::short(s.started_at),
            s.status.as_str().to_string(),
            s.finished_at
                .map_or("-".into(), |f| format!("{}s", f - s.started_at)),
            s.users_seen.to_string(),
            if s.status == accessrail_store::ScanStatus::Succeeded {
                s.active_seats.to_string()
            } else {
                "-".into()
            },
            s.requests.to_string(),
            s.changes.to_string(),
            s.error.clone().unwrap_or_default(),
        ]);
    }
    crate::output::print_table(t);
    Ok(ExitCode::SUCCESS)
}

async fn changes(
    app: &App,
    sel: ConnSel,
    since: Option<String>,
    scan: Option<i64>,
    json: bool,
) -> Result<ExitCode, Failure> {
    let conn = app.resolve(sel.connection.as_deref()).await?;
    let since = match since {
        Some(s) => Some(time_fmt::parse_since(&s, app.now()).ok_or_else(|| {
            Failure::Usage(format!("--since {s:?}: use an RFC 3339 time, a date such as 2026-11-01, or an age such as 7d or 24h"))
        })?),
        None => None,
    };
    let all = app.store().changes(&conn.id, since, scan).await?;
    if json {
        let v: Vec<_> = all
            .iter()
            .map(|c| {
                json!({
                    "id": c.id, "scan": c.scan_id, "at": time_fmt::rfc3339(c.at), "kind": c.kind,
                    "user_id": c.tr_user_id, "group_id": c.tr_group_id, "subject": c.subject,
                    "before": c.before, "after": c.after, "audit_id": c.audit_id,
                    "project_id": c.tr_project_id, "project": c.project,
                })
            })
            .collect();
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("No changes.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&["scan", "at", "change", "who / group", "before", "after"]);
    for c in &all {
        // Access changes name their project next to whom they are about.
        let who = match (&c.subject, &c.project) {
            (Some(s), Some(p)) if s != p => format!("{s} in {p}"),
            (s, p) => s.clone().or_else(|| p.clone()).unwrap_or_default(),
        };
        t.add_row(vec![
            c.scan_id.to_string(),
            time_fmt::short(c.at),
            c.kind.replace('_', " "),
            who,
            c.before.clone().unwrap_or_default(),
            c.after.clone().unwrap_or_default(),
        ]);
    }
    crate::output::print_table(t);
    Ok(ExitCode::SUCCESS)
}

async fn list_identities(app: &App, json: bool) -> Result<ExitCode, Failure> {
    let all = app.store().identities().await?;
    if json {
        let v: Vec<_> = all
            .iter()
            .map(|i| {
                json!({
                    "id": i.id, "name": i.name, "email": i.emails.first(), "other_emails": i.emails.iter().skip(1).collect::<Vec<_>>(),
                    "status": if i.gone { "gone" } else { i.status.as_str() }, "attributes": i.attributes,
                })
            })
            .collect();
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&[
        "id",
        "name",
        "email",
        "other emails",
        "status",
        "attributes",
    ]);
    for i in &all {
        t.add_row(vec![
            i.id.clone(),
            i.name.clone(),
            i.emails.first().cloned().unwrap_or_default(),
            i.emails
                .iter()
                .skip(1)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
            if i.gone {
                "gone".into()
            } else {
                i.status.as_str().to_string()
            },
            i.attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    crate::output::print_table(t);
    Ok(ExitCode::SUCCESS)
}

pub async fn import_identities(
    app: &App,
    file: &Path,
    partial: bool,
    json: bool,
) -> Result<ExitCode, Failure> {
    let bytes = std::fs::read(file)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
    let format = Format::guess(&file.to_string_lossy(), &bytes);
    let parsed = identities::parse(&bytes, format).map_err(|errors| {
        let lines = identities::error_lines(&errors);
        fail(
            "invalid_identities",
            format!(
                "{} has {} problem(s); nothing was imported:\n  {}",
                file.display(),
                errors.len(),
                lines.join("\n  ")
            ),
        )
    })?;
    let n = parsed.len();
    drop(bytes);
    let summary = app
        .store()
        .import_identities(parsed, !partial, app.now())
        .await?;
    if json {
        print_json(&json!({
            "read": n, "added": summary.added, "updated": summary.updated, "unchanged": summary.unchanged,
            "marked_gone": summary.marked_gone, "partial": partial,
        }));
    } else {
        println!(
            "Imported {n} identities from {}: {} added, {} updated, {} unchanged, {} marked gone{}.",
            file.display(),
            summary.added,
            summary.updated,
            summary.unchanged,
            summary.marked_gone,
            if partial {
                " (partial import: nobody marked gone)"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn find_account(
    app: &App,
    conn: &accessrail_store::Connection,
    account: &str,
) -> Result<u64, Failure> {
    let accounts = app.store().current_accounts(&conn.id).await?;
    let t = account.trim();
    let found = match t.parse::<u64>() {
        Ok(id) => accounts.iter().find(|a| a.id == id),
        Err(_) => accounts.iter().find(|a| {
            a.email
                .as_deref()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case(t))
        }),
    };
    found.map(|a| a.id).ok_or_else(|| {
        Failure::Usage(format!(
            "no TestRail account {t:?} in the last scan of {}",
            conn.name
        ))
    })
}

async fn match_cmd(app: &App, action: MatchAction, json: bool) -> Result<ExitCode, Failure> {
    let (sel, account, identity, kind) = match &action {
        MatchAction::Set {
            conn,
            account,
            identity,
        } => (conn, account, Some(identity), Some(OverrideKind::Pin)),
        MatchAction::Clear {
            conn,
            account,
            identity,
        } => (conn, account, Some(identity), Some(OverrideKind::Exclude)),
        MatchAction::Reset { conn, account } => (conn, account, None, None),
    };
    let conn = app.resolve(sel.connection.as_deref()).await?;
    let account_id = find_account(app, &conn, account).await?;
    if let (Some(identity), Some(kind)) = (identity, kind) {
        if !app
            .store()
            .identities()
            .await?
            .iter()
            .any(|i| &i.id == identity)
        {
            return Err(Failure::Usage(format!("no identity with id {identity:?}")));
        }
        app.store()
            .set_override(
                &conn.id,
                OverrideRecord {
                    account_id,
                    identity_id: identity.clone(),
                    kind,
                },
                app.now(),
            )
            .await?;
        if json {
            print_json(
                &json!({ "account": account_id, "identity": identity, "override": kind.as_str() }),
            );
        } else if kind == OverrideKind::Pin {
            println!("Account {account_id} is now pinned to identity {identity}.");
        } else {
            println!("Account {account_id} will never be matched to identity {identity}.");
        }
    } else {
        let n = app
            .store()
            .clear_override(&conn.id, account_id, None, app.now())
            .await?;
        if json {
            print_json(&json!({ "account": account_id, "removed": n }));
        } else {
            println!("Removed {n} manual match decision(s) for account {account_id}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses `--at-scan N` unless N is a successful scan of `conn`.
pub(crate) async fn check_at_scan(
    app: &App,
    conn: &accessrail_store::Connection,
    at_scan: Option<i64>,
) -> Result<(), Failure> {
    if let Some(scan_id) = at_scan {
        let scan = app.store().scan(scan_id).await?;
        if scan.as_ref().is_none_or(|s| {
            s.connection_id != conn.id || s.status != accessrail_store::ScanStatus::Succeeded
        }) {
            return Err(Failure::Usage(format!(
                "scan {scan_id} is not a successful scan of {} (see `accessrail scans`: the id column)",
                conn.name
            )));
        }
    }
    Ok(())
}

async fn users(app: &App, a: UsersArgs, json: bool) -> Result<ExitCode, Failure> {
    let conn = app.resolve(a.conn.connection.as_deref()).await?;
    check_at_scan(app, &conn, a.at_scan).await?;
    // One store query, now or at a scan: every filter applies to both.
    let filter = UserFilter {
        unmatched: a.unmatched,
        ambiguous: a.ambiguous,
        inactive: a.inactive,
        role: a.role.clone(),
        group: a.group.clone(),
        at_scan: a.at_scan,
        sort: report::AccountSort::Id,
        ..UserFilter::default()
    };
    let mut list: Vec<UserView> = report::filtered_users(app, &conn, &filter).await?;
    let scanned = accessrail_engine::evidence::covered_from(app, &conn).await?;
    let evidence = if scanned.is_some() {
        accessrail_engine::evidence::views(app, &conn).await?
    } else {
        Default::default()
    };
    if let Some(idle) = &a.idle_for {
        let days = parse_days(idle)?;
        let Some(from) = scanned else {
            return Err(Failure::Usage(
                "--idle-for needs activity evidence: run `accessrail evidence scan` first".into(),
            ));
        };
        let since = app.now() - days * 86_400;
        if from > since {
            return Err(Failure::Usage(format!(
                "the evidence reaches back to {} only: run `accessrail evidence scan --reach {days}d` to look {days} days back",
                time_fmt::short(from)
            )));
        }
        list.retain(|u| u.is_active && evidence.get(&u.id).is_none_or(|e| e.at < since));
    }
    if json {
        // Each account with its latest recorded activity (null: none in what was read).
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|u| {
                let mut v = serde_json::to_value(u).unwrap_or_default();
                let e = evidence.get(&u.id);
                if let Some(o) = v.as_object_mut() {
                    o.insert(
                        "last_evidence_at".into(),
                        json!(e.map(|e| time_fmt::rfc3339(e.at))),
                    );
                    o.insert(
                        "last_evidence_kind".into(),
                        json!(e.map(|e| e.kind.clone())),
                    );
                    o.insert("last_evidence".into(), json!(e.map(|e| e.artefact.clone())));
                    o.insert(
                        "evidence_30_days".into(),
                        json!(e.map_or(0, |e| e.last_30_days)),
                    );
                    o.insert(
                        "evidence_90_days".into(),
                        json!(e.map_or(0, |e| e.last_90_days)),
                    );
                    o.insert("automation".into(), json!(e.is_some_and(|e| e.automation)));
                }
                v
            })
            .collect();
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&[
        "id", "name", "email", "active", "role", "groups", "identity", "flags",
    ]);
    for u in &list {
        let mut flags = vec![];
        match u.match_state {
            accessrail_domain::MatchState::Unmatched => flags.push("unmatched".to_string()),
            accessrail_domain::MatchState::Ambiguous => {
                flags.push(format!("ambiguous ({})", u.candidates.join(", ")))
            }
            accessrail_domain::MatchState::Forgotten => flags.push("forgotten".to_string()),
            accessrail_domain::MatchState::Matched => {}
        }
        if u.is_leaver() {
            flags.push(if u.is_active {
                "LEAVER, still active".into()
            } else {
                "leaver".into()
            });
        }
        if u.identity_status.as_deref() == Some("gone") {
            flags.push("identity gone".into());
        }
        if u.pinned {
            flags.push("pinned".into());
        }
        if u.is_admin == Some(true) {
            flags.push("admin".into());
        }
        t.add_row(vec![
            u.id.to_string(),
            u.name.clone().unwrap_or_default(),
            u.email.clone().unwrap_or_default(),
            if u.is_active {
                "yes".into()
            } else {
                "no".into()
            },
            u.role.clone().unwrap_or_default(),
            u.groups.join(", "),
            u.identity.clone().unwrap_or_default(),
            flags.join("; "),
        ]);
    }
    crate::output::print_table(t);
    println!("{} account(s).", list.len());
    if let (Some(idle), Some(from)) = (&a.idle_for, scanned) {
        println!(
            "Active accounts with no recorded activity in results, runs, plans or cases in the last {idle} (evidence read from {}). TestRail has no last-login time: this is not proof of no use.",
            time_fmt::short(from)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `90d`, `90`, `12w`: whole days.
fn parse_days(s: &str) -> Result<i64, Failure> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = t.strip_suffix('d') {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('w') {
        (n, 7)
    } else {
        (t.as_str(), 1)
    };
    num.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=3650).contains(n))
        .map(|n| n * mult)
        .ok_or_else(|| Failure::Usage(format!("{s:?}: give days, e.g. 90d or 12w")))
}

async fn evidence_cmd(app: &App, action: EvidenceAction, json: bool) -> Result<ExitCode, Failure> {
    match action {
        EvidenceAction::Scan { conn, reach } => {
            let c = app.resolve(conn.connection.as_deref()).await?;
            let reach = reach.as_deref().map(parse_days).transpose()?;
            let o = accessrail_engine::evidence::scan(app, &c, reach).await?;
            if json {
                print_json(&o);
            } else {
                println!(
                    "Evidence of {} read from {}: {} projects, {} runs; {} pieces of evidence ({} new).",
                    o.connection,
                    time_fmt::short(o.read_from),
                    o.projects,
                    o.runs_read,
                    o.evidence_read,
                    o.evidence_new
                );
                println!(
                    "TestRail requests: {} (this scan needed at least {}: one per page of each list).",
                    o.requests, o.estimate
                );
            }
        }
        EvidenceAction::Runs(sel) => {
            let c = app.resolve(sel.connection.as_deref()).await?;
            let runs = app.store().evidence_runs(&c.id).await?;
            if json {
                let v: Vec<_> = runs
                    .iter()
                    .map(|r| json!({
                        "id": r.id, "status": r.status, "started_at": time_fmt::rfc3339(r.started_at),
                        "finished_at": r.finished_at.map(time_fmt::rfc3339), "read_from": time_fmt::rfc3339(r.read_from),
                        "requests": r.requests, "estimate": r.estimate, "evidence": r.evidence, "error": r.error,
                    }))
                    .collect();
                print_json(&v);
            } else {
                let mut t = table(&[
                    "id",
                    "status",
                    "started",
                    "read from",
                    "requests",
                    "evidence",
                    "error",
                ]);
                for r in &runs {
                    t.add_row(vec![
                        r.id.to_string(),
                        r.status.clone(),
                        time_fmt::short(r.started_at),
                        time_fmt::short(r.read_from),
                        format!("{} (at least {})", r.requests, r.estimate),
                        r.evidence.to_string(),
                        r.error.clone().unwrap_or_default(),
                    ]);
                }
                crate::output::print_table(t);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn print_summary(s: &report::Summary, json: bool) {
    if json {
        print_json(s);
        return;
    }
    println!("TestRail connection {}", s.connection);
    match (s.last_scan, s.last_scan_at) {
        (Some(id), Some(at)) => println!("  last good scan        {id} at {}", time_fmt::short(at)),
        _ => println!("  last good scan        none yet: run `accessrail scan`"),
    }
    println!("  accounts              {}", s.accounts);
    println!("  active seats          {}", s.active_seats);
    println!("  inactive accounts     {}", s.inactive_accounts);
    println!("  administrators        {}", s.admins);
    println!("  unmatched, active     {}", s.unmatched_active_accounts);
    println!("  ambiguous matches     {}", s.ambiguous_accounts);
    println!("  forgotten users       {}", s.forgotten_accounts);
    println!("  leavers still active  {}", s.active_accounts_of_leavers);
}

async fn groups(app: &App, sel: ConnSel, json: bool) -> Result<ExitCode, Failure> {
    let conn = app.resolve(sel.connection.as_deref()).await?;
    let groups = app.store().current_groups(&conn.id).await?;
    let accounts = app.store().current_accounts(&conn.id).await?;
    let email = |id: &u64| {
        accounts
            .iter()
            .find(|a| a.id == *id)
            .and_then(|a| a.email.clone())
            .unwrap_or_else(|| format!("#{id}"))
    };
    if json {
        let v: Vec<_> = groups
            .iter()
            .map(|g| json!({ "id": g.id, "name": g.name, "user_ids": g.member_ids, "members": g.member_ids.iter().map(email).collect::<Vec<_>>() }))
            .collect();
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    if conn.groups_supported == Some(false) {
        println!("This TestRail has no groups API (before 7.5): group features are off.");
    }
    let mut t = table(&["id", "group", "members", "member emails"]);
    for g in &groups {
        t.add_row(vec![
            g.id.to_string(),
            g.name.clone().unwrap_or_default(),
            g.member_ids.len().to_string(),
            g.member_ids
                .iter()
                .map(email)
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    crate::output::print_table(t);
    Ok(ExitCode::SUCCESS)
}

async fn roles(app: &App, sel: ConnSel, json: bool) -> Result<ExitCode, Failure> {
    let conn = app.resolve(sel.connection.as_deref()).await?;
    let roles = app.store().current_roles(&conn.id).await?;
    let accounts = app.store().current_accounts(&conn.id).await?;
    let count = |id: u64, active: bool| {
        accounts
            .iter()
            .filter(|a| a.role_id == Some(id) && (!active || a.is_active))
            .count()
    };
    if json {
        let v: Vec<_> = roles
            .iter()
            .map(|r| json!({ "id": r.id, "name": r.name, "is_default": r.is_default, "is_project_admin": r.is_project_admin, "accounts": count(r.id, false), "active_accounts": count(r.id, true) }))
            .collect();
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&["id", "role", "default", "accounts", "active"]);
    for r in &roles {
        t.add_row(vec![
            r.id.to_string(),
            r.name.clone().unwrap_or_default(),
            if r.is_default == Some(true) {
                "yes".into()
            } else {
                String::new()
            },
            count(r.id, false).to_string(),
            count(r.id, true).to_string(),
        ]);
    }
    crate::output::print_table(t);
    Ok(ExitCode::SUCCESS)
}

/// After an identity import: each connection's flows run by themselves when provisioning is
/// enabled for it; otherwise their plan is printed.
async fn after_import_flows(
    app: &App,
    connection: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let conns = match connection {
        Some(n) => vec![app.resolve(Some(n)).await?],
        None => app.store().connections().await?,
    };
    for conn in conns {
        let Some((requests, handovers)) = crate::provisioning::flow_requests(app, &conn).await?
        else {
            continue;
        };
        let opts = ProvOpts {
            conn: ConnSel {
                connection: Some(conn.name.clone()),
            },
            dry_run: !conn.provisioning_enabled,
            max_deactivations: None,
            force: false,
        };
        if !json {
            println!(
                "\nFlows for {}: {}",
                conn.name,
                if conn.provisioning_enabled {
                    "applying (provisioning is on)"
                } else {
                    "plan only (provisioning is off)"
                }
            );
        }
        match crate::provisioning::run_plan(app, &conn, requests, &handovers, &opts, json).await {
            Ok(_) => {}
            Err(f) => crate::output::print_failure(&f, json),
        }
    }
    Ok(())
}

/// Serves API, console and scheduler until Ctrl-C / SIGTERM.
pub async fn serve_app(
    app: App,
    listen: std::net::SocketAddr,
    allow_base_urls: bool,
    interval_hours: f64,
    jitter_secs: u32,
    config: accessrail_web::ServeConfig,
    json: bool,
) -> Result<ExitCode, Failure> {
    if interval_hours.is_nan() || interval_hours <= 0.0 {
        return Err(Failure::Usage(
            "--scan-interval-hours must be positive".into(),
        ));
    }
    config.check().map_err(Failure::Usage)?;
    // Before listening: a process with the wrong master key never serves a request.
    app.check_master_key().await?;
    let engine = Arc::new(app);
    let token = accessrail_web::bootstrap_admin_token(&engine)
        .await
        .map_err(|e| fail("store", e))?;
    let schedule = accessrail_engine::schedule::Schedule {
        interval: (interval_hours * 3600.0) as i64,
        jitter: i64::from(jitter_secs),
        ..accessrail_engine::schedule::Schedule::default()
    };
    let state = accessrail_web::AppState::open(engine, allow_base_urls, schedule, config.job_poll)
        .await
        .map_err(|e| fail("store", e))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| fail("listen", format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| fail("listen", e.to_string()))?;
    if json {
        println!(
            "{}",
            json!({ "listening": format!("http://{addr}"), "admin_token": token })
        );
    } else {
        match &config.public_url {
            Some(u) => println!(
                "Accessrail console and API listening on http://{addr}/, public address {u} (Ctrl-C to stop)"
            ),
            None => println!("Accessrail console and API at http://{addr}/ (Ctrl-C to stop)"),
        }
        if let Some(t) = &token {
            println!(
                "First start: an admin API token was created. It is shown only now:\n  {t}\nSign in to the console with it, or use it as a bearer token."
            );
        }
    }
    accessrail_web::serve(state, listener, config, async {
        stop_signal().await;
    })
    .await
    .map_err(|e| fail("serve", e))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve_cmd(app: App, a: ServeArgs, json: bool) -> Result<ExitCode, Failure> {
    let config = accessrail_web::ServeConfig {
        public_url: a.public_url.filter(|u| !u.trim().is_empty()),
        grace: Duration::from_secs(a.shutdown_grace_secs),
        tick_every: Duration::from_secs(a.scheduler_tick_secs),
        job_poll: Duration::from_millis(a.job_poll_ms),
        evidence_scans: !a.no_evidence_scans,
    };
    serve_app(
        app,
        a.listen,
        a.allow_base_urls,
        a.scan_interval_hours,
        a.scan_jitter_secs,
        config,
        json,
    )
    .await
}

async fn tokens_cmd(app: &App, action: TokensAction, json: bool) -> Result<ExitCode, Failure> {
    use accessrail_engine::tokens;
    match action {
        TokensAction::Create {
            name,
            reviewer,
            scim,
            connection,
        } => {
            if !tokens::valid_name(&name) {
                return Err(Failure::Usage(format!(
                    "{name:?} is not a usable token name (letters, digits, '-', '_', '.')"
                )));
            }
            let reviewer = reviewer
                .map(|r| {
                    accessrail_domain::EmailKey::parse(&r).ok_or_else(|| {
                        Failure::Usage(format!("--reviewer {r:?} is not an email address"))
                    })
                })
                .transpose()?;
            let token = tokens::generate();
            if scim {
                let c = app.resolve(connection.as_deref()).await?;
                app.store()
                    .create_scim_token(&name, &tokens::hash(&token), &c.id, app.now())
                    .await?;
                if json {
                    print_json(
                        &json!({ "name": name, "token": token, "scim_connection": c.name, "path": format!("/scim/v2/{}/", c.name) }),
                    );
                } else {
                    println!(
                        "SCIM token {name} for {} (shown only now; Accessrail keeps only its hash). Give your identity provider the SCIM base URL <this service>/scim/v2/{}/ and this bearer token; it works there and nowhere else:\n{token}",
                        c.name, c.name
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            if connection.is_some() {
                return Err(Failure::Usage(
                    "--connection goes with --scim (other tokens reach every connection)".into(),
                ));
            }
            match &reviewer {
                Some(r) => {
                    app.store()
                        .create_reviewer_token(&name, &tokens::hash(&token), r.as_str(), app.now())
                        .await?
                }
                None => {
                    app.store()
                        .create_token(&name, &tokens::hash(&token), app.now())
                        .await?
                }
            }
            if json {
                print_json(
                    &json!({ "name": name, "token": token, "reviewer": reviewer.as_ref().map(|r| r.as_str()) }),
                );
            } else if let Some(r) = &reviewer {
                println!(
                    "Reviewer sign-in {name} for {r} (shown only now; Accessrail keeps only its hash). It opens the console's review pages with {r}'s own items, nothing else:\n{token}"
                );
            } else {
                println!("Token {name} (shown only now; Accessrail keeps only its hash):\n{token}");
            }
        }
        TokensAction::Revoke { name } => {
            if !app.store().revoke_token(&name, app.now()).await? {
                return Err(Failure::Usage(format!("no live token named {name:?}")));
            }
            if json {
                print_json(&json!({ "revoked": name }));
            } else {
                println!("Token {name} revoked.");
            }
        }
        TokensAction::List => {
            let all = app.store().tokens().await?;
            if json {
                let v: Vec<_> = all.iter().map(|t| json!({ "name": t.name, "reviewer": t.reviewer, "scim_connection": t.scim_connection, "created_at": time_fmt::rfc3339(t.created_at), "revoked_at": t.revoked_at.map(time_fmt::rfc3339) })).collect();
                print_json(&v);
            } else {
                let mut t = table(&["name", "kind", "created", "revoked"]);
                for x in &all {
                    t.add_row(vec![
                        x.name.clone(),
                        match (&x.reviewer, &x.scim_connection) {
                            (Some(r), _) => format!("reviewer {r}"),
                            (None, Some(_)) => "SCIM".to_string(),
                            (None, None) => "administrator".to_string(),
                        },
                        time_fmt::short(x.created_at),
                        x.revoked_at.map(time_fmt::short).unwrap_or_default(),
                    ]);
                }
                crate::output::print_table(t);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn seats_cmd(
    app: &App,
    sel: ConnSel,
    seat_price: Option<f64>,
    billing_day: Option<u8>,
    json: bool,
) -> Result<ExitCode, Failure> {
    if seat_price.is_some_and(|p| !p.is_finite() || p < 0.0) {
        return Err(Failure::Usage(
            "--seat-price must be a positive number".into(),
        ));
    }
    let c = app.resolve(sel.connection.as_deref()).await?;
    let r = accessrail_engine::evidence::seats(app, &c, seat_price, billing_day).await?;
    if json {
        print_json(&r);
        return Ok(ExitCode::SUCCESS);
    }
    let n = |x: Option<u64>| x.map_or("not covered by the evidence".to_string(), |v| v.to_string());
    println!("Seats of {}", r.connection);
    println!(
        "  active seats                                  {}",
        r.active_seats
    );
    match r.evidence_from {
        Some(f) => println!(
            "  activity evidence read from                   {}",
            time_fmt::short(f)
        ),
        None => println!(
            "  activity evidence                             none yet: run `accessrail evidence scan`"
        ),
    }
    println!(
        "  no recorded activity in 30 days               {}",
        n(r.without_evidence_30_days)
    );
    println!(
        "  no recorded activity in 60 days               {}",
        n(r.without_evidence_60_days)
    );
    println!(
        "  no recorded activity in 90 days               {}",
        n(r.without_evidence_90_days)
    );
    println!(
        "  leavers still active                          {}",
        r.leavers_active
    );
    println!(
        "  automation accounts (mostly bulk results)     {}",
        r.automation_accounts
    );
    if let (Some(p), Some(a), Some(b)) = (
        r.seat_price,
        r.monthly_saving_leavers,
        r.monthly_saving_leavers_and_idle_90,
    ) {
        println!(
            "  at {p:.2} a seat a month, deactivating the leavers saves {a:.2} a month; with the seats idle for 90 days, {b:.2}"
        );
    }
    if let Some(end) = r.billing_period_end {
        println!(
            "  the billing period ends {}: TestRail bills every user active at any time in a period, so a deactivation saves from the next one",
            time_fmt::short(end)
        );
    }
    println!(
        "\"No recorded activity\" means none in results, runs, plans or cases: TestRail has no last-login time."
    );
    Ok(ExitCode::SUCCESS)
}

/// A person's open work and the steps that hand it over.
pub fn print_work(
    i: &accessrail_engine::offboard::OffboardImpact,
    steps: &[accessrail_engine::offboard::ReassignStep],
    reassigning: bool,
) {
    println!("  open runs assigned to them: {}", i.runs.len());
    for r in &i.runs {
        println!(
            "    run {} \"{}\" in {}{}",
            r.id,
            r.name,
            r.project,
            r.plan_id
                .map(|p| format!(" (plan {p})"))
                .unwrap_or_default()
        );
    }
    println!(
        "  open plans assigned to them: {} (listed only: TestRail's API cannot reassign a plan; do it in TestRail)",
        i.plans.len()
    );
    for p in &i.plans {
        println!("    plan {} \"{}\" in {}", p.id, p.name, p.project);
    }
    println!(
        "  untested or retest tests assigned to them in open runs: {}",
        i.tests.len()
    );
    println!(
        "  context: cases they created {}, cases they updated last {}",
        i.cases_created, i.cases_last_updated
    );
    if !steps.is_empty() {
        println!("Plan:");
        for (n, st) in steps.iter().enumerate() {
            println!(
                "  {}. {} {} ({})",
                n + 1,
                st.action,
                st.target,
                st.calls.join(", ")
            );
            if let Some(note) = &st.note {
                println!("     note: {note}");
            }
        }
    } else if !reassigning && (!i.runs.is_empty() || !i.tests.is_empty()) {
        println!(
            "  (their runs and tests stay assigned to them: --reassign-to EMAIL gives them to someone)"
        );
    }
}

async fn offboard_cmd(
    app: &App,
    opts: ProvOpts,
    email: &str,
    reassign_to: Option<&str>,
    json: bool,
) -> Result<ExitCode, Failure> {
    use accessrail_engine::offboard;
    let c = app.resolve(opts.conn.connection.as_deref()).await?;
    if !opts.dry_run {
        accessrail_engine::provision::ensure_enabled(&c)?;
    }
    let actor = crate::provisioning::cli_actor();
    let rails = accessrail_engine::provision::Rails::new(opts.max_deactivations, opts.force);
    let plan = offboard::plan(app, &c, email, reassign_to, &rails, &actor).await?;
    let i = &plan.impact;
    if !json {
        println!(
            "Offboarding {} (TestRail account {}, {}){}:",
            i.email,
            i.account_id,
            if i.is_active { "active" } else { "inactive" },
            if opts.dry_run {
                " (dry run: nothing will be changed)"
            } else {
                ""
            }
        );
        print_work(i, &plan.steps, reassign_to.is_some());
        crate::provisioning::print_plan(&plan.deactivate, opts.dry_run, false);
    }
    let cautions: Vec<String> = plan
        .deactivate
        .steps
        .iter()
        .filter(|s| !s.is_noop())
        .filter_map(|s| s.caution.map(|c| format!("{}: {}", s.target, c.message())))
        .collect();
    if opts.dry_run {
        if json {
            print_json(&json!({ "dry_run": true, "plan": plan }));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !opts.force && !cautions.is_empty() {
        return Err(Failure::Usage(format!(
            "not applied, nothing was changed:\n  {}\nRead the plan, then pass --force to confirm.",
            cautions.join("\n  ")
        )));
    }
    let report = offboard::apply(app, &c, &plan, &actor).await?;
    if json {
        print_json(&json!({ "dry_run": false, "plan": plan, "result": report }));
    } else {
        for (target, outcome, audit) in &report.steps {
            println!("  {outcome}: {target} (audit #{audit})");
        }
        match &report.deactivation {
            Some(r) => println!(
                "Deactivation: {} done, {} no-op, {} failed.",
                r.done, r.noop, r.failed
            ),
            None => println!("Not deactivated: a reassignment failed (see above); run it again."),
        }
    }
    let failed = report.steps.iter().any(|s| s.1 == "failed")
        || report.deactivation.as_ref().is_some_and(|r| r.failed > 0);
    Ok(if failed {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
