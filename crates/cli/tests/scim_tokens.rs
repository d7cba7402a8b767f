//! `accessrail tokens create NAME --scim --connection C`: the token is shown once, stored
//! hashed, bound to that connection, and never taken as an administrator's token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use accessrail_store::Store;
use common::env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scim_token_is_bound_to_its_connection() {
    let e = env(3, 1).await;
    e.connect().await;
    let out = e
        .run(&[
            "tokens",
            "create",
            "okta",
            "--scim",
            "--connection",
            "acme",
            "--json",
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let made = out.json();
    let token = made["token"].as_str().unwrap().to_string();
    assert_eq!(made["scim_connection"], "acme");
    assert_eq!(made["path"], "/scim/v2/acme/");
    // Without a connection that exists, or with --connection but no --scim: refused.
    let out = e
        .run(&["tokens", "create", "x", "--scim", "--connection", "nope"])
        .await;
    assert_ne!(out.code, 0);
    let out = e
        .run(&["tokens", "create", "y", "--connection", "acme"])
        .await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("--scim"), "{}", out.stderr);
    // Listed as a SCIM token, without its secret.
    let out = e.run(&["tokens", "list", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains(&token));
    let listed = out.json();
    let okta = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "okta")
        .unwrap()
        .clone();
    assert!(okta["scim_connection"].is_string());
    // In the store: only the hash, found as a SCIM token of acme, never as an administrator's.
    let store = accessrail_store::SqliteStore::open(&e.data().join("accessrail.db"))
        .await
        .unwrap();
    let conn = store.connection("acme").await.unwrap().unwrap();
    let hash = accessrail_engine::tokens::hash(&token);
    assert_eq!(
        store.scim_token_by_hash(&hash).await.unwrap(),
        Some(("okta".to_string(), conn.id))
    );
    assert_eq!(store.token_by_hash(&hash).await.unwrap(), None);
    for file in common::all_files(e.data()) {
        let raw = std::fs::read(&file).unwrap();
        assert!(
            !raw.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token itself is in {}",
            file.display()
        );
    }
}
