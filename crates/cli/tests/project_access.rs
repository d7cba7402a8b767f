//! Project access end to end, through the `accessrail` binary against the simulator over real
//! HTTP: effective access with each source (administrator, own project role, group roles, the
//! project default), history and change rows across scans, a project-role change planned,
//! applied, read back and audited, request counts at the stated minimum; on Enterprise,
//! Professional and TestRail 7.2.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Env, env_with};
use serde_json::Value;
use testrail_sim::model::{Edition, Settings, Version};

const TESTER: u64 = 3;
const DESIGNER: u64 = 2;
const LEAD: u64 = 1;
const READ_ONLY: u64 = 4;
const NO_ACCESS: u64 = 7;

/// The people and groups of the scenario (TestRail ids).
struct Cast {
    admin: u64,
    ana: String,
    bo: String,
    cy: String,
    dee: String,
    qa: u64,
    leads: u64,
    mobile: u64,
    payments: u64,
    legacy: u64,
}

/// Replaces the seeded projects with three known ones: Mobile (default Tester; QA: Designer,
/// Leads: Lead; Dee's own role Read-only), Payments (default No Access; Leads: their global
/// role) and Legacy (completed, default Read-only). Ana is in QA, Bo in QA and Leads, Cy and Dee
/// in no group.
fn stage(e: &Env) -> Cast {
    e.sim().with_instance(|inst| {
        let people: Vec<(u64, String)> = inst
            .users
            .values()
            .filter(|u| u.is_active && !u.is_admin && u.email.contains('@'))
            .map(|u| (u.id, u.email.clone()))
            .take(4)
            .collect();
        let ids: Vec<u64> = people.iter().map(|p| p.0).collect();
        for u in inst.users.values_mut() {
            if ids.contains(&u.id) {
                u.role_id = TESTER;
            }
        }
        let groups: Vec<u64> = inst.groups.keys().copied().collect();
        let (qa, leads) = (groups[0], groups[1]);
        for g in &groups {
            inst.set_group_members(*g, &[]);
        }
        inst.set_group_members(qa, &[ids[0], ids[1]]);
        inst.set_group_members(leads, &[ids[1]]);
        let template = inst
            .projects
            .values()
            .next()
            .cloned()
            .expect("a seeded project");
        inst.projects.clear();
        let mut make = |name: &str, default: u64, completed: bool| {
            let mut p = template.clone();
            p.name = name.into();
            p.default_role_id = default;
            p.is_completed = completed;
            p.completed_on = completed.then_some(1_700_000_000);
            p.user_roles.clear();
            p.group_roles.clear();
            inst.insert_project(p)
        };
        let mobile = make("Mobile", TESTER, false);
        let payments = make("Payments", NO_ACCESS, false);
        let legacy = make("Legacy", READ_ONLY, true);
        let m = inst.projects.get_mut(&mobile).unwrap();
        m.group_roles.insert(qa, DESIGNER);
        m.group_roles.insert(leads, LEAD);
        m.user_roles.insert(ids[3], READ_ONLY);
        inst.projects
            .get_mut(&payments)
            .unwrap()
            .group_roles
            .insert(leads, 0);
        Cast {
            admin: 1,
            ana: people[0].1.clone(),
            bo: people[1].1.clone(),
            cy: people[2].1.clone(),
            dee: people[3].1.clone(),
            qa,
            leads,
            mobile,
            payments,
            legacy,
        }
    })
}

fn settings(edition: Edition, version: Version) -> Settings {
    Settings {
        edition,
        testrail_version: version,
        ..Settings::default()
    }
}

async fn access_of(e: &Env, email: &str, extra: &[&str]) -> Value {
    let mut args = vec!["access", "--email", email, "--json"];
    args.extend_from_slice(extra);
    let out = e.run(&args).await;
    assert_eq!(out.code, 0, "access --email {email}: {}", out.stderr);
    out.json()
}

/// The row of `project` in an `access --email` answer.
fn row<'a>(v: &'a Value, project: &str) -> &'a Value {
    v["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["project"] == project)
        .unwrap_or_else(|| panic!("no row for {project}: {v}"))
}

fn method_count(e: &Env, method: &str) -> u64 {
    e.sim().stats().by_method.get(method).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enterprise_effective_access_history_and_a_planned_project_role_change() {
    let e = env_with(30, 3, settings(Edition::Enterprise, Version::LATEST)).await;
    let cast = stage(&e);
    e.connect().await;
    let before = e.sim().stats().requests_total;
    let first = e.scan().await;
    // Requests: exactly the stated minimum, ceil(P/250) + P of them for projects.
    let used = e.sim().stats().requests_total - before;
    assert_eq!(first["requests"], used, "{first}");
    assert_eq!(first["requests"], first["minimum_requests"], "{first}");
    assert_eq!(first["projects"], 3);
    assert_eq!(first["project_access"], "read");
    assert_eq!(method_count(&e, "get_projects"), 1);
    assert_eq!(method_count(&e, "get_project"), 3);
    let first_scan = first["scan_id"].as_i64().unwrap();

    // Each source decides in its turn, and is shown.
    let ana = access_of(&e, &cast.ana, &[]).await;
    let m = row(&ana, "Mobile");
    assert_eq!(
        (m["role"].as_str(), m["source"]["kind"].as_str()),
        (Some("Designer"), Some("group_role"))
    );
    assert_eq!(m["source"]["group_id"], cast.qa);
    assert_eq!(
        row(&ana, "Payments")["can_access"],
        false,
        "default No Access"
    );
    let l = row(&ana, "Legacy");
    assert_eq!(
        (l["role"].as_str(), l["source"]["kind"].as_str()),
        (Some("Read-only"), Some("project_default"))
    );
    assert_eq!(l["project_completed"], true);
    assert!(
        ana["rule"]
            .as_str()
            .unwrap()
            .contains("Accessrail's reading")
    );

    let bo = access_of(&e, &cast.bo, &[]).await;
    let m = row(&bo, "Mobile");
    assert_eq!(
        m["role"], "Lead",
        "the most permissive group role wins: {m}"
    );
    assert_eq!(m["source"]["group_id"], cast.leads);
    let also: Vec<&str> = m["also"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        also,
        vec!["Designer", "Tester"],
        "the other offers are listed: {m}"
    );
    let p = row(&bo, "Payments");
    assert_eq!(
        (p["role"].as_str(), p["source"]["via_global_role"].as_bool()),
        (Some("Tester"), Some(true))
    );
    assert_eq!(p["can_access"], true);

    let dee = access_of(&e, &cast.dee, &[]).await;
    let m = row(&dee, "Mobile");
    assert_eq!(
        (m["role"].as_str(), m["source"]["kind"].as_str()),
        (Some("Read-only"), Some("user_role"))
    );

    let admin = access_of(&e, "admin@example.com", &[]).await;
    for project in ["Mobile", "Payments", "Legacy"] {
        let r = row(&admin, project);
        assert_eq!(
            (r["source"]["kind"].as_str(), r["can_access"].as_bool()),
            (Some("administrator"), Some(true))
        );
    }

    // Who can reach Payments: the administrator and Bo (through Leads), active accounts only.
    let out = e.run(&["access", "--project", "payments", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    let ids: Vec<u64> = v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_u64().unwrap())
        .collect();
    let bo_id = e.user(&cast.bo).id;
    assert!(ids.contains(&cast.admin) && ids.contains(&bo_id), "{ids:?}");
    assert!(!ids.contains(&e.user(&cast.cy).id));
    assert!(
        v["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["can_access"] == true && a["is_active"] == true)
    );
    // The projects list with counts, and the table.
    let out = e.run(&["projects", "--json"]).await;
    let projects = out.json();
    let payments = projects
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Payments")
        .unwrap();
    assert_eq!(payments["default_role"], "No Access");
    assert_eq!(payments["group_roles"], 1);
    assert_eq!(payments["user_roles"], 0);
    assert_eq!(payments["active_with_access"], ids.len() as u64);
    let out = e.run(&["projects"]).await;
    assert!(
        out.stdout.contains("Payments") && out.stdout.contains("completed"),
        "{}",
        out.stdout
    );
    let out = e.run(&["access", "--email", &cast.bo]).await;
    assert!(
        out.stdout.contains("group")
            && out
                .stdout
                .contains("Note: effective access is Accessrail's reading"),
        "{}",
        out.stdout
    );

    // An admin changes access in TestRail; the next scan records each change.
    e.sim().with_instance(|inst| {
        let m = inst.projects.get_mut(&cast.mobile).unwrap();
        m.group_roles.insert(cast.qa, TESTER);
        m.is_completed = true;
        m.completed_on = Some(1_800_000_000);
        let cy = inst.user_by_email(&cast.cy).unwrap().id;
        inst.projects
            .get_mut(&cast.payments)
            .unwrap()
            .user_roles
            .insert(cy, LEAD);
        inst.projects.get_mut(&cast.legacy).unwrap().default_role_id = TESTER;
        let mut p = inst.projects[&cast.legacy].clone();
        p.name = "Web".into();
        p.is_completed = false;
        p.completed_on = None;
        inst.insert_project(p);
    });
    let second = e.scan().await;
    assert_eq!(second["requests"], second["minimum_requests"], "{second}");
    let out = e
        .run(&[
            "changes",
            "--json",
            "--scan",
            &second["scan_id"].to_string(),
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let changes = out.json();
    let kinds: Vec<(String, String)> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_string(),
                c["project"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for want in [
        ("project_access_changed", "Mobile"),
        ("project_completed", "Mobile"),
        ("project_access_granted", "Payments"),
        ("project_access_changed", "Legacy"),
        ("project_added", "Web"),
    ] {
        assert!(
            kinds.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {kinds:?}"
        );
    }
    let granted = changes
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "project_access_granted")
        .unwrap();
    assert_eq!(
        (granted["subject"].as_str(), granted["after"].as_str()),
        (Some(cast.cy.as_str()), Some("Lead"))
    );
    // History: Cy could not reach Payments after the first scan, can now.
    let then = access_of(&e, &cast.cy, &["--at-scan", &first_scan.to_string()]).await;
    assert_eq!(row(&then, "Payments")["can_access"], false);
    let now = access_of(&e, &cast.cy, &[]).await;
    assert_eq!(row(&now, "Payments")["source"]["kind"], "user_role");
    let out = e
        .run(&["access", "--email", &cast.cy, "--at-scan", "999"])
        .await;
    assert_eq!(out.code, 2, "{}", out.stderr);

    // A project-role change: planned (nothing sent), applied, read back, audited.
    let out = e.run(&["provisioning", "enable"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let writes_before = method_count(&e, "update_project");
    let out = e
        .prov(&[
            "set-project-role",
            "--email",
            &cast.ana,
            "--project",
            "Payments",
            "--role",
            "Lead",
            "--dry-run",
            "--json",
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan = out.json();
    let step = &plan["plan"]["steps"][0];
    assert_eq!(step["kind"], "project_role");
    assert_eq!(step["before"], "no project role in Payments");
    assert_eq!(step["after"], "Lead in Payments");
    let calls: Vec<&str> = step["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let pid = cast.payments;
    assert_eq!(
        calls,
        vec![
            format!("get_project/{pid}"),
            format!("update_project/{pid}"),
            format!("get_project/{pid}")
        ]
    );
    assert_eq!(
        method_count(&e, "update_project"),
        writes_before,
        "a dry run sends nothing"
    );

    let out = e
        .prov(&[
            "set-project-role",
            "--email",
            &cast.ana,
            "--project",
            "Payments",
            "--role",
            "Lead",
            "--json",
        ])
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let ana_id = e.user(&cast.ana).id;
    let cy_id = e.user(&cast.cy).id;
    let roles = e.sim().snapshot().projects[&pid].user_roles.clone();
    assert_eq!(roles.get(&ana_id), Some(&LEAD), "{roles:?}");
    assert_eq!(
        roles.get(&cy_id),
        Some(&LEAD),
        "the other entry is kept: {roles:?}"
    );
    // Stored at once (no rescan): Ana reaches Payments by her own role.
    let ana = access_of(&e, &cast.ana, &[]).await;
    let p = row(&ana, "Payments");
    assert_eq!(
        (p["role"].as_str(), p["source"]["kind"].as_str()),
        (Some("Lead"), Some("user_role"))
    );
    // Audited with the calls made, and the change row points at the audit entry.
    let audit = e.run(&["audit", "--json"]).await.json();
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|a| a["action"] == "set_project_role" && a["outcome"] == "done")
        .unwrap_or_else(|| panic!("no audit entry: {audit}"));
    assert_eq!(entry["after"], "Lead in Payments");
    assert_eq!(entry["calls"].as_array().unwrap().len(), 3, "{entry}");
    let changes = e.run(&["changes", "--json"]).await.json();
    let c = changes
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|c| c["kind"] == "project_access_granted" && c["subject"] == cast.ana.as_str())
        .unwrap_or_else(|| panic!("no change row: {changes}"));
    assert_eq!(c["audit_id"], entry["id"]);
    // The next scan agrees and records nothing new.
    let third = e.scan().await;
    assert_eq!(third["changes"], 0, "{third}");

    // Clearing it: the group or default applies again (Ana is in no group with a Payments role).
    let out = e
        .prov(&[
            "set-project-role",
            "--email",
            &cast.ana,
            "--project",
            &pid.to_string(),
            "--clear",
        ])
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        e.sim().snapshot().projects[&pid].user_roles.get(&ana_id),
        None
    );
    assert_eq!(
        row(&access_of(&e, &cast.ana, &[]).await, "Payments")["can_access"],
        false
    );
    // A group's project role, set to the members' global role.
    let out = e
        .prov(&[
            "set-group-project-role",
            "--group",
            &cast.qa.to_string(),
            "--project",
            "Legacy",
            "--role",
            "global",
        ])
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        e.sim().snapshot().projects[&cast.legacy]
            .group_roles
            .get(&cast.qa),
        Some(&0)
    );
    let l = row(&access_of(&e, &cast.ana, &[]).await, "Legacy").clone();
    assert_eq!(
        (
            l["source"]["kind"].as_str(),
            l["source"]["via_global_role"].as_bool()
        ),
        (Some("group_role"), Some(true))
    );
    // Again: already so, nothing sent.
    let writes = method_count(&e, "update_project");
    let out = e
        .prov(&[
            "set-group-project-role",
            "--group",
            &cast.qa.to_string(),
            "--project",
            "Legacy",
            "--role",
            "global",
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(method_count(&e, "update_project"), writes);
    // Unknown names fail before anything is sent, with suggestions.
    let out = e
        .prov(&[
            "set-project-role",
            "--email",
            &cast.ana,
            "--project",
            "Paymnts",
            "--role",
            "Lead",
        ])
        .await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("did you mean: Payments"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn professional_reports_no_user_roles_and_says_so() {
    let e = env_with(30, 3, settings(Edition::Professional, Version::LATEST)).await;
    let cast = stage(&e);
    e.provisioned().await;
    let out = e.run(&["projects", "--json"]).await;
    let projects = out.json();
    assert!(
        projects
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["access"] == "user_roles_unknown" && p["user_roles"].is_null()),
        "{projects}"
    );
    // Dee's own Read-only role in Mobile is not reported: shown from the default, flagged.
    let dee = access_of(&e, &cast.dee, &[]).await;
    let m = row(&dee, "Mobile");
    assert_eq!(
        (m["role"].as_str(), m["knowledge"].as_str()),
        (Some("Tester"), Some("user_roles_unknown"))
    );
    let out = e.run(&["access", "--email", &cast.dee]).await;
    assert!(
        out.stdout
            .contains("does not report users' own project roles"),
        "{}",
        out.stdout
    );
    // A user's project role cannot be read back here: refused before anything is sent.
    let out = e
        .prov(&[
            "set-project-role",
            "--email",
            &cast.ana,
            "--project",
            "Mobile",
            "--role",
            "Lead",
        ])
        .await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("Professional"), "{}", out.stderr);
    assert_eq!(method_count(&e, "update_project"), 0);
    // A group's project role can.
    let out = e
        .prov(&[
            "set-group-project-role",
            "--group",
            &cast.leads.to_string(),
            "--project",
            "Mobile",
            "--clear",
        ])
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        e.sim().snapshot().projects[&cast.mobile]
            .group_roles
            .get(&cast.leads),
        None
    );
    let bo = access_of(&e, &cast.bo, &[]).await;
    assert_eq!(
        row(&bo, "Mobile")["role"],
        "Designer",
        "QA's role now decides"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_7_3_project_access_is_unknown_and_never_guessed() {
    let e = env_with(30, 3, settings(Edition::Enterprise, Version(7, 2, 0))).await;
    let cast = stage(&e);
    e.connect().await;
    let scan = e.scan().await;
    assert_eq!(scan["projects"], 3);
    assert_eq!(scan["project_access"], "unknown (TestRail before 7.3)");
    assert_eq!(scan["requests"], scan["minimum_requests"], "{scan}");
    assert_eq!(
        method_count(&e, "get_project"),
        0,
        "no access to read: no per-project reads"
    );
    let ana = access_of(&e, &cast.ana, &[]).await;
    for project in ["Mobile", "Payments", "Legacy"] {
        let r = row(&ana, project);
        assert_eq!(
            (
                r["knowledge"].as_str(),
                r["can_access"].is_null(),
                r["role"].is_null()
            ),
            (Some("unknown"), true, true),
            "{r}"
        );
    }
    let out = e.run(&["projects"]).await;
    assert!(
        out.stdout.contains("unknown (before 7.3)"),
        "{}",
        out.stdout
    );
    let warned = scan["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("before 7.3"));
    assert!(warned, "{scan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_flow_creates_the_account_and_gives_its_project_role() {
    let e = env_with(30, 3, settings(Edition::Enterprise, Version::LATEST)).await;
    let cast = stage(&e);
    e.provisioned().await;
    let flows = e.data().join("flows.toml");
    std::fs::write(
        &flows,
        r#"
[[rule]]
name = "qa-joiners"
when = "active"
match = { department = "QA" }
action = "create_user"
role = "Tester"
projects = [{ project = "Payments", role = "Designer" }]
"#,
    )
    .unwrap();
    let out = e.run(&["flows", "set", flows.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let hr = e.data().join("hr.csv");
    std::fs::write(
        &hr,
        format!(
            "id,name,email,other_emails,status,department\ne1,Ana,{},,active,QA\nn1,Nia Novak,nia.novak@example.com,,active,QA\n",
            cast.ana
        ),
    )
    .unwrap();
    let out = e.run(&["flows", "run", "--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan = out.json();
    let kinds: Vec<&str> = plan["plan"]["steps"].as_array().map_or(vec![], |s| {
        s.iter().map(|st| st["kind"].as_str().unwrap()).collect()
    });
    // No identities yet: nothing planned. Import them (flows run by themselves).
    assert!(kinds.is_empty(), "{plan}");
    let out = e.run(&["identities", "import", hr.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let nia = e.user("nia.novak@example.com");
    assert!(nia.is_active);
    let roles = &e.sim().snapshot().projects[&cast.payments].user_roles;
    assert_eq!(roles.get(&nia.id), Some(&DESIGNER), "{roles:?}");
    let access = access_of(&e, "nia.novak@example.com", &[]).await;
    let p = row(&access, "Payments");
    assert_eq!(
        (p["role"].as_str(), p["source"]["kind"].as_str()),
        (Some("Designer"), Some("user_role"))
    );
    let audit = e.run(&["audit", "--json"]).await.json();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "set_project_role"
                && a["actor"] == "flow:qa-joiners"
                && a["outcome"] == "done"),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_update_project_answer_is_not_sent_again_and_ends_done() {
    let e = env_with(30, 3, settings(Edition::Enterprise, Version::LATEST)).await;
    let cast = stage(&e);
    e.provisioned().await;
    // TestRail applies the update, then the connection is cut before the answer.
    e.sim().set_faults(testrail_sim::model::Faults {
        drop_rate: 1.0,
        methods: vec!["update_project".into()],
        ..Default::default()
    });
    let out = e
        .prov(&[
            "set-project-role",
            "--email",
            &cast.bo,
            "--project",
            "Legacy",
            "--role",
            "Lead",
            "--json",
        ])
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let v = out.json();
    assert_eq!(v["result"]["done"], 1, "{v}");
    // One write: the retry is a fresh read that finds it done, never the old list sent again.
    assert_eq!(method_count(&e, "update_project"), 1);
    let calls: Vec<&str> = v["result"]["results"][0]["calls_made"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let pid = cast.legacy;
    assert_eq!(
        calls,
        vec![
            format!("get_project/{pid}"),
            format!("update_project/{pid}"),
            format!("get_project/{pid}")
        ],
        "{v}"
    );
    let bo = e.user(&cast.bo).id;
    assert_eq!(
        e.sim().snapshot().projects[&pid].user_roles.get(&bo),
        Some(&LEAD)
    );
    let row = row(&access_of(&e, &cast.bo, &[]).await, "Legacy").clone();
    assert_eq!(
        (row["role"].as_str(), row["source"]["kind"].as_str()),
        (Some("Lead"), Some("user_role"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_deleted_while_a_scan_reads_it_is_recorded_as_removed() {
    let e = env_with(30, 3, settings(Edition::Enterprise, Version::LATEST)).await;
    let cast = stage(&e);
    e.connect().await;
    e.scan().await;
    // Each project read waits 400 ms; Payments is deleted after the list was read.
    e.sim().set_faults(testrail_sim::model::Faults {
        latency_ms: 400,
        methods: vec!["get_project".into()],
        ..Default::default()
    });
    let sim = e.sim().clone();
    // Once the list has been read (and before the project reads are answered).
    let deleter = tokio::spawn(async move {
        let lists = |sim: &testrail_sim::Sim| {
            sim.stats()
                .by_method
                .get("get_projects")
                .copied()
                .unwrap_or(0)
        };
        let before = lists(&sim);
        for _ in 0..500 {
            if lists(&sim) > before {
                sim.with_instance(|inst| inst.projects.remove(&cast.payments));
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        false
    });
    let scan = e.scan().await;
    assert!(
        deleter.await.unwrap(),
        "the deletion happened during the reads"
    );
    assert!(
        scan["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("deleted while the scan read them")),
        "{scan}"
    );
    let changes = e
        .run(&["changes", "--json", "--scan", &scan["scan_id"].to_string()])
        .await
        .json();
    assert!(
        changes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "project_removed" && c["project"] == "Payments"),
        "{changes}"
    );
    assert_eq!(e.scan().await["changes"], 0, "the next scan agrees");
}
