//! Project access as an admin asks about it: the projects with counts, one person's effective
//! access across projects, and who can reach one project, each with the source that decided it
//! (`domain::project::effective_access`, the one rule), now or at a scan.

use std::collections::BTreeMap;
use std::sync::Arc;

use accessrail_domain::Account;
use accessrail_domain::email::EmailKey;
use accessrail_domain::project::{
    AccessSource, AccountFacts, EffectiveAccess, Knowledge, Project, RoleInfo, SourcedRole,
    can_access, effective_access, role_label,
};
use accessrail_store::{Connection, Store};
use serde::Serialize;

use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};
use crate::provision::did_you_mean;

/// The sentence shown wherever effective access is: TestRail does not document the rule.
pub const RULE_NOTE: &str = "effective access is Accessrail's reading (TestRail does not document how it combines them): administrators reach every project; else the user's own project role; else the most permissive of their groups' project roles; else the project's default role";

/// One source of access, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceView {
    /// `administrator`, `user_role`, `group_role` or `project_default`.
    pub kind: &'static str,
    /// A readable label: `administrator`, `own project role`, `group QA`, `project default`.
    pub label: String,
    pub group_id: Option<u64>,
    pub role_id: Option<u64>,
    pub role: Option<String>,
    /// The grant said "the user's global role".
    pub via_global_role: bool,
}

/// One account's access to one project.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessRow {
    pub project_id: u64,
    pub project: String,
    pub project_completed: bool,
    pub account_id: u64,
    pub email: Option<String>,
    pub name: Option<String>,
    pub is_active: bool,
    /// The account can reach the project; `None` when that is unknown.
    pub can_access: Option<bool>,
    pub role_id: Option<u64>,
    pub role: Option<String>,
    /// The source that decided; `None` when unknown.
    pub source: Option<SourceView>,
    /// Other sources that offered a role.
    pub also: Vec<SourceView>,
    /// `known`, `user_roles_unknown` (Professional: a user's own project role, if set, is not
    /// reported and would win) or `unknown` (TestRail before 7.3).
    pub knowledge: Knowledge,
}

impl AccessRow {
    /// The other sources that offered a role: `group QA: Designer; project default: Tester`.
    pub fn also_text(&self) -> String {
        self.also
            .iter()
            .map(|s| format!("{}: {}", s.label, s.role.as_deref().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One project with its counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectView {
    pub id: u64,
    pub name: String,
    pub is_completed: bool,
    pub completed_on: Option<i64>,
    /// `known`, `user_roles_unknown` or `unknown`.
    pub access: Knowledge,
    pub default_role: Option<String>,
    pub default_role_id: Option<u64>,
    /// Groups with a project role here.
    pub group_roles: u64,
    /// Users with a project role of their own here (`None` when TestRail does not report them).
    pub user_roles: Option<u64>,
    /// Active accounts that can reach the project (`None` when unknown).
    pub active_with_access: Option<u64>,
}

/// What the access views are computed from: one revision's accounts, projects, roles and
/// group names.
#[derive(Debug)]
pub struct AccessFacts {
    pub accounts: Vec<Account>,
    pub projects: Vec<Project>,
    roles: BTreeMap<u64, RoleInfo>,
    group_names: BTreeMap<u64, String>,
}

impl AccessFacts {
    pub async fn load<S: Store>(
        engine: &Engine<S>,
        conn: &Connection,
        at_scan: Option<i64>,
    ) -> EngineResult<Self> {
        let store = engine.store();
        let accounts = match at_scan {
            None => store.current_accounts(&conn.id).await?,
            Some(s) => store.accounts_at_scan(&conn.id, s).await?,
        };
        let projects = store.projects(&conn.id, at_scan).await?;
        let roles = store
            .current_roles(&conn.id)
            .await?
            .into_iter()
            .map(|r| {
                (
                    r.id,
                    RoleInfo {
                        name: r.name,
                        is_project_admin: r.is_project_admin.unwrap_or(false),
                    },
                )
            })
            .collect();
        let group_names = store
            .current_group_names(&conn.id)
            .await?
            .into_iter()
            .map(|(id, n)| (id, n.unwrap_or_else(|| format!("group {id}"))))
            .collect();
        Ok(Self {
            accounts,
            projects,
            roles,
            group_names,
        })
    }

    fn facts(a: &Account) -> AccountFacts {
        AccountFacts {
            id: a.id,
            is_admin: a.is_admin.unwrap_or(false),
            global_role_id: a.role_id,
            global_role: a.role.clone(),
            group_ids: a.group_ids.clone(),
        }
    }

    fn source(&self, s: &SourcedRole) -> SourceView {
        let (kind, label, group_id) = match &s.source {
            AccessSource::Administrator => ("administrator", "administrator".to_string(), None),
            AccessSource::UserRole => ("user_role", "own project role".to_string(), None),
            AccessSource::GroupRole { group_id } => (
                "group_role",
                format!(
                    "group {}",
                    self.group_names
                        .get(group_id)
                        .cloned()
                        .unwrap_or_else(|| group_id.to_string())
                ),
                Some(*group_id),
            ),
            AccessSource::ProjectDefault => {
                ("project_default", "project default".to_string(), None)
            }
        };
        SourceView {
            kind,
            label,
            group_id,
            role_id: s.role_id,
            role: s.role.clone(),
            via_global_role: s.via_global_role,
        }
    }

    fn row(&self, a: &Account, p: &Project, e: EffectiveAccess) -> AccessRow {
        let decided = e.decided_by.as_ref();
        AccessRow {
            project_id: p.id,
            project: p.display_name(),
            project_completed: p.is_completed,
            account_id: a.id,
            email: a.email.clone(),
            name: a.name.clone(),
            is_active: a.is_active,
            can_access: (e.knowledge != Knowledge::Unknown).then_some(e.can_access),
            role_id: decided.and_then(|d| d.role_id),
            role: decided.and_then(|d| d.role.clone()),
            source: decided.map(|d| self.source(d)),
            also: e.also.iter().map(|s| self.source(s)).collect(),
            knowledge: e.knowledge,
        }
    }

    /// Every project with its counts.
    pub fn projects(&self) -> Vec<ProjectView> {
        // Each active account's facts once, not once per project.
        let active = self.active_facts();
        self.projects
            .iter()
            .map(|p| self.view(p, &active))
            .collect()
    }

    /// One project with its counts (a project's page needs no other project's).
    pub fn project_view(&self, p: &Project) -> ProjectView {
        self.view(p, &self.active_facts())
    }

    fn active_facts(&self) -> Vec<AccountFacts> {
        self.accounts
            .iter()
            .filter(|a| a.is_active)
            .map(Self::facts)
            .collect()
    }

    fn view(&self, p: &Project, active: &[AccountFacts]) -> ProjectView {
        let knowledge = match &p.access {
            None => Knowledge::Unknown,
            Some(a) if a.users.is_none() => Knowledge::UserRolesUnknown,
            Some(_) => Knowledge::Known,
        };
        let active_with_access = (knowledge != Knowledge::Unknown).then(|| {
            active
                .iter()
                .filter(|f| can_access(f, p, &self.roles) == Some(true))
                .count() as u64
        });
        let default = p.access.as_ref().and_then(|a| a.default.as_ref());
        ProjectView {
            id: p.id,
            name: p.display_name(),
            is_completed: p.is_completed,
            completed_on: p.completed_on,
            access: knowledge,
            default_role: default.map(role_label),
            default_role_id: default.map(|d| d.role_id),
            group_roles: p.access.as_ref().map_or(0, |a| a.groups.len() as u64),
            user_roles: p
                .access
                .as_ref()
                .and_then(|a| a.users.as_ref())
                .map(|u| u.len() as u64),
            active_with_access,
        }
    }

    /// The account with this email (any case), or a usage error naming close ones.
    pub fn account_by_email(&self, email: &str) -> EngineResult<&Account> {
        let key = EmailKey::parse(email);
        self.accounts
            .iter()
            .find(|a| key.is_some() && a.email.as_deref().and_then(EmailKey::parse) == key)
            .ok_or_else(|| {
                EngineError::NotFound(format!(
                    "no TestRail account with email {email:?}{}",
                    did_you_mean(
                        email,
                        self.accounts.iter().filter_map(|a| a.email.as_deref())
                    )
                ))
            })
    }

    /// A project by id or name (any case), or a usage error naming close ones.
    pub fn project(&self, wanted: &str) -> EngineResult<&Project> {
        let w = wanted.trim();
        let found = w
            .parse::<u64>()
            .ok()
            .and_then(|id| self.projects.iter().find(|p| p.id == id))
            .or_else(|| {
                self.projects.iter().find(|p| {
                    p.name
                        .as_deref()
                        .is_some_and(|n| n.trim().eq_ignore_ascii_case(w))
                })
            });
        found.ok_or_else(|| {
            EngineError::NotFound(format!(
                "no project {w:?}{}{}",
                did_you_mean(w, self.projects.iter().filter_map(|p| p.name.as_deref())),
                if self.projects.is_empty() {
                    " (no projects are known yet: run `accessrail scan`)"
                } else {
                    ""
                }
            ))
        })
    }

    /// One account's access to every project (projects it cannot reach included, marked so).
    pub fn for_account(&self, account: &Account) -> Vec<AccessRow> {
        let f = Self::facts(account);
        self.projects
            .iter()
            .map(|p| self.row(account, p, effective_access(&f, p, &self.roles)))
            .collect()
    }

    /// Who can reach a project: every active account whose access is not "no access" (with
    /// `everyone`, every account), active ones first, then by email.
    pub fn for_project(&self, project: &Project, everyone: bool) -> Vec<AccessRow> {
        self.project_page(project, everyone, 0, usize::MAX).rows
    }

    /// One page of [`Self::for_project`], with counts over every account it lists. The quick
    /// check decides who is listed; rows (with their sources) are built for the page only.
    pub fn project_page(
        &self,
        project: &Project,
        everyone: bool,
        offset: usize,
        limit: usize,
    ) -> ProjectAccessPage {
        let mut listed: Vec<(&Account, AccountFacts, Option<bool>)> = self
            .accounts
            .iter()
            .filter(|a| everyone || a.is_active)
            .filter_map(|a| {
                let f = Self::facts(a);
                let can = can_access(&f, project, &self.roles);
                (everyone || can != Some(false)).then_some((a, f, can))
            })
            .collect();
        listed.sort_by(|(a, ..), (b, ..)| {
            b.is_active
                .cmp(&a.is_active)
                .then_with(|| a.email.cmp(&b.email))
                .then(a.id.cmp(&b.id))
        });
        let reach = listed.iter().filter(|(.., c)| *c == Some(true)).count() as u64;
        let unknown = listed.iter().filter(|(.., c)| c.is_none()).count() as u64;
        let rows = listed
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(a, f, _)| self.row(a, project, effective_access(f, project, &self.roles)))
            .collect();
        ProjectAccessPage {
            total: listed.len() as u64,
            reach,
            unknown,
            rows,
        }
    }
}

/// One page of who can reach a project.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectAccessPage {
    /// Accounts listed in all (every page).
    pub total: u64,
    /// Of those, how many can reach the project, and how many are unknown.
    pub reach: u64,
    pub unknown: u64,
    pub rows: Vec<AccessRow>,
}

/// The current revision's access facts and project counts, kept until a new revision (a scan,
/// a provisioning action, a change of matches) commits: a page of the console or the API then
/// costs a lookup, not a load of every account and the rule over every account and project.
/// Views at a past scan are loaded each time.
#[derive(Debug, Default)]
pub struct AccessCache {
    current: tokio::sync::Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    connection: String,
    revision: Option<i64>,
    facts: Arc<AccessFacts>,
    views: Arc<Vec<ProjectView>>,
}

impl AccessCache {
    /// The facts and project counts now (`at_scan` `None`) or at a scan.
    pub async fn get<S: Store>(
        &self,
        engine: &Engine<S>,
        conn: &Connection,
        at_scan: Option<i64>,
    ) -> EngineResult<(Arc<AccessFacts>, Arc<Vec<ProjectView>>)> {
        if at_scan.is_some() {
            let facts = AccessFacts::load(engine, conn, at_scan).await?;
            let views = facts.projects();
            return Ok((Arc::new(facts), Arc::new(views)));
        }
        // One load at a time: concurrent first requests wait for it instead of repeating it.
        let mut slot = self.current.lock().await;
        let revision = engine.store().latest_revision(&conn.id).await?;
        if let Some(c) = slot.as_ref()
            && c.connection == conn.id
            && c.revision == revision
        {
            return Ok((c.facts.clone(), c.views.clone()));
        }
        let facts = Arc::new(AccessFacts::load(engine, conn, None).await?);
        let views = Arc::new(facts.projects());
        *slot = Some(Cached {
            connection: conn.id.clone(),
            revision,
            facts: facts.clone(),
            views: views.clone(),
        });
        Ok((facts, views))
    }
}
