//! `accessrail-bench`: the simulator as its own process with 50,000 users and 1,000 groups; a
//! full scan into a fresh SQLite store, then a rescan. Prints requests (and the minimum), wall
//! time, users per second, this process's CPU time and peak memory, and the rows the rescan
//! wrote. Then an identity import (100,000 rows by default, by the `accessrail` binary: time and
//! memory), and the service
//! in this process on port 0: p50/p99 latency of the API's accounts listing and of the
//! console's users page over a mix of filters, sorts and pages, of the groups pages, and of the
//! projects API and pages (the access rule over every account). Run it
//! with `scripts/bench.sh` (release build).

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accessrail_engine::connector::ClientOptions;
use accessrail_engine::scan::{self, Quiet, ScanOutcome};
use accessrail_engine::secrets::Keyring;
use accessrail_engine::{ApiKey, ConnectRequest, Engine, SystemClock, Target};
use accessrail_store::{AnyStore, SqliteStore, StoreLocation};
use clap::Parser;
use nix::sys::resource::{UsageWho, getrusage};
use tokio::io::AsyncBufReadExt as _;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 50_000)]
    users: u32,
    #[arg(long, default_value_t = 1_000)]
    groups: u32,
    /// The simulator binary (default: next to this one).
    #[arg(long, env = "TESTRAIL_SIM_BIN")]
    sim: Option<PathBuf>,
    /// Rows in the identity import (the first ones carry the accounts' emails).
    #[arg(long, default_value_t = 100_000)]
    identities: usize,
    /// Requests per listing query (after two to warm up).
    #[arg(long, default_value_t = 15)]
    repeat: usize,
    /// Print each listing query's own p50/p99.
    #[arg(long)]
    verbose: bool,
    /// Keep the database in this (new) directory instead of a temporary one.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// The `accessrail` binary that runs the identity import (default: next to this one).
    #[arg(long, env = "ACCESSRAIL_BIN")]
    cli: Option<PathBuf>,
    /// A Python interpreter with the `testrail-api` package: runs `scripts/python_baseline.py`
    /// against the same simulator after the scans, the figure a scan's wall time must beat.
    #[arg(long, env = "ACCESSRAIL_BENCH_PYTHON")]
    python: Option<PathBuf>,
    /// The store: a PostgreSQL URL (an empty database) instead of a fresh SQLite file.
    #[arg(long, env = "ACCESSRAIL_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Only the scans (for profiling): no identity import, no listing latency.
    #[arg(long)]
    scan_only: bool,
}

const KEY: &str = "bench-admin-key";

fn cpu() -> Duration {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::new(t.tv_sec() as u64, (t.tv_usec() * 1000) as u32)
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

fn peak_rss_mb() -> f64 {
    // ru_maxrss is in KiB on Linux.
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| u.max_rss() as f64 / 1024.0)
}

async fn sim_requests(http: &reqwest::Client, base: &str) -> Result<u64, String> {
    let body = http
        .get(format!("{base}/__sim/stats"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(v["requests_total"].as_u64().unwrap_or(0))
}

fn report(label: &str, o: &ScanOutcome, served: u64, wall: Duration, cpu: Duration) {
    println!("{label}");
    println!(
        "  requests            {} (simulator served {served}; minimum {})",
        o.requests, o.minimum_requests
    );
    println!(
        "  users / groups / projects  {} / {} / {} (project access {})",
        o.users, o.groups, o.projects, o.project_access
    );
    println!("  wall time           {:.2} s", wall.as_secs_f64());
    println!(
        "  users per second    {:.0}",
        o.users as f64 / wall.as_secs_f64().max(1e-9)
    );
    println!(
        "  CPU time (this process; a PostgreSQL server's own is not counted) {:.3} s ({:.3} s per 10,000 users)",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 10_000.0 / (o.users.max(1) as f64)
    );
    println!(
        "  rows written        {} (account rows {}), changes {}",
        o.rows_written, o.account_rows_written, o.changes
    );
}

async fn run(args: Args) -> Result<(), String> {
    let sim_bin = match args.sim {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("testrail-sim"),
    };
    let mut child = tokio::process::Command::new(&sim_bin)
        .args(["--listen", "127.0.0.1:0", "--seed", "1", "--admin-key", KEY])
        .args([
            "--users",
            &args.users.to_string(),
            "--groups",
            &args.groups.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {}: {e} (build it: cargo build --release -p testrail-sim)",
                sim_bin.display()
            )
        })?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let base = tokio::io::BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the simulator printed nothing")?;
    println!(
        "simulator: {base} ({} users + admin, {} groups), separate process",
        args.users, args.groups
    );

    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir_path = match &args.keep {
        Some(p) => {
            std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
            p.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let store: AnyStore = match &args.database_url {
        Some(url) => {
            let location = StoreLocation::parse(url).map_err(|e| e.to_string())?;
            println!("store: {}", location.describe());
            AnyStore::open(&location).await.map_err(|e| e.to_string())?
        }
        None => SqliteStore::open(&dir_path.join("accessrail.db"))
            .await
            .map_err(|e| e.to_string())?
            .into(),
    };
    let keyring = Keyring::load(&dir_path).map_err(|e| e.to_string())?;
    let engine = Engine::new(
        store,
        keyring,
        dir_path.clone(),
        ClientOptions::default(),
        Arc::new(SystemClock),
    );
    let (test, saved) = engine
        .connect(ConnectRequest {
            scan_interval_secs: None,
            target: Target::BaseUrl(base.clone()),
            email: "admin@example.com".into(),
            key: ApiKey::new(KEY).ok_or("empty key")?,
            name: Some("bench".into()),
            replace: false,
            request_budget: Some(0),
        })
        .await
        .map_err(|e| e.to_string())?;
    if saved.is_none() {
        return Err(format!("connection test failed: {test:?}"));
    }
    let http = reqwest::Client::new();

    let before_req = sim_requests(&http, &base).await?;
    let (c0, t0) = (cpu(), Instant::now());
    let first = scan::scan(&engine, Some("bench"), Arc::new(Quiet))
        .await
        .map_err(|e| e.to_string())?;
    let (wall1, cpu1) = (t0.elapsed(), cpu() - c0);
    let served1 = sim_requests(&http, &base).await? - before_req;
    report("full scan into a fresh store", &first, served1, wall1, cpu1);

    let before_req = sim_requests(&http, &base).await?;
    let (c0, t0) = (cpu(), Instant::now());
    let second = scan::scan(&engine, Some("bench"), Arc::new(Quiet))
        .await
        .map_err(|e| e.to_string())?;
    let (wall2, cpu2) = (t0.elapsed(), cpu() - c0);
    let served2 = sim_requests(&http, &base).await? - before_req;
    report(
        "rescan, nothing changed upstream",
        &second,
        served2,
        wall2,
        cpu2,
    );

    println!(
        "peak memory after the scans (this process, max RSS) {:.1} MB",
        peak_rss_mb()
    );
    let scan_peak = peak_rss_mb();

    let engine = Arc::new(engine);
    if !args.scan_only {
        let cli = match &args.cli {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| e.to_string())?
                .with_file_name("accessrail"),
        };
        import_identities(
            &engine,
            &cli,
            &dir_path,
            args.database_url.as_deref(),
            args.identities,
        )
        .await?;
        if let Some(python) = &args.python {
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../scripts/python_baseline.py");
            let out = tokio::process::Command::new(python)
                .arg(&script)
                .args([base.as_str(), "admin@example.com", KEY])
                .arg(dir_path.join("python-baseline.db"))
                .output()
                .await
                .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
            if out.status.success() {
                print!("{}", String::from_utf8_lossy(&out.stdout));
            } else {
                println!(
                    "python baseline failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }

        listing_latency(engine.clone(), args.repeat, args.verbose).await?;
        review_cost(&engine).await?;
        evidence_cost(&engine, &sim_bin, &http).await?;
    }

    let ok = first.requests == first.minimum_requests && second.account_rows_written == 0;
    println!(
        "targets: requests = minimum: {}; rescan writes no account rows: {}; scan peak memory under 64 MB: {} ({scan_peak:.1} MB)",
        first.requests == first.minimum_requests,
        second.account_rows_written == 0,
        scan_peak < 64.0
    );
    let _ = child.kill().await;
    if ok {
        Ok(())
    } else {
        Err("a target was missed".into())
    }
}

type App = Engine<AnyStore>;

/// The evidence scan against its own simulator: 2,000 users, 50 projects and 200,000 results
/// (seeded artefacts), the first scan (180 days back) and a rescan with nothing new.
async fn evidence_cost(
    engine: &App,
    sim_bin: &std::path::Path,
    http: &reqwest::Client,
) -> Result<(), String> {
    let mut child = tokio::process::Command::new(sim_bin)
        .args(["--listen", "127.0.0.1:0", "--seed", "2", "--admin-key", KEY])
        .args([
            "--users",
            "2000",
            "--groups",
            "40",
            "--projects",
            "50",
            "--results",
            "200000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", sim_bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let base = tokio::io::BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the simulator printed nothing")?;
    let (_, saved) = engine
        .connect(ConnectRequest {
            scan_interval_secs: None,
            target: Target::BaseUrl(base.clone()),
            email: "admin@example.com".into(),
            key: ApiKey::new(KEY).ok_or("empty key")?,
            name: Some("evidence".into()),
            replace: false,
            request_budget: Some(0),
        })
        .await
        .map_err(|e| e.to_string())?;
    let conn = saved.ok_or("the evidence connection did not pass its test")?;
    println!(
        "activity evidence (simulator: 2,000 users, 50 projects, 200,000 results, separate process)"
    );
    for label in ["first evidence scan (180 days back)", "rescan, nothing new"] {
        let before = sim_requests(http, &base).await?;
        let (c0, t0) = (cpu(), Instant::now());
        let o = accessrail_engine::evidence::scan(engine, &conn, None)
            .await
            .map_err(|e| e.to_string())?;
        let (wall, cpu_used) = (t0.elapsed(), cpu() - c0);
        let served = sim_requests(http, &base).await? - before;
        println!(
            "  {label}: {} requests (simulator served {served}; needed at least {}), {} runs read, {} pieces of evidence ({} new), {:.2} s wall, {:.2} s CPU",
            o.requests,
            o.estimate,
            o.runs_read,
            o.evidence_read,
            o.evidence_new,
            wall.as_secs_f64(),
            cpu_used.as_secs_f64()
        );
    }
    let _ = child.kill().await;
    Ok(())
}

/// An access review of every active account: starting it (the snapshot with project access,
/// routing, one transaction), one reviewer's page of items (the fallback reviews everyone the
/// bench's identities name no manager for: the worst case), keeping everything in one
/// transaction, and the CSV export.
async fn review_cost(engine: &App) -> Result<(), String> {
    use accessrail_domain::review::{Scope, Undecided};
    use accessrail_engine::reviews::{self, Actor, StartOptions};
    let conn = engine
        .resolve(Some("bench"))
        .await
        .map_err(|e| e.to_string())?;
    let admin = Actor::Admin {
        actor: "bench".into(),
    };
    let before = peak_rss_mb();
    let (c0, t0) = (cpu(), Instant::now());
    let v = reviews::start(
        engine,
        &conn,
        StartOptions {
            scope: Scope::Active,
            fallbacks: vec!["audit@bench.example".into()],
            due_at: None,
            undecided: Undecided::Keep,
            every: None,
        },
        "bench",
    )
    .await
    .map_err(|e| e.to_string())?;
    let (start_wall, start_cpu) = (t0.elapsed(), cpu() - c0);
    let t1 = Instant::now();
    let d = reviews::show_page(
        engine,
        v.id,
        Some("audit@bench.example"),
        &reviews::ItemFilter {
            decided: Some(false),
            offset: 20_000,
            limit: 50,
        },
        &admin,
    )
    .await
    .map_err(|e| e.to_string())?;
    let show_wall = t1.elapsed();
    let mine = Actor::Reviewer {
        actor: "bench-reviewer".into(),
        email: accessrail_domain::EmailKey::parse("audit@bench.example").ok_or("email")?,
    };
    let t2 = Instant::now();
    let kept = reviews::keep_undecided(engine, v.id, None, &mine)
        .await
        .map_err(|e| e.to_string())?;
    let keep_wall = t2.elapsed();
    let t3 = Instant::now();
    let e = reviews::evidence(engine, v.id, "csv", &admin)
        .await
        .map_err(|e| e.to_string())?;
    let csv = reviews::to_csv(&e).map_err(|e| e.to_string())?;
    let export_wall = t3.elapsed();
    println!("access review of every active account ({} items)", v.items);
    println!(
        "  start (snapshot, routing, one transaction)  {:.2} s wall, {:.2} s CPU",
        start_wall.as_secs_f64(),
        start_cpu.as_secs_f64()
    );
    println!(
        "  a page of 50 of one reviewer's {} undecided items (the console's page)  {:.0} ms",
        d.total,
        show_wall.as_secs_f64() * 1000.0
    );
    println!(
        "  keep all undecided ({kept})                   {:.2} s",
        keep_wall.as_secs_f64()
    );
    println!(
        "  CSV export ({:.1} MB)                        {:.2} s",
        csv.len() as f64 / 1e6,
        export_wall.as_secs_f64()
    );
    println!(
        "  peak memory (this process, max RSS) {:.1} MB before the review, {:.1} MB after",
        before,
        peak_rss_mb()
    );
    Ok(())
}

/// An identity file of `rows` rows (CSV, as an admin would export it), imported by the
/// `accessrail` binary as its own process (`identities import`, flows included), the way an
/// admin runs it: its wall time, CPU and peak memory are the import's alone.
async fn import_identities(
    engine: &App,
    cli: &std::path::Path,
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    rows: usize,
) -> Result<(), String> {
    use accessrail_store::Store as _;
    let conn = engine
        .resolve(Some("bench"))
        .await
        .map_err(|e| e.to_string())?;
    let accounts = engine
        .store()
        .current_accounts(&conn.id)
        .await
        .map_err(|e| e.to_string())?;
    // The accounts' own emails first (those that are addresses, once each), then new people.
    let mut seen = std::collections::HashSet::new();
    let emails: Vec<String> = accounts
        .iter()
        .filter_map(|a| a.email.clone())
        .filter(|e| e.contains('@') && !e.contains(',') && seen.insert(e.to_lowercase()))
        .collect();
    drop(accounts);
    let mut csv = String::from("id,name,email,other_emails,status\n");
    for i in 0..rows {
        let email = emails
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("person{i}@corp.example"));
        let status = if i % 40 == 7 { "leaver" } else { "active" };
        csv.push_str(&format!("e{i},Person {i},{email},,{status}\n"));
    }
    let file = data_dir.join("identities.csv");
    std::fs::write(&file, csv).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let mut command = tokio::process::Command::new(cli);
    if let Some(url) = database_url {
        command.env("ACCESSRAIL_DATABASE_URL", url);
    }
    let out = command
        .arg("--data-dir")
        .arg(data_dir)
        .args(["identities", "import", "--json"])
        .arg(&file)
        .output()
        .await
        .map_err(|e| {
            format!(
                "cannot run {}: {e} (build it: cargo build --release -p accessrail)",
                cli.display()
            )
        })?;
    let wall = t0.elapsed();
    if !out.status.success() {
        return Err(format!(
            "identities import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    // The import is the only child waited for so far (the simulator still runs; the Python
    // baseline runs after it).
    let (cpu, peak) = getrusage(UsageWho::RUSAGE_CHILDREN).map_or((Duration::ZERO, 0.0), |u| {
        let tv = |t: nix::sys::time::TimeVal| {
            Duration::new(t.tv_sec() as u64, (t.tv_usec() * 1000) as u32)
        };
        (
            tv(u.user_time()) + tv(u.system_time()),
            u.max_rss() as f64 / 1024.0,
        )
    });
    println!(
        "identity import ({rows} rows of CSV: `accessrail identities import`, its own process)"
    );
    println!(
        "  wall time           {:.2} s (CPU {:.2} s); added {}",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        summary["added"]
    );
    println!("  peak memory         {peak:.1} MB (the import process, max RSS)");
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn print_latency(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "  {label:<34} p50 {:>7.1} ms   p99 {:>7.1} ms   ({} requests)",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.len()
    );
}

/// The service in this process on port 0: API and console latencies over a mix of queries.
async fn listing_latency(engine: Arc<App>, repeat: usize, verbose: bool) -> Result<(), String> {
    use accessrail_store::Store as _;
    let conn = engine
        .resolve(Some("bench"))
        .await
        .map_err(|e| e.to_string())?;
    let groups = engine
        .store()
        .current_groups(&conn.id)
        .await
        .map_err(|e| e.to_string())?;
    let group = groups
        .iter()
        .max_by_key(|g| g.member_ids.len())
        .ok_or("no groups")?;
    let group_name = group.name.clone().unwrap_or_default();
    // A project for its pages (the projects list covers every project).
    let projects = engine
        .store()
        .projects(&conn.id, None)
        .await
        .map_err(|e| e.to_string())?;
    let project = projects.first().map(|p| p.id).ok_or("no projects")?;
    let total = engine
        .store()
        .account_counts(&conn.id)
        .await
        .map_err(|e| e.to_string())?
        .accounts;
    let token = accessrail_engine::tokens::generate();
    engine
        .store()
        .create_token(
            "bench",
            &accessrail_engine::tokens::hash(&token),
            engine.now(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let state = accessrail_web::AppState::open(
        engine.clone(),
        false,
        accessrail_engine::schedule::Schedule::default(),
        std::time::Duration::from_millis(500),
    )
    .await?;
    let app = accessrail_web::router(state, &accessrail_web::ServeConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .map_err(|e| e.to_string())?;
    // Sign in to the console.
    let login = http
        .get(format!("{base}/login"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let csrf = login
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .ok_or("no CSRF token on the sign-in page")?
        .to_string();
    http.post(format!("{base}/login"))
        .form(&[("token", token.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .map_err(|e| e.to_string())?;

    let deep = total.saturating_sub(100);
    let g = percent_encode(&group_name);
    let api: Vec<String> = [
        String::new(),
        "active=true".into(),
        "active=false".into(),
        "match=unmatched".into(),
        "match=matched".into(),
        "role=Tester".into(),
        format!("group={g}"),
        "sort=email".into(),
        "sort=name".into(),
        format!("sort=name&offset={deep}"),
        "leaver=true".into(),
        "admin=true".into(),
        "active=true&match=unmatched&sort=email".into(),
    ]
    .into_iter()
    .map(|q| format!("/api/v1/connections/bench/accounts?limit=50&{q}"))
    .collect();
    let api_q: Vec<String> = ["q=user1", "q=EXAMPLE.COM", "q=zz-no-such"]
        .iter()
        .map(|q| format!("/api/v1/connections/bench/accounts?limit=50&{q}"))
        .collect();
    let console: Vec<String> = [
        String::new(),
        "filter=unmatched".into(),
        "filter=leaver".into(),
        "filter=inactive".into(),
        "sort=email".into(),
        "sort=role".into(),
        format!("group={g}"),
        "role=Tester".into(),
        format!("page={}", total / 50 - 1),
        "q=user1".into(),
    ]
    .into_iter()
    .map(|q| format!("/users?{q}"))
    .collect();
    let groups_pages = vec!["/groups".to_string(), format!("/groups/{}", group.id)];
    let projects_api = vec![
        "/api/v1/connections/bench/projects".to_string(),
        format!("/api/v1/connections/bench/projects/{project}/access"),
        "/api/v1/connections/bench/accounts/2/projects".to_string(),
    ];
    let projects_pages = vec!["/projects".to_string(), format!("/projects/{project}")];

    let time = |paths: Vec<String>, bearer: bool| {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        async move {
            let mut samples = vec![];
            for p in &paths {
                for i in 0..repeat + 2 {
                    let mut req = http.get(format!("{base}{p}"));
                    if bearer {
                        req = req.bearer_auth(&token);
                    }
                    let t = Instant::now();
                    let resp = req.send().await.map_err(|e| e.to_string())?;
                    let status = resp.status();
                    let _ = resp.bytes().await.map_err(|e| e.to_string())?;
                    if !status.is_success() {
                        return Err(format!("{p}: HTTP {status}"));
                    }
                    if i >= 2 {
                        samples.push(t.elapsed());
                    }
                }
                if verbose {
                    print_latency(p, samples[samples.len() - repeat..].to_vec());
                }
            }
            Ok::<_, String>(samples)
        }
    };
    println!("listing latency at {total} accounts (service in this process, HTTP on loopback)");
    print_latency(
        "API accounts, 13 filters/sorts/pages",
        time(api, true).await?,
    );
    print_latency("API accounts, substring search q", time(api_q, true).await?);
    print_latency("console users page, 10 views", time(console, false).await?);
    print_latency(
        "console groups page and a group",
        time(groups_pages, false).await?,
    );
    // The first request after a revision loads the accounts and counts who reaches each
    // project (then kept until the next revision): timed on its own.
    let cold = Instant::now();
    let resp = http
        .get(format!("{base}/api/v1/connections/bench/projects"))
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let _ = resp.bytes().await.map_err(|e| e.to_string())?;
    println!(
        "  API projects, first request after a revision (loads and counts {} projects x {total} accounts): {:.0} ms",
        projects.len(),
        cold.elapsed().as_secs_f64() * 1000.0
    );
    print_latency(
        "API projects, a project's access, an account's",
        time(projects_api, true).await?,
    );
    print_latency(
        "console projects page and a project",
        time(projects_pages, false).await?,
    );
    Ok(())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("accessrail-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
