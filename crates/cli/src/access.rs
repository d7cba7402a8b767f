//! `accessrail projects` and `accessrail access`: project access with its sources.

use std::process::ExitCode;

use accessrail_domain::project::Knowledge;
use accessrail_engine::access::{AccessFacts, AccessRow, RULE_NOTE, SourceView};
use serde_json::json;

use crate::cli::{AccessArgs, ProjectsArgs};
use crate::commands::{App, check_at_scan};
use crate::output::{Failure, print_json, table};

fn source(s: &Option<SourceView>) -> String {
    match s {
        None => "unknown".into(),
        Some(s) if s.via_global_role && s.kind != "administrator" => {
            format!("{} (global role)", s.label)
        }
        Some(s) => s.label.clone(),
    }
}

fn role(r: &AccessRow) -> String {
    match (r.can_access, &r.role) {
        (None, _) => "unknown".into(),
        (Some(false), Some(role)) => format!("{role} (no access)"),
        (Some(false), None) => "no access".into(),
        (Some(true), role) => role.clone().unwrap_or_else(|| "?".into()),
    }
}

fn never_scanned(facts: &AccessFacts) -> bool {
    if facts.projects.is_empty() {
        println!("No projects known yet: run `accessrail scan` (projects are read by every scan).");
        return true;
    }
    false
}

pub async fn projects(app: &App, a: ProjectsArgs, json: bool) -> Result<ExitCode, Failure> {
    let conn = app.resolve(a.conn.connection.as_deref()).await?;
    check_at_scan(app, &conn, a.at_scan).await?;
    let facts = AccessFacts::load(app, &conn, a.at_scan).await?;
    let list = facts.projects();
    if json {
        print_json(&list);
        return Ok(ExitCode::SUCCESS);
    }
    if never_scanned(&facts) {
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&[
        "id",
        "project",
        "status",
        "default role",
        "group roles",
        "user roles",
        "active with access",
        "access",
    ]);
    for p in &list {
        t.add_row(vec![
            p.id.to_string(),
            p.name.clone(),
            if p.is_completed {
                "completed"
            } else {
                "active"
            }
            .into(),
            p.default_role.clone().unwrap_or_else(|| "-".into()),
            p.group_roles.to_string(),
            p.user_roles
                .map_or("not reported".into(), |n| n.to_string()),
            p.active_with_access
                .map_or("unknown".into(), |n| n.to_string()),
            p.access.label().into(),
        ]);
    }
    crate::output::print_table(t);
    println!("{} project(s).", list.len());
    if list.iter().any(|p| p.access == Knowledge::UserRolesUnknown) {
        println!(
            "This TestRail (Professional) does not report users' own project roles: where one is set, it wins over what is counted here."
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn access(app: &App, a: AccessArgs, json: bool) -> Result<ExitCode, Failure> {
    let conn = app.resolve(a.conn.connection.as_deref()).await?;
    check_at_scan(app, &conn, a.at_scan).await?;
    let facts = AccessFacts::load(app, &conn, a.at_scan).await?;
    if let Some(email) = &a.email {
        let account = facts.account_by_email(email)?;
        let rows = facts.for_account(account);
        if json {
            print_json(&json!({
                "account": { "id": account.id, "email": account.email, "name": account.name,
                             "is_active": account.is_active, "is_admin": account.is_admin,
                             "role": account.role },
                "rule": RULE_NOTE,
                "projects": rows,
            }));
            return Ok(ExitCode::SUCCESS);
        }
        if never_scanned(&facts) {
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "{} ({}), global role {}{}{}",
            account.email.as_deref().unwrap_or("?"),
            account.name.as_deref().unwrap_or("no name"),
            account.role.as_deref().unwrap_or("?"),
            if account.is_admin == Some(true) {
                ", administrator"
            } else {
                ""
            },
            if account.is_active {
                ""
            } else {
                ", INACTIVE (cannot sign in)"
            },
        );
        let mut t = table(&["project", "status", "role", "source", "also offered"]);
        for r in &rows {
            t.add_row(vec![
                r.project.clone(),
                if r.project_completed {
                    "completed"
                } else {
                    "active"
                }
                .into(),
                role(r),
                source(&r.source),
                r.also_text(),
            ]);
        }
        crate::output::print_table(t);
        let reach = rows.iter().filter(|r| r.can_access == Some(true)).count();
        println!("Reaches {reach} of {} project(s).", rows.len());
        footnotes(&rows);
        return Ok(ExitCode::SUCCESS);
    }
    let wanted = a.project.as_deref().unwrap_or_default();
    let project = facts.project(wanted)?;
    let rows = facts.for_project(project, a.all);
    if json {
        print_json(&json!({
            "project": { "id": project.id, "name": project.display_name(),
                         "is_completed": project.is_completed },
            "rule": RULE_NOTE,
            "accounts": rows,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} (project {}){}",
        project.display_name(),
        project.id,
        if project.is_completed {
            ", completed"
        } else {
            ""
        }
    );
    let mut t = table(&["email", "name", "active", "role", "source", "also offered"]);
    for r in &rows {
        t.add_row(vec![
            r.email.clone().unwrap_or_default(),
            r.name.clone().unwrap_or_default(),
            if r.is_active { "yes" } else { "no" }.into(),
            role(r),
            source(&r.source),
            r.also_text(),
        ]);
    }
    crate::output::print_table(t);
    println!(
        "{} account(s){}.",
        rows.len(),
        if a.all {
            ""
        } else {
            " can reach it (active accounts; --all lists everyone)"
        }
    );
    footnotes(&rows);
    Ok(ExitCode::SUCCESS)
}

fn footnotes(rows: &[AccessRow]) {
    if rows.iter().any(|r| r.knowledge == Knowledge::Unknown) {
        println!(
            "Unknown: this TestRail reports no project access (before 7.3); nothing is guessed."
        );
    }
    if rows
        .iter()
        .any(|r| r.knowledge == Knowledge::UserRolesUnknown)
    {
        println!(
            "This TestRail (Professional) does not report users' own project roles: where one is set, it wins over what is shown."
        );
    }
    println!("Note: {RULE_NOTE}.");
}
