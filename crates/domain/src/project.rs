//! TestRail projects and who can reach them: the project facts a scan reads (TestRail 7.3+),
//! the one rule that turns them into an account's effective access, and what changed between
//! two scans.
//!
//! TestRail documents the ingredients (a project's default role, a role per group, on
//! Enterprise a role per user; role 0 meaning "the user's global role") but not how it
//! combines them. [`effective_access`] is **Accessrail's choice**, written down in
//! `docs/simulator.md` and always shown with its source so an administrator can check it:
//!
//! 1. administrators reach every project (with their global role);
//! 2. otherwise the user's own project role wins;
//! 3. otherwise the project roles of the user's groups: the most permissive one
//!    ([`permissiveness`]); every group that grants a role is listed as a source;
//! 4. otherwise the project's default role.
//!
//! Role 0 anywhere means "the user's global role". A role named "No Access" means no access.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ChangeKind;

/// Role id that stands for "the user's global role" in project access.
pub const GLOBAL_ROLE: u64 = 0;

/// One role given in a project: to a user, to a group, or as the project's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectGrant {
    /// The user or group id (0 for the default).
    pub id: u64,
    /// The role id; [`GLOBAL_ROLE`] (0) for "the user's global role".
    pub role_id: u64,
    /// The role's name as TestRail gave it.
    pub role: Option<String>,
}

/// What a project's access looked like in one scan (TestRail 7.3+).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProjectAccessFacts {
    /// The project's default role; `None` when TestRail sent none.
    pub default: Option<ProjectGrant>,
    /// Groups with a project role, by group id.
    pub groups: Vec<ProjectGrant>,
    /// Users with a project role of their own, by user id; `None` when TestRail does not report
    /// them (Professional edition): per-user roles are then unknown.
    pub users: Option<Vec<ProjectGrant>>,
}

/// A TestRail project as a scan saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub id: u64,
    pub name: Option<String>,
    pub is_completed: bool,
    /// Unix seconds, when TestRail gave it.
    pub completed_on: Option<i64>,
    /// `None`: TestRail did not report access (before 7.3, or the fields were absent).
    pub access: Option<ProjectAccessFacts>,
}

impl Project {
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("project {}", self.id))
    }
}

/// A role as the role list has it, for ranking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    pub name: Option<String>,
    pub is_project_admin: bool,
}

/// The account facts the rule needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFacts {
    pub id: u64,
    pub is_admin: bool,
    pub global_role_id: Option<u64>,
    pub global_role: Option<String>,
    pub group_ids: Vec<u64>,
}

/// Where a piece of access comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AccessSource {
    /// TestRail administrators reach every project.
    Administrator,
    /// The user's own project role.
    UserRole,
    /// A group's project role.
    GroupRole { group_id: u64 },
    /// The project's default role.
    ProjectDefault,
}

impl AccessSource {
    /// Short label for tables: `administrator`, `own project role`, `group 4`, `project default`.
    pub fn label(&self) -> String {
        match self {
            Self::Administrator => "administrator".into(),
            Self::UserRole => "own project role".into(),
            Self::GroupRole { group_id } => format!("group {group_id}"),
            Self::ProjectDefault => "project default".into(),
        }
    }
}

/// One source and the role it gives (after resolving role 0 to the global role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcedRole {
    pub source: AccessSource,
    /// The effective role id; `None` when it cannot be resolved (role 0 and no global role).
    pub role_id: Option<u64>,
    pub role: Option<String>,
    /// The grant said "the user's global role" (role 0).
    pub via_global_role: bool,
}

/// How much Accessrail knows about one account's access to one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Knowledge {
    /// Every ingredient was reported.
    Known,
    /// TestRail does not report per-user project roles here (Professional edition): a user's
    /// own project role, if one is set, would override what is shown.
    UserRolesUnknown,
    /// TestRail reported no project access at all (before 7.3).
    Unknown,
}

impl Knowledge {
    /// The code the API and `--json` use: `known`, `user_roles_unknown`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Known => "known",
            Self::UserRolesUnknown => "user_roles_unknown",
            Self::Unknown => "unknown",
        }
    }

    /// In words, for tables and pages.
    pub fn label(self) -> &'static str {
        match self {
            Self::Known => "known",
            Self::UserRolesUnknown => "user roles not reported",
            Self::Unknown => "unknown (before 7.3)",
        }
    }
}

/// An account's effective access to one project, with the source that decided it and every
/// other source that offered a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveAccess {
    pub project_id: u64,
    pub knowledge: Knowledge,
    /// The deciding source; `None` when access is unknown.
    pub decided_by: Option<SourcedRole>,
    /// Other sources that offered a role but did not decide (lower group roles, the default).
    pub also: Vec<SourcedRole>,
    /// The account can reach the project (a role other than "No Access" decided).
    pub can_access: bool,
}

/// Is this role TestRail's "No Access"?
pub fn is_no_access(role: Option<&str>) -> bool {
    role.is_some_and(|r| r.trim().eq_ignore_ascii_case("no access"))
}

/// How permissive a role is, for choosing among several group roles (our choice, see the module
/// docs): No Access < Guest < Read-only < Tester < Designer < Lead < any role not on this ladder
/// (a custom role might grant anything) < project-administrator roles.
pub fn permissiveness(role: Option<&str>, is_project_admin: bool) -> u8 {
    if is_project_admin {
        return 100;
    }
    let Some(name) = role else { return 50 };
    let name = name.trim();
    let is = |s: &str| name.eq_ignore_ascii_case(s);
    if is("no access") {
        0
    } else if is("guest") {
        10
    } else if is("read-only") || is("read only") || is("readonly") {
        20
    } else if is("tester") {
        30
    } else if is("designer") {
        40
    } else if is("lead") {
        45
    } else {
        50
    }
}

/// One source's offer for one account, borrowed (the decision allocates nothing: it runs for
/// every account of every project when counting who can reach them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Offer<'a> {
    source: AccessSource,
    role_id: Option<u64>,
    role: Option<&'a str>,
    via_global_role: bool,
}

impl Offer<'_> {
    fn owned(&self) -> SourcedRole {
        SourcedRole {
            source: self.source,
            role_id: self.role_id,
            role: self.role.map(str::to_string),
            via_global_role: self.via_global_role,
        }
    }
}

fn offer<'a>(
    source: AccessSource,
    grant: &'a ProjectGrant,
    account: &'a AccountFacts,
    roles: &'a BTreeMap<u64, RoleInfo>,
) -> Offer<'a> {
    let name_of = |id: u64| roles.get(&id).and_then(|r| r.name.as_deref());
    if grant.role_id == GLOBAL_ROLE {
        Offer {
            source,
            role_id: account.global_role_id,
            role: account
                .global_role
                .as_deref()
                .or_else(|| account.global_role_id.and_then(name_of)),
            via_global_role: true,
        }
    } else {
        Offer {
            source,
            role_id: Some(grant.role_id),
            role: grant.role.as_deref().or_else(|| name_of(grant.role_id)),
            via_global_role: false,
        }
    }
}

fn rank(o: &Offer<'_>, roles: &BTreeMap<u64, RoleInfo>) -> (u8, std::cmp::Reverse<u64>) {
    let pa = o
        .role_id
        .and_then(|id| roles.get(&id))
        .is_some_and(|i| i.is_project_admin);
    (
        permissiveness(o.role, pa),
        std::cmp::Reverse(o.role_id.unwrap_or(u64::MAX)),
    )
}

/// A user's own grant in a list sorted by user id (as the connector and the store keep it),
/// found by binary search, else by a walk (an unsorted list from elsewhere).
fn own_grant(users: &[ProjectGrant], id: u64) -> Option<&ProjectGrant> {
    match users.binary_search_by_key(&id, |g| g.id) {
        Ok(i) => users.get(i),
        Err(_) if users.is_sorted_by_key(|g| g.id) => None,
        Err(_) => users.iter().find(|g| g.id == id),
    }
}

/// The rule's decision: the deciding offer (if any) and how much is known. A deciding role
/// whose name is unknown (role 0 with no global role, an id missing from the role list) makes
/// the answer unknown: whether it is "No Access" cannot be told.
fn decide<'a>(
    account: &'a AccountFacts,
    project: &'a Project,
    roles: &'a BTreeMap<u64, RoleInfo>,
) -> (Option<Offer<'a>>, Knowledge) {
    let admin = || Offer {
        source: AccessSource::Administrator,
        role_id: account.global_role_id,
        role: account.global_role.as_deref(),
        via_global_role: true,
    };
    if account.is_admin {
        return (Some(admin()), Knowledge::Known);
    }
    let Some(access) = &project.access else {
        return (None, Knowledge::Unknown);
    };
    let knowledge = if access.users.is_some() {
        Knowledge::Known
    } else {
        Knowledge::UserRolesUnknown
    };
    let own = access
        .users
        .as_deref()
        .and_then(|users| own_grant(users, account.id));
    if let Some(g) = own {
        return named(offer(AccessSource::UserRole, g, account, roles), knowledge);
    }
    // The most permissive of the account's groups' roles; ties by the lower role id.
    let best_group = access
        .groups
        .iter()
        .filter(|g| account.group_ids.contains(&g.id))
        .map(|g| {
            offer(
                AccessSource::GroupRole { group_id: g.id },
                g,
                account,
                roles,
            )
        })
        // The first of equally ranked groups (groups are sorted by id), as the full view lists.
        .fold(None::<Offer<'_>>, |best, o| match best {
            Some(b) if rank(&b, roles) >= rank(&o, roles) => Some(b),
            _ => Some(o),
        });
    if let Some(o) = best_group {
        return named(o, knowledge);
    }
    match &access.default {
        Some(g) => named(
            offer(AccessSource::ProjectDefault, g, account, roles),
            knowledge,
        ),
        // Nothing applies and TestRail sent no default: not "no access", unknown.
        None => (None, Knowledge::Unknown),
    }
}

/// An offer that decides, and the knowledge: unknown when its role has no name.
fn named(o: Offer<'_>, knowledge: Knowledge) -> (Option<Offer<'_>>, Knowledge) {
    if o.role.is_none() {
        (Some(o), Knowledge::Unknown)
    } else {
        (Some(o), knowledge)
    }
}

/// Whether the account can reach the project by [`effective_access`]'s rule (`None`: unknown),
/// without building the sources: for counting over every account.
pub fn can_access(
    account: &AccountFacts,
    project: &Project,
    roles: &BTreeMap<u64, RoleInfo>,
) -> Option<bool> {
    let (decided, knowledge) = decide(account, project, roles);
    (knowledge != Knowledge::Unknown).then(|| decided.is_some_and(|d| !is_no_access(d.role)))
}

/// The one rule (see the module docs): an account's effective access to a project, with the
/// source that decided and every other source that offered a role.
pub fn effective_access(
    account: &AccountFacts,
    project: &Project,
    roles: &BTreeMap<u64, RoleInfo>,
) -> EffectiveAccess {
    let (decided, knowledge) = decide(account, project, roles);
    let mut offers: Vec<Offer<'_>> = Vec::new();
    if let Some(access) = &project.access {
        if let Some(g) = access
            .users
            .as_deref()
            .and_then(|users| own_grant(users, account.id))
        {
            offers.push(offer(AccessSource::UserRole, g, account, roles));
        }
        let mut groups: Vec<Offer<'_>> = access
            .groups
            .iter()
            .filter(|g| account.group_ids.contains(&g.id))
            .map(|g| {
                offer(
                    AccessSource::GroupRole { group_id: g.id },
                    g,
                    account,
                    roles,
                )
            })
            .collect();
        groups.sort_by_key(|o| std::cmp::Reverse(rank(o, roles)));
        offers.extend(groups);
        if let Some(g) = &access.default {
            offers.push(offer(AccessSource::ProjectDefault, g, account, roles));
        }
    }
    // Everything else that offered a role, for the record.
    if let Some(d) = &decided
        && let Some(pos) = offers.iter().position(|o| o == d)
    {
        offers.remove(pos);
    }
    EffectiveAccess {
        project_id: project.id,
        knowledge,
        decided_by: decided.map(|d| d.owned()),
        also: offers.iter().map(Offer::owned).collect(),
        can_access: decided.is_some_and(|d| !is_no_access(d.role)),
    }
}

/// Whose access a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    User(u64),
    Group(u64),
    /// The project's default role (everyone without something more specific).
    Everyone,
}

/// One difference between two sightings of the projects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectChange {
    pub kind: ChangeKind,
    pub project_id: u64,
    pub project: Option<String>,
    pub principal: Option<Principal>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A role's display: its name, "Global Role" for 0, or `role N`.
pub fn role_label(grant: &ProjectGrant) -> String {
    if grant.role_id == GLOBAL_ROLE {
        return "Global Role".into();
    }
    grant
        .role
        .clone()
        .unwrap_or_else(|| format!("role {}", grant.role_id))
}

fn grant_changes(
    project: &Project,
    principal: fn(u64) -> Principal,
    old: &[ProjectGrant],
    new: &[ProjectGrant],
    out: &mut Vec<ProjectChange>,
) {
    let old: BTreeMap<u64, &ProjectGrant> = old.iter().map(|g| (g.id, g)).collect();
    let new: BTreeMap<u64, &ProjectGrant> = new.iter().map(|g| (g.id, g)).collect();
    let mk =
        |kind, id, before: Option<&&ProjectGrant>, after: Option<&&ProjectGrant>| ProjectChange {
            kind,
            project_id: project.id,
            project: project.name.clone(),
            principal: Some(principal(id)),
            before: before.map(|g| role_label(g)),
            after: after.map(|g| role_label(g)),
        };
    for (id, g) in &new {
        match old.get(id) {
            None => out.push(mk(ChangeKind::ProjectAccessGranted, *id, None, Some(g))),
            Some(o) if o.role_id != g.role_id => {
                out.push(mk(ChangeKind::ProjectAccessChanged, *id, Some(o), Some(g)))
            }
            Some(_) => {}
        }
    }
    for (id, o) in &old {
        if !new.contains_key(id) {
            out.push(mk(ChangeKind::ProjectAccessRevoked, *id, Some(o), None));
        }
    }
}

/// The changes from `old` to `new` (both sorted or not; matched by id). Access that either side
/// does not know (before 7.3, or per-user roles on Professional) produces no access changes: a
/// change of what TestRail reports is not a change of who can reach what.
pub fn project_changes(old: &[Project], new: &[Project]) -> Vec<ProjectChange> {
    let old_by: BTreeMap<u64, &Project> = old.iter().map(|p| (p.id, p)).collect();
    let new_ids: std::collections::BTreeSet<u64> = new.iter().map(|p| p.id).collect();
    let mut out = Vec::new();
    for p in new {
        let base = |kind, before: Option<String>, after: Option<String>| ProjectChange {
            kind,
            project_id: p.id,
            project: p.name.clone(),
            principal: None,
            before,
            after,
        };
        let Some(o) = old_by.get(&p.id) else {
            out.push(base(ChangeKind::ProjectAdded, None, None));
            if p.is_completed {
                out.push(base(ChangeKind::ProjectCompleted, None, None));
            }
            continue;
        };
        if o.name != p.name {
            out.push(base(
                ChangeKind::ProjectRenamed,
                o.name.clone(),
                p.name.clone(),
            ));
        }
        if !o.is_completed && p.is_completed {
            out.push(base(ChangeKind::ProjectCompleted, None, None));
        } else if o.is_completed && !p.is_completed {
            out.push(base(ChangeKind::ProjectReopened, None, None));
        }
        let (Some(oa), Some(na)) = (&o.access, &p.access) else {
            continue;
        };
        let od: Vec<ProjectGrant> = oa.default.iter().cloned().collect();
        let nd: Vec<ProjectGrant> = na.default.iter().cloned().collect();
        grant_changes(p, |_| Principal::Everyone, &od, &nd, &mut out);
        grant_changes(p, Principal::Group, &oa.groups, &na.groups, &mut out);
        if let (Some(ou), Some(nu)) = (&oa.users, &na.users) {
            grant_changes(p, Principal::User, ou, nu, &mut out);
        }
    }
    for o in old {
        if !new_ids.contains(&o.id) {
            out.push(ProjectChange {
                kind: ChangeKind::ProjectRemoved,
                project_id: o.id,
                project: o.name.clone(),
                principal: None,
                before: o.name.clone(),
                after: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> BTreeMap<u64, RoleInfo> {
        [
            (1, "Lead", false),
            (2, "Designer", false),
            (3, "Tester", false),
            (4, "Read-only", false),
            (5, "Guest", false),
            (6, "Project Lead", true),
            (7, "No Access", false),
            (9, "Release Captain", false),
        ]
        .into_iter()
        .map(|(id, n, pa)| {
            (
                id,
                RoleInfo {
                    name: Some(n.into()),
                    is_project_admin: pa,
                },
            )
        })
        .collect()
    }

    fn g(id: u64, role_id: u64) -> ProjectGrant {
        let name = roles().get(&role_id).and_then(|r| r.name.clone());
        ProjectGrant {
            id,
            role_id,
            role: name,
        }
    }

    fn person(id: u64, groups: &[u64]) -> AccountFacts {
        AccountFacts {
            id,
            is_admin: false,
            global_role_id: Some(3),
            global_role: Some("Tester".into()),
            group_ids: groups.to_vec(),
        }
    }

    fn project(
        default: u64,
        groups: Vec<ProjectGrant>,
        users: Option<Vec<ProjectGrant>>,
    ) -> Project {
        Project {
            id: 10,
            name: Some("Mobile".into()),
            is_completed: false,
            completed_on: None,
            access: Some(ProjectAccessFacts {
                default: Some(g(0, default)),
                groups,
                users,
            }),
        }
    }

    #[test]
    fn each_source_decides_in_its_turn() {
        let r = roles();
        let p = project(4, vec![g(1, 2), g(2, 1)], Some(vec![g(5, 5)]));
        // Own role beats groups and default.
        let a = effective_access(&person(5, &[1, 2]), &p, &r);
        assert_eq!(
            a.decided_by.as_ref().unwrap().source,
            AccessSource::UserRole
        );
        assert_eq!(
            a.decided_by.as_ref().unwrap().role.as_deref(),
            Some("Guest")
        );
        assert_eq!(
            a.also.len(),
            3,
            "both groups and the default are listed too"
        );
        // The most permissive group wins: Lead (group 2) over Designer (group 1).
        let a = effective_access(&person(6, &[1, 2]), &p, &r);
        assert_eq!(
            a.decided_by.as_ref().unwrap().source,
            AccessSource::GroupRole { group_id: 2 }
        );
        assert_eq!(a.also[0].source, AccessSource::GroupRole { group_id: 1 });
        // Nothing specific: the default.
        let a = effective_access(&person(7, &[]), &p, &r);
        assert_eq!(
            a.decided_by.as_ref().unwrap().source,
            AccessSource::ProjectDefault
        );
        assert_eq!(
            a.decided_by.as_ref().unwrap().role.as_deref(),
            Some("Read-only")
        );
        assert!(a.can_access);
        // Administrators reach everything, whatever the grants say.
        let mut admin = person(5, &[]);
        admin.is_admin = true;
        let a = effective_access(&admin, &project(7, vec![], Some(vec![g(5, 7)])), &r);
        assert_eq!(
            a.decided_by.as_ref().unwrap().source,
            AccessSource::Administrator
        );
        assert!(a.can_access);
    }

    #[test]
    fn role_zero_is_the_global_role_and_no_access_is_none() {
        let r = roles();
        let p = project(7, vec![g(1, 0)], Some(vec![]));
        let a = effective_access(&person(8, &[]), &p, &r);
        assert!(!a.can_access, "default No Access");
        let a = effective_access(&person(8, &[1]), &p, &r);
        let d = a.decided_by.unwrap();
        assert!(d.via_global_role);
        assert_eq!((d.role_id, d.role.as_deref()), (Some(3), Some("Tester")));
        assert!(a.can_access);
        // A user's own No Access beats a group's Lead.
        let p = project(3, vec![g(1, 1)], Some(vec![g(8, 7)]));
        assert!(!effective_access(&person(8, &[1]), &p, &r).can_access);
    }

    #[test]
    fn the_quick_check_agrees_with_the_full_rule() {
        let r = roles();
        let projects = [
            project(7, vec![g(1, 0), g(2, 1)], Some(vec![g(3, 7)])),
            project(3, vec![g(1, 7)], None),
            Project {
                access: None,
                ..project(3, vec![], None)
            },
            Project {
                access: Some(ProjectAccessFacts {
                    default: None,
                    groups: vec![],
                    users: Some(vec![]),
                }),
                ..project(3, vec![], None)
            },
        ];
        for p in &projects {
            for (id, groups) in [(1, vec![]), (2, vec![1]), (3, vec![1, 2]), (4, vec![2])] {
                for admin in [false, true] {
                    let mut a = person(id, &groups);
                    a.is_admin = admin;
                    let full = effective_access(&a, p, &r);
                    let quick = can_access(&a, p, &r);
                    let want = (full.knowledge != Knowledge::Unknown).then_some(full.can_access);
                    assert_eq!(quick, want, "{a:?} {p:?}");
                }
            }
        }
    }

    #[test]
    fn unknown_access_is_never_guessed() {
        let r = roles();
        let mut p = project(3, vec![], None);
        let a = effective_access(&person(1, &[]), &p, &r);
        assert_eq!(a.knowledge, Knowledge::UserRolesUnknown);
        assert_eq!(a.decided_by.unwrap().source, AccessSource::ProjectDefault);
        p.access = None;
        let a = effective_access(&person(1, &[]), &p, &r);
        assert_eq!(a.knowledge, Knowledge::Unknown);
        assert!(a.decided_by.is_none() && !a.can_access);
    }

    #[test]
    fn ranking_puts_custom_roles_above_lead_and_project_admins_on_top() {
        let r = roles();
        let p = project(3, vec![g(1, 1), g(2, 9), g(3, 6)], Some(vec![]));
        let a = effective_access(&person(1, &[1, 2]), &p, &r);
        assert_eq!(
            a.decided_by.unwrap().role.as_deref(),
            Some("Release Captain")
        );
        let a = effective_access(&person(1, &[1, 2, 3]), &p, &r);
        assert_eq!(a.decided_by.unwrap().role.as_deref(), Some("Project Lead"));
        assert!(permissiveness(Some("No Access"), false) < permissiveness(Some("Guest"), false));
    }

    #[test]
    fn changes_between_scans() {
        let old = vec![project(3, vec![g(1, 2)], Some(vec![g(5, 1)]))];
        let mut p = project(4, vec![g(1, 1), g(2, 3)], Some(vec![]));
        p.is_completed = true;
        let added = Project {
            id: 11,
            name: Some("Web".into()),
            is_completed: false,
            completed_on: None,
            access: None,
        };
        let kinds: Vec<(ChangeKind, Option<Principal>)> =
            project_changes(&old, &[p, added.clone()])
                .into_iter()
                .map(|c| (c.kind, c.principal))
                .collect();
        use ChangeKind::*;
        assert!(kinds.contains(&(ProjectCompleted, None)));
        assert!(kinds.contains(&(ProjectAccessChanged, Some(Principal::Everyone))));
        assert!(kinds.contains(&(ProjectAccessChanged, Some(Principal::Group(1)))));
        assert!(kinds.contains(&(ProjectAccessGranted, Some(Principal::Group(2)))));
        assert!(kinds.contains(&(ProjectAccessRevoked, Some(Principal::User(5)))));
        assert!(kinds.contains(&(ProjectAdded, None)));
        assert_eq!(kinds.len(), 6);
        let gone = project_changes(&[added], &[]);
        assert_eq!(gone[0].kind, ProjectRemoved);
        // Professional on one side: no per-user changes are invented.
        let a = project(3, vec![], Some(vec![g(5, 1)]));
        let b = project(3, vec![], None);
        assert!(project_changes(&[a], &[b]).is_empty());
    }
}
