//! The in-memory TestRail instance and the invariants every mutation keeps.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Group, Project, Role, User};

/// Users, groups, roles and projects of one TestRail instance.
#[derive(Debug, Clone, Default)]
pub struct Instance {
    pub users: BTreeMap<u64, User>,
    pub groups: BTreeMap<u64, Group>,
    pub roles: Vec<Role>,
    pub projects: BTreeMap<u64, Project>,
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

    pub fn role(&self, id: u64) -> Option<&Role> {
        self.roles.iter().find(|r| r.id == id)
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

/// TestRail's built-in roles, as a fresh instance has them.
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
    use crate::seed::{SeedConfig, generate};

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
