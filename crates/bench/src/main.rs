//! `accessrail-bench`: the simulator as its own process with 50,000 users and 1,000 groups; a
//! full scan into a fresh SQLite store, then a rescan. Prints requests (and the minimum), wall
//! time, users per second, this process's CPU time and peak memory, and the rows the rescan
//! wrote. Run it with `scripts/bench.sh` (release build).

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accessrail_engine::connector::ClientOptions;
use accessrail_engine::scan::{self, Quiet, ScanOutcome};
use accessrail_engine::secrets::Keyring;
use accessrail_engine::{ApiKey, ConnectRequest, Engine, SystemClock, Target};
use accessrail_store::SqliteStore;
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
    println!("  users / groups      {} / {}", o.users, o.groups);
    println!("  wall time           {:.2} s", wall.as_secs_f64());
    println!(
        "  users per second    {:.0}",
        o.users as f64 / wall.as_secs_f64().max(1e-9)
    );
    println!(
        "  CPU time (this process) {:.3} s ({:.3} s per 10,000 users)",
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

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = SqliteStore::open(&dir.path().join("accessrail.db"))
        .await
        .map_err(|e| e.to_string())?;
    let keyring = Keyring::load(dir.path()).map_err(|e| e.to_string())?;
    let engine = Engine::new(
        store,
        keyring,
        dir.path().to_path_buf(),
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
    report(
        "full scan into a fresh SQLite store",
        &first,
        served1,
        wall1,
        cpu1,
    );

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
        "peak memory (this process, max RSS) {:.1} MB",
        peak_rss_mb()
    );
    let ok = first.requests == first.minimum_requests && second.account_rows_written == 0;
    println!(
        "targets: requests = minimum: {}; rescan writes no account rows: {}; peak memory under 100 MB: {}",
        first.requests == first.minimum_requests,
        second.account_rows_written == 0,
        peak_rss_mb() < 100.0
    );
    let _ = child.kill().await;
    if ok {
        Ok(())
    } else {
        Err("a target was missed".into())
    }
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
