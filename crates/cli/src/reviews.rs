//! `accessrail reviews ...`: access reviews from the command line (an administrator's tool:
//! the OS account running it is the actor the audit log names).

use std::process::ExitCode;

use accessrail_domain::review::{Decision, Every, Scope, Undecided};
use accessrail_engine::provision::Rails;
use accessrail_engine::reviews::{self, Actor, DecideRequest, StartOptions};
use accessrail_engine::time_fmt;
use accessrail_store::Store;
use serde_json::json;

use crate::cli::ReviewsAction;
use crate::commands::App;
use crate::output::{Failure, print_json, print_table, table};
use crate::provisioning::{cli_actor, print_plan};

fn t(x: Option<i64>) -> String {
    x.map(time_fmt::short).unwrap_or_default()
}

/// A due date: a plain date means the end of that day (UTC).
fn parse_due(s: &str) -> Result<i64, Failure> {
    let at = time_fmt::parse_time(s).ok_or_else(|| {
        Failure::Usage(format!(
            "--due {s:?}: give a date (2026-12-31) or an RFC 3339 time"
        ))
    })?;
    Ok(if s.contains('T') { at } else { at + 86_399 })
}

pub async fn run(app: &App, action: ReviewsAction, json: bool) -> Result<ExitCode, Failure> {
    let actor = Actor::Admin { actor: cli_actor() };
    match action {
        ReviewsAction::Start {
            conn,
            fallback_reviewer,
            due,
            undecided,
            scope,
            every,
        } => {
            let c = app.resolve(conn.connection.as_deref()).await?;
            let opts = StartOptions {
                scope: Scope::parse(&scope).map_err(Failure::Usage)?,
                fallbacks: fallback_reviewer,
                due_at: due.as_deref().map(parse_due).transpose()?,
                undecided: Undecided::parse(&undecided).ok_or_else(|| {
                    Failure::Usage(format!("--undecided {undecided:?}: use keep or revoke"))
                })?,
                every: every
                    .as_deref()
                    .map(Every::parse)
                    .transpose()
                    .map_err(Failure::Usage)?,
            };
            let v = reviews::start(app, &c, opts, actor.audit_name()).await?;
            if json {
                print_json(&v);
            } else {
                println!(
                    "Review {} started for {} ({} items, scope {}, snapshot scan {}), due {}{}.",
                    v.id,
                    v.connection,
                    v.items,
                    v.scope,
                    v.snapshot_scan,
                    t(v.due_at),
                    v.every
                        .as_ref()
                        .map(|e| format!(", recurring every {e}"))
                        .unwrap_or_default()
                );
                let d = reviews::show(app, v.id, None, &actor).await?;
                print_reviewers(&d.reviewers);
                println!(
                    "Next: reviewers sign in with `accessrail tokens create NAME --reviewer EMAIL`, or decide here with `accessrail reviews decide {} --account EMAIL --decision keep --as REVIEWER`.",
                    v.id
                );
            }
        }
        ReviewsAction::List { conn } => {
            let c = match conn.connection.as_deref() {
                Some(n) => Some(app.resolve(Some(n)).await?),
                None => None,
            };
            let all = reviews::list(app, c.as_ref(), &actor).await?;
            if json {
                print_json(&all);
            } else if all.is_empty() {
                println!(
                    "No reviews yet: start one with `accessrail reviews start --fallback-reviewer EMAIL`."
                );
            } else {
                let mut tb = table(&[
                    "id",
                    "connection",
                    "scope",
                    "status",
                    "decided",
                    "due",
                    "every",
                    "started",
                ]);
                for r in &all {
                    tb.add_row(vec![
                        r.id.to_string(),
                        r.connection.clone(),
                        r.scope.clone(),
                        if r.overdue {
                            "open (overdue)".into()
                        } else {
                            r.status.clone()
                        },
                        format!("{}/{}", r.decided, r.items),
                        t(r.due_at),
                        r.every.clone().unwrap_or_default(),
                        t(Some(r.created_at)),
                    ]);
                }
                print_table(tb);
            }
        }
        ReviewsAction::Show { id, reviewer } => {
            let d = reviews::show(app, id, reviewer.as_deref(), &actor).await?;
            if json {
                print_json(&d);
            } else {
                let r = &d.review;
                println!(
                    "Review {} of {}: scope {}, snapshot scan {}, {}{}; {}/{} decided; due {}; undecided items at close: {}.",
                    r.id,
                    r.connection,
                    r.scope,
                    r.snapshot_scan,
                    r.status,
                    if r.overdue { " (overdue)" } else { "" },
                    r.decided,
                    r.items,
                    t(r.due_at),
                    r.undecided
                );
                print_reviewers(&d.reviewers);
                let mut tb = table(&[
                    "#", "account", "had", "reviewer", "decision", "comment", "outcome",
                ]);
                for i in &d.items {
                    tb.add_row(vec![
                        i.item.to_string(),
                        i.email.clone(),
                        i.entitlements.summary(),
                        i.reviewer.clone(),
                        match (&i.decision, &i.action) {
                            (Some(d), Some(a)) => format!("{d} ({a})"),
                            (Some(d), None) => d.clone(),
                            _ => "undecided".into(),
                        },
                        i.comment.clone().unwrap_or_default(),
                        i.outcome.clone().unwrap_or_default(),
                    ]);
                }
                print_table(tb);
            }
        }
        ReviewsAction::Decide {
            id,
            account,
            decision,
            action,
            comment,
            as_reviewer,
        } => {
            let d = Decision::parse(&decision).ok_or_else(|| {
                Failure::Usage(format!(
                    "--decision {decision:?}: use keep, revoke, out-of-scope or already-removed"
                ))
            })?;
            let done = reviews::decide(
                app,
                id,
                vec![DecideRequest {
                    account,
                    decision: d,
                    action,
                    comment,
                    as_reviewer: Some(as_reviewer),
                }],
                &actor,
            )
            .await?;
            if json {
                print_json(&done);
            } else {
                for i in &done {
                    println!(
                        "Review {id} item {} ({}): {}{}.",
                        i.item,
                        i.email,
                        i.decision.as_deref().unwrap_or("undecided"),
                        i.action
                            .as_ref()
                            .map(|a| format!(" ({a})"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        ReviewsAction::Submit { id, reviewer } => {
            let v = reviews::submit(app, id, Some(&reviewer), &actor).await?;
            if json {
                print_json(&v);
            } else {
                println!(
                    "{}'s {} decisions in review {id} submitted for approval (sha256 {}).",
                    v.reviewer,
                    v.items,
                    v.digest.as_deref().unwrap_or("")
                );
            }
        }
        ReviewsAction::Approve {
            id,
            reviewer,
            approver,
            comment,
        } => {
            let v = reviews::judge(
                app,
                id,
                &reviewer,
                true,
                approver.as_deref(),
                comment.as_deref(),
                &actor,
            )
            .await?;
            if json {
                print_json(&v);
            } else {
                println!("{}'s submission in review {id} approved.", v.reviewer);
            }
        }
        ReviewsAction::SendBack {
            id,
            reviewer,
            comment,
            approver,
        } => {
            let v = reviews::judge(
                app,
                id,
                &reviewer,
                false,
                approver.as_deref(),
                Some(&comment),
                &actor,
            )
            .await?;
            if json {
                print_json(&v);
            } else {
                println!(
                    "{}'s submission in review {id} sent back: they can change their decisions and submit again.",
                    v.reviewer
                );
            }
        }
        ReviewsAction::Close {
            id,
            dry_run,
            yes,
            acknowledge,
            max_deactivations,
        } => {
            let rails = Rails::new(max_deactivations, false);
            let show = |planned: &reviews::ClosePlan, dry: bool| {
                println!(
                    "Closing review {id}: {} kept, {} to revoke, {} refused by a rail.",
                    planned.keep, planned.revoke, planned.refused
                );
                for l in planned.lines.iter().filter(|l| l.refused.is_some()) {
                    println!(
                        "  refused {} ({}): {}",
                        l.email,
                        l.action.as_deref().unwrap_or(""),
                        l.refused.as_deref().unwrap_or("")
                    );
                }
                print_plan(&planned.plan, dry, false);
                for c in &planned.cautions {
                    println!("  needs --acknowledge: {c}");
                }
            };
            if dry_run || !yes {
                let (planned, _) = reviews::plan_close(app, id, &rails, &actor).await?;
                if json {
                    print_json(&json!({ "dry_run": true, "close": planned }));
                } else {
                    show(&planned, true);
                    if !dry_run {
                        println!(
                            "Nothing was changed. Read the plan, then run `accessrail reviews close {id} --yes` to apply it and close the review."
                        );
                    }
                }
                return Ok(if dry_run {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                });
            }
            let opts = reviews::CloseOptions {
                acknowledge,
                fingerprint: None,
            };
            let report = reviews::close(app, id, &rails, &opts, &actor).await?;
            if json {
                print_json(&report);
            } else {
                show(&report.planned, false);
                println!(
                    "Review {id} {}: {} kept, {} revoked, {} refused, {} failed (audit #{}).",
                    if report.closed {
                        "closed"
                    } else {
                        "NOT closed (a step failed; close again to retry)"
                    },
                    report.kept,
                    report.revoked,
                    report.refused,
                    report.failed,
                    report.audit_id
                );
            }
            if !report.closed {
                return Ok(ExitCode::from(3));
            }
        }
        ReviewsAction::Export { id, format, output } => {
            let fmt = format.trim().to_ascii_lowercase();
            if !matches!(fmt.as_str(), "csv" | "json" | "html") {
                return Err(Failure::Usage(format!(
                    "--format {format:?}: use csv, json or html"
                )));
            }
            let e = reviews::evidence(app, id, &fmt, &actor).await?;
            let bytes = match fmt.as_str() {
                "csv" => reviews::to_csv(&e)?,
                "json" => serde_json::to_vec_pretty(&e)
                    .map_err(|x| Failure::Usage(format!("encoding JSON: {x}")))?,
                _ => reviews::to_html(&e)?.into_bytes(),
            };
            // Written whole, then renamed: a reader never sees half a report.
            let tmp = output.with_extension("partial");
            std::fs::write(&tmp, &bytes)
                .and_then(|()| std::fs::rename(&tmp, &output))
                .map_err(|x| Failure::Usage(format!("cannot write {}: {x}", output.display())))?;
            if json {
                print_json(&json!({
                    "review": id, "format": fmt, "output": output, "items": e.items.len(),
                    "audit_head_id": e.audit_head_id, "audit_head_hash": e.audit_head_hash,
                }));
            } else {
                println!(
                    "Review {id} exported to {} ({} items). Audit chain head: entry {}, {} (check with `accessrail audit verify`).",
                    output.display(),
                    e.items.len(),
                    e.audit_head_id,
                    e.audit_head_hash
                );
            }
        }
        ReviewsAction::Owner {
            conn,
            group,
            project,
            owner,
            clear,
        } => {
            if owner.is_none() && !clear {
                return Err(Failure::Usage("give --owner EMAIL or --clear".into()));
            }
            let c = app.resolve(conn.connection.as_deref()).await?;
            let (kind, tid, name) = reviews::set_owner(
                app,
                &c,
                group.as_deref(),
                project.as_deref(),
                owner.as_deref(),
                actor.audit_name(),
            )
            .await?;
            if json {
                print_json(&json!({ "kind": kind, "id": tid, "name": name, "owner": owner }));
            } else {
                match &owner {
                    Some(o) => println!("{o} now reviews access to {kind} {name}."),
                    None => println!("{kind} {name} has no owner now."),
                }
            }
        }
        ReviewsAction::Owners { conn } => {
            let c = app.resolve(conn.connection.as_deref()).await?;
            let all = app.store().owners(&c.id).await?;
            if json {
                let v: Vec<_> = all
                    .iter()
                    .map(|o| json!({ "kind": o.kind, "id": o.target_id, "name": o.target_name, "owner": o.owner_email }))
                    .collect();
                print_json(&v);
            } else if all.is_empty() {
                println!("No owners yet: `accessrail reviews owner --group G --owner EMAIL`.");
            } else {
                let mut tb = table(&["kind", "name", "id", "owner"]);
                for o in &all {
                    tb.add_row(vec![
                        o.kind.clone(),
                        o.target_name.clone(),
                        o.target_id.to_string(),
                        o.owner_email.clone(),
                    ]);
                }
                print_table(tb);
            }
        }
        ReviewsAction::StartDue => {
            let started = reviews::start_due(app).await?;
            if json {
                print_json(&json!({ "started": started }));
            } else if started.is_empty() {
                println!("No recurring review is due.");
            } else {
                for id in started {
                    println!("Review {id} started (the next round of a recurring review).");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_reviewers(list: &[reviews::ReviewerView]) {
    let mut tb = table(&["reviewer", "items", "decided", "submission", "approved by"]);
    for v in list {
        tb.add_row(vec![
            v.reviewer.clone(),
            v.items.to_string(),
            v.decided.to_string(),
            v.submission.clone(),
            v.judged_by.clone().unwrap_or_default(),
        ]);
    }
    print_table(tb);
}
