//! Provisioning commands: plans, apply, protected accounts, the audit log and flows.

use std::process::ExitCode;

use accessrail_engine::flows;
use accessrail_engine::provision::{self, Action, ApplyReport, Origin, Plan, Rails, Request};
use accessrail_engine::report;
use accessrail_engine::time_fmt;
use accessrail_store::{Connection, ProtectedAccount, Store};
use serde_json::json;

use crate::cli::*;
use crate::commands::App;
use crate::output::{Failure, fail, print_json, table};

/// `cli:<user>@<host>`: the OS account running the command (by its uid, so an unset or
/// altered `USER` does not hide who it was), on this host.
pub fn cli_actor() -> String {
    let uid = nix::unistd::Uid::current();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid{uid}"));
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("cli:{user}@{host}")
}

pub fn print_plan(plan: &Plan, dry_run: bool, json: bool) {
    if json {
        return;
    }
    println!(
        "Plan for {}{}:",
        plan.connection,
        if dry_run {
            " (dry run: nothing will be changed)"
        } else {
            ""
        }
    );
    if plan.steps.is_empty() {
        println!("  nothing to do");
    }
    let mut t = table(&[
        "#",
        "action",
        "account",
        "TestRail calls",
        "before",
        "after",
        "note",
    ]);
    for (i, s) in plan.steps.iter().enumerate() {
        t.add_row(vec![
            (i + 1).to_string(),
            if s.is_noop() {
                format!("{} (no-op)", s.action)
            } else {
                s.action.to_string()
            },
            s.target.clone(),
            s.calls.join(", "),
            s.before.clone().unwrap_or_default(),
            s.after.clone().unwrap_or_default(),
            s.note.clone().unwrap_or_default(),
        ]);
    }
    if !plan.steps.is_empty() {
        crate::output::print_table(t);
    }
    for s in &plan.skipped {
        println!(
            "  skipped {} {}: {} ({})",
            s.action, s.target, s.reason, s.actor
        );
    }
}

fn print_report(r: &ApplyReport, json: bool) {
    if json {
        return;
    }
    let mut t = table(&[
        "#",
        "action",
        "account",
        "outcome",
        "TestRail calls made",
        "audit",
        "message",
    ]);
    for s in &r.results {
        t.add_row(vec![
            s.step.to_string(),
            s.action.to_string(),
            s.target.clone(),
            s.outcome.as_str().to_string(),
            s.calls_made.join(", "),
            format!("#{}", s.audit_id),
            s.message.clone().unwrap_or_default(),
        ]);
    }
    if !r.results.is_empty() {
        crate::output::print_table(t);
    }
    println!(
        "{} done, {} no-op, {} failed, {} not run.",
        r.done, r.noop, r.failed, r.not_run
    );
}

fn exit_for(r: &ApplyReport) -> ExitCode {
    if r.partial() {
        ExitCode::from(3)
    } else if r.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Plans, prints, and (unless a dry run) applies. `handovers`: leavers whose open work a flow
/// rule hands over before their deactivation.
pub async fn run_plan(
    app: &App,
    conn: &Connection,
    requests: Vec<Request>,
    handovers: &[flows::Handover],
    opts: &ProvOpts,
    json: bool,
) -> Result<ExitCode, Failure> {
    use accessrail_engine::offboard;
    let rails = Rails::new(opts.max_deactivations, opts.force);
    if !opts.dry_run {
        // Refuse before any TestRail read is made for the plan.
        provision::ensure_enabled(conn)?;
    }
    let mut plan = provision::plan(app, conn, requests, &rails).await?;
    let handover_plans = offboard::plan_handovers(app, conn, handovers, &plan).await?;
    for h in &handover_plans {
        if let Some(why) = &h.hold {
            offboard::hold_back(&mut plan, &h.email, why);
        }
    }
    if !json {
        for h in &handover_plans {
            let Some(r) = &h.reassignment else { continue };
            match &h.hold {
                Some(why) => println!("{} (rule {}): {why}:", h.email, h.rule),
                None => println!(
                    "Hand-over before deactivating {} (rule {}{}):",
                    h.email,
                    h.rule,
                    r.reassign_to
                        .as_ref()
                        .map(|t| format!(", to {}", t.1))
                        .unwrap_or_default()
                ),
            }
            crate::commands::print_work(&r.impact, &r.steps, true);
        }
    }
    print_plan(&plan, opts.dry_run, json);
    let cautions: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| !s.is_noop())
        .filter_map(|s| s.caution.map(|c| format!("{}: {}", s.target, c.message())))
        .collect();
    if !opts.dry_run && !opts.force && !cautions.is_empty() {
        return Err(Failure::Usage(format!(
            "not applied, nothing was changed:\n  {}\nRead the plan, then pass --force to confirm.",
            cautions.join("\n  ")
        )));
    }
    if opts.dry_run {
        if json {
            print_json(&json!({ "dry_run": true, "plan": plan, "handovers": handover_plans }));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let handed = offboard::apply_handovers(app, conn, &handover_plans, &mut plan).await?;
    if !json {
        for h in &handed {
            for (target, outcome, audit) in &h.steps {
                println!("  {outcome}: {target} (audit #{audit})");
            }
        }
    }
    let report = provision::apply(app, conn, &plan).await?;
    if json {
        print_json(
            &json!({ "dry_run": false, "plan": plan, "handovers": handed, "result": report }),
        );
    }
    print_report(&report, json);
    // A hand-over step that failed leaves a leaver active: a partial run. (A leaver held back
    // by the plan, for want of someone to take the work, is a skip like the rails'.)
    if handed
        .iter()
        .any(|h| h.steps.iter().any(|(_, outcome, _)| outcome == "failed"))
    {
        return Ok(ExitCode::from(3));
    }
    Ok(exit_for(&report))
}

pub async fn provision_cmd(
    app: &App,
    action: ProvisionAction,
    json: bool,
) -> Result<ExitCode, Failure> {
    let (act, opts) = match action {
        ProvisionAction::CreateUser {
            name,
            email,
            role,
            groups,
            reconcile,
            opts,
        } => (
            Action::CreateUser {
                name,
                email,
                role,
                groups,
                reconcile,
            },
            opts,
        ),
        ProvisionAction::Deactivate { email, opts } => (Action::Deactivate { email }, opts),
        ProvisionAction::Reactivate { email, opts } => (Action::Reactivate { email }, opts),
        ProvisionAction::SetRole { email, role, opts } => (Action::SetRole { email, role }, opts),
        ProvisionAction::AddToGroup { email, group, opts } => {
            (Action::AddToGroup { email, group }, opts)
        }
        ProvisionAction::RemoveFromGroup { email, group, opts } => {
            (Action::RemoveFromGroup { email, group }, opts)
        }
        ProvisionAction::SetProjectRole {
            email,
            project,
            role,
            clear,
            opts,
        } => (
            Action::SetProjectRole {
                email,
                project,
                role: if clear { None } else { role },
            },
            opts,
        ),
        ProvisionAction::SetGroupProjectRole {
            group,
            project,
            role,
            clear,
            opts,
        } => (
            Action::SetGroupProjectRole {
                group,
                project,
                role: if clear { None } else { role },
            },
            opts,
        ),
    };
    let conn = app.resolve(opts.conn.connection.as_deref()).await?;
    let req = Request {
        action: act,
        origin: Origin::Direct { actor: cli_actor() },
    };
    run_plan(app, &conn, vec![req], &[], &opts, json).await
}

pub async fn provisioning_switch(
    app: &App,
    action: OnOff,
    json: bool,
) -> Result<ExitCode, Failure> {
    let (sel, on) = match action {
        OnOff::Enable(s) => (s, true),
        OnOff::Disable(s) => (s, false),
    };
    let conn = app.resolve(sel.connection.as_deref()).await?;
    app.store().set_provisioning(&conn.id, on).await?;
    if json {
        print_json(&json!({ "connection": conn.name, "provisioning_enabled": on }));
    } else if on {
        println!(
            "Provisioning is on for {}: Accessrail may now change TestRail (every change is planned, capped and audited).",
            conn.name
        );
    } else {
        println!(
            "Provisioning is off for {}: the connection is read-only.",
            conn.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn protect_cmd(
    app: &App,
    action: ProtectAction,
    json: bool,
) -> Result<ExitCode, Failure> {
    match action {
        ProtectAction::Add {
            email,
            owner,
            reason,
            expires,
            conn,
        } => {
            let c = app.resolve(conn.connection.as_deref()).await?;
            let key = accessrail_domain::EmailKey::parse(&email)
                .ok_or_else(|| Failure::Usage(format!("{email:?} is not an email address")))?;
            let expires_at = match expires {
                Some(e) => Some(time_fmt::parse_time(&e).ok_or_else(|| {
                    Failure::Usage(format!(
                        "--expires {e:?}: use a date (YYYY-MM-DD) or an RFC 3339 time"
                    ))
                })?),
                None => None,
            };
            app.store()
                .protect(
                    &c.id,
                    ProtectedAccount {
                        email: key.to_string(),
                        owner: owner.clone(),
                        reason: reason.clone(),
                        expires_at,
                        created_at: app.now(),
                    },
                )
                .await?;
            if json {
                print_json(
                    &json!({ "protected": key.to_string(), "owner": owner, "reason": reason, "expires_at": expires_at.map(time_fmt::rfc3339) }),
                );
            } else {
                println!("{key} is protected: no flow will touch it.");
            }
        }
        ProtectAction::Remove { email, conn } => {
            let c = app.resolve(conn.connection.as_deref()).await?;
            if !app.store().unprotect(&c.id, &email).await? {
                return Err(Failure::Usage(format!("{email} is not protected")));
            }
            if json {
                print_json(&json!({ "unprotected": email }));
            } else {
                println!("{email} is no longer protected.");
            }
        }
        ProtectAction::List(sel) => {
            let c = app.resolve(sel.connection.as_deref()).await?;
            let all = app.store().protected(&c.id).await?;
            if json {
                let v: Vec<_> = all
                    .iter()
                    .map(|p| json!({ "email": p.email, "owner": p.owner, "reason": p.reason, "expires_at": p.expires_at.map(time_fmt::rfc3339), "expired": p.expires_at.is_some_and(|t| t <= app.now()) }))
                    .collect();
                print_json(&v);
            } else {
                let mut t = table(&["email", "owner", "reason", "expires"]);
                for p in &all {
                    t.add_row(vec![
                        p.email.clone(),
                        p.owner.clone(),
                        p.reason.clone(),
                        p.expires_at.map_or("never".into(), |e| {
                            if e <= app.now() {
                                format!("{} (expired)", time_fmt::short(e))
                            } else {
                                time_fmt::short(e)
                            }
                        }),
                    ]);
                }
                crate::output::print_table(t);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit_cmd(
    app: &App,
    action: Option<AuditAction>,
    json: bool,
) -> Result<ExitCode, Failure> {
    let log = app.store().audit_log().await?;
    if let Some(AuditAction::Verify) = action {
        return match accessrail_domain::audit::verify_chain(
            log.iter()
                .map(|e| (e.id, &e.record, e.prev_hash.as_str(), e.hash.as_str())),
        ) {
            Ok(n) => {
                if json {
                    print_json(&json!({ "ok": true, "entries": n }));
                } else {
                    println!(
                        "The audit log is intact: {n} entries, every hash chained to the one before."
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Err((id, why)) => Err(fail(
                "audit_broken",
                format!("the audit log is broken at entry {id}: {why}"),
            )),
        };
    }
    if json {
        let v: Vec<_> = log
            .iter()
            .map(|e| {
                let r = &e.record;
                json!({
                    "id": e.id, "at": time_fmt::rfc3339(r.at), "actor": r.actor, "connection": r.connection,
                    "action": r.action, "target": r.target, "before": r.before, "after": r.after, "calls": r.calls,
                    "outcome": r.outcome.as_str(), "message": r.message, "hash": e.hash,
                })
            })
            .collect();
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&[
        "#",
        "when",
        "who",
        "connection",
        "action",
        "account",
        "before",
        "after",
        "outcome",
        "TestRail calls",
        "message",
    ]);
    for e in &log {
        let r = &e.record;
        t.add_row(vec![
            e.id.to_string(),
            time_fmt::short(r.at),
            r.actor.clone(),
            r.connection.clone(),
            r.action.clone(),
            r.target.clone(),
            r.before.clone().unwrap_or_default(),
            r.after.clone().unwrap_or_default(),
            r.outcome.as_str().to_string(),
            r.calls.join(", "),
            r.message.clone().unwrap_or_default(),
        ]);
    }
    crate::output::print_table(t);
    Ok(ExitCode::SUCCESS)
}

/// The flow requests for a connection, or None when it has no flow file.
pub async fn flow_requests(
    app: &App,
    conn: &Connection,
) -> Result<Option<(Vec<Request>, Vec<flows::Handover>)>, Failure> {
    let Some((file, _)) = flows::load_for(app, conn).await? else {
        return Ok(None);
    };
    let identities = app.store().identities().await?;
    let users = report::users(app, conn).await?;
    let activity = accessrail_engine::evidence::activity(app, conn).await?;
    Ok(Some((
        flows::evaluate(&file, &identities, &users, &activity),
        flows::handovers(&file, &identities, &users),
    )))
}

pub async fn flows_cmd(app: &App, action: FlowsAction, json: bool) -> Result<ExitCode, Failure> {
    match action {
        FlowsAction::Init(sel) => {
            let conn = app.resolve(sel.connection.as_deref()).await?;
            match flows::load_for(app, &conn).await? {
                Some((_, flows::FlowSource::Store)) => {
                    return Err(Failure::Usage(format!(
                        "{} already has flows; `accessrail flows get` prints them, `accessrail flows set FILE` replaces them",
                        conn.name
                    )));
                }
                Some((_, flows::FlowSource::File(path))) => {
                    return Err(Failure::Usage(format!(
                        "{} has flows in {}; store them with `accessrail flows set {}`",
                        conn.name,
                        path.display(),
                        path.display()
                    )));
                }
                None => {}
            }
            flows::store_for(app, &conn, flows::STARTER).await?;
            if json {
                print_json(&json!({ "stored": conn.name }));
            } else {
                println!(
                    "Stored starter flows for {} (one active rule: deactivate leavers; a joiner example is commented out). Edit: `accessrail flows get > flows.toml`, then `accessrail flows set flows.toml`.",
                    conn.name
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        FlowsAction::Get(sel) => {
            let conn = app.resolve(sel.connection.as_deref()).await?;
            let text = match app.store().flows(&conn.id).await? {
                Some(t) => t,
                None => {
                    let path = flows::path(app.data_dir(), &conn.name);
                    std::fs::read_to_string(&path).map_err(|_| {
                        Failure::Usage(format!(
                            "no flows for {} (run `accessrail flows init`)",
                            conn.name
                        ))
                    })?
                }
            };
            if json {
                print_json(&json!({ "connection": conn.name, "text": text }));
            } else {
                print!("{text}");
            }
            Ok(ExitCode::SUCCESS)
        }
        FlowsAction::Set { file, sel } => {
            let conn = app.resolve(sel.connection.as_deref()).await?;
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
            let rules = flows::store_for(app, &conn, &text)
                .await
                .map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
            if json {
                print_json(&json!({ "stored": conn.name, "rules": rules.rules.len() }));
            } else {
                println!(
                    "Stored {} rule(s) for {}; every process on this database applies them.",
                    rules.rules.len(),
                    conn.name
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        FlowsAction::Show(sel) => {
            let conn = app.resolve(sel.connection.as_deref()).await?;
            match flows::load_for(app, &conn).await? {
                None => {
                    if json {
                        print_json(&json!({ "rules": [] }));
                    } else {
                        println!("No flows for {} (run `accessrail flows init`).", conn.name);
                    }
                }
                Some((f, source)) => {
                    if json {
                        print_json(&f);
                    } else {
                        println!(
                            "Flows for {} ({}):",
                            conn.name,
                            match source {
                                flows::FlowSource::Store => "stored".to_string(),
                                flows::FlowSource::File(p) => format!(
                                    "from {}; `accessrail flows set` it to share it with every process",
                                    p.display()
                                ),
                            }
                        );
                        for r in &f.rules {
                            let m: Vec<String> = r
                                .matches
                                .iter()
                                .map(|(k, v)| format!("{k} = {v}"))
                                .collect();
                            println!(
                                "  {}: when the identity is {:?}{} -> {:?}{}{}{}",
                                r.name,
                                r.when,
                                if m.is_empty() {
                                    String::new()
                                } else {
                                    format!(" and {}", m.join(", "))
                                },
                                r.action,
                                r.role
                                    .as_ref()
                                    .map(|x| format!(", role {x}"))
                                    .unwrap_or_default(),
                                if r.groups.is_empty() {
                                    String::new()
                                } else {
                                    format!(", groups {}", r.groups.join(", "))
                                },
                                if r.allow_admins || r.allow_own_account {
                                    " (may touch administrators / own account)"
                                } else {
                                    ""
                                }
                            );
                        }
                        println!(
                            "Provisioning is {} for this connection.",
                            if conn.provisioning_enabled {
                                "on"
                            } else {
                                "off (plans are printed, not applied)"
                            }
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        FlowsAction::Run(opts) => {
            let conn = app.resolve(opts.conn.connection.as_deref()).await?;
            let Some((requests, handovers)) = flow_requests(app, &conn).await? else {
                return Err(Failure::Usage(format!(
                    "no flows for {} (run `accessrail flows init`)",
                    conn.name
                )));
            };
            run_plan(app, &conn, requests, &handovers, &opts, json).await
        }
    }
}
