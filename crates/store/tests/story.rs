//! The store on a real database file: versions, history at a scan, failed scans, leases,
//! identities and overrides.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use accessrail_domain::{Account, Identity, IdentityStatus, OverrideKind};
use accessrail_store::{
    GroupRecord, NewConnection, OverrideRecord, RoleRecord, ScanReport, ScanStatus, ScanWriter,
    SealedSecret, SqliteStore, Store,
};

fn account(id: u64, email: &str, active: bool, role: u64) -> Account {
    Account {
        id,
        name: Some(format!("User {id}")),
        email: Some(email.into()),
        is_active: active,
        role_id: Some(role),
        role: Some(if role == 1 {
            "Lead".into()
        } else {
            "Tester".into()
        }),
        is_admin: Some(false),
        group_ids: vec![],
        fields: serde_json::json!({"id": id, "email": email, "group_ids": [1]}),
    }
}

fn report() -> ScanReport {
    ScanReport {
        groups_fetched: true,
        roles_fetched: true,
        ..ScanReport::default()
    }
}

async fn scan(
    store: &SqliteStore,
    cid: &str,
    now: i64,
    accounts: &[Account],
    groups: &[GroupRecord],
) -> accessrail_store::CommitSummary {
    let mut w = store.begin_scan(cid, now).await.unwrap();
    // Pages arrive in pieces.
    for chunk in accounts.chunks(2) {
        w.stage_accounts(chunk).await.unwrap();
    }
    w.stage_groups(groups).await.unwrap();
    w.stage_roles(&[RoleRecord {
        id: 1,
        name: Some("Lead".into()),
        is_default: Some(false),
        is_project_admin: None,
    }])
    .await
    .unwrap();
    w.commit(report(), now).await.unwrap()
}

#[tokio::test]
async fn versions_history_failures_leases_identities() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let conn = store
        .insert_connection(NewConnection {
            id: "c1".into(),
            name: "acme".into(),
            base_url: "https://acme.testrail.io".into(),
            email: "admin@acme.io".into(),
            secret: SealedSecret {
                key_id: "k".into(),
                bytes: vec![1, 2, 3],
            },
            request_budget: Some(60),
            groups_supported: None,
            scan_interval_secs: None,
            now: 100,
        })
        .await
        .unwrap();
    assert_eq!(conn.request_budget, Some(60));
    assert!(
        store
            .insert_connection(NewConnection {
                id: "c2".into(),
                ..new_conn()
            })
            .await
            .is_err(),
        "names are unique"
    );

    let g = |id, members: &[u64]| GroupRecord {
        id,
        name: Some(format!("G{id}")),
        member_ids: members.to_vec(),
    };
    let v1 = vec![
        account(1, "a@x.io", true, 3),
        account(2, "b@x.io", true, 3),
        account(3, "c@x.io", false, 3),
    ];
    let s1 = scan(&store, "c1", 1000, &v1, &[g(1, &[1, 2])]).await;
    assert_eq!(
        (s1.account_rows_written, s1.changes, s1.active_seats),
        (3, 0, 2)
    );
    // The same data again: nothing written.
    let s2 = scan(&store, "c1", 2000, &v1, &[g(1, &[1, 2])]).await;
    assert_eq!((s2.rows_written, s2.changes), (0, 0));
    // Changes: b deactivated and promoted, d added, c gone from the list, group membership moved.
    let v3 = vec![
        account(1, "a@x.io", true, 3),
        account(2, "b@x.io", false, 1),
        account(4, "d@x.io", true, 3),
    ];
    let s3 = scan(&store, "c1", 3000, &v3, &[g(1, &[1, 4])]).await;
    let kinds: Vec<String> = store
        .changes("c1", None, Some(s3.scan_id))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.kind)
        .collect();
    for k in [
        "account_deactivated",
        "role_changed",
        "account_added",
        "account_missing",
        "group_joined",
        "group_left",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    let current = store.current_accounts("c1").await.unwrap();
    assert_eq!(
        current.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![1, 2, 4]
    );
    assert_eq!(current[0].group_ids, vec![1]);
    assert_eq!(
        current[0].fields.get("group_ids"),
        None,
        "memberships live in their own rows"
    );
    // History: what scan 1 saw.
    let then = store.accounts_at_scan("c1", s1.scan_id).await.unwrap();
    assert_eq!(
        then.iter().map(|a| (a.id, a.is_active)).collect::<Vec<_>>(),
        vec![(1, true), (2, true), (3, false)]
    );
    assert_eq!(then[1].group_ids, vec![1]);
    // Changes since a time.
    assert!(
        store
            .changes("c1", Some(2500), None)
            .await
            .unwrap()
            .iter()
            .all(|c| c.at >= 2500)
    );
    assert_eq!(
        store.changes("c1", Some(3001), None).await.unwrap().len(),
        0
    );

    // A failed scan leaves everything as it was.
    let mut w = store.begin_scan("c1", 4000).await.unwrap();
    w.stage_accounts(&[account(1, "changed@x.io", false, 1)])
        .await
        .unwrap();
    w.fail("reading users: TestRail server error", report(), 4001)
        .await
        .unwrap();
    assert_eq!(store.current_accounts("c1").await.unwrap(), current);
    let scans = store.scans("c1").await.unwrap();
    assert_eq!(scans.last().map(|s| s.status), Some(ScanStatus::Failed));
    assert_eq!(
        scans.iter().map(|s| s.active_seats).collect::<Vec<_>>(),
        vec![2, 2, 2, 0]
    );

    // Leases: exclusive until expiry or release.
    assert!(
        store
            .acquire_lease("scan:c1", "p1", 5000, 60)
            .await
            .unwrap()
    );
    assert!(
        !store
            .acquire_lease("scan:c1", "p2", 5010, 60)
            .await
            .unwrap()
    );
    assert!(
        store
            .acquire_lease("scan:c1", "p1", 5020, 60)
            .await
            .unwrap(),
        "the holder renews"
    );
    assert!(
        store
            .acquire_lease("scan:c1", "p2", 5081, 60)
            .await
            .unwrap(),
        "expired leases are taken over"
    );
    store.release_lease("scan:c1", "p2").await.unwrap();
    assert!(
        store
            .acquire_lease("scan:c1", "p3", 5082, 60)
            .await
            .unwrap()
    );

    // Identities: full import marks missing ones gone; partial only upserts.
    let ident = |id: &str, status| Identity {
        id: id.into(),
        name: id.into(),
        emails: vec![format!("{id}@x.io")],
        status,
        attributes: Default::default(),
        gone: false,
    };
    let s = store
        .import_identities(
            vec![
                ident("a", IdentityStatus::Active),
                ident("b", IdentityStatus::Active),
            ],
            true,
            1,
        )
        .await
        .unwrap();
    assert_eq!((s.added, s.marked_gone), (2, 0));
    let s = store
        .import_identities(vec![ident("b", IdentityStatus::Leaver)], false, 2)
        .await
        .unwrap();
    assert_eq!((s.updated, s.marked_gone), (1, 0));
    let s = store
        .import_identities(vec![ident("b", IdentityStatus::Leaver)], true, 3)
        .await
        .unwrap();
    assert_eq!((s.unchanged, s.marked_gone), (1, 1));
    let all = store.identities().await.unwrap();
    assert!(all.iter().find(|i| i.id == "a").unwrap().gone);

    // Overrides: one pin per account.
    store
        .set_override(
            "c1",
            OverrideRecord {
                account_id: 1,
                identity_id: "a".into(),
                kind: OverrideKind::Pin,
            },
            1,
        )
        .await
        .unwrap();
    store
        .set_override(
            "c1",
            OverrideRecord {
                account_id: 1,
                identity_id: "b".into(),
                kind: OverrideKind::Pin,
            },
            2,
        )
        .await
        .unwrap();
    store
        .set_override(
            "c1",
            OverrideRecord {
                account_id: 2,
                identity_id: "a".into(),
                kind: OverrideKind::Exclude,
            },
            3,
        )
        .await
        .unwrap();
    let o = store.overrides("c1").await.unwrap();
    assert_eq!(o.len(), 2);
    assert_eq!(o[0].identity_id, "b");
    assert_eq!(store.clear_override("c1", 1, None).await.unwrap(), 1);

    // Everything survives reopening the file; removing the connection removes its history.
    store.close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.current_accounts("c1").await.unwrap().len(), 3);
    assert!(store.remove_connection("acme").await.unwrap());
    assert!(store.current_accounts("c1").await.unwrap().is_empty());
    assert!(store.scans("c1").await.unwrap().is_empty());
}

fn new_conn() -> NewConnection {
    NewConnection {
        id: "c1".into(),
        name: "acme".into(),
        base_url: "https://acme.testrail.io".into(),
        email: "admin@acme.io".into(),
        secret: SealedSecret {
            key_id: "k".into(),
            bytes: vec![1],
        },
        request_budget: None,
        groups_supported: None,
        scan_interval_secs: None,
        now: 0,
    }
}
