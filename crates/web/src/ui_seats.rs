//! The console's seats: the licence picture from activity evidence (`accessrail_engine::evidence`)
//! — active seats, seats without recorded activity, leavers still active, automation accounts
//! and, given a seat price and a billing day, what deactivating would save — the evidence scans,
//! and the active accounts with no recorded activity in 90 days; and an account's recorded
//! activity, for its page.
//!
//! TestRail reports no last-login or last-active time: everything here says "no recorded
//! activity in results, runs, plans or cases since D", never "inactive" or "last login".

use std::sync::Arc;

use accessrail_engine::{evidence, report, time_fmt};
use accessrail_store::{Connection, EvidenceRun, Store};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use crate::auth::Visitor;
use crate::state::AppState;
use crate::ui::{current_connection, message_page, page, plural, to_login};
use crate::ui_users::label;

/// What the evidence reads, in words.
pub(crate) const READS: &str = "results, runs, plans or cases";

/// TestRail's billing, in words.
pub(crate) const BILLING_NOTE: &str = "TestRail bills every user active at any time in a billing period: deactivating an account saves from the next period on, not in the current one.";

/// The CLI command that reads activity evidence.
pub(crate) const SCAN_COMMAND: &str = "accessrail evidence scan";

/// Accounts per page of the list without recorded activity.
const PAGE: usize = 50;

const DAY: i64 = 86_400;

/// The date of a time (`2026-11-25`), UTC.
pub(crate) fn date(t: i64) -> String {
    let s = time_fmt::rfc3339(t);
    s.get(..10).map_or(s.clone(), str::to_string)
}

/// "no recorded activity in results, runs, plans or cases since D".
pub(crate) fn none_since(from: i64) -> String {
    format!("no recorded activity in {READS} since {}", date(from))
}

/// The line on an account's page about its recorded activity.
pub(crate) async fn account_activity(s: &AppState, conn: &Connection, id: u64) -> String {
    let engine = &s.engine;
    let from = match evidence::covered_from(engine, conn).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("reading evidence coverage: {e}");
            return "Recorded activity could not be read: the database did not answer.".into();
        }
    };
    let Some(from) = from else {
        return "No activity evidence yet".into();
    };
    let view = match evidence::view_of(engine, conn, id).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("reading evidence: {e}");
            return "Recorded activity could not be read: the database did not answer.".into();
        }
    };
    match view {
        Some(v) => format!(
            "Latest recorded activity: {} on {} (30 days: {}, 90 days: {}){}",
            v.artefact,
            date(v.at),
            v.last_30_days,
            v.last_90_days,
            if v.automation {
                ", automation account"
            } else {
                ""
            }
        ),
        None => format!("No recorded activity in {READS} since {}", date(from)),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct SeatsQuery {
    /// Per seat and month; empty: not given.
    #[serde(default)]
    seat_price: String,
    /// The day of the month (1-28) the billing period renews on; empty: not given.
    #[serde(default)]
    billing_day: String,
    /// Which page of accounts without recorded activity (from 0).
    #[serde(default)]
    page: usize,
}

fn parse_price(s: &str) -> Result<Option<f64>, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(Some(p)),
        _ => Err("The seat price is not a number of at least 0; it is left out."),
    }
}

fn parse_day(s: &str) -> Result<Option<u8>, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<u8>() {
        Ok(d) if (1..=28).contains(&d) => Ok(Some(d)),
        _ => Err("The billing day is not a day from 1 to 28; it is left out."),
    }
}

fn money(v: f64) -> String {
    format!("{v:.2}")
}

/// A count the evidence may not cover yet.
fn covered(n: Option<u64>) -> (String, bool) {
    match n {
        Some(n) => (n.to_string(), true),
        None => ("not covered by the evidence yet".into(), false),
    }
}

fn run_row(r: &EvidenceRun) -> Value {
    let css = match r.status.as_str() {
        "succeeded" => "ok",
        "failed" => "bad",
        _ => "warn",
    };
    context! {
        id => r.id, started => time_fmt::short(r.started_at), read_from => time_fmt::short(r.read_from),
        status => r.status, css, requests => r.requests, estimate => r.estimate,
        evidence => r.evidence, error => r.error,
    }
}

fn link(price: &str, day: &str, page: usize) -> String {
    let mut q = vec![];
    if !price.trim().is_empty() {
        q.push(format!(
            "seat_price={}",
            testrail_client::encode_query_value(price.trim())
        ));
    }
    if !day.trim().is_empty() {
        q.push(format!(
            "billing_day={}",
            testrail_client::encode_query_value(day.trim())
        ));
    }
    q.push(format!("page={page}"));
    format!("/seats?{}", q.join("&"))
}

pub(crate) async fn seats_page(
    State(s): State<Arc<AppState>>,
    v: Visitor,
    Query(q): Query<SeatsQuery>,
) -> Response {
    if v.signed_in().is_none() {
        return to_login(&v);
    }
    let Some(conn) = current_connection(&s).await else {
        return Redirect::to("/setup").into_response();
    };
    let mut notes: Vec<&str> = vec![];
    let price = parse_price(&q.seat_price).unwrap_or_else(|e| {
        notes.push(e);
        None
    });
    let day = parse_day(&q.billing_day).unwrap_or_else(|e| {
        notes.push(e);
        None
    });
    let engine = &s.engine;
    let read = async {
        let report = evidence::seats(engine, &conn, price, day).await?;
        let runs = engine.store().evidence_runs(&conn.id).await?;
        let users = report::users(engine, &conn).await?;
        let views = match report.evidence_from {
            Some(_) => evidence::views(engine, &conn).await?,
            None => Default::default(),
        };
        Ok::<_, accessrail_engine::EngineError>((report, runs, users, views))
    };
    let (seats, runs, users, views) = match read.await {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("reading seats: {e}");
            return message_page(
                &s,
                &v,
                StatusCode::SERVICE_UNAVAILABLE,
                "Seats",
                "The database did not answer. Try again.",
                "/seats",
            );
        }
    };
    let now = engine.now();
    let from = seats.evidence_from;
    // Active accounts with no recorded activity in 90 days, when the evidence covers them.
    let since = now - 90 * DAY;
    let idle: Option<Vec<&report::UserView>> = from.filter(|f| *f <= since).map(|_| {
        users
            .iter()
            .filter(|u| u.is_active)
            .filter(|u| views.get(&u.id).is_none_or(|e| e.at < since))
            .collect()
    });
    let total = idle.as_ref().map_or(0, Vec::len);
    let start = (q.page * PAGE).min(total);
    let accounts: Vec<Value> = idle
        .iter()
        .flatten()
        .skip(start)
        .take(PAGE)
        .map(|u| {
            let latest = match (views.get(&u.id), from) {
                (Some(e), _) => format!("{} on {}", e.artefact, date(e.at)),
                (None, Some(f)) => format!("none since {}", date(f)),
                (None, None) => String::new(),
            };
            let shown = label(u.name.as_deref(), u.email.as_deref(), u.id);
            context! {
                id => u.id, email => u.email.clone().filter(|e| *e != shown), label => shown,
                leaver => u.is_leaver(), latest, none => !views.contains_key(&u.id),
            }
        })
        .collect();
    let (d30, c30) = covered(seats.without_evidence_30_days);
    let (d60, c60) = covered(seats.without_evidence_60_days);
    let (d90, c90) = covered(seats.without_evidence_90_days);
    let figures = vec![
        context! { id => "active-seats", label => "Active seats", value => seats.active_seats.to_string(), known => true },
        context! { id => "without-30", label => "Without recorded activity in 30 days", value => d30, known => c30 },
        context! { id => "without-60", label => "Without recorded activity in 60 days", value => d60, known => c60 },
        context! { id => "without-90", label => "Without recorded activity in 90 days", value => d90, known => c90 },
        context! { id => "leavers-active", label => "Leavers still active", value => seats.leavers_active.to_string(), known => true },
        context! { id => "automation", label => "Automation accounts", value => seats.automation_accounts.to_string(), known => true },
    ];
    let savings = seats.seat_price.map(|p| {
        context! {
            price => money(p),
            leavers => seats.monthly_saving_leavers.map(money),
            both => seats.monthly_saving_leavers_and_idle_90.map(money),
            idle_known => seats.without_evidence_90_days.is_some(),
        }
    });
    let runs_shown: Vec<Value> = runs.iter().rev().map(run_row).collect();
    page(
        &s,
        &v,
        "seats.html",
        context! {
            title => "Seats", page => "seats", connection => conn.name,
            figures, notes, savings,
            covered_from => from.map(date),
            none_since => from.map(none_since),
            billing_end => seats.billing_period_end.map(date),
            billing_note => BILLING_NOTE,
            seat_price => q.seat_price.trim(), billing_day => q.billing_day.trim(),
            runs => runs_shown, command => SCAN_COMMAND,
            idle_known => idle.is_some(), accounts,
            any_leaver => idle.iter().flatten().any(|u| u.is_leaver()),
            count => plural(total as u64, "active account", "active accounts"),
            prev_link => (q.page > 0 && start > 0).then(|| link(&q.seat_price, &q.billing_day, q.page - 1)),
            next_link => ((q.page + 1) * PAGE < total).then(|| link(&q.seat_price, &q.billing_day, q.page + 1)),
            range => (total > PAGE).then(|| format!("{}–{} of {total}", start + 1, start + accounts.len())),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_and_days_are_read_or_left_out() {
        assert_eq!(parse_price(""), Ok(None));
        assert_eq!(parse_price(" 37.5 "), Ok(Some(37.5)));
        assert!(parse_price("-1").is_err());
        assert!(parse_price("NaN").is_err());
        assert_eq!(parse_day(""), Ok(None));
        assert_eq!(parse_day("28"), Ok(Some(28)));
        assert!(parse_day("29").is_err() && parse_day("0").is_err());
        assert_eq!(
            link("37.5", "", 2),
            "/seats?seat_price=37.5&page=2".to_string()
        );
    }

    #[test]
    fn the_wording_stays_honest() {
        // 2026-11-26 12:00 UTC.
        assert_eq!(
            none_since(1_795_694_400),
            "no recorded activity in results, runs, plans or cases since 2026-11-26"
        );
        let html = crate::ui::templates()
            .get_template("seats.html")
            .and_then(|t| t.render(context! { title => "Seats", signed_in => "admin", csrf => "c", connection => "acme", command => SCAN_COMMAND }))
            .unwrap();
        assert!(html.contains("No evidence scan yet"), "{html}");
        assert!(html.contains(SCAN_COMMAND));
        assert!(
            html.contains("href=\"/seats\" class=\"on\"") || html.contains("href=\"/seats\""),
            "in the navigation"
        );
        let lower = html.to_lowercase();
        assert!(!lower.contains("inactive") && !lower.contains("last login"));
    }
}
