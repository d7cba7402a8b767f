#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Databases written by earlier builds, opened by this one.

use std::borrow::Cow;

use super::*;
use crate::model::AccountQuery;

/// A database written by the build before stored matches (migrations 1-5), with data,
/// opened by this build: matches, counts and Unicode search keys are filled in once.
#[tokio::test]
async fn a_database_from_before_stored_matches_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .unwrap()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(opts).await.unwrap();
        let mut old = sqlx::migrate!("./migrations/sqlite");
        old.migrations = Cow::Owned(old.migrations[..5].to_vec());
        old.run(&pool).await.unwrap();
        for stmt in [
            "INSERT INTO connections (id, name, base_url, email, secret, secret_key_id, created_at, updated_at)
             VALUES ('c1', 'acme', 'https://acme.testrail.io', 'admin@acme.io', x'01', 'k', 0, 0)",
            "INSERT INTO scans (id, connection_id, started_at, finished_at, status, kind, revision)
             VALUES (1, 'c1', 10, 11, 'succeeded', 'scan', 1)",
            "INSERT INTO revisions (id, connection_id, kind, committed_at) VALUES (1, 'c1', 'scan', 11)",
            "INSERT INTO account_versions (connection_id, tr_user_id, valid_from_rev, name, email, is_active, fields)
             VALUES ('c1', 1, 1, 'Łukasz Öz', 'LUKASZ@X.IO', 1, '{}'),
                    ('c1', 2, 1, 'Ann', 'ann@x.io', 0, '{}')",
            "INSERT INTO identities (id, name, status, emails, attributes, gone, updated_at)
             VALUES ('p1', 'Ann', 'leaver', '[\"ann@x.io\"]', '{}', 0, 0)",
        ] {
            sqlx::query(stmt).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let found = store
        .list_accounts(
            "c1",
            &AccountQuery {
                q: Some("łukasz öz".into()),
                ..AccountQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        found.total, 1,
        "the search finds the upgraded non-ASCII name"
    );
    let all = store
        .list_accounts("c1", &AccountQuery::default())
        .await
        .unwrap();
    let ann = all.accounts.iter().find(|a| a.account.id == 2).unwrap();
    let m = ann.matched.as_ref().expect("matches were filled in");
    assert_eq!(m.identity_id.as_deref(), Some("p1"));
    assert_eq!(m.identity_status.as_deref(), Some("leaver"));
    let counts = store.account_counts("c1").await.unwrap();
    assert_eq!((counts.accounts, counts.active), (2, 1));
    // The scan from before the upgrade still answers, without a recorded match.
    let then = store
        .list_accounts(
            "c1",
            &AccountQuery {
                at_scan: Some(1),
                ..AccountQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(then.total, 2);
    store.close().await;
    // Opening again changes nothing more.
    let again = SqliteStore::open(&path).await.unwrap();
    assert_eq!(again.account_counts("c1").await.unwrap(), counts);
}

/// A database written by the landed build (migrations 1-4: scans numbered by id, versions
/// keyed by scan, leases without generations, audit entries) opened by this build: history
/// at each scan, the audit chain and the lease all carry over.
#[tokio::test]
async fn a_database_from_the_landed_build_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("landed.db");
    let hash;
    {
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .unwrap()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(opts).await.unwrap();
        let mut old = sqlx::migrate!("./migrations/sqlite");
        old.migrations = Cow::Owned(old.migrations[..4].to_vec());
        old.run(&pool).await.unwrap();
        let record = accessrail_domain::AuditRecord {
            at: 5,
            actor: "token:admin".into(),
            connection: "acme".into(),
            action: "deactivate".into(),
            target: "ann@x.io".into(),
            before: Some("active".into()),
            after: Some("inactive".into()),
            calls: vec!["update_user/2".into()],
            outcome: accessrail_domain::Outcome::Done,
            message: None,
        };
        hash = accessrail_domain::audit::chain_hash(accessrail_domain::audit::GENESIS, &record);
        for stmt in [
            "INSERT INTO connections (id, name, base_url, email, secret, secret_key_id, created_at, updated_at)
             VALUES ('c1', 'acme', 'https://acme.testrail.io', 'admin@acme.io', x'01', 'k', 0, 0)",
            "INSERT INTO scans (id, connection_id, started_at, finished_at, status) VALUES (1, 'c1', 10, 11, 'succeeded')",
            "INSERT INTO scans (id, connection_id, started_at, finished_at, status, error) VALUES (2, 'c1', 20, 21, 'failed', 'x')",
            "INSERT INTO scans (id, connection_id, started_at, finished_at, status, kind) VALUES (3, 'c1', 30, 30, 'succeeded', 'provision')",
            "INSERT INTO account_versions (connection_id, tr_user_id, valid_from_scan, valid_to_scan, name, email, is_active, fields)
             VALUES ('c1', 2, 1, 3, 'Ann', 'ann@x.io', 1, '{}'), ('c1', 2, 3, NULL, 'Ann', 'ann@x.io', 0, '{}')",
            "INSERT INTO group_versions (connection_id, tr_group_id, valid_from_scan, name) VALUES ('c1', 7, 1, 'QA')",
            "INSERT INTO membership_versions (connection_id, tr_group_id, tr_user_id, valid_from_scan) VALUES ('c1', 7, 2, 1)",
            "INSERT INTO leases (name, holder, expires_at) VALUES ('scan:c1', 'old', 0)",
        ] {
            sqlx::query(stmt).execute(&pool).await.unwrap();
        }
        sqlx::query(
            "INSERT INTO audit_log (at, actor, connection, action, target, before, after, calls, outcome, message, prev_hash, hash)
             VALUES (5, 'token:admin', 'acme', 'deactivate', 'ann@x.io', 'active', 'inactive', '[\"update_user/2\"]', 'done', NULL, ?, ?)",
        )
        .bind(accessrail_domain::audit::GENESIS)
        .bind(&hash)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let at1 = store.accounts_at_scan("c1", 1).await.unwrap();
    assert_eq!(at1.len(), 1);
    assert!(at1[0].is_active, "history at scan 1 carries over");
    assert_eq!(at1[0].group_ids, vec![7]);
    assert!(!store.current_accounts("c1").await.unwrap()[0].is_active);
    assert!(
        store.accounts_at_scan("c1", 2).await.is_err(),
        "a failed scan has no revision"
    );
    let log = store.audit_log().await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].hash, hash, "audit entries are copied unchanged");
    let lease = store
        .acquire_lease("scan:c1", "new", 100, 60)
        .await
        .unwrap()
        .expect("the released lease is free");
    assert!(lease.generation >= 1);
    // New revisions come after the old ones.
    let p = store
        .record_provision(
            "c1",
            1,
            200,
            crate::model::ProvisionUpdate {
                account: None,
                group: None,
                joined: vec![],
                changes: vec![],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let rev: i64 = sqlx::query_scalar("SELECT revision FROM scans WHERE id = ?")
        .bind(p)
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert!(
        rev > 3,
        "revision {rev} follows the landed build's revisions"
    );
}
