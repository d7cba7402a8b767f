//! `testrail-sim`: run the TestRail simulator as its own process.

use std::io::Write as _;
use std::net::SocketAddr;

use std::sync::Arc;

use clap::Parser;
use testrail_sim::{Edition, SeedConfig, Settings, Sim, SimServer, SystemClock, Version};

/// A simulated TestRail instance (API v2: users, roles, groups, projects and, with `--results`,
/// suites, cases, runs, plans, tests and results).
///
/// The first line on stdout is the base URL (`http://127.0.0.1:PORT`).
#[derive(Debug, Parser)]
#[command(name = "testrail-sim", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8095")]
    listen: SocketAddr,
    /// Email of the seeded administrator.
    #[arg(long, default_value = "admin@example.com")]
    admin_email: String,
    /// API key of the seeded administrator.
    #[arg(
        long,
        default_value = "sim-admin-key",
        env = "TESTRAIL_SIM_ADMIN_KEY",
        hide_env_values = true
    )]
    admin_key: String,
    /// Seeded users, not counting the administrator.
    #[arg(long, default_value_t = 25)]
    users: u32,
    /// Seeded groups.
    #[arg(long, default_value_t = 4)]
    groups: u32,
    /// Seeded projects [default: one per 25 users, 4 to 40].
    #[arg(long)]
    projects: Option<u32>,
    /// Seeded test results (0: no artefacts). With N > 0 the simulator also seeds suites, cases,
    /// runs, plans and tests with a realistic spread of activity, and a `ci-bot@...` account.
    #[arg(long, default_value_t = 0)]
    results: u32,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// professional or enterprise.
    #[arg(long, default_value = "professional")]
    edition: Edition,
    /// The TestRail version to behave as (gates methods and fields).
    #[arg(long, default_value_t = Version::LATEST)]
    testrail_version: Version,
    /// Requests per minute for the whole instance (0: off).
    #[arg(long, default_value_t = 0)]
    rate_limit: u32,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let seed = SeedConfig {
        users: args.users,
        groups: args.groups,
        seed: args.seed,
        admin_email: args.admin_email,
        admin_key: args.admin_key,
        ..SeedConfig::default()
    };
    let settings = Settings {
        edition: args.edition,
        testrail_version: args.testrail_version,
        rate_limit_per_minute: (args.rate_limit > 0).then_some(args.rate_limit),
        ..Settings::default()
    };
    let projects = args
        .projects
        .unwrap_or_else(|| testrail_sim::seed::default_project_count(&seed));
    let started = std::time::Instant::now();
    let sim = Sim::with_artefacts(
        seed,
        args.projects,
        args.results,
        settings,
        Arc::new(SystemClock),
    );
    let seeded_in = started.elapsed();
    let server = match SimServer::start(args.listen, sim.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("testrail-sim: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", server.base_url());
    let _ = out.flush();
    drop(out);
    let artefacts = if args.results > 0 {
        let inst = sim.snapshot();
        format!(
            ", {} runs, {} plans and {} results (seeded in {} ms)",
            inst.artefacts.runs.len(),
            inst.artefacts.plans.len(),
            inst.artefacts.results.len(),
            seeded_in.as_millis()
        )
    } else {
        String::new()
    };
    eprintln!(
        "testrail-sim: TestRail {} {:?} with {} users, {} groups and {} projects{artefacts}; control API at {}/__sim/",
        args.testrail_version,
        args.edition,
        args.users + 1 + u32::from(args.results > 0),
        args.groups,
        projects,
        server.base_url()
    );
    tokio::select! {
        _ = server.wait() => {}
        _ = shutdown_signal() => {}
    }
    std::process::ExitCode::SUCCESS
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
