//! Joiner / leaver rules, one TOML file per connection (`<data-dir>/flows/<connection>.toml`),
//! evaluated into provisioning requests that go through the same plan, rails and audit log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use accessrail_domain::{EmailKey, Identity, IdentityStatus};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, EngineResult};
use crate::provision::{Action, Origin, Request};
use crate::report::UserView;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// The identity is a leaver.
    Leaver,
    /// The identity is active (and not gone).
    Active,
    /// An active account with no recorded activity (results, runs, plans, cases) in `days`
    /// days; only once the activity evidence reaches that far back.
    Idle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowAction {
    /// Deactivate the identity's active TestRail accounts.
    Deactivate,
    /// Create an account for an identity that has none.
    CreateUser,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub when: When,
    /// Attributes the identity must have (e.g. `department = "QA"`), compared ignoring case.
    #[serde(default, rename = "match")]
    pub matches: BTreeMap<String, String>,
    pub action: FlowAction,
    /// For create_user: the role (name or id).
    #[serde(default)]
    pub role: Option<String>,
    /// For create_user: groups to join (names or ids).
    #[serde(default)]
    pub groups: Vec<String>,
    /// For create_user: project roles to give the new account, e.g.
    /// `projects = [{ project = "Mobile", role = "Tester" }]` (TestRail 7.3+, read back only
    /// where TestRail reports users' project roles: Enterprise).
    #[serde(default)]
    pub projects: Vec<ProjectRoleRule>,
    /// For when = "idle": days without recorded activity.
    #[serde(default)]
    pub days: Option<u32>,
    /// For when = "leaver": hand the leaver's open work over before deactivating them (their
    /// open runs, runs inside plans and untested or retest tests), to this email or to
    /// `"manager"` (the identity's `manager_email`). A leaver whose work cannot be handed over
    /// is not deactivated by the run (the plan says why).
    #[serde(default)]
    pub reassign_to: Option<String>,
    /// This rule may deactivate TestRail administrators.
    #[serde(default)]
    pub allow_admins: bool,
    /// This rule may deactivate the connection's own account.
    #[serde(default)]
    pub allow_own_account: bool,
}

/// A project role a joiner rule gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectRoleRule {
    /// Project name or id.
    pub project: String,
    /// Role name or id, or `global` for the account's global role.
    pub role: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFile {
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

pub fn path(data_dir: &Path, connection: &str) -> PathBuf {
    data_dir.join("flows").join(format!("{connection}.toml"))
}

pub const STARTER: &str = r#"# Accessrail flows for this TestRail connection.
#
# Rules are evaluated against your imported identities (accessrail identities import) and the
# last scan. `accessrail flows run --dry-run` shows the plan; `accessrail flows run` applies it
# through the same rails (deactivation cap, protected accounts) and audit log as every other
# change. After an identity import, flows run by themselves when provisioning is enabled for
# the connection; otherwise the plan is printed.
#
# A flow never deactivates a TestRail administrator or the connection's own account unless the
# rule says so (allow_admins = true, allow_own_account = true).

[[rule]]
name = "deactivate-leavers"
when = "leaver"            # the identity's status is leaver
action = "deactivate"      # deactivate its active TestRail accounts (frees the seats)
# Before deactivating, hand the leaver's open runs and untested or retest tests to their
# manager (the identity's manager_email) or to a named email; a leaver whose work cannot be
# handed over stays active and the plan says why:
#reassign_to = "manager"

# A joiner rule: active people in department QA get a TestRail account as Tester, in group QA,
# with the role Tester in project Mobile (project roles: TestRail Enterprise, 7.3+).
# [[rule]]
# name = "qa-joiners"
# when = "active"
# match = { department = "QA" }
# action = "create_user"
# role = "Tester"
# groups = ["QA"]
# projects = [{ project = "Mobile", role = "Tester" }]
"#;

/// Where a connection's rules were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowSource {
    /// The store: what every process (every replica) applies.
    Store,
    /// `<data-dir>/flows/<connection>.toml` of an installation from before flows were stored
    /// (`accessrail flows set FILE` moves it into the store).
    File(PathBuf),
}

/// A connection's rules: those in the store, or else its flow file in this data directory.
pub async fn load_for<S: accessrail_store::Store>(
    engine: &crate::Engine<S>,
    conn: &accessrail_store::Connection,
) -> EngineResult<Option<(FlowFile, FlowSource)>> {
    if let Some(text) = engine.store().flows(&conn.id).await? {
        return parse(&text)
            .map(|f| Some((f, FlowSource::Store)))
            .map_err(|e| {
                EngineError::InvalidInput(format!("the stored flows of {}: {e}", conn.name))
            });
    }
    Ok(load(engine.data_dir(), &conn.name)?
        .map(|f| (f, FlowSource::File(path(engine.data_dir(), &conn.name)))))
}

/// Checks and stores a connection's rules (the TOML text), replacing what it had.
pub async fn store_for<S: accessrail_store::Store>(
    engine: &crate::Engine<S>,
    conn: &accessrail_store::Connection,
    text: &str,
) -> EngineResult<FlowFile> {
    let file = parse(text).map_err(EngineError::InvalidInput)?;
    engine
        .store()
        .set_flows(&conn.id, Some(text), engine.now())
        .await?;
    Ok(file)
}

/// Reads the flow file; a missing file means no rules.
pub fn load(data_dir: &Path, connection: &str) -> EngineResult<Option<FlowFile>> {
    let p = path(data_dir, connection);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(EngineError::InvalidInput(format!(
                "cannot read {}: {e}",
                p.display()
            )));
        }
    };
    parse(&text)
        .map(Some)
        .map_err(|e| EngineError::InvalidInput(format!("{}: {e}", p.display())))
}

pub fn parse(text: &str) -> Result<FlowFile, String> {
    let f: FlowFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut names = BTreeSet::new();
    for r in &f.rules {
        if !names.insert(r.name.clone()) {
            return Err(format!("two rules are named {:?}", r.name));
        }
        match (r.when, r.action) {
            (When::Leaver | When::Idle, FlowAction::Deactivate)
            | (When::Active, FlowAction::CreateUser) => {}
            (w, a) => {
                return Err(format!(
                    "rule {:?}: action {a:?} does not go with when = {w:?}",
                    r.name
                ));
            }
        }
        match (r.when, r.days) {
            (When::Idle, None) => {
                return Err(format!(
                    "rule {:?}: when = \"idle\" needs days = N (days without recorded activity)",
                    r.name
                ));
            }
            (When::Idle, Some(d)) if !(7..=3650).contains(&d) => {
                return Err(format!("rule {:?}: days must be 7 to 3650", r.name));
            }
            (When::Leaver | When::Active, Some(_)) => {
                return Err(format!(
                    "rule {:?}: days only goes with when = \"idle\"",
                    r.name
                ));
            }
            _ => {}
        }
        if let Some(to) = &r.reassign_to {
            if r.when != When::Leaver {
                return Err(format!(
                    "rule {:?}: reassign_to only goes with when = \"leaver\"",
                    r.name
                ));
            }
            if to.trim() != MANAGER && accessrail_domain::EmailKey::parse(to).is_none() {
                return Err(format!(
                    "rule {:?}: reassign_to must be an email or \"manager\" (the leaver's manager_email), not {to:?}",
                    r.name
                ));
            }
        }
        if !r.projects.is_empty() && r.action != FlowAction::CreateUser {
            return Err(format!(
                "rule {:?}: projects only go with action = \"create_user\"",
                r.name
            ));
        }
    }
    Ok(f)
}

fn attributes_match(rule: &Rule, ident: &Identity) -> bool {
    rule.matches.iter().all(|(k, v)| {
        ident
            .attributes
            .iter()
            .any(|(ak, av)| ak.eq_ignore_ascii_case(k) && av.trim().eq_ignore_ascii_case(v.trim()))
    })
}

/// `reassign_to = "manager"`: the leaver's `manager_email`.
pub const MANAGER: &str = "manager";

/// A leaver whose open work a rule hands over before the deactivation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Handover {
    pub rule: String,
    /// The leaver's TestRail account, as the deactivation names it.
    pub email: String,
    /// Who takes the work, or why nobody can.
    pub to: Result<String, String>,
}

/// The hand-overs the leaver rules with `reassign_to` ask for: one per active account of a
/// leaver (those the same rules deactivate).
pub fn handovers(file: &FlowFile, identities: &[Identity], users: &[UserView]) -> Vec<Handover> {
    let mut out: Vec<Handover> = Vec::new();
    // The first leaver rule that names a leaver decides whether their work is handed over.
    let mut decided: BTreeSet<&str> = BTreeSet::new();
    for rule in &file.rules {
        if rule.when != When::Leaver {
            continue;
        }
        for ident in identities {
            if ident.gone
                || ident.status != IdentityStatus::Leaver
                || !attributes_match(rule, ident)
            {
                continue;
            }
            if !decided.insert(ident.id.as_str()) {
                continue;
            }
            let Some(to) = &rule.reassign_to else {
                continue;
            };
            let target = if to.trim() == MANAGER {
                ident
                    .attributes
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(crate::identities::MANAGER_EMAIL))
                    .map(|(_, v)| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("{} has no manager_email", ident.name))
            } else {
                Ok(to.trim().to_string())
            };
            for u in users
                .iter()
                .filter(|u| u.is_active && u.identity.as_deref() == Some(ident.id.as_str()))
            {
                let Some(email) = &u.email else { continue };
                out.push(Handover {
                    rule: rule.name.clone(),
                    email: email.clone(),
                    to: target.clone(),
                });
            }
        }
    }
    out
}

/// What idle rules need: the time, since when the activity evidence covers activity, and each
/// account's latest evidence (TestRail user id → time).
#[derive(Debug, Clone, Default)]
pub struct Activity {
    pub now: i64,
    pub covered_from: Option<i64>,
    pub latest: BTreeMap<u64, i64>,
}

/// Turns the rules into provisioning requests, given the identities, the matched accounts and
/// their activity evidence.
pub fn evaluate(
    file: &FlowFile,
    identities: &[Identity],
    users: &[UserView],
    activity: &Activity,
) -> Vec<Request> {
    let mut out = Vec::new();
    let mut by_identity: BTreeMap<&str, Vec<&UserView>> = BTreeMap::new();
    for u in users {
        if let Some(id) = u.identity.as_deref() {
            by_identity.entry(id).or_default().push(u);
        }
    }
    let known_emails: BTreeSet<EmailKey> = users
        .iter()
        .filter_map(|u| u.email.as_deref().and_then(EmailKey::parse))
        .collect();
    let by_id: BTreeMap<&str, &Identity> = identities.iter().map(|i| (i.id.as_str(), i)).collect();
    for rule in &file.rules {
        let origin = Origin::Flow {
            rule: rule.name.clone(),
            allow_admins: rule.allow_admins,
            allow_own_account: rule.allow_own_account,
        };
        if rule.when == When::Idle {
            // Only as far back as the evidence reaches: an account is never called idle for
            // want of evidence.
            let days = i64::from(rule.days.unwrap_or(u32::MAX));
            let since = activity.now - days * 86_400;
            if activity.covered_from.is_none_or(|f| f > since) {
                continue;
            }
            for u in users.iter().filter(|u| u.is_active) {
                // `match` conditions apply to the account's identity (unmatched accounts only
                // fall under a rule without conditions).
                let ident = u.identity.as_deref().and_then(|i| by_id.get(i));
                let fits =
                    rule.matches.is_empty() || ident.is_some_and(|i| attributes_match(rule, i));
                let idle = activity.latest.get(&u.id).is_none_or(|t| *t < since);
                if let (true, true, Some(email)) = (fits, idle, &u.email) {
                    out.push(Request {
                        action: Action::Deactivate {
                            email: email.clone(),
                        },
                        origin: origin.clone(),
                    });
                }
            }
            continue;
        }
        for ident in identities {
            if !attributes_match(rule, ident) {
                continue;
            }
            match rule.when {
                When::Idle => {}
                When::Leaver => {
                    if ident.gone || ident.status != IdentityStatus::Leaver {
                        continue;
                    }
                    for u in by_identity.get(ident.id.as_str()).into_iter().flatten() {
                        if let (true, Some(email)) = (u.is_active, &u.email) {
                            out.push(Request {
                                action: Action::Deactivate {
                                    email: email.clone(),
                                },
                                origin: origin.clone(),
                            });
                        }
                    }
                }
                When::Active => {
                    if ident.gone
                        || ident.status != IdentityStatus::Active
                        || by_identity.contains_key(ident.id.as_str())
                    {
                        continue;
                    }
                    // Any of the identity's addresses already in TestRail means an account exists.
                    if ident.email_keys().iter().any(|k| known_emails.contains(k)) {
                        continue;
                    }
                    let Some(email) = ident.emails.first() else {
                        continue;
                    };
                    out.push(Request {
                        action: Action::CreateUser {
                            name: ident.name.clone(),
                            email: email.clone(),
                            role: rule.role.clone(),
                            groups: rule.groups.clone(),
                            reconcile: false,
                        },
                        origin: origin.clone(),
                    });
                    // Then its project roles, planned against the account the step above creates.
                    for p in &rule.projects {
                        out.push(Request {
                            action: Action::SetProjectRole {
                                email: email.clone(),
                                project: p.project.clone(),
                                role: Some(p.role.clone()),
                            },
                            origin: origin.clone(),
                        });
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: u64, email: &str, active: bool, identity: Option<&str>) -> UserView {
        UserView {
            id,
            email: Some(email.into()),
            name: None,
            is_active: active,
            is_admin: Some(false),
            role: None,
            role_id: None,
            groups: vec![],
            group_ids: vec![],
            identity: identity.map(str::to_string),
            identity_name: None,
            identity_status: None,
            match_state: accessrail_domain::MatchState::Matched,
            match_reason: String::new(),
            pinned: false,
            candidates: vec![],
        }
    }

    #[test]
    fn idle_rules_deactivate_only_what_the_evidence_covers() {
        let f = parse(
            "[[rule]]\nname='idle-90'\nwhen='idle'\ndays=90\naction='deactivate'\n[[rule]]\nname='qa-idle'\nwhen='idle'\ndays=30\nmatch={department='QA'}\naction='deactivate'\n",
        )
        .unwrap();
        let day = 86_400;
        let now = 1000 * day;
        let qa = Identity {
            id: "q".into(),
            name: "Q".into(),
            emails: vec!["q@x.io".into()],
            status: IdentityStatus::Active,
            attributes: [("department".to_string(), "QA".to_string())].into(),
            gone: false,
        };
        let users = vec![
            user(1, "busy@x.io", true, None),
            user(2, "idle@x.io", true, None),
            user(3, "never@x.io", true, None),
            user(4, "gone@x.io", false, None),
            user(5, "q@x.io", true, Some("q")),
        ];
        let activity = Activity {
            now,
            covered_from: Some(now - 100 * day),
            latest: [(1, now - day), (2, now - 95 * day), (5, now - 40 * day)].into(),
        };
        let emails = |reqs: Vec<Request>| {
            reqs.into_iter()
                .map(|r| match r.action {
                    Action::Deactivate { email } => email,
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
        };
        let got = emails(evaluate(&f, std::slice::from_ref(&qa), &users, &activity));
        assert_eq!(got, vec!["idle@x.io", "never@x.io", "q@x.io"]);
        // Evidence reaching back 60 days: the 90-day rule waits; the 30-day one applies.
        let short = Activity {
            covered_from: Some(now - 60 * day),
            ..activity.clone()
        };
        assert_eq!(
            emails(evaluate(&f, std::slice::from_ref(&qa), &users, &short)),
            vec!["q@x.io"]
        );
        // No evidence at all: nobody is idle for want of it.
        assert!(
            evaluate(
                &f,
                &[qa],
                &users,
                &Activity {
                    now,
                    ..Activity::default()
                }
            )
            .is_empty()
        );
        assert!(parse("[[rule]]\nname='x'\nwhen='idle'\naction='deactivate'\n").is_err());
        assert!(parse("[[rule]]\nname='x'\nwhen='idle'\ndays=3\naction='deactivate'\n").is_err());
        assert!(
            parse("[[rule]]\nname='x'\nwhen='leaver'\ndays=30\naction='deactivate'\n").is_err()
        );
    }

    #[test]
    fn starter_parses_and_rules_are_checked() {
        let f = parse(STARTER).expect("starter");
        assert_eq!(f.rules.len(), 1);
        assert_eq!(
            (f.rules[0].when, f.rules[0].action),
            (When::Leaver, FlowAction::Deactivate)
        );
        let (head, tail) = STARTER.split_at(STARTER.find("# [[rule]]").expect("joiner example"));
        let joiner = format!("{head}{}", tail.replace("# ", ""));
        let f = parse(&joiner).expect("joiner");
        assert_eq!(
            f.rules[1].matches.get("department").map(String::as_str),
            Some("QA")
        );
        assert_eq!(f.rules[1].projects[0].project, "Mobile");
        assert!(
            parse("[[rule]]\nname='x'\nwhen='leaver'\naction='deactivate'\nprojects=[{project='A', role='Lead'}]\n")
                .is_err()
        );
        assert!(parse("[[rule]]\nname='x'\nwhen='leaver'\naction='create_user'\n").is_err());
        assert!(
            parse("[[rule]]\nname='x'\nwhen='leaver'\naction='deactivate'\nbogus=1\n").is_err()
        );
    }
}
