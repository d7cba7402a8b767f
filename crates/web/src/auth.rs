//! Bearer tokens for the API; a session cookie and a CSRF token for the console.

use std::sync::Arc;

use accessrail_engine::tokens;
use accessrail_store::Store;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::{AppState, Session, random_id};

pub const SESSION_COOKIE: &str = "accessrail_session";

/// A console session lasts at most this long; then the visitor signs in again.
pub const SESSION_LIFETIME: i64 = 12 * 3600;

/// Above this many sessions, expired ones are dropped when a new one is made.
const SESSION_SWEEP_AT: usize = 10_000;

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
        let name = state
            .engine
            .store()
            .token_by_hash(&tokens::hash(raw))
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        Ok(Caller { token: name })
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

/// The console visitor's session (created on first sight) and whether it needs a Set-Cookie.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub id: String,
    pub session: Session,
    pub fresh: bool,
}

impl Visitor {
    pub fn signed_in(&self) -> Option<&str> {
        self.session.token.as_deref()
    }

    pub fn set_cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            self.id
        )
    }
}

impl FromRequestParts<Arc<AppState>> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let now = state.engine.now();
        let existing = cookie(parts, SESSION_COOKIE).and_then(|id| {
            let found = state.sessions().get(&id).cloned();
            found
                .filter(|s| now - s.created_at < SESSION_LIFETIME)
                .map(|s| (id, s))
        });
        if let Some((id, s)) = existing {
            // A session whose token was revoked is signed out.
            if let (Some(name), Some(hash)) = (&s.token, &s.token_hash) {
                let live = state
                    .engine
                    .store()
                    .token_by_hash(hash)
                    .await
                    .ok()
                    .flatten()
                    .as_ref()
                    == Some(name);
                if !live {
                    let anon = Session {
                        token: None,
                        token_hash: None,
                        ..s.clone()
                    };
                    state.sessions().insert(id.clone(), anon.clone());
                    return Ok(Visitor {
                        id,
                        session: anon,
                        fresh: false,
                    });
                }
            }
            return Ok(Visitor {
                id,
                session: s,
                fresh: false,
            });
        }
        let id = random_id();
        let session = Session {
            csrf: random_id(),
            token: None,
            token_hash: None,
            created_at: now,
        };
        {
            let mut sessions = state.sessions();
            if sessions.len() >= SESSION_SWEEP_AT {
                sessions.retain(|_, s| now - s.created_at < SESSION_LIFETIME);
            }
            sessions.insert(id.clone(), session.clone());
        }
        Ok(Visitor {
            id,
            session,
            fresh: true,
        })
    }
}

/// Constant-time comparison of the form's CSRF token with the session's.
pub fn csrf_ok(visitor: &Visitor, submitted: Option<&str>) -> bool {
    let Some(s) = submitted else { return false };
    let (a, b) = (s.as_bytes(), visitor.session.csrf.as_bytes());
    a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        && !visitor.fresh
}
