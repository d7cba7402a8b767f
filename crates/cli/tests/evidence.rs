//! Activity evidence end to end, through the `accessrail` binary against the simulator with
//! seeded artefacts over real HTTP: each account's latest evidence equals what a plain walk of
//! every artefact gives, a second scan reads only what is new (requests counted and equal to
//! what it needed), idle accounts and the seat figures follow from the same evidence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Env, KEY};
use serde_json::Value;
use testrail_sim::artefacts::NewResult;
use testrail_sim::{SeedConfig, Settings, Sim, SimServer};

const DAY: i64 = 86_400;

async fn env_with_artefacts(users: u32, projects: u32, results: u32) -> Env {
    let sim = Sim::with_artefacts(
        SeedConfig {
            users,
            groups: 3,
            seed: 9,
            admin_key: KEY.into(),
            ..SeedConfig::default()
        },
        Some(projects),
        results,
        Settings::default(),
        Arc::new(testrail_sim::clock::SystemClock),
    );
    let server = SimServer::start("127.0.0.1:0".parse().unwrap(), sim)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    Env { server, dir }
}

/// The latest evidence per user from a plain walk of every artefact, from `from` on.
fn plain_walk(e: &Env, from: i64) -> BTreeMap<u64, i64> {
    let inst = e.sim().snapshot();
    let a = &inst.artefacts;
    let mut latest: BTreeMap<u64, i64> = BTreeMap::new();
    let mut note = |user: u64, at: i64| {
        if user > 0 && at >= from {
            let t = latest.entry(user).or_insert(at);
            *t = (*t).max(at);
        }
    };
    for r in &a.results {
        note(r.created_by, r.created_on);
    }
    for r in &a.runs {
        note(r.created_by, r.created_on);
    }
    for p in &a.plans {
        note(p.created_by, p.created_on);
    }
    for c in &a.cases {
        note(c.created_by, c.created_on);
        note(c.updated_by, c.updated_on);
    }
    latest
}

async fn ok(e: &Env, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = e.run(&all).await;
    assert_eq!(out.code, 0, "{args:?}: {}\n{}", out.stdout, out.stderr);
    out.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_equals_a_plain_walk_and_a_rescan_reads_only_what_is_new() {
    let e = env_with_artefacts(60, 5, 4000).await;
    e.connect().await;
    e.scan().await;
    // Before any evidence scan, --idle-for says what is missing.
    let out = e.run(&["users", "--idle-for", "90d"]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("evidence scan"), "{}", out.stderr);

    let first = ok(&e, &["evidence", "scan", "--reach", "800d"]).await;
    assert_eq!(first["requests"], first["estimate"], "{first:#}");
    assert!(first["evidence_new"].as_u64().unwrap() > 0);
    let from = first["read_from"].as_i64().unwrap();
    let expected = plain_walk(&e, from);
    let users = ok(&e, &["users"]).await;
    let mut checked = 0;
    for u in users.as_array().unwrap() {
        let id = u["id"].as_u64().unwrap();
        match expected.get(&id) {
            Some(at) => {
                let shown = u["last_evidence_at"].as_str().unwrap();
                let t = time::OffsetDateTime::parse(
                    shown,
                    &time::format_description::well_known::Rfc3339,
                )
                .unwrap()
                .unix_timestamp();
                assert_eq!(t, *at, "account {id}: {u:#}");
                assert!(u["last_evidence"].as_str().unwrap().contains(", "), "{u:#}");
                checked += 1;
            }
            None => assert!(u["last_evidence_at"].is_null(), "account {id}: {u:#}"),
        }
    }
    assert!(checked > 10, "people with evidence: {checked}");
    // The automation account adds most results and is flagged.
    let bot = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| {
            u["email"]
                .as_str()
                .is_some_and(|m| m.starts_with("ci-bot@"))
        })
        .unwrap();
    assert_eq!(bot["automation"], true, "{bot:#}");

    // Idle accounts: active ones whose latest evidence is older than 90 days (or none).
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let idle = ok(&e, &["users", "--idle-for", "90d"]).await;
    let idle_ids: Vec<u64> = idle
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = users
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["is_active"] == true)
        .map(|u| u["id"].as_u64().unwrap())
        .filter(|id| expected.get(id).is_none_or(|at| *at < now - 90 * DAY))
        .collect();
    assert_eq!(idle_ids, want);
    assert!(!idle_ids.is_empty());
    let seats = ok(&e, &["seats", "--seat-price", "40", "--billing-day", "1"]).await;
    assert_eq!(
        seats["without_evidence_90_days"],
        want.len() as u64,
        "{seats:#}"
    );
    let active = users
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["is_active"] == true)
        .count() as u64;
    assert_eq!(seats["active_seats"], active);
    assert!(seats["billing_period_end"].as_i64().unwrap() > now);

    // New work in one open run; the next scan reads from the last one (less an hour).
    let (run, test, someone) = e.sim().with_instance(|inst| {
        let run = inst
            .artefacts
            .runs
            .iter()
            .find(|r| !r.is_completed)
            .cloned()
            .unwrap();
        let test = inst
            .artefacts
            .tests
            .iter()
            .find(|t| t.run_id == run.id)
            .map(|t| t.id)
            .unwrap();
        let someone = *idle_ids.last().unwrap();
        (run.id, test, someone)
    });
    e.sim().with_instance(|inst| {
        inst.artefacts
            .add_result(
                run,
                &NewResult {
                    test_id: test,
                    status_id: Some(1),
                    assignedto_id: None,
                    comment: None,
                },
                someone,
                now,
            )
            .unwrap();
    });
    let before = e
        .sim()
        .stats()
        .by_method
        .get("get_results_for_run")
        .copied()
        .unwrap_or(0);
    let second = ok(&e, &["evidence", "scan"]).await;
    assert_eq!(second["requests"], second["estimate"], "{second:#}");
    assert_eq!(second["evidence_new"], 1, "only the new result: {second:#}");
    assert!(
        second["evidence_read"].as_u64().unwrap() < first["evidence_read"].as_u64().unwrap() / 10,
        "a rescan reads what is new (and the overlap), not everything again: {second:#}"
    );
    let results_requests = e
        .sim()
        .stats()
        .by_method
        .get("get_results_for_run")
        .copied()
        .unwrap_or(0)
        - before;
    assert_eq!(
        results_requests,
        second["runs_read"].as_u64().unwrap(),
        "one page per run read: every run's new results fit in one page"
    );
    let after = ok(&e, &["users"]).await;
    let u = after
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == someone)
        .unwrap();
    assert_eq!(u["last_evidence_kind"], "result");
    assert!(
        u["last_evidence"]
            .as_str()
            .unwrap()
            .starts_with(&format!("result in run {run}"))
    );
    let idle_now = ok(&e, &["users", "--idle-for", "90d"]).await;
    assert!(
        !idle_now
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == someone),
        "no longer idle"
    );
    let runs = ok(&e, &["evidence", "runs"]).await;
    assert_eq!(runs.as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_rule_plans_deactivations_through_the_rails() {
    let e = env_with_artefacts(40, 4, 2000).await;
    e.connect().await;
    e.scan().await;
    let rules = e.data().join("flows.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"idle-90\"\nwhen = \"idle\"\ndays = 90\naction = \"deactivate\"\n",
    )
    .unwrap();
    let out = e.run(&["flows", "set", rules.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // No evidence yet: the rule plans nothing (nobody is idle for want of evidence).
    let plan = ok(&e, &["flows", "run", "--dry-run"]).await;
    assert_eq!(plan["plan"]["steps"], serde_json::json!([]), "{plan:#}");

    ok(&e, &["evidence", "scan", "--reach", "800d"]).await;
    let idle = ok(&e, &["users", "--idle-for", "90d"]).await;
    let idle_emails: Vec<String> = idle
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_string())
        .collect();
    let protected = idle_emails
        .iter()
        .find(|m| m.as_str() != common::ADMIN)
        .unwrap()
        .clone();
    let out = e
        .run(&[
            "protect",
            "add",
            &protected,
            "--owner",
            "qa",
            "--reason",
            "shared test login",
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan = ok(
        &e,
        &["flows", "run", "--dry-run", "--max-deactivations", "1000"],
    )
    .await;
    let planned: Vec<String> = plan["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["target"].as_str().unwrap().to_lowercase())
        .collect();
    let skipped = plan["plan"]["skipped"].as_array().unwrap();
    let skipped_for = |m: &str| {
        skipped
            .iter()
            .find(|s| s["target"].as_str().unwrap().eq_ignore_ascii_case(m))
            .map(|s| s["reason"].as_str().unwrap().to_string())
    };
    assert!(!planned.contains(&protected.to_lowercase()));
    assert!(skipped_for(&protected).unwrap().contains("protected"));
    for m in &idle_emails {
        let u = e.user(m);
        if u.is_admin || m == &protected {
            assert!(!planned.contains(&m.to_lowercase()), "{m} is never planned");
            assert!(skipped_for(m).is_some(), "{m} is skipped with a reason");
        } else {
            assert!(planned.contains(&m.to_lowercase()), "{m} is idle: {plan:#}");
        }
    }
    // Without a raised cap, more deactivations than the cap are refused whole.
    if planned.len() > 10 {
        let out = e.run(&["flows", "run", "--dry-run"]).await;
        assert_ne!(out.code, 0);
        assert!(out.stderr.contains("more than the cap"), "{}", out.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_impact_lists_what_is_still_theirs() {
    let e = env_with_artefacts(40, 4, 2000).await;
    e.connect().await;
    // The person with the most open work, by a plain walk of the artefacts.
    let inst = e.sim().snapshot();
    let a = &inst.artefacts;
    let open_runs: Vec<&testrail_sim::artefacts::Run> =
        a.runs.iter().filter(|r| !r.is_completed).collect();
    let open_ids: Vec<u64> = open_runs.iter().map(|r| r.id).collect();
    let mut score: BTreeMap<u64, usize> = BTreeMap::new();
    for t in a.tests.iter().filter(|t| open_ids.contains(&t.run_id)) {
        if let (Some(u), true) = (t.assignedto_id, matches!(t.status_id, 3 | 4)) {
            *score.entry(u).or_default() += 1;
        }
    }
    let (&uid, _) = score.iter().max_by_key(|(_, n)| **n).unwrap();
    let email = inst.users[&uid].email.clone();
    let want_tests: Vec<u64> = a
        .tests
        .iter()
        .filter(|t| {
            open_ids.contains(&t.run_id)
                && t.assignedto_id == Some(uid)
                && matches!(t.status_id, 3 | 4)
        })
        .map(|t| t.id)
        .collect();
    let want_runs: Vec<u64> = open_runs
        .iter()
        .filter(|r| r.assignedto_id == Some(uid))
        .map(|r| r.id)
        .collect();
    let want_created = a.cases.iter().filter(|c| c.created_by == uid).count() as u64;
    let want_updated = a.cases.iter().filter(|c| c.updated_by == uid).count() as u64;

    let out = e.run(&["offboard", "--email", &email]).await;
    assert_ne!(out.code, 0, "provisioning is off: {}", out.stdout);
    assert!(out.stderr.contains("provisioning is off"), "{}", out.stderr);
    let updates = e.stat("update_user");
    let dry = ok(&e, &["offboard", "--email", &email, "--dry-run"]).await;
    let i = &dry["plan"]["impact"];
    let mut got_tests: Vec<u64> = i["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    got_tests.sort_unstable();
    let mut want_tests = want_tests;
    want_tests.sort_unstable();
    assert_eq!(got_tests, want_tests);
    assert!(!got_tests.is_empty());
    let mut got_runs: Vec<u64> = i["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    got_runs.sort_unstable();
    let mut want_runs = want_runs;
    want_runs.sort_unstable();
    assert_eq!(got_runs, want_runs);
    assert_eq!(i["cases_created"], want_created);
    assert_eq!(i["cases_last_updated"], want_updated);
    assert_eq!(e.stat("update_user"), updates, "nothing was changed");
    let out = e
        .run(&["offboard", "--email", "nobody@nowhere.example", "--dry-run"])
        .await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("no TestRail account"), "{}", out.stderr);

    // With a successor: one plan reassigns the runs and tests, then deactivates; read back
    // and audited.
    let out = e.run(&["provisioning", "enable"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let successor = inst
        .users
        .values()
        .find(|u| u.is_active && !u.is_admin && u.id != uid && u.email.contains('@'))
        .unwrap()
        .clone();
    let out = ok(
        &e,
        &[
            "offboard",
            "--email",
            &email,
            "--reassign-to",
            &successor.email,
            "--force",
        ],
    )
    .await;
    assert_eq!(out["result"]["deactivation"]["done"], 1, "{out:#}");
    let now = e.sim().snapshot();
    assert!(!now.users[&uid].is_active);
    for t in now
        .artefacts
        .tests
        .iter()
        .filter(|t| want_tests.contains(&t.id))
    {
        assert_eq!(t.assignedto_id, Some(successor.id), "test {}", t.id);
    }
    for r in now
        .artefacts
        .runs
        .iter()
        .filter(|r| want_runs.contains(&r.id))
    {
        assert_eq!(r.assignedto_id, Some(successor.id), "run {}", r.id);
    }
    let audit = ok(&e, &["audit"]).await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["outcome"] == "done")
        .map(|x| x["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"reassign_tests"), "{actions:?}");
    assert!(actions.contains(&"deactivate"));
    let verify = ok(&e, &["audit", "verify"]).await;
    assert_eq!(verify["ok"], true);
}

/// The accounts with the most untested or retest tests assigned to them in open runs, most
/// first (active, not administrators), with those tests and their open runs.
fn people_with_work(e: &Env) -> Vec<(u64, String, Vec<u64>, Vec<u64>)> {
    let inst = e.sim().snapshot();
    let a = &inst.artefacts;
    let open: Vec<u64> = a
        .runs
        .iter()
        .filter(|r| !r.is_completed)
        .map(|r| r.id)
        .collect();
    let mut out: Vec<(u64, String, Vec<u64>, Vec<u64>)> = inst
        .users
        .values()
        .filter(|u| u.is_active && !u.is_admin && u.email.contains('@'))
        .map(|u| {
            let tests: Vec<u64> = a
                .tests
                .iter()
                .filter(|t| {
                    open.contains(&t.run_id)
                        && t.assignedto_id == Some(u.id)
                        && matches!(t.status_id, 3 | 4)
                })
                .map(|t| t.id)
                .collect();
            let runs: Vec<u64> = a
                .runs
                .iter()
                .filter(|r| !r.is_completed && r.assignedto_id == Some(u.id))
                .map(|r| r.id)
                .collect();
            (u.id, u.email.clone(), tests, runs)
        })
        .filter(|p| !p.2.is_empty())
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.2.len()));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaver_rule_hands_work_to_the_manager_before_deactivating() {
    let e = env_with_artefacts(40, 4, 2000).await;
    e.connect().await;
    e.scan().await;
    let people = people_with_work(&e);
    assert!(people.len() >= 3, "the seed gives several people open work");
    let (ana_id, ana, ana_tests, ana_runs) = people[0].clone();
    let (cy_id, cy, _, _) = people[1].clone();
    let (boss_id, boss, _, _) = people[2].clone();
    // Ana leaves and reports to the boss; Cy leaves with no manager known.
    let csv = format!(
        "id,name,email,other_emails,status,manager_email\n\
         p-ana,Ana,{ana},,leaver,{boss}\n\
         p-cy,Cy,{cy},,leaver,\n\
         p-boss,Boss,{boss},,active,\n"
    );
    let file = e.data().join("people.csv");
    std::fs::write(&file, csv).unwrap();
    let out = e
        .run(&["identities", "import", file.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rules = e.data().join("flows.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"leavers\"\nwhen = \"leaver\"\naction = \"deactivate\"\nreassign_to = \"manager\"\n",
    )
    .unwrap();
    let out = e.run(&["flows", "set", rules.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // A rule that hands work to nobody sensible is refused when stored.
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"x\"\nwhen = \"idle\"\ndays = 30\naction = \"deactivate\"\nreassign_to = \"manager\"\n",
    )
    .unwrap();
    let out = e.run(&["flows", "set", rules.to_str().unwrap()]).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("reassign_to"), "{}", out.stderr);

    // The dry run: Ana's work goes to the boss; Cy's deactivation is held back (work and no
    // manager); nothing changes.
    let updates = (
        e.stat("update_user"),
        e.stat("add_results"),
        e.stat("update_run"),
    );
    let dry = ok(&e, &["flows", "run", "--dry-run"]).await;
    let handovers = dry["handovers"].as_array().unwrap();
    let h_ana = handovers
        .iter()
        .find(|h| h["email"] == ana.as_str())
        .unwrap();
    assert_eq!(h_ana["reassignment"]["reassign_to"][0], boss_id);
    assert_eq!(h_ana["hold"], Value::Null);
    let planned_tests: usize = h_ana["reassignment"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["test_ids"].as_array().unwrap().len())
        .sum();
    assert_eq!(planned_tests, ana_tests.len());
    let h_cy = handovers
        .iter()
        .find(|h| h["email"] == cy.as_str())
        .unwrap();
    assert!(
        h_cy["hold"].as_str().unwrap().contains("no manager_email"),
        "{h_cy:#}"
    );
    let skipped = dry["plan"]["skipped"].as_array().unwrap();
    assert!(
        skipped
            .iter()
            .any(|s| s["target"].as_str().unwrap().eq_ignore_ascii_case(&cy))
    );
    let steps: Vec<&str> = dry["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["target"].as_str().unwrap())
        .collect();
    assert!(
        steps.iter().any(|t| t.eq_ignore_ascii_case(&ana)),
        "{steps:?}"
    );
    assert_eq!(
        (
            e.stat("update_user"),
            e.stat("add_results"),
            e.stat("update_run")
        ),
        updates,
        "a dry run changes nothing"
    );

    // A hand-over that fails in TestRail keeps Ana active: a partial run (exit 3).
    let out = e.run(&["provisioning", "enable"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    e.sim().set_faults(testrail_sim::Faults {
        error_rate: 1.0,
        methods: vec!["add_results".into()],
        ..testrail_sim::Faults::default()
    });
    let out = e.run(&["flows", "run", "--json"]).await;
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let failed = out.json();
    assert_eq!(failed["result"]["done"], 0, "{failed:#}");
    assert!(e.sim().snapshot().users[&ana_id].is_active);
    assert!(
        failed["plan"]["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["target"].as_str().unwrap().eq_ignore_ascii_case(&ana)
                && s["reason"]
                    .as_str()
                    .unwrap()
                    .contains("handing its open work over failed")),
        "{failed:#}"
    );
    e.sim().set_faults(testrail_sim::Faults::default());

    // Applied: Ana's runs and tests read as the boss's, then Ana is deactivated; Cy stays.
    let run = ok(&e, &["flows", "run"]).await;
    assert_eq!(run["result"]["done"], 1, "{run:#}");
    let now = e.sim().snapshot();
    assert!(!now.users[&ana_id].is_active);
    assert!(now.users[&cy_id].is_active, "held back");
    for t in now
        .artefacts
        .tests
        .iter()
        .filter(|t| ana_tests.contains(&t.id))
    {
        assert_eq!(t.assignedto_id, Some(boss_id), "test {}", t.id);
    }
    for r in now
        .artefacts
        .runs
        .iter()
        .filter(|r| ana_runs.contains(&r.id))
    {
        assert_eq!(r.assignedto_id, Some(boss_id), "run {}", r.id);
    }
    // Audited under the rule's name, before and after each step.
    let audit = ok(&e, &["audit"]).await;
    let by_rule: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["actor"] == "flow:leavers")
        .map(|x| {
            (
                x["action"].as_str().unwrap(),
                x["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        by_rule.contains(&("reassign_tests", "started")),
        "{by_rule:?}"
    );
    assert!(by_rule.contains(&("reassign_tests", "done")), "{by_rule:?}");
    assert!(by_rule.contains(&("deactivate", "done")), "{by_rule:?}");
    assert_eq!(ok(&e, &["audit", "verify"]).await["ok"], true);
    // Run again: nothing left to hand over or deactivate for Ana; Cy is still held back.
    let again = ok(&e, &["flows", "run"]).await;
    assert_eq!(again["result"]["done"], 0, "{again:#}");
    assert!(e.sim().snapshot().users[&cy_id].is_active);
}

/// The evidence scans of the data directory, oldest first.
async fn evidence_runs(e: &Env) -> Vec<Value> {
    ok(e, &["evidence", "runs"])
        .await
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_evidence_scan_at_a_time_and_a_killed_one_moves_no_watermark() {
    use std::time::{Duration, Instant};
    let e = env_with_artefacts(40, 4, 2000).await;
    e.connect().await;
    e.scan().await;
    // Slow enough that a second process meets the first one running.
    e.sim().set_faults(testrail_sim::Faults {
        latency_ms: 150,
        ..testrail_sim::Faults::default()
    });
    let ttl = 3;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_accessrail"))
        .args(["evidence", "scan", "--reach", "800d"])
        .env("ACCESSRAIL_DATA_DIR", e.data())
        .env("ACCESSRAIL_LEASE_TTL_SECS", ttl.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !evidence_runs(&e)
        .await
        .iter()
        .any(|r| r["status"] == "running")
    {
        assert!(start.elapsed() < Duration::from_secs(60), "no scan began");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past a lease renewal: a second process is refused, and reads nothing.
    tokio::time::sleep(Duration::from_secs(ttl + 1)).await;
    let busy = e.run(&["evidence", "scan"]).await;
    assert_ne!(busy.code, 0, "{}", busy.stdout);
    assert!(busy.stderr.contains("already running"), "{}", busy.stderr);
    assert_eq!(
        evidence_runs(&e).await.len(),
        1,
        "the refused scan left no record"
    );
    // kill -9 mid-scan: the next scan starts once the lease lapses; the killed one is recorded
    // as failed and its watermark never counted.
    let pid = child.id().unwrap();
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let _ = child.wait().await;
    e.sim().set_faults(testrail_sim::Faults::default());
    let killed = Instant::now();
    let good = loop {
        let out = e.run(&["evidence", "scan", "--json"]).await;
        if out.code == 0 {
            break out.json();
        }
        assert!(out.stderr.contains("already running"), "{}", out.stderr);
        assert!(
            killed.elapsed() < Duration::from_secs(ttl + 10),
            "still busy {:?} after kill -9",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let runs = evidence_runs(&e).await;
    let statuses: Vec<&str> = runs.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["failed", "succeeded"], "{runs:#?}");
    assert!(
        runs[0]["error"].as_str().unwrap().contains("interrupted"),
        "{runs:#?}"
    );
    // What was kept is still each piece once: the evidence equals a plain walk of what the
    // good scan covered.
    let want = plain_walk(&e, good["read_from"].as_i64().unwrap());
    let users = ok(&e, &["users"]).await;
    let mut checked = 0;
    for u in users.as_array().unwrap() {
        let id = u["id"].as_u64().unwrap();
        if let Some(at) = want.get(&id) {
            let got = time::OffsetDateTime::parse(
                u["last_evidence_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
            .unix_timestamp();
            assert_eq!(got, *at, "user {id}");
            checked += 1;
        }
    }
    assert!(checked > 10, "people with evidence: {checked}");
}
