//! Provisioning: every action is planned first (the TestRail calls it will make, before and
//! after), rails are checked, and only then is anything sent. Each write is read back; group
//! membership changes are serialised per group with a store lease, re-read just before the
//! write and verified after it. Every step is written to the hash-chained audit log, and the
//! stored state reflects it at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use accessrail_domain::project::{
    GLOBAL_ROLE, Principal, ProjectAccessFacts, ProjectGrant, role_label,
};
use accessrail_domain::{Account, AuditRecord, ChangeKind, EmailKey, Outcome, account_changes};
use accessrail_store::{Connection, GroupRecord, LeaseToken, NewChange, ProvisionUpdate, Store};
use serde::Serialize;
use testrail_client::{
    Client, ErrorKind, GroupUpdate, NewUser, ProjectGroupRole, ProjectUpdate, ProjectUserRole,
    User, UserUpdate,
};

use crate::connector::{self, FieldWarnings};
use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};
use crate::lease;

/// What someone asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    CreateUser {
        name: String,
        email: String,
        #[serde(default)]
        role: Option<String>,
        #[serde(default)]
        groups: Vec<String>,
        /// When the account exists, bring its active state, role and groups to what was asked.
        #[serde(default)]
        reconcile: bool,
    },
    Deactivate {
        email: String,
    },
    Reactivate {
        email: String,
    },
    SetRole {
        email: String,
        role: String,
    },
    AddToGroup {
        email: String,
        group: String,
    },
    RemoveFromGroup {
        email: String,
        group: String,
    },
    /// Set or clear a user's own role in a project (TestRail 7.3+; read back only where
    /// TestRail reports users' project roles, i.e. Enterprise). `role`: a role name or id,
    /// `global` for "the user's global role" (TestRail's 0), or none to clear it (the user's
    /// groups' roles or the project default apply again).
    SetProjectRole {
        email: String,
        project: String,
        #[serde(default)]
        role: Option<String>,
    },
    /// Change an account's name and/or email (`email` names the account as it is now).
    UpdateProfile {
        email: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        new_email: Option<String>,
    },
    /// Create a TestRail group (7.5+), with no members.
    CreateGroup {
        name: String,
    },
    /// Rename a TestRail group (name or id); its members stay.
    RenameGroup {
        group: String,
        name: String,
    },
    /// Set or clear a group's role in a project (same `role` semantics).
    SetGroupProjectRole {
        group: String,
        project: String,
        #[serde(default)]
        role: Option<String>,
    },
}

/// Where a request comes from: a person (or API token), or a flow rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Direct {
        actor: String,
    },
    Flow {
        rule: String,
        /// The rule names administrators explicitly.
        allow_admins: bool,
        /// The rule names the connection's own account explicitly.
        allow_own_account: bool,
    },
}

impl Origin {
    pub fn actor(&self) -> String {
        match self {
            Origin::Direct { actor } => actor.clone(),
            Origin::Flow { rule, .. } => format!("flow:{rule}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub action: Action,
    pub origin: Origin,
}

/// What a step will do in TestRail.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepKind {
    Noop,
    CreateUser {
        name: String,
        email: String,
        role_id: Option<u64>,
        group_ids: Vec<u64>,
    },
    UpdateUser {
        user_id: u64,
        is_active: Option<bool>,
        role_id: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        email: Option<String>,
    },
    GroupCreate {
        name: String,
    },
    GroupRename {
        group_id: u64,
        name: String,
    },
    GroupAdd {
        group_id: u64,
        group: String,
        user_id: u64,
    },
    GroupRemove {
        group_id: u64,
        group: String,
        user_id: u64,
    },
    /// Set (`role_id` Some; 0 = the user's global role) or clear (None) a user's or a group's
    /// role in a project.
    ProjectRole {
        project_id: u64,
        project: String,
        /// `user` or `group`.
        principal: &'static str,
        /// 0 for an account an earlier step of the plan creates: found by `email` when run.
        principal_id: u64,
        role_id: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        email: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub action: &'static str,
    pub target: String,
    pub user_id: Option<u64>,
    #[serde(flatten)]
    pub kind: StepKind,
    /// The TestRail calls the step will make.
    pub calls: Vec<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub note: Option<String>,
    pub actor: String,
    /// Set when the step deactivates someone whose loss is hard to undo: a person applying it
    /// is told so and confirms it explicitly. Part of the plan's fingerprint, so an account that
    /// became an administrator after the plan was reviewed makes the plan stale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caution: Option<Caution>,
}

/// Why a deactivation needs an explicit confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Caution {
    /// The account is a TestRail administrator.
    Administrator,
    /// The account is the connection's own (the API key's owner): deactivating it locks
    /// Accessrail out of TestRail.
    OwnAccount,
}

impl Caution {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Administrator => "administrator",
            Self::OwnAccount => "own_account",
        }
    }

    /// What a person must know before confirming.
    pub fn message(self) -> &'static str {
        match self {
            Self::Administrator => {
                "This account is a TestRail administrator. Deactivating it removes an administrator from TestRail."
            }
            Self::OwnAccount => {
                "This is the account Accessrail signs in to TestRail with (the owner of the saved API key). Deactivating it locks Accessrail out of TestRail: scans and changes stop until an administrator reactivates it in TestRail or a key of another administrator is saved."
            }
        }
    }
}

impl Step {
    pub fn is_noop(&self) -> bool {
        self.kind == StepKind::Noop
    }

    fn is_deactivation(&self) -> bool {
        matches!(
            self.kind,
            StepKind::UpdateUser {
                is_active: Some(false),
                ..
            }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub target: String,
    pub action: &'static str,
    pub reason: String,
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub connection: String,
    pub steps: Vec<Step>,
    /// Requests a rail stopped (protected, administrator, own account).
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, Default)]
pub struct Rails {
    /// Deactivations allowed in one run.
    pub max_deactivations: u32,
    /// Go past the cap and act on protected accounts when asked directly.
    pub force: bool,
}

pub const DEFAULT_MAX_DEACTIVATIONS: u32 = 10;

impl Rails {
    pub fn new(max: Option<u32>, force: bool) -> Self {
        Self {
            max_deactivations: max.unwrap_or(DEFAULT_MAX_DEACTIVATIONS),
            force,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    pub step: usize,
    pub action: &'static str,
    pub target: String,
    pub outcome: Outcome,
    pub message: Option<String>,
    pub calls_made: Vec<String>,
    pub audit_id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplyReport {
    pub connection: String,
    pub results: Vec<StepResult>,
    pub done: usize,
    pub noop: usize,
    pub failed: usize,
    pub not_run: usize,
}

impl ApplyReport {
    /// Some steps took effect, then one failed.
    pub fn partial(&self) -> bool {
        self.failed > 0 && self.done > 0
    }
}

fn upstream(context: &str, e: testrail_client::Error) -> EngineError {
    EngineError::upstream(context, e)
}

/// Is `typed` this project's id or name (any case)? The one test, for reading and planning.
fn project_named(p: &testrail_client::Project, typed: &str) -> bool {
    let t = typed.trim();
    t.parse::<u64>().ok() == Some(p.id)
        || p.name
            .as_deref()
            .is_some_and(|n| n.trim().to_lowercase() == t.to_lowercase())
}

/// A project's access as TestRail reports it, or why it cannot be changed through the API.
fn project_access_of(p: &testrail_client::Project) -> EngineResult<ProjectAccessFacts> {
    let mut warnings = Vec::new();
    connector::to_project(p, &mut warnings).access.ok_or_else(|| {
        EngineError::Conflict(format!(
            "project {} reports no access (TestRail before 7.3, or the fields are missing): its roles cannot be set or read back through the API",
            p.name.as_deref().unwrap_or("?")
        ))
    })
}

/// A project role as plans and the audit log show it.
fn project_role_text(role: Option<&ProjectGrant>) -> String {
    role.map_or("no project role".into(), role_label)
}

/// What the plan needs to know of TestRail, read fresh.
struct Live {
    roles: Vec<(u64, String)>,
    groups: Option<Vec<testrail_client::Group>>,
    users: BTreeMap<EmailKey, Option<User>>,
    /// Every project (only read when an action names one), and the named ones in full.
    projects: Vec<testrail_client::Project>,
    project_detail: BTreeMap<u64, testrail_client::Project>,
}

/// The names closest to what was typed ("did you mean"), or every name when there are few, or
/// where to look them up.
pub fn did_you_mean<'a>(typed: &str, names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    let t = typed.trim().to_lowercase();
    let mut close: Vec<(f64, &str)> = names
        .iter()
        .map(|n| {
            let l = n.to_lowercase();
            let score = if !t.is_empty() && (l.contains(&t) || t.contains(&l)) {
                1.0
            } else {
                strsim::jaro_winkler(&t, &l)
            };
            (score, *n)
        })
        .filter(|(s, _)| *s >= 0.8)
        .collect();
    close.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    if !close.is_empty() {
        let list: Vec<&str> = close.iter().take(5).map(|(_, n)| *n).collect();
        return format!("did you mean: {}?", list.join(", "));
    }
    match names.len() {
        0 => "TestRail has none".into(),
        1..=12 => format!("TestRail has: {}", names.join(", ")),
        n => format!("TestRail has {n}; list them with `accessrail groups` or `accessrail roles`"),
    }
}

impl Live {
    fn role(&self, input: &str) -> EngineResult<(u64, String)> {
        let t = input.trim();
        self.roles
            .iter()
            .find(|(id, name)| name.eq_ignore_ascii_case(t) || t.parse::<u64>().ok() == Some(*id))
            .cloned()
            .ok_or_else(|| {
                EngineError::NotFound(format!(
                    "unknown role {t:?}; {}",
                    did_you_mean(t, self.roles.iter().map(|(_, n)| n.as_str()))
                ))
            })
    }

    fn group(&self, input: &str) -> EngineResult<(u64, String)> {
        let t = input.trim();
        let Some(groups) = &self.groups else {
            return Err(EngineError::NotFound(
                "this TestRail has no groups (before 7.5)".into(),
            ));
        };
        let found: Vec<_> = groups
            .iter()
            .filter(|g| {
                g.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(t))
                    || t.parse::<u64>().ok() == Some(g.id)
            })
            .collect();
        match found.as_slice() {
            [g] => Ok((g.id, g.name.clone().unwrap_or_default())),
            [] => Err(EngineError::NotFound(format!(
                "unknown group {t:?}; {}",
                did_you_mean(t, groups.iter().filter_map(|g| g.name.as_deref()))
            ))),
            _ => Err(EngineError::Conflict(format!(
                "several TestRail groups are named {t:?}: give the group id instead"
            ))),
        }
    }

    /// A project by name (any case) or id, in full (with its access).
    fn project(
        &self,
        input: &str,
    ) -> EngineResult<(&testrail_client::Project, ProjectAccessFacts)> {
        let t = input.trim();
        let found: Vec<&testrail_client::Project> = self
            .projects
            .iter()
            .filter(|p| project_named(p, t))
            .collect();
        let p = match found.as_slice() {
            [p] => *p,
            [] => {
                return Err(EngineError::NotFound(format!(
                    "unknown project {t:?}; {}",
                    did_you_mean(t, self.projects.iter().filter_map(|p| p.name.as_deref()))
                        .replace(
                            "accessrail groups` or `accessrail roles",
                            "accessrail projects"
                        )
                )));
            }
            _ => {
                return Err(EngineError::Conflict(format!(
                    "several TestRail projects are named {t:?}: give the project id instead"
                )));
            }
        };
        let detail = self.project_detail.get(&p.id).unwrap_or(p);
        let access = project_access_of(detail)?;
        Ok((detail, access))
    }

    /// A project role as asked: none (clear), `global` (TestRail's 0), or a role name or id.
    fn project_role(&self, input: Option<&str>) -> EngineResult<Option<(u64, String)>> {
        match input.map(str::trim) {
            None => Ok(None),
            Some(r)
                if r.eq_ignore_ascii_case("global")
                    || r.eq_ignore_ascii_case("global role")
                    || r == "0" =>
            {
                Ok(Some((GLOBAL_ROLE, "Global Role".into())))
            }
            Some(r) => self.role(r).map(Some),
        }
    }

    fn user(&self, email: &str) -> Option<&User> {
        EmailKey::parse(email)
            .and_then(|k| self.users.get(&k))
            .and_then(Option::as_ref)
    }
}

async fn read_live(client: &Client, requests: &[Request]) -> EngineResult<Live> {
    let mut need_roles = false;
    let mut need_groups = false;
    let mut projects_named: BTreeSet<String> = BTreeSet::new();
    let mut emails = BTreeSet::new();
    for r in requests {
        let email = match &r.action {
            Action::SetProjectRole {
                email,
                project,
                role,
            } => {
                need_roles |= role.is_some();
                projects_named.insert(project.clone());
                email
            }
            Action::SetGroupProjectRole { project, role, .. } => {
                need_roles |= role.is_some();
                need_groups = true;
                projects_named.insert(project.clone());
                continue;
            }
            Action::CreateGroup { .. } | Action::RenameGroup { .. } => {
                need_groups = true;
                continue;
            }
            Action::UpdateProfile {
                email, new_email, ..
            } => {
                if let Some(k) = new_email.as_deref().and_then(EmailKey::parse) {
                    emails.insert(k);
                }
                email
            }
            Action::CreateUser {
                email,
                role,
                groups,
                ..
            } => {
                need_roles |= role.is_some();
                need_groups |= !groups.is_empty();
                email
            }
            Action::SetRole { email, .. } => {
                need_roles = true;
                email
            }
            Action::AddToGroup { email, .. } | Action::RemoveFromGroup { email, .. } => {
                need_groups = true;
                email
            }
            Action::Deactivate { email } | Action::Reactivate { email } => email,
        };
        let key = EmailKey::parse(email).ok_or_else(|| {
            EngineError::InvalidInput(format!("{email:?} is not an email address"))
        })?;
        emails.insert(key);
    }
    let roles = if need_roles {
        match client.get_roles().await {
            Ok(r) => r
                .into_iter()
                .filter_map(|r| r.name.map(|n| (r.id, n)))
                .collect(),
            Err(e) => return Err(upstream("reading roles", e)),
        }
    } else {
        vec![]
    };
    let groups = if need_groups {
        match client.get_groups().await {
            Ok(g) => Some(g),
            Err(e) if e.kind() == ErrorKind::Unsupported => None,
            Err(e) => return Err(upstream("reading groups", e)),
        }
    } else {
        None
    };
    let mut projects = Vec::new();
    let mut project_detail = BTreeMap::new();
    if !projects_named.is_empty() {
        projects = client
            .get_projects()
            .await
            .map_err(|e| upstream("reading projects", e))?;
        let wanted: Vec<u64> = projects
            .iter()
            .filter(|p| projects_named.iter().any(|t| project_named(p, t)))
            .map(|p| p.id)
            .collect();
        for id in wanted {
            let p = client
                .get_project(id)
                .await
                .map_err(|e| upstream("reading the project", e))?;
            project_detail.insert(id, p);
        }
    }
    let mut users = BTreeMap::new();
    for key in emails {
        match client.get_user_by_email(key.as_str()).await {
            Ok(u) => {
                users.insert(key, Some(u));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                users.insert(key, None);
            }
            Err(e) => return Err(upstream("looking up users", e)),
        }
    }
    Ok(Live {
        roles,
        groups,
        users,
        projects,
        project_detail,
    })
}

fn state_word(active: bool) -> String {
    if active {
        "active".into()
    } else {
        "inactive".into()
    }
}

/// Refuses names, emails, roles and groups with control or invisible format characters (a
/// right-to-left override makes an address display as another).
fn check_text(action: &Action) -> EngineResult<()> {
    let mut fields: Vec<(&str, &str)> = Vec::new();
    match action {
        Action::CreateUser {
            name,
            email,
            role,
            groups,
            ..
        } => {
            fields.push(("name", name));
            fields.push(("email", email));
            if let Some(r) = role {
                fields.push(("role", r));
            }
            fields.extend(groups.iter().map(|g| ("group", g.as_str())));
        }
        Action::Deactivate { email } | Action::Reactivate { email } => {
            fields.push(("email", email))
        }
        Action::UpdateProfile {
            email,
            name,
            new_email,
        } => {
            fields.push(("email", email));
            if let Some(n) = name {
                fields.push(("name", n));
            }
            if let Some(e) = new_email {
                fields.push(("email", e));
            }
        }
        Action::CreateGroup { name } => fields.push(("group", name)),
        Action::RenameGroup { group, name } => {
            fields.push(("group", group));
            fields.push(("group", name));
        }
        Action::SetRole { email, role } => {
            fields.push(("email", email));
            fields.push(("role", role));
        }
        Action::AddToGroup { email, group } | Action::RemoveFromGroup { email, group } => {
            fields.push(("email", email));
            fields.push(("group", group));
        }
        Action::SetProjectRole {
            email,
            project,
            role,
        } => {
            fields.push(("email", email));
            fields.push(("project", project));
            if let Some(r) = role {
                fields.push(("role", r));
            }
        }
        Action::SetGroupProjectRole {
            group,
            project,
            role,
        } => {
            fields.push(("group", group));
            fields.push(("project", project));
            if let Some(r) = role {
                fields.push(("role", r));
            }
        }
    }
    for (field, value) in fields {
        accessrail_domain::text::check_visible(field, value).map_err(EngineError::InvalidInput)?;
    }
    Ok(())
}

/// Builds the plan. Unknown users, roles and groups fail here, before anything is sent.
pub async fn plan<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    requests: Vec<Request>,
    rails: &Rails,
) -> EngineResult<Plan> {
    for r in &requests {
        check_text(&r.action)?;
    }
    let client = engine.client_for(conn, None)?;
    let live = read_live(&client, &requests).await?;
    let now = engine.now();
    let protected: BTreeMap<String, accessrail_store::ProtectedAccount> = engine
        .store()
        .protected(&conn.id)
        .await?
        .into_iter()
        .filter(|p| p.expires_at.is_none_or(|t| t > now))
        .map(|p| (p.email.clone(), p))
        .collect();
    let own = EmailKey::parse(&conn.email);
    let mut steps = Vec::new();
    let mut skipped = Vec::new();
    for req in requests {
        let actor = req.origin.actor();
        if let Action::SetGroupProjectRole {
            group,
            project,
            role,
        } = &req.action
        {
            let (gid, gname) = live.group(group)?;
            let (p, access) = live.project(project)?;
            let want = live.project_role(role.as_deref())?;
            let current = access.groups.iter().find(|g| g.id == gid);
            steps.push(project_role_step(
                "set_group_project_role",
                format!("group {gname}"),
                None,
                p,
                ("group", gid),
                current,
                want,
                actor,
            ));
            continue;
        }
        match &req.action {
            Action::CreateGroup { name } => {
                let name = name.trim();
                if name.is_empty() {
                    return Err(EngineError::InvalidInput("a group needs a name".into()));
                }
                if live.group(name).is_ok() {
                    return Err(EngineError::Conflict(format!(
                        "a TestRail group named {name:?} exists already"
                    )));
                }
                steps.push(Step {
                    action: "create_group",
                    target: format!("group {name}"),
                    user_id: None,
                    kind: StepKind::GroupCreate {
                        name: name.to_string(),
                    },
                    calls: vec!["add_group".into(), "get_group".into()],
                    before: None,
                    after: Some(name.to_string()),
                    note: None,
                    actor: actor.clone(),
                    caution: None,
                });
                continue;
            }
            Action::RenameGroup { group, name } => {
                let (gid, current) = live.group(group)?;
                let name = name.trim();
                if name.is_empty() {
                    return Err(EngineError::InvalidInput("a group needs a name".into()));
                }
                let kind = if current == name {
                    StepKind::Noop
                } else {
                    if live.group(name).is_ok_and(|(other, _)| other != gid) {
                        return Err(EngineError::Conflict(format!(
                            "another TestRail group is named {name:?}"
                        )));
                    }
                    StepKind::GroupRename {
                        group_id: gid,
                        name: name.to_string(),
                    }
                };
                steps.push(Step {
                    action: "rename_group",
                    target: format!("group {current}"),
                    user_id: None,
                    calls: if kind == StepKind::Noop {
                        vec![]
                    } else {
                        vec![format!("update_group/{gid}"), format!("get_group/{gid}")]
                    },
                    kind,
                    before: Some(current),
                    after: Some(name.to_string()),
                    note: None,
                    actor: actor.clone(),
                    caution: None,
                });
                continue;
            }
            _ => {}
        }
        let (action_name, email) = match &req.action {
            Action::CreateGroup { .. } | Action::RenameGroup { .. } => {
                unreachable!("handled above")
            }
            Action::UpdateProfile { email, .. } => ("update_profile", email),
            Action::CreateUser { email, .. } => ("create_user", email),
            Action::Deactivate { email } => ("deactivate", email),
            Action::Reactivate { email } => ("reactivate", email),
            Action::SetRole { email, .. } => ("set_role", email),
            Action::AddToGroup { email, .. } => ("add_to_group", email),
            Action::RemoveFromGroup { email, .. } => ("remove_from_group", email),
            Action::SetProjectRole { email, .. } => ("set_project_role", email),
            Action::SetGroupProjectRole { .. } => unreachable!("handled above"),
        };
        let key = EmailKey::parse(email).ok_or_else(|| {
            EngineError::InvalidInput(format!("{email:?} is not an email address"))
        })?;
        let existing = live.user(email);
        // Plans and the audit log name the account as TestRail has it, not as it was typed.
        let shown = existing
            .and_then(|u| u.email.clone())
            .unwrap_or_else(|| email.trim().to_string());
        let first_step = steps.len();
        // Rails on who may be touched.
        let skip = |reason: String| Skipped {
            target: shown.clone(),
            action: action_name,
            reason,
            actor: actor.clone(),
        };
        if let Some(p) = protected.get(key.as_str()) {
            match &req.origin {
                Origin::Flow { .. } => {
                    skipped.push(skip(format!(
                        "protected account (owner {}: {})",
                        p.owner, p.reason
                    )));
                    continue;
                }
                Origin::Direct { .. } if !rails.force => {
                    return Err(EngineError::Conflict(format!(
                        "{email} is a protected account (owner {}: {}); pass --force to act on it anyway",
                        p.owner, p.reason
                    )));
                }
                Origin::Direct { .. } => {}
            }
        }
        if let Origin::Flow {
            allow_admins,
            allow_own_account,
            ..
        } = &req.origin
        {
            let deactivating = matches!(req.action, Action::Deactivate { .. });
            if deactivating && !allow_own_account && own.as_ref() == Some(&key) {
                skipped.push(skip(
                    "the connection's own account (the rule does not name it)".into(),
                ));
                continue;
            }
            if deactivating && !allow_admins && existing.is_some_and(|u| u.is_admin == Some(true)) {
                skipped.push(skip(
                    "a TestRail administrator (the rule does not name administrators)".into(),
                ));
                continue;
            }
        }
        let step = |kind: StepKind,
                    user_id,
                    calls: Vec<String>,
                    before: Option<String>,
                    after: Option<String>,
                    note: Option<String>| Step {
            action: action_name,
            target: shown.clone(),
            user_id,
            kind,
            calls,
            before,
            after,
            note,
            actor: actor.clone(),
            caution: None,
        };
        let unknown =
            || EngineError::NotFound(format!("no TestRail account has the email {email}"));
        match &req.action {
            Action::CreateUser {
                name,
                role,
                groups,
                reconcile,
                ..
            } => {
                let role = role.as_deref().map(|r| live.role(r)).transpose()?;
                let groups: Vec<(u64, String)> = groups
                    .iter()
                    .map(|g| live.group(g))
                    .collect::<EngineResult<_>>()?;
                match existing {
                    None => {
                        if name.trim().is_empty() {
                            return Err(EngineError::InvalidInput("a new user needs a name".into()));
                        }
                        steps.push(step(
                            StepKind::CreateUser {
                                name: name.trim().to_string(),
                                email: email.trim().to_string(),
                                role_id: role.as_ref().map(|r| r.0),
                                group_ids: groups.iter().map(|g| g.0).collect(),
                            },
                            None,
                            vec!["get_user_by_email".into(), "add_user".into(), "get_user".into()],
                            None,
                            Some(format!(
                                "active{}{}",
                                role.as_ref().map(|r| format!(", role {}", r.1)).unwrap_or_default(),
                                if groups.is_empty() { String::new() } else { format!(", groups {}", groups.iter().map(|g| g.1.as_str()).collect::<Vec<_>>().join(", ")) }
                            )),
                            None,
                        ));
                    }
                    Some(u) if !reconcile => steps.push(step(
                        StepKind::Noop,
                        Some(u.id),
                        vec![],
                        None,
                        None,
                        Some(format!("an account with this email already exists (TestRail user {}); nothing created", u.id)),
                    )),
                    Some(u) => {
                        let active = u.is_active.unwrap_or(true);
                        let role_change = role.as_ref().filter(|r| u.role_id != Some(r.0));
                        if !active || role_change.is_some() {
                            steps.push(step(
                                StepKind::UpdateUser { user_id: u.id, is_active: (!active).then_some(true), role_id: role_change.map(|r| r.0), name: None, email: None },
                                Some(u.id),
                                vec![format!("get_user/{}", u.id), format!("update_user/{}", u.id), format!("get_user/{}", u.id)],
                                Some(format!("{}, role {}", state_word(active), u.role.clone().unwrap_or_default())),
                                Some(format!("active, role {}", role.as_ref().map_or(u.role.clone().unwrap_or_default(), |r| r.1.clone()))),
                                Some("reconcile an existing account".into()),
                            ));
                        }
                        let have: BTreeSet<u64> = u.group_ids.clone().unwrap_or_default().into_iter().collect();
                        for (gid, gname) in &groups {
                            if !have.contains(gid) {
                                steps.push(Step {
                                    action: "add_to_group",
                                    ..step(
                                        StepKind::GroupAdd { group_id: *gid, group: gname.clone(), user_id: u.id },
                                        Some(u.id),
                                        vec![format!("get_group/{gid}"), format!("update_group/{gid}"), format!("get_group/{gid}")],
                                        Some(format!("not in {gname}")),
                                        Some(format!("in {gname}")),
                                        Some("reconcile an existing account".into()),
                                    )
                                });
                            }
                        }
                        if active && role_change.is_none() && groups.iter().all(|(g, _)| have.contains(g)) {
                            steps.push(step(StepKind::Noop, Some(u.id), vec![], None, None, Some("the existing account already matches".into())));
                        }
                    }
                }
            }
            Action::Deactivate { .. } | Action::Reactivate { .. } => {
                let u = existing.ok_or_else(unknown)?;
                let want = matches!(req.action, Action::Reactivate { .. });
                let active = u.is_active.unwrap_or(true);
                if active == want {
                    steps.push(step(
                        StepKind::Noop,
                        Some(u.id),
                        vec![],
                        Some(state_word(active)),
                        Some(state_word(active)),
                        Some(format!("already {}", state_word(active))),
                    ));
                } else {
                    steps.push(step(
                        StepKind::UpdateUser {
                            user_id: u.id,
                            is_active: Some(want),
                            role_id: None,
                            name: None,
                            email: None,
                        },
                        Some(u.id),
                        vec![
                            format!("get_user/{}", u.id),
                            format!("update_user/{}", u.id),
                            format!("get_user/{}", u.id),
                        ],
                        Some(state_word(active)),
                        Some(state_word(want)),
                        if want {
                            None
                        } else {
                            Some("frees the TestRail seat (TestRail cannot delete users)".into())
                        },
                    ));
                }
            }
            Action::UpdateProfile {
                name, new_email, ..
            } => {
                let u = existing.ok_or_else(unknown)?;
                let name = name
                    .as_deref()
                    .map(str::trim)
                    .filter(|n| !n.is_empty() && Some(*n) != u.name.as_deref());
                let new_email = new_email
                    .as_deref()
                    .map(str::trim)
                    .filter(|e| EmailKey::parse(e) != u.email.as_deref().and_then(EmailKey::parse));
                if let Some(e) = new_email {
                    if EmailKey::parse(e).is_none() {
                        return Err(EngineError::InvalidInput(format!(
                            "{e:?} is not an email address"
                        )));
                    }
                    if live.user(e).is_some() {
                        return Err(EngineError::Conflict(format!(
                            "another TestRail account has the email {e}"
                        )));
                    }
                }
                let before = format!(
                    "{} <{}>",
                    u.name.as_deref().unwrap_or("-"),
                    u.email.as_deref().unwrap_or("-")
                );
                if name.is_none() && new_email.is_none() {
                    steps.push(step(
                        StepKind::Noop,
                        Some(u.id),
                        vec![],
                        Some(before.clone()),
                        Some(before),
                        Some("already so".into()),
                    ));
                } else {
                    let after = format!(
                        "{} <{}>",
                        name.or(u.name.as_deref()).unwrap_or("-"),
                        new_email.or(u.email.as_deref()).unwrap_or("-")
                    );
                    steps.push(step(
                        StepKind::UpdateUser {
                            user_id: u.id,
                            is_active: None,
                            role_id: None,
                            name: name.map(str::to_string),
                            email: new_email.map(str::to_string),
                        },
                        Some(u.id),
                        vec![
                            format!("get_user/{}", u.id),
                            format!("update_user/{}", u.id),
                            format!("get_user/{}", u.id),
                        ],
                        Some(before),
                        Some(after),
                        None,
                    ));
                }
            }
            Action::SetRole { role, .. } => {
                let u = existing.ok_or_else(unknown)?;
                let (rid, rname) = live.role(role)?;
                let current = u
                    .role
                    .clone()
                    .unwrap_or_else(|| u.role_id.map_or("-".into(), |r| r.to_string()));
                if u.role_id == Some(rid) {
                    steps.push(step(
                        StepKind::Noop,
                        Some(u.id),
                        vec![],
                        Some(current.clone()),
                        Some(current),
                        Some(format!("already {rname}")),
                    ));
                } else {
                    steps.push(step(
                        StepKind::UpdateUser {
                            user_id: u.id,
                            is_active: None,
                            role_id: Some(rid),
                            name: None,
                            email: None,
                        },
                        Some(u.id),
                        vec![
                            format!("get_user/{}", u.id),
                            format!("update_user/{}", u.id),
                            format!("get_user/{}", u.id),
                        ],
                        Some(current),
                        Some(rname),
                        None,
                    ));
                }
            }
            Action::SetProjectRole { project, role, .. } => {
                // An account an earlier step of this plan creates has no id yet: its step finds
                // it by email when it runs.
                let created_here = existing.is_none()
                    && steps.iter().any(|st: &Step| {
                        matches!(&st.kind, StepKind::CreateUser { email: e, .. }
                            if EmailKey::parse(e).as_ref() == Some(&key))
                    });
                let user_id = match existing {
                    Some(u) => Some(u.id),
                    None if created_here => None,
                    None => return Err(unknown()),
                };
                let (p, access) = live.project(project)?;
                let Some(users) = &access.users else {
                    return Err(EngineError::Conflict(format!(
                        "this TestRail does not report users' own project roles (Professional edition), so a change to {shown}'s role in {} could not be read back; set it in TestRail, or give one of their groups a project role instead",
                        p.name.as_deref().unwrap_or("the project")
                    )));
                };
                let want = live.project_role(role.as_deref())?;
                let id = user_id.unwrap_or(0);
                let current = user_id.and_then(|u| users.iter().find(|g| g.id == u));
                let mut st = project_role_step(
                    action_name,
                    shown.clone(),
                    user_id,
                    p,
                    ("user", id),
                    current,
                    want,
                    actor.clone(),
                );
                if created_here {
                    if let StepKind::ProjectRole { email, .. } = &mut st.kind {
                        *email = Some(shown.clone());
                    }
                    st.calls.insert(0, "get_user_by_email".into());
                    st.note = Some("for the account the step above creates".into());
                }
                steps.push(st);
            }
            Action::SetGroupProjectRole { .. }
            | Action::CreateGroup { .. }
            | Action::RenameGroup { .. } => unreachable!("handled above"),
            Action::AddToGroup { group, .. } | Action::RemoveFromGroup { group, .. } => {
                let u = existing.ok_or_else(unknown)?;
                let (gid, gname) = live.group(group)?;
                let members = live
                    .groups
                    .as_ref()
                    .and_then(|gs| gs.iter().find(|g| g.id == gid))
                    .map(|g| g.user_ids.contains(&u.id))
                    .unwrap_or(false);
                let add = matches!(req.action, Action::AddToGroup { .. });
                let (b, a) = (
                    if members {
                        format!("in {gname}")
                    } else {
                        format!("not in {gname}")
                    },
                    if add {
                        format!("in {gname}")
                    } else {
                        format!("not in {gname}")
                    },
                );
                if members == add {
                    steps.push(step(
                        StepKind::Noop,
                        Some(u.id),
                        vec![],
                        Some(b.clone()),
                        Some(b),
                        Some(format!("already {a}")),
                    ));
                } else {
                    let kind = if add {
                        StepKind::GroupAdd {
                            group_id: gid,
                            group: gname.clone(),
                            user_id: u.id,
                        }
                    } else {
                        StepKind::GroupRemove {
                            group_id: gid,
                            group: gname.clone(),
                            user_id: u.id,
                        }
                    };
                    steps.push(step(
                        kind,
                        Some(u.id),
                        vec![
                            format!("get_group/{gid}"),
                            format!("update_group/{gid}"),
                            format!("get_group/{gid}"),
                        ],
                        Some(b),
                        Some(a),
                        Some(
                            "membership is written as the whole list, under a per-group lease"
                                .into(),
                        ),
                    ));
                }
            }
        }
        // A deactivation of the connection's own account or of an administrator is confirmed
        // explicitly by whoever applies it.
        for st in &mut steps[first_step..] {
            if st.is_deactivation() {
                st.caution = if own.as_ref() == Some(&key) {
                    Some(Caution::OwnAccount)
                } else if existing.is_some_and(|u| u.is_admin == Some(true)) {
                    Some(Caution::Administrator)
                } else {
                    None
                };
            }
        }
    }
    let deactivations = steps.iter().filter(|s| s.is_deactivation()).count() as u32;
    if deactivations > rails.max_deactivations && !rails.force {
        return Err(EngineError::Conflict(format!(
            "this run would deactivate {deactivations} accounts, more than the cap of {}; nothing was changed. Review the plan with --dry-run, then pass --max-deactivations {deactivations} (or --force)",
            rails.max_deactivations
        )));
    }
    Ok(Plan {
        connection: conn.name.clone(),
        steps,
        skipped,
    })
}

/// The step that sets or clears a project role (or a no-op when it is already so).
#[allow(clippy::too_many_arguments)]
fn project_role_step(
    action: &'static str,
    target: String,
    user_id: Option<u64>,
    p: &testrail_client::Project,
    (principal, principal_id): (&'static str, u64),
    current: Option<&ProjectGrant>,
    want: Option<(u64, String)>,
    actor: String,
) -> Step {
    let pname = p
        .name
        .clone()
        .unwrap_or_else(|| format!("project {}", p.id));
    let before = format!("{} in {pname}", project_role_text(current));
    let wanted = want.as_ref().map(|(id, name)| ProjectGrant {
        id: principal_id,
        role_id: *id,
        role: Some(name.clone()),
    });
    let after = format!("{} in {pname}", project_role_text(wanted.as_ref()));
    let same = current.map(|g| g.role_id) == want.as_ref().map(|w| w.0);
    let calls = if same {
        vec![]
    } else {
        vec![
            format!("get_project/{}", p.id),
            format!("update_project/{}", p.id),
            format!("get_project/{}", p.id),
        ]
    };
    Step {
        action,
        target,
        user_id,
        kind: if same {
            StepKind::Noop
        } else {
            StepKind::ProjectRole {
                project_id: p.id,
                project: pname.clone(),
                principal,
                principal_id,
                role_id: want.as_ref().map(|w| w.0),
                email: None,
            }
        },
        calls,
        before: Some(before.clone()),
        after: Some(if same { before } else { after }),
        note: Some(if same {
            "already so".to_string()
        } else if want.is_none() {
            format!(
                "clears the {principal}'s own role in {pname}: {} apply again",
                if principal == "user" {
                    "their groups' roles or the project default"
                } else {
                    "the members' own roles, other groups' roles or the project default"
                }
            )
        } else {
            format!(
                "the project's whole {principal} list is sent with this one entry changed, under a per-project lease"
            )
        }),
        actor,
        caution: None,
    }
}

/// A read-only connection cannot change TestRail.
pub fn ensure_enabled(conn: &Connection) -> EngineResult<()> {
    if conn.provisioning_enabled {
        Ok(())
    } else {
        Err(EngineError::ReadOnly(conn.name.clone()))
    }
}

/// Runs a plan: stops at the first failed step; the rest are recorded as not run.
pub async fn apply<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    plan: &Plan,
) -> EngineResult<ApplyReport> {
    ensure_enabled(conn)?;
    let client = engine.client_for(conn, None)?;
    let mut results = Vec::new();
    let mut failed = false;
    for (i, step) in plan.steps.iter().enumerate() {
        let (outcome, message, calls, update) = if failed {
            (
                Outcome::NotRun,
                Some("not run: an earlier step failed".to_string()),
                vec![],
                None,
            )
        } else if step.is_noop() {
            (Outcome::Noop, step.note.clone(), vec![], None)
        } else {
            // Write-ahead: on record before anything reaches TestRail, so a step cut short
            // (a crash, a kill, a dropped request) still shows in the audit log.
            engine
                .store()
                .append_audit(AuditRecord {
                    at: engine.now(),
                    actor: step.actor.clone(),
                    connection: conn.name.clone(),
                    action: step.action.to_string(),
                    target: step.target.clone(),
                    before: step.before.clone(),
                    after: step.after.clone(),
                    calls: step.calls.clone(),
                    outcome: Outcome::Started,
                    message: Some("about to change TestRail".into()),
                })
                .await?;
            let mut calls = Vec::new();
            match execute(engine, conn, &client, step, &mut calls).await {
                Ok(Executed::Done(update)) => (Outcome::Done, None, calls, Some(*update)),
                Ok(Executed::Noop(why)) => (Outcome::Noop, Some(why), calls, None),
                Err(e) => {
                    failed = true;
                    (Outcome::Failed, Some(e.to_string()), calls, None)
                }
            }
        };
        let entry = engine
            .store()
            .append_audit(AuditRecord {
                at: engine.now(),
                actor: step.actor.clone(),
                connection: conn.name.clone(),
                action: step.action.to_string(),
                target: step.target.clone(),
                before: step.before.clone(),
                after: if outcome == Outcome::Done {
                    step.after.clone()
                } else {
                    step.before.clone()
                },
                calls: calls.clone(),
                outcome,
                message: message.clone(),
            })
            .await?;
        if let Some(update) = update {
            engine
                .store()
                .record_provision(&conn.id, entry.id, engine.now(), update)
                .await?;
        }
        results.push(StepResult {
            step: i + 1,
            action: step.action,
            target: step.target.clone(),
            outcome,
            message,
            calls_made: calls,
            audit_id: entry.id,
        });
    }
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    Ok(ApplyReport {
        connection: conn.name.clone(),
        done: count(Outcome::Done),
        noop: count(Outcome::Noop),
        failed: count(Outcome::Failed),
        not_run: count(Outcome::NotRun),
        results,
    })
}

fn account_of(u: &User) -> Account {
    connector::to_account(u, &mut FieldWarnings::default())
}

async fn read_back(client: &Client, user_id: u64, calls: &mut Vec<String>) -> EngineResult<User> {
    calls.push(format!("get_user/{user_id}"));
    client
        .get_user(user_id)
        .await
        .map_err(|e| upstream("reading the account back", e))
}

/// What a step did.
enum Executed {
    /// It took effect (verified by reading back): what the store must now reflect.
    Done(Box<ProvisionUpdate>),
    /// Nothing needed doing after all (another run got there first), and why.
    Noop(String),
}

/// Longest wait for another run's change to the same group or email to finish.
const LEASE_WAIT: Duration = Duration::from_secs(120);

/// One step, with its read-back.
async fn execute<S: Store>(
    engine: &Engine<S>,
    conn: &Connection,
    client: &Client,
    step: &Step,
    calls: &mut Vec<String>,
) -> EngineResult<Executed> {
    match &step.kind {
        StepKind::Noop => Ok(Executed::Noop(step.note.clone().unwrap_or_default())),
        StepKind::CreateUser {
            name,
            email,
            role_id,
            group_ids,
        } => {
            // Creations of one email are serialised across processes and replicas; the
            // existence check runs under that lease, so two runs never both create.
            let key = email.trim().to_lowercase();
            let mut tokens = vec![
                lease::wait_for(
                    engine,
                    &format!("create:{}:{key}", conn.id),
                    "create",
                    LEASE_WAIT,
                    || format!("another run is creating {email} (still running); try again"),
                )
                .await?,
            ];
            // `add_user` with groups changes those groups: hold their leases too (in id order,
            // so two runs never wait on each other), or a concurrent whole-list write of one
            // of them could drop the new member.
            let mut gids = group_ids.clone();
            gids.sort_unstable();
            gids.dedup();
            for gid in gids {
                match lease::wait_for(
                    engine,
                    &format!("group:{}:{gid}", conn.id),
                    "group",
                    LEASE_WAIT,
                    || {
                        format!(
                            "group {gid} is being changed by another run (still running); try again"
                        )
                    },
                )
                .await
                {
                    Ok(t) => tokens.push(t),
                    Err(e) => {
                        for t in &tokens {
                            lease::release(engine, t).await;
                        }
                        return Err(e);
                    }
                }
            }
            lease::held(
                engine,
                &tokens,
                create_user(
                    engine, client, &tokens, name, email, *role_id, group_ids, calls,
                ),
            )
            .await
        }
        StepKind::UpdateUser {
            user_id,
            is_active,
            role_id,
            name,
            email,
        } => {
            calls.push(format!("get_user/{user_id}"));
            let before = client
                .get_user(*user_id)
                .await
                .map_err(|e| upstream("reading the account", e))?;
            calls.push(format!("update_user/{user_id}"));
            let update = UserUpdate {
                is_active: *is_active,
                role_id: *role_id,
                name: name.clone(),
                email: email.clone(),
                ..UserUpdate::default()
            };
            client
                .update_user(*user_id, &update)
                .await
                .map_err(|e| upstream("updating the user", e))?;
            let back = read_back(client, *user_id, calls).await?;
            if is_active.is_some_and(|a| back.is_active != Some(a))
                || role_id.is_some_and(|r| back.role_id != Some(r))
                || name.as_ref().is_some_and(|n| back.name.as_ref() != Some(n))
                || email.as_ref().is_some_and(|e| {
                    back.email.as_deref().and_then(EmailKey::parse) != EmailKey::parse(e)
                })
            {
                return Err(EngineError::Conflict(format!(
                    "TestRail accepted the update of user {user_id} but does not show it on read-back"
                )));
            }
            let (old, new) = (account_of(&before), account_of(&back));
            let subject = new.email.clone();
            let changes = account_changes(Some(&old), &new)
                .into_iter()
                .map(|c| NewChange {
                    kind: c.kind,
                    user: Some(*user_id),
                    group: None,
                    subject: subject.clone(),
                    before: c.before,
                    after: c.after,
                })
                .collect();
            Ok(Executed::Done(Box::new(ProvisionUpdate {
                joined: vec![],
                account: Some(new),
                group: None,
                changes,
                ..Default::default()
            })))
        }
        StepKind::GroupCreate { name } => {
            calls.push("add_group".into());
            let made = client
                .add_group(&testrail_client::NewGroup {
                    name: name.clone(),
                    user_ids: vec![],
                })
                .await
                .map_err(|e| upstream("creating the group", e))?;
            calls.push(format!("get_group/{}", made.id));
            let back = client
                .get_group(made.id)
                .await
                .map_err(|e| upstream("reading the group back", e))?;
            let mut members = back.user_ids.clone();
            members.sort_unstable();
            Ok(Executed::Done(Box::new(ProvisionUpdate {
                group: Some(GroupRecord {
                    id: back.id,
                    name: back.name.clone(),
                    member_ids: members,
                }),
                changes: vec![NewChange {
                    kind: ChangeKind::GroupCreated,
                    user: None,
                    group: Some(back.id),
                    subject: back.name.clone(),
                    before: None,
                    after: back.name.clone(),
                }],
                ..Default::default()
            })))
        }
        StepKind::GroupRename { group_id, name } => {
            // Only the name is sent: the membership is not touched (no whole-list write).
            calls.push(format!("update_group/{group_id}"));
            let before = client
                .get_group(*group_id)
                .await
                .map_err(|e| upstream("reading the group", e))?;
            client
                .update_group(
                    *group_id,
                    &testrail_client::GroupUpdate {
                        name: Some(name.clone()),
                        user_ids: None,
                    },
                )
                .await
                .map_err(|e| upstream("renaming the group", e))?;
            calls.push(format!("get_group/{group_id}"));
            let back = client
                .get_group(*group_id)
                .await
                .map_err(|e| upstream("reading the group back", e))?;
            if back.name.as_deref() != Some(name.as_str()) {
                return Err(EngineError::Conflict(format!(
                    "TestRail accepted the new name of group {group_id} but does not show it on read-back"
                )));
            }
            let mut members = back.user_ids.clone();
            members.sort_unstable();
            Ok(Executed::Done(Box::new(ProvisionUpdate {
                group: Some(GroupRecord {
                    id: back.id,
                    name: back.name.clone(),
                    member_ids: members,
                }),
                changes: vec![NewChange {
                    kind: ChangeKind::GroupRenamed,
                    user: None,
                    group: Some(back.id),
                    subject: back.name.clone(),
                    before: before.name.clone(),
                    after: back.name.clone(),
                }],
                ..Default::default()
            })))
        }
        StepKind::ProjectRole {
            project_id,
            project,
            principal,
            principal_id,
            role_id,
            email,
        } => {
            // An account created by an earlier step: its id is known only now.
            let principal_id = match email {
                Some(e) if *principal_id == 0 => {
                    calls.push("get_user_by_email".into());
                    client
                        .get_user_by_email(e)
                        .await
                        .map_err(|err| upstream("looking up the new account", err))?
                        .id
                }
                _ => *principal_id,
            };
            let principal_id = &principal_id;
            let token = lease::wait_for(
                engine,
                &format!("project:{}:{project_id}", conn.id),
                "project",
                LEASE_WAIT,
                || format!("project {project} is being changed by another run (still running); try again"),
            )
            .await?;
            lease::held(
                engine,
                std::slice::from_ref(&token),
                project_write(
                    engine,
                    client,
                    &token,
                    *project_id,
                    principal,
                    *principal_id,
                    *role_id,
                    calls,
                ),
            )
            .await
        }
        StepKind::GroupAdd {
            group_id,
            user_id,
            group,
        }
        | StepKind::GroupRemove {
            group_id,
            user_id,
            group,
        } => {
            let add = matches!(step.kind, StepKind::GroupAdd { .. });
            let token = lease::wait_for(
                engine,
                &format!("group:{}:{group_id}", conn.id),
                "group",
                LEASE_WAIT,
                || {
                    format!(
                        "group {group} is being changed by another run (still running); try again"
                    )
                },
            )
            .await?;
            let result = lease::held(
                engine,
                std::slice::from_ref(&token),
                group_write(engine, client, &token, *group_id, *user_id, add, calls),
            )
            .await;
            let (after, wrote) = result?;
            if !wrote {
                return Ok(Executed::Noop(format!(
                    "already {} {group} (another run got there first)",
                    if add { "in" } else { "not in" }
                )));
            }
            let subject = step.target.clone();
            let change = NewChange {
                kind: if add {
                    ChangeKind::GroupJoined
                } else {
                    ChangeKind::GroupLeft
                },
                user: Some(*user_id),
                group: Some(*group_id),
                subject: Some(subject),
                before: if add { None } else { Some(group.clone()) },
                after: if add { Some(group.clone()) } else { None },
            };
            let mut members = after.user_ids.clone();
            members.sort_unstable();
            Ok(Executed::Done(Box::new(ProvisionUpdate {
                joined: vec![],
                account: None,
                group: Some(GroupRecord {
                    id: *group_id,
                    name: after.name.clone(),
                    member_ids: members,
                }),
                changes: vec![change],
                ..Default::default()
            })))
        }
    }
}

/// Sets or clears one project role under the project's lease: a fresh read, the whole list
/// of that kind sent with the one entry changed, then a read-back that must show the entry as
/// asked and every other entry as it was. `update_project` is never retried blind (its list may
/// be stale by then): every attempt starts from a fresh read, as group writes do.
#[allow(clippy::too_many_arguments)]
async fn project_write<S: Store>(
    engine: &Engine<S>,
    client: &Client,
    token: &LeaseToken,
    project_id: u64,
    principal: &str,
    principal_id: u64,
    role_id: Option<u64>,
    calls: &mut Vec<String>,
) -> EngineResult<Executed> {
    let entries = |a: &ProjectAccessFacts| -> EngineResult<BTreeMap<u64, u64>> {
        let list = if principal == "user" {
            a.users.as_ref().ok_or_else(|| {
                EngineError::Conflict(
                    "this TestRail does not report users' project roles: the change could not be read back".into(),
                )
            })?
        } else {
            &a.groups
        };
        Ok(list.iter().map(|g| (g.id, g.role_id)).collect())
    };
    let who = if principal == "user" {
        Principal::User(principal_id)
    } else {
        Principal::Group(principal_id)
    };
    let done = |back: &testrail_client::Project| {
        let mut warnings = Vec::new();
        Executed::Done(Box::new(ProvisionUpdate {
            project: Some(connector::to_project(back, &mut warnings)),
            project_principal: Some(who),
            ..Default::default()
        }))
    };
    let mut wrote = false;
    let mut last_error = None;
    for attempt in 1..=GROUP_WRITE_ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        calls.push(format!("get_project/{project_id}"));
        let fresh = match client.get_project(project_id).await {
            Ok(p) => p,
            Err(e) if e.is_retryable() => {
                last_error = Some(upstream("reading the project", e));
                continue;
            }
            Err(e) => return Err(upstream("reading the project", e)),
        };
        let before = entries(&project_access_of(&fresh)?)?;
        if before.get(&principal_id).copied() == role_id {
            // Made so by an earlier attempt of ours whose answer was lost, or by someone else.
            return Ok(if wrote {
                done(&fresh)
            } else {
                Executed::Noop(
                    "already so (another run or someone in TestRail got there first)".into(),
                )
            });
        }
        let mut want = before.clone();
        match role_id {
            Some(r) => {
                want.insert(principal_id, r);
            }
            None => {
                want.remove(&principal_id);
            }
        }
        // Every current entry, plus the changed one (null to clear it).
        let mut body: Vec<(u64, Option<u64>)> =
            want.iter().map(|(id, r)| (*id, Some(*r))).collect();
        if role_id.is_none() {
            body.push((principal_id, None));
        }
        let update = if principal == "user" {
            ProjectUpdate {
                users: Some(
                    body.iter()
                        .map(|(id, r)| ProjectUserRole {
                            user_id: *id,
                            role_id: *r,
                        })
                        .collect(),
                ),
                groups: None,
            }
        } else {
            ProjectUpdate {
                users: None,
                groups: Some(
                    body.iter()
                        .map(|(id, r)| ProjectGroupRole {
                            group_id: *id,
                            role_id: *r,
                        })
                        .collect(),
                ),
            }
        };
        lease::fence(engine, token).await?;
        calls.push(format!("update_project/{project_id}"));
        match client.update_project(project_id, &update).await {
            Ok(_) => {}
            Err(e) if e.is_retryable() => {
                // It may or may not have taken effect: the next attempt reads again.
                wrote = true;
                last_error = Some(upstream("updating the project", e));
                continue;
            }
            Err(e) => return Err(upstream("updating the project", e)),
        }
        wrote = true;
        calls.push(format!("get_project/{project_id}"));
        let back = match client.get_project(project_id).await {
            Ok(p) => p,
            Err(e) if e.is_retryable() => {
                last_error = Some(upstream("reading the project back", e));
                continue;
            }
            Err(e) => return Err(upstream("reading the project back", e)),
        };
        if entries(&project_access_of(&back)?)? == want {
            return Ok(done(&back));
        }
        // Someone outside Accessrail changed the project between our read and our write (our
        // own writers are serialised by the lease): start again from a fresh read.
        last_error = Some(EngineError::Conflict(format!(
            "project {project_id}'s {principal} roles did not read back as written"
        )));
    }
    Err(match last_error {
        Some(EngineError::Conflict(_)) | None => EngineError::Conflict(format!(
            "project {project_id} kept changing under us; the {principal} role was not verified after {GROUP_WRITE_ATTEMPTS} attempts"
        )),
        Some(e) => e,
    })
}

/// Creates a user under the email's lease (and its groups' leases): checks the email is free,
/// checks every lease right before `add_user`, then reads the account back.
#[allow(clippy::too_many_arguments)]
async fn create_user<S: Store>(
    engine: &Engine<S>,
    client: &Client,
    tokens: &[LeaseToken],
    name: &str,
    email: &str,
    role_id: Option<u64>,
    group_ids: &[u64],
    calls: &mut Vec<String>,
) -> EngineResult<Executed> {
    calls.push("get_user_by_email".into());
    match client.get_user_by_email(email).await {
        Ok(u) => {
            return Ok(Executed::Noop(format!(
                "an account with this email already exists (TestRail user {}, created by another run); nothing created",
                u.id
            )));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(upstream("looking up the email", e)),
    }
    for token in tokens {
        lease::fence(engine, token).await?;
    }
    calls.push("add_user".into());
    let new = NewUser {
        role_id,
        group_ids: (!group_ids.is_empty()).then(|| group_ids.to_vec()),
        ..NewUser::new(name.to_string(), email.to_string())
    };
    let created = client
        .add_user(&new)
        .await
        .map_err(|e| upstream("creating the user", e))?;
    let back = read_back(client, created.id, calls).await?;
    let ok = back.is_active == Some(true)
        && back
            .email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(email))
        && role_id.is_none_or(|r| back.role_id == Some(r))
        && group_ids
            .iter()
            .all(|g| back.group_ids.as_ref().is_none_or(|have| have.contains(g)));
    if !ok {
        return Err(EngineError::Conflict(format!(
            "TestRail created user {} but does not show it as asked (active, role, groups)",
            back.id
        )));
    }
    let account = account_of(&back);
    let mut changes = vec![NewChange {
        kind: ChangeKind::AccountAdded,
        user: Some(back.id),
        group: None,
        subject: Some(email.to_string()),
        before: None,
        after: Some(email.to_string()),
    }];
    for g in group_ids {
        changes.push(NewChange {
            kind: ChangeKind::GroupJoined,
            user: Some(back.id),
            group: Some(*g),
            subject: Some(email.to_string()),
            before: None,
            after: None,
        });
    }
    Ok(Executed::Done(Box::new(ProvisionUpdate {
        joined: group_ids.iter().map(|g| (*g, back.id)).collect(),
        account: Some(account),
        group: None,
        changes,
        ..Default::default()
    })))
}

/// Attempts at a group's read-modify-write before giving up.
const GROUP_WRITE_ATTEMPTS: u32 = 4;

/// Read-modify-write of a group's whole member list, under the group's lease. Every attempt
/// starts from a fresh read and checks the lease right before writing; the write is never
/// retried blind (its list may be stale by then). Done only when the read-back shows exactly
/// the list written. Returns the group as read last and whether this run wrote it.
#[allow(clippy::too_many_arguments)]
async fn group_write<S: Store>(
    engine: &Engine<S>,
    client: &Client,
    token: &LeaseToken,
    group_id: u64,
    user_id: u64,
    add: bool,
    calls: &mut Vec<String>,
) -> EngineResult<(testrail_client::Group, bool)> {
    let mut wrote = false;
    let mut last_error = None;
    for attempt in 1..=GROUP_WRITE_ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        calls.push(format!("get_group/{group_id}"));
        let fresh = match client.get_group(group_id).await {
            Ok(g) => g,
            Err(e) if e.is_retryable() => {
                last_error = Some(upstream("reading the group", e));
                continue;
            }
            Err(e) => return Err(upstream("reading the group", e)),
        };
        let mut ids = fresh.user_ids.clone();
        if ids.contains(&user_id) == add {
            // Made so, by an earlier attempt of ours whose answer was lost, or by someone else.
            return Ok((fresh, wrote));
        }
        if add {
            ids.push(user_id);
        } else {
            ids.retain(|u| *u != user_id);
        }
        lease::fence(engine, token).await?;
        calls.push(format!("update_group/{group_id}"));
        let update = GroupUpdate {
            name: None,
            user_ids: Some(ids.clone()),
        };
        match client.update_group(group_id, &update).await {
            Ok(_) => {}
            Err(e) if e.is_retryable() => {
                // It may or may not have taken effect: the next attempt reads again.
                wrote = true;
                last_error = Some(upstream("writing the group", e));
                continue;
            }
            Err(e) => return Err(upstream("writing the group", e)),
        }
        wrote = true;
        calls.push(format!("get_group/{group_id}"));
        let after = match client.get_group(group_id).await {
            Ok(g) => g,
            Err(e) if e.is_retryable() => {
                last_error = Some(upstream("reading the group back", e));
                continue;
            }
            Err(e) => return Err(upstream("reading the group back", e)),
        };
        let want: BTreeSet<u64> = ids.iter().copied().collect();
        let got: BTreeSet<u64> = after.user_ids.iter().copied().collect();
        if want == got {
            return Ok((after, true));
        }
        // Someone outside Accessrail changed the group between our read and our write (our
        // own writers are serialised by the lease): start again from a fresh read.
        last_error = Some(EngineError::Conflict(format!(
            "group {group_id} did not read back as written"
        )));
    }
    Err(match last_error {
        Some(EngineError::Conflict(_)) | None => EngineError::Conflict(format!(
            "group {group_id} kept changing under us; the membership was not verified after {GROUP_WRITE_ATTEMPTS} attempts"
        )),
        Some(e) => e,
    })
}

#[cfg(test)]
mod did_you_mean_tests {
    use super::did_you_mean;

    #[test]
    fn close_names_first_then_all_then_where_to_look() {
        let groups = ["QA", "Developers", "Automation", "Mobile QA"];
        assert_eq!(
            did_you_mean("developer", groups.iter().copied()),
            "did you mean: Developers?"
        );
        assert_eq!(
            did_you_mean("qa", groups.iter().copied()),
            "did you mean: Mobile QA, QA?"
        );
        assert_eq!(
            did_you_mean("NoSuchGroup", groups.iter().copied()),
            "TestRail has: QA, Developers, Automation, Mobile QA"
        );
        let many: Vec<String> = (0..20).map(|i| format!("Team {i}")).collect();
        assert!(
            did_you_mean("zzz", many.iter().map(String::as_str)).starts_with("TestRail has 20;")
        );
        assert_eq!(did_you_mean("x", std::iter::empty()), "TestRail has none");
    }
}
