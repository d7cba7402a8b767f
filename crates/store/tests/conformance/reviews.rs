//! Access reviews in the store: items kept as frozen, a reviewer's decisions only on their own
//! items, refused once submitted (until sent back), approval only of a waiting submission, the
//! digest of what was submitted, one next round per recurring review, outcomes and the close,
//! reviewer sign-ins kept apart from administrator tokens, owners.

use accessrail_store::{
    ItemOutcome, NewConnection, NewReview, ReviewClose, ReviewDecision, ReviewItemRecord,
    SealedSecret, Store, StoreError,
};

use super::Backend;

fn conn() -> NewConnection {
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

fn review(previous: Option<i64>) -> NewReview {
    NewReview {
        connection_id: "c1".into(),
        scope: "active".into(),
        scan_id: 1,
        undecided: "keep".into(),
        every: Some("3mo".into()),
        fallbacks: vec!["fb@x.io".into()],
        due_at: Some(1000),
        created_at: 10,
        created_by: "cli:test".into(),
        previous_id: previous,
        next_start_at: Some(500),
    }
}

fn item(n: i64, email: &str, reviewer: &str) -> ReviewItemRecord {
    ReviewItemRecord {
        item: n,
        tr_user_id: n as u64 + 100,
        email: email.into(),
        name: format!("Person {n}"),
        reviewer: reviewer.into(),
        route: "manager".into(),
        snapshot:
            r#"{"active":true,"is_admin":false,"role":"Tester","groups":["QA"],"projects":null}"#
                .into(),
        identity: None,
        ..Default::default()
    }
}

fn decision(item: i64, d: &str, comment: Option<&str>) -> ReviewDecision {
    ReviewDecision {
        item,
        decision: Some(d.into()),
        action: (d == "revoke").then(|| "deactivate".to_string()),
        comment: comment.map(str::to_string),
        by: "token:x".into(),
        at: 20,
    }
}

pub async fn review_records_and_their_rules<B: Backend>(b: &B) {
    let store = b.fresh().await;
    store.insert_connection(conn()).await.unwrap();
    // Reviewer sign-ins are not administrator tokens.
    store.create_token("admin", "h-admin", 1).await.unwrap();
    store
        .create_reviewer_token("mgr", "h-mgr", "mgr@x.io", 1)
        .await
        .unwrap();
    assert_eq!(
        store.token_by_hash("h-admin").await.unwrap().as_deref(),
        Some("admin")
    );
    assert_eq!(
        store.token_by_hash("h-mgr").await.unwrap(),
        None,
        "never an admin token"
    );
    let auth = store.token_auth_by_hash("h-mgr").await.unwrap().unwrap();
    assert_eq!(
        (auth.name.as_str(), auth.reviewer.as_deref()),
        ("mgr", Some("mgr@x.io"))
    );
    assert!(
        store
            .create_reviewer_token("mgr", "h2", "other@x.io", 2)
            .await
            .is_err()
    );
    assert!(store.revoke_token("mgr", 3).await.unwrap());
    assert_eq!(store.token_auth_by_hash("h-mgr").await.unwrap(), None);
    // A revoked reviewer name reused for an administrator token is an administrator token.
    store.create_token("mgr", "h-mgr-admin", 4).await.unwrap();
    let auth = store
        .token_auth_by_hash("h-mgr-admin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(auth.reviewer, None);

    // Owners.
    assert!(
        store
            .set_owner("c1", "group", 7, "QA", Some("Lead@X.io"), 5)
            .await
            .unwrap()
    );
    store
        .set_owner("c1", "project", 3, "Mobile", Some("m@x.io"), 5)
        .await
        .unwrap();
    let owners = store.owners("c1").await.unwrap();
    assert_eq!(owners.len(), 2);
    assert_eq!(owners[0].owner_email, "lead@x.io", "kept in lower case");
    assert!(
        store
            .set_owner("c1", "group", 7, "QA", None, 6)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_owner("c1", "group", 7, "QA", None, 6)
            .await
            .unwrap()
    );

    // A review with three items, two reviewers.
    let id = store
        .create_review(
            review(None),
            vec![
                item(1, "a@x.io", "mgr@x.io"),
                item(2, "b@x.io", "mgr@x.io"),
                item(3, "c@x.io", "fb@x.io"),
            ],
        )
        .await
        .unwrap();
    let r = store.review(id).await.unwrap().unwrap();
    assert_eq!((r.items, r.decided, r.status.as_str()), (3, 0, "open"));
    assert_eq!(r.fallbacks, vec!["fb@x.io".to_string()]);
    assert_eq!(store.reviews(Some("c1")).await.unwrap().len(), 1);
    assert_eq!(store.reviews(Some("other")).await.unwrap().len(), 0);
    assert_eq!(
        store
            .review_items(id, Some("MGR@x.io"))
            .await
            .unwrap()
            .len(),
        2
    );

    // Decisions only on one's own items; all or nothing.
    let err = store
        .decide_review_items(
            id,
            "mgr@x.io",
            vec![decision(1, "keep", None), decision(3, "keep", None)],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(
        store
            .review_items(id, None)
            .await
            .unwrap()
            .iter()
            .all(|i| i.decision.is_none())
    );
    store
        .decide_review_items(
            id,
            "mgr@x.io",
            vec![
                decision(1, "keep", None),
                decision(2, "revoke", Some("left")),
            ],
        )
        .await
        .unwrap();
    let progress = store.review_progress(id).await.unwrap();
    assert_eq!(progress.len(), 2);
    assert_eq!(
        (
            progress[1].reviewer.as_str(),
            progress[1].items,
            progress[1].decided
        ),
        ("mgr@x.io", 2, 2)
    );

    // Submit: the digest covers the decisions; submitted decisions are final.
    let digest = store
        .submit_review(id, "mgr@x.io", "reviewer:mgr", 30)
        .await
        .unwrap();
    assert_eq!(digest.len(), 64);
    assert!(matches!(
        store
            .submit_review(id, "mgr@x.io", "reviewer:mgr", 31)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .decide_review_items(id, "mgr@x.io", vec![decision(1, "revoke", Some("x"))])
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.submit_review(id, "nobody@x.io", "token:x", 31).await,
        Err(StoreError::NotFound(_))
    ));
    // Approval only of a waiting submission; sent back, it can change and be submitted again.
    assert!(
        store
            .judge_submission(id, "fb@x.io", true, "ciso", None, 40)
            .await
            .is_err()
    );
    store
        .judge_submission(id, "mgr@x.io", false, "ciso", Some("check b"), 40)
        .await
        .unwrap();
    assert!(
        store
            .judge_submission(id, "mgr@x.io", true, "ciso", None, 41)
            .await
            .is_err()
    );
    store
        .decide_review_items(id, "mgr@x.io", vec![decision(2, "keep", None)])
        .await
        .unwrap();
    let digest2 = store
        .submit_review(id, "mgr@x.io", "reviewer:mgr", 50)
        .await
        .unwrap();
    assert_ne!(digest, digest2, "the digest follows the decisions");
    store
        .judge_submission(id, "mgr@x.io", true, "ciso", None, 60)
        .await
        .unwrap();
    let subs = store.review_submissions(id).await.unwrap();
    assert_eq!(subs[0].status, "approved");
    assert_eq!(subs[0].submitted_by, "reviewer:mgr");
    // An approved submission can still be sent back while the review is open; then approved
    // again after a new submission.
    store
        .judge_submission(id, "mgr@x.io", false, "ciso", Some("one more look"), 61)
        .await
        .unwrap();
    assert!(
        store
            .judge_submission(id, "mgr@x.io", true, "ciso", None, 62)
            .await
            .is_err()
    );
    store
        .submit_review(id, "mgr@x.io", "reviewer:mgr", 63)
        .await
        .unwrap();
    store
        .judge_submission(id, "mgr@x.io", true, "ciso", None, 64)
        .await
        .unwrap();
    let subs = store.review_submissions(id).await.unwrap();
    assert_eq!(subs[0].digest, digest2);
    assert_eq!(subs[0].comment, None, "a new submission starts clean");

    // One next round per recurring review.
    let next = store
        .create_review(review(Some(id)), vec![item(1, "a@x.io", "mgr@x.io")])
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_review(review(Some(id)), vec![item(1, "a@x.io", "mgr@x.io")])
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.review(next).await.unwrap().unwrap().previous_id,
        Some(id)
    );

    // While a close holds the review, decisions, submissions and approvals wait; outcomes are
    // recorded only for a review being closed.
    assert!(matches!(
        store.record_review_outcomes(id, vec![], None).await,
        Err(StoreError::Conflict(_))
    ));
    store.begin_review_close(id).await.unwrap();
    store.begin_review_close(id).await.unwrap();
    assert!(matches!(
        store
            .decide_review_items(id, "fb@x.io", vec![decision(3, "keep", None)])
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        store
            .submit_review(id, "fb@x.io", "token:x", 65)
            .await
            .is_err()
    );
    // A partly failed close: outcomes so far recorded, the review open again, final items frozen.
    store
        .record_review_outcomes(
            id,
            vec![ItemOutcome {
                item: 1,
                final_decision: "keep".into(),
                final_source: "reviewer".into(),
                outcome: "kept".into(),
                audit_id: None,
                at: 66,
            }],
            None,
        )
        .await
        .unwrap();
    assert_eq!(store.review(id).await.unwrap().unwrap().status, "open");
    store
        .judge_submission(id, "mgr@x.io", false, "ciso", Some("reopen"), 67)
        .await
        .unwrap();
    assert!(
        matches!(
            store
                .decide_review_items(id, "mgr@x.io", vec![decision(1, "revoke", Some("x"))])
                .await,
            Err(StoreError::Conflict(_))
        ),
        "an item with a final outcome keeps its decision"
    );
    store
        .decide_review_items(id, "mgr@x.io", vec![decision(2, "keep", None)])
        .await
        .unwrap();
    store.begin_review_close(id).await.unwrap();
    store.end_review_close(id).await.unwrap();
    assert_eq!(store.review(id).await.unwrap().unwrap().status, "open");

    // Outcomes, then the close; a closed review changes no more.
    store.begin_review_close(id).await.unwrap();
    store
        .record_review_outcomes(
            id,
            vec![ItemOutcome {
                item: 3,
                final_decision: "keep".into(),
                final_source: "undecided (review setting: keep)".into(),
                outcome: "kept".into(),
                audit_id: None,
                at: 70,
            }],
            Some(ReviewClose {
                at: 70,
                by: "cli:test".into(),
                outcome: "{}".into(),
            }),
        )
        .await
        .unwrap();
    let store = b.reopen(store).await;
    let r = store.review(id).await.unwrap().unwrap();
    assert_eq!((r.status.as_str(), r.closed_at), ("closed", Some(70)));
    let items = store.review_items(id, None).await.unwrap();
    assert_eq!(items[2].outcome.as_deref(), Some("kept"));
    assert_eq!(
        items[1].comment, None,
        "keep replaced the revoke and its comment"
    );
    assert!(matches!(
        store
            .decide_review_items(id, "fb@x.io", vec![decision(3, "keep", None)])
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        store
            .record_review_outcomes(id, vec![], None)
            .await
            .is_err()
    );
    assert!(matches!(
        store.begin_review_close(id).await,
        Err(StoreError::Conflict(_))
    ));
}
