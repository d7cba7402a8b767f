//! Activity evidence in the store: a piece read twice (the watermark's overlap) is kept once;
//! each account's latest piece and its counts; evidence scans with their watermark.

use accessrail_store::{EvidenceRecord, NewConnection, SealedSecret, Store};

use super::Backend;

fn piece(kind: &str, id: u64, user: u64, at: i64) -> EvidenceRecord {
    EvidenceRecord {
        kind: kind.into(),
        artefact_id: id,
        tr_user_id: user,
        at,
        project_id: Some(1),
        run_id: (kind == "result").then_some(9),
    }
}

pub async fn evidence_is_kept_once_with_latest_and_counts<B: Backend>(b: &B) {
    let store = b.fresh().await;
    store
        .insert_connection(NewConnection {
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
        })
        .await
        .unwrap();
    let day = 86_400;
    let now = 1000 * day;
    let run = store
        .begin_evidence_run("c1", now, now - 180 * day)
        .await
        .unwrap();
    let first = vec![
        piece("result", 1, 7, now - 100 * day),
        piece("result", 2, 7, now - 10 * day),
        piece("case_updated", 5, 8, now - 40 * day),
        piece("case_updated", 5, 8, now - 20 * day),
        piece("run", 3, 8, now - 200 * day),
    ];
    assert_eq!(store.add_evidence("c1", first.clone()).await.unwrap(), 5);
    // The overlap reads some again: nothing is kept twice.
    assert_eq!(
        store
            .add_evidence("c1", first[1..3].to_vec())
            .await
            .unwrap(),
        0
    );
    store
        .finish_evidence_run(run, "succeeded", 12, 12, 5, None, now + 5)
        .await
        .unwrap();
    let runs = store.evidence_runs("c1").await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].status.as_str(), runs[0].requests, runs[0].read_from),
        ("succeeded", 12, now - 180 * day)
    );
    let all = store.account_evidence("c1", now, None).await.unwrap();
    assert_eq!(all.len(), 2);
    let a7 = all.iter().find(|a| a.tr_user_id == 7).unwrap();
    assert_eq!(
        (a7.latest.kind.as_str(), a7.latest.artefact_id, a7.latest.at),
        ("result", 2, now - 10 * day)
    );
    assert_eq!(a7.latest.run_id, Some(9));
    assert_eq!(
        (a7.last_30_days, a7.last_90_days, a7.results_90_days),
        (1, 1, 1)
    );
    let a8 = all.iter().find(|a| a.tr_user_id == 8).unwrap();
    assert_eq!(
        (a8.latest.kind.as_str(), a8.latest.at),
        ("case_updated", now - 20 * day)
    );
    assert_eq!((a8.last_30_days, a8.last_90_days), (1, 2));
    // One account's own, as for its page: the same figures, nobody else's.
    let one = store.account_evidence("c1", now, Some(8)).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(&one[0], a8);
    assert!(
        store
            .account_evidence("c1", now, Some(999))
            .await
            .unwrap()
            .is_empty()
    );
    let failed = store.begin_evidence_run("c1", now + 10, now).await.unwrap();
    store
        .finish_evidence_run(
            failed,
            "failed",
            3,
            9,
            0,
            Some("TestRail answered 500"),
            now + 11,
        )
        .await
        .unwrap();
    let runs = store.evidence_runs("c1").await.unwrap();
    assert_eq!(runs[1].error.as_deref(), Some("TestRail answered 500"));
}
