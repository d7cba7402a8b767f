//! HTTP transport: an accept loop that can cut a connection mid-request (the `drop_rate` fault),
//! the TestRail front controller at `[/<subpath>]/index.php`, and the control API.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use crate::api::{Answer, ApiRequest, Delivery};
use crate::sim::Sim;

/// Lets a handler cut its own connection without answering.
#[derive(Clone, Debug)]
struct ConnCut(Arc<Notify>);

/// The largest request body the simulator reads.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The simulator's HTTP routes: TestRail's API and the `/__sim/` control API.
pub fn router(sim: Sim) -> axum::Router {
    crate::control::router().fallback(testrail).with_state(sim)
}

async fn testrail(State(sim): State<Sim>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if !parts.uri.path().ends_with("/index.php") {
        return (
            StatusCode::NOT_FOUND,
            Json404::body("Not found: TestRail's API lives at index.php?/api/v2/"),
        )
            .into_response();
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let latency = sim.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let header_str = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    // The address the client used, with any sub-path before `/index.php`, for rendered urls.
    let base_url = header_str(header::HOST)
        .filter(|h| !h.is_empty())
        .map(|host| {
            let prefix = parts.uri.path().strip_suffix("/index.php").unwrap_or("");
            format!("http://{host}{prefix}")
        });
    let req = ApiRequest {
        http_method: parts.method.as_str(),
        query: parts.uri.query().unwrap_or(""),
        authorization: header_str(header::AUTHORIZATION),
        content_type: header_str(header::CONTENT_TYPE),
        body: &body,
        base_url: base_url.as_deref(),
    };
    match sim.handle(&req) {
        Answer::Err(e) => {
            let mut resp = (
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                Json404::body(&e.message),
            )
                .into_response();
            if let Some(secs) = e.retry_after {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            resp
        }
        Answer::Ok { body, delivery } => {
            let bytes = match body {
                Some(v) => Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
                None => Bytes::new(),
            };
            match delivery {
                Delivery::Normal => json_response(bytes),
                Delivery::Drop => {
                    if let Some(cut) = parts.extensions.get::<ConnCut>() {
                        cut.0.notify_one();
                        std::future::pending::<()>().await;
                    }
                    // Without a connection to cut (in-process router tests), fail loudly.
                    StatusCode::BAD_GATEWAY.into_response()
                }
                Delivery::Truncate => {
                    let len = bytes.len();
                    let half = bytes.slice(..len / 2);
                    // Headers and half the body go out, then the connection is cut.
                    let chunks = futures_util::stream::unfold(Some(half), |state| async move {
                        match state {
                            Some(half) => Some((Ok::<Bytes, io::Error>(half), None)),
                            None => {
                                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                                let cut =
                                    io::Error::new(io::ErrorKind::ConnectionAborted, "truncated");
                                Some((Err(cut), None))
                            }
                        }
                    });
                    let mut resp = Response::new(Body::from_stream(chunks));
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    resp.headers_mut()
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                    resp
                }
            }
        }
    }
}

fn json_response(bytes: Bytes) -> Response {
    let mut resp = Response::new(Body::from(bytes));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `{"error": "..."}` bodies.
struct Json404;

impl Json404 {
    fn body(message: &str) -> Response {
        json_response(Bytes::from(
            serde_json::to_vec(&json!({ "error": message })).unwrap_or_default(),
        ))
    }
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    sim: Sim,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl SimServer {
    /// Binds `listen` (port 0 picks a free port) and serves `sim` in the background.
    pub async fn start(listen: SocketAddr, sim: Sim) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, router(sim.clone()), rx));
        Ok(Self {
            addr,
            sim,
            shutdown: Some(tx),
            task,
        })
    }

    /// `http://127.0.0.1:PORT`, what TestRail clients take as the base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Serves until the accept loop ends (for the binary).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, app: axum::Router, mut shutdown: oneshot::Receiver<()>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let cut = Arc::new(Notify::new());
        let app = app.clone();
        let conn_cut = ConnCut(cut.clone());
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(conn_cut.clone());
                let app = app.clone();
                async move {
                    let resp = app.oneshot(req.map(Body::new)).await;
                    Ok::<_, Infallible>(match resp {
                        Ok(r) => r,
                        Err(never) => match never {},
                    })
                }
            });
        connections.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = cut.notified() => {}
            }
        });
        // Reap finished connection tasks so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
}
