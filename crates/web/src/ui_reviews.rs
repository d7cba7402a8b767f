//! The console's access reviews: the list, one review (a reviewer's items, each with its
//! decision form; or, for an administrator, the progress per reviewer with approval), the bulk
//! keep and the close with their confirmation pages, and the evidence exports.
//!
//! A reviewer sign-in reaches only these pages, and only its own items. Who may do what is the
//! engine's rule (`accessrail_engine::reviews`): these pages ask it and show its refusals in its
//! own words (a forbidden request is a 403 page, an unknown review a 404 page; a decision it
//! refuses is shown at the item, nothing changed).

use std::collections::BTreeMap;
use std::sync::Arc;

use accessrail_domain::review::{Decision, Revocation};
use accessrail_engine::provision::{self, Rails};
use accessrail_engine::reviews::{
    self, Actor, ClosePlan, DecideRequest, ItemView, ReviewView, ReviewerView,
};
use accessrail_engine::{EngineError, ErrorCode, time_fmt};
use accessrail_store::Connection;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use crate::auth::Visitor;
use crate::error::ApiError;
use crate::state::AppState;
use crate::ui::{
    acknowledge_text, audit_link, caution_title, cautions, forbidden, message_page, page, plural,
    to_login, with_cookies,
};

/// Items per page of a review.
const PAGE: usize = 50;

/// Undecided items the keep-all confirmation lists by name (it counts them all).
const KEEP_LISTED: usize = 500;

// ---- helpers ----------------------------------------------------------------------------------

/// An engine refusal as a status and the engine's own words (a store failure is logged and
/// answered with a request id only, as the API does).
fn refusal(e: EngineError) -> (StatusCode, String) {
    let a = ApiError::from(e);
    (a.status, a.message)
}

/// A page that only says why not, with a way back.
fn refused_page(s: &AppState, v: &Visitor, e: EngineError, back: &str) -> Response {
    let (status, message) = refusal(e);
    let heading = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        s if s.is_server_error() => "Something went wrong",
        _ => "Not done",
    };
    message_page(s, v, status, heading, &message, back)
}

/// Refusals that are about who asks or what exists (a page of their own), as against what was
/// asked (shown where it was asked).
fn is_access_refusal(e: &EngineError) -> bool {
    matches!(e.code(), ErrorCode::Forbidden | ErrorCode::NotFound)
}

fn review_id(raw: &str) -> Option<i64> {
    raw.trim().parse::<i64>().ok().filter(|n| *n > 0)
}

fn no_such_review(s: &AppState, v: &Visitor, raw: &str) -> Response {
    message_page(
        s,
        v,
        StatusCode::NOT_FOUND,
        "Not found",
        &format!("There is no review {raw:?}."),
        "/reviews",
    )
}

/// Which items a reviewer's page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    All,
    Undecided,
    Decided,
}

impl Show {
    fn parse(s: Option<&str>) -> Self {
        match s.map(str::trim) {
            Some("undecided") => Self::Undecided,
            Some("decided") => Self::Decided,
            _ => Self::All,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Undecided => "undecided",
            Self::Decided => "decided",
        }
    }

    /// The store's filter: decided items, undecided ones, or all.
    fn decided(self) -> Option<bool> {
        match self {
            Self::All => None,
            Self::Undecided => Some(false),
            Self::Decided => Some(true),
        }
    }
}

/// Where a review's page is: its reviewer (an administrator acting as one), filter and page.
#[derive(Debug, Clone, Default)]
struct Place {
    reviewer: Option<String>,
    show: Option<String>,
    page: usize,
}

impl Place {
    fn new(reviewer: Option<&str>, show: Option<&str>, page: Option<&str>) -> Self {
        Self {
            reviewer: reviewer
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string),
            show: show.map(str::to_string),
            page: page.and_then(|p| p.trim().parse().ok()).unwrap_or(0),
        }
    }

    fn show(&self) -> Show {
        Show::parse(self.show.as_deref())
    }

    /// The review's page here, with `extra` query pairs (a flash) and an anchor.
    fn url(&self, id: i64, extra: &[(&str, String)], anchor: Option<String>) -> String {
        let mut q: Vec<String> = vec![];
        if let Some(r) = &self.reviewer {
            q.push(format!(
                "reviewer={}",
                testrail_client::encode_query_value(r)
            ));
        }
        if self.show() != Show::All {
            q.push(format!("show={}", self.show().as_str()));
        }
        if self.page > 0 {
            q.push(format!("page={}", self.page));
        }
        for (k, v) in extra {
            q.push(format!("{k}={}", testrail_client::encode_query_value(v)));
        }
        let mut u = format!("/reviews/{id}");
        if !q.is_empty() {
            u.push('?');
            u.push_str(&q.join("&"));
        }
        if let Some(a) = anchor {
            u.push('#');
            u.push_str(&a);
        }
        u
    }
}

/// A redirect after a successful form (303: the browser follows it with a GET).
fn see_other(v: &Visitor, to: &str) -> Response {
    with_cookies(Redirect::to(to).into_response(), v)
}

fn short(t: Option<i64>) -> Option<String> {
    t.map(time_fmt::short)
}

fn decision_label(d: &str) -> String {
    Decision::parse(d).map_or_else(|| d.replace('_', " "), |d| d.label().to_string())
}

fn revocation_label(a: &str) -> String {
    match Revocation::parse(a) {
        Ok(Revocation::Deactivate) => "deactivate the account".into(),
        Ok(Revocation::RemoveGroup(g)) => format!("remove from group {g}"),
        Ok(Revocation::Role(r)) => format!("lower the role to {r}"),
        Err(_) => a.to_string(),
    }
}

fn status_of(r: &ReviewView) -> (String, &'static str) {
    match r.status.as_str() {
        "open" if r.overdue => ("open, overdue".into(), "bad"),
        "open" => ("open".into(), "warn"),
        "closed" => ("closed".into(), "ok"),
        other => (other.replace('_', " "), ""),
    }
}

/// Where an item's final decision comes from, in words (`reviewer`: their approved decision).
fn source_label(s: &str) -> String {
    if s == "reviewer" {
        "the reviewer's approved decision".into()
    } else {
        s.to_string()
    }
}

/// What closing did, in words: "3 kept, 1 revoked, 0 refused, 0 failed".
fn outcome_text(o: &serde_json::Value) -> String {
    let n = |k: &str| o.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    format!(
        "{} kept, {} revoked, {} refused, {} failed",
        n("kept"),
        n("revoked"),
        n("refused"),
        n("failed")
    )
}

fn review_ctx(r: &ReviewView) -> Value {
    let (status, status_css) = status_of(r);
    context! {
        id => r.id, connection => r.connection, scope => r.scope, scan => r.snapshot_scan,
        status, status_css, open => r.status == "open", overdue => r.overdue,
        undecided => r.undecided, every => r.every,
        fallbacks => r.fallback_reviewers.join(", "),
        due => short(r.due_at), created => time_fmt::short(r.created_at), created_by => r.created_by,
        closed => short(r.closed_at), closed_by => r.closed_by,
        items => r.items, decided => r.decided,
        previous => r.previous_review, next_start => short(r.next_start_at),
        outcome => r.outcome.as_ref().map(outcome_text),
    }
}

/// A submission's state, in words, for the reviewer and for the administrator.
fn submission_ctx(p: &ReviewerView) -> Value {
    let (label, css) = match p.submission.as_str() {
        "submitted" => ("submitted, waiting for approval", "warn"),
        "approved" => ("approved", "ok"),
        "sent_back" => ("sent back", "bad"),
        _ => ("not submitted", ""),
    };
    context! {
        state => p.submission, label, css,
        submitted_at => short(p.submitted_at), judged_by => p.judged_by,
        judged_at => short(p.judged_at), comment => p.comment,
    }
}

fn json_str<'a>(v: &'a serde_json::Value, k: &str) -> Option<&'a str> {
    v.get(k)
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
}

/// What a decision form sent, kept to show it again with the engine's refusal.
#[derive(Debug, Clone, Default)]
struct ItemError {
    item: i64,
    message: String,
    decision: String,
    revocation: String,
    role: String,
    comment: String,
}

/// One item for the page: the account, what it had at the snapshot, who it belongs to, why it
/// is this reviewer's, the decision so far, and its decision form's values.
fn item_ctx(i: &ItemView, error: Option<&ItemError>) -> Value {
    let e = &i.entitlements;
    let projects = e.projects.as_ref().map(|ps| {
        ps.iter()
            .map(|p| {
                context! { name => p.name, role => p.role.clone().unwrap_or_else(|| "unknown role".into()), source => p.source }
            })
            .collect::<Vec<_>>()
    });
    let identity = i.identity.as_ref().map(|j| {
        context! {
            name => json_str(j, "name"), email => json_str(j, "email"),
            status => json_str(j, "status"), manager => json_str(j, "manager_email"),
        }
    });
    // The form shows what was sent when the engine refused it, else the decision kept.
    let (decision, revocation, role, comment) = match error {
        Some(er) if er.item == i.item => (
            er.decision.clone(),
            er.revocation.clone(),
            er.role.clone(),
            er.comment.clone(),
        ),
        _ => {
            let (rev, role) = match i.action.as_deref().map(Revocation::parse) {
                Some(Ok(Revocation::Role(r))) => ("role".to_string(), r),
                Some(Ok(r)) => (r.to_string(), String::new()),
                _ => ("deactivate".to_string(), String::new()),
            };
            (
                i.decision.clone().unwrap_or_default(),
                rev,
                role,
                i.comment.clone().unwrap_or_default(),
            )
        }
    };
    let revocations: Vec<(String, String)> = std::iter::once((
        "deactivate".to_string(),
        "deactivate the account".to_string(),
    ))
    .chain(e.groups.iter().map(|g| {
        (
            Revocation::RemoveGroup(g.clone()).to_string(),
            format!("remove from group {g}"),
        )
    }))
    .chain(std::iter::once((
        "role".to_string(),
        "lower the role to (type it below)".to_string(),
    )))
    .collect();
    let name = Some(i.name.trim()).filter(|n| !n.is_empty());
    context! {
        n => i.item, email => i.email, name, account_id => i.account_id,
        active => e.active, role_now => e.role, admin => e.is_admin, groups => e.groups,
        projects, projects_note => e.projects_note, identity,
        reviewer => i.reviewer, route => i.route,
        decided => i.decision.is_some(),
        decision_label => i.decision.as_deref().map(decision_label),
        action_label => i.action.as_deref().map(revocation_label),
        comment_now => i.comment, decided_by => i.decided_by, decided_at => short(i.decided_at),
        final_decision => i.final_decision.as_deref().map(decision_label),
        final_source => i.final_source.as_deref().map(source_label),
        outcome => i.outcome, outcome_css => i.outcome.as_deref().map(outcome_css),
        outcome_audit => i.outcome_audit_id, outcome_link => i.outcome_audit_id.map(audit_link),
        form => context! { decision, revocation, role, comment },
        revocations,
        error => error.filter(|er| er.item == i.item).map(|er| er.message.clone()),
    }
}

fn outcome_css(o: &str) -> &'static str {
    if o.starts_with("done") || o.starts_with("kept") || o.starts_with("no change") {
        "ok"
    } else if o.starts_with("refused") {
        "warn"
    } else {
        "bad"
    }
}

/// The decision select's choices.
fn decisions() -> Vec<(&'static str, &'static str)> {
    [
        Decision::Keep,
        Decision::Revoke,
        Decision::OutOfScope,
        Decision::AlreadyRemoved,
    ]
    .iter()
    .map(|d| (d.as_str(), d.label()))
    .collect()
}

/// A flash from a redirect's query (`?done=decided`): fixed texts only, never the query's own.
fn flash(done: Option<&str>, n: Option<u64>) -> Option<(String, &'static str)> {
    let n = n.unwrap_or(0);
    Some(match done? {
        "decided" => ("Decision saved.".into(), "ok"),
        "kept" => (
            format!("{} kept.", plural(n, "undecided item", "undecided items")),
            "ok",
        ),
        "submitted" => ("Decisions submitted for approval.".into(), "ok"),
        "approved" => ("Submission approved.".into(), "ok"),
        "sent_back" => (
            "Submission sent back: the reviewer can change their decisions and submit again."
                .into(),
            "ok",
        ),
        "closed" => ("Review closed.".into(), "ok"),
        "not_closed" => (
            "A revocation failed, so the review stays open. The outcomes so far are kept: read them below, then close again to retry what is left.".into(),
            "bad",
        ),
        _ => return None,
    })
}

// ---- the list ---------------------------------------------------------------------------------

pub(crate) async fn reviews_page(State(s): State<Arc<AppState>>, v: Visitor) -> Response {
    let Some(actor) = v.review_actor() else {
        return to_login(&v);
    };
    let list = match reviews::list(&s.engine, None, &actor).await {
        Ok(l) => l,
        Err(e) => return refused_page(&s, &v, e, "/reviews"),
    };
    let rows: Vec<Value> = list
        .iter()
        .map(|r| {
            let (status, css) = status_of(r);
            context! {
                id => r.id, connection => r.connection, scope => r.scope, status, css,
                items => r.items, decided => r.decided, due => short(r.due_at),
                every => r.every, created => time_fmt::short(r.created_at),
                outcome => r.outcome.as_ref().map(outcome_text),
            }
        })
        .collect();
    page(
        &s,
        &v,
        "reviews.html",
        context! {
            title => if actor.is_admin() { "Access reviews" } else { "My reviews" },
            page => "reviews", admin => actor.is_admin(), reviews => rows,
        },
    )
}

// ---- one review -------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub(crate) struct ReviewQuery {
    #[serde(default)]
    reviewer: Option<String>,
    #[serde(default)]
    show: Option<String>,
    #[serde(default)]
    page: Option<String>,
    /// A flash after a form: which one (a fixed text is shown, never this).
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    n: Option<u64>,
}

pub(crate) async fn review_page(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(raw): Path<String>,
    Query(q): Query<ReviewQuery>,
) -> Response {
    let Some(actor) = v.review_actor() else {
        return to_login(&v);
    };
    let Some(id) = review_id(&raw) else {
        return no_such_review(&s, &v, &raw);
    };
    let place = Place::new(q.reviewer.as_deref(), q.show.as_deref(), q.page.as_deref());
    let notice = flash(q.done.as_deref(), q.n);
    render_review(&s, &v, &actor, id, &place, notice, None, StatusCode::OK).await
}

/// A review's page: a reviewer's items (a reviewer sign-in, or an administrator naming the
/// reviewer), or the administrator's overview.
#[allow(clippy::too_many_arguments)]
async fn render_review(
    s: &AppState,
    v: &Visitor,
    actor: &Actor,
    id: i64,
    place: &Place,
    notice: Option<(String, &'static str)>,
    item_error: Option<ItemError>,
    status: StatusCode,
) -> Response {
    let named = place.reviewer.as_deref();
    let admin_overview = actor.is_admin() && named.is_none();
    let show = place.show();
    // One page of items from the store (a fallback reviewer may have tens of thousands).
    let fetch = |at: usize| {
        let filter = reviews::ItemFilter {
            decided: show.decided(),
            offset: (at * PAGE) as u64,
            limit: PAGE as u64,
        };
        async move { reviews::show_page(&s.engine, id, named, &filter, actor).await }
    };
    let mut detail = match fetch(place.page).await {
        Ok(d) => d,
        Err(e) => return refused_page(s, v, e, "/reviews"),
    };
    let matching = detail.total as usize;
    let pages = matching.div_ceil(PAGE).max(1);
    let at = place.page.min(pages - 1);
    if at != place.page {
        detail = match fetch(at).await {
            Ok(d) => d,
            Err(e) => return refused_page(s, v, e, "/reviews"),
        };
    }
    let total = detail.review.items as usize;
    let undecided = total - detail.review.decided as usize;
    let items: Vec<Value> = detail
        .items
        .iter()
        .map(|i| item_ctx(i, item_error.as_ref()))
        .collect();
    let here = |show: Show, page: usize| {
        Place {
            reviewer: place.reviewer.clone(),
            show: Some(show.as_str().to_string()),
            page,
        }
        .url(id, &[], None)
    };
    let filters: Vec<Value> = [
        (Show::All, "All", total),
        (Show::Undecided, "Undecided", undecided),
        (Show::Decided, "Decided", total - undecided),
    ]
    .iter()
    .map(|(sh, label, n)| context! { key => sh.as_str(), label, n, link => here(*sh, 0), on => *sh == show })
    .collect();
    let range = (matching > 0).then(|| {
        format!(
            "{}–{} of {}",
            at * PAGE + 1,
            (at * PAGE + PAGE).min(matching),
            matching
        )
    });
    let prev_link = (at > 0).then(|| here(show, at - 1));
    let next_link = (at + 1 < pages).then(|| here(show, at + 1));
    let r = &detail.review;
    let (notice, notice_kind) = notice.map_or((None, ""), |(m, k)| (Some(m), k));
    let common = context! {
        page => "reviews", r => review_ctx(r), show => show.as_str(), filters, items,
        range, prev_link, next_link, notice, notice_kind,
        decisions => decisions(), reviewer_param => place.reviewer, page_param => at,
    };

    if admin_overview {
        // Each reviewer's decisions, counted, for whoever approves them.
        let mut counts: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
        for (reviewer, decision, n) in &detail.decisions {
            let d = decision
                .as_deref()
                .map_or_else(|| "undecided".to_string(), decision_label);
            *counts
                .entry(reviewer.as_str())
                .or_default()
                .entry(d)
                .or_default() += n;
        }
        let reviewers: Vec<Value> = detail
            .reviewers
            .iter()
            .map(|p| {
                let c = counts
                    .get(p.reviewer.as_str())
                    .map(|m| {
                        m.iter()
                            .map(|(k, n)| format!("{n} {k}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                context! {
                    reviewer => p.reviewer, items => p.items, decided => p.decided, counts => c,
                    link => Place { reviewer: Some(p.reviewer.clone()), ..Place::default() }.url(id, &[], None),
                    sub => submission_ctx(p),
                    can_judge => p.submission == "submitted" && r.status == "open",
                }
            })
            .collect();
        let waiting = detail
            .reviewers
            .iter()
            .filter(|p| p.submission == "submitted")
            .count();
        return with_status(
            page(
                s,
                v,
                "review.html",
                context! {
                    ..context! {
                        title => format!("Review #{id}"), mode => "admin", reviewers, waiting,
                        export_csv => format!("/reviews/{id}/export.csv"),
                        export_json => format!("/reviews/{id}/export.json"),
                        export_html => format!("/reviews/{id}/export.html"),
                        close_link => (r.status == "open").then(|| format!("/reviews/{id}/close")),
                    },
                    ..common
                },
            ),
            status,
        );
    }

    // One reviewer's items.
    let Some(me) = detail.reviewers.first() else {
        return message_page(
            s,
            v,
            StatusCode::NOT_FOUND,
            "Not found",
            &format!(
                "{} has no items in review {id}.",
                named.unwrap_or("this reviewer")
            ),
            &format!("/reviews/{id}"),
        );
    };
    let editable = r.status == "open" && matches!(me.submission.as_str(), "open" | "sent_back");
    let acting = actor.is_admin();
    let keep_all_link = (editable && undecided > 0).then(|| {
        let mut u = format!("/reviews/{id}/keep-all");
        if let Some(r) = &place.reviewer {
            u.push_str(&format!(
                "?reviewer={}",
                testrail_client::encode_query_value(r)
            ));
        }
        u
    });
    with_status(
        page(
            s,
            v,
            "review.html",
            context! {
                ..context! {
                    title => format!("Review #{id}"), mode => "reviewer", me => me.reviewer,
                    acting, sub => submission_ctx(me), editable, undecided, total,
                    keep_all_link, overview => acting.then(|| format!("/reviews/{id}")),
                },
                ..common
            },
        ),
        status,
    )
}

fn with_status(mut r: Response, status: StatusCode) -> Response {
    if status != StatusCode::OK {
        *r.status_mut() = status;
    }
    r
}

// ---- deciding ---------------------------------------------------------------------------------

#[derive(Deserialize)]
pub(crate) struct DecideForm {
    csrf: Option<String>,
    item: i64,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    revocation: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    reviewer: Option<String>,
    #[serde(default)]
    show: Option<String>,
    #[serde(default)]
    page: Option<String>,
}

/// The revocation a form names: only with revoke (the engine refuses one with another
/// decision); `role` takes the role typed beside it.
fn form_action(f: &DecideForm, d: Decision) -> Result<Option<String>, String> {
    if d != Decision::Revoke {
        return Ok(None);
    }
    match f.revocation.trim() {
        "" => Ok(None),
        "role" if f.role.trim().is_empty() => {
            Err("type the role to lower the account to (or choose another revocation)".into())
        }
        "role" => Ok(Some(
            Revocation::Role(f.role.trim().to_string()).to_string(),
        )),
        other => Ok(Some(other.to_string())),
    }
}

pub(crate) async fn decide(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(raw): Path<String>,
    Form(f): Form<DecideForm>,
) -> Response {
    let Some(actor) = v.review_actor() else {
        return to_login(&v);
    };
    if !v.csrf_ok(f.csrf.as_deref()) {
        return forbidden(&s, &v);
    }
    let Some(id) = review_id(&raw) else {
        return no_such_review(&s, &v, &raw);
    };
    let place = Place::new(f.reviewer.as_deref(), f.show.as_deref(), f.page.as_deref());
    let anchor = format!("item-{}", f.item);
    let refused = |message: String| ItemError {
        item: f.item,
        message,
        decision: f.decision.clone(),
        revocation: f.revocation.clone(),
        role: f.role.clone(),
        comment: f.comment.clone(),
    };
    let wanted = Decision::parse(&f.decision)
        .ok_or_else(|| "choose a decision".to_string())
        .and_then(|d| Ok((d, form_action(&f, d)?)));
    let (decision, action) = match wanted {
        Ok(x) => x,
        Err(m) => {
            return render_review(
                &s,
                &v,
                &actor,
                id,
                &place,
                None,
                Some(refused(m)),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let req = DecideRequest {
        account: format!("#{}", f.item),
        decision,
        action,
        comment: Some(f.comment.clone()).filter(|c| !c.trim().is_empty()),
        as_reviewer: place.reviewer.clone(),
    };
    match reviews::decide(&s.engine, id, vec![req], &actor).await {
        Ok(_) => see_other(
            &v,
            &place.url(id, &[("done", "decided".into())], Some(anchor)),
        ),
        Err(e) if is_access_refusal(&e) => refused_page(&s, &v, e, &place.url(id, &[], None)),
        Err(e) => {
            let (status, message) = refusal(e);
            render_review(
                &s,
                &v,
                &actor,
                id,
                &place,
                None,
                Some(refused(message)),
                status,
            )
            .await
        }
    }
}

// ---- keep all undecided -----------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub(crate) struct ReviewerQuery {
    #[serde(default)]
    reviewer: Option<String>,
}

pub(crate) async fn keep_all_page(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(raw): Path<String>,
    Query(q): Query<ReviewerQuery>,
) -> Response {
    let Some(actor) = v.review_actor() else {
        return to_login(&v);
    };
    let Some(id) = review_id(&raw) else {
        return no_such_review(&s, &v, &raw);
    };
    let place = Place::new(q.reviewer.as_deref(), None, None);
    let back = place.url(id, &[], None);
    if actor.is_admin() && place.reviewer.is_none() {
        return message_page(
            &s,
            &v,
            StatusCode::BAD_REQUEST,
            "Keep all undecided",
            "Name the reviewer whose undecided items to keep: open their items from the review's page.",
            &back,
        );
    }
    // The confirmation lists the first undecided items and counts all of them.
    let filter = reviews::ItemFilter {
        decided: Some(false),
        offset: 0,
        limit: KEEP_LISTED as u64,
    };
    let detail =
        match reviews::show_page(&s.engine, id, place.reviewer.as_deref(), &filter, &actor).await {
            Ok(d) => d,
            Err(e) => return refused_page(&s, &v, e, &back),
        };
    let Some(me) = detail.reviewers.first() else {
        return message_page(
            &s,
            &v,
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("No items of this reviewer in review {id}."),
            &format!("/reviews/{id}"),
        );
    };
    let undecided: Vec<Value> = detail
        .items
        .iter()
        .map(|i| context! { n => i.item, email => i.email, name => i.name, had => i.entitlements.summary() })
        .collect();
    let more = detail.total.saturating_sub(undecided.len() as u64);
    let heading = "Keep all undecided items";
    if detail.review.status != "open" {
        return message_page(
            &s,
            &v,
            StatusCode::CONFLICT,
            heading,
            &format!("Review {id} is closed; nothing can be decided."),
            &back,
        );
    }
    if !matches!(me.submission.as_str(), "open" | "sent_back") {
        return message_page(
            &s,
            &v,
            StatusCode::CONFLICT,
            heading,
            "These decisions are submitted; nothing can be changed unless an administrator sends them back.",
            &back,
        );
    }
    if undecided.is_empty() {
        return message_page(
            &s,
            &v,
            StatusCode::OK,
            heading,
            "Nothing is undecided: every item has a decision.",
            &back,
        );
    }
    page(
        &s,
        &v,
        "review_keep.html",
        context! {
            title => heading, page => "reviews", id, me => me.reviewer,
            acting => actor.is_admin(), undecided, more, count => plural(detail.total, "undecided item", "undecided items"),
            reviewer_param => place.reviewer, back,
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct ReviewerForm {
    csrf: Option<String>,
    #[serde(default)]
    reviewer: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

pub(crate) async fn keep_all(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(raw): Path<String>,
    Form(f): Form<ReviewerForm>,
) -> Response {
    let Some(actor) = v.review_actor() else {
        return to_login(&v);
    };
    if !v.csrf_ok(f.csrf.as_deref()) {
        return forbidden(&s, &v);
    }
    let Some(id) = review_id(&raw) else {
        return no_such_review(&s, &v, &raw);
    };
    let place = Place::new(f.reviewer.as_deref(), None, None);
    match reviews::keep_undecided(&s.engine, id, place.reviewer.as_deref(), &actor).await {
        Ok(n) => see_other(
            &v,
            &place.url(id, &[("done", "kept".into()), ("n", n.to_string())], None),
        ),
        Err(e) => refused_page(&s, &v, e, &place.url(id, &[], None)),
    }
}

// ---- submitting, approving, sending back -------------------------------------------------------

pub(crate) async fn submit(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(raw): Path<String>,
    Form(f): Form<ReviewerForm>,
) -> Response {
    let Some(actor) = v.review_actor() else {
        return to_login(&v);
    };
    if !v.csrf_ok(f.csrf.as_deref()) {
        return forbidden(&s, &v);
    }
    let Some(id) = review_id(&raw) else {
        return no_such_review(&s, &v, &raw);
    };
    let place = Place::new(f.reviewer.as_deref(), None, None);
    match reviews::submit(&s.engine, id, place.reviewer.as_deref(), &actor).await {
        Ok(_) => see_other(&v, &place.url(id, &[("done", "submitted".into())], None)),
        Err(e) if is_access_refusal(&e) => refused_page(&s, &v, e, &place.url(id, &[], None)),
        Err(e) => {
            let (status, message) = refusal(e);
            render_review(
                &s,
                &v,
                &actor,
                id,
                &place,
                Some((message, "bad")),
                None,
                status,
            )
            .await
        }
    }
}

async fn judge(s: &AppState, v: &Visitor, raw: &str, f: ReviewerForm, approve: bool) -> Response {
    let Some(actor) = v.review_actor() else {
        return to_login(v);
    };
    if !v.csrf_ok(f.csrf.as_deref()) {
        return forbidden(s, v);
    }
    let Some(id) = review_id(raw) else {
        return no_such_review(s, v, raw);
    };
    let overview = Place::default();
    let who = f.reviewer.as_deref().map(str::trim).unwrap_or_default();
    // The console does not know the person behind an administrator token: no approver email.
    match reviews::judge(
        &s.engine,
        id,
        who,
        approve,
        None,
        f.comment.as_deref(),
        &actor,
    )
    .await
    {
        Ok(_) => see_other(
            v,
            &overview.url(
                id,
                &[(
                    "done",
                    if approve { "approved" } else { "sent_back" }.into(),
                )],
                Some("progress".into()),
            ),
        ),
        Err(e) if is_access_refusal(&e) => refused_page(s, v, e, &overview.url(id, &[], None)),
        Err(e) => {
            let (status, message) = refusal(e);
            render_review(
                s,
                v,
                &actor,
                id,
                &overview,
                Some((message, "bad")),
                None,
                status,
            )
            .await
        }
    }
}

pub(crate) async fn approve(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(raw): Path<String>,
    Form(f): Form<ReviewerForm>,
) -> Response {
    judge(&s, &v, &raw, f, true).await
}

pub(crate) async fn send_back(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(raw): Path<String>,
    Form(f): Form<ReviewerForm>,
) -> Response {
    judge(&s, &v, &raw, f, false).await
}

// ---- closing ----------------------------------------------------------------------------------

/// What a dry run showed: a confirmation applies only the plan it showed (the plan is made
/// again when confirmed; if TestRail or the decisions changed meanwhile, the new plan is shown
/// instead of applied).
fn fingerprint(p: &ClosePlan) -> String {
    p.fingerprint.clone()
}

/// The dry run's page.
fn close_page(
    s: &AppState,
    v: &Visitor,
    planned: &ClosePlan,
    conn: &Connection,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let id = planned.review;
    // How each item ends: the final decision and where it comes from, counted.
    let mut finals: BTreeMap<(String, String), u64> = BTreeMap::new();
    for l in &planned.lines {
        *finals
            .entry((decision_label(&l.final_decision), source_label(&l.source)))
            .or_default() += 1;
    }
    let finals: Vec<Value> = finals
        .into_iter()
        .map(|((decision, source), n)| context! { decision, source, n })
        .collect();
    let lines: Vec<Value> = planned
        .lines
        .iter()
        .map(|l| {
            context! {
                n => l.item, email => l.email, reviewer => l.reviewer,
                decision => decision_label(&l.final_decision), source => source_label(&l.source),
                action => l.action.as_deref().map(revocation_label), refused => l.refused,
            }
        })
        .collect();
    let mut refused: Vec<Value> = planned
        .lines
        .iter()
        .filter_map(|l| {
            let why = l.refused.as_ref()?;
            Some(context! { email => l.email, action => l.action.as_deref().map(revocation_label), why })
        })
        .collect();
    refused.extend(planned.plan.skipped.iter().map(|x| {
        context! { email => x.target, action => x.action.replace('_', " "), why => x.reason }
    }));
    let steps: Vec<Value> = planned
        .plan
        .steps
        .iter()
        .map(|st| {
            context! {
                action => if st.is_noop() { format!("{} (nothing to do)", st.action.replace('_', " ")) } else { st.action.replace('_', " ") },
                target => st.target, before => st.before, after => st.after, note => st.note,
                caution => st.caution.map(caution_title),
            }
        })
        .collect();
    let cs = cautions(&planned.plan.steps);
    let caution_ctx: Vec<Value> = cs
        .iter()
        .map(
            |c| context! { kind => c.as_str(), title => caution_title(*c), message => c.message() },
        )
        .collect();
    let read_only = (!planned.plan.steps.is_empty())
        .then(|| provision::ensure_enabled(conn).err().map(|e| e.to_string()))
        .flatten();
    with_status(
        page(
            s,
            v,
            "review_close.html",
            context! {
                title => format!("Close review #{id}"), page => "reviews", id,
                connection => planned.connection, keep => planned.keep, revoke => planned.revoke,
                refused_count => planned.refused, finals, lines, refused, steps,
                cautions => caution_ctx, acknowledge_text => acknowledge_text(&cs),
                read_only, error, fingerprint => fingerprint(planned),
                back => format!("/reviews/{id}"),
            },
        ),
        status,
    )
}

/// The rails of a close from the console: the default cap on deactivations, nothing forced.
fn rails() -> Rails {
    Rails::new(None, false)
}

/// A refusal to plan a close, with the console's own way round the deactivation cap.
fn close_refused(s: &AppState, v: &Visitor, id: i64, e: EngineError) -> Response {
    let over_cap = matches!(&e, EngineError::Conflict(m) if m.contains("more than the cap"));
    let (status, mut message) = refusal(e);
    if over_cap {
        message.push_str(&format!(
            " — The console closes with the default cap ({}). To close this review, an administrator runs `accessrail reviews close {id} --dry-run`, then `accessrail reviews close {id} --max-deactivations N --yes`.",
            provision::DEFAULT_MAX_DEACTIVATIONS
        ));
    }
    let heading = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        _ => "Cannot close",
    };
    message_page(s, v, status, heading, &message, &format!("/reviews/{id}"))
}

pub(crate) async fn close_dry_run(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(raw): Path<String>,
) -> Response {
    let Some(actor) = v.review_actor() else {
        return to_login(&v);
    };
    let Some(id) = review_id(&raw) else {
        return no_such_review(&s, &v, &raw);
    };
    match reviews::plan_close(&s.engine, id, &rails(), &actor).await {
        Ok((planned, conn)) => close_page(&s, &v, &planned, &conn, None, StatusCode::OK),
        Err(e) => close_refused(&s, &v, id, e),
    }
}

#[derive(Deserialize)]
pub(crate) struct CloseForm {
    csrf: Option<String>,
    #[serde(default)]
    fingerprint: String,
    #[serde(default)]
    acknowledge: Option<String>,
}

pub(crate) async fn close(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(raw): Path<String>,
    Form(f): Form<CloseForm>,
) -> Response {
    let Some(actor) = v.review_actor() else {
        return to_login(&v);
    };
    if !v.csrf_ok(f.csrf.as_deref()) {
        return forbidden(&s, &v);
    }
    let Some(id) = review_id(&raw) else {
        return no_such_review(&s, &v, &raw);
    };
    // Planned again from TestRail as it is now: applied only if it is what the dry run showed.
    let (planned, conn) = match reviews::plan_close(&s.engine, id, &rails(), &actor).await {
        Ok(x) => x,
        Err(e) => return close_refused(&s, &v, id, e),
    };
    if fingerprint(&planned) != f.fingerprint.trim() {
        return close_page(
            &s,
            &v,
            &planned,
            &conn,
            Some("The plan changed since the dry run you confirmed (TestRail or the decisions changed). Nothing was changed: read this plan and confirm again.".into()),
            StatusCode::CONFLICT,
        );
    }
    let cs = cautions(&planned.plan.steps);
    if !cs.is_empty() && f.acknowledge.as_deref() != Some("yes") {
        return close_page(
            &s,
            &v,
            &planned,
            &conn,
            Some("This close deactivates an account that needs its confirmation box ticked. Nothing was changed: read the warning and tick the box to go ahead.".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    if !planned.plan.steps.is_empty()
        && let Err(e) = provision::ensure_enabled(&conn)
    {
        return close_refused(&s, &v, id, e);
    }
    // The close plans again under the review's lease and refuses if anything changed since
    // the confirmed dry run (the fingerprint).
    let opts = reviews::CloseOptions {
        acknowledge: true,
        fingerprint: Some(planned.fingerprint.clone()),
    };
    match reviews::close(&s.engine, id, &rails(), &opts, &actor).await {
        Ok(report) => see_other(
            &v,
            &Place::default().url(
                id,
                &[(
                    "done",
                    if report.closed {
                        "closed"
                    } else {
                        "not_closed"
                    }
                    .into(),
                )],
                None,
            ),
        ),
        Err(e) => close_refused(&s, &v, id, e),
    }
}

// ---- evidence ---------------------------------------------------------------------------------

async fn export(s: &AppState, v: &Visitor, raw: &str, format: &'static str) -> Response {
    let Some(actor) = v.review_actor() else {
        return to_login(v);
    };
    let Some(id) = review_id(raw) else {
        return no_such_review(s, v, raw);
    };
    let back = format!("/reviews/{id}");
    let e = match reviews::evidence(&s.engine, id, format, &actor).await {
        Ok(e) => e,
        Err(e) => return refused_page(s, v, e, &back),
    };
    let made = match format {
        "csv" => reviews::to_csv(&e),
        "json" => serde_json::to_vec_pretty(&e)
            .map_err(|x| EngineError::InvalidInput(format!("encoding JSON: {x}"))),
        _ => reviews::to_html(&e).map(String::into_bytes),
    };
    let bytes = match made {
        Ok(b) => b,
        Err(e) => return refused_page(s, v, e, &back),
    };
    let (kind, disposition) = match format {
        "csv" => ("text/csv; charset=utf-8", "attachment"),
        "json" => ("application/json", "attachment"),
        _ => ("text/html; charset=utf-8", "inline"),
    };
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    if let Ok(d) =
        HeaderValue::from_str(&format!("{disposition}; filename=\"review-{id}.{format}\""))
    {
        h.insert(header::CONTENT_DISPOSITION, d);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_cookies(resp, v)
}

pub(crate) async fn export_csv(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(raw): Path<String>,
) -> Response {
    export(&s, &v, &raw, "csv").await
}

pub(crate) async fn export_json(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(raw): Path<String>,
) -> Response {
    export(&s, &v, &raw, "json").await
}

pub(crate) async fn export_html(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(raw): Path<String>,
) -> Response {
    export(&s, &v, &raw, "html").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_review_page_keeps_its_place_in_links() {
        let p = Place::new(Some(" a+b@x.io "), Some("undecided"), Some("2"));
        assert_eq!(
            p.url(7, &[("done", "decided".into())], Some("item-3".into())),
            "/reviews/7?reviewer=a%2Bb%40x.io&show=undecided&page=2&done=decided#item-3"
        );
        assert_eq!(
            Place::new(Some(""), Some("x"), Some("y")).url(7, &[], None),
            "/reviews/7"
        );
    }

    #[test]
    fn flashes_are_fixed_texts() {
        assert_eq!(
            flash(Some("kept"), Some(1)).unwrap().0,
            "1 undecided item kept."
        );
        assert!(flash(Some("<script>"), None).is_none());
        assert!(flash(None, None).is_none());
    }

    #[test]
    fn a_form_names_a_revocation_only_with_revoke() {
        let f = |rev: &str, role: &str| DecideForm {
            csrf: None,
            item: 1,
            decision: "revoke".into(),
            revocation: rev.into(),
            role: role.into(),
            comment: String::new(),
            reviewer: None,
            show: None,
            page: None,
        };
        assert_eq!(form_action(&f("deactivate", "x"), Decision::Keep), Ok(None));
        assert_eq!(
            form_action(&f("deactivate", ""), Decision::Revoke),
            Ok(Some("deactivate".into()))
        );
        assert_eq!(
            form_action(&f("role", " Tester "), Decision::Revoke),
            Ok(Some("role:Tester".into()))
        );
        assert!(form_action(&f("role", " "), Decision::Revoke).is_err());
        assert_eq!(
            form_action(&f("remove-group:QA", ""), Decision::Revoke),
            Ok(Some("remove-group:QA".into()))
        );
    }

    #[test]
    fn revocations_and_outcomes_read_plainly() {
        assert_eq!(revocation_label("remove-group:QA"), "remove from group QA");
        assert_eq!(revocation_label("role:Tester"), "lower the role to Tester");
        assert_eq!(decision_label("out_of_scope"), "out of scope");
        assert_eq!(outcome_css("done: deactivate"), "ok");
        assert_eq!(outcome_css("refused: protected"), "warn");
        assert_eq!(outcome_css("failed: boom"), "bad");
        assert_eq!(
            outcome_text(&serde_json::json!({"kept": 2, "revoked": 1})),
            "2 kept, 1 revoked, 0 refused, 0 failed"
        );
    }
}
