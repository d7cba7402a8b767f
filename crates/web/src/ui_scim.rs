//! The console's SCIM page: deactivations an identity provider asked for beyond the burst cap
//! (or of a TestRail administrator), held until an administrator approves or rejects each one.
//! Approving changes nothing by itself: the identity provider's next retry applies it (through
//! the usual plan, read-back and audit); rejecting makes that retry fail for good. Also the
//! SCIM tokens and the base URL to give the identity provider.

use std::sync::Arc;

use accessrail_engine::time_fmt;
use accessrail_store::Store;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use crate::auth::Visitor;
use crate::state::AppState;
use crate::ui::{forbidden, message_page, page, to_login};

#[derive(Deserialize)]
pub(crate) struct DecideForm {
    csrf: Option<String>,
}

/// `GET /holds`: held SCIM deactivations (waiting first), and those decided.
pub(crate) async fn holds_page(State(s): State<Arc<AppState>>, v: Visitor) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    let store = s.engine.store();
    let (holds, conns, tokens) = match (
        store.scim_holds(None).await,
        store.connections().await,
        store.tokens().await,
    ) {
        (Ok(h), Ok(c), Ok(t)) => (h, c, t),
        _ => {
            return message_page(
                &s,
                &v,
                StatusCode::SERVICE_UNAVAILABLE,
                "SCIM",
                "The database did not answer. Try again.",
                "/users",
            );
        }
    };
    let conn_name = |id: &str| {
        conns
            .iter()
            .find(|c| c.id == id)
            .map_or_else(|| id.to_string(), |c| c.name.clone())
    };
    let row = |h: &accessrail_store::ScimDeactivation| {
        context! {
            id => h.id, connection => conn_name(&h.connection_id), token => h.token,
            email => h.email, user => h.tr_user_id, at => time_fmt::short(h.requested_at),
            status => h.status, decided_by => h.decided_by, decided_at => h.decided_at.map(time_fmt::short),
        }
    };
    let waiting: Vec<Value> = holds
        .iter()
        .filter(|h| h.status == "held")
        .map(row)
        .collect();
    let decided: Vec<Value> = holds
        .iter()
        .filter(|h| h.status != "held")
        .map(row)
        .collect();
    let scim_tokens: Vec<Value> = tokens
        .iter()
        .filter(|t| t.revoked_at.is_none())
        .filter_map(|t| {
            t.scim_connection.as_deref().map(|c| {
                let name = conn_name(c);
                context! { name => t.name, connection => name.clone(), path => format!("/scim/v2/{name}/") }
            })
        })
        .collect();
    page(
        &s,
        &v,
        "holds.html",
        context! {
            title => "SCIM", page => "holds", waiting, decided, scim_tokens,
            cap => accessrail_engine::scim::DEFAULT_CAP,
        },
    )
}

async fn decide(s: &AppState, v: &Visitor, id: i64, csrf: Option<&str>, approve: bool) -> Response {
    let Some(token) = v.signed_in() else {
        return to_login(v);
    };
    if !v.csrf_ok(csrf) {
        return forbidden(s, v);
    }
    let by = format!("token:{token}");
    let connection = match s.engine.store().scim_holds(None).await {
        Ok(all) => {
            let conns = s.engine.store().connections().await.unwrap_or_default();
            all.iter()
                .find(|h| h.id == id)
                .and_then(|h| conns.iter().find(|c| c.id == h.connection_id))
                .map(|c| c.name.clone())
                .unwrap_or_default()
        }
        Err(_) => String::new(),
    };
    match s
        .engine
        .store()
        .scim_decide(id, approve, &by, s.engine.now())
        .await
    {
        Ok(true) => {
            let record = accessrail_domain::AuditRecord {
                at: s.engine.now(),
                actor: by,
                connection,
                action: if approve {
                    "scim_hold_approved".into()
                } else {
                    "scim_hold_rejected".into()
                },
                target: format!("hold #{id}"),
                before: Some("held".into()),
                after: Some(if approve { "approved" } else { "rejected" }.into()),
                calls: vec![],
                outcome: accessrail_domain::Outcome::Done,
                message: Some(if approve {
                    "the identity provider's next retry deactivates the account".into()
                } else {
                    "the identity provider's retries are refused".into()
                }),
            };
            if let Err(e) = s.engine.store().append_audit(record).await {
                tracing::error!("auditing a SCIM hold decision: {e}");
            }
            Redirect::to("/holds").into_response()
        }
        Ok(false) => message_page(
            s,
            v,
            StatusCode::CONFLICT,
            "SCIM",
            &format!("Hold #{id} is not waiting for a decision (any more)."),
            "/holds",
        ),
        Err(e) => {
            tracing::error!("deciding a SCIM hold: {e}");
            message_page(
                s,
                v,
                StatusCode::SERVICE_UNAVAILABLE,
                "SCIM",
                "The database did not answer. Try again.",
                "/holds",
            )
        }
    }
}

pub(crate) async fn approve(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(id): Path<i64>,
    Form(f): Form<DecideForm>,
) -> Response {
    decide(&s, &v, id, f.csrf.as_deref(), true).await
}

pub(crate) async fn reject(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(id): Path<i64>,
    Form(f): Form<DecideForm>,
) -> Response {
    decide(&s, &v, id, f.csrf.as_deref(), false).await
}
