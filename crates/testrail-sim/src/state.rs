//! The in-memory TestRail instance and the invariants every mutation keeps.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use crate::artefacts::Artefacts;
use crate::model::{
    GLOBAL_ROLE, GLOBAL_ROLE_NAME, Group, NO_ACCESS_ROLE_ID, NO_ACCESS_ROLE_NAME, Project, Role,
    User,
};

/// "No Access": valid only as a project role (see [`NO_ACCESS_ROLE_ID`]).
static NO_ACCESS: LazyLock<Role> = LazyLock::new(|| Role {
    id: NO_ACCESS_ROLE_ID,
    name: NO_ACCESS_ROLE_NAME.to_string(),
    is_default: false,
    is_project_admin: false,
});

/// A change to a project, as `update_project` and `PATCH /__sim/projects/{id}` take it: `None`
/// leaves a field alone. In `users` / `groups`, a role of `Some(0)` means "the global role" and
/// `None` clears the entry; ids not listed keep their roles.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectPatch {
    pub name: Option<String>,
    pub announcement: Option<String>,
    pub show_announcement: Option<bool>,
    pub is_completed: Option<bool>,
    pub default_role_id: Option<u64>,
    pub users: Vec<(u64, Option<u64>)>,
    pub groups: Vec<(u64, Option<u64>)>,
}

/// How permissive a role is, for choosing among several group project roles (our choice,
/// TestRail does not document it): No Access < Guest < Read-only < Tester < Designer < Lead <
/// any other role name < roles with `is_project_admin`.
pub fn permissiveness(role: &Role) -> u8 {
    if role.is_project_admin {
        return 7;
    }
    match role.name.trim().to_ascii_lowercase().as_str() {
        "no access" => 0,
        "guest" => 1,
        "read-only" => 2,
        "tester" => 3,
        "designer" => 4,
        "lead" => 5,
        _ => 6,
    }
}

/// Users, groups, roles and projects of one TestRail instance.
#[derive(Debug, Clone, Default)]
pub struct Instance {
    pub users: BTreeMap<u64, User>,
    pub groups: BTreeMap<u64, Group>,
    pub roles: Vec<Role>,
    pub projects: BTreeMap<u64, Project>,
    /// Suites, cases, runs, plans, tests and results (empty unless seeded or added).
    pub artefacts: Artefacts,
    /// Every user id in ascending order (users are never deleted; new ids are the highest),
    /// so a page of `get_users` is a slice, not a walk from the first user.
    user_ids: Vec<u64>,
    next_user_id: u64,
    next_group_id: u64,
    next_project_id: u64,
}

impl Instance {
    pub fn new(roles: Vec<Role>) -> Self {
        Self {
            roles,
            next_user_id: 1,
            next_group_id: 1,
            next_project_id: 1,
            ..Self::default()
        }
    }

    /// Every user id, ascending.
    pub fn user_ids(&self) -> &[u64] {
        &self.user_ids
    }

    /// A global role (what `get_roles` lists and users may have).
    pub fn role(&self, id: u64) -> Option<&Role> {
        self.roles.iter().find(|r| r.id == id)
    }

    /// A role valid in a project: a global role or "No Access" ([`NO_ACCESS_ROLE_ID`]). Role 0
    /// ("the global role") is not a role; callers handle it.
    pub fn project_role(&self, id: u64) -> Option<&Role> {
        self.role(id)
            .or_else(|| (id == NO_ACCESS_ROLE_ID).then(|| &*NO_ACCESS))
    }

    /// The name a project object shows for a project role id: "Global Role" for 0.
    pub fn project_role_name(&self, id: u64) -> Option<String> {
        if id == GLOBAL_ROLE {
            Some(GLOBAL_ROLE_NAME.to_string())
        } else {
            self.project_role(id).map(|r| r.name.clone())
        }
    }

    /// The one rule for a user's effective role in a project (our choice: TestRail does not
    /// document how it combines user, group and default roles):
    ///
    /// 1. administrators reach every project with their global role;
    /// 2. otherwise the user's own project role wins;
    /// 3. otherwise the project roles of the groups the user belongs to, the most permissive
    ///    ([`permissiveness`], ties to the lower role id) winning; only when `with_groups`
    ///    (TestRail 7.5+, where groups exist);
    /// 4. otherwise the project's default role.
    ///
    /// Role 0 anywhere is the user's global role. Returns the effective role id, or `None` when
    /// it is "No Access" (the user cannot reach the project). Inactive users keep their roles.
    pub fn effective_project_role(
        &self,
        project: &Project,
        user: &User,
        with_groups: bool,
    ) -> Option<u64> {
        let resolve = |role_id: u64| {
            if role_id == GLOBAL_ROLE {
                user.role_id
            } else {
                role_id
            }
        };
        let role_id = if user.is_admin {
            user.role_id
        } else if let Some(own) = project.user_roles.get(&user.id) {
            resolve(*own)
        } else if let Some(best) = with_groups
            .then(|| {
                user.group_ids
                    .iter()
                    .filter(|g| self.groups.contains_key(g))
                    .filter_map(|g| project.group_roles.get(g))
                    .map(|r| resolve(*r))
                    .max_by_key(|r| {
                        let rank = self.project_role(*r).map_or(6, permissiveness);
                        (rank, Reverse(*r))
                    })
            })
            .flatten()
        {
            best
        } else {
            resolve(project.default_role_id)
        };
        (role_id != NO_ACCESS_ROLE_ID).then_some(role_id)
    }

    /// The active users who reach a project, by id, with their effective role: what
    /// `get_users/{project_id}` lists.
    pub fn project_members(&self, project_id: u64, with_groups: bool) -> Vec<(u64, u64)> {
        let Some(project) = self.projects.get(&project_id) else {
            return Vec::new();
        };
        self.user_ids
            .iter()
            .filter_map(|id| self.users.get(id))
            .filter(|u| u.is_active)
            .filter_map(|u| {
                self.effective_project_role(project, u, with_groups)
                    .map(|r| (u.id, r))
            })
            .collect()
    }

    /// Applies an already validated [`ProjectPatch`]; `now` (Unix seconds) becomes
    /// `completed_on` when the project is completed. False when the project does not exist.
    pub fn update_project(&mut self, project_id: u64, patch: &ProjectPatch, now: i64) -> bool {
        let Some(p) = self.projects.get_mut(&project_id) else {
            return false;
        };
        if let Some(v) = &patch.name {
            p.name.clone_from(v);
        }
        if let Some(v) = &patch.announcement {
            p.announcement = Some(v.clone());
        }
        if let Some(v) = patch.show_announcement {
            p.show_announcement = v;
        }
        if let Some(done) = patch.is_completed {
            if done && !p.is_completed {
                p.completed_on = Some(now);
            } else if !done {
                p.completed_on = None;
            }
            p.is_completed = done;
        }
        if let Some(v) = patch.default_role_id {
            p.default_role_id = v;
        }
        for (user_id, role) in &patch.users {
            match role {
                Some(r) => p.user_roles.insert(*user_id, *r),
                None => p.user_roles.remove(user_id),
            };
        }
        for (group_id, role) in &patch.groups {
            match role {
                Some(r) => p.group_roles.insert(*group_id, *r),
                None => p.group_roles.remove(group_id),
            };
        }
        true
    }

    pub fn default_role_id(&self) -> u64 {
        self.roles
            .iter()
            .find(|r| r.is_default)
            .or(self.roles.first())
            .map_or(0, |r| r.id)
    }

    /// Finds a user by email, ignoring case.
    pub fn user_by_email(&self, email: &str) -> Option<&User> {
        let wanted = email.trim();
        if wanted.is_ascii() {
            // No allocation per user: this runs on every request (authentication).
            return self
                .users
                .values()
                .find(|u| u.email.eq_ignore_ascii_case(wanted));
        }
        let wanted = wanted.to_lowercase();
        self.users
            .values()
            .find(|u| u.email.to_lowercase() == wanted)
    }

    /// Inserts a user with the next id; its `group_ids` are applied to the groups.
    pub fn insert_user(&mut self, mut user: User) -> u64 {
        let id = self.next_user_id;
        self.next_user_id += 1;
        user.id = id;
        let groups = std::mem::take(&mut user.group_ids);
        self.users.insert(id, user);
        self.user_ids.push(id);
        self.set_user_groups(id, &groups);
        id
    }

    pub fn insert_group(&mut self, name: String, user_ids: &[u64]) -> u64 {
        let id = self.next_group_id;
        self.next_group_id += 1;
        self.groups.insert(
            id,
            Group {
                id,
                name,
                user_ids: Vec::new(),
            },
        );
        self.set_group_members(id, user_ids);
        id
    }

    pub fn insert_project(&mut self, mut project: Project) -> u64 {
        let id = self.next_project_id;
        self.next_project_id += 1;
        project.id = id;
        self.projects.insert(id, project);
        id
    }

    /// Replaces a group's whole membership (TestRail's `update_group` semantics) and keeps every
    /// user's `group_ids` in step.
    pub fn set_group_members(&mut self, group_id: u64, user_ids: &[u64]) {
        let mut seen = BTreeSet::new();
        let new_members: Vec<u64> = user_ids
            .iter()
            .copied()
            .filter(|id| self.users.contains_key(id) && seen.insert(*id))
            .collect();
        let Some(group) = self.groups.get_mut(&group_id) else {
            return;
        };
        let old = std::mem::replace(&mut group.user_ids, new_members.clone());
        for uid in old {
            if let Some(u) = self.users.get_mut(&uid) {
                u.group_ids.remove(&group_id);
            }
        }
        for uid in new_members {
            if let Some(u) = self.users.get_mut(&uid) {
                u.group_ids.insert(group_id);
            }
        }
    }

    /// Replaces a user's whole set of groups and keeps every group's `user_ids` in step.
    pub fn set_user_groups(&mut self, user_id: u64, group_ids: &BTreeSet<u64>) {
        let current: BTreeSet<u64> = self
            .users
            .get(&user_id)
            .map(|u| u.group_ids.clone())
            .unwrap_or_default();
        for gid in current.difference(group_ids) {
            if let Some(g) = self.groups.get_mut(gid) {
                g.user_ids.retain(|u| *u != user_id);
            }
        }
        for gid in group_ids.difference(&current) {
            if let Some(g) = self.groups.get_mut(gid)
                && !g.user_ids.contains(&user_id)
            {
                g.user_ids.push(user_id);
            }
        }
        if let Some(u) = self.users.get_mut(&user_id) {
            u.group_ids = group_ids
                .iter()
                .copied()
                .filter(|g| self.groups.contains_key(g))
                .collect();
        }
    }

    pub fn delete_group(&mut self, group_id: u64) -> bool {
        let Some(group) = self.groups.remove(&group_id) else {
            return false;
        };
        for uid in group.user_ids {
            if let Some(u) = self.users.get_mut(&uid) {
                u.group_ids.remove(&group_id);
            }
        }
        // The group's project roles go with it.
        for p in self.projects.values_mut() {
            p.group_roles.remove(&group_id);
        }
        true
    }

    /// Checks that users' `group_ids` and groups' `user_ids` describe the same memberships.
    pub fn memberships_consistent(&self) -> bool {
        let from_groups: BTreeSet<(u64, u64)> = self
            .groups
            .values()
            .flat_map(|g| g.user_ids.iter().map(move |u| (g.id, *u)))
            .collect();
        let from_users: BTreeSet<(u64, u64)> = self
            .users
            .values()
            .flat_map(|u| u.group_ids.iter().map(move |g| (*g, u.id)))
            .collect();
        let no_dup_members = self.groups.values().all(|g| {
            let set: BTreeSet<_> = g.user_ids.iter().collect();
            set.len() == g.user_ids.len()
        });
        from_groups == from_users && no_dup_members
    }
}

/// TestRail's built-in global roles, as a fresh instance has them (what `get_roles` lists).
/// "No Access" ([`NO_ACCESS_ROLE_ID`]) is not among them: it is valid only as a project role
/// and [`Instance::project_role`] resolves it.
pub fn default_roles() -> Vec<Role> {
    let role = |id, name: &str, is_default, is_project_admin| Role {
        id,
        name: name.to_string(),
        is_default,
        is_project_admin,
    };
    vec![
        role(1, "Lead", false, false),
        role(2, "Designer", false, false),
        role(3, "Tester", true, false),
        role(4, "Read-only", false, false),
        role(5, "Guest", false, false),
        role(6, "Project Lead", false, true),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{Instance, default_roles};
    use crate::model::{NO_ACCESS_ROLE_ID, Project, Role};
    use crate::seed::{SeedConfig, generate};

    /// A user in groups 1..=n, each group giving one of `group_roles` in a project whose default
    /// is No Access; the effective role with groups on.
    fn via_groups(inst: &mut Instance, group_roles: &[u64]) -> Option<u64> {
        let mut user = inst.users[&1].clone();
        user.is_admin = false;
        user.role_id = 4;
        user.email = format!("g{}@example.com", inst.users.len());
        let uid = inst.insert_user(user);
        let mut roles = BTreeMap::new();
        for r in group_roles {
            let gid = inst.insert_group(format!("g{r}"), &[uid]);
            roles.insert(gid, *r);
        }
        let project = Project {
            id: 0,
            name: "p".into(),
            announcement: None,
            show_announcement: false,
            is_completed: false,
            completed_on: None,
            suite_mode: 1,
            default_role_id: NO_ACCESS_ROLE_ID,
            user_roles: BTreeMap::new(),
            group_roles: roles,
        };
        let user = inst.users[&uid].clone();
        inst.effective_project_role(&project, &user, true)
    }

    #[test]
    fn the_most_permissive_group_role_wins() {
        let mut roles = default_roles();
        let custom = |id, name: &str, is_project_admin| Role {
            id,
            name: name.into(),
            is_default: false,
            is_project_admin,
        };
        roles.push(custom(8, "Automation", false));
        roles.push(custom(9, "Auditor", false));
        let mut inst = Instance::new(roles);
        inst.insert_user(generate(&SeedConfig::default()).users[&1].clone());
        // The ladder: No Access < Guest < Read-only < Tester < Designer < Lead.
        assert_eq!(via_groups(&mut inst, &[NO_ACCESS_ROLE_ID, 5]), Some(5));
        assert_eq!(via_groups(&mut inst, &[5, 4, 3]), Some(3));
        assert_eq!(via_groups(&mut inst, &[3, 2]), Some(2));
        assert_eq!(via_groups(&mut inst, &[2, 1]), Some(1));
        // A name off the ladder ranks above Lead; ties go to the lower role id.
        assert_eq!(via_groups(&mut inst, &[1, 9]), Some(9));
        assert_eq!(via_groups(&mut inst, &[9, 8]), Some(8));
        // Project-administrator roles rank above everything.
        assert_eq!(via_groups(&mut inst, &[8, 6, 1]), Some(6));
        // Group role 0 is the user's global role (Read-only here), ranked as such.
        assert_eq!(via_groups(&mut inst, &[0, 5]), Some(4));
        // Only "No Access" from groups: no access, whatever the default.
        assert_eq!(via_groups(&mut inst, &[NO_ACCESS_ROLE_ID]), None);
    }

    #[test]
    fn user_ids_list_every_user_in_ascending_order() {
        let mut inst = generate(&SeedConfig::default());
        let mut extra = inst.users[&1].clone();
        extra.email = "late@example.com".into();
        let id = inst.insert_user(extra);
        let keys: Vec<u64> = inst.users.keys().copied().collect();
        assert_eq!(inst.user_ids(), keys.as_slice());
        assert_eq!(inst.user_ids().last(), Some(&id));
    }
}
