//! `accessrail migrate-store`: an installation with history, identities, a pinned match,
//! provisioning with its audit log and API tokens, moved from its SQLite file into an empty
//! PostgreSQL database (a throwaway cluster, see `accessrail-test-support`), answers every read
//! exactly as before, keeps working there, and a second copy into the same database is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use accessrail_test_support::fresh_postgres_url;
use common::*;
use serde_json::{Value, json};

impl Env {
    /// Runs against the PostgreSQL store at `url` (same data directory: same master key).
    async fn on(&self, url: &str, args: &[&str]) -> Out {
        let mut all = vec!["--database-url", url];
        all.extend_from_slice(args);
        self.run(&all).await
    }

    /// Creates a TestRail user through the simulator's control API.
    async fn add_user_by_control_api(&self, email: &str, name: &str) {
        let res = reqwest::Client::new()
            .post(format!("{}/__sim/users", self.server.base_url()))
            .header("content-type", "application/json")
            .body(json!({ "email": email, "name": name }).to_string())
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    }
}

fn ok(out: &Out, what: &str) {
    assert_eq!(out.code, 0, "{what}: {}\n{}", out.stdout, out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_installation_moves_to_postgres_whole() {
    let e = env(20, 2).await;
    e.connect().await;
    let first = e.scan().await["scan_id"].as_i64().unwrap();
    // A change between the two scans.
    e.add_user_by_control_api("new.joiner@example.com", "New Joiner")
        .await;
    let second = e.scan().await;
    assert!(second["changes"].as_u64().unwrap() >= 1, "{second}");
    let second = second["scan_id"].as_i64().unwrap();

    // Identities for some accounts (one a leaver), one more nobody has, and a pinned match.
    let users = e.users(&[]).await;
    let emails: Vec<&str> = users
        .iter()
        .filter(|u| u["is_active"] == true && u["email"] != ADMIN)
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    let csv = format!(
        "id,name,email,other_emails,status,department\n\
         p-1,Person One,{},,active,QA\n\
         p-2,Person Two,{},,active,Eng\n\
         p-3,Person Three,{},,leaver,Eng\n\
         p-4,Nobody Here,nobody@example.com,,active,Ops\n\
         p-admin,Admin,{ADMIN},,active,IT\n",
        emails[0], emails[1], emails[2]
    );
    let file = e.data().join("people.csv");
    std::fs::write(&file, csv).unwrap();
    let out = e
        .run(&["identities", "import", file.to_str().unwrap(), "--no-flows"])
        .await;
    ok(&out, "identities import");
    ok(
        &e.run(&["match", "set", emails[3], "p-4"]).await,
        "match set",
    );

    // Provisioning: a protected account, and a deactivation with its audit entries.
    ok(&e.run(&["provisioning", "enable"]).await, "provisioning");
    let out = e
        .run(&[
            "protect", "add", emails[4], "--owner", "it", "--reason", "CI bot",
        ])
        .await;
    ok(&out, "protect");
    let out = e
        .run(&["provision", "deactivate", "--email", emails[2], "--json"])
        .await;
    ok(&out, "provision deactivate");

    // Tokens: one live, one revoked.
    ok(&e.run(&["tokens", "create", "ci-bot"]).await, "token");
    ok(&e.run(&["tokens", "create", "old-bot"]).await, "token");
    ok(&e.run(&["tokens", "revoke", "old-bot"]).await, "revoke");
    let audit_before = e.run(&["audit", "--json"]).await.json();
    let audit_entries = audit_before.as_array().unwrap().len();
    assert!(audit_entries >= 2, "{audit_before}");

    // Refused: a SQLite target, and a PostgreSQL source.
    let url = fresh_postgres_url().await;
    let out = e
        .run(&["migrate-store", "--to", "sqlite:///tmp/elsewhere.db"])
        .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("PostgreSQL URL"), "{}", out.stderr);
    let out = e.on(&url, &["migrate-store", "--to", &url]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("copies a SQLite store"),
        "{}",
        out.stderr
    );

    // The move.
    let out = e.run(&["migrate-store", "--to", &url, "--json"]).await;
    ok(&out, "migrate-store");
    let report = out.json();
    let rows = &report["tables"];
    assert_eq!(rows["connections"], 1, "{report}");
    assert_eq!(rows["identities"], 5, "{report}");
    assert_eq!(rows["match_overrides"], 1, "{report}");
    assert_eq!(rows["protected_accounts"], 1, "{report}");
    assert_eq!(rows["api_tokens"], 2, "{report}");
    assert_eq!(rows["audit_log"], audit_entries, "{report}");
    for t in [
        "revisions",
        "scans",
        "account_versions",
        "group_versions",
        "membership_versions",
        "role_versions",
        "changes",
        "match_versions",
        "account_counts",
        "account_facets",
        "group_counts",
    ] {
        assert!(rows[t].as_u64().unwrap() > 0, "{t}: {report}");
    }
    assert!(rows.get("leases").is_none(), "{report}");
    assert!(
        report["skipped"]
            .as_array()
            .unwrap()
            .contains(&json!("leases")),
        "{report}"
    );
    assert_eq!(report["master_key"]["ids"].as_array().unwrap().len(), 1);
    assert!(
        report["master_key"]["source"]
            .as_str()
            .unwrap()
            .ends_with("master.key"),
        "{report}"
    );
    assert!(
        !report.to_string().contains(&url),
        "the URL is never printed"
    );

    // Every read answers the same on both stores.
    let (first, second) = (first.to_string(), second.to_string());
    let reads: Vec<Vec<&str>> = vec![
        vec!["users", "--json"],
        vec!["users", "--unmatched", "--json"],
        vec!["users", "--at-scan", &first, "--json"],
        vec!["users", "--at-scan", &second, "--json"],
        vec!["changes", "--json"],
        vec!["audit", "verify", "--json"],
        vec!["audit", "--json"],
        vec!["tokens", "list", "--json"],
        vec!["scans", "--json"],
        vec!["summary", "--json"],
        vec!["groups", "--json"],
        vec!["roles", "--json"],
        vec!["identities", "--json"],
        vec!["protect", "list", "--json"],
        vec!["connections", "--json"],
    ];
    for args in &reads {
        let sqlite = e.run(args).await;
        ok(&sqlite, &format!("{args:?} on SQLite"));
        let postgres = e.on(&url, args).await;
        ok(&postgres, &format!("{args:?} on PostgreSQL"));
        assert_eq!(
            sqlite.json(),
            postgres.json(),
            "{args:?}: SQLite and PostgreSQL differ"
        );
    }
    let verify = e.on(&url, &["audit", "verify", "--json"]).await.json();
    assert_eq!(verify, json!({ "ok": true, "entries": audit_entries }));
    let users_pg = e.on(&url, &["users", "--json"]).await.json();
    let pinned = users_pg
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == emails[3])
        .unwrap();
    assert_eq!(pinned["identity"], "p-4", "{pinned}");

    // A second copy into the same database is refused, and changes nothing.
    let out = e.run(&["migrate-store", "--to", &url]).await;
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("already has 1 connection"),
        "{}",
        out.stderr
    );
    assert_eq!(
        e.on(&url, &["audit", "--json"]).await.json(),
        audit_before,
        "nothing was written"
    );

    // PostgreSQL carries on: the sealed API key opens with the same master key, and new scans,
    // changes and audit entries get ids after the copied ones.
    ok(&e.on(&url, &["test"]).await, "test on PostgreSQL");
    e.add_user_by_control_api("later.joiner@example.com", "Later Joiner")
        .await;
    let third = e.on(&url, &["scan", "--json"]).await;
    ok(&third, "scan on PostgreSQL");
    let third = third.json();
    let scans = e.on(&url, &["scans", "--json"]).await.json();
    let max_copied = scans
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .filter(|id| *id != third["scan_id"].as_i64().unwrap())
        .max()
        .unwrap();
    assert!(third["scan_id"].as_i64().unwrap() > max_copied, "{third}");
    let out = e
        .on(
            &url,
            &["provision", "deactivate", "--email", emails[1], "--json"],
        )
        .await;
    ok(&out, "provision on PostgreSQL");
    let audit = e.on(&url, &["audit", "--json"]).await.json();
    let ids: Vec<i64> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert!(ids.len() > audit_entries);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let verify = e.on(&url, &["audit", "verify", "--json"]).await.json();
    assert_eq!(verify, json!({ "ok": true, "entries": ids.len() }));
    let changes = e.on(&url, &["changes", "--json"]).await.json();
    let change_ids: Vec<i64> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    let mut unique = change_ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), change_ids.len(), "{change_ids:?}");
    // The SQLite file is left as it was.
    assert_eq!(e.run(&["audit", "--json"]).await.json(), audit_before);

    // The text output names the tables and the master key.
    let other = fresh_postgres_url().await;
    let out = e.run(&["migrate-store", "--to", &other]).await;
    ok(&out, "migrate-store (text)");
    for needle in [
        "audit_log",
        "api_tokens",
        "leases",
        "master key",
        "master.key",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
    let _: Value = e.on(&other, &["users", "--json"]).await.json();
}
