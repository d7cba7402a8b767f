//! Access reviews end to end, through the `accessrail` binary against the simulator over real
//! HTTP: a review routed by manager and group-owner rules (a self-review rerouted, unmatched
//! accounts to the fallback), decisions, a reviewer refused another's items, approval and
//! send-back, a close whose undecided items follow the review's setting, revocations applied
//! through one provisioning plan (the connection's own account refused), audited, and the
//! evidence exported with an audit head hash that verifies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ADMIN, Env, env};
use serde_json::Value;

const FALLBACK: &str = "audit@corp.example";
const MIA: &str = "mia@corp.example";

struct Cast {
    ana: String,
    bo: String,
    cy: String,
    dee: String,
    eve: String,
    fay: String,
    leads: String,
}

/// Seven active accounts (the admin, Ana..Fay), everyone else deactivated. Bo is in Leads, Dee
/// and Fay in QA. Identities: Ana and Bo report to Mia (not a TestRail user), Cy to Ana; Dee,
/// Fay and the admin have no manager; Eve matches nobody.
async fn stage(e: &Env) -> Cast {
    let (people, qa, leads) = e.sim().with_instance(|inst| {
        let people: Vec<(u64, String)> = inst
            .users
            .values()
            .filter(|u| !u.is_admin && u.email.contains('@'))
            .map(|u| (u.id, u.email.clone()))
            .take(6)
            .collect();
        let keep: Vec<u64> = people.iter().map(|p| p.0).collect();
        for u in inst.users.values_mut() {
            if !u.is_admin || u.email != ADMIN {
                u.is_active = keep.contains(&u.id) || u.email == ADMIN;
            }
            if keep.contains(&u.id) {
                u.role_id = 3;
            }
        }
        let groups: Vec<u64> = inst.groups.keys().copied().collect();
        for g in &groups {
            inst.set_group_members(*g, &[]);
        }
        let (qa, leads) = (groups[0], groups[1]);
        inst.set_group_members(qa, &[people[3].0, people[5].0]);
        inst.set_group_members(leads, &[people[1].0]);
        inst.groups.get_mut(&qa).unwrap().name = "QA".into();
        inst.groups.get_mut(&leads).unwrap().name = "Leads".into();
        (people, qa, leads)
    });
    let _ = (qa, leads);
    let p = |i: usize| people[i].1.clone();
    let cast = Cast {
        ana: p(0),
        bo: p(1),
        cy: p(2),
        dee: p(3),
        eve: p(4),
        fay: p(5),
        leads: "Leads".into(),
    };
    e.provisioned().await;
    let csv = format!(
        "id,name,email,other_emails,status,manager_email\n\
         1,Ana,{},,active,{MIA}\n\
         2,Bo,{},,active,{MIA}\n\
         3,Cy,{},,active,{}\n\
         4,Dee,{},,active,\n\
         6,Fay,{},,active,\n\
         7,Admin,{ADMIN},,active,\n",
        cast.ana, cast.bo, cast.cy, cast.ana, cast.dee, cast.fay
    );
    let file = e.data().join("people.csv");
    std::fs::write(&file, csv).unwrap();
    let out = e
        .run(&["identities", "import", file.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // The QA group's owner is Dee: Fay's reviewer; Dee's own item goes to the fallback.
    let out = e
        .run(&["reviews", "owner", "--group", "QA", "--owner", &cast.dee])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    cast
}

fn item<'a>(show: &'a Value, email: &str) -> &'a Value {
    show["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["email"].as_str().unwrap().eq_ignore_ascii_case(email))
        .unwrap_or_else(|| panic!("no item for {email}: {show:#}"))
}

async fn ok(e: &Env, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = e.run(&all).await;
    assert_eq!(out.code, 0, "{args:?}: {}\n{}", out.stdout, out.stderr);
    out.json()
}

#[tokio::test]
async fn a_review_from_start_to_evidence() {
    let e = env(12, 3).await;
    let c = stage(&e).await;

    // Start: every active account, undecided items revoked at close.
    let started = ok(
        &e,
        &[
            "reviews",
            "start",
            "--fallback-reviewer",
            FALLBACK,
            "--fallback-reviewer",
            ADMIN,
            "--undecided",
            "revoke",
            "--due",
            "2099-01-31",
            "--every",
            "3mo",
        ],
    )
    .await;
    let id = started["id"].as_i64().unwrap().to_string();
    assert_eq!(started["items"], 7, "{started:#}");
    assert_eq!(started["every"], "3mo");
    let show = ok(&e, &["reviews", "show", &id]).await;
    let reviewer = |email: &str| item(&show, email)["reviewer"].as_str().unwrap().to_string();
    let route = |email: &str| item(&show, email)["route"].as_str().unwrap().to_string();
    assert_eq!(reviewer(&c.ana), MIA, "manager rule");
    assert_eq!(reviewer(&c.bo), MIA);
    assert_eq!(reviewer(&c.cy), c.ana.to_lowercase(), "Cy's manager is Ana");
    assert_eq!(reviewer(&c.fay), c.dee.to_lowercase(), "owner of group QA");
    assert_eq!(route(&c.fay), "owner of group QA");
    assert_eq!(
        reviewer(&c.dee),
        FALLBACK,
        "Dee owns QA: never her own reviewer"
    );
    assert!(
        route(&c.dee).contains("self-review rerouted"),
        "{}",
        route(&c.dee)
    );
    assert_eq!(reviewer(&c.eve), FALLBACK);
    assert!(route(&c.eve).contains("matches no identity"));
    assert_eq!(reviewer(ADMIN), FALLBACK);
    // The snapshot: entitlements as the scan had them.
    let bo = item(&show, &c.bo);
    assert_eq!(bo["entitlements"]["groups"], serde_json::json!(["Leads"]));
    assert_eq!(bo["entitlements"]["active"], true);
    assert_eq!(bo["identity"]["manager_email"], MIA);

    // Mia gets a reviewer sign-in (shown once, kept hashed, listed as a reviewer's).
    let tok = ok(
        &e,
        &["tokens", "create", "mia", "--reviewer", "Mia@Corp.example"],
    )
    .await;
    let secret = tok["token"].as_str().unwrap().to_string();
    assert_eq!(tok["reviewer"], MIA);
    let list = ok(&e, &["tokens", "list"]).await;
    assert_eq!(list[0]["reviewer"], MIA);
    assert!(!list.to_string().contains(&secret));
    let out = e
        .run(&["tokens", "create", "x", "--reviewer", "nobody"])
        .await;
    assert_eq!(out.code, 2);

    // A reviewer sees only their own items.
    let mine = ok(&e, &["reviews", "show", &id, "--reviewer", MIA]).await;
    let emails: Vec<&str> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails.len(), 2, "{emails:?}");

    // Decisions. Mia cannot decide Ana's item (Cy); a revoke needs a comment.
    let out = e
        .run(&[
            "reviews",
            "decide",
            &id,
            "--account",
            &c.cy,
            "--decision",
            "keep",
            "--as",
            MIA,
            "--json",
        ])
        .await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("forbidden") || out.stdout.contains("forbidden"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let out = e
        .run(&[
            "reviews",
            "decide",
            &id,
            "--account",
            &c.bo,
            "--decision",
            "revoke",
            "--as",
            MIA,
        ])
        .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("comment"), "{}", out.stderr);
    ok(
        &e,
        &[
            "reviews",
            "decide",
            &id,
            "--account",
            &c.ana,
            "--decision",
            "keep",
            "--as",
            MIA,
        ],
    )
    .await;
    // Changed before submitting: keep, then revoke (remove from Leads).
    ok(
        &e,
        &[
            "reviews",
            "decide",
            &id,
            "--account",
            &c.bo,
            "--decision",
            "keep",
            "--as",
            MIA,
        ],
    )
    .await;
    let d = ok(
        &e,
        &[
            "reviews",
            "decide",
            &id,
            "--account",
            &c.bo,
            "--decision",
            "revoke",
            "--action",
            &format!("remove-group:{}", c.leads),
            "--comment",
            "moved to sales",
            "--as",
            MIA,
        ],
    )
    .await;
    assert_eq!(d[0]["action"], "remove-group:Leads");
    ok(
        &e,
        &[
            "reviews",
            "decide",
            &id,
            "--account",
            &c.cy,
            "--decision",
            "revoke",
            "--comment",
            "left the team",
            "--as",
            &c.ana,
        ],
    )
    .await;
    ok(
        &e,
        &[
            "reviews",
            "decide",
            &id,
            "--account",
            &c.fay,
            "--decision",
            "keep",
            "--as",
            &c.dee,
        ],
    )
    .await;
    // The fallback decides Dee but leaves Eve and the admin open (and cannot submit).
    ok(
        &e,
        &[
            "reviews",
            "decide",
            &id,
            "--account",
            &c.dee,
            "--decision",
            "keep",
            "--as",
            FALLBACK,
        ],
    )
    .await;
    let out = e
        .run(&["reviews", "submit", &id, "--reviewer", FALLBACK])
        .await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("undecided"), "{}", out.stderr);

    // Submit; then no more changes.
    for r in [MIA, c.ana.as_str(), c.dee.as_str()] {
        ok(&e, &["reviews", "submit", &id, "--reviewer", r]).await;
    }
    let out = e
        .run(&[
            "reviews",
            "decide",
            &id,
            "--account",
            &c.ana,
            "--decision",
            "revoke",
            "--comment",
            "x",
            "--as",
            MIA,
        ])
        .await;
    assert_ne!(out.code, 0, "a submitted decision cannot change");
    // Approval: nobody approves their own; a submission can be sent back and redone.
    let out = e
        .run(&["reviews", "approve", &id, "--reviewer", MIA, "--as", MIA])
        .await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("own submission"), "{}", out.stderr);
    ok(
        &e,
        &[
            "reviews",
            "approve",
            &id,
            "--reviewer",
            MIA,
            "--as",
            "ciso@corp.example",
        ],
    )
    .await;
    // Whoever submitted for Ana (this CLI account) must name the approving person.
    let out = e
        .run(&["reviews", "approve", &id, "--reviewer", &c.ana])
        .await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("name the approving person"),
        "{}",
        out.stderr
    );
    ok(
        &e,
        &[
            "reviews",
            "approve",
            &id,
            "--reviewer",
            &c.ana,
            "--as",
            "ciso@corp.example",
        ],
    )
    .await;
    ok(
        &e,
        &[
            "reviews",
            "send-back",
            &id,
            "--reviewer",
            &c.dee,
            "--comment",
            "Fay moved to support",
        ],
    )
    .await;
    ok(
        &e,
        &[
            "reviews",
            "decide",
            &id,
            "--account",
            &c.fay,
            "--decision",
            "revoke",
            "--action",
            "role:Read-only",
            "--comment",
            "support needs read access only",
            "--as",
            &c.dee,
        ],
    )
    .await;
    ok(&e, &["reviews", "submit", &id, "--reviewer", &c.dee]).await;
    // A submission waiting for approval holds the close back.
    let out = e.run(&["reviews", "close", &id, "--dry-run"]).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("wait for approval"), "{}", out.stderr);
    ok(
        &e,
        &[
            "reviews",
            "approve",
            &id,
            "--reviewer",
            &c.dee,
            "--as",
            "ciso@corp.example",
        ],
    )
    .await;
    let show = ok(&e, &["reviews", "show", &id]).await;
    let subs: Vec<(String, String)> = show["reviewers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["reviewer"].as_str().unwrap().to_string(),
                r["submission"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        subs.contains(&(FALLBACK.to_string(), "open".to_string())),
        "{subs:?}"
    );
    assert!(
        subs.contains(&(MIA.to_string(), "approved".to_string())),
        "{subs:?}"
    );

    // Close: the dry run changes nothing; without --yes nothing either.
    let requests_before = e.sim().stats().requests_total;
    let dry = ok(&e, &["reviews", "close", &id, "--dry-run"]).await;
    let lines = dry["close"]["lines"].as_array().unwrap();
    let line = |email: &str| {
        lines
            .iter()
            .find(|l| l["email"].as_str().unwrap().eq_ignore_ascii_case(email))
            .unwrap()
            .clone()
    };
    assert_eq!(line(&c.ana)["final_decision"], "keep");
    assert_eq!(line(&c.eve)["action"], "deactivate", "undecided: revoke");
    assert_eq!(line(&c.eve)["source"], "undecided (review setting: revoke)");
    assert_eq!(
        line(&c.dee)["source"],
        "not approved (review setting: revoke)"
    );
    assert!(
        line(ADMIN)["refused"]
            .as_str()
            .unwrap()
            .contains("own account")
    );
    assert!(e.user(&c.cy).is_active, "a dry run changes nothing");
    assert!(
        e.sim().stats().requests_total > requests_before,
        "the plan reads TestRail fresh"
    );
    let out = e.run(&["reviews", "close", &id]).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(e.user(&c.cy).is_active);

    let closed = ok(&e, &["reviews", "close", &id, "--yes"]).await;
    assert_eq!(closed["closed"], true, "{closed:#}");
    assert_eq!(closed["kept"], 1, "{closed:#}");
    assert_eq!(closed["revoked"], 5, "{closed:#}");
    assert_eq!(closed["refused"], 1);
    // TestRail now: Bo out of Leads, Cy, Dee and Eve deactivated, Fay Read-only, Ana and the
    // admin untouched.
    assert!(
        e.user(&c.bo).group_ids.is_empty(),
        "{:?}",
        e.user(&c.bo).group_ids
    );
    assert!(e.user(&c.bo).is_active);
    assert!(!e.user(&c.cy).is_active);
    assert!(!e.user(&c.dee).is_active);
    assert!(!e.user(&c.eve).is_active);
    assert_eq!(e.user(&c.fay).role_id, 4);
    assert!(e.user(&c.ana).is_active && e.user(ADMIN).is_active);
    let out = e.run(&["reviews", "close", &id, "--yes"]).await;
    assert_ne!(out.code, 0, "closed once");

    // Every outcome is audited with the review, the item and the decision.
    let audit = ok(&e, &["audit"]).await;
    let entries = audit.as_array().unwrap();
    let show = ok(&e, &["reviews", "show", &id]).await;
    for email in [&c.bo, &c.cy, &c.dee, &c.eve, &c.fay] {
        let it = item(&show, email);
        assert!(
            it["outcome"].as_str().unwrap().starts_with("done"),
            "{it:#}"
        );
        let aid = it["outcome_audit_id"].as_i64().unwrap();
        let entry = entries.iter().find(|x| x["id"] == aid).unwrap();
        let actor = entry["actor"].as_str().unwrap();
        assert!(
            actor.starts_with(&format!("review:{id} item {}", it["item"])),
            "{actor}"
        );
        assert!(actor.contains("revoke"), "{actor}");
        assert_eq!(entry["outcome"], "done");
    }
    assert_eq!(item(&show, &c.ana)["outcome"], "kept");
    assert!(
        item(&show, ADMIN)["outcome"]
            .as_str()
            .unwrap()
            .starts_with("refused")
    );
    for action in [
        "review_start",
        "review_submit",
        "review_approve",
        "review_send_back",
        "review_close",
    ] {
        assert!(
            entries.iter().any(|x| x["action"] == action),
            "no {action} entry"
        );
    }

    // Evidence: CSV rows match the decisions; the head hash is in a chain that verifies.
    let csv_path = e.data().join("review.csv");
    let out = ok(
        &e,
        &[
            "reviews",
            "export",
            &id,
            "--format",
            "csv",
            "--output",
            csv_path.to_str().unwrap(),
        ],
    )
    .await;
    let head_id = out["audit_head_id"].as_i64().unwrap();
    let head_hash = out["audit_head_hash"].as_str().unwrap().to_string();
    let mut rdr = csv::Reader::from_path(&csv_path).unwrap();
    let headers = rdr.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 7);
    for r in &rows {
        let it = item(&show, &r[col("email")]);
        assert_eq!(&r[col("decision")], it["decision"].as_str().unwrap_or(""));
        assert_eq!(&r[col("reviewer")], it["reviewer"].as_str().unwrap());
        assert_eq!(&r[col("outcome")], it["outcome"].as_str().unwrap());
        assert_eq!(&r[col("audit_head_hash")], head_hash);
    }
    let bo_row = rows
        .iter()
        .find(|r| r[col("email")].eq_ignore_ascii_case(&c.bo))
        .unwrap();
    assert_eq!(&bo_row[col("comment")], "moved to sales");
    assert_eq!(&bo_row[col("groups")], "Leads");
    assert_eq!(&bo_row[col("submission")], "approved");
    assert!(bo_row[col("approved_by")].starts_with("ciso@corp.example"));
    // The outcomes in the export are the ones the close's audit entry digested.
    let owned: Vec<(i64, String, String, String, Option<i64>)> = rows
        .iter()
        .map(|r| {
            (
                r[col("item")].parse().unwrap(),
                r[col("email")].to_string(),
                r[col("final_decision")].to_string(),
                r[col("outcome")].to_string(),
                r[col("outcome_audit_id")].parse().ok(),
            )
        })
        .collect();
    let refs: Vec<(i64, &str, &str, &str, Option<i64>)> = owned
        .iter()
        .map(|(i, e, d, o, a)| (*i, e.as_str(), d.as_str(), o.as_str(), *a))
        .collect();
    let digest = accessrail_domain::review::outcome_digest(&refs);
    let audit_now = ok(&e, &["audit"]).await;
    let close_entry = audit_now
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["action"] == "review_close")
        .unwrap();
    assert!(
        close_entry["message"]
            .as_str()
            .unwrap()
            .ends_with(&format!("outcomes sha256 {digest}")),
        "{close_entry:#}"
    );
    let verify = ok(&e, &["audit", "verify"]).await;
    assert_eq!(verify["ok"], true);
    let audit = ok(&e, &["audit"]).await;
    let head = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == head_id)
        .unwrap();
    assert_eq!(head["hash"], head_hash.as_str());
    assert_eq!(head["action"], "review_export");

    let json_path = e.data().join("review.json");
    ok(
        &e,
        &[
            "reviews",
            "export",
            &id,
            "--format",
            "json",
            "--output",
            json_path.to_str().unwrap(),
        ],
    )
    .await;
    let ev: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(ev["items"].as_array().unwrap().len(), 7);
    assert_eq!(ev["review"]["status"], "closed");
    assert_eq!(ev["review"]["outcome"]["outcomes_sha256"], digest.as_str());
    let html_path = e.data().join("review.html");
    let out = ok(
        &e,
        &[
            "reviews",
            "export",
            &id,
            "--format",
            "html",
            "--output",
            html_path.to_str().unwrap(),
        ],
    )
    .await;
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("moved to sales") && html.contains("accessrail audit verify"));
    // Each export is audited: its own entry is the head it carries.
    assert_ne!(out["audit_head_hash"], ev["audit_head_hash"]);
    assert!(html.contains(out["audit_head_hash"].as_str().unwrap()));

    // The review recurs: nothing is due yet.
    let due = ok(&e, &["reviews", "start-due"]).await;
    assert_eq!(due["started"], serde_json::json!([]));
}

#[tokio::test]
async fn starting_refuses_what_it_cannot_do_and_changes_nothing() {
    let e = env(12, 3).await;
    let c = stage(&e).await;
    let bad = [
        vec!["reviews", "start", "--fallback-reviewer", "not-an-email"],
        vec![
            "reviews",
            "start",
            "--fallback-reviewer",
            FALLBACK,
            "--scope",
            "role:Nobody",
        ],
        vec![
            "reviews",
            "start",
            "--fallback-reviewer",
            FALLBACK,
            "--scope",
            "everyone",
        ],
        vec![
            "reviews",
            "start",
            "--fallback-reviewer",
            FALLBACK,
            "--undecided",
            "maybe",
        ],
        vec![
            "reviews",
            "start",
            "--fallback-reviewer",
            FALLBACK,
            "--every",
            "3m",
        ],
        vec![
            "reviews",
            "start",
            "--fallback-reviewer",
            FALLBACK,
            "--due",
            "2001-01-01",
        ],
        // The only fallback would review their own account.
        vec!["reviews", "start", "--fallback-reviewer", ADMIN],
    ];
    for args in &bad {
        let out = e.run(args).await;
        assert_ne!(out.code, 0, "{args:?} was accepted");
        assert!(!out.stderr.is_empty());
    }
    let list = ok(&e, &["reviews", "list"]).await;
    assert_eq!(list, serde_json::json!([]), "nothing was started");
    // Scopes narrow the items.
    let g = ok(
        &e,
        &[
            "reviews",
            "start",
            "--fallback-reviewer",
            FALLBACK,
            "--scope",
            "group:qa",
        ],
    )
    .await;
    assert_eq!(g["items"], 2);
    let show = ok(&e, &["reviews", "show", &g["id"].to_string()]).await;
    // The scope's group owner reviews; Dee's own membership goes to the fallback.
    assert_eq!(item(&show, &c.fay)["reviewer"], c.dee.to_lowercase());
    assert_eq!(item(&show, &c.dee)["reviewer"], FALLBACK);
    let u = ok(
        &e,
        &[
            "reviews",
            "start",
            "--fallback-reviewer",
            FALLBACK,
            "--scope",
            "unmatched",
        ],
    )
    .await;
    assert_eq!(u["items"], 1, "only Eve matches nobody");
    let a = ok(
        &e,
        &[
            "reviews",
            "start",
            "--fallback-reviewer",
            FALLBACK,
            "--scope",
            "admins",
        ],
    )
    .await;
    assert!(a["items"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn two_closes_at_once_apply_the_revocations_once() {
    let e = env(12, 3).await;
    let c = stage(&e).await;
    // Only Eve (unmatched) is in scope; nobody decides, so closing revokes her.
    let started = ok(
        &e,
        &[
            "reviews",
            "start",
            "--fallback-reviewer",
            FALLBACK,
            "--scope",
            "unmatched",
            "--undecided",
            "revoke",
        ],
    )
    .await;
    let id = started["id"].to_string();
    let updates_before = e.stat("update_user");
    let args = ["reviews", "close", id.as_str(), "--yes", "--json"];
    let (a, b) = tokio::join!(e.run(&args), e.run(&args));
    let codes = [a.code, b.code];
    assert_eq!(
        codes.iter().filter(|c| **c == 0).count(),
        1,
        "one close wins: {}{}\n{}{}",
        a.stdout,
        a.stderr,
        b.stdout,
        b.stderr
    );
    let loser = if a.code == 0 { &b } else { &a };
    assert!(
        loser.stderr.contains("already closed") || loser.stderr.contains("being closed"),
        "{}",
        loser.stderr
    );
    assert!(!e.user(&c.eve).is_active);
    assert_eq!(
        e.stat("update_user") - updates_before,
        1,
        "deactivated once"
    );
    let audit = ok(&e, &["audit"]).await;
    let done: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["action"] == "deactivate" && x["outcome"] == "done")
        .collect();
    assert_eq!(done.len(), 1);
    let closes = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["action"] == "review_close")
        .count();
    assert_eq!(closes, 1);
}

#[tokio::test]
async fn closing_keeps_to_the_rails_and_project_owners_review_their_projects() {
    let e = env(40, 3).await;
    let c = stage(&e).await;
    // A protected account is refused, recorded as such, and the review still closes.
    let out = e
        .run(&[
            "protect",
            "add",
            &c.eve,
            "--owner",
            "platform",
            "--reason",
            "CI uploads",
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = ok(
        &e,
        &[
            "reviews",
            "start",
            "--fallback-reviewer",
            FALLBACK,
            "--scope",
            "unmatched",
            "--undecided",
            "revoke",
        ],
    )
    .await;
    let id = r["id"].to_string();
    let closed = ok(&e, &["reviews", "close", &id, "--yes"]).await;
    assert_eq!(
        (closed["closed"].as_bool(), closed["refused"].as_u64()),
        (Some(true), Some(1)),
        "{closed:#}"
    );
    assert!(e.user(&c.eve).is_active, "protected: never sent");
    let show = ok(&e, &["reviews", "show", &id]).await;
    let outcome = item(&show, &c.eve)["outcome"].as_str().unwrap().to_string();
    assert!(
        outcome.starts_with("refused: protected account"),
        "{outcome}"
    );

    // Over the deactivation cap: refused before anything is sent, the review stays open.
    e.sim().with_instance(|inst| {
        for u in inst.users.values_mut() {
            if u.email.contains('@') {
                u.is_active = true;
            }
        }
    });
    e.scan().await;
    let r = ok(
        &e,
        &[
            "reviews",
            "start",
            "--fallback-reviewer",
            FALLBACK,
            "--fallback-reviewer",
            "second@corp.example",
            "--scope",
            "all",
            "--undecided",
            "revoke",
        ],
    )
    .await;
    let id = r["id"].to_string();
    let updates = e.stat("update_user");
    let out = e.run(&["reviews", "close", &id, "--yes"]).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("more than the cap"), "{}", out.stderr);
    assert_eq!(e.stat("update_user"), updates, "nothing was sent");
    let shown = ok(&e, &["reviews", "show", &id]).await;
    assert_eq!(shown["review"]["status"], "open");

    // A project's owner reviews who can reach it.
    let projects = ok(&e, &["projects"]).await;
    let reachable = projects
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["active_with_access"].as_u64().unwrap_or(0) > 1
                || p["accounts_with_access"].as_u64().unwrap_or(0) > 1
        })
        .unwrap_or_else(|| panic!("a project several can reach: {projects:#}"));
    let name = reachable["name"].as_str().unwrap().to_string();
    let out = e
        .run(&[
            "reviews",
            "owner",
            "--project",
            &name,
            "--owner",
            "pm@corp.example",
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let owners = ok(&e, &["reviews", "owners"]).await;
    assert!(
        owners
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["kind"] == "project" && o["owner"] == "pm@corp.example")
    );
    let r = ok(
        &e,
        &[
            "reviews",
            "start",
            "--fallback-reviewer",
            FALLBACK,
            "--scope",
            &format!("project:{name}"),
        ],
    )
    .await;
    let show = ok(&e, &["reviews", "show", &r["id"].to_string()]).await;
    let items = show["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for i in items {
        let projects = i["entitlements"]["projects"].as_array().unwrap();
        assert!(
            projects.iter().any(|p| p["name"] == name.as_str()),
            "in scope: can reach {name}"
        );
        if i["identity"].is_object() {
            assert_eq!(i["reviewer"], "pm@corp.example", "{i:#}");
            assert_eq!(i["route"], format!("owner of project {name}"));
        } else {
            assert_eq!(i["reviewer"], FALLBACK);
        }
    }
}

#[tokio::test]
async fn a_revocation_goes_only_to_the_account_and_administrators_need_an_acknowledgement() {
    let e = env(12, 3).await;
    let c = stage(&e).await;
    // Eve is revoked by the review's setting; before the close, her email moves to another
    // TestRail account (hers is renamed): nothing is sent to the newcomer.
    let r = ok(
        &e,
        &[
            "reviews",
            "start",
            "--fallback-reviewer",
            FALLBACK,
            "--scope",
            "unmatched",
            "--undecided",
            "revoke",
        ],
    )
    .await;
    let id = r["id"].to_string();
    let eve = e.user(&c.eve);
    e.sim().with_instance(|inst| {
        inst.users.get_mut(&eve.id).unwrap().email = "eve.renamed@example.com".into();
    });
    let newcomer = e.add_user(&c.eve, None, false);
    let closed = ok(&e, &["reviews", "close", &id, "--yes"]).await;
    assert_eq!(closed["refused"], 1, "{closed:#}");
    assert!(e.user(&c.eve).is_active, "the newcomer keeps access");
    assert_eq!(e.user(&c.eve).id, newcomer);
    let show = ok(&e, &["reviews", "show", &id]).await;
    let outcome = item(&show, &c.eve)["outcome"].as_str().unwrap().to_string();
    assert!(
        outcome.contains("now another TestRail account"),
        "{outcome}"
    );

    // Deactivating an administrator needs an explicit acknowledgement.
    let boss = "boss@example.com";
    e.add_user(boss, None, true);
    e.scan().await;
    let r = ok(
        &e,
        &[
            "reviews",
            "start",
            "--fallback-reviewer",
            FALLBACK,
            "--scope",
            "admins",
            "--undecided",
            "revoke",
        ],
    )
    .await;
    let id = r["id"].to_string();
    let out = e.run(&["reviews", "close", &id, "--yes"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("acknowledge"), "{}", out.stderr);
    assert!(e.user(boss).is_active, "nothing was sent");
    let shown = ok(&e, &["reviews", "show", &id]).await;
    assert_eq!(shown["review"]["status"], "open", "back to open");
    let closed = ok(&e, &["reviews", "close", &id, "--yes", "--acknowledge"]).await;
    assert_eq!(closed["closed"], true, "{closed:#}");
    assert!(!e.user(boss).is_active);
    assert!(
        e.user(ADMIN).is_active,
        "the connection's own account is never revoked"
    );
}
