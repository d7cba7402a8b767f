//! SCIM 2.0 end to end: the service on port 0 over real HTTP, in front of the simulator.
//! Okta's and Entra's request shapes are replayed and the TestRail state is read from the
//! simulator; a retried create makes no duplicate; a burst of deactivations is held at the
//! cap; filters and paging; tokens are bound to their connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use accessrail_engine::tokens;
use accessrail_store::{ScimClaim, Store};
use common::{Service, TOKEN, start};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const SCIM: &str = "ar_scim_token_for_the_okta_tests_0000000000000000";

/// A service with a scanned connection `acme`, provisioning on, and a SCIM token `okta`.
async fn scim_service(users: u32, groups: u32) -> Service {
    let svc = start(users, groups).await;
    svc.connect().await;
    svc.scan().await;
    let store = svc.engine.store();
    let conn = store.connection("acme").await.unwrap().unwrap();
    store.set_provisioning(&conn.id, true).await.unwrap();
    store
        .create_scim_token("okta", &tokens::hash(SCIM), &conn.id, 0)
        .await
        .unwrap();
    svc
}

/// A SCIM request with the token; the answer's status, body and headers.
async fn scim(
    svc: &Service,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    scim_as(svc, SCIM, method, &format!("/scim/v2/acme{path}"), body).await
}

async fn scim_as(
    svc: &Service,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut req = svc
        .http
        .request(method, format!("{}{path}", svc.base))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/scim+json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

fn sim_user(svc: &Service, email: &str) -> Option<testrail_sim::model::User> {
    svc.sim.sim().snapshot().user_by_email(email).cloned()
}

fn count_with_email(svc: &Service, email: &str) -> usize {
    svc.sim
        .sim()
        .snapshot()
        .users
        .values()
        .filter(|u| u.email.eq_ignore_ascii_case(email))
        .count()
}

fn is_scim_error(body: &Value, status: &str) {
    assert_eq!(
        body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{body}"
    );
    assert_eq!(body["status"], status, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_exchanges_give_the_testrail_state_they_should() {
    let svc = scim_service(20, 3).await;
    // Okta tests the connection with a page of two.
    let (s, page, h) = scim(&svc, Method::GET, "/Users?startIndex=1&count=2", None).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(h["content-type"], "application/scim+json");
    assert!(page["totalResults"].as_u64().unwrap() >= 20);
    assert_eq!(page["itemsPerPage"], 2);
    assert_eq!(page["startIndex"], 1);
    // Lookup by userName before creating.
    let (_, found, _) = scim(
        &svc,
        Method::GET,
        "/Users?filter=userName%20eq%20%22nina.okta%40example.com%22&startIndex=1&count=100",
        None,
    )
    .await;
    assert_eq!(found["totalResults"], 0, "{found}");
    let (s, made, h) = scim(
        &svc,
        Method::POST,
        "/Users",
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "nina.okta@example.com",
            "name": {"givenName": "Nina", "familyName": "Okta"},
            "emails": [{"primary": true, "value": "nina.okta@example.com", "type": "work"}],
            "displayName": "Nina Okta",
            "locale": "en-US",
            "externalId": "00u1abcd",
            "groups": [],
            "password": {"value": "dummy-Passw0rd"},
            "active": true
        })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    assert!(
        h["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/Users/{id}"))
    );
    assert_eq!(made["userName"], "nina.okta@example.com");
    assert_eq!(made["externalId"], "00u1abcd");
    assert!(made.get("password").is_none(), "never returned");
    let u = sim_user(&svc, "nina.okta@example.com").expect("created in TestRail");
    assert_eq!((u.name.as_str(), u.is_active), ("Nina Okta", true));
    assert_eq!(u.id.to_string(), id);
    let (_, found, _) = scim(
        &svc,
        Method::GET,
        "/Users?filter=userName%20eq%20%22NINA.OKTA%40example.com%22",
        None,
    )
    .await;
    assert_eq!(found["totalResults"], 1, "userName is case-insensitive");
    // A profile update by PUT.
    let mut put = made.clone();
    put["name"] = json!({"givenName": "Nina", "familyName": "Okta-Lind"});
    let (s, body, _) = scim(&svc, Method::PUT, &format!("/Users/{id}"), Some(put)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        sim_user(&svc, "nina.okta@example.com").unwrap().name,
        "Nina Okta-Lind"
    );
    // Deactivation: PATCH replace with no path and a value object.
    let (s, body, _) = scim(
        &svc,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": false}}]
        })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["active"], false);
    assert!(!sim_user(&svc, "nina.okta@example.com").unwrap().is_active);
    // Reactivation.
    let (s, _, _) = scim(
        &svc,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": true}}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(sim_user(&svc, "nina.okta@example.com").unwrap().is_active);

    // Group push: create, rename by no-path replace, member add and remove.
    let (s, g, _) = scim(
        &svc,
        Method::POST,
        "/Groups",
        Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Okta QA", "members": []})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let gid: u64 = g["id"].as_str().unwrap().parse().unwrap();
    let group = |svc: &Service| svc.sim.sim().snapshot().groups.get(&gid).cloned().unwrap();
    assert_eq!(group(&svc).name, "Okta QA");
    let (s, body, _) = scim(
        &svc,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"id": gid.to_string(), "displayName": "Okta QA Team"}}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(group(&svc).name, "Okta QA Team");
    let (s, body, _) = scim(
        &svc,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "add", "path": "members", "value": [{"value": id, "display": "nina.okta@example.com"}]}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let uid: u64 = id.parse().unwrap();
    assert!(group(&svc).user_ids.contains(&uid));
    assert_eq!(body["members"][0]["value"], id);
    let (s, body, _) = scim(
        &svc,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(!group(&svc).user_ids.contains(&uid));
    // The user's groups are read-only and follow the memberships.
    let (_, u, _) = scim(&svc, Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(u["groups"], json!([]));

    // Every write is audited under the token's name.
    let (_, audit) = svc.get("/api/v1/audit?limit=200").await;
    let actors: Vec<&str> = audit["entries"]
        .as_array()
        .or(audit.as_array())
        .unwrap()
        .iter()
        .filter_map(|e| e["actor"].as_str())
        .collect();
    assert!(
        actors.iter().filter(|a| **a == "scim:okta").count() >= 6,
        "{actors:?}"
    );
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_exchanges_give_the_testrail_state_they_should() {
    let svc = scim_service(20, 3).await;
    let (_, found, _) = scim(
        &svc,
        Method::GET,
        "/Users?filter=externalId+eq+%22e7a1-55%22",
        None,
    )
    .await;
    assert_eq!(found["totalResults"], 0);
    let (s, made, _) = scim(
        &svc,
        Method::POST,
        "/Users",
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId": "e7a1-55",
            "userName": "omar.entra@example.com",
            "active": true,
            "displayName": "Omar Entra",
            "emails": [{"primary": true, "type": "work", "value": "omar.entra@example.com"}],
            "name": {"formatted": "Omar Entra", "familyName": "Entra", "givenName": "Omar"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "QA"}
        })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    // externalId lookups are case-exact.
    let (_, found, _) = scim(
        &svc,
        Method::GET,
        "/Users?filter=externalId+eq+%22e7a1-55%22",
        None,
    )
    .await;
    assert_eq!(found["totalResults"], 1, "{found}");
    let (_, found, _) = scim(
        &svc,
        Method::GET,
        "/Users?filter=externalId+eq+%22E7A1-55%22",
        None,
    )
    .await;
    assert_eq!(found["totalResults"], 0);
    // Many path operations in one request, capitalised ops, "False" as a string.
    let (s, body, _) = scim(
        &svc,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Replace", "path": "displayName", "value": "Omar E. Entra"},
                {"op": "Replace", "path": "name.givenName", "value": "Omar E."},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "omar.e@example.com"},
                {"op": "Replace", "path": "userName", "value": "omar.e@example.com"},
                {"op": "Replace", "path": "active", "value": "False"}
            ]
        })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(
        sim_user(&svc, "omar.entra@example.com").is_none(),
        "renamed"
    );
    let u = sim_user(&svc, "omar.e@example.com").expect("the new email");
    assert_eq!(u.id.to_string(), id);
    assert!(!u.is_active);
    assert_eq!(u.name, "Omar E. Entra");
    // The aadOptscim062020 (RFC-style) shape: a boolean and lower-case op.
    let (s, _, _) = scim(
        &svc,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "active", "value": true}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(sim_user(&svc, "omar.e@example.com").unwrap().is_active);
    // Groups: Entra adds with "Add" and removes with "Remove" and a value array.
    let existing = svc
        .sim
        .sim()
        .snapshot()
        .groups
        .values()
        .next()
        .unwrap()
        .clone();
    let gid = existing.id;
    let (s, body, _) = scim(
        &svc,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "Add", "path": "members", "value": [{"value": id}]}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let uid: u64 = id.parse().unwrap();
    let members = |svc: &Service| svc.sim.sim().snapshot().groups[&gid].user_ids.clone();
    assert!(members(&svc).contains(&uid));
    let others: Vec<u64> = existing.user_ids.clone();
    let (s, body, _) = scim(
        &svc,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "Remove", "path": "members", "value": [{"value": id}]}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let mut now = members(&svc);
    now.sort_unstable();
    let mut before = others;
    before.sort_unstable();
    assert_eq!(now, before, "only that member left; the others stayed");
    // DELETE deactivates and hides the id; TestRail keeps the account.
    let (s, _, _) = scim(&svc, Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(!sim_user(&svc, "omar.e@example.com").unwrap().is_active);
    let (s, body, _) = scim(&svc, Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    is_scim_error(&body, "404");
    // The SCIM-managed person is an identity too (a leaver once deleted).
    let identities = svc.engine.store().identities().await.unwrap();
    let me = identities
        .iter()
        .find(|i| i.id == "scim:omar.e@example.com")
        .expect("an identity");
    assert_eq!(me.status, accessrail_domain::IdentityStatus::Leaver);
    assert_eq!(me.emails, vec!["omar.e@example.com".to_string()]);
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_create_makes_no_duplicate_and_tokens_stay_in_their_lane() {
    let svc = scim_service(10, 2).await;
    // TestRail here would accept a second account with the same email, so a duplicate would
    // show in the count below.
    svc.sim.sim().set_settings(testrail_sim::Settings {
        unique_emails: false,
        ..svc.sim.sim().settings()
    });
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "rita.retry@example.com",
        "name": {"givenName": "Rita", "familyName": "Retry"},
        "externalId": "r-1"
    });
    // The first answer is lost between TestRail and Accessrail: add_user took effect.
    svc.sim.sim().set_faults(testrail_sim::Faults {
        drop_rate: 1.0,
        methods: vec!["add_user".into()],
        ..testrail_sim::Faults::default()
    });
    let (s, first, _) = scim(&svc, Method::POST, "/Users", Some(body.clone())).await;
    svc.sim.sim().set_faults(testrail_sim::Faults::default());
    assert!(
        s.is_server_error() || s == StatusCode::CREATED,
        "{s} {first}"
    );
    // The identity provider retries; then retries again (its own answer lost).
    let (s, second, _) = scim(&svc, Method::POST, "/Users", Some(body.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    let (s, third, _) = scim(&svc, Method::POST, "/Users", Some(body.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{third}");
    assert_eq!(second["id"], third["id"]);
    assert_eq!(count_with_email(&svc, "rita.retry@example.com"), 1);
    // Another externalId for the same userName is a uniqueness conflict.
    let mut other = body.clone();
    other["externalId"] = json!("r-2");
    let (s, e, _) = scim(&svc, Method::POST, "/Users", Some(other)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["scimType"], "uniqueness");
    assert_eq!(count_with_email(&svc, "rita.retry@example.com"), 1);

    // A token is valid only under its own connection, and only under /scim.
    let other_sim = testrail_sim::SimServer::start(
        "127.0.0.1:0".parse().unwrap(),
        testrail_sim::Sim::new(
            testrail_sim::SeedConfig {
                users: 3,
                groups: 1,
                seed: 5,
                admin_key: common::KEY.into(),
                ..testrail_sim::SeedConfig::default()
            },
            testrail_sim::Settings::default(),
        ),
    )
    .await
    .unwrap();
    let (s, body) = svc
        .post("/api/v1/connections", json!({"base_url": other_sim.base_url(), "email": "admin@example.com", "api_key": common::KEY, "name": "other"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, e, h) = scim_as(&svc, SCIM, Method::GET, "/scim/v2/other/Users", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{e}");
    is_scim_error(&e, "401");
    assert!(h.contains_key("www-authenticate"));
    let (s, _, _) = scim_as(&svc, SCIM, Method::GET, "/scim/v2/nowhere/Users", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = scim_as(&svc, TOKEN, Method::GET, "/scim/v2/acme/Users", None).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "an administrator token is not a SCIM token"
    );
    let (s, _) = svc
        .call(Method::GET, "/api/v1/connections", Some(SCIM), None)
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a SCIM token reaches nothing else"
    );
    let resp = svc
        .http
        .get(format!("{}/users", svc.base))
        .bearer_auth(SCIM)
        .send()
        .await
        .unwrap();
    assert!(
        resp.url().path().ends_with("/login") || resp.status() != StatusCode::OK,
        "the console does not take it either"
    );
    // No token at all.
    let r = svc
        .http
        .get(format!("{}/scim/v2/acme/Users", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Provisioning off: reads work, writes are refused.
    let conn = svc
        .engine
        .store()
        .connection("acme")
        .await
        .unwrap()
        .unwrap();
    svc.engine
        .store()
        .set_provisioning(&conn.id, false)
        .await
        .unwrap();
    let mut new = body.clone();
    new["userName"] = json!("off@example.com");
    new["externalId"] = json!("off-1");
    let (s, e, _) = scim(&svc, Method::POST, "/Users", Some(new)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    is_scim_error(&e, "403");
    assert!(sim_user(&svc, "off@example.com").is_none());
    let (s, _, _) = scim(&svc, Method::GET, "/Users?count=1", None).await;
    assert_eq!(s, StatusCode::OK);
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_deactivations_is_held_at_the_cap() {
    let svc = scim_service(30, 2).await;
    let snap = svc.sim.sim().snapshot();
    let mut people: Vec<_> = snap
        .users
        .values()
        .filter(|u| u.is_active && !u.is_admin && u.email.contains('@'))
        .cloned()
        .collect();
    people.sort_by_key(|u| u.id);
    assert!(people.len() >= 13);
    // A protected account is refused with a SCIM error, and does not count.
    let protected = people.pop().unwrap();
    let conn = svc
        .engine
        .store()
        .connection("acme")
        .await
        .unwrap()
        .unwrap();
    svc.engine
        .store()
        .protect(
            &conn.id,
            accessrail_store::ProtectedAccount {
                email: protected.email.to_lowercase(),
                owner: "qa".into(),
                reason: "shared test login".into(),
                expires_at: None,
                created_at: 0,
            },
        )
        .await
        .unwrap();
    let deactivate = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": false}}]});
    let (s, e, _) = scim(
        &svc,
        Method::PATCH,
        &format!("/Users/{}", protected.id),
        Some(deactivate.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    is_scim_error(&e, "403");
    assert!(sim_user(&svc, &protected.email).unwrap().is_active);
    // The cap: 10 in an hour go through; the next ones are held with a 503 to retry.
    let mut outcomes = vec![];
    for u in people.iter().take(12) {
        let (s, body, h) = scim(
            &svc,
            Method::PATCH,
            &format!("/Users/{}", u.id),
            Some(deactivate.clone()),
        )
        .await;
        outcomes.push((s, body, h));
    }
    let ok = outcomes.iter().filter(|o| o.0 == StatusCode::OK).count();
    assert_eq!(
        ok,
        10,
        "{:?}",
        outcomes.iter().map(|o| o.0).collect::<Vec<_>>()
    );
    let held = &outcomes[10];
    assert_eq!(held.0, StatusCode::SERVICE_UNAVAILABLE, "{}", held.1);
    is_scim_error(&held.1, "503");
    assert!(held.2.contains_key("retry-after"));
    assert!(held.1["detail"].as_str().unwrap().contains("held"));
    let inactive = people
        .iter()
        .take(12)
        .filter(|u| !sim_user(&svc, &u.email).unwrap().is_active)
        .count();
    assert_eq!(inactive, 10, "held ones are not deactivated");
    // Retrying does not make a second hold.
    let eleventh = &people[10];
    let (s, _, _) = scim(
        &svc,
        Method::PATCH,
        &format!("/Users/{}", eleventh.id),
        Some(deactivate.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let holds = svc.engine.store().scim_holds(Some(&conn.id)).await.unwrap();
    let waiting: Vec<_> = holds.iter().filter(|h| h.status == "held").collect();
    assert_eq!(waiting.len(), 2, "{holds:?}");
    // Accounts this token created within the hour do not count against the cap.
    let (s, made, _) = scim(
        &svc,
        Method::POST,
        "/Users",
        Some(json!({"userName": "tester.cycle@example.com", "name": {"givenName": "T", "familyName": "Cycle"}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let (s, body, _) = scim(
        &svc,
        Method::DELETE,
        &format!("/Users/{}", made["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    // An administrator approves one hold in the console; the identity provider's retry then
    // goes through. The other is rejected: its retries are refused for good.
    let hold = waiting
        .iter()
        .find(|h| h.tr_user_id == eleventh.id)
        .unwrap();
    let other = waiting
        .iter()
        .find(|h| h.tr_user_id != eleventh.id)
        .unwrap();
    let console = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let csrf_in = |html: &str| {
        html.split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string()
    };
    let login = console
        .get(format!("{}/login", svc.base))
        .send()
        .await
        .unwrap();
    let csrf = csrf_in(&login.text().await.unwrap());
    let r = console
        .post(format!("{}/login", svc.base))
        .form(&[("token", TOKEN), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let page = console
        .get(format!("{}/holds", svc.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("data-hold=\"{}\"", hold.id)),
        "{page}"
    );
    assert!(page.contains(&format!("href=\"/users/{}\"", eleventh.id)));
    let csrf = csrf_in(&page);
    // Without the form's CSRF token: refused, nothing decided.
    let r = console
        .post(format!("{}/holds/{}/approve", svc.base, hold.id))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    for (id, verb) in [(hold.id, "approve"), (other.id, "reject")] {
        let r = console
            .post(format!("{}/holds/{id}/{verb}", svc.base))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{verb}: {}", r.status());
    }
    let (s, body, _) = scim(
        &svc,
        Method::PATCH,
        &format!("/Users/{}", eleventh.id),
        Some(deactivate.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(!sim_user(&svc, &eleventh.email).unwrap().is_active);
    let (s, body, _) = scim(
        &svc,
        Method::PATCH,
        &format!("/Users/{}", other.tr_user_id),
        Some(deactivate.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("rejected"));
    // The approval is used once.
    let again = svc
        .engine
        .store()
        .scim_claim_deactivation(&conn.id, "okta", eleventh.id, &eleventh.email, 10, 10, 3600)
        .await
        .unwrap();
    assert_ne!(again, ScimClaim::Go);
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_paging_and_attributes() {
    let svc = scim_service(25, 3).await;
    let (_, all, _) = scim(&svc, Method::GET, "/Users?count=1000", None).await;
    let total = all["totalResults"].as_u64().unwrap();
    let ids: Vec<u64> = all["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids.len() as u64, total);
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "a stable order: by id");
    // Paging.
    let (_, page, _) = scim(&svc, Method::GET, "/Users?startIndex=3&count=5", None).await;
    assert_eq!(page["startIndex"], 3);
    assert_eq!(page["itemsPerPage"], 5);
    assert_eq!(page["totalResults"], total);
    let page_ids: Vec<u64> = page["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(page_ids, ids[2..7].to_vec());
    let (_, none, _) = scim(&svc, Method::GET, "/Users?count=0", None).await;
    assert_eq!(
        (none["totalResults"].as_u64(), none["itemsPerPage"].as_u64()),
        (Some(total), Some(0))
    );
    // Filters.
    let one = &all["Resources"][4];
    let email = one["userName"].as_str().unwrap().to_string();
    let q = |f: &str| format!("/Users?filter={}", urlencode(f));
    let count = |v: &Value| v["totalResults"].as_u64().unwrap();
    for f in [
        format!("userName eq \"{}\"", email.to_uppercase()),
        format!("emails.value eq \"{email}\""),
        format!("id eq \"{}\"", one["id"].as_str().unwrap()),
        format!(
            "displayName eq \"{}\"",
            one["displayName"].as_str().unwrap()
        ),
        format!("userName eq \"{email}\" and active eq {}", one["active"]),
        format!("userName eq \"{email}\" or userName eq \"nobody@example.com\""),
        format!("userName eq {email}"),
    ] {
        let (s, r, _) = scim(&svc, Method::GET, &q(&f), None).await;
        assert_eq!(s, StatusCode::OK, "{f}: {r}");
        assert_eq!(count(&r), 1, "{f}: {r}");
    }
    let (_, r, _) = scim(&svc, Method::GET, &q("userName pr"), None).await;
    assert_eq!(count(&r), total);
    for bad in [
        "userName co \"a\"",
        "userName gt \"a\"",
        "userName eq",
        "(userName eq \"a\"",
    ] {
        let (s, e, _) = scim(&svc, Method::GET, &q(bad), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {e}");
        assert_eq!(e["scimType"], "invalidFilter", "{bad}");
    }
    // attributes / excludedAttributes.
    let (_, r, _) = scim(
        &svc,
        Method::GET,
        "/Users?count=2&attributes=userName",
        None,
    )
    .await;
    let first = r["Resources"][0].as_object().unwrap();
    let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, vec!["id", "schemas", "userName"], "{r}");
    let (_, r, _) = scim(
        &svc,
        Method::GET,
        &format!(
            "/Users/{}?excludedAttributes=emails,groups",
            one["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert!(
        r.get("emails").is_none() && r.get("groups").is_none() && r.get("userName").is_some(),
        "{r}"
    );
    // Groups list and a filter by displayName.
    let (_, gs, _) = scim(
        &svc,
        Method::GET,
        "/Groups?excludedAttributes=members",
        None,
    )
    .await;
    let g0 = &gs["Resources"][0];
    assert!(g0.get("members").is_none());
    let (_, r, _) = scim(
        &svc,
        Method::GET,
        &format!(
            "/Groups?filter={}",
            urlencode(&format!(
                "displayName eq \"{}\"",
                g0["displayName"].as_str().unwrap()
            ))
        ),
        None,
    )
    .await;
    assert_eq!(count(&r), 1);
    // Discovery.
    for p in [
        "/ServiceProviderConfig",
        "/ResourceTypes",
        "/Schemas",
        "/ResourceTypes/User",
    ] {
        let (s, r, _) = scim(&svc, Method::GET, p, None).await;
        assert_eq!(s, StatusCode::OK, "{p}: {r}");
    }
    let (s, r, _) = scim(&svc, Method::GET, "/Nope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    is_scim_error(&r, "404");
    svc.stop().await.unwrap();
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `scim2-cli`'s `test` (scim2-tester) against the endpoint: no ERROR or CRITICAL result.
/// `scripts/install-test-deps.sh` installs it under target/; without it the test says so and
/// fails under CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_finds_no_error() {
    let bin = std::env::var("ACCESSRAIL_SCIM2_CLI").map_or_else(
        |_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/scim2-venv/bin/scim2")
        },
        std::path::PathBuf::from,
    );
    if !bin.exists() {
        assert!(
            std::env::var("CI").is_err(),
            "scim2-cli is missing at {}: run scripts/install-test-deps.sh",
            bin.display()
        );
        eprintln!(
            "skipped: scim2-cli is missing at {} (scripts/install-test-deps.sh installs it)",
            bin.display()
        );
        return;
    }
    let svc = scim_service(12, 3).await;
    let out = tokio::process::Command::new(&bin)
        .args([
            "--url",
            &format!("{}/scim/v2/acme", svc.base),
            "test",
            "--verbose",
        ])
        .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {SCIM}"))
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("CRITICAL"))
        .collect();
    assert!(bad.is_empty(), "scim2-tester reported:\n{}", bad.join("\n"));
    assert!(text.contains("SUCCESS"), "{text}");
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_person_make_one_account_and_admin_emails_stay() {
    let svc = scim_service(10, 2).await;
    svc.sim.sim().set_settings(testrail_sim::Settings {
        unique_emails: false,
        ..svc.sim.sim().settings()
    });
    let body = json!({"userName": "twice@example.com", "name": {"givenName": "Two", "familyName": "Ce"}, "externalId": "t-1"});
    let (a, b) = tokio::join!(
        scim(&svc, Method::POST, "/Users", Some(body.clone())),
        scim(&svc, Method::POST, "/Users", Some(body.clone()))
    );
    assert!(
        a.0 == StatusCode::CREATED || b.0 == StatusCode::CREATED,
        "{} {} / {} {}",
        a.0,
        a.1,
        b.0,
        b.1
    );
    assert_eq!(count_with_email(&svc, "twice@example.com"), 1);
    // An administrator's email is not changed through SCIM.
    let admin = svc
        .sim
        .sim()
        .snapshot()
        .users
        .values()
        .find(|u| u.is_admin && u.email != "admin@example.com")
        .cloned();
    if let Some(admin) = admin {
        let (s, e, _) = scim(
            &svc,
            Method::PATCH,
            &format!("/Users/{}", admin.id),
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "userName", "value": "attacker@evil.example"}]})),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
        assert_eq!(sim_user(&svc, &admin.email).unwrap().id, admin.id);
    }
    let (s, e, _) = scim(
        &svc,
        Method::PATCH,
        "/Users/1",
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "userName", "value": "other@evil.example"}]})),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "the connection's own account: {e}"
    );
    assert!(sim_user(&svc, "admin@example.com").is_some());
    svc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_made_in_testrail_after_the_scan_is_adopted() {
    let svc = scim_service(5, 1).await;
    // Someone creates the account in TestRail itself; no scan has seen it.
    let made: Value = svc
        .http
        .post(format!("{}/index.php?/api/v2/add_user", svc.sim.base_url()))
        .basic_auth("admin@example.com", Some(common::KEY))
        .json(&json!({"name": "Late Comer", "email": "late.comer@example.com", "is_active": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tr_id = made["id"].as_u64().expect("TestRail made the account");
    let (s, body, _) = scim(
        &svc,
        Method::POST,
        "/Users",
        Some(json!({"userName": "late.comer@example.com", "name": {"givenName": "Late", "familyName": "Comer"}, "externalId": "l-1"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["id"], tr_id.to_string(), "the same account, adopted");
    assert_eq!(count_with_email(&svc, "late.comer@example.com"), 1);
    let (s, again, _) = scim(&svc, Method::GET, &format!("/Users/{tr_id}"), None).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["externalId"], "l-1");
    // Recorded with an audit entry of its own.
    let (_, audit) = svc.get("/api/v1/audit?limit=50").await;
    let entries = audit["entries"].as_array().or(audit.as_array()).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "scim_record" && e["actor"] == "scim:okta"),
        "{audit}"
    );
    svc.stop().await.unwrap();
}
