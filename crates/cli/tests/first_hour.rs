//! What a new admin trips on in the first hour, through the `accessrail` binary against the
//! simulator over real HTTP: global options anywhere, nothing created by a command that cannot
//! run, tables that fit the terminal, one time format, plan and audit naming the same calls,
//! helpful errors, and the demo's data directory after the demo.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;

use common::{Out, env};
use serde_json::Value;

async fn run_with(dir: &Path, args: &[&str], set: &[(&str, &str)], unset: &[&str]) -> Out {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_accessrail"));
    cmd.args(args)
        .env("ACCESSRAIL_DATA_DIR", dir)
        .env_remove("ACCESSRAIL_MASTER_KEY")
        .env_remove("ACCESSRAIL_MASTER_KEY_FILE")
        .env_remove("COLUMNS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in set {
        cmd.env(k, v);
    }
    for k in unset {
        cmd.env_remove(k);
    }
    let out = cmd.output().await.unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_cannot_run_creates_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("fresh");
    for args in [
        vec!["users"],
        vec!["scan"],
        vec!["summary", "--json"],
        vec!["audit"],
    ] {
        let out = run_with(&dir, &args, &[], &[]).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("nothing here yet") && out.stderr.contains("accessrail connect"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(
            !dir.exists(),
            "{args:?} created {} ({:?})",
            dir.display(),
            std::fs::read_dir(&dir).map(|d| d.count())
        );
    }
    // Listing connections answers "none" without creating anything either.
    let out = run_with(&dir, &["connections", "--json"], &[], &[]).await;
    assert_eq!((out.code, out.stdout.trim()), (0, "[]"), "{}", out.stderr);
    assert!(!dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_options_anywhere_tables_fit_and_times_say_utc() {
    let e = env(40, 4).await;
    e.connect().await;
    e.scan().await;
    // `--connection` before the subcommand, as people type it, and after it.
    for args in [
        vec!["--connection", "acme", "users", "--json"],
        vec!["users", "--connection", "acme", "--json"],
    ] {
        let out = e.run(&args).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert_eq!(out.json().as_array().unwrap().len(), 41);
    }
    let out = e.run(&["--connection", "nope", "users"]).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    let out = e.run(&["--connection", "acme", "tokens", "list"]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--connection does not apply"),
        "{}",
        out.stderr
    );

    // Tables fit the width asked for, cutting long values with an ellipsis; --json keeps them.
    for cmd in ["groups", "users", "scans"] {
        let out = run_with(e.data(), &[cmd], &[("COLUMNS", "80")], &[]).await;
        assert_eq!(out.code, 0, "{cmd}: {}", out.stderr);
        for line in out.stdout.lines() {
            assert!(
                line.chars().count() <= 80,
                "{cmd}: a line of {} characters: {line}",
                line.chars().count()
            );
        }
        if cmd == "groups" {
            assert!(out.stdout.contains('…'), "{}", out.stdout);
        }
    }
    let groups = e.run(&["groups", "--json"]).await.json();
    assert!(
        groups
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g.to_string().len() > 80),
        "full values in --json"
    );
    // Times: UTC on screen, RFC 3339 in every --json.
    let scans = run_with(e.data(), &["scans"], &[], &[]).await;
    assert!(scans.stdout.contains(" UTC"), "{}", scans.stdout);
    let summary = e.run(&["summary", "--json"]).await.json();
    let at = summary["last_scan_at"].as_str().expect("RFC 3339 text");
    assert!(at.ends_with('Z') && at.contains('T'), "{at}");
    let scans = e.run(&["scans", "--json"]).await.json();
    assert!(scans[0]["started_at"].as_str().unwrap().ends_with('Z'));
    // Scans are numbered per connection without gaps, whatever the revision ids: a
    // provisioning revision between two scans leaves a gap in the ids only.
    let e2 = e.run(&["provisioning", "enable"]).await;
    assert_eq!(e2.code, 0, "{}", e2.stderr);
    let someone = e.users(&[]).await[3]["email"].as_str().unwrap().to_string();
    let out = e
        .run(&["provision", "deactivate", "--email", &someone])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    e.scan().await;
    let scans = e.run(&["scans", "--json"]).await.json();
    let mut numbered: Vec<(i64, i64)> = scans
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_i64().unwrap(), s["number"].as_i64().unwrap()))
        .collect();
    numbered.sort_unstable();
    assert_eq!(
        numbered.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        vec![1, 2],
        "{numbered:?}"
    );
    assert!(
        numbered[1].0 > 2,
        "the ids have the provisioning revision's gap: {numbered:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_and_audit_name_the_same_calls_and_errors_help() {
    let e = env(30, 4).await;
    e.provisioned().await;
    let snap = e.sim().snapshot();
    let target = snap
        .users
        .values()
        .find(|u| u.is_active && !u.is_admin && u.id != 1)
        .unwrap()
        .clone();
    // Typed in upper case with spaces: the plan names the account as TestRail has it.
    let typed = format!("  {}  ", target.email.to_uppercase());
    let plan = e
        .prov(&["deactivate", "--email", &typed, "--dry-run", "--json"])
        .await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let plan = plan.json();
    let step = &plan["plan"]["steps"][0];
    assert_eq!(step["target"], target.email.as_str(), "{plan}");
    let planned: Vec<String> = step["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    // Applied by a process without USER: the audit still names the OS account.
    let out = run_with(
        e.data(),
        &["provision", "deactivate", "--email", &typed, "--json"],
        &[],
        &["USER", "USERNAME"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let audit = e.run(&["audit", "--json"]).await.json();
    let done = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["outcome"] == "done" && a["target"] == target.email.as_str())
        .unwrap_or_else(|| panic!("{audit}"));
    let recorded: Vec<String> = done["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(recorded, planned, "the plan and the audit entry");
    let actor = done["actor"].as_str().unwrap();
    assert!(
        actor.starts_with("cli:") && !actor.starts_with("cli:unknown@"),
        "{actor}"
    );
    // Deactivating Accessrail's own account (or an administrator) needs --force: without it
    // the plan is shown with its caution and nothing is sent.
    let updates = || {
        e.sim()
            .stats()
            .by_method
            .get("update_user")
            .copied()
            .unwrap_or(0)
    };
    let before = updates();
    let out = e.prov(&["deactivate", "--email", common::ADMIN]).await;
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("locks Accessrail out") && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    assert!(e.user(common::ADMIN).is_active);
    assert_eq!(updates(), before, "nothing sent");
    // The audit table has a column for TestRail's calls.
    let table = e.run(&["audit"]).await;
    assert!(
        table.stdout.contains("TestRail calls") && table.stdout.contains(&planned[1]),
        "{}",
        table.stdout
    );

    // An unknown group or role lists the close names.
    let group = snap.groups.values().next().unwrap().name.clone();
    let almost = &group[..group.len() - 1];
    let out = e
        .prov(&[
            "add-to-group",
            "--email",
            &target.email,
            "--group",
            almost,
            "--dry-run",
        ])
        .await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("did you mean") && out.stderr.contains(&group),
        "{}",
        out.stderr
    );
    let out = e
        .prov(&[
            "set-role",
            "--email",
            &target.email,
            "--role",
            "Testr",
            "--dry-run",
        ])
        .await;
    assert!(
        out.stderr.contains("did you mean: Tester"),
        "{}",
        out.stderr
    );

    // The same TestRail under a second name is refused.
    let key_file = e.data().join("key.txt");
    std::fs::write(&key_file, common::KEY).unwrap();
    let base = e.server.base_url();
    let out = run_with(
        e.data(),
        &[
            "connect",
            "--base-url",
            &base,
            "--email",
            common::ADMIN,
            "--api-key-file",
            key_file.to_str().unwrap(),
            "--name",
            "twin",
        ],
        &[],
        &[],
    )
    .await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("already points at"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    // An address without a scheme is taken as https; when that fails, the Test says so.
    let addr = e
        .server
        .base_url()
        .trim_start_matches("http://")
        .to_string();
    let out = run_with(
        e.data(),
        &[
            "connect",
            "--base-url",
            &addr,
            "--email",
            common::ADMIN,
            "--api-key-file",
            key_file.to_str().unwrap(),
            "--name",
            "noscheme",
            "--json",
        ],
        &[("ACCESSRAIL_RETRY_ATTEMPTS", "1")],
        &[],
    )
    .await;
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("has no scheme, so https:// was assumed"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_at_a_scan_take_every_filter_and_show_groups_and_matches() {
    let e = env(30, 4).await;
    e.connect().await;
    let first = e.scan().await;
    let snap = e.sim().snapshot();
    let (gid, group) = snap
        .groups
        .iter()
        .find(|(_, g)| g.user_ids.len() >= 2)
        .map(|(id, g)| (*id, g.clone()))
        .unwrap();
    // Membership changes after the first scan: the old answer must come from that scan.
    let leaving = group.user_ids[0];
    e.sim().with_instance(|inst| {
        let keep: Vec<u64> = group.user_ids[1..].to_vec();
        inst.set_group_members(gid, &keep);
    });
    e.scan().await;
    let scan1 = first["scan_id"].to_string();
    let then = e
        .users(&["--at-scan", &scan1, "--group", &group.name])
        .await;
    let ids: Vec<u64> = then.iter().map(|u| u["id"].as_u64().unwrap()).collect();
    let mut members = group.user_ids.clone();
    members.sort_unstable();
    assert_eq!(ids, members, "members at scan 1");
    assert!(then.iter().all(|u| {
        u["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == group.name.as_str())
    }));
    let now = e.users(&["--group", &group.name]).await;
    assert!(now.iter().all(|u| u["id"] != leaving));
    // Matches at that scan: nobody is known yet, so every account is unmatched then.
    let all_then = e.users(&["--at-scan", &scan1]).await;
    let expected: Vec<&Value> = all_then
        .iter()
        .filter(|u| u["match"] == "unmatched")
        .collect();
    let unmatched = e.users(&["--at-scan", &scan1, "--unmatched"]).await;
    assert!(expected.len() >= 25, "{}", expected.len());
    assert_eq!(unmatched.iter().collect::<Vec<_>>(), expected);
    assert!(
        e.users(&["--at-scan", &scan1, "--ambiguous"])
            .await
            .is_empty()
    );
    let role = then[0]["role"].as_str().unwrap().to_string();
    let by_role = e.users(&["--at-scan", &scan1, "--role", &role]).await;
    assert!(!by_role.is_empty() && by_role.iter().all(|u| u["role"] == role.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_points_at_the_next_step_and_its_directory_stays_usable() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("demo");
    let d = dir.to_str().unwrap();
    let out = run_with(
        &dir,
        &["--data-dir", d, "demo", "--no-serve", "--users", "40"],
        &[],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for want in [
        "== Administrators",
        "admin@acme.example",
        "provision deactivate --email",
        "--dry-run",
        "demo --resume",
        "users",
    ] {
        assert!(out.stdout.contains(want), "{want}: {}", out.stdout);
    }
    // Offline: what reads Accessrail's records works; a scan says the demo's TestRail is gone
    // and how to bring it back.
    assert_eq!(run_with(&dir, &["users"], &[], &[]).await.code, 0);
    let scan = run_with(&dir, &["scan"], &[("ACCESSRAIL_RETRY_ATTEMPTS", "1")], &[]).await;
    assert_ne!(scan.code, 0);
    assert!(
        scan.stderr.contains("demo --resume") && scan.stderr.contains(d),
        "{}",
        scan.stderr
    );
    // Resumed: the demo's TestRail is back at its address, as Accessrail last saw it.
    let mut resumed = tokio::process::Command::new(env!("CARGO_BIN_EXE_accessrail"))
        .args(["demo", "--resume", d, "--no-serve"])
        .env_remove("ACCESSRAIL_MASTER_KEY")
        .env_remove("ACCESSRAIL_MASTER_KEY_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut scanned: Option<Value> = None;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let out = run_with(
            &dir,
            &["scan", "--json"],
            &[("ACCESSRAIL_RETRY_ATTEMPTS", "1")],
            &[],
        )
        .await;
        if out.code == 0 {
            scanned = Some(out.json());
            break;
        }
    }
    let scanned = scanned.expect("a scan against the resumed demo");
    assert_eq!(
        scanned["changes"], 0,
        "nothing changed since the demo: {scanned}"
    );
    resumed.start_kill().unwrap();
    let _ = resumed.wait().await;
}
