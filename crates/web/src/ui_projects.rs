//! The console's projects: the list of TestRail projects with their access counts, one
//! project's facts and who can reach it, and an account's access across projects (shown on
//! its page). Effective access is `accessrail_engine::access` (the one rule), always shown with
//! its source and with [`RULE_NOTE`]; what TestRail does not report is said so, never guessed.

use std::sync::Arc;

use accessrail_domain::project::Knowledge;
use accessrail_engine::access::{AccessFacts, AccessRow, ProjectView, RULE_NOTE, SourceView};
use accessrail_engine::time_fmt;
use accessrail_store::Connection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use crate::auth::Visitor;
use crate::state::{App, AppState};
use crate::ui::{current_connection, message_page, page, plural, to_login};

/// The small print wherever effective access is shown.
pub(crate) fn rule_note() -> String {
    format!("Note: {RULE_NOTE}.")
}

/// What Professional editions leave out, in words.
pub(crate) const PROFESSIONAL_NOTE: &str = "This TestRail (Professional) does not report users' own project roles: where one is set, it wins over what is shown here.";

/// What TestRail before 7.3 leaves out, in words.
pub(crate) const BEFORE_7_3_NOTE: &str = "This TestRail reports no project access (before 7.3): who can reach these projects is unknown, and nothing is guessed. Administrators reach every project.";

fn knowledge_css(k: Knowledge) -> &'static str {
    match k {
        Knowledge::Known => "ok",
        Knowledge::UserRolesUnknown => "warn",
        Knowledge::Unknown => "",
    }
}

/// The caveat on one account's access to one project, if any.
fn caveat(k: Knowledge) -> Option<&'static str> {
    match k {
        Knowledge::Known => None,
        Knowledge::UserRolesUnknown => Some("an own project role would win (not reported)"),
        Knowledge::Unknown => Some("not reported (before 7.3)"),
    }
}

/// A source as a table shows it: its label, "(global role)" where the grant said "the user's
/// global role" (administrators always have theirs), and the group's page for a group role.
fn source(s: Option<&SourceView>) -> Value {
    match s {
        None => context! { label => "unknown", unknown => true },
        Some(s) => context! {
            label => s.label,
            global => s.via_global_role && s.kind != "administrator",
            link => s.group_id.map(|g| format!("/groups/{g}")),
        },
    }
}

/// The role an account has in a project: `unknown`, `no access`, or the role's name.
fn role(r: &AccessRow) -> String {
    match (r.can_access, &r.role) {
        (None, _) => "unknown".into(),
        (Some(false), _) => "no access".into(),
        (Some(true), role) => role.clone().unwrap_or_else(|| "role not named".into()),
    }
}

/// One access row for a table (by project or by account).
fn row(r: &AccessRow) -> Value {
    context! {
        project_id => r.project_id, project => r.project, completed => r.project_completed,
        account_id => r.account_id, email => r.email, name => r.name, is_active => r.is_active,
        label => r.name.clone().filter(|n| !n.trim().is_empty())
            .or_else(|| r.email.clone().filter(|e| !e.trim().is_empty()))
            .unwrap_or_else(|| format!("TestRail user #{}", r.account_id)),
        role => role(r), no_access => r.can_access == Some(false), unknown => r.can_access.is_none(),
        source => source(r.source.as_ref()), also => r.also_text(), caveat => caveat(r.knowledge),
    }
}

/// The footnotes for these rows: what TestRail did not report.
fn caveats(rows: &[AccessRow]) -> Vec<&'static str> {
    let mut out = vec![];
    if rows
        .iter()
        .any(|r| r.knowledge == Knowledge::UserRolesUnknown)
    {
        out.push(PROFESSIONAL_NOTE);
    }
    if rows.iter().any(|r| r.knowledge == Knowledge::Unknown) {
        out.push(BEFORE_7_3_NOTE);
    }
    out
}

/// The current revision's facts and project counts (cached until the next revision).
async fn load(
    s: &AppState,
    conn: &Connection,
) -> Option<(Arc<AccessFacts>, Arc<Vec<ProjectView>>)> {
    let engine: &App = &s.engine;
    match s.access.get(engine, conn, None).await {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!("reading project access: {e}");
            None
        }
    }
}

fn unavailable(s: &AppState, v: &Visitor, heading: &str) -> Response {
    message_page(
        s,
        v,
        StatusCode::SERVICE_UNAVAILABLE,
        heading,
        "The database did not answer. Try again.",
        "/projects",
    )
}

// ---- the projects list ------------------------------------------------------------------------

pub(crate) async fn projects_page(State(s): State<Arc<AppState>>, v: Visitor) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let Some((_, list)) = load(&s, &conn).await else {
        return unavailable(&s, &v, "Projects");
    };
    let projects: Vec<Value> = list
        .iter()
        .map(|p| {
            context! {
                id => p.id, name => p.name, completed => p.is_completed,
                default_role => p.default_role, group_roles => p.group_roles,
                user_roles => p.user_roles.map_or_else(|| "not reported".to_string(), |n| n.to_string()),
                user_roles_known => p.user_roles.is_some(),
                active_with_access => p.active_with_access.map_or_else(|| "unknown".to_string(), |n| n.to_string()),
                access_known => p.active_with_access.is_some(),
                access => p.access.label(), access_css => knowledge_css(p.access),
            }
        })
        .collect();
    let mut notes = vec![];
    if list.iter().any(|p| p.access == Knowledge::UserRolesUnknown) {
        notes.push(PROFESSIONAL_NOTE);
    }
    if list.iter().any(|p| p.access == Knowledge::Unknown) {
        notes.push(BEFORE_7_3_NOTE);
    }
    let completed = list.iter().filter(|p| p.is_completed).count() as u64;
    page(
        &s,
        &v,
        "projects.html",
        context! {
            title => "Projects", page => "projects", connection => conn.name, projects,
            count => plural(list.len() as u64, "project", "projects"),
            completed => (completed > 0).then(|| format!("{completed} completed")),
            notes, rule => rule_note(),
        },
    )
}

// ---- one project ------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub(crate) struct ProjectQuery {
    /// `1`: everyone, accounts without access and inactive ones included.
    #[serde(default)]
    all: String,
    /// Which page of accounts (from 0).
    #[serde(default)]
    page: usize,
}

/// Accounts per page of a project's access (a project everyone reaches lists every account).
const PAGE: usize = 50;

fn page_link(id: u64, everyone: bool, page: usize) -> String {
    format!(
        "/projects/{id}?{}page={page}",
        if everyone { "all=1&" } else { "" }
    )
}

pub(crate) async fn project_page(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Path(id): Path<String>,
    Query(q): Query<ProjectQuery>,
) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let Some((facts, views)) = load(&s, &conn).await else {
        return unavailable(&s, &v, "Project");
    };
    let wanted = id.trim();
    let found = wanted
        .parse::<u64>()
        .ok()
        .and_then(|n| facts.projects.iter().find(|p| p.id == n));
    let (Some(project), Some(view)) = (
        found,
        found.and_then(|p| views.iter().find(|v| v.id == p.id).cloned()),
    ) else {
        let which = if wanted.parse::<u64>().is_ok() {
            format!("project #{wanted}")
        } else {
            format!("project {wanted:?}")
        };
        return message_page(
            &s,
            &v,
            StatusCode::NOT_FOUND,
            "No such project",
            &format!("{} has no {which} (as of the last scan).", conn.name),
            "/projects",
        );
    };
    let everyone = !q.all.is_empty() && q.all != "0";
    // A page of the listed accounts; the counts cover them all.
    let listed = facts.project_page(project, everyone, q.page * PAGE, PAGE);
    let rows = &listed.rows;
    let mut notes = caveats(rows);
    // The project's own caveats hold even when no row shows them (no account listed).
    let own = match view.access {
        Knowledge::Known => None,
        Knowledge::UserRolesUnknown => Some(PROFESSIONAL_NOTE),
        Knowledge::Unknown => Some(BEFORE_7_3_NOTE),
    };
    if let Some(n) = own
        && !notes.contains(&n)
    {
        notes.push(n);
    }
    let (reach, unknown) = (listed.reach, listed.unknown);
    let shown = if everyone {
        format!(
            "{} listed, {reach} can reach it{}",
            plural(listed.total, "account", "accounts"),
            if unknown > 0 {
                format!(", {unknown} unknown")
            } else {
                String::new()
            }
        )
    } else {
        format!(
            "{} can reach it{}",
            plural(reach, "active account", "active accounts"),
            if unknown > 0 {
                format!(", {unknown} unknown")
            } else {
                String::new()
            }
        )
    };
    let accounts: Vec<Value> = rows.iter().map(row).collect();
    page(
        &s,
        &v,
        "project.html",
        context! {
            title => view.name.clone(), page => "projects",
            p => context! {
                id => view.id, name => view.name, completed => view.is_completed,
                completed_on => view.completed_on.map(time_fmt::short),
                default_role => view.default_role.clone().unwrap_or_else(|| {
                    if view.access == Knowledge::Unknown { "not reported".into() } else { "none given".into() }
                }),
                group_roles => view.group_roles,
                user_roles => view.user_roles.map_or_else(|| "not reported".to_string(), |n| n.to_string()),
                active_with_access => view.active_with_access.map_or_else(|| "unknown".to_string(), |n| n.to_string()),
                access => view.access.label(), access_css => knowledge_css(view.access),
            },
            everyone, shown, accounts, notes, rule => rule_note(),
            toggle_link => if everyone { format!("/projects/{}", view.id) } else { format!("/projects/{}?all=1", view.id) },
            prev_link => (q.page > 0).then(|| page_link(view.id, everyone, q.page - 1)),
            next_link => ((q.page + 1) * PAGE < usize::try_from(listed.total).unwrap_or(usize::MAX))
                .then(|| page_link(view.id, everyone, q.page + 1)),
            range => (listed.total > 0).then(|| format!(
                "{}–{} of {}",
                q.page * PAGE + 1,
                (q.page * PAGE + rows.len()).max(q.page * PAGE + 1),
                listed.total
            )),
            toggle_label => if everyone { "Only active accounts with access" } else { "Everyone, without access and inactive included" },
        },
    )
}

// ---- one account's access ---------------------------------------------------------------------

/// An account's access to every project, for its page (`None`: the account is not among the
/// current accounts).
pub(crate) async fn account_access(s: &AppState, conn: &Connection, id: u64) -> Option<Value> {
    let Some((facts, _)) = load(s, conn).await else {
        return Some(context! { error => true });
    };
    let account = facts.accounts.iter().find(|a| a.id == id)?;
    let rows = facts.for_account(account);
    let reach = rows.iter().filter(|r| r.can_access == Some(true)).count() as u64;
    let unknown = rows.iter().filter(|r| r.can_access.is_none()).count() as u64;
    Some(context! {
        known => !facts.projects.is_empty(),
        rows => rows.iter().map(row).collect::<Vec<_>>(),
        summary => format!(
            "reaches {reach} of {}{}",
            plural(rows.len() as u64, "project", "projects"),
            if unknown > 0 { format!("; {unknown} unknown") } else { String::new() }
        ),
        notes => caveats(&rows), rule => rule_note(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(kind: &'static str, label: &str, global: bool) -> SourceView {
        SourceView {
            kind,
            label: label.into(),
            group_id: (kind == "group_role").then_some(4),
            role_id: Some(3),
            role: Some("Tester".into()),
            via_global_role: global,
        }
    }

    fn access(can: Option<bool>, role: Option<&str>) -> AccessRow {
        AccessRow {
            project_id: 1,
            project: "Mobile".into(),
            project_completed: false,
            account_id: 7,
            email: Some("a@example.com".into()),
            name: None,
            is_active: true,
            can_access: can,
            role_id: None,
            role: role.map(str::to_string),
            source: None,
            also: vec![
                src("group_role", "group QA", false),
                src("project_default", "project default", true),
            ],
            knowledge: Knowledge::Known,
        }
    }

    #[test]
    fn roles_sources_and_other_offers_read_plainly() {
        assert_eq!(role(&access(None, Some("Lead"))), "unknown");
        assert_eq!(role(&access(Some(false), Some("No Access"))), "no access");
        assert_eq!(role(&access(Some(true), Some("Lead"))), "Lead");
        assert_eq!(
            access(Some(true), None).also_text(),
            "group QA: Tester; project default: Tester"
        );
        let s = source(Some(&src("group_role", "group QA", true)));
        assert_eq!(s.get_attr("global").unwrap(), Value::from(true));
        assert_eq!(s.get_attr("link").unwrap(), Value::from("/groups/4"));
        let s = source(Some(&src("administrator", "administrator", true)));
        assert_eq!(s.get_attr("global").unwrap(), Value::from(false));
        let s = source(None);
        assert_eq!(s.get_attr("label").unwrap(), Value::from("unknown"));
    }

    #[test]
    fn caveats_follow_what_testrail_reported() {
        let mut rows = vec![access(Some(true), Some("Lead"))];
        assert!(caveats(&rows).is_empty());
        rows[0].knowledge = Knowledge::UserRolesUnknown;
        assert_eq!(caveats(&rows), vec![PROFESSIONAL_NOTE]);
        rows.push(access(None, None));
        rows[1].knowledge = Knowledge::Unknown;
        assert_eq!(caveats(&rows), vec![PROFESSIONAL_NOTE, BEFORE_7_3_NOTE]);
        assert!(rule_note().contains(RULE_NOTE));
    }

    #[test]
    fn before_any_scan_the_list_says_how_projects_come() {
        let html = crate::ui::templates()
            .get_template("projects.html")
            .and_then(|t| t.render(context! { title => "Projects", signed_in => "admin", csrf => "c", connection => "acme", projects => Vec::<Value>::new() }))
            .unwrap();
        assert!(html.contains("Projects are read by every scan;"), "{html}");
        assert!(
            html.contains("href=\"/projects\" class=\"\""),
            "in the navigation"
        );
        assert!(!html.contains("id=\"projects\""), "no empty table");
    }
}
