//! Bearer tokens for the API; for the console, a session cookie and a CSRF token.
//!
//! The server keeps nothing for a visitor who has not signed in. The sign-in form is protected
//! by a signed double-submit token: the visitor gets a random cookie (`accessrail_csrf`) and the
//! form carries HMAC-SHA256(server key, cookie). A forged form cannot carry the right value
//! without the cookie, which another site can neither read nor (with SameSite=Strict) send.
//! Only a successful sign-in creates a server-side session, and those are capped.

use std::sync::Arc;

use accessrail_domain::EmailKey;
use accessrail_engine::reviews::Actor;
use accessrail_engine::tokens;
use accessrail_store::Store;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::{AppState, Session, random_id};

pub const SESSION_COOKIE: &str = "accessrail_session";

/// The pre-sign-in CSRF cookie: `ISSUED_AT.NONCE`, nothing stored server-side.
pub const CSRF_COOKIE: &str = "accessrail_csrf";

/// A console session (and a sign-in form) lasts at most this long.
pub const SESSION_LIFETIME: i64 = 12 * 3600;

/// At most this many signed-in sessions are kept. Only a valid API token makes one, so the cap
/// only matters for a client that signs in in a loop. At the cap, expired sessions are dropped
/// and then the oldest session is evicted (its visitor signs in again): a new sign-in is never
/// refused, so a legitimate administrator cannot be locked out by someone filling the table.
pub const MAX_SESSIONS: usize = 1000;

/// Whether the service is reached over https (its public URL says so): cookies get `Secure`
/// and answers carry HSTS. Added to every request as an extension by the router.
#[derive(Debug, Clone, Copy, Default)]
pub struct Transport {
    pub https: bool,
}

/// The API token behind a request: the audit log names it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: String,
}

impl Caller {
    pub fn actor(&self) -> String {
        format!("token:{}", self.token)
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let raw = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthorized)?;
        let auth = state
            .engine
            .store()
            .token_auth_by_hash(&tokens::hash(raw))
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        if auth.reviewer.is_some() {
            return Err(ApiError::reviewer_only());
        }
        Ok(Caller { token: auth.name })
    }
}

/// The caller of the review API: an administrator token or a reviewer sign-in (which sees and
/// decides only its reviewer's items).
#[derive(Debug, Clone)]
pub struct ReviewCaller(pub Actor);

impl FromRequestParts<Arc<AppState>> for ReviewCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let raw = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthorized)?;
        let auth = state
            .engine
            .store()
            .token_auth_by_hash(&tokens::hash(raw))
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        Ok(ReviewCaller(match auth.reviewer {
            None => Actor::Admin {
                actor: format!("token:{}", auth.name),
            },
            Some(r) => Actor::Reviewer {
                actor: format!("reviewer:{} ({r})", auth.name),
                email: EmailKey::parse(&r).ok_or_else(ApiError::unauthorized)?,
            },
        }))
    }
}

pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value: always HttpOnly and SameSite=Strict, `Secure` over https;
/// `max_age: Some(0)` deletes the cookie.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<i64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// HMAC-SHA256 (RFC 2104), hex.
fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The form token that goes with a pre-sign-in CSRF cookie.
fn signed_csrf(state: &AppState, cookie_value: &str) -> String {
    hmac_hex(
        &state.csrf_key,
        format!("csrf-v1:{cookie_value}").as_bytes(),
    )
}

/// A pre-sign-in CSRF cookie worth keeping: well formed, not from the future, not too old.
fn valid_csrf_cookie(value: &str, now: i64) -> bool {
    let Some((issued, nonce)) = value.split_once('.') else {
        return false;
    };
    let fresh = issued
        .parse::<i64>()
        .is_ok_and(|t| t <= now + 60 && now - t < SESSION_LIFETIME);
    fresh && nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Debug, Clone)]
enum Kind {
    SignedIn {
        id: String,
        session: Session,
        /// A reviewer sign-in: the reviewer's email (review pages only, own items only).
        reviewer: Option<String>,
    },
    /// `cookie` is the CSRF cookie's value; `fresh`: it was made now and must be set.
    Anonymous { cookie: String, fresh: bool },
}

/// The console visitor: signed in (a kept session) or anonymous (nothing kept).
#[derive(Debug, Clone)]
pub struct Visitor {
    kind: Kind,
    /// The CSRF token this visitor's forms must carry.
    csrf: String,
    /// A session cookie came with the request but names no live session: clear it.
    stale_session_cookie: bool,
    pub secure: bool,
}

impl Visitor {
    /// The administrator token behind the session. `None` for anonymous visitors and for
    /// reviewer sign-ins: every console page but the review pages asks this, so a reviewer
    /// reaches none of them.
    pub fn signed_in(&self) -> Option<&str> {
        match &self.kind {
            Kind::SignedIn {
                session,
                reviewer: None,
                ..
            } => Some(&session.token),
            _ => None,
        }
    }

    /// A reviewer sign-in's reviewer (an email).
    pub fn reviewer(&self) -> Option<&str> {
        match &self.kind {
            Kind::SignedIn {
                reviewer: Some(r), ..
            } => Some(r),
            _ => None,
        }
    }

    /// Who acts on the review pages: an administrator or a reviewer; `None` when anonymous.
    pub fn review_actor(&self) -> Option<Actor> {
        match &self.kind {
            Kind::SignedIn {
                session,
                reviewer: None,
                ..
            } => Some(Actor::Admin {
                actor: format!("token:{}", session.token),
            }),
            Kind::SignedIn {
                session,
                reviewer: Some(r),
                ..
            } => Some(Actor::Reviewer {
                actor: format!("reviewer:{} ({r})", session.token),
                email: EmailKey::parse(r)?,
            }),
            Kind::Anonymous { .. } => None,
        }
    }

    pub fn session_id(&self) -> Option<&str> {
        match &self.kind {
            Kind::SignedIn { id, .. } => Some(id),
            Kind::Anonymous { .. } => None,
        }
    }

    /// The token to put in this visitor's forms.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// The `Set-Cookie` values this visitor's next answer needs.
    pub fn set_cookies(&self) -> Vec<String> {
        let mut out = vec![];
        if self.stale_session_cookie {
            out.push(set_cookie(SESSION_COOKIE, "", self.secure, Some(0)));
        }
        if let Kind::Anonymous {
            cookie,
            fresh: true,
        } = &self.kind
        {
            out.push(set_cookie(CSRF_COOKIE, cookie, self.secure, None));
        }
        out
    }

    /// Whether a submitted form's CSRF token is this visitor's (constant time). An anonymous
    /// visitor's token only counts with the cookie it was made for, sent with the request.
    pub fn csrf_ok(&self, submitted: Option<&str>) -> bool {
        let Some(s) = submitted else { return false };
        let (a, b) = (s.as_bytes(), self.csrf.as_bytes());
        let same =
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        same && !matches!(self.kind, Kind::Anonymous { fresh: true, .. })
    }
}

impl FromRequestParts<Arc<AppState>> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let secure = parts.extensions.get::<Transport>().is_some_and(|t| t.https);
        let now = state.engine.now();
        let presented = cookie(parts, SESSION_COOKIE).filter(|id| !id.is_empty());
        // A store that cannot answer (a database failover, say) signs nobody out: this request
        // is served as anonymous, but the session and its cookie stay.
        let mut store_failed = false;
        if let Some(id) = &presented {
            let id_hash = tokens::hash(id);
            let found = match state.engine.store().session(&id_hash).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!("reading a console session: {e}");
                    store_failed = true;
                    None
                }
            }
            .map(|r| Session {
                csrf: r.csrf,
                token: r.token,
                token_hash: r.token_hash,
                created_at: r.created_at,
            });
            match found {
                Some(s) if now - s.created_at < SESSION_LIFETIME => {
                    // A session whose token was revoked is signed out.
                    let live = match state.engine.store().token_auth_by_hash(&s.token_hash).await {
                        Ok(auth) => auth.filter(|a| a.name == s.token),
                        Err(e) => {
                            tracing::error!("checking a console session's token: {e}");
                            store_failed = true;
                            None
                        }
                    };
                    if let Some(auth) = live {
                        return Ok(Visitor {
                            csrf: s.csrf.clone(),
                            kind: Kind::SignedIn {
                                id: id.clone(),
                                session: s,
                                reviewer: auth.reviewer,
                            },
                            stale_session_cookie: false,
                            secure,
                        });
                    }
                    if !store_failed {
                        let _ = state.engine.store().delete_session(&id_hash).await;
                    }
                }
                Some(_) => {
                    let _ = state.engine.store().delete_session(&id_hash).await;
                }
                None => {}
            }
        }
        let (cookie_value, fresh) = match cookie(parts, CSRF_COOKIE) {
            Some(c) if valid_csrf_cookie(&c, now) => (c, false),
            _ => (format!("{now}.{}", tokens::random_hex(16)), true),
        };
        Ok(Visitor {
            csrf: signed_csrf(state, &cookie_value),
            kind: Kind::Anonymous {
                cookie: cookie_value,
                fresh,
            },
            stale_session_cookie: presented.is_some() && !store_failed,
            secure,
        })
    }
}

/// Starts a signed-in session for a token and returns its id. The store keeps at most
/// `MAX_SESSIONS` (expired ones go first, then the oldest) and only the id's hash.
pub async fn start_session(
    state: &AppState,
    token: String,
    token_hash: String,
) -> Result<String, accessrail_store::StoreError> {
    let now = state.engine.now();
    let id = random_id();
    let record = accessrail_store::SessionRecord {
        id_hash: tokens::hash(&id),
        csrf: random_id(),
        token,
        token_hash,
        created_at: now,
    };
    state
        .engine
        .store()
        .create_session(record, now - SESSION_LIFETIME + 1, MAX_SESSIONS as u64)
        .await?;
    Ok(id)
}

/// Ends a session (sign-out, or a new sign-in replacing it).
pub async fn end_session(state: &AppState, id: &str) {
    let _ = state.engine.store().delete_session(&tokens::hash(id)).await;
}

/// Deny by default for reviewer sign-ins: a request with a reviewer's session to any console
/// page but the review pages (and sign-in / sign-out) is sent to `/reviews`, whatever the page's
/// own checks say. The API has its own check (`Caller` refuses reviewer tokens).
pub async fn reviewer_fence(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = req.uri().path();
    let allowed = path == "/reviews"
        || path.starts_with("/reviews/")
        || matches!(path, "/login" | "/logout" | "/healthz")
        || path == "/api"
        || path.starts_with("/api/");
    if allowed {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    if let Some(id) = cookie(&parts, SESSION_COOKIE).filter(|c| !c.is_empty())
        && let Ok(Some(session)) = state.engine.store().session(&tokens::hash(&id)).await
        && let Ok(Some(auth)) = state
            .engine
            .store()
            .token_auth_by_hash(&session.token_hash)
            .await
        && auth.name == session.token
        && auth.reviewer.is_some()
    {
        return axum::response::Redirect::to("/reviews").into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hmac_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than the block is hashed first (test case 6).
        assert_eq!(
            hmac_hex(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn csrf_cookie_shape_and_age() {
        let nonce = "0123456789abcdef0123456789abcdef";
        assert!(valid_csrf_cookie(&format!("100.{nonce}"), 100));
        assert!(!valid_csrf_cookie(
            &format!("100.{nonce}"),
            100 + SESSION_LIFETIME
        ));
        assert!(!valid_csrf_cookie(&format!("1000.{nonce}"), 100));
        assert!(!valid_csrf_cookie("100.xyz", 100));
        assert!(!valid_csrf_cookie(nonce, 100));
    }
}
