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
const ADMIN_KEY: &str = "demo-admin-key-0f3a9c";
/// In a demo's data directory: where its simulated TestRail listened and how it was seeded, so
/// `demo --resume DIR` can bring it back at the same address.
pub const MARKER: &str = "demo.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct Marker {
    port: u16,
    users: u32,
}

fn seed(users: u32) -> SeedConfig {
    SeedConfig {
        users,
        groups: 6,
        seed: 2026,
        admin_email: ADMIN_EMAIL.into(),
        admin_key: ADMIN_KEY.into(),
        admin_name: "Pat Admin".into(),
        email_domain: "acme.example".into(),
    }
}

/// How to run `accessrail` the way this process was started: the name on the PATH when that
/// is this binary, `cargo run` from a build tree, or the full path.
pub fn invocation() -> String {
    let Ok(me) = std::env::current_exe() else {
        return "accessrail".into();
    };
    let me = std::fs::canonicalize(&me).unwrap_or(me);
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .any(|d| std::fs::canonicalize(d.join("accessrail")).is_ok_and(|p| p == me))
    });
    if on_path {
        return "accessrail".into();
    }
    let in_target = me.components().any(|c| c.as_os_str() == "target");
    if in_target {
        "cargo run -q -p accessrail --".into()
    } else {
        me.display().to_string()
    }
}

/// A path as a shell word (quoted when it needs to be).
fn shell_word(p: &std::path::Path) -> String {
    let s = p.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
const DEPARTMENTS: [&str; 5] = ["QA", "Engineering", "Mobile", "Support", "Data"];

/// An identity file for the simulated company: most people, one of them a leaver, one known
/// under a different primary address, and a few TestRail accounts nobody knows.
fn sample_identities(sim: &Sim) -> String {
    let inst = sim.snapshot();
    let mut csv = String::from("id,name,email,other_emails,status,department,manager_email\n");
    // Each department's first person heads it (reporting to the admin); the rest report to
    // their head: the managers who review their people's access.
    let mut heads: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
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
        let manager = match heads.get(dept) {
            Some(head) => head.clone(),
            None => {
                heads.insert(dept, email.clone());
                ADMIN_EMAIL.to_string()
            }
        };
        let _ = writeln!(
            csv,
            "E{:04},\"{}\",{email},{other},{status},{dept},{manager}",
            n + 1,
            u.name.replace('"', "'")
        );
    }
    let _ = writeln!(csv, "E9999,Pat Admin,{ADMIN_EMAIL},,active,IT,");
    csv
}

pub async fn run(
    args: &DemoArgs,
    data_dir: Option<PathBuf>,
    json: bool,
) -> Result<ExitCode, Failure> {
    if let Some(dir) = &args.resume {
        return resume(args, dir).await;
    }
    let fresh_temp = data_dir.is_none();
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
    let key = ADMIN_KEY;
    let sim = Sim::new(seed(args.users), Settings::default());
    let server = SimServer::start(([127, 0, 0, 1], 0).into(), sim.clone())
        .await
        .map_err(|e| fail("demo", format!("cannot start the TestRail simulator: {e}")))?;
    let port = server.addr().port();
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
    let marker = serde_json::to_string(&Marker {
        port,
        users: args.users,
    })
    .unwrap_or_default();
    std::fs::write(dir.join(MARKER), marker).map_err(|e| {
        fail(
            "demo",
            format!("cannot write {}: {e}", dir.join(MARKER).display()),
        )
    })?;

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
    let admins: Vec<_> = all
        .iter()
        .filter(|u| u.is_admin == Some(true) && u.is_active)
        .collect();
    println!("\n== Administrators ({})", admins.len());
    for u in &admins {
        println!(
            "  #{:<4} {:<28} {}",
            u.id,
            u.name.clone().unwrap_or_default(),
            u.email.clone().unwrap_or_default()
        );
    }
    // Projects: the most restricted first (the fewest active accounts can reach them).
    let facts = accessrail_engine::access::AccessFacts::load(&app, &conn, None).await?;
    let mut projects = facts.projects();
    projects.sort_by_key(|p| (p.active_with_access.unwrap_or(u64::MAX), p.id));
    println!(
        "\n== Projects ({}), the fewest people first",
        projects.len()
    );
    for p in projects.iter().take(5) {
        println!(
            "  #{:<4} {:<28} default {:<12} {} active account(s) can reach it{}",
            p.id,
            p.name,
            p.default_role.clone().unwrap_or_else(|| "-".into()),
            p.active_with_access
                .map_or("unknown".to_string(), |n| n.to_string()),
            if p.is_completed { " (completed)" } else { "" }
        );
    }
    println!("\nTestRail has no last-login data, so Accessrail shows none.");
    let me = invocation();
    let d = shell_word(&dir);
    println!("\n== Next");
    if let Some(u) = leavers.first() {
        println!(
            "Deactivate the leaver's seat (see the plan first, then run it without --dry-run):\n  {me} --data-dir {d} provision deactivate --email {} --dry-run",
            u.email.clone().unwrap_or_default()
        );
    }
    if let Some(u) = unmatched.iter().find(|u| u.is_active) {
        println!(
            "Find out who owns an account that matches nobody, then pin it to a person:\n  {me} --data-dir {d} match set {} IDENTITY-ID",
            u.email.clone().unwrap_or_default()
        );
    }
    if let Some(p) = projects.first() {
        println!(
            "See who can reach a project, and why (the source of each role):\n  {me} --data-dir {d} access --project {}",
            p.id
        );
    }
    println!(
        "Certify who has access: start a review (each person's manager from the identity file reviews them; the rest go to you), then close it through a plan:\n  {me} --data-dir {d} reviews start --fallback-reviewer you@example.com"
    );
    println!(
        "Explore the data:\n  {me} --data-dir {d} users    (also: groups, roles, projects, scans, changes, summary, audit, reviews)"
    );
    if args.no_serve {
        server.shutdown().await;
        print_after(&me, &d, fresh_temp);
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
    print_after(&me, &d, fresh_temp);
    code
}

/// What the kept data directory is good for once the demo's simulated TestRail is gone.
fn print_after(me: &str, dir: &str, fresh_temp: bool) {
    println!(
        "\n== After the demo\nThe demo's data stays in {dir}. Without its simulated TestRail, what reads Accessrail's own\nrecords works (users, groups, roles, scans, changes, summary, audit, identities); what talks to\nTestRail (scan, test, provision, flows run) needs it back:\n  {me} demo --resume {dir}"
    );
    if fresh_temp {
        println!(
            "Each demo run makes a new directory like this one; remove it when done:\n  rm -r {dir}"
        );
    }
}

/// `demo --resume DIR`: the simulated TestRail of an earlier demo, back at the same address,
/// holding what Accessrail last saw of it (so a scan finds no changes that nobody made), and
/// the console again unless `--no-serve`. Runs until Ctrl-C.
async fn resume(args: &DemoArgs, dir: &std::path::Path) -> Result<ExitCode, Failure> {
    let marker_path = dir.join(MARKER);
    let marker: Marker = std::fs::read_to_string(&marker_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| {
            Failure::Usage(format!(
                "{} is not a demo's data directory (it has no {MARKER}); run `accessrail demo` first",
                dir.display()
            ))
        })?;
    let app = open_app(dir, None, false, true).await?;
    let conn = app.resolve(Some("demo")).await?;
    let sim = Sim::new(seed(marker.users), Settings::default());
    // What Accessrail last saw: each account's active state, role and groups.
    let seen = report::users(&app, &conn).await?;
    sim.with_instance(|inst| {
        for u in &seen {
            let Some(email) = u.email.as_deref() else {
                continue;
            };
            let id = match inst.user_by_email(email).map(|x| x.id) {
                Some(id) => id,
                None => {
                    let Some(template) = inst.users.values().next().cloned() else {
                        continue;
                    };
                    inst.insert_user(testrail_sim::User {
                        name: u.name.clone().unwrap_or_default(),
                        email: email.to_string(),
                        is_admin: false,
                        group_ids: Default::default(),
                        ..template
                    })
                }
            };
            if let Some(user) = inst.users.get_mut(&id) {
                user.is_active = u.is_active;
                if let Some(r) = u.role_id {
                    user.role_id = r;
                }
            }
            let groups: std::collections::BTreeSet<u64> = u.group_ids.iter().copied().collect();
            inst.set_user_groups(id, &groups);
        }
    });
    // And each project's access as last seen (a project role set during the demo included).
    let projects = accessrail_store::Store::projects(app.store(), &conn.id, None).await?;
    sim.with_instance(|inst| {
        for p in &projects {
            let Some(sp) = inst.projects.get_mut(&p.id) else {
                continue;
            };
            sp.is_completed = p.is_completed;
            if let Some(a) = &p.access {
                if let Some(d) = &a.default {
                    sp.default_role_id = d.role_id;
                }
                sp.group_roles = a.groups.iter().map(|g| (g.id, g.role_id)).collect();
                if let Some(users) = &a.users {
                    sp.user_roles = users.iter().map(|g| (g.id, g.role_id)).collect();
                }
            }
        }
    });
    let server = SimServer::start(([127, 0, 0, 1], marker.port).into(), sim)
        .await
        .map_err(|e| {
            fail(
                "demo",
                format!(
                    "cannot bring the demo's TestRail back at 127.0.0.1:{}: {e} (is the demo still running?)",
                    marker.port
                ),
            )
        })?;
    let me = invocation();
    let d = shell_word(dir);
    println!(
        "== Accessrail demo, resumed\nThe demo's simulated TestRail is back at {} with what Accessrail last saw of it.\nIn another terminal, every command works on it, e.g.\n  {me} --data-dir {d} scan\nCtrl-C stops it.",
        server.base_url()
    );
    let code = if args.no_serve {
        let signal = crate::commands::stop_signal().await;
        println!("\nStopped ({signal}).");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\n== Console");
        crate::commands::serve_app(
            app,
            args.listen,
            true,
            6.0,
            600,
            accessrail_web::ServeConfig::default(),
            false,
        )
        .await
    };
    server.shutdown().await;
    code
}
