//! Access reviews: start one (freeze a scan's accounts as items, route each to a reviewer),
//! decide, submit, approve or send back, close (revocations become one provisioning plan
//! through the usual rails) and export the evidence.
//!
//! The rules themselves (routing, what a decision needs, what closing does with an item) are
//! pure and live in `domain::review`; this module reads the snapshot, keeps the records in the
//! store, writes the audit trail and drives provisioning.

use std::collections::{BTreeMap, BTreeSet};

use accessrail_domain::email::EmailKey;
use accessrail_domain::project::Knowledge;
use accessrail_domain::review::{
    self, Decision, Entitlements, Every, ProjectEntitlement, Revocation, RouteFacts, Scope,
    Undecided,
};
use accessrail_domain::{AuditRecord, Identity, MatchState, Outcome};
use accessrail_store::{
    AccountQuery, AccountSort, Connection, ItemOutcome, NewReview, ReviewClose, ReviewDecision,
    ReviewItemRecord, ReviewRecord, ReviewerProgress, ScanStatus, Store, StoreError,
    SubmissionRecord,
};
use serde::Serialize;

use crate::access::AccessFacts;
use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};
use crate::identities::MANAGER_EMAIL;
use crate::provision::{self, Action, ApplyReport, Origin, Plan, Rails, Request};

/// Who is acting: an administrator (CLI, admin token, console admin) or a reviewer sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// `actor` is what the audit log names (`cli:...`, `token:...`).
    Admin { actor: String },
    /// A reviewer sign-in: only their own items.
    Reviewer { actor: String, email: EmailKey },
}

impl Actor {
    pub fn audit_name(&self) -> &str {
        match self {
            Actor::Admin { actor } | Actor::Reviewer { actor, .. } => actor,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Actor::Admin { .. })
    }

    /// The reviewer this actor acts as: a reviewer is always themselves; an administrator
    /// names the reviewer (`--as`).
    fn acting_as(&self, named: Option<&str>) -> EngineResult<EmailKey> {
        match self {
            Actor::Reviewer { email, .. } => match named.map(EmailKey::parse) {
                Some(Some(n)) if &n != email => Err(EngineError::Forbidden(format!(
                    "a reviewer sign-in acts only as its reviewer ({email}), not as {n}"
                ))),
                _ => Ok(email.clone()),
            },
            Actor::Admin { .. } => {
                let n = named.ok_or_else(|| {
                    EngineError::Usage("name the reviewer (--as / --reviewer EMAIL)".into())
                })?;
                EmailKey::parse(n).ok_or_else(|| {
                    EngineError::InvalidInput(format!("{n:?} is not an email address"))
                })
            }
        }
    }
}

/// How a review starts.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub scope: Scope,
    /// At least one; the second takes the first's own account, and so on.
    pub fallbacks: Vec<String>,
    pub due_at: Option<i64>,
    pub undecided: Undecided,
    pub every: Option<Every>,
}

/// A review's default length when no due date is given.
pub const DEFAULT_DAYS: i64 = 14;

/// A review as listed and shown.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewView {
    pub id: i64,
    pub connection: String,
    pub scope: String,
    pub snapshot_scan: i64,
    pub status: String,
    pub undecided: String,
    pub every: Option<String>,
    pub fallback_reviewers: Vec<String>,
    pub due_at: Option<i64>,
    pub overdue: bool,
    pub created_at: i64,
    pub created_by: String,
    pub closed_at: Option<i64>,
    pub closed_by: Option<String>,
    pub items: u64,
    pub decided: u64,
    pub previous_review: Option<i64>,
    pub next_start_at: Option<i64>,
    /// What closing did (counts), once closed.
    pub outcome: Option<serde_json::Value>,
}

/// One reviewer's progress in a review.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewerView {
    pub reviewer: String,
    pub items: u64,
    pub decided: u64,
    /// `open` (not submitted), `submitted`, `approved` or `sent_back`.
    pub submission: String,
    pub submitted_at: Option<i64>,
    pub judged_by: Option<String>,
    pub judged_at: Option<i64>,
    pub comment: Option<String>,
    pub digest: Option<String>,
}

/// One item as shown and exported.
#[derive(Debug, Clone, Serialize)]
pub struct ItemView {
    pub item: i64,
    pub account_id: u64,
    pub email: String,
    pub name: String,
    pub entitlements: Entitlements,
    pub identity: Option<serde_json::Value>,
    pub reviewer: String,
    pub route: String,
    pub decision: Option<String>,
    pub action: Option<String>,
    pub comment: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub final_decision: Option<String>,
    pub final_source: Option<String>,
    pub outcome: Option<String>,
    pub outcome_audit_id: Option<i64>,
    pub outcome_at: Option<i64>,
}

impl ItemView {
    fn of(r: ReviewItemRecord) -> Self {
        Self {
            item: r.item,
            account_id: r.tr_user_id,
            email: r.email,
            name: r.name,
            entitlements: serde_json::from_str(&r.snapshot).unwrap_or_default(),
            identity: r.identity.and_then(|i| serde_json::from_str(&i).ok()),
            reviewer: r.reviewer,
            route: r.route,
            decision: r.decision,
            action: r.action,
            comment: r.comment,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            final_decision: r.final_decision,
            final_source: r.final_source,
            outcome: r.outcome,
            outcome_audit_id: r.outcome_audit_id,
            outcome_at: r.outcome_at,
        }
    }
}

/// What a reviewer sign-in sees of a review: not who started or closed it, nor the fallbacks.
fn for_reviewer(mut v: ReviewView) -> ReviewView {
    v.fallback_reviewers.clear();
    v.created_by = String::new();
    v.closed_by = None;
    v.outcome = None;
    v
}

fn view(r: &ReviewRecord, connection: &str, now: i64) -> ReviewView {
    ReviewView {
        id: r.id,
        connection: connection.to_string(),
        scope: r.scope.clone(),
        snapshot_scan: r.scan_id,
        status: r.status.clone(),
        undecided: r.undecided.clone(),
        every: r.every.clone(),
        fallback_reviewers: r.fallbacks.clone(),
        due_at: r.due_at,
        overdue: r.status == "open" && r.due_at.is_some_and(|d| d < now),
        created_at: r.created_at,
        created_by: r.created_by.clone(),
        closed_at: r.closed_at,
        closed_by: r.closed_by.clone(),
        items: r.items,
        decided: r.decided,
        previous_review: r.previous_id,
        next_start_at: r.next_start_at,
        outcome: r
            .outcome
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok()),
    }
}

async fn connection_name<S: Store>(engine: &Engine<S>, id: &str) -> EngineResult<String> {
    Ok(engine
        .store()
        .connections()
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .map(|c| c.name)
        .unwrap_or_else(|| id.to_string()))
}

async fn audit<S: Store>(
    engine: &Engine<S>,
    connection: &str,
    actor: &str,
    action: &str,
    target: String,
    message: String,
) -> EngineResult<i64> {
    Ok(
        audit_entry(engine, connection, actor, action, target, message)
            .await?
            .id,
    )
}

async fn audit_entry<S: Store>(
    engine: &Engine<S>,
    connection: &str,
    actor: &str,
    action: &str,
    target: String,
    message: String,
) -> EngineResult<accessrail_store::AuditEntry> {
    let e = engine
        .store()
        .append_audit(AuditRecord {
            at: engine.now(),
            actor: actor.to_string(),
            connection: connection.to_string(),
            action: action.to_string(),
            target,
            before: None,
            after: None,
            calls: vec![],
            outcome: Outcome::Done,
            message: Some(message),
        })
        .await?;
    Ok(e)
}

/// Adds a recurrence to a Unix time (months by the calendar, the day clamped to the month).
pub fn advance(at: i64, every: Every) -> i64 {
    match every {
        Every::Days(d) => at + i64::from(d) * 86_400,
        Every::Months(m) => {
            let Ok(t) = time::OffsetDateTime::from_unix_timestamp(at) else {
                return at + i64::from(m) * 30 * 86_400;
            };
            let months = t.year() * 12 + (t.month() as i32 - 1) + m as i32;
            let (year, month0) = (months.div_euclid(12), months.rem_euclid(12));
            let month = time::Month::try_from((month0 + 1) as u8).unwrap_or(time::Month::January);
            let day = t.day().min(time::util::days_in_month(month, year));
            time::Date::from_calendar_date(year, month, day)
                .map(|d| t.replace_date(d).unix_timestamp())
                .unwrap_or(at + i64::from(m) * 30 * 86_400)
        }
    }
}

/// Starts a review at the connection's latest successful scan.
pub async fn start<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    opts: StartOptions,
    actor: &str,
) -> EngineResult<ReviewView> {
    start_inner(engine, conn, opts, actor, None).await
}

async fn start_inner<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    opts: StartOptions,
    actor: &str,
    previous: Option<i64>,
) -> EngineResult<ReviewView> {
    let store = engine.store();
    let now = engine.now();
    let fallbacks: Vec<EmailKey> = opts
        .fallbacks
        .iter()
        .map(|f| {
            EmailKey::parse(f).ok_or_else(|| {
                EngineError::InvalidInput(format!(
                    "fallback reviewer {f:?} is not an email address"
                ))
            })
        })
        .collect::<EngineResult<_>>()?;
    if fallbacks.is_empty() {
        return Err(EngineError::Usage(
            "name a fallback reviewer (--fallback-reviewer EMAIL): unmatched accounts and self-reviews go to them".into(),
        ));
    }
    if let Some(due) = opts.due_at
        && due <= now
    {
        return Err(EngineError::InvalidInput(
            "the due date is in the past".into(),
        ));
    }
    let scan = store
        .scans(&conn.id)
        .await?
        .into_iter()
        .rev()
        .find(|s| s.status == ScanStatus::Succeeded)
        .ok_or_else(|| {
            EngineError::Conflict(format!(
                "connection {} has no successful scan to review: run `accessrail scan` first",
                conn.name
            ))
        })?;
    let listing = store
        .list_accounts(
            &conn.id,
            &AccountQuery {
                at_scan: Some(scan.id),
                sort: AccountSort::Email,
                ..Default::default()
            },
        )
        .await?;
    // Entitlements are the scan's; who the account belongs to is the current match (an
    // identity import after the scan counts, without a new scan).
    let current_matches: BTreeMap<u64, accessrail_store::StoredMatch> = store
        .list_accounts(&conn.id, &AccountQuery::default())
        .await?
        .accounts
        .into_iter()
        .filter_map(|a| Some((a.account.id, a.matched?)))
        .collect();
    let facts = AccessFacts::load(engine, conn, Some(scan.id)).await?;
    let identities: BTreeMap<String, Identity> = store
        .identities()
        .await?
        .into_iter()
        .map(|i| (i.id.clone(), i))
        .collect();
    let owners = store.owners(&conn.id).await?;
    let group_owner: BTreeMap<u64, EmailKey> = owners
        .iter()
        .filter(|o| o.kind == "group")
        .filter_map(|o| Some((o.target_id, EmailKey::parse(&o.owner_email)?)))
        .collect();
    let project_owner: BTreeMap<u64, EmailKey> = owners
        .iter()
        .filter(|o| o.kind == "project")
        .filter_map(|o| Some((o.target_id, EmailKey::parse(&o.owner_email)?)))
        .collect();

    // What the scope names, checked before anything is kept.
    let group_names: BTreeMap<u64, String> = listing
        .accounts
        .iter()
        .flat_map(|a| a.groups.iter())
        .map(|(id, n)| (*id, n.clone().unwrap_or_else(|| format!("group {id}"))))
        .collect();
    let mut scope_owner = None;
    let mut scope_group = None;
    let mut scope_project = None;
    match &opts.scope {
        Scope::Role(r) => {
            let known = listing.accounts.iter().any(|a| {
                a.account
                    .role
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(r))
            });
            let roles = store.current_roles(&conn.id).await?;
            if !known
                && !roles
                    .iter()
                    .any(|x| x.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(r)))
            {
                return Err(EngineError::NotFound(format!("no role {r:?} in TestRail")));
            }
        }
        Scope::Group(g) => {
            let names = store.current_group_names(&conn.id).await?;
            let found = names
                .iter()
                .map(|(id, n)| (*id, n.clone().unwrap_or_default()))
                .chain(group_names.iter().map(|(id, n)| (*id, n.clone())))
                .find(|(id, n)| n.eq_ignore_ascii_case(g) || id.to_string() == g.trim());
            let (gid, gname) = found
                .ok_or_else(|| EngineError::NotFound(format!("no group {g:?} in TestRail")))?;
            if let Some(o) = group_owner.get(&gid) {
                scope_owner = Some((format!("group {gname}"), o.clone()));
            }
            scope_group = Some(gid);
        }
        Scope::Project(p) => {
            let project = facts.project(p)?;
            if project.access.is_none() {
                return Err(EngineError::Conflict(format!(
                    "who can reach project {} is not known at scan {} (TestRail before 7.3, or the scan did not read it)",
                    project.display_name(),
                    scan.id
                )));
            }
            if let Some(o) = project_owner.get(&project.id) {
                scope_owner = Some((format!("project {}", project.display_name()), o.clone()));
            }
            scope_project = Some(project.id);
        }
        _ => {}
    }
    let reach: BTreeSet<u64> = match scope_project {
        Some(pid) => {
            let project = facts
                .projects
                .iter()
                .find(|p| p.id == pid)
                .ok_or_else(|| EngineError::NotFound(format!("no project {pid}")))?;
            facts
                .for_project(project, false)
                .into_iter()
                .map(|r| r.account_id)
                .collect()
        }
        None => BTreeSet::new(),
    };
    let by_id: BTreeMap<u64, &accessrail_domain::Account> =
        facts.accounts.iter().map(|a| (a.id, a)).collect();

    let mut items = Vec::new();
    let mut self_fallback = Vec::new();
    for la in &listing.accounts {
        let a = &la.account;
        let matched = current_matches
            .get(&la.account.id)
            .or(la.matched.as_ref())
            .filter(|m| m.state == MatchState::Matched);
        let in_scope = match &opts.scope {
            Scope::All => true,
            _ if !a.is_active => false,
            Scope::Active => true,
            Scope::Role(r) => a.role.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(r)),
            Scope::Group(_) => la.groups.iter().any(|(id, _)| Some(*id) == scope_group),
            Scope::Project(_) => reach.contains(&a.id),
            Scope::Admins => a.is_admin == Some(true),
            Scope::Unmatched => matched.is_none(),
        };
        if !in_scope {
            continue;
        }
        let identity = matched
            .and_then(|m| m.identity_id.as_ref())
            .and_then(|id| identities.get(id));
        let mut own: Vec<EmailKey> = a
            .email
            .as_deref()
            .and_then(EmailKey::parse)
            .into_iter()
            .collect();
        if let Some(i) = identity {
            own.extend(i.email_keys());
        }
        let mut groups: Vec<(String, u64)> = la
            .groups
            .iter()
            .map(|(id, n)| (n.clone().unwrap_or_else(|| format!("group {id}")), *id))
            .collect();
        groups.sort_by_key(|(n, _)| n.to_lowercase());
        let route_facts = RouteFacts {
            own_emails: own,
            matched: identity.is_some(),
            scope_owner: scope_owner.clone(),
            manager: identity
                .and_then(|i| i.attributes.get(MANAGER_EMAIL))
                .and_then(|m| EmailKey::parse(m)),
            group_owners: groups
                .iter()
                .filter_map(|(n, id)| Some((n.clone(), group_owner.get(id)?.clone())))
                .collect(),
        };
        let email = a
            .email
            .clone()
            .unwrap_or_else(|| format!("account {}", a.id));
        let Some(route) = review::route(&route_facts, &fallbacks) else {
            self_fallback.push(email);
            continue;
        };
        let projects = by_id.get(&a.id).and_then(|acc| {
            let rows = facts.for_account(acc);
            if facts.projects.is_empty() || rows.iter().any(|r| r.knowledge == Knowledge::Unknown) {
                return None;
            }
            Some(
                rows.into_iter()
                    .filter(|r| r.can_access == Some(true))
                    .map(|r| ProjectEntitlement {
                        id: r.project_id,
                        name: r.project.clone(),
                        role: r.role.clone(),
                        source: r
                            .source
                            .as_ref()
                            .map(|s| s.label.clone())
                            .unwrap_or_default(),
                    })
                    .collect::<Vec<_>>(),
            )
        });
        let partly = facts
            .projects
            .iter()
            .any(|p| p.access.as_ref().is_some_and(|x| x.users.is_none()));
        let ent = Entitlements {
            active: a.is_active,
            is_admin: a.is_admin == Some(true),
            role: a.role.clone(),
            groups: groups.iter().map(|(n, _)| n.clone()).collect(),
            group_ids: groups.iter().map(|(_, id)| *id).collect(),
            projects_note: (projects.is_some() && partly).then(|| {
                "users' own project roles are not reported by this TestRail edition: an own role would win".to_string()
            }),
            projects,
        };
        let identity_json = identity.map(|i| {
            serde_json::json!({
                "id": i.id,
                "name": i.name,
                "email": i.emails.first(),
                "status": if i.gone { "gone" } else { i.status.as_str() },
                "manager_email": i.attributes.get(MANAGER_EMAIL),
            })
            .to_string()
        });
        items.push(ReviewItemRecord {
            item: items.len() as i64 + 1,
            tr_user_id: a.id,
            email,
            name: a.name.clone().unwrap_or_default(),
            reviewer: route.reviewer.as_str().to_string(),
            route: route.reason,
            snapshot: serde_json::to_string(&ent).unwrap_or_else(|_| "{}".into()),
            identity: identity_json,
            ..Default::default()
        });
    }
    if !self_fallback.is_empty() {
        return Err(EngineError::Usage(format!(
            "{} would review their own access as the only fallback reviewer; name a second one (--fallback-reviewer twice); nothing was started",
            self_fallback.join(", ")
        )));
    }
    if items.is_empty() {
        return Err(EngineError::Conflict(format!(
            "scope {} has no accounts at scan {}; nothing was started",
            opts.scope, scan.id
        )));
    }
    let due_at = opts.due_at.unwrap_or(now + DEFAULT_DAYS * 86_400);
    let n = items.len();
    let reviewers: BTreeSet<&str> = items.iter().map(|i| i.reviewer.as_str()).collect();
    let reviewer_count = reviewers.len();
    let id = store
        .create_review(
            NewReview {
                connection_id: conn.id.clone(),
                scope: opts.scope.to_string(),
                scan_id: scan.id,
                undecided: opts.undecided.as_str().to_string(),
                every: opts.every.map(|e| e.to_string()),
                fallbacks: fallbacks.iter().map(|f| f.as_str().to_string()).collect(),
                due_at: Some(due_at),
                created_at: now,
                created_by: actor.to_string(),
                previous_id: previous,
                next_start_at: opts.every.map(|e| advance(now, e)),
            },
            items,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) if previous.is_some() => EngineError::Conflict(format!(
                "the review after review {} was already started",
                previous.unwrap_or_default()
            )),
            other => other.into(),
        })?;
    audit(
        engine,
        &conn.name,
        actor,
        "review_start",
        format!("review {id}"),
        format!(
            "scope {}, snapshot scan {}, {n} items, {reviewer_count} reviewers, undecided items: {}",
            opts.scope,
            scan.id,
            opts.undecided.as_str()
        ),
    )
    .await?;
    let r = load(engine, id).await?;
    Ok(view(&r, &conn.name, now))
}

/// Starts the next round of every recurring review whose time has come (the scheduler calls
/// this; two replicas calling it together start each round once).
pub async fn start_due<S: Store>(engine: &Engine<S>) -> EngineResult<Vec<i64>> {
    let now = engine.now();
    let all = engine.store().reviews(None).await?;
    let followed: BTreeSet<i64> = all.iter().filter_map(|r| r.previous_id).collect();
    let mut started = Vec::new();
    for r in all.iter().filter(|r| {
        r.next_start_at.is_some_and(|t| t <= now) && r.every.is_some() && !followed.contains(&r.id)
    }) {
        let Some(conn) = engine
            .store()
            .connections()
            .await?
            .into_iter()
            .find(|c| c.id == r.connection_id)
        else {
            continue;
        };
        let (Ok(scope), Some(undecided), Some(Ok(every))) = (
            Scope::parse(&r.scope),
            Undecided::parse(&r.undecided),
            r.every.as_deref().map(Every::parse),
        ) else {
            continue;
        };
        let length = r
            .due_at
            .map_or(DEFAULT_DAYS * 86_400, |d| d - r.created_at)
            .max(86_400);
        let opts = StartOptions {
            scope,
            fallbacks: r.fallbacks.clone(),
            due_at: Some(now + length),
            undecided,
            every: Some(every),
        };
        match start_inner(engine, &conn, opts, "scheduler", Some(r.id)).await {
            Ok(v) => started.push(v.id),
            Err(EngineError::Conflict(m)) => tracing::info!(review = r.id, "{m}"),
            Err(e) => tracing::warn!(review = r.id, error = %e, "cannot start the next review"),
        }
    }
    Ok(started)
}

async fn load<S: Store>(engine: &Engine<S>, id: i64) -> EngineResult<ReviewRecord> {
    engine
        .store()
        .review(id)
        .await?
        .ok_or_else(|| EngineError::NotFound(format!("no review {id}")))
}

/// Reviews, newest first. A reviewer sees the reviews they have items in.
pub async fn list<S: Store>(
    engine: &Engine<S>,
    connection: Option<&Connection>,
    actor: &Actor,
) -> EngineResult<Vec<ReviewView>> {
    let store = engine.store();
    let names: BTreeMap<String, String> = store
        .connections()
        .await?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    let now = engine.now();
    let mut out = Vec::new();
    for r in store.reviews(connection.map(|c| c.id.as_str())).await? {
        if let Actor::Reviewer { email, .. } = actor {
            let mine = store.review_progress(r.id).await?;
            let Some(p) = mine.iter().find(|p| p.reviewer == email.as_str()) else {
                continue;
            };
            let mut v = view(&r, names.get(&r.connection_id).map_or("?", |s| s), now);
            v.items = p.items;
            v.decided = p.decided;
            out.push(for_reviewer(v));
            continue;
        }
        out.push(view(
            &r,
            names.get(&r.connection_id).map_or("?", |s| s),
            now,
        ));
    }
    Ok(out)
}

/// One review with its reviewers' progress and items (all of them for an administrator, or
/// one reviewer's when named; a reviewer sign-in sees only its own).
#[derive(Debug, Clone, Serialize)]
pub struct ReviewDetail {
    pub review: ReviewView,
    pub reviewers: Vec<ReviewerView>,
    pub items: Vec<ItemView>,
}

pub async fn show<S: Store>(
    engine: &Engine<S>,
    id: i64,
    reviewer: Option<&str>,
    actor: &Actor,
) -> EngineResult<ReviewDetail> {
    let p = show_page(engine, id, reviewer, &ItemFilter::default(), actor).await?;
    Ok(ReviewDetail {
        review: p.review,
        reviewers: p.reviewers,
        items: p.items,
    })
}

/// Which items a page shows.
#[derive(Debug, Clone)]
pub struct ItemFilter {
    /// `Some(true)`: decided ones; `Some(false)`: undecided ones.
    pub decided: Option<bool>,
    pub offset: u64,
    pub limit: u64,
}

impl Default for ItemFilter {
    fn default() -> Self {
        Self {
            decided: None,
            offset: 0,
            limit: u64::MAX,
        }
    }
}

/// One page of a review: its facts, reviewers (one, when a reviewer is named or signed in),
/// a page of items with how many match, and each reviewer's decisions counted.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewPage {
    pub review: ReviewView,
    pub reviewers: Vec<ReviewerView>,
    pub items: Vec<ItemView>,
    /// Items matching the filter (all pages).
    pub total: u64,
    /// `(reviewer, decision or none, items)`, for the reviewers shown.
    pub decisions: Vec<(String, Option<String>, u64)>,
}

pub async fn show_page<S: Store>(
    engine: &Engine<S>,
    id: i64,
    reviewer: Option<&str>,
    filter: &ItemFilter,
    actor: &Actor,
) -> EngineResult<ReviewPage> {
    let r = load(engine, id).await?;
    let only = match actor {
        Actor::Reviewer { .. } => Some(actor.acting_as(reviewer)?),
        Actor::Admin { .. } => reviewer
            .map(|e| {
                EmailKey::parse(e).ok_or_else(|| {
                    EngineError::InvalidInput(format!("{e:?} is not an email address"))
                })
            })
            .transpose()?,
    };
    let store = engine.store();
    let progress = store.review_progress(id).await?;
    if let (Actor::Reviewer { email, .. }, false) = (
        actor,
        progress
            .iter()
            .any(|p| only.as_ref().is_some_and(|o| o.as_str() == p.reviewer)),
    ) {
        return Err(EngineError::NotFound(format!(
            "no review {id} with items for {email}"
        )));
    }
    let submissions = store.review_submissions(id).await?;
    let reviewers = reviewer_views(&progress, &submissions)
        .into_iter()
        .filter(|v| only.as_ref().is_none_or(|o| o.as_str() == v.reviewer))
        .collect();
    let (items, total) = store
        .review_items_page(
            id,
            only.as_ref().map(|o| o.as_str()),
            filter.decided,
            filter.offset,
            filter.limit,
        )
        .await?;
    let decisions = store
        .review_decision_counts(id)
        .await?
        .into_iter()
        .filter(|(rv, _, _)| only.as_ref().is_none_or(|o| o.as_str() == rv))
        .collect();
    let name = connection_name(engine, &r.connection_id).await?;
    let mut v = view(&r, &name, engine.now());
    if let Some(o) = &only
        && let Some(p) = progress.iter().find(|p| p.reviewer == o.as_str())
    {
        v.items = p.items;
        v.decided = p.decided;
    }
    Ok(ReviewPage {
        review: if actor.is_admin() { v } else { for_reviewer(v) },
        reviewers,
        items: items.into_iter().map(ItemView::of).collect(),
        total,
        decisions,
    })
}

fn reviewer_views(progress: &[ReviewerProgress], subs: &[SubmissionRecord]) -> Vec<ReviewerView> {
    progress
        .iter()
        .map(|p| {
            let s = subs.iter().find(|s| s.reviewer == p.reviewer);
            ReviewerView {
                reviewer: p.reviewer.clone(),
                items: p.items,
                decided: p.decided,
                submission: s.map_or("open".to_string(), |s| s.status.clone()),
                submitted_at: s.map(|s| s.submitted_at),
                judged_by: s.and_then(|s| s.judged_by.clone()),
                judged_at: s.and_then(|s| s.judged_at),
                comment: s.and_then(|s| s.comment.clone()),
                digest: s.map(|s| s.digest.clone()),
            }
        })
        .collect()
}

/// A decision to record.
#[derive(Debug, Clone)]
pub struct DecideRequest {
    /// The account's email (or its item number as `#N`).
    pub account: String,
    pub decision: Decision,
    pub action: Option<String>,
    pub comment: Option<String>,
    /// The reviewer acted for (an administrator names them; a reviewer is themselves).
    pub as_reviewer: Option<String>,
}

/// Records decisions (one or many, all of one reviewer) in one transaction.
pub async fn decide<S: Store>(
    engine: &Engine<S>,
    id: i64,
    requests: Vec<DecideRequest>,
    actor: &Actor,
) -> EngineResult<Vec<ItemView>> {
    let first = requests
        .first()
        .ok_or_else(|| EngineError::Usage("no decision given".into()))?;
    let reviewer = actor.acting_as(first.as_reviewer.as_deref())?;
    if requests
        .iter()
        .any(|r| actor.acting_as(r.as_reviewer.as_deref()).ok().as_ref() != Some(&reviewer))
    {
        return Err(EngineError::Usage(
            "decisions sent together must be for one reviewer".into(),
        ));
    }
    let r = load(engine, id).await?;
    if r.status != "open" {
        return Err(EngineError::Conflict(format!(
            "review {id} is closed; nothing was changed"
        )));
    }
    let store = engine.store();
    let all = store.review_items(id, None).await?;
    let by_number: BTreeMap<i64, &ReviewItemRecord> = all.iter().map(|i| (i.item, i)).collect();
    let by_email: BTreeMap<EmailKey, &ReviewItemRecord> = all
        .iter()
        .filter_map(|i| Some((EmailKey::parse(&i.email)?, i)))
        .collect();
    let now = engine.now();
    let mut decisions = Vec::new();
    let mut touched = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for req in &requests {
        let wanted = req.account.trim();
        if !seen.insert(wanted.to_ascii_lowercase()) {
            return Err(EngineError::InvalidInput(format!(
                "{wanted:?} is decided twice in one request; nothing was changed"
            )));
        }
        let item = match wanted.strip_prefix('#').and_then(|n| n.parse::<i64>().ok()) {
            Some(n) => by_number.get(&n).copied(),
            None => EmailKey::parse(wanted).and_then(|k| by_email.get(&k).copied()),
        }
        .filter(|i| actor.is_admin() || i.reviewer == reviewer.as_str());
        // A reviewer learns nothing about items that are not theirs: one answer for "no such
        // item" and "someone else's".
        let Some(item) = item else {
            return Err(if actor.is_admin() {
                EngineError::NotFound(format!("review {id} has no item for {wanted:?}"))
            } else {
                EngineError::Forbidden(format!(
                    "{wanted:?} is not one of your items in review {id}; nothing was changed"
                ))
            });
        };
        if item.reviewer != reviewer.as_str() {
            return Err(EngineError::Forbidden(format!(
                "{} is reviewed by {} in review {id}, not by {reviewer}; nothing was changed",
                item.email, item.reviewer
            )));
        }
        if EmailKey::parse(&item.email).as_ref() == Some(&reviewer) {
            return Err(EngineError::Forbidden(
                "nobody reviews their own access; nothing was changed".into(),
            ));
        }
        let had: Entitlements = serde_json::from_str(&item.snapshot).unwrap_or_default();
        let rev = review::check_decision(
            req.decision,
            req.action.as_deref(),
            req.comment.as_deref(),
            &had,
        )
        .map_err(EngineError::InvalidInput)?;
        decisions.push(ReviewDecision {
            item: item.item,
            decision: Some(req.decision.as_str().to_string()),
            action: rev.map(|r| r.to_string()),
            comment: req
                .comment
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            by: actor.audit_name().to_string(),
            at: now,
        });
        touched.insert(item.item);
    }
    store
        .decide_review_items(id, reviewer.as_str(), decisions)
        .await?;
    let after = store.review_items(id, Some(reviewer.as_str())).await?;
    Ok(after
        .into_iter()
        .filter(|i| touched.contains(&i.item))
        .map(ItemView::of)
        .collect())
}

/// Keeps every undecided item of a reviewer (the console's bulk keep, confirmed first).
pub async fn keep_undecided<S: Store>(
    engine: &Engine<S>,
    id: i64,
    as_reviewer: Option<&str>,
    actor: &Actor,
) -> EngineResult<usize> {
    let reviewer = actor.acting_as(as_reviewer)?;
    let r = load(engine, id).await?;
    if r.status != "open" {
        return Err(EngineError::Conflict(format!(
            "review {id} is not open; nothing was changed"
        )));
    }
    let now = engine.now();
    // Keep needs no comment and no check against the snapshot: only the reviewer's own
    // undecided items (never their own account; routing keeps it from them anyway).
    let decisions: Vec<ReviewDecision> = engine
        .store()
        .review_items_page(id, Some(reviewer.as_str()), Some(false), 0, u64::MAX)
        .await?
        .0
        .into_iter()
        .filter(|i| EmailKey::parse(&i.email).as_ref() != Some(&reviewer))
        .map(|i| ReviewDecision {
            item: i.item,
            decision: Some(Decision::Keep.as_str().to_string()),
            action: None,
            comment: None,
            by: actor.audit_name().to_string(),
            at: now,
        })
        .collect();
    if decisions.is_empty() {
        return Ok(0);
    }
    Ok(engine
        .store()
        .decide_review_items(id, reviewer.as_str(), decisions)
        .await? as usize)
}

/// Submits a reviewer's decisions for approval; every item must be decided.
pub async fn submit<S: Store>(
    engine: &Engine<S>,
    id: i64,
    as_reviewer: Option<&str>,
    actor: &Actor,
) -> EngineResult<ReviewerView> {
    let reviewer = actor.acting_as(as_reviewer)?;
    let r = load(engine, id).await?;
    let store = engine.store();
    let items = store.review_items(id, Some(reviewer.as_str())).await?;
    if items.is_empty() {
        return Err(EngineError::NotFound(format!(
            "{reviewer} has no items in review {id}"
        )));
    }
    let open = items.iter().filter(|i| i.decision.is_none()).count();
    if open > 0 {
        return Err(EngineError::Conflict(format!(
            "{open} of {reviewer}'s {} items are undecided; decide them before submitting (nothing was submitted)",
            items.len()
        )));
    }
    let digest = store
        .submit_review(id, reviewer.as_str(), actor.audit_name(), engine.now())
        .await?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for i in &items {
        *counts
            .entry(i.decision.as_deref().unwrap_or("undecided"))
            .or_default() += 1;
    }
    let counts = counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let name = connection_name(engine, &r.connection_id).await?;
    audit(
        engine,
        &name,
        actor.audit_name(),
        "review_submit",
        format!("review {id}: {reviewer}"),
        format!(
            "{} decisions submitted ({counts}); sha256 {digest}",
            items.len()
        ),
    )
    .await?;
    reviewer_view(engine, id, &reviewer).await
}

async fn reviewer_view<S: Store>(
    engine: &Engine<S>,
    id: i64,
    reviewer: &EmailKey,
) -> EngineResult<ReviewerView> {
    let store = engine.store();
    let progress = store.review_progress(id).await?;
    let subs = store.review_submissions(id).await?;
    reviewer_views(&progress, &subs)
        .into_iter()
        .find(|v| v.reviewer == reviewer.as_str())
        .ok_or_else(|| EngineError::NotFound(format!("{reviewer} has no items in review {id}")))
}

/// An administrator approves (or sends back) a reviewer's submission. Nobody approves their
/// own: `approver` (the approving person's email, when known) must not be the reviewer.
pub async fn judge<S: Store>(
    engine: &Engine<S>,
    id: i64,
    reviewer: &str,
    approve: bool,
    approver: Option<&str>,
    comment: Option<&str>,
    actor: &Actor,
) -> EngineResult<ReviewerView> {
    if !actor.is_admin() {
        return Err(EngineError::Forbidden(
            "only an administrator approves or sends back a submission".into(),
        ));
    }
    let reviewer = EmailKey::parse(reviewer).ok_or_else(|| {
        EngineError::InvalidInput(format!("{reviewer:?} is not an email address"))
    })?;
    let approver_key = approver
        .map(|a| {
            EmailKey::parse(a)
                .ok_or_else(|| EngineError::InvalidInput(format!("{a:?} is not an email address")))
        })
        .transpose()?;
    if approver_key.as_ref() == Some(&reviewer) {
        return Err(EngineError::Forbidden(format!(
            "{reviewer} cannot approve their own submission; another administrator must"
        )));
    }
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if !approve && comment.is_none() {
        return Err(EngineError::InvalidInput(
            "say why the submission goes back (--comment)".into(),
        ));
    }
    let r = load(engine, id).await?;
    if approve && approver_key.is_none() {
        let subs = engine.store().review_submissions(id).await?;
        if subs
            .iter()
            .any(|s| s.reviewer == reviewer.as_str() && s.submitted_by == actor.audit_name())
        {
            return Err(EngineError::Forbidden(format!(
                "{} submitted {reviewer}'s decisions; to approve them as well, name the approving person (--as EMAIL / \"approver\"), who is recorded and must not be the reviewer",
                actor.audit_name()
            )));
        }
    }
    let by = match &approver_key {
        Some(a) => format!("{a} ({})", actor.audit_name()),
        None => actor.audit_name().to_string(),
    };
    engine
        .store()
        .judge_submission(id, reviewer.as_str(), approve, &by, comment, engine.now())
        .await?;
    let name = connection_name(engine, &r.connection_id).await?;
    audit(
        engine,
        &name,
        &by,
        if approve {
            "review_approve"
        } else {
            "review_send_back"
        },
        format!("review {id}: {reviewer}"),
        comment.map_or_else(
            || {
                if approve {
                    "approved".to_string()
                } else {
                    "sent back".to_string()
                }
            },
            |c| format!("{}: {c}", if approve { "approved" } else { "sent back" }),
        ),
    )
    .await?;
    reviewer_view(engine, id, &reviewer).await
}

/// What closing will do, item by item.
#[derive(Debug, Clone, Serialize)]
pub struct CloseLine {
    pub item: i64,
    /// The TestRail account at the snapshot: a revocation is sent only to this account.
    pub account_id: u64,
    pub email: String,
    pub reviewer: String,
    pub final_decision: String,
    /// The revocation, when the final decision is revoke.
    pub action: Option<String>,
    pub source: String,
    /// Why a revocation will not be sent (protected account, the connection's own account,
    /// no longer in TestRail).
    pub refused: Option<String>,
}

/// The close, planned: every item's final decision and the provisioning plan of the
/// revocations (a dry run shows it; the apply runs exactly this plan).
#[derive(Debug, Clone, Serialize)]
pub struct ClosePlan {
    pub review: i64,
    pub connection: String,
    pub lines: Vec<CloseLine>,
    pub keep: usize,
    pub revoke: usize,
    pub refused: usize,
    pub plan: Plan,
    /// Deactivations that need an explicit acknowledgement (a TestRail administrator).
    pub cautions: Vec<String>,
    /// sha256 of the lines and the plan's steps: an apply given the dry run's fingerprint
    /// refuses when what it would do changed since.
    pub fingerprint: String,
}

/// The close's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CloseReport {
    pub review: i64,
    /// What was planned (inside the review's lease) and applied.
    pub planned: ClosePlan,
    pub closed: bool,
    pub report: Option<ApplyReport>,
    pub kept: usize,
    pub revoked: usize,
    pub failed: usize,
    pub refused: usize,
    pub audit_id: i64,
}

fn request_for(email: &str, rev: &Revocation, origin: Origin) -> Request {
    let action = match rev {
        Revocation::Deactivate => Action::Deactivate {
            email: email.to_string(),
        },
        Revocation::RemoveGroup(g) => Action::RemoveFromGroup {
            email: email.to_string(),
            group: g.clone(),
        },
        Revocation::Role(r) => Action::SetRole {
            email: email.to_string(),
            role: r.clone(),
        },
    };
    Request { action, origin }
}

/// Plans the close: final decisions, rails, and the provisioning plan (reads TestRail fresh).
pub async fn plan_close<S: Store>(
    engine: &Engine<S>,
    id: i64,
    rails: &Rails,
    actor: &Actor,
) -> EngineResult<(ClosePlan, Connection)> {
    if !actor.is_admin() {
        return Err(EngineError::Forbidden(
            "only an administrator closes a review".into(),
        ));
    }
    let r = load(engine, id).await?;
    if r.status == "closed" {
        return Err(EngineError::Conflict(format!(
            "review {id} is already closed"
        )));
    }
    let conn = engine
        .store()
        .connections()
        .await?
        .into_iter()
        .find(|c| c.id == r.connection_id)
        .ok_or_else(|| EngineError::NotFound(format!("review {id}'s connection is gone")))?;
    let undecided = Undecided::parse(&r.undecided).unwrap_or(Undecided::Keep);
    let subs = engine.store().review_submissions(id).await?;
    let waiting: Vec<&str> = subs
        .iter()
        .filter(|s| s.status == "submitted")
        .map(|s| s.reviewer.as_str())
        .collect();
    if !waiting.is_empty() {
        return Err(EngineError::Conflict(format!(
            "submissions wait for approval ({}): approve or send them back before closing; nothing was changed",
            waiting.join(", ")
        )));
    }
    let approved: BTreeSet<&str> = subs
        .iter()
        .filter(|s| s.status == "approved")
        .map(|s| s.reviewer.as_str())
        .collect();
    let items = engine.store().review_items(id, None).await?;
    let now = engine.now();
    let protected: BTreeMap<String, String> = engine
        .store()
        .protected(&conn.id)
        .await?
        .into_iter()
        .filter(|p| p.expires_at.is_none_or(|t| t > now))
        .map(|p| {
            (
                p.email.to_lowercase(),
                format!("owner {}: {}", p.owner, p.reason),
            )
        })
        .collect();
    let own = EmailKey::parse(&conn.email);
    let mut lines = Vec::new();
    for it in &items {
        // An item already closed by an earlier, partly failed close keeps its outcome.
        if it.outcome.as_deref().is_some_and(|o| {
            o.starts_with("done")
                || o.starts_with("kept")
                || o.starts_with("no change")
                || o.starts_with("no action")
        }) {
            continue;
        }
        let decided = it
            .decision
            .as_deref()
            .and_then(Decision::parse)
            .map(|d| (d, it.action.as_deref()));
        let f = review::final_decision(decided, approved.contains(it.reviewer.as_str()), undecided);
        let key = EmailKey::parse(&it.email);
        let refused = f.revocation.as_ref().and_then(|_| {
            if key.is_none() {
                Some(format!(
                    "{:?} is not an email address (a forgotten TestRail user?): nothing can be sent for it",
                    it.email
                ))
            } else if key == own {
                Some("the connection's own account (Accessrail signs in with it)".to_string())
            } else {
                key.as_ref()
                    .and_then(|k| protected.get(k.as_str()))
                    .map(|p| format!("protected account ({p})"))
            }
        });
        lines.push(CloseLine {
            item: it.item,
            account_id: it.tr_user_id,
            email: it.email.clone(),
            reviewer: it.reviewer.clone(),
            final_decision: f.decision.as_str().to_string(),
            action: f.revocation.as_ref().map(|r| r.to_string()),
            source: f.source,
            refused,
        });
    }
    // Plan the revocations; an account no longer in TestRail is refused and the rest planned.
    let origin_for = |l: &CloseLine| Origin::Direct {
        actor: format!(
            "review:{id} item {} ({}: {}; by {})",
            l.item,
            l.final_decision,
            l.source,
            actor.audit_name()
        ),
    };
    // The snapshot's group ids, to check that a group removal still names the same group.
    let snapshot_groups: BTreeMap<i64, Vec<(String, u64)>> = items
        .iter()
        .map(|it| {
            let e: Entitlements = serde_json::from_str(&it.snapshot).unwrap_or_default();
            let pairs = e.groups.into_iter().zip(e.group_ids).collect();
            (it.item, pairs)
        })
        .collect();
    let plan = loop {
        let wanted: Vec<&CloseLine> = lines
            .iter()
            .filter(|l| l.refused.is_none() && l.action.is_some())
            .collect();
        let requests: Vec<Request> = wanted
            .iter()
            .filter_map(|l| {
                let rev = Revocation::parse(l.action.as_deref()?).ok()?;
                Some(request_for(&l.email, &rev, origin_for(l)))
            })
            .collect();
        if requests.is_empty() {
            break Plan {
                connection: conn.name.clone(),
                steps: vec![],
                skipped: vec![],
            };
        }
        let p = match provision::plan(engine, &conn, requests, rails).await {
            Ok(p) => p,
            // The cap is about the whole plan, not one line.
            Err(EngineError::Conflict(m)) if m.contains("more than the cap") => {
                return Err(EngineError::Conflict(m));
            }
            Err(
                e @ (EngineError::NotFound(_)
                | EngineError::InvalidInput(_)
                | EngineError::Conflict(_)),
            ) => {
                // Which line cannot be planned? Each alone: those that fail are refused with
                // their reason; when every line plans alone, the whole plan's error stands
                // (e.g. the deactivation cap).
                let mut culprit = false;
                for l in lines
                    .iter_mut()
                    .filter(|l| l.refused.is_none() && l.action.is_some())
                {
                    let Some(rev) = l.action.as_deref().and_then(|a| Revocation::parse(a).ok())
                    else {
                        continue;
                    };
                    let one = vec![request_for(&l.email, &rev, origin_for(l))];
                    if let Err(why) = provision::plan(engine, &conn, one, rails).await {
                        l.refused = Some(format!("cannot plan: {why}"));
                        culprit = true;
                    }
                }
                if !culprit {
                    return Err(e);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        // A revocation goes only to the account and group the reviewer saw: an email that now
        // belongs to another account, or a group name now used by another group, is refused.
        let mut mismatch = false;
        for st in &p.steps {
            let key = EmailKey::parse(&st.target);
            let Some(l) = lines.iter_mut().find(|l| {
                l.refused.is_none()
                    && l.action.is_some()
                    && key.is_some()
                    && EmailKey::parse(&l.email) == key
            }) else {
                continue;
            };
            if let Some(uid) = st.user_id
                && uid != l.account_id
            {
                l.refused = Some(format!(
                    "{} is now another TestRail account (id {uid}; the review saw id {})",
                    l.email, l.account_id
                ));
                mismatch = true;
                continue;
            }
            if let provision::StepKind::GroupRemove {
                group_id, group, ..
            } = &st.kind
            {
                let seen = snapshot_groups
                    .get(&l.item)
                    .and_then(|gs| gs.iter().find(|(n, _)| n.eq_ignore_ascii_case(group)))
                    .map(|(_, id)| *id);
                if seen.is_some_and(|id| id != *group_id) {
                    l.refused = Some(format!(
                        "group {group} is now another TestRail group (id {group_id}; the review saw id {})",
                        seen.unwrap_or_default()
                    ));
                    mismatch = true;
                }
            }
        }
        if !mismatch {
            break p;
        }
    };
    let cautions: Vec<String> = plan
        .steps
        .iter()
        .filter(|st| !st.is_noop())
        .filter_map(|st| {
            st.caution
                .map(|c| format!("{}: {}", st.target, c.message()))
        })
        .collect();
    let fingerprint = {
        use sha2::{Digest, Sha256};
        let steps: Vec<_> = plan
            .steps
            .iter()
            .map(|st| {
                serde_json::json!([
                    st.action,
                    st.target,
                    st.user_id,
                    st.before,
                    st.after,
                    st.is_noop()
                ])
            })
            .collect();
        let canonical = serde_json::json!([lines, steps, plan.skipped]).to_string();
        Sha256::digest(canonical.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let revoke = lines
        .iter()
        .filter(|l| l.action.is_some() && l.refused.is_none())
        .count();
    let refused = lines.iter().filter(|l| l.refused.is_some()).count();
    let keep = lines.iter().filter(|l| l.action.is_none()).count();
    Ok((
        ClosePlan {
            review: id,
            connection: conn.name.clone(),
            lines,
            keep,
            revoke,
            refused,
            plan,
            cautions,
            fingerprint,
        },
        conn,
    ))
}

/// How a close is confirmed.
#[derive(Debug, Clone, Default)]
pub struct CloseOptions {
    /// The deactivation of a TestRail administrator is confirmed.
    pub acknowledge: bool,
    /// The dry run's fingerprint: the close refuses when its plan differs.
    pub fingerprint: Option<String>,
}

/// Closes a review. Under the review's lease it marks the review as being closed (decisions,
/// submissions and approvals wait), plans again from TestRail's current state (what the dry
/// run showed, unless something changed: with the dry run's fingerprint, a change refuses the
/// close), applies the revocations, records each item's outcome with its audit entry, and
/// closes the review. When a step fails, the outcomes so far are kept and the review is open
/// again: closing again retries what is left (done items are not planned again).
pub async fn close<S: Store>(
    engine: &Engine<S>,
    id: i64,
    rails: &Rails,
    opts: &CloseOptions,
    actor: &Actor,
) -> EngineResult<CloseReport> {
    if !actor.is_admin() {
        return Err(EngineError::Forbidden(
            "only an administrator closes a review".into(),
        ));
    }
    let lease = crate::lease::try_acquire(engine, &format!("review:{id}"), "review close")
        .await?
        .ok_or_else(|| EngineError::Busy(format!("review {id} is being closed by another run")))?;
    crate::lease::held(engine, std::slice::from_ref(&lease), async {
        engine.store().begin_review_close(id).await?;
        let out = close_inner(engine, id, rails, opts, actor).await;
        if out.is_err() {
            // Nothing was recorded: the review is open again (a close that recorded outcomes
            // already set its status).
            let _ = engine.store().end_review_close(id).await;
        }
        out
    })
    .await
}

async fn close_inner<S: Store>(
    engine: &Engine<S>,
    id: i64,
    rails: &Rails,
    opts: &CloseOptions,
    actor: &Actor,
) -> EngineResult<CloseReport> {
    let (planned, conn) = plan_close(engine, id, rails, actor).await?;
    let conn = &conn;
    if let Some(f) = &opts.fingerprint
        && *f != planned.fingerprint
    {
        return Err(EngineError::Conflict(format!(
            "what closing review {id} would do changed since the dry run (TestRail or the decisions changed); nothing was changed: look at the dry run again"
        )));
    }
    if !planned.cautions.is_empty() && !opts.acknowledge {
        return Err(EngineError::Usage(format!(
            "not closed, nothing was changed:\n  {}\nRead the plan, then confirm (--acknowledge / \"acknowledge\": true).",
            planned.cautions.join("\n  ")
        )));
    }
    if !planned.plan.steps.is_empty() {
        provision::ensure_enabled(conn)?;
    }
    let report = if planned.plan.steps.is_empty() {
        None
    } else {
        Some(provision::apply(engine, conn, &planned.plan).await?)
    };
    let now = engine.now();
    let results: BTreeMap<EmailKey, &provision::StepResult> = report
        .iter()
        .flat_map(|r| r.results.iter())
        .filter_map(|s| Some((EmailKey::parse(&s.target)?, s)))
        .collect();
    let skipped: BTreeMap<EmailKey, &provision::Skipped> = planned
        .plan
        .skipped
        .iter()
        .filter_map(|s| Some((EmailKey::parse(&s.target)?, s)))
        .collect();
    let mut outcomes = Vec::new();
    let (mut kept, mut revoked, mut failed, mut refused) = (0, 0, 0, 0);
    for l in &planned.lines {
        let (outcome, audit_id) = if l.action.is_none() {
            kept += 1;
            let what = match Decision::parse(&l.final_decision) {
                Some(Decision::OutOfScope) => "no action: out of scope",
                Some(Decision::AlreadyRemoved) => "no action: already removed",
                _ => "kept",
            };
            (what.to_string(), None)
        } else if let Some(why) = &l.refused {
            refused += 1;
            let a = audit(
                engine,
                &conn.name,
                &format!("review:{id} item {} (by {})", l.item, actor.audit_name()),
                "review_revoke_refused",
                l.email.clone(),
                format!(
                    "{}: not sent: {why}",
                    l.action.as_deref().unwrap_or("revoke")
                ),
            )
            .await?;
            (format!("refused: {why}"), Some(a))
        } else {
            let key = EmailKey::parse(&l.email);
            let step = key.as_ref().and_then(|k| results.get(k).copied());
            match step {
                Some(s) => match s.outcome {
                    Outcome::Done => {
                        revoked += 1;
                        (
                            format!("done: {}", l.action.as_deref().unwrap_or("")),
                            Some(s.audit_id),
                        )
                    }
                    Outcome::Noop => {
                        revoked += 1;
                        (
                            format!(
                                "no change needed: {}",
                                s.message.as_deref().unwrap_or("already so in TestRail")
                            ),
                            Some(s.audit_id),
                        )
                    }
                    o => {
                        failed += 1;
                        (
                            format!("{}: {}", o.as_str(), s.message.as_deref().unwrap_or("")),
                            Some(s.audit_id),
                        )
                    }
                },
                None => {
                    // A rail of the plan skipped it.
                    let skip = key.as_ref().and_then(|k| skipped.get(k).copied());
                    refused += 1;
                    (
                        format!(
                            "refused: {}",
                            skip.map_or("not planned".to_string(), |s| s.reason.clone())
                        ),
                        None,
                    )
                }
            }
        };
        outcomes.push(ItemOutcome {
            item: l.item,
            final_decision: l.final_decision.clone(),
            final_source: l.source.clone(),
            outcome,
            audit_id,
            at: now,
        });
    }
    let closing = failed == 0;
    // Every item's outcome as it will stand (earlier closes' included), digested into the
    // close's audit entry.
    let mut standing: BTreeMap<i64, (String, String, String, Option<i64>)> = engine
        .store()
        .review_items(id, None)
        .await?
        .into_iter()
        .map(|i| {
            (
                i.item,
                (
                    i.email,
                    i.final_decision.unwrap_or_default(),
                    i.outcome.unwrap_or_default(),
                    i.outcome_audit_id,
                ),
            )
        })
        .collect();
    for o in &outcomes {
        if let Some(e) = standing.get_mut(&o.item) {
            e.1 = o.final_decision.clone();
            e.2 = o.outcome.clone();
            e.3 = o.audit_id;
        }
    }
    let rows: Vec<(i64, &str, &str, &str, Option<i64>)> = standing
        .iter()
        .map(|(n, (e, d, o, a))| (*n, e.as_str(), d.as_str(), o.as_str(), *a))
        .collect();
    let digest = review::outcome_digest(&rows);
    let summary = serde_json::json!({
        "kept": kept, "revoked": revoked, "failed": failed, "refused": refused,
        "plan_steps": planned.plan.steps.len(), "outcomes_sha256": digest,
    });
    let audit_id = audit(
        engine,
        &conn.name,
        actor.audit_name(),
        if closing {
            "review_close"
        } else {
            "review_close_partial"
        },
        format!("review {id}"),
        format!(
            "{kept} kept, {revoked} revoked, {refused} refused, {failed} failed; outcomes sha256 {digest}{}",
            if closing {
                ""
            } else {
                "; the review stays open: close again to retry"
            }
        ),
    )
    .await?;
    engine
        .store()
        .record_review_outcomes(
            id,
            outcomes,
            closing.then(|| ReviewClose {
                at: now,
                by: actor.audit_name().to_string(),
                outcome: summary.to_string(),
            }),
        )
        .await?;
    Ok(CloseReport {
        review: id,
        planned,
        closed: closing,
        report,
        kept,
        revoked,
        failed,
        refused,
        audit_id,
    })
}

/// Sets (or clears) who reviews access to a group or project.
pub async fn set_owner<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    group: Option<&str>,
    project: Option<&str>,
    owner: Option<&str>,
    actor: &str,
) -> EngineResult<(String, u64, String)> {
    let owner_key = owner
        .map(|o| {
            EmailKey::parse(o)
                .ok_or_else(|| EngineError::InvalidInput(format!("{o:?} is not an email address")))
        })
        .transpose()?;
    let (kind, tid, tname) = match (group, project) {
        (Some(g), None) => {
            let names = engine.store().current_group_names(&conn.id).await?;
            let (id, n) = names
                .iter()
                .find(|(id, n)| {
                    n.as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(g.trim()))
                        || id.to_string() == g.trim()
                })
                .ok_or_else(|| {
                    EngineError::NotFound(format!("no group {g:?} (as of the last scan)"))
                })?;
            (
                "group",
                *id,
                n.clone().unwrap_or_else(|| format!("group {id}")),
            )
        }
        (None, Some(p)) => {
            let facts = AccessFacts::load(engine, conn, None).await?;
            let pr = facts.project(p)?;
            ("project", pr.id, pr.display_name())
        }
        _ => {
            return Err(EngineError::Usage(
                "name a group (--group G) or a project (--project P)".into(),
            ));
        }
    };
    let changed = engine
        .store()
        .set_owner(
            &conn.id,
            kind,
            tid,
            &tname,
            owner_key.as_ref().map(|o| o.as_str()),
            engine.now(),
        )
        .await?;
    if owner_key.is_none() && !changed {
        return Err(EngineError::NotFound(format!(
            "{kind} {tname} has no owner"
        )));
    }
    audit(
        engine,
        &conn.name,
        actor,
        "review_owner",
        format!("{kind} {tname}"),
        owner_key
            .as_ref()
            .map_or("owner cleared".to_string(), |o| format!("owner {o}")),
    )
    .await?;
    Ok((kind.to_string(), tid, tname))
}

/// The evidence of a review: every item with its snapshot, reviewer, decision, approval and
/// outcome, and the audit chain's head at export.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub review: ReviewView,
    pub reviewers: Vec<ReviewerView>,
    pub items: Vec<ItemView>,
    pub exported_at: i64,
    pub exported_by: String,
    /// The audit entry recording this export: the chain's head when the export was made.
    pub audit_head_id: i64,
    pub audit_head_hash: String,
}

/// Gathers the evidence; the export itself is audited first, so the head hash the evidence
/// carries is that entry's (an auditor checks it with `accessrail audit verify`).
pub async fn evidence<S: Store>(
    engine: &Engine<S>,
    id: i64,
    format: &str,
    actor: &Actor,
) -> EngineResult<Evidence> {
    if !actor.is_admin() {
        return Err(EngineError::Forbidden(
            "only an administrator exports a review".into(),
        ));
    }
    let detail = show(engine, id, None, actor).await?;
    let rows: Vec<(i64, &str, &str, &str, Option<i64>)> = detail
        .items
        .iter()
        .map(|i| {
            (
                i.item,
                i.email.as_str(),
                i.final_decision.as_deref().unwrap_or(""),
                i.outcome.as_deref().unwrap_or(""),
                i.outcome_audit_id,
            )
        })
        .collect();
    let outcomes = review::outcome_digest(&rows);
    let entry = audit_entry(
        engine,
        &detail.review.connection,
        actor.audit_name(),
        "review_export",
        format!("review {id}"),
        format!(
            "{format} export of {} items; outcomes sha256 {outcomes}",
            detail.items.len()
        ),
    )
    .await?;
    Ok(Evidence {
        review: detail.review,
        reviewers: detail.reviewers,
        items: detail.items,
        exported_at: engine.now(),
        exported_by: actor.audit_name().to_string(),
        audit_head_id: entry.id,
        audit_head_hash: entry.hash,
    })
}

/// The CSV columns of an export, one row per item.
pub const CSV_COLUMNS: &[&str] = &[
    "review_id",
    "item",
    "account_id",
    "email",
    "name",
    "active",
    "role",
    "administrator",
    "groups",
    "projects",
    "identity",
    "identity_status",
    "manager_email",
    "reviewer",
    "route",
    "decision",
    "action",
    "comment",
    "decided_by",
    "decided_at",
    "submission",
    "approved_by",
    "approved_at",
    "submission_sha256",
    "final_decision",
    "final_source",
    "outcome",
    "outcome_audit_id",
    "outcome_at",
    "audit_head_id",
    "audit_head_hash",
];

/// The evidence as CSV (RFC 3339 times in UTC).
pub fn to_csv(e: &Evidence) -> EngineResult<Vec<u8>> {
    let t = |x: Option<i64>| x.map(crate::time_fmt::rfc3339).unwrap_or_default();
    // A cell a spreadsheet would run as a formula (a name or comment starting with = + - @)
    // is written with a leading apostrophe.
    let cell = |v: String| -> String {
        if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{v}")
        } else {
            v
        }
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |x: csv::Error| EngineError::InvalidInput(format!("writing CSV: {x}"));
    w.write_record(CSV_COLUMNS).map_err(fail)?;
    for i in &e.items {
        let sub = e.reviewers.iter().find(|r| r.reviewer == i.reviewer);
        let id = |k: &str| {
            i.identity
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let projects = match &i.entitlements.projects {
            None => "unknown".to_string(),
            Some(p) => p
                .iter()
                .map(|p| format!("{}={}", p.name, p.role.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join("; "),
        };
        let approved = sub.filter(|s| s.submission == "approved");
        let record = [
            e.review.id.to_string(),
            i.item.to_string(),
            i.account_id.to_string(),
            i.email.clone(),
            i.name.clone(),
            i.entitlements.active.to_string(),
            i.entitlements.role.clone().unwrap_or_default(),
            i.entitlements.is_admin.to_string(),
            i.entitlements.groups.join("; "),
            projects,
            id("name"),
            id("status"),
            id("manager_email"),
            i.reviewer.clone(),
            i.route.clone(),
            i.decision.clone().unwrap_or_default(),
            i.action.clone().unwrap_or_default(),
            i.comment.clone().unwrap_or_default(),
            i.decided_by.clone().unwrap_or_default(),
            t(i.decided_at),
            sub.map_or("open".to_string(), |s| s.submission.clone()),
            approved
                .and_then(|s| s.judged_by.clone())
                .unwrap_or_default(),
            t(approved.and_then(|s| s.judged_at)),
            sub.and_then(|s| s.digest.clone()).unwrap_or_default(),
            i.final_decision.clone().unwrap_or_default(),
            i.final_source.clone().unwrap_or_default(),
            i.outcome.clone().unwrap_or_default(),
            i.outcome_audit_id
                .map(|a| a.to_string())
                .unwrap_or_default(),
            t(i.outcome_at),
            e.audit_head_id.to_string(),
            e.audit_head_hash.clone(),
        ];
        w.write_record(record.map(cell)).map_err(fail)?;
    }
    w.into_inner()
        .map_err(|x| EngineError::InvalidInput(format!("writing CSV: {x}")))
}

/// The printable HTML report.
pub fn to_html(e: &Evidence) -> EngineResult<String> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_filter("time", |x: Option<i64>| {
        x.map(crate::time_fmt::rfc3339).unwrap_or_default()
    });
    env.add_template("report", include_str!("../templates/review_report.html"))
        .map_err(|x| EngineError::InvalidInput(format!("report template: {x}")))?;
    env.get_template("report")
        .and_then(|t| t.render(minijinja::context! { e => e }))
        .map_err(|x| EngineError::InvalidInput(format!("rendering the report: {x}")))
}
