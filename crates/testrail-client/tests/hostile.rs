//! The client against a broken or hostile server (a raw TCP server on port 0 inside the test):
//! answers larger than the cap, lists that never end, ids out of range, one id with two records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use testrail_client::{ApiKey, BaseUrl, Client, ErrorKind, RetryPolicy, pages_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Reply {
    status: u16,
    body: Vec<u8>,
    /// Send `Content-Length`; without it the body runs until the connection closes.
    length: bool,
}

fn json(body: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status: 200,
        body: body.into(),
        length: true,
    }
}

type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

/// Serves `handler(request line)` for every request; counts requests.
async fn serve(handler: Handler) -> (BaseUrl, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let handler = handler.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                counter.fetch_add(1, Ordering::SeqCst);
                let reply = handler(req.lines().next().unwrap_or_default());
                let mut head = format!(
                    "HTTP/1.1 {} X\r\ncontent-type: application/json\r\nconnection: close\r\n",
                    reply.status
                );
                if reply.length {
                    head.push_str(&format!("content-length: {}\r\n", reply.body.len()));
                }
                head.push_str("\r\n");
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&reply.body).await;
                let _ = s.shutdown().await;
            });
        }
    });
    let base = BaseUrl::server(&format!("http://{addr}"), true).unwrap();
    (base, count)
}

fn client(base: BaseUrl) -> testrail_client::ClientBuilder {
    Client::builder(base, "admin@example.com", ApiKey::new("k").unwrap()).retry(RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    })
}

fn offset(line: &str) -> u64 {
    line.split("offset=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn users_page(users: &[String], next: bool) -> String {
    format!(
        r#"{{"offset":0,"limit":250,"size":{},"_links":{{"next":{},"prev":null}},"users":[{}]}}"#,
        users.len(),
        if next {
            r#""/api/v2/get_users&offset=x""#
        } else {
            "null"
        },
        users.join(",")
    )
}

fn user(id: u64) -> String {
    format!(r#"{{"id":{id},"name":"U{id}","email":"u{id}@example.com","is_active":true}}"#)
}

/// A body far over the cap: one user whose name is `mib` MiB long.
fn big_page(mib: usize) -> Vec<u8> {
    let name = "x".repeat(mib * 1024 * 1024);
    users_page(&[format!(r#"{{"id":1,"name":"{name}"}}"#)], false).into_bytes()
}

#[tokio::test]
async fn an_answer_over_the_byte_cap_fails_without_being_read() {
    // Announced with Content-Length: refused before the body is read.
    let (base, _) = serve(Arc::new(|_| json(big_page(5)))).await;
    let c = client(base)
        .max_response_bytes(1024 * 1024)
        .build()
        .unwrap();
    let e = c.get_users().await.expect_err("5 MiB is over a 1 MiB cap");
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert!(!e.is_retryable());
    let text = e.to_string();
    assert!(text.contains("too large"), "{text}");
    assert!(text.contains("get_users"), "names the method: {text}");
    assert!(text.contains("1 MiB"), "names the cap: {text}");

    // Not announced (the body runs to the end of the connection): reading stops at the cap.
    let (base, _) = serve(Arc::new(|_| Reply {
        length: false,
        ..json(big_page(5))
    }))
    .await;
    let c = client(base)
        .max_response_bytes(1024 * 1024)
        .build()
        .unwrap();
    let e = c.get_users().await.expect_err("streamed past the cap");
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");

    // Under the cap, the same answer is fine.
    let (base, _) = serve(Arc::new(|_| json(big_page(2)))).await;
    let c = client(base)
        .max_response_bytes(3 * 1024 * 1024)
        .build()
        .unwrap();
    assert_eq!(c.get_users().await.expect("under the cap").len(), 1);

    // An error answer over the cap is cut and still classified by its status.
    let (base, _) = serve(Arc::new(|_| Reply {
        status: 500,
        ..json(big_page(2))
    }))
    .await;
    let c = client(base)
        .max_response_bytes(1024 * 1024)
        .build()
        .unwrap();
    let e = c.get_users().await.expect_err("500");
    assert_eq!(e.kind(), ErrorKind::Server, "{e}");
}

#[tokio::test]
async fn a_list_that_never_ends_stops_at_its_cap() {
    // Full pages of new ids for ever.
    let (base, count) = serve(Arc::new(|line: &str| {
        let from = offset(line);
        let users: Vec<String> = (from + 1..=from + 250).map(user).collect();
        json(users_page(&users, true))
    }))
    .await;
    let c = client(base.clone()).build().unwrap();
    let e = c
        .users()
        .max_items(Some(1000))
        .collect_all()
        .await
        .expect_err("never ends");
    assert_eq!(e.kind(), ErrorKind::ListTooLong, "{e}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("more than 1000 users"), "{e}");
    assert_eq!(
        count.load(Ordering::SeqCst),
        5,
        "1,250 users is past the cap"
    );

    // The client's own default applies to every walk, roles included.
    let c = client(base).max_list_items(Some(500)).build().unwrap();
    let e = c.get_users().await.expect_err("capped by default");
    assert_eq!(e.kind(), ErrorKind::ListTooLong, "{e}");

    // One new id per page, `next` always set: the page cap ends it.
    let (base, count) = serve(Arc::new(|line: &str| {
        let body =
            users_page(&[user(offset(line) + 1)], true).replace(r#""limit":250"#, r#""limit":1"#);
        json(body)
    }))
    .await;
    let c = client(base).build().unwrap();
    let e = c
        .users()
        .max_items(Some(250))
        .collect_all()
        .await
        .expect_err("never ends");
    assert_eq!(e.kind(), ErrorKind::ListTooLong, "{e}");
    assert!(e.to_string().contains("11 pages"), "{e}");
    assert_eq!(count.load(Ordering::SeqCst), pages_for(250));
}

#[tokio::test]
async fn ids_out_of_range_are_refused_naming_the_record() {
    let cases = [
        (
            format!(
                "{},{}",
                user(1),
                r#"{"id":18446744073709551615,"name":"Big","email":"x@y"}"#
            ),
            "user id 18446744073709551615 (email x@y) is larger than 9223372036854775807",
        ),
        (
            r#"{"id":9223372036854775808,"name":"Just over"}"#.to_string(),
            "user id 9223372036854775808 (name Just over) is larger",
        ),
        (
            r#"{"id":0,"email":"zero@y"}"#.to_string(),
            "user id 0 (email zero@y) has id 0",
        ),
        (
            r#"{"id":3,"email":"g@y","group_ids":[1,18446744073709551615]}"#.to_string(),
            "user id 3 (email g@y) refers to group id 18446744073709551615",
        ),
    ];
    for (users, expected) in cases {
        let body = users_page(&[users], false);
        let (base, _) = serve(Arc::new(move |_| json(body.clone()))).await;
        let c = client(base).build().unwrap();
        let e = c.get_users().await.expect_err(expected);
        assert_eq!(e.kind(), ErrorKind::UpstreamBug, "{e}");
        assert!(e.to_string().contains(expected), "{e}");
    }
    // The largest id TestRail can send is fine.
    let body = users_page(&[user(i64::MAX as u64)], false);
    let (base, _) = serve(Arc::new(move |_| json(body.clone()))).await;
    let c = client(base).build().unwrap();
    assert_eq!(c.get_users().await.unwrap()[0].id, i64::MAX as u64);
}

#[tokio::test]
async fn one_id_twice_is_fine_when_identical_and_an_error_when_not() {
    // Within a page and across pages, the same record again (even spelt differently) is
    // dropped.
    let (base, _) = serve(Arc::new(|line: &str| {
        if offset(line) == 0 {
            let mut users: Vec<String> = (1..=249).map(user).collect();
            users.push(user(7));
            json(users_page(&users, true))
        } else {
            let spelt_otherwise =
                r#"{"is_active":1,"email":"u249@example.com","name":"U249","id":249}"#;
            json(users_page(&[spelt_otherwise.to_string(), user(250)], false))
        }
    }))
    .await;
    let c = client(base).build().unwrap();
    let users = c
        .get_users()
        .await
        .expect("identical repeats are tolerated");
    assert_eq!(users.len(), 250);

    // The same id with other data, within a page.
    let body = users_page(
        &[
            user(7),
            r#"{"id":7,"name":"Someone else","email":"else@example.com"}"#.into(),
        ],
        false,
    );
    let (base, _) = serve(Arc::new(move |_| json(body.clone()))).await;
    let c = client(base).build().unwrap();
    let e = c.get_users().await.expect_err("one id, two records");
    assert_eq!(e.kind(), ErrorKind::UpstreamBug, "{e}");
    assert!(
        e.to_string()
            .contains("user id 7 (email else@example.com) arrived twice with different data"),
        "{e}"
    );

    // And across pages.
    let (base, _) = serve(Arc::new(|line: &str| {
        if offset(line) == 0 {
            json(users_page(&(1..=250).map(user).collect::<Vec<_>>(), true))
        } else {
            let changed = r#"{"id":12,"name":"U12","email":"u12@example.com","is_active":false}"#;
            json(users_page(&[changed.to_string()], false))
        }
    }))
    .await;
    let c = client(base).build().unwrap();
    let e = c.get_users().await.expect_err("one id, two records");
    assert!(e.to_string().contains("user id 12"), "{e}");
    assert!(e.to_string().contains("offset 250"), "{e}");
}
