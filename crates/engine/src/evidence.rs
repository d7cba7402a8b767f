//! Activity evidence. TestRail's API has no last-login or last-active time, so Accessrail reads
//! the artefacts that carry people and times — results, runs, plans, cases — once per
//! artefact, never per user, and keeps one row per piece of evidence. Incremental: each scan
//! reads what was created or updated since the last good scan began, less an overlap (a
//! re-read keeps nothing twice); the first scan reaches back a configurable time.
//!
//! What it reads, per project:
//! - open runs (plan runs included) and completed ones: runs created since the watermark are
//!   evidence of their creator; the results of every open run and of every run completed
//!   since the watermark are read from the watermark on (`get_results_for_run&created_after`);
//! - plans created since the watermark;
//! - each suite's cases updated since the watermark (their creator when created since then,
//!   their last updater).
//!
//! Wording stays honest everywhere this is shown: "no recorded activity in results, runs,
//! plans or cases since D", never "inactive" or "last login".

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use accessrail_store::{AccountEvidence, Connection, EvidenceRecord, Store};
use serde::Serialize;
use testrail_client::artefacts::ListFilter;
use testrail_client::{Event, PAGE_SIZE};

use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};

/// How far the first evidence scan reaches back (days).
pub const DEFAULT_REACH_DAYS: i64 = 180;
/// How much before the last good scan's start the next one reads again (a result added while
/// that scan ran is not missed).
pub const OVERLAP_SECS: i64 = 3600;

/// What an evidence scan did.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceOutcome {
    pub connection: String,
    pub run_id: i64,
    /// Artefacts created or updated from this time on were read (Unix seconds).
    pub read_from: i64,
    pub projects: u64,
    pub runs_read: u64,
    /// TestRail requests sent, and the number this scan needed at least for what it found
    /// (one per page of each list it read).
    pub requests: u64,
    pub estimate: u64,
    pub evidence_read: u64,
    pub evidence_new: u64,
}

fn pages(n: usize) -> u64 {
    (n as u64).div_ceil(PAGE_SIZE as u64).max(1)
}

/// Reads the evidence of one connection. `reach_days`: read from that long ago, whatever the
/// watermark says (the first scan reaches [`DEFAULT_REACH_DAYS`] when not given).
pub async fn scan<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    reach_days: Option<i64>,
) -> EngineResult<EvidenceOutcome> {
    let lease = crate::lease::try_acquire(engine, &format!("evidence:{}", conn.id), "evidence")
        .await?
        .ok_or_else(|| {
            EngineError::Busy(format!(
                "an evidence scan of {} is already running",
                conn.name
            ))
        })?;
    crate::lease::held(
        engine,
        std::slice::from_ref(&lease),
        scan_inner(engine, conn, reach_days),
    )
    .await
}

async fn scan_inner<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    reach_days: Option<i64>,
) -> EngineResult<EvidenceOutcome> {
    let store = engine.store();
    let now = engine.now();
    let last_good = store
        .evidence_runs(&conn.id)
        .await?
        .into_iter()
        .rev()
        .find(|r| r.status == "succeeded");
    let read_from = match (reach_days, &last_good) {
        (Some(d), _) => now - d.max(1) * 86_400,
        (None, Some(r)) => r.started_at - OVERLAP_SECS,
        (None, None) => now - DEFAULT_REACH_DAYS * 86_400,
    };
    let run_id = store.begin_evidence_run(&conn.id, now, read_from).await?;
    let requests = Arc::new(AtomicU64::new(0));
    let hook = {
        let requests = requests.clone();
        Arc::new(move |e: &Event| {
            if let Event::RequestSent { .. } = e {
                requests.fetch_add(1, Ordering::Relaxed);
            }
        }) as Arc<dyn Fn(&Event) + Send + Sync>
    };
    let mut tally = Tally::default();
    let result = read(engine, conn, hook, read_from, &mut tally).await;
    let sent = requests.load(Ordering::Relaxed);
    match result {
        Ok(()) => {
            store
                .finish_evidence_run(
                    run_id,
                    "succeeded",
                    sent,
                    tally.estimate,
                    tally.read,
                    None,
                    engine.now(),
                )
                .await?;
            Ok(EvidenceOutcome {
                connection: conn.name.clone(),
                run_id,
                read_from,
                projects: tally.projects,
                runs_read: tally.runs,
                requests: sent,
                estimate: tally.estimate,
                evidence_read: tally.read,
                evidence_new: tally.new,
            })
        }
        Err(e) => {
            // The evidence kept so far stays (each piece is a fact); the watermark does not
            // move, so the next scan reads the same span again.
            let _ = store
                .finish_evidence_run(
                    run_id,
                    "failed",
                    sent,
                    tally.estimate,
                    tally.read,
                    Some(&e.to_string()),
                    engine.now(),
                )
                .await;
            Err(e)
        }
    }
}

#[derive(Default)]
struct Tally {
    projects: u64,
    runs: u64,
    estimate: u64,
    read: u64,
    new: u64,
}

async fn read<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    hook: Arc<dyn Fn(&Event) + Send + Sync>,
    read_from: i64,
    tally: &mut Tally,
) -> EngineResult<()> {
    let client = engine.client_for(conn, Some(hook))?;
    let up = |what: &str, e| EngineError::upstream(what.to_string(), e);
    let projects = client
        .get_projects()
        .await
        .map_err(|e| up("reading the projects", e))?;
    tally.estimate += pages(projects.len());
    for p in &projects {
        tally.projects += 1;
        let mut found: Vec<EvidenceRecord> = Vec::new();
        let piece =
            |kind: &str, id: u64, user: Option<u64>, at: Option<i64>, run: Option<u64>| match (
                user, at,
            ) {
                (Some(u), Some(t)) if u > 0 && t >= read_from => Some(EvidenceRecord {
                    kind: kind.to_string(),
                    artefact_id: id,
                    tr_user_id: u,
                    at: t,
                    project_id: Some(p.id),
                    run_id: run,
                }),
                _ => None,
            };
        // Runs: open ones, and completed ones (TestRail cannot filter on completion time).
        let mut runs = Vec::new();
        for completed in [false, true] {
            let list = client
                .runs(
                    p.id,
                    &ListFilter {
                        is_completed: Some(completed),
                        include_plan_runs: true,
                        ..ListFilter::default()
                    },
                )
                .collect_all()
                .await
                .map_err(|e| up(&format!("reading the runs of project {}", p.id), e))?;
            tally.estimate += pages(list.len());
            runs.extend(list);
        }
        for r in &runs {
            found.extend(piece("run", r.id, r.created_by, r.created_on, None));
        }
        let with_new_results: Vec<u64> = runs
            .iter()
            .filter(|r| {
                r.is_completed != Some(true) || r.completed_on.is_none_or(|t| t >= read_from)
            })
            .map(|r| r.id)
            .collect();
        for run in with_new_results {
            tally.runs += 1;
            let results = client
                .results_for_run(
                    run,
                    &ListFilter {
                        created_after: Some(read_from),
                        ..ListFilter::default()
                    },
                )
                .collect_all()
                .await
                .map_err(|e| up(&format!("reading the results of run {run}"), e))?;
            tally.estimate += pages(results.len());
            for r in &results {
                found.extend(piece("result", r.id, r.created_by, r.created_on, Some(run)));
            }
        }
        let plans = client
            .plans(
                p.id,
                &ListFilter {
                    created_after: Some(read_from),
                    ..ListFilter::default()
                },
            )
            .collect_all()
            .await
            .map_err(|e| up(&format!("reading the plans of project {}", p.id), e))?;
        tally.estimate += pages(plans.len());
        for pl in &plans {
            found.extend(piece("plan", pl.id, pl.created_by, pl.created_on, None));
        }
        let suites = client
            .suites(p.id)
            .collect_all()
            .await
            .map_err(|e| up(&format!("reading the suites of project {}", p.id), e))?;
        tally.estimate += pages(suites.len());
        for s in &suites {
            let cases = client
                .cases(
                    p.id,
                    &ListFilter {
                        suite_id: Some(s.id),
                        updated_after: Some(read_from),
                        ..ListFilter::default()
                    },
                )
                .collect_all()
                .await
                .map_err(|e| up(&format!("reading the cases of project {}", p.id), e))?;
            tally.estimate += pages(cases.len());
            for c in &cases {
                found.extend(piece(
                    "case_created",
                    c.id,
                    c.created_by,
                    c.created_on,
                    None,
                ));
                found.extend(piece(
                    "case_updated",
                    c.id,
                    c.updated_by,
                    c.updated_on,
                    None,
                ));
            }
        }
        tally.read += found.len() as u64;
        tally.new += engine.store().add_evidence(&conn.id, found).await?;
    }
    Ok(())
}

/// The connections whose evidence is due: on the scan schedule (each connection's interval),
/// counted from the last evidence scan's start; after a failure, again after a fifth of the
/// interval. Only connections that have been scanned (the evidence reads their projects).
pub async fn due<S: Store>(
    engine: &Engine<S>,
    schedule: &crate::schedule::Schedule,
) -> EngineResult<Vec<Connection>> {
    let now = engine.now();
    let mut out = Vec::new();
    for conn in engine.store().connections().await? {
        let scanned = engine
            .store()
            .scans(&conn.id)
            .await?
            .iter()
            .any(|s| s.status == accessrail_store::ScanStatus::Succeeded);
        if !scanned {
            continue;
        }
        let every = conn.scan_interval_secs.unwrap_or(schedule.interval).max(60);
        let last = engine.store().evidence_runs(&conn.id).await?.pop();
        let next = match &last {
            None => now,
            Some(r) if r.status == "failed" => r.started_at + every / 5,
            Some(r) if r.status == "running" => r.started_at + every,
            Some(r) => r.started_at + every,
        };
        if next <= now {
            out.push(conn);
        }
    }
    Ok(out)
}

/// Since when the evidence covers activity: the earliest start of the successful evidence
/// scans (each reads from the one before it, less an overlap); `None` before the first.
pub async fn covered_from<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
) -> EngineResult<Option<i64>> {
    Ok(engine
        .store()
        .evidence_runs(&conn.id)
        .await?
        .into_iter()
        .filter(|r| r.status == "succeeded")
        .map(|r| r.read_from)
        .min())
}

/// One account's evidence as shown: the latest piece, described, and counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvidenceView {
    pub at: i64,
    /// `result`, `run`, `plan`, `case_created` or `case_updated`.
    pub kind: String,
    /// The artefact, e.g. `result in run 812, project Mobile`.
    pub artefact: String,
    pub last_30_days: u64,
    pub last_90_days: u64,
    /// Most of the account's evidence is results in bulk (at least 500 in 90 days, and at
    /// least 90% of its evidence): an automation account, most likely a shared API account.
    pub automation: bool,
}

/// Every account's evidence by TestRail user id, described with project names.
pub async fn views<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
) -> EngineResult<BTreeMap<u64, EvidenceView>> {
    views_of(engine, conn, None).await
}

/// One account's evidence (its page), read for that account only.
pub async fn view_of<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    account: u64,
) -> EngineResult<Option<EvidenceView>> {
    Ok(views_of(engine, conn, Some(account))
        .await?
        .remove(&account))
}

async fn views_of<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    account: Option<u64>,
) -> EngineResult<BTreeMap<u64, EvidenceView>> {
    let store = engine.store();
    let names: BTreeMap<u64, String> = store
        .projects(&conn.id, None)
        .await?
        .into_iter()
        .map(|p| (p.id, p.display_name()))
        .collect();
    let all: Vec<AccountEvidence> = store
        .account_evidence(&conn.id, engine.now(), account)
        .await?;
    Ok(all
        .into_iter()
        .map(|a| {
            let l = &a.latest;
            let project = l.project_id.map(|p| {
                names
                    .get(&p)
                    .cloned()
                    .unwrap_or_else(|| format!("project {p}"))
            });
            let what = match l.kind.as_str() {
                "result" => format!(
                    "result in run {}",
                    l.run_id.map_or("?".to_string(), |r| r.to_string())
                ),
                "run" => format!("created run {}", l.artefact_id),
                "plan" => format!("created plan {}", l.artefact_id),
                "case_created" => format!("created case C{}", l.artefact_id),
                _ => format!("updated case C{}", l.artefact_id),
            };
            let artefact = match project {
                Some(p) => format!("{what}, {p}"),
                None => what,
            };
            (
                a.tr_user_id,
                EvidenceView {
                    at: l.at,
                    kind: l.kind.clone(),
                    artefact,
                    last_30_days: a.last_30_days,
                    last_90_days: a.last_90_days,
                    automation: a.results_90_days >= 500
                        && a.results_90_days * 10 >= a.last_90_days * 9,
                },
            )
        })
        .collect())
}

/// The licence picture: active seats, seats without recorded activity, leavers still active,
/// and what deactivating them would save.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeatReport {
    pub connection: String,
    pub active_seats: u64,
    /// Evidence was read from this time on (`None`: no evidence scan yet).
    pub evidence_from: Option<i64>,
    /// Active accounts with no recorded activity in the last 30, 60 and 90 days (only
    /// periods the evidence covers).
    pub without_evidence_30_days: Option<u64>,
    pub without_evidence_60_days: Option<u64>,
    pub without_evidence_90_days: Option<u64>,
    /// Active accounts whose identity is a leaver.
    pub leavers_active: u64,
    /// Active accounts flagged as automation (most evidence is results in bulk).
    pub automation_accounts: u64,
    pub seat_price: Option<f64>,
    /// Per month, when a seat price is given: leavers still active, and leavers plus seats
    /// without evidence in 90 days.
    pub monthly_saving_leavers: Option<f64>,
    pub monthly_saving_leavers_and_idle_90: Option<f64>,
    /// The end of the current billing period, when its renewal day is given. TestRail Cloud
    /// bills every user active at any time in a period: a deactivation saves from the next one.
    pub billing_period_end: Option<i64>,
}

/// The end of the billing period that renews on `day` (1-28) of each month, after `now`.
pub fn billing_period_end(now: i64, day: u8) -> Option<i64> {
    let t = time::OffsetDateTime::from_unix_timestamp(now).ok()?;
    let day = day.clamp(1, 28);
    let this = t.replace_day(day).ok()?.replace_time(time::Time::MIDNIGHT);
    let end = if this > t {
        this
    } else {
        let (y, m) = if t.month() == time::Month::December {
            (t.year() + 1, time::Month::January)
        } else {
            (t.year(), t.month().next())
        };
        this.replace_date(time::Date::from_calendar_date(y, m, day).ok()?)
    };
    Some(end.unix_timestamp())
}

pub async fn seats<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    seat_price: Option<f64>,
    billing_day: Option<u8>,
) -> EngineResult<SeatReport> {
    let now = engine.now();
    let users = crate::report::users(engine, conn).await?;
    let active: Vec<&crate::report::UserView> = users.iter().filter(|u| u.is_active).collect();
    let from = covered_from(engine, conn).await?;
    let evidence = if from.is_some() {
        views(engine, conn).await?
    } else {
        BTreeMap::new()
    };
    let idle = |days: i64| {
        let since = now - days * 86_400;
        from.filter(|f| *f <= since).map(|_| {
            active
                .iter()
                .filter(|u| evidence.get(&u.id).is_none_or(|e| e.at < since))
                .count() as u64
        })
    };
    let leavers: Vec<u64> = active
        .iter()
        .filter(|u| u.is_leaver())
        .map(|u| u.id)
        .collect();
    let idle_90: Vec<u64> = match from.filter(|f| *f <= now - 90 * 86_400) {
        Some(_) => active
            .iter()
            .filter(|u| evidence.get(&u.id).is_none_or(|e| e.at < now - 90 * 86_400))
            .map(|u| u.id)
            .collect(),
        None => vec![],
    };
    let either = active
        .iter()
        .filter(|u| leavers.contains(&u.id) || idle_90.contains(&u.id))
        .count();
    Ok(SeatReport {
        connection: conn.name.clone(),
        active_seats: active.len() as u64,
        evidence_from: from,
        without_evidence_30_days: idle(30),
        without_evidence_60_days: idle(60),
        without_evidence_90_days: idle(90),
        leavers_active: leavers.len() as u64,
        automation_accounts: active
            .iter()
            .filter(|u| evidence.get(&u.id).is_some_and(|e| e.automation))
            .count() as u64,
        seat_price,
        monthly_saving_leavers: seat_price.map(|p| p * leavers.len() as f64),
        monthly_saving_leavers_and_idle_90: seat_price.map(|p| p * either as f64),
        billing_period_end: billing_day.and_then(|d| billing_period_end(now, d)),
    })
}

/// What idle flow rules need: now, the evidence's coverage and each account's latest evidence.
pub async fn activity<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
) -> EngineResult<crate::flows::Activity> {
    let covered_from = covered_from(engine, conn).await?;
    let latest = if covered_from.is_some() {
        engine
            .store()
            .account_evidence(&conn.id, engine.now(), None)
            .await?
            .into_iter()
            .map(|a| (a.tr_user_id, a.latest.at))
            .collect()
    } else {
        BTreeMap::new()
    };
    Ok(crate::flows::Activity {
        now: engine.now(),
        covered_from,
        latest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_billing_period_ends_on_its_renewal_day() {
        // 2026-11-26 12:00 UTC.
        let now = 1_795_694_400;
        // Renewing on the 1st: 2026-12-01; on the 28th: 2026-11-28; on the 26th: 2026-12-26.
        assert_eq!(billing_period_end(now, 1), Some(1_796_083_200));
        assert_eq!(billing_period_end(now, 28), Some(1_795_824_000));
        assert_eq!(billing_period_end(now, 26), Some(1_798_243_200));
    }
}
