//! SCIM in the store: tokens bound to one connection and never taken for administrators or
//! reviewers; what SCIM keeps per resource; the deactivation cap's ledger (counted, exempt,
//! held once, approved once, rejected) decided in one transaction, including under
//! concurrent claims.

use accessrail_store::{NewConnection, ScimClaim, ScimResource, SealedSecret, Store};

use super::Backend;

async fn connection<S: Store>(store: &S, id: &str, name: &str) {
    store
        .insert_connection(NewConnection {
            id: id.into(),
            name: name.into(),
            base_url: format!("https://{name}.testrail.io"),
            email: format!("admin@{name}.io"),
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
}

fn resource(tr_id: u64, token: &str, created_by: Option<&str>, at: i64) -> ScimResource {
    ScimResource {
        connection_id: "c1".into(),
        kind: "user".into(),
        tr_id,
        external_id: Some(format!("x-{tr_id}")),
        user_name: None,
        email_meta: Some("{\"type\":\"work\"}".into()),
        token: token.into(),
        created_by: created_by.map(str::to_string),
        created_at: at,
        updated_at: at,
        deleted_at: None,
    }
}

pub async fn scim_tokens_resources_and_the_cap<B: Backend>(b: &B) {
    let store = b.fresh().await;
    connection(&store, "c1", "acme").await;
    connection(&store, "c2", "other").await;
    // A SCIM token is found as one, for its connection, and never as an administrator's or a
    // reviewer's token.
    store
        .create_scim_token("okta", "h-okta", "c1", 0)
        .await
        .unwrap();
    assert_eq!(
        store.scim_token_by_hash("h-okta").await.unwrap(),
        Some(("okta".to_string(), "c1".to_string()))
    );
    assert_eq!(store.token_by_hash("h-okta").await.unwrap(), None);
    assert_eq!(store.token_auth_by_hash("h-okta").await.unwrap(), None);
    assert!(
        store.create_token("okta", "h2", 0).await.is_err(),
        "name taken"
    );
    store.create_token("admin", "h-admin", 0).await.unwrap();
    assert_eq!(store.scim_token_by_hash("h-admin").await.unwrap(), None);
    // Revoked, the name is reused as an administrator token, no longer SCIM.
    assert!(store.revoke_token("okta", 1).await.unwrap());
    assert_eq!(store.scim_token_by_hash("h-okta").await.unwrap(), None);
    store.create_token("okta", "h-new", 2).await.unwrap();
    assert_eq!(
        store.token_by_hash("h-new").await.unwrap().as_deref(),
        Some("okta")
    );
    assert_eq!(store.scim_token_by_hash("h-new").await.unwrap(), None);
    let listed = store.tokens().await.unwrap();
    assert!(listed.iter().all(|t| t.scim_connection.is_none()));

    // Resources: an update keeps who created it and when.
    store
        .put_scim_resource(resource(7, "okta", Some("okta"), 100))
        .await
        .unwrap();
    let mut later = resource(7, "entra", None, 500);
    later.external_id = None;
    later.deleted_at = Some(500);
    store.put_scim_resource(later).await.unwrap();
    let r = store.scim_resource("c1", "user", 7).await.unwrap().unwrap();
    assert_eq!(
        (
            r.created_by.as_deref(),
            r.created_at,
            r.token.as_str(),
            r.external_id,
            r.deleted_at
        ),
        (Some("okta"), 100, "entra", None, Some(500))
    );
    assert_eq!(r.email_meta.as_deref(), Some("{\"type\":\"work\"}"));
    assert!(
        store
            .scim_resource("c1", "group", 7)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.scim_resources("c1", "user").await.unwrap().len(), 1);
    assert!(store.scim_resources("c2", "user").await.unwrap().is_empty());

    // The cap: 2 per window here.
    let now = 10_000;
    let claim = |user: u64, token: &'static str, at: i64| {
        let store = &store;
        async move {
            store
                .scim_claim_deactivation("c1", token, user, &format!("u{user}@x.io"), at, 2, 3600)
                .await
                .unwrap()
        }
    };
    assert_eq!(claim(1, "okta", now).await, ScimClaim::Go);
    assert_eq!(claim(2, "okta", now).await, ScimClaim::Go);
    let ScimClaim::Held(h3) = claim(3, "okta", now).await else {
        panic!("held beyond the cap");
    };
    // Held once: asking again is the same hold.
    assert_eq!(claim(3, "okta", now + 1).await, ScimClaim::Held(h3));
    // An account this token created within the window is exempt; another token's is not.
    store
        .put_scim_resource(resource(8, "okta", Some("okta"), now - 60))
        .await
        .unwrap();
    assert_eq!(claim(8, "okta", now).await, ScimClaim::Go);
    store
        .put_scim_resource(resource(9, "okta", Some("okta"), now - 60))
        .await
        .unwrap();
    assert!(matches!(claim(9, "entra", now).await, ScimClaim::Held(_)));
    // Another connection has its own cap.
    assert_eq!(
        store
            .scim_claim_deactivation("c2", "okta", 1, "u1@x.io", now, 2, 3600)
            .await
            .unwrap(),
        ScimClaim::Go
    );
    let holds = store.scim_holds(Some("c1")).await.unwrap();
    assert_eq!(holds.iter().filter(|h| h.status == "held").count(), 2);
    assert!(store.scim_holds(Some("c2")).await.unwrap().is_empty());
    // Approved once: the next claim goes, the one after is counted anew (and held: the cap).
    assert!(store.scim_decide(h3, true, "admin", now + 5).await.unwrap());
    assert!(
        !store
            .scim_decide(h3, false, "admin", now + 6)
            .await
            .unwrap(),
        "decided"
    );
    assert_eq!(claim(3, "okta", now + 10).await, ScimClaim::Go);
    assert!(matches!(
        claim(3, "okta", now + 11).await,
        ScimClaim::Held(_)
    ));
    // Rejected: refused for good.
    let ScimClaim::Held(h9) = claim(9, "entra", now + 12).await else {
        panic!("still held");
    };
    assert!(
        store
            .scim_decide(h9, false, "admin", now + 13)
            .await
            .unwrap()
    );
    assert_eq!(claim(9, "entra", now + 14).await, ScimClaim::Rejected(h9));
    // After the window, the cap counts afresh.
    assert_eq!(claim(20, "okta", now + 3 * 3600).await, ScimClaim::Go);

    // Concurrent claims never pass the cap together.
    let fresh = b.fresh().await;
    connection(&fresh, "c1", "acme").await;
    let tasks: Vec<_> = (0..8)
        .map(|u| {
            let s = fresh.clone();
            tokio::spawn(async move {
                s.scim_claim_deactivation("c1", "okta", u, "x@x.io", now, 3, 3600)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut went = 0;
    for t in tasks {
        if t.await.unwrap() == ScimClaim::Go {
            went += 1;
        }
    }
    assert_eq!(went, 3);
}
