//! The store's story, generic over the back end: versions, history at a scan, failed scans,
//! leases, revisions under concurrent provisioning, identities and overrides.

use accessrail_domain::{Account, ChangeKind, Fields, Identity, IdentityStatus, OverrideKind};
use accessrail_store::{
    GroupRecord, LeaseToken, NewChange, NewConnection, OverrideRecord, ProvisionUpdate, RoleRecord,
    ScanReport, ScanStatus, ScanWriter, SealedSecret, Store,
};

use super::Backend;

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
        fields: Fields::from_value(serde_json::json!({"id": id, "email": email, "group_ids": [1]})),
    }
}

fn report() -> ScanReport {
    ScanReport {
        groups_fetched: true,
        roles_fetched: true,
        ..ScanReport::default()
    }
}

async fn take_lease<S: Store>(store: &S, cid: &str, now: i64) -> LeaseToken {
    store
        .acquire_lease(&format!("scan:{cid}"), "scanner", now, 600)
        .await
        .unwrap()
        .expect("the scan lease is free")
}

async fn scan<S: Store>(
    store: &S,
    cid: &str,
    now: i64,
    accounts: &[Account],
    groups: &[GroupRecord],
) -> accessrail_store::CommitSummary {
    let lease = take_lease(store, cid, now).await;
    let mut w = store.begin_scan(cid, now, lease).await.unwrap();
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

pub async fn versions_history_failures_leases_identities<B: Backend>(b: &B) {
    let store = b.fresh().await;
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
    let lease = take_lease(&store, "c1", 4000).await;
    let mut w = store.begin_scan("c1", 4000, lease).await.unwrap();
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

    // Leases: exclusive until expiry or release; each new holder gets a higher generation.
    store.release_lease("scan:c1", "scanner").await.unwrap();
    let p1 = store
        .acquire_lease("scan:c1", "p1", 5000, 60)
        .await
        .unwrap()
        .expect("free");
    assert!(
        store
            .acquire_lease("scan:c1", "p2", 5010, 60)
            .await
            .unwrap()
            .is_none()
    );
    let again = store
        .acquire_lease("scan:c1", "p1", 5020, 60)
        .await
        .unwrap()
        .expect("the holder renews");
    assert_eq!(again.generation, p1.generation);
    assert!(store.renew_lease(&p1, 5030, 60).await.unwrap());
    let p2 = store
        .acquire_lease("scan:c1", "p2", 5091, 60)
        .await
        .unwrap()
        .expect("expired leases are taken over");
    assert!(p2.generation > p1.generation);
    assert!(
        !store.renew_lease(&p1, 5092, 60).await.unwrap(),
        "the old holder is fenced off"
    );
    store.release_lease("scan:c1", "p2").await.unwrap();
    assert!(!store.renew_lease(&p2, 5093, 60).await.unwrap());
    let p3 = store
        .acquire_lease("scan:c1", "p3", 5094, 60)
        .await
        .unwrap()
        .expect("a released lease is free");
    assert!(p3.generation > p2.generation, "generations never go back");

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
    assert_eq!(store.clear_override("c1", 1, None, 0).await.unwrap(), 1);

    // Everything survives reopening the file; removing the connection removes its history.
    let store = b.reopen(store).await;
    assert_eq!(store.current_accounts("c1").await.unwrap().len(), 3);
    assert!(store.remove_connection("acme").await.unwrap());
    assert!(store.current_accounts("c1").await.unwrap().is_empty());
    assert!(store.scans("c1").await.unwrap().is_empty());
}

/// Issue: a scan's revision was taken when it started, so a provisioning revision recorded
/// while it ran got a higher number and the scan's older read overwrote it: the account showed
/// twice at the scan, the deactivation vanished from history and a false
/// `account_reactivated` appeared. Revisions are now numbered at commit, and the scan leaves
/// alone what a newer revision wrote.
pub async fn provisioning_during_a_scan_is_neither_lost_nor_duplicated<B: Backend>(b: &B) {
    let store = b.fresh().await;
    store.insert_connection(new_conn()).await.unwrap();
    let g = |id, members: &[u64]| GroupRecord {
        id,
        name: Some(format!("G{id}")),
        member_ids: members.to_vec(),
    };
    let before = vec![
        account(1, "leaver@x.io", true, 2),
        account(2, "stays@x.io", true, 2),
    ];
    let s1 = scan(&store, "c1", 1000, &before, &[g(7, &[1, 2])]).await;

    // Scan 2 starts and reads TestRail: the leaver is still active and in G7.
    let lease = take_lease(&store, "c1", 2000).await;
    let mut w = store.begin_scan("c1", 2000, lease).await.unwrap();
    w.stage_accounts(&before).await.unwrap();
    w.stage_groups(&[g(7, &[1, 2])]).await.unwrap();

    // Meanwhile provisioning deactivates the leaver and removes them from G7.
    let audit_id = 1;
    let p1 = store
        .record_provision(
            "c1",
            audit_id,
            2001,
            ProvisionUpdate {
                account: Some(account(1, "leaver@x.io", false, 2)),
                group: None,
                joined: vec![],
                changes: vec![NewChange {
                    kind: ChangeKind::AccountDeactivated,
                    user: Some(1),
                    group: None,
                    subject: Some("leaver@x.io".into()),
                    before: Some("active".into()),
                    after: Some("inactive".into()),
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let p2 = store
        .record_provision(
            "c1",
            audit_id,
            2002,
            ProvisionUpdate {
                account: None,
                group: Some(g(7, &[2])),
                joined: vec![],
                changes: vec![NewChange {
                    kind: ChangeKind::GroupLeft,
                    user: Some(1),
                    group: Some(7),
                    subject: Some("leaver@x.io".into()),
                    before: Some("G7".into()),
                    after: None,
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // Scan 2 commits its older read.
    let s2 = w.commit(report(), 2003).await.unwrap();

    let at_s2 = store.accounts_at_scan("c1", s2.scan_id).await.unwrap();
    assert_eq!(at_s2.len(), 2, "each account once at scan 2: {at_s2:?}");
    let leaver = at_s2.iter().find(|a| a.id == 1).unwrap();
    assert!(!leaver.is_active, "the deactivation is not undone");
    assert!(
        leaver.group_ids.is_empty(),
        "the removal from G7 is not undone"
    );
    let current = store.current_accounts("c1").await.unwrap();
    assert_eq!(current, at_s2);
    let at_s1 = store.accounts_at_scan("c1", s1.scan_id).await.unwrap();
    assert!(at_s1.iter().find(|a| a.id == 1).unwrap().is_active);
    assert_eq!(at_s1.iter().find(|a| a.id == 1).unwrap().group_ids, vec![7]);

    let changes = store.changes("c1", None, None).await.unwrap();
    let kinds: Vec<(&str, i64)> = changes
        .iter()
        .map(|c| (c.kind.as_str(), c.scan_id))
        .collect();
    assert_eq!(
        kinds,
        vec![("account_deactivated", p1), ("group_left", p2)],
        "no invented reactivation or re-join"
    );
    assert_eq!(s2.changes, 0);
    assert_eq!(s2.active_seats, 1);

    // The next scan, which reads TestRail after the provisioning, agrees and writes nothing.
    let after = vec![
        account(1, "leaver@x.io", false, 2),
        account(2, "stays@x.io", true, 2),
    ];
    let s3 = scan(&store, "c1", 3000, &after, &[g(7, &[2])]).await;
    assert_eq!(s3.changes, 0);
    assert_eq!(s3.account_rows_written, 0);
    // A rescan finds the one change among unchanged accounts (the provisioning-written version
    // included), and only that.
    let mut renamed = after.clone();
    renamed[0].name = Some("Renamed".into());
    let s4 = scan(&store, "c1", 4000, &renamed, &[g(7, &[2])]).await;
    assert_eq!((s4.changes, s4.account_rows_written), (1, 2));
    let s5 = scan(&store, "c1", 5000, &renamed, &[g(7, &[2])]).await;
    assert_eq!((s5.changes, s5.account_rows_written), (0, 0));
    let names: Vec<Option<String>> = store
        .current_accounts("c1")
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, vec![Some("Renamed".into()), Some("User 2".into())]);
}

/// Revision numbers never go back, even when the connection that held the highest one is
/// removed (review finding: numbering from `MAX(scans.revision)` did), and provisioning before
/// the first scan does not turn that scan into a flood of "added" changes.
pub async fn revisions_survive_a_removed_connection_and_provisioning_before_the_first_scan<
    B: Backend,
>(
    b: &B,
) {
    let store = b.fresh().await;
    store.insert_connection(new_conn()).await.unwrap();
    store
        .insert_connection(NewConnection {
            id: "c2".into(),
            name: "other".into(),
            ..new_conn()
        })
        .await
        .unwrap();
    let accounts = vec![account(1, "a@x.io", true, 2), account(2, "b@x.io", true, 2)];
    // A deactivation recorded before c1 was ever scanned.
    store
        .record_provision(
            "c1",
            1,
            500,
            ProvisionUpdate {
                account: Some(account(1, "a@x.io", false, 2)),
                group: None,
                joined: vec![],
                changes: vec![],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // c2 is scanned (the highest revision so far), then c1's scan begins, then c2 is removed.
    scan(&store, "c2", 900, &accounts, &[]).await;
    let lease = take_lease(&store, "c1", 1000).await;
    let mut w = store.begin_scan("c1", 1000, lease).await.unwrap();
    w.stage_accounts(&accounts).await.unwrap();
    assert!(store.remove_connection("other").await.unwrap());
    // Provisioning during c1's scan must count as newer than what the scan read.
    store
        .record_provision(
            "c1",
            2,
            1001,
            ProvisionUpdate {
                account: Some(account(2, "b@x.io", false, 2)),
                group: None,
                joined: vec![],
                changes: vec![],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let s = w.commit(report(), 1002).await.unwrap();
    let now = store.current_accounts("c1").await.unwrap();
    let b = now.iter().find(|a| a.id == 2).unwrap();
    assert!(
        !b.is_active,
        "the deactivation during the scan holds: {now:?}"
    );
    assert_eq!(
        s.changes, 0,
        "the first scan is the baseline: no invented changes"
    );
    let kinds: Vec<String> = store
        .changes("c1", None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.kind)
        .collect();
    assert!(
        !kinds
            .iter()
            .any(|k| k == "account_added" || k == "account_reactivated"),
        "{kinds:?}"
    );
}

/// A scan whose lease was taken over (its process stalled past the lease) cannot commit.
pub async fn a_scan_that_lost_its_lease_saves_nothing<B: Backend>(b: &B) {
    let store = b.fresh().await;
    store.insert_connection(new_conn()).await.unwrap();
    let lease = store
        .acquire_lease("scan:c1", "slow", 1000, 60)
        .await
        .unwrap()
        .unwrap();
    let mut w = store.begin_scan("c1", 1000, lease).await.unwrap();
    w.stage_accounts(&[account(1, "a@x.io", true, 2)])
        .await
        .unwrap();
    store
        .acquire_lease("scan:c1", "fast", 1061, 60)
        .await
        .unwrap()
        .expect("expired, taken over");
    let err = w.commit(report(), 1062).await.unwrap_err();
    assert!(err.to_string().contains("lost its lease"), "{err}");
    assert!(store.current_accounts("c1").await.unwrap().is_empty());
}

/// The changes and audit pages read newest first, a page at a time.
pub async fn logs_page_newest_first<B: Backend>(b: &B) {
    let store = b.fresh().await;
    store.insert_connection(new_conn()).await.unwrap();
    for n in 0..5 {
        let rec = accessrail_domain::AuditRecord {
            at: n,
            actor: "token:t".into(),
            connection: "acme".into(),
            action: "deactivate".into(),
            target: format!("u{n}@x.io"),
            before: None,
            after: None,
            calls: vec![],
            outcome: accessrail_domain::Outcome::Done,
            message: None,
        };
        store.append_audit(rec).await.unwrap();
    }
    let first = store.recent_audit(None, 2).await.unwrap();
    let ids: Vec<i64> = first.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] > ids[1], "newest first: {ids:?}");
    let next = store.recent_audit(Some(ids[1]), 10).await.unwrap();
    assert_eq!(next.len(), 3);
    assert!(next.iter().all(|e| e.id < ids[1]));
    let all: Vec<i64> = store
        .audit_log()
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let mut paged: Vec<i64> = first.iter().chain(&next).map(|e| e.id).collect();
    paged.reverse();
    assert_eq!(paged, all);

    let g = |id, members: &[u64]| GroupRecord {
        id,
        name: Some(format!("G{id}")),
        member_ids: members.to_vec(),
    };
    let a = vec![account(1, "a@x.io", true, 2)];
    scan(&store, "c1", 10, &a, &[g(1, &[])]).await;
    scan(&store, "c1", 20, &a, &[g(1, &[1])]).await;
    scan(&store, "c1", 30, &a, &[g(1, &[]), g(2, &[1])]).await;
    let all = store.changes("c1", None, None).await.unwrap();
    assert!(all.len() >= 3, "{all:?}");
    let page = store.recent_changes("c1", None, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|c| c.id).collect::<Vec<_>>(),
        all.iter().rev().take(2).map(|c| c.id).collect::<Vec<_>>()
    );
    let rest = store
        .recent_changes("c1", Some(page[1].id), 100)
        .await
        .unwrap();
    assert_eq!(rest.len(), all.len() - 2);
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

/// Sessions, plans and settings every replica shares: the session cap and expiry, a plan
/// claimed by exactly one of several concurrent appliers, released, applied once, stale.
pub async fn shared_sessions_plans_and_settings<B: Backend>(b: &B)
where
    B::S: Clone,
{
    use accessrail_store::{PlanClaim, PlanRecord, PlanStatus, SessionRecord};
    let store = b.fresh().await;
    let session = |n: i64| SessionRecord {
        id_hash: format!("hash{n}"),
        csrf: format!("csrf{n}"),
        token: "admin".into(),
        token_hash: "th".into(),
        created_at: 100 + n,
    };
    for n in 0..4 {
        store.create_session(session(n), 0, 3).await.unwrap();
    }
    assert_eq!(
        store.session_count().await.unwrap(),
        3,
        "at most three kept"
    );
    assert_eq!(
        store.session("hash0").await.unwrap(),
        None,
        "the oldest went first"
    );
    assert_eq!(store.session("hash3").await.unwrap(), Some(session(3)));
    store.delete_session("hash3").await.unwrap();
    assert_eq!(store.session("hash3").await.unwrap(), None);
    // Expired sessions go before a new one is counted.
    store.create_session(session(9), 103, 3).await.unwrap();
    assert_eq!(store.session_count().await.unwrap(), 1);

    let plan = |id: &str, created_at: i64| PlanRecord {
        id: id.into(),
        connection: "main".into(),
        actions: r#"[{"action":"deactivate","email":"a@x.io"}]"#.into(),
        fingerprint: "fp".into(),
        actor: "token:admin".into(),
        max_deactivations: 5,
        force: false,
        created_at,
        status: PlanStatus::Ready,
        started_at: None,
        outcome: None,
    };
    store.insert_plan(plan("p1", 1000), 0).await.unwrap();
    // Eight appliers at once: exactly one claims it.
    let claims = futures_join_all(&store, "p1", 8).await;
    let claimed = claims
        .iter()
        .filter(|c| matches!(c, PlanClaim::Claimed(_)))
        .count();
    assert_eq!(claimed, 1, "{claims:?}");
    assert!(
        claims
            .iter()
            .all(|c| matches!(c, PlanClaim::Claimed(_) | PlanClaim::BeingApplied))
    );
    if let Some(PlanClaim::Claimed(p)) = claims.iter().find(|c| matches!(c, PlanClaim::Claimed(_)))
    {
        assert_eq!(p.status, PlanStatus::Applying);
        assert_eq!(p.max_deactivations, 5);
        assert_eq!(p.actions, plan("p1", 1000).actions);
    }
    // Handed back untouched: claimable again; applied: never again.
    store.release_plan("p1", PlanStatus::Ready).await.unwrap();
    assert!(matches!(
        store.claim_plan("p1", 0).await.unwrap(),
        PlanClaim::Claimed(_)
    ));
    store.release_plan("p1", PlanStatus::Applied).await.unwrap();
    assert_eq!(
        store.claim_plan("p1", 0).await.unwrap(),
        PlanClaim::AlreadyApplied
    );
    assert_eq!(
        store.claim_plan("nope", 0).await.unwrap(),
        PlanClaim::NotFound
    );
    // An apply starts once: a second start (the same plan's job run again after its process
    // died) is refused, and that apply ends as interrupted, never claimable again.
    store.insert_plan(plan("p5", 1000), 0).await.unwrap();
    assert!(matches!(
        store.claim_plan("p5", 0).await.unwrap(),
        PlanClaim::Claimed(_)
    ));
    assert!(store.start_plan_apply("p5", 1001).await.unwrap());
    assert!(!store.start_plan_apply("p5", 1002).await.unwrap());
    store
        .finish_plan(
            "p5",
            PlanStatus::Interrupted,
            Some(r#"{"error":"cut short"}"#),
        )
        .await
        .unwrap();
    let p5 = store.plan("p5").await.unwrap().unwrap();
    assert_eq!(p5.status, PlanStatus::Interrupted);
    assert_eq!(p5.started_at, Some(1001));
    assert_eq!(p5.outcome.as_deref(), Some(r#"{"error":"cut short"}"#));
    assert_eq!(
        store.claim_plan("p5", 0).await.unwrap(),
        PlanClaim::Interrupted
    );
    // Finishing is for applying plans only: an interrupted plan stays interrupted.
    store
        .finish_plan("p5", PlanStatus::Applied, None)
        .await
        .unwrap();
    assert_eq!(
        store.plan("p5").await.unwrap().unwrap().status,
        PlanStatus::Interrupted
    );
    assert_eq!(store.plan("nope").await.unwrap(), None);
    // Too old to apply: stale, and forgotten.
    store.insert_plan(plan("p2", 500), 0).await.unwrap();
    assert_eq!(store.claim_plan("p2", 900).await.unwrap(), PlanClaim::Stale);
    assert_eq!(
        store.claim_plan("p2", 0).await.unwrap(),
        PlanClaim::NotFound
    );
    // Old plans are forgotten when a new one is kept, whatever their state: one still
    // `applying` long after it was made lost its request before its apply was queued.
    store.insert_plan(plan("p3", 600), 0).await.unwrap();
    assert!(matches!(
        store.claim_plan("p3", 0).await.unwrap(),
        PlanClaim::Claimed(_)
    ));
    store.insert_plan(plan("p6", 1600), 0).await.unwrap();
    assert!(matches!(
        store.claim_plan("p6", 0).await.unwrap(),
        PlanClaim::Claimed(_)
    ));
    store.insert_plan(plan("p4", 2000), 1500).await.unwrap();
    assert_eq!(
        store.claim_plan("p1", 0).await.unwrap(),
        PlanClaim::NotFound
    );
    assert_eq!(store.plan("p3").await.unwrap(), None);
    assert_eq!(
        store.claim_plan("p6", 0).await.unwrap(),
        PlanClaim::BeingApplied,
        "a recent apply is kept"
    );

    // The shared request budget: a sliding minute per TestRail instance.
    let inst = "https://acme.testrail.io/";
    for _ in 0..3 {
        assert_eq!(store.take_request_slot(inst, 3, 1000).await.unwrap(), None);
    }
    assert_eq!(
        store.take_request_slot(inst, 3, 1010).await.unwrap(),
        Some(50),
        "full until the first slot is a minute old"
    );
    assert_eq!(
        store
            .take_request_slot("https://other.testrail.io/", 3, 1010)
            .await
            .unwrap(),
        None,
        "each instance has its own"
    );
    assert_eq!(
        store.take_request_slot(inst, 3, 1060).await.unwrap(),
        None,
        "a minute later there is room"
    );
    assert!(
        store
            .take_request_slot(inst, 3, 1060)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .take_request_slot(inst, 3, 1061)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .take_request_slot(inst, 3, 1061)
            .await
            .unwrap()
            .is_some()
    );

    // A connection's flow rules: kept, replaced, removed; gone with the connection.
    let conn = store
        .insert_connection(NewConnection {
            id: "cf".into(),
            name: "flows".into(),
            base_url: "https://flows.testrail.io/".into(),
            email: "admin@example.com".into(),
            secret: SealedSecret {
                key_id: "k".into(),
                bytes: vec![1, 2, 3],
            },
            request_budget: None,
            groups_supported: None,
            scan_interval_secs: None,
            now: 1,
        })
        .await
        .unwrap();
    assert_eq!(store.flows(&conn.id).await.unwrap(), None);
    store
        .set_flows(&conn.id, Some("[[rule]]\n"), 2)
        .await
        .unwrap();
    store.set_flows(&conn.id, Some("# v2\n"), 3).await.unwrap();
    assert_eq!(
        store.flows(&conn.id).await.unwrap().as_deref(),
        Some("# v2\n")
    );
    store.set_flows(&conn.id, None, 4).await.unwrap();
    assert_eq!(store.flows(&conn.id).await.unwrap(), None);
    store.set_flows(&conn.id, Some("# v3\n"), 5).await.unwrap();
    assert!(store.remove_connection("flows").await.unwrap());
    assert_eq!(store.flows(&conn.id).await.unwrap(), None);

    // A setting is written once; later writers get the first value.
    assert_eq!(
        store.claim_setting("master_key_id", "k1").await.unwrap(),
        "k1"
    );
    assert_eq!(
        store.claim_setting("master_key_id", "k2").await.unwrap(),
        "k1"
    );
    // And it all survives a restart.
    let store = b.reopen(store).await;
    assert_eq!(
        store.claim_setting("master_key_id", "k3").await.unwrap(),
        "k1"
    );
    assert_eq!(store.session_count().await.unwrap(), 1);
}

async fn futures_join_all<S: Store + Clone>(
    store: &S,
    id: &str,
    n: usize,
) -> Vec<accessrail_store::PlanClaim> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let store = store.clone();
        let id = id.to_string();
        set.spawn(async move { store.claim_plan(&id, 0).await.unwrap() });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

/// What the console's page of an account reads: the account with its fields, groups and match;
/// its changes and the audit entries about it, newest first. And the key a session's Test
/// passed, kept for its Save: one per session, expiring, gone with the session.
pub async fn one_account_and_setup_keys<B: Backend>(b: &B) {
    use accessrail_store::{PendingSetupKey, SessionRecord};
    let store = b.fresh().await;
    store.insert_connection(new_conn()).await.unwrap();
    let g = |id, members: &[u64]| GroupRecord {
        id,
        name: Some(format!("G{id}")),
        member_ids: members.to_vec(),
    };
    let v1 = vec![account(1, "a@x.io", true, 3), account(2, "b@x.io", true, 3)];
    scan(&store, "c1", 1000, &v1, &[g(1, &[1]), g(2, &[1, 2])]).await;
    let one = store.account("c1", 1).await.unwrap().expect("account 1");
    assert_eq!(one.account.email.as_deref(), Some("a@x.io"));
    assert_eq!(
        one.groups,
        vec![(1, Some("G1".to_string())), (2, Some("G2".to_string()))]
    );
    assert_eq!(one.account.group_ids, vec![1, 2]);
    assert_eq!(
        one.account.fields.get("email").map(|v| v.to_string()),
        Some("\"a@x.io\"".to_string()),
        "the account's fields come with it"
    );
    assert_eq!(
        one.matched.as_ref().map(|m| m.state),
        Some(accessrail_domain::MatchState::Unmatched)
    );
    assert_eq!(store.account("c1", 99).await.unwrap(), None);
    assert_eq!(store.account("other", 1).await.unwrap(), None);

    // A scan deactivates a; provisioning then changes a's role and b's groups.
    let v2 = vec![
        account(1, "a@x.io", false, 3),
        account(2, "b@x.io", true, 3),
    ];
    scan(&store, "c1", 2000, &v2, &[g(1, &[1]), g(2, &[1, 2])]).await;
    let audit = |target: &str, conn: &str, outcome| accessrail_domain::AuditRecord {
        at: 2100,
        actor: "token:admin".into(),
        connection: conn.into(),
        action: "set_role".into(),
        target: target.into(),
        before: None,
        after: None,
        calls: vec![],
        outcome,
        message: None,
    };
    use accessrail_domain::Outcome;
    let e1 = store
        .append_audit(audit("A@X.io", "acme", Outcome::Done))
        .await
        .unwrap();
    store
        .record_provision(
            "c1",
            e1.id,
            2101,
            ProvisionUpdate {
                account: Some(account(1, "a@x.io", false, 1)),
                group: None,
                joined: vec![],
                changes: vec![NewChange {
                    kind: ChangeKind::RoleChanged,
                    user: Some(1),
                    group: None,
                    subject: Some("a@x.io".into()),
                    before: Some("Tester".into()),
                    after: Some("Lead".into()),
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let e2 = store
        .append_audit(audit("b@x.io", "acme", Outcome::Done))
        .await
        .unwrap();
    store
        .record_provision(
            "c1",
            e2.id,
            2102,
            ProvisionUpdate {
                account: None,
                group: Some(g(1, &[1, 2])),
                joined: vec![],
                changes: vec![NewChange {
                    kind: ChangeKind::GroupJoined,
                    user: Some(2),
                    group: Some(1),
                    subject: Some("b@x.io".into()),
                    before: None,
                    after: Some("G1".into()),
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let e3 = store
        .append_audit(audit("a@x.io", "elsewhere", Outcome::Done))
        .await
        .unwrap();
    // A failed step changed nothing: it is found by its target alone.
    let e4 = store
        .append_audit(audit("a@x.io", "acme", Outcome::Failed))
        .await
        .unwrap();

    let changes = store.account_changes("c1", 1, 10).await.unwrap();
    assert_eq!(
        changes.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>(),
        vec!["role_changed", "account_deactivated"],
        "newest first: {changes:?}"
    );
    assert!(changes.iter().all(|c| c.tr_user_id == Some(1)));
    assert_eq!(changes[0].audit_id, Some(e1.id));
    assert_eq!(store.account_changes("c1", 1, 1).await.unwrap().len(), 1);
    assert!(store.account_changes("c1", 3, 10).await.unwrap().is_empty());
    let one = store.account("c1", 1).await.unwrap().expect("account 1");
    assert_eq!(
        (one.account.is_active, one.account.role.as_deref()),
        (false, Some("Lead")),
        "the current version, provisioning included"
    );

    let ids = |v: Vec<accessrail_store::AuditEntry>| v.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .account_audit("c1", 1, Some("a@x.io"), 10)
            .await
            .unwrap()),
        vec![e4.id, e1.id],
        "by target (any case) and through its changes; not another account's, nor another connection's ({})",
        e3.id
    );
    assert_eq!(
        ids(store.account_audit("c1", 1, None, 10).await.unwrap()),
        vec![e1.id],
        "without an email: through its changes only"
    );
    assert_eq!(
        ids(store
            .account_audit("c1", 1, Some("a@x.io"), 1)
            .await
            .unwrap()),
        vec![e4.id]
    );
    assert_eq!(
        ids(store
            .account_audit("c1", 2, Some("b@x.io"), 10)
            .await
            .unwrap()),
        vec![e2.id]
    );
    assert!(
        store
            .account_audit("nope", 1, Some("a@x.io"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Setup keys: one per live session.
    let session = |n: i64| SessionRecord {
        id_hash: format!("hash{n}"),
        csrf: format!("csrf{n}"),
        token: "admin".into(),
        token_hash: "th".into(),
        created_at: 100 + n,
    };
    store.create_session(session(1), 0, 10).await.unwrap();
    store.create_session(session(2), 0, 10).await.unwrap();
    let key = |n: i64, target: &str, at: i64| PendingSetupKey {
        session_hash: format!("hash{n}"),
        target: target.into(),
        email: "admin@acme.io".into(),
        secret: SealedSecret {
            key_id: "k".into(),
            bytes: vec![n as u8, 9, 9],
        },
        created_at: at,
    };
    store.keep_setup_key(key(1, "acme", 1000), 0).await.unwrap();
    assert_eq!(
        store.setup_key("hash1", 900).await.unwrap(),
        Some(key(1, "acme", 1000))
    );
    assert_eq!(
        store.setup_key("hash1", 1001).await.unwrap(),
        None,
        "kept too long ago"
    );
    assert_eq!(store.setup_key("hash2", 0).await.unwrap(), None);
    // A new Test replaces the session's key.
    store
        .keep_setup_key(key(1, "https://tr.example.com", 1010), 0)
        .await
        .unwrap();
    assert_eq!(
        store.setup_key("hash1", 0).await.unwrap(),
        Some(key(1, "https://tr.example.com", 1010))
    );
    assert!(
        store.keep_setup_key(key(7, "acme", 1000), 0).await.is_err(),
        "only a live session keeps a key"
    );
    // Expired keys go when another is kept.
    store
        .keep_setup_key(key(2, "acme", 2000), 1500)
        .await
        .unwrap();
    assert_eq!(store.setup_key("hash1", 0).await.unwrap(), None);
    assert!(store.setup_key("hash2", 0).await.unwrap().is_some());
    store.drop_setup_key("hash2").await.unwrap();
    assert_eq!(store.setup_key("hash2", 0).await.unwrap(), None);
    // A key goes with its session.
    store.keep_setup_key(key(2, "acme", 2001), 0).await.unwrap();
    store.delete_session("hash2").await.unwrap();
    assert_eq!(store.setup_key("hash2", 0).await.unwrap(), None);
    store.create_session(session(2), 0, 10).await.unwrap();
    assert_eq!(
        store.setup_key("hash2", 0).await.unwrap(),
        None,
        "a new session with the same id has no key"
    );
    // Expired keys are forgotten on their own (hourly), and every key on a key rotation.
    store.keep_setup_key(key(1, "acme", 3000), 0).await.unwrap();
    store.keep_setup_key(key(2, "acme", 3600), 0).await.unwrap();
    assert_eq!(store.forget_setup_keys(Some(3000)).await.unwrap(), 0);
    assert_eq!(store.forget_setup_keys(Some(3001)).await.unwrap(), 1);
    assert_eq!(store.setup_key("hash1", 0).await.unwrap(), None);
    assert!(store.setup_key("hash2", 0).await.unwrap().is_some());
    assert_eq!(store.forget_setup_keys(None).await.unwrap(), 1);
    assert_eq!(store.setup_key("hash2", 0).await.unwrap(), None);
}

fn project(
    id: u64,
    name: &str,
    default: u64,
    groups: &[(u64, u64)],
    users: &[(u64, u64)],
) -> accessrail_domain::project::Project {
    use accessrail_domain::project::{Project, ProjectAccessFacts, ProjectGrant};
    let g = |(id, role_id): &(u64, u64)| ProjectGrant {
        id: *id,
        role_id: *role_id,
        role: Some(format!("R{role_id}")),
    };
    Project {
        id,
        name: Some(name.into()),
        is_completed: false,
        completed_on: None,
        access: Some(ProjectAccessFacts {
            default: Some(g(&(0, default))),
            groups: groups.iter().map(g).collect(),
            users: Some(users.iter().map(g).collect()),
        }),
    }
}

async fn scan_projects<S: Store>(
    store: &S,
    now: i64,
    projects: Vec<accessrail_domain::project::Project>,
) -> accessrail_store::CommitSummary {
    let lease = take_lease(store, "c1", now).await;
    let mut w = store.begin_scan("c1", now, lease).await.unwrap();
    w.stage_accounts(&[
        account(1, "ana@x.io", true, 2),
        account(2, "bo@x.io", true, 2),
    ])
    .await
    .unwrap();
    w.stage_projects(projects).await.unwrap();
    let report = ScanReport {
        projects_fetched: true,
        projects_seen: 2,
        ..report()
    };
    let summary = w.commit(report, now).await.unwrap();
    store.release_lease("scan:c1", "scanner").await.ok();
    summary
}

/// Projects are versioned like accounts: history at a scan, change rows after the baseline,
/// and a project-role change recorded while a scan ran is not undone by that scan's older read.
pub async fn project_access_history_and_a_change_made_during_a_scan<B: Backend>(b: &B) {
    let store = b.fresh().await;
    store.insert_connection(new_conn()).await.unwrap();
    let s1 = scan_projects(
        &store,
        1000,
        vec![
            project(10, "Mobile", 3, &[(7, 2)], &[]),
            project(11, "Web", 4, &[], &[(2, 1)]),
        ],
    )
    .await;
    assert_eq!(s1.changes, 0, "the first sighting is a baseline");
    let s2 = scan_projects(
        &store,
        2000,
        vec![
            project(10, "Mobile", 3, &[(7, 1)], &[(1, 0)]),
            project(12, "Data", 3, &[], &[]),
        ],
    )
    .await;
    let changes = store.changes("c1", None, Some(s2.scan_id)).await.unwrap();
    let mut kinds: Vec<(&str, Option<u64>)> = changes
        .iter()
        .map(|c| (c.kind.as_str(), c.tr_project_id))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("project_access_changed", Some(10)),
            ("project_access_granted", Some(10)),
            ("project_added", Some(12)),
            ("project_removed", Some(11)),
        ],
        "{changes:?}"
    );
    let granted = changes
        .iter()
        .find(|c| c.kind == "project_access_granted")
        .unwrap();
    assert_eq!(
        (
            granted.tr_user_id,
            granted.subject.as_deref(),
            granted.after.as_deref(),
            granted.project.as_deref()
        ),
        (
            Some(1),
            Some("ana@x.io"),
            Some("Global Role"),
            Some("Mobile")
        )
    );
    // History: the projects as each scan saw them.
    let then = store.projects("c1", Some(s1.scan_id)).await.unwrap();
    assert_eq!(then.iter().map(|p| p.id).collect::<Vec<_>>(), vec![10, 11]);
    assert_eq!(then[0].access.as_ref().unwrap().groups[0].role_id, 2);
    let now = store.projects("c1", None).await.unwrap();
    assert_eq!(now.iter().map(|p| p.id).collect::<Vec<_>>(), vec![10, 12]);
    assert_eq!(store.project_changes("c1", 10, 10).await.unwrap().len(), 2);

    // Scan 3 reads TestRail (Bo has no role in Mobile yet)...
    let lease = take_lease(&store, "c1", 3000).await;
    let mut w = store.begin_scan("c1", 3000, lease).await.unwrap();
    w.stage_accounts(&[
        account(1, "ana@x.io", true, 2),
        account(2, "bo@x.io", true, 2),
    ])
    .await
    .unwrap();
    w.stage_projects(vec![
        project(10, "Mobile", 3, &[(7, 1)], &[(1, 0)]),
        project(12, "Data", 3, &[], &[]),
    ])
    .await
    .unwrap();
    // ...meanwhile provisioning gives Bo Lead in Mobile, read back from TestRail...
    store
        .record_provision(
            "c1",
            1,
            3001,
            ProvisionUpdate {
                // The read-back also shows group 7's role changed in TestRail meanwhile.
                project: Some(project(10, "Mobile", 3, &[(7, 2)], &[(1, 0), (2, 1)])),
                project_principal: Some(accessrail_domain::project::Principal::User(2)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let after_provision = store.changes("c1", Some(3001), None).await.unwrap();
    assert_eq!(after_provision.len(), 2, "{after_provision:?}");
    // Only the action's own change points at its audit entry; the other is TestRail's.
    for c in &after_provision {
        let ours = c.tr_user_id == Some(2);
        assert_eq!(c.audit_id, ours.then_some(1), "{c:?}");
    }
    // ...and scan 3 commits its older read: Bo's role stays, nothing is reported revoked.
    let s3 = w
        .commit(
            ScanReport {
                projects_fetched: true,
                projects_seen: 2,
                ..report()
            },
            3002,
        )
        .await
        .unwrap();
    assert_eq!(
        s3.changes,
        0,
        "{:?}",
        store.changes("c1", None, Some(s3.scan_id)).await
    );
    let mobile = store
        .projects("c1", None)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.id == 10)
        .unwrap();
    let access = mobile.access.unwrap();
    let users = access.users.unwrap();
    assert_eq!(
        users.iter().map(|g| (g.id, g.role_id)).collect::<Vec<_>>(),
        vec![(1, 0), (2, 1)]
    );
    assert_eq!(
        access.groups[0].role_id, 2,
        "the group's newer role is kept too"
    );
}
