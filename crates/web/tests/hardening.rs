//! Regression tests for an outside review, over real HTTP on port 0: no server state before
//! sign-in and a cap on sessions; the API's error envelope for every kind of bad request; Secure
//! cookies and HSTS behind an https public URL; a plan applied at most once; a cautioned
//! deactivation refused by the server without its ticked box.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use accessrail_store::{SealedSecret, Store};
use accessrail_web::{MAX_SESSIONS, ServeConfig};
use common::{Service, TOKEN, start, start_with};
use reqwest::header::{CONTENT_TYPE, COOKIE, HeaderMap, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookies(h: &HeaderMap) -> Vec<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// `name=value` of the cookie `name` among the Set-Cookie headers.
fn cookie_pair(h: &HeaderMap, name: &str) -> String {
    set_cookies(h)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {h:?}"))
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

/// The sign-in page: its CSRF cookie (`name=value`) and the form's token.
async fn login_form(svc: &Service, http: &reqwest::Client) -> (String, String) {
    let resp = http
        .get(format!("{}/login", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = cookie_pair(resp.headers(), "accessrail_csrf");
    (cookie, csrf_of(&resp.text().await.unwrap()))
}

async fn sign_in(
    svc: &Service,
    http: &reqwest::Client,
    cookie: &str,
    csrf: Option<&str>,
    token: &str,
) -> reqwest::Response {
    let mut form = vec![("token", token)];
    if let Some(c) = csrf {
        form.push(("csrf", c));
    }
    http.post(format!("{}/login", svc.base))
        .header(COOKIE, cookie)
        .form(&form)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_visitors_leave_no_server_state_and_sessions_are_capped() {
    let svc = start(3, 1).await;
    let http = plain_client();
    assert_eq!(svc.state.session_count().await, 0);

    // Many anonymous visits, with no cookie, a made-up session cookie or a made-up CSRF cookie,
    // and refused sign-ins: the server keeps nothing for any of them.
    let pages = [
        "/login",
        "/",
        "/users",
        "/setup",
        "/scans",
        "/groups",
        "/groups/1",
        "/changes",
        "/audit",
    ];
    for i in 0..600 {
        let path = pages[i % pages.len()];
        let mut req = http.get(format!("{}{path}", svc.base));
        match i % 3 {
            1 => req = req.header(COOKIE, format!("accessrail_session=made-up-{i}")),
            2 => req = req.header(COOKIE, format!("accessrail_csrf=1.{i:032x}")),
            _ => {}
        }
        let resp = req.send().await.unwrap();
        assert!(
            resp.status() == StatusCode::OK || resp.status() == StatusCode::SEE_OTHER,
            "{path}: {}",
            resp.status()
        );
    }
    for i in 0..100 {
        let resp = http
            .post(format!("{}/login", svc.base))
            .form(&[("token", TOKEN), ("csrf", &format!("forged-{i}"))])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(
        svc.state.session_count().await,
        0,
        "anonymous requests made sessions"
    );

    // CSRF is still enforced on sign-in: no token, a wrong token, another visitor's token.
    let (cookie, csrf) = login_form(&svc, &http).await;
    let (other_cookie, other_csrf) = login_form(&svc, &http).await;
    assert_ne!(csrf, other_csrf);
    for (c, t) in [
        (cookie.as_str(), None),
        (cookie.as_str(), Some("0".repeat(64))),
        (cookie.as_str(), Some(other_csrf.clone())),
        (other_cookie.as_str(), Some(csrf.clone())),
        ("", Some(csrf.clone())),
    ] {
        let resp = sign_in(&svc, &http, c, t.as_deref(), TOKEN).await;
        assert_eq!(
            resp.status(),
            StatusCode::FORBIDDEN,
            "cookie {c:?} token {t:?}"
        );
    }
    // The right pair with a wrong API token: refused, still nothing kept.
    let resp = sign_in(&svc, &http, &cookie, Some(&csrf), "ar_not_a_token").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(svc.state.session_count().await, 0);

    // Sign-in works and makes the one session; it replaces the CSRF cookie.
    let resp = sign_in(&svc, &http, &cookie, Some(&csrf), TOKEN).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookies(resp.headers())
            .iter()
            .any(|c| c.starts_with("accessrail_csrf=;") && c.contains("Max-Age=0"))
    );
    let first = cookie_pair(resp.headers(), "accessrail_session");
    assert_eq!(svc.state.session_count().await, 1);
    let resp = http
        .get(format!("{}/audit", svc.base))
        .header(COOKIE, &first)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Sign-ins past the cap evict the oldest sessions: the count stays at the cap.
    for _ in 0..MAX_SESSIONS + 5 {
        let resp = sign_in(&svc, &http, &cookie, Some(&csrf), TOKEN).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    }
    assert_eq!(svc.state.session_count().await, MAX_SESSIONS);
    let resp = http
        .get(format!("{}/audit", svc.base))
        .header(COOKIE, &first)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status(), resp.headers()["location"].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/login"),
        "the oldest session was evicted"
    );

    // Signing out removes the session.
    let resp = sign_in(&svc, &http, &cookie, Some(&csrf), TOKEN).await;
    let last = cookie_pair(resp.headers(), "accessrail_session");
    let html = http
        .get(format!("{}/audit", svc.base))
        .header(COOKIE, &last)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let before = svc.state.session_count().await;
    let resp = http
        .post(format!("{}/logout", svc.base))
        .header(COOKIE, &last)
        .form(&[("csrf", csrf_of(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(svc.state.session_count().await, before - 1);
    svc.stop().await.unwrap();
}

/// A raw request to the API with the admin token: status, content type, parsed body.
async fn raw(
    svc: &Service,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, String, Value) {
    let mut req = svc
        .http
        .request(method, format!("{}{path}", svc.base))
        .bearer_auth(TOKEN)
        .body(body);
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, ct, body)
}

fn assert_envelope(got: &(StatusCode, String, Value), status: StatusCode, code: &str, what: &str) {
    let (s, ct, body) = got;
    assert_eq!(*s, status, "{what}: {body}");
    assert_eq!(ct, "application/json", "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

/// Method, path, content type, body; the expected status and code; what the case is.
type Case = (
    Method,
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    StatusCode,
    &'static str,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_error_is_in_the_json_envelope() {
    let svc = start(5, 1).await;
    svc.connect().await;
    let json_ct = Some("application/json");
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/api/v1/connections/acme/accounts?limit=many",
            None,
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "bad query value",
        ),
        (
            Method::GET,
            "/api/v1/connections/acme/accounts?active=maybe",
            None,
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "bad query bool",
        ),
        (
            Method::POST,
            "/api/v1/identities?partial=perhaps",
            json_ct,
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "bad query on a post",
        ),
        (
            Method::GET,
            "/api/v1/scans/not-a-number",
            None,
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "bad path value",
        ),
        (
            Method::POST,
            "/api/v1/connections",
            json_ct,
            b"{\"name\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "invalid JSON",
        ),
        (
            Method::POST,
            "/api/v1/connections",
            Some("text/plain"),
            br#"{"subdomain":"x","email":"a@b.c","api_key":"k"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "wrong content type",
        ),
        (
            Method::POST,
            "/api/v1/connections",
            None,
            br#"{"subdomain":"x","email":"a@b.c","api_key":"k"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "no content type",
        ),
        (
            Method::POST,
            "/api/v1/connections",
            json_ct,
            br#"{"subdomain":"x","email":"a@b.c","api_key":"k","colour":"red"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "unknown field",
        ),
        (
            Method::POST,
            "/api/v1/connections",
            json_ct,
            br#"{"subdomain":"x"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "missing field",
        ),
        (
            Method::POST,
            "/api/v1/connections/acme/plans",
            json_ct,
            br#"{"actions":[],"dry":true}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "unknown field in a plan",
        ),
        (
            Method::POST,
            "/api/v1/connections/acme/plans",
            json_ct,
            br#"{"actions":[{"action":"launch","email":"a@b.c"}]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "unknown action",
        ),
        (
            Method::GET,
            "/api/v1/nothing-here",
            None,
            vec![],
            StatusCode::NOT_FOUND,
            "not_found",
            "unknown API path",
        ),
        (
            Method::GET,
            "/api/v2/connections",
            None,
            vec![],
            StatusCode::NOT_FOUND,
            "not_found",
            "unknown API version",
        ),
        (
            Method::GET,
            "/api",
            None,
            vec![],
            StatusCode::NOT_FOUND,
            "not_found",
            "bare /api",
        ),
        (
            Method::GET,
            "/api/v1/plans/abc/apply",
            None,
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "GET on a POST route",
        ),
        (
            Method::PUT,
            "/api/v1/connections",
            json_ct,
            b"{}".to_vec(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "PUT on a GET/POST route",
        ),
        (
            Method::DELETE,
            "/api/openapi.json",
            None,
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "DELETE on the document",
        ),
    ];
    for (method, path, ct, body, status, code, what) in cases {
        let got = raw(&svc, method, path, ct, body).await;
        assert_envelope(&got, status, code, what);
    }
    // The unknown field is named, so the client can fix it.
    let got = raw(
        &svc,
        Method::POST,
        "/api/v1/connections",
        json_ct,
        br#"{"subdomain":"x","email":"a@b.c","api_key":"k","colour":"red"}"#.to_vec(),
    )
    .await;
    assert!(
        got.2["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{}",
        got.2
    );
    // A wrong method still says which ones are allowed.
    let resp = svc
        .http
        .get(format!("{}/api/v1/plans/abc/apply", svc.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["allow"], "POST");

    // Bodies over the limit (2 MB), JSON and raw.
    let big = format!("[{}\"x\"]", "\"x\",".repeat(600_000)).into_bytes();
    assert!(big.len() > 2 * 1024 * 1024);
    let got = raw(
        &svc,
        Method::POST,
        "/api/v1/identities",
        json_ct,
        big.clone(),
    )
    .await;
    assert_envelope(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "big import",
    );
    let plan = format!(
        "{{\"actions\":[],\"x\":{}}}",
        String::from_utf8(big).unwrap()
    )
    .into_bytes();
    let got = raw(
        &svc,
        Method::POST,
        "/api/v1/connections/acme/plans",
        json_ct,
        plan,
    )
    .await;
    assert_envelope(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "big plan",
    );

    // A 500 says only that it happened, with the id its details were logged under.
    let conn = svc
        .engine
        .store()
        .connection("acme")
        .await
        .unwrap()
        .unwrap();
    svc.engine
        .store()
        .reseal_secrets(vec![(
            conn.id.clone(),
            SealedSecret {
                key_id: "lost-master-key".into(),
                bytes: vec![7; 64],
            },
        )])
        .await
        .unwrap();
    let got = raw(
        &svc,
        Method::POST,
        "/api/v1/connections/acme/plans",
        json_ct,
        br#"{"actions":[{"action":"deactivate","email":"someone@example.com"}]}"#.to_vec(),
    )
    .await;
    assert_envelope(
        &got,
        StatusCode::INTERNAL_SERVER_ERROR,
        "secret",
        "internal error",
    );
    let id = got.2["error"]["request_id"].as_str().unwrap().to_string();
    assert!(id.len() >= 8, "{}", got.2);
    assert_eq!(
        got.2["error"]["message"],
        format!("internal error; request id {id}")
    );
    assert!(!got.2.to_string().contains("lost-master-key"), "{}", got.2);

    // The console's unknown paths are not the API's business.
    let (s, ct, _) = raw(&svc, Method::GET, "/no-such-page", None, vec![]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_ne!(ct, "application/json");
    svc.stop().await.unwrap();
}

/// The sign-in page's and a sign-in's Set-Cookie headers, and the HSTS header of a page, an API
/// answer and the health check.
async fn cookies_and_hsts(svc: &Service) -> (Vec<String>, Vec<Option<String>>) {
    let http = plain_client();
    let resp = http
        .get(format!("{}/login", svc.base))
        .send()
        .await
        .unwrap();
    let mut hsts = vec![
        resp.headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap().to_string()),
    ];
    let mut cookies = set_cookies(resp.headers());
    let cookie = cookie_pair(resp.headers(), "accessrail_csrf");
    let csrf = csrf_of(&resp.text().await.unwrap());
    let resp = sign_in(svc, &http, &cookie, Some(&csrf), TOKEN).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    cookies.extend(set_cookies(resp.headers()));
    assert!(cookies.iter().any(|c| c.starts_with("accessrail_session=")));
    for path in ["/api/v1/connections", "/healthz"] {
        let resp = http
            .get(format!("{}{path}", svc.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        hsts.push(
            resp.headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap().to_string()),
        );
    }
    (cookies, hsts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_public_url_means_secure_cookies_and_hsts() {
    // Plain http (no public URL, or an http one): no Secure, no HSTS.
    for cfg in [
        ServeConfig::default(),
        ServeConfig {
            public_url: Some("http://accessrail.internal:8080".into()),
            ..ServeConfig::default()
        },
    ] {
        let svc = start_with(3, 1, cfg).await;
        let (cookies, hsts) = cookies_and_hsts(&svc).await;
        assert!(cookies.iter().all(|c| !c.contains("Secure")), "{cookies:?}");
        assert!(hsts.iter().all(Option::is_none), "{hsts:?}");
        svc.stop().await.unwrap();
    }
    // Behind an https public URL: every cookie Secure, every answer HSTS.
    let svc = start_with(
        3,
        1,
        ServeConfig {
            public_url: Some("HTTPS://accessrail.example.com/".into()),
            ..ServeConfig::default()
        },
    )
    .await;
    let (cookies, hsts) = cookies_and_hsts(&svc).await;
    assert!(cookies.len() >= 3, "{cookies:?}");
    for c in &cookies {
        assert!(
            c.contains("; Secure") && c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
    }
    assert!(
        hsts.iter()
            .all(|h| h.as_deref() == Some("max-age=31536000")),
        "{hsts:?}"
    );
    svc.stop().await.unwrap();
    // A public URL that is not http(s) stops serve at once.
    for bad in ["ftp://x.example.com", "accessrail.example.com", "https://"] {
        let cfg = ServeConfig {
            public_url: Some(bad.into()),
            ..ServeConfig::default()
        };
        assert!(cfg.check().is_err(), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_applied_twice_at_once_runs_once() {
    let svc = start(5, 1).await;
    svc.connect().await;
    let conn = svc
        .engine
        .store()
        .connection("acme")
        .await
        .unwrap()
        .unwrap();
    svc.engine
        .store()
        .set_provisioning(&conn.id, true)
        .await
        .unwrap();
    let sim = svc.sim.base_url();
    let control = reqwest::Client::new();
    // The simulator would accept a duplicate email, and every TestRail call is slow, so two
    // applies that both got past their checks would both create the account.
    let r = control
        .put(format!("{sim}/__sim/settings"))
        .json(&json!({"unique_emails": false}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = control
        .put(format!("{sim}/__sim/faults"))
        .json(&json!({"latency_ms": 150}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let email = "twice.applied@example.com";
    let (s, plan) = svc
        .post(
            "/api/v1/connections/acme/plans",
            json!({"actions": [{"action": "create_user", "name": "Twice Applied", "email": email}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{plan}");
    let apply = format!("/api/v1/plans/{}/apply", plan["id"].as_str().unwrap());
    let (a, b) = tokio::join!(svc.post(&apply, json!({})), svc.post(&apply, json!({})));
    let (ok, refused) = if a.0 == StatusCode::OK {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(ok.0, StatusCode::OK, "{} / {}", ok.1, refused.1);
    assert_eq!(ok.1["done"], 1, "{}", ok.1);
    assert_eq!(refused.0, StatusCode::CONFLICT, "{}", refused.1);
    let code = refused.1["error"]["code"].as_str().unwrap();
    assert!(
        code == "plan_being_applied" || code == "plan_already_applied",
        "{}",
        refused.1
    );
    // Later, the plan is known as applied.
    let (s, body) = svc.post(&apply, json!({})).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("plan_already_applied"))
    );
    let users: Value = control
        .get(format!("{sim}/__sim/users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let accounts = users
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["email"] == email)
        .count();
    assert_eq!(accounts, 1, "one account for {email}");
    svc.stop().await.unwrap();
}

/// The console's confirmation of a cautioned deactivation (Accessrail's own account) is
/// enforced by the server: an apply form posted without the ticked box changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cautioned_deactivation_needs_its_box_ticked_on_the_server() {
    let svc = start(10, 2).await;
    svc.connect().await;
    svc.scan().await;
    let conn = svc
        .engine
        .store()
        .connection("acme")
        .await
        .unwrap()
        .unwrap();
    svc.engine
        .store()
        .set_provisioning(&conn.id, true)
        .await
        .unwrap();
    let own = svc.sim.sim().snapshot().users[&1].email.clone();
    let http = plain_client();
    let (cookie, csrf) = login_form(&svc, &http).await;
    let resp = sign_in(&svc, &http, &cookie, Some(&csrf), TOKEN).await;
    let session = cookie_pair(resp.headers(), "accessrail_session");
    let page = http
        .get(format!("{}/provision/confirm", svc.base))
        .query(&[("action", "deactivate"), ("email", own.as_str())])
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("locks Accessrail out"), "{page}");
    let plan = page
        .split("name=\"plan\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let resp = http
        .post(format!("{}/provision/apply", svc.base))
        .header(COOKIE, &session)
        .form(&[("csrf", csrf_of(&page)), ("plan", plan)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = resp.text().await.unwrap();
    assert!(body.contains("confirmation box"), "{body}");
    assert!(svc.sim.sim().snapshot().users[&1].is_active);
    assert_eq!(
        svc.sim
            .sim()
            .stats()
            .by_method
            .get("update_user")
            .copied()
            .unwrap_or(0),
        0,
        "nothing was sent to TestRail"
    );
    svc.stop().await.unwrap();
}
