//! `accessrail demo`: the whole job against a built-in TestRail simulator and an embedded
//! SQLite store. Needs nothing installed.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use accessrail_domain::is_forgotten_placeholder;
use accessrail_engine::report::{self, UserFilter};
use accessrail_engine::{ApiKey, ConnectRequest, Target};
use testrail_sim::{SeedConfig, Settings, Sim, SimServer};

use crate::cli::DemoArgs;
use crate::commands::{import_identities, open_app, print_summary, scan_with_progress};
use crate::output::{Failure, fail};

const ADMIN_EMAIL: &str = "admin@acme.example";
const DEPARTMENTS: [&str; 5] = ["QA", "Engineering", "Mobile", "Support", "Data"];

/// An identity file for the simulated company: most people, one of them a leaver, one known
/// under a different primary address, and a few TestRail accounts nobody knows.
fn sample_identities(sim: &Sim) -> String {
    let inst = sim.snapshot();
    let mut csv = String::from("id,name,email,other_emails,status,department\n");
    let people: Vec<_> = inst
        .users
        .values()
        .filter(|u| u.id != 1 && !is_forgotten_placeholder(&u.email))
        .collect();
    let mut leaver_done = false;
    for (n, u) in people.iter().enumerate() {
        if n % 17 == 5 {
            continue; // an account no identity claims: shows up as unmatched
        }
        let dept = DEPARTMENTS[n % DEPARTMENTS.len()];
        let (email, other) = if n == 3 {
            // Known under a new primary address; the TestRail email is an alias.
            (format!("renamed.{}", u.email), u.email.clone())
        } else {
            (u.email.clone(), String::new())
        };
        let status = if !leaver_done && u.is_active && n > 6 {
            leaver_done = true;
            "leaver"
        } else {
            "active"
        };
        let _ = writeln!(
            csv,
            "E{:04},\"{}\",{email},{other},{status},{dept}",
            n + 1,
            u.name.replace('"', "'")
        );
    }
    let _ = writeln!(csv, "E9999,Pat Admin,{ADMIN_EMAIL},,active,IT");
    csv
}

pub async fn run(
    args: &DemoArgs,
    data_dir: Option<PathBuf>,
    json: bool,
) -> Result<ExitCode, Failure> {
    let dir = match data_dir {
        Some(d) => d,
        None => tempfile::Builder::new()
            .prefix("accessrail-demo-")
            .tempdir()
            .map_err(|e| {
                fail(
                    "data_dir",
                    format!("cannot create a temporary directory: {e}"),
                )
            })?
            // Kept after the demo so its data can be explored.
            .keep(),
    };
    let key = "demo-admin-key-0f3a9c";
    let sim = Sim::new(
        SeedConfig {
            users: args.users,
            groups: 6,
            seed: 2026,
            admin_email: ADMIN_EMAIL.into(),
            admin_key: key.into(),
            admin_name: "Pat Admin".into(),
            email_domain: "acme.example".into(),
        },
        Settings::default(),
    );
    let server = SimServer::start(([127, 0, 0, 1], 0).into(), sim.clone())
        .await
        .map_err(|e| fail("demo", format!("cannot start the TestRail simulator: {e}")))?;
    let say = |s: &str| {
        if !json {
            println!("{s}");
        }
    };
    say(&format!(
        "== Accessrail demo\nA simulated TestRail ({} people, 6 groups) is running at {}; the data directory is {}.\n",
        args.users + 1,
        server.base_url(),
        dir.display()
    ));
    // The demo is the embedded default: SQLite in its own data directory.
    let app = open_app(&dir, None, false, true).await?;

    say("== Connect: Test, then Save");
    let (report, saved) = app
        .connect(ConnectRequest {
            scan_interval_secs: None,
            target: Target::BaseUrl(server.base_url()),
            email: ADMIN_EMAIL.into(),
            key: ApiKey::new(key).ok_or_else(|| fail("demo", "empty key"))?,
            name: Some("demo".into()),
            replace: true,
            request_budget: None,
        })
        .await?;
    if !json {
        crate::commands::print_test(&report, false);
    }
    let Some(conn) = saved else {
        return Err(fail("demo", "the demo connection did not pass its test"));
    };
    // The demo's TestRail is a simulator: provisioning is on so every console page can be tried.
    accessrail_store::Store::set_provisioning(app.store(), &conn.id, true).await?;

    say("\n== Scan");
    let outcome = scan_with_progress(&app, Some(&conn.name), json).await?;
    say(&format!(
        "Scan {}: {} users ({} active seats), {} groups, {} roles in {} requests (minimum {}) in {:.2}s.",
        outcome.scan_id,
        outcome.users,
        outcome.active_seats,
        outcome.groups,
        outcome.roles,
        outcome.requests,
        outcome.minimum_requests,
        outcome.seconds
    ));

    say("\n== Import identities (sample HR export)");
    let file = dir.join("identities-sample.csv");
    std::fs::write(&file, sample_identities(&sim))
        .map_err(|e| fail("demo", format!("cannot write {}: {e}", file.display())))?;
    if json {
        // Keep stdout one JSON document: the summary below.
        let bytes = std::fs::read(&file).map_err(|e| fail("demo", e.to_string()))?;
        let parsed = accessrail_engine::identities::parse(
            &bytes,
            accessrail_engine::identities::Format::Csv,
        )
        .map_err(|e| fail("demo", format!("{e:?}")))?;
        accessrail_store::Store::import_identities(app.store(), parsed, true, app.now()).await?;
    } else {
        import_identities(&app, &file, false, false).await?;
    }

    let summary = report::summary(&app, &conn).await?;
    if json {
        crate::output::print_json(&serde_json::json!({ "scan": outcome, "summary": summary }));
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    print_summary(&summary, false);

    let unmatched = report::filtered_users(
        &app,
        &conn,
        &UserFilter {
            unmatched: true,
            ..UserFilter::default()
        },
    )
    .await?;
    println!("\n== Accounts that match nobody ({})", unmatched.len());
    for u in unmatched.iter().take(10) {
        println!(
            "  #{:<4} {:<28} {:<40} {}",
            u.id,
            u.name.clone().unwrap_or_default(),
            u.email.clone().unwrap_or_default(),
            if u.is_active { "active" } else { "inactive" }
        );
    }
    let all = report::users(&app, &conn).await?;
    let leavers: Vec<_> = all
        .iter()
        .filter(|u| u.is_leaver() && u.is_active)
        .collect();
    println!(
        "\n== Leavers who still hold an active TestRail seat ({})",
        leavers.len()
    );
    for u in &leavers {
        println!(
            "  #{:<4} {:<28} {:<40} role {}",
            u.id,
            u.name.clone().unwrap_or_default(),
            u.email.clone().unwrap_or_default(),
            u.role.clone().unwrap_or_default()
        );
    }
    println!("\nTestRail has no last-login data, so Accessrail shows none.");
    println!(
        "Explore further with: accessrail --data-dir {} users | groups | roles | scans | changes",
        dir.display()
    );
    if args.no_serve {
        server.shutdown().await;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "\n== Console\nServing the console on the demo data; the simulated TestRail keeps running at {}.",
        server.base_url()
    );
    let code = crate::commands::serve_app(
        app,
        args.listen,
        true,
        6.0,
        600,
        accessrail_web::ServeConfig::default(),
        false,
    )
    .await;
    server.shutdown().await;
    code
}
