//! Projects and their access grants as versioned rows: what both back ends share. The back ends
//! only load rows and execute [`Writes`]; deciding what to close, open and report happens here,
//! once.
//!
//! A project is one row in `project_versions`; each role it gives (its default, a group's role,
//! a user's own role) is one row in `project_grant_versions`, keyed by
//! (project, principal kind, principal id). Effective access is never stored: it is derived
//! from these facts, the accounts and the memberships of the same revision
//! (`domain::project::effective_access`).

use std::collections::{BTreeMap, HashSet};

use accessrail_domain::project::{
    Principal, Project, ProjectAccessFacts, ProjectChange, ProjectGrant, project_changes,
};

/// Principal kinds as stored.
pub(crate) const DEFAULT: &str = "default";
pub(crate) const GROUP: &str = "group";
pub(crate) const USER: &str = "user";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct ProjectRow {
    pub tr_project_id: i64,
    pub name: Option<String>,
    pub is_completed: bool,
    pub completed_on: Option<i64>,
    pub access_known: bool,
    pub users_known: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct GrantRow {
    pub tr_project_id: i64,
    pub principal: String,
    pub principal_id: i64,
    pub role_id: i64,
    pub role_name: Option<String>,
}

/// (project, principal kind, principal id): one grant's identity across versions.
pub(crate) type GrantKey = (i64, String, i64);

impl GrantRow {
    pub fn key(&self) -> GrantKey {
        (
            self.tr_project_id,
            self.principal.clone(),
            self.principal_id,
        )
    }
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn project_row(p: &Project) -> ProjectRow {
    ProjectRow {
        tr_project_id: i(p.id),
        name: p.name.clone(),
        is_completed: p.is_completed,
        completed_on: p.completed_on,
        access_known: p.access.is_some(),
        users_known: p.access.as_ref().is_some_and(|a| a.users.is_some()),
    }
}

pub(crate) fn grant_rows(p: &Project) -> Vec<GrantRow> {
    let Some(a) = &p.access else {
        return Vec::new();
    };
    let row = |kind: &str, g: &ProjectGrant| GrantRow {
        tr_project_id: i(p.id),
        principal: kind.to_string(),
        principal_id: i(g.id),
        role_id: i(g.role_id),
        role_name: g.role.clone(),
    };
    let mut out: Vec<GrantRow> = a.default.iter().map(|g| row(DEFAULT, g)).collect();
    out.extend(a.groups.iter().map(|g| row(GROUP, g)));
    out.extend(a.users.iter().flatten().map(|g| row(USER, g)));
    out
}

/// Projects from their rows and grant rows (of the same revision).
pub(crate) fn assemble(projects: Vec<ProjectRow>, grants: Vec<GrantRow>) -> Vec<Project> {
    let mut by_project: BTreeMap<i64, Vec<GrantRow>> = BTreeMap::new();
    for g in grants {
        by_project.entry(g.tr_project_id).or_default().push(g);
    }
    projects
        .into_iter()
        .map(|r| {
            let grants = by_project.remove(&r.tr_project_id).unwrap_or_default();
            let access = r.access_known.then(|| {
                let grant = |g: &GrantRow| ProjectGrant {
                    id: u(g.principal_id),
                    role_id: u(g.role_id),
                    role: g.role_name.clone(),
                };
                let of = |kind: &str| -> Vec<ProjectGrant> {
                    let mut v: Vec<ProjectGrant> = grants
                        .iter()
                        .filter(|g| g.principal == kind)
                        .map(grant)
                        .collect();
                    v.sort_by_key(|g| g.id);
                    v
                };
                ProjectAccessFacts {
                    default: of(DEFAULT).into_iter().next(),
                    groups: of(GROUP),
                    users: r.users_known.then(|| of(USER)),
                }
            });
            Project {
                id: u(r.tr_project_id),
                name: r.name,
                is_completed: r.is_completed,
                completed_on: r.completed_on,
                access,
            }
        })
        .collect()
}

/// What a commit writes for projects.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    /// Projects whose current version closes (changed or gone).
    pub close_projects: Vec<i64>,
    pub open_projects: Vec<ProjectRow>,
    pub close_grants: Vec<GrantKey>,
    pub open_grants: Vec<GrantRow>,
    pub changes: Vec<ProjectChange>,
}

impl Writes {
    pub fn rows(&self) -> u64 {
        (self.close_projects.len()
            + self.open_projects.len()
            + self.close_grants.len()
            + self.open_grants.len()) as u64
    }
}

/// Replaces, in `staged`, every grant in `held` (written by a revision committed after the scan
/// began) by what is current: the scan read TestRail before that write and must not undo it.
fn keep_held(current: &[Project], staged: &mut [Project], held: &HashSet<GrantKey>) {
    if held.is_empty() {
        return;
    }
    let current_rows: BTreeMap<GrantKey, GrantRow> = current
        .iter()
        .flat_map(grant_rows)
        .map(|g| (g.key(), g))
        .collect();
    for p in staged.iter_mut() {
        let Some(access) = p.access.as_mut() else {
            continue;
        };
        let pid = i(p.id);
        for (kind, list) in [
            (GROUP, Some(&mut access.groups)),
            (USER, access.users.as_mut()),
        ] {
            let Some(list) = list else { continue };
            list.retain(|g| !held.contains(&(pid, kind.to_string(), i(g.id))));
            for key in held.iter().filter(|k| k.0 == pid && k.1 == kind) {
                if let Some(row) = current_rows.get(key) {
                    list.push(ProjectGrant {
                        id: u(row.principal_id),
                        role_id: u(row.role_id),
                        role: row.role_name.clone(),
                    });
                }
            }
            list.sort_by_key(|g| g.id);
        }
    }
}

/// What to write so that the stored projects become `staged`, and the change rows to report
/// (none for a baseline, the first sighting of a connection's projects).
pub(crate) fn plan(
    current: &[Project],
    mut staged: Vec<Project>,
    held: &HashSet<GrantKey>,
    baseline: bool,
) -> Writes {
    keep_held(current, &mut staged, held);
    let mut w = Writes::default();
    let cur: BTreeMap<u64, &Project> = current.iter().map(|p| (p.id, p)).collect();
    let staged_ids: HashSet<u64> = staged.iter().map(|p| p.id).collect();
    for p in &staged {
        let row = project_row(p);
        let old = cur.get(&p.id);
        if old.map(|o| project_row(o)) != Some(row.clone()) {
            if old.is_some() {
                w.close_projects.push(row.tr_project_id);
            }
            w.open_projects.push(row);
        }
        let old_grants: BTreeMap<GrantKey, GrantRow> = old
            .map(|o| grant_rows(o))
            .unwrap_or_default()
            .into_iter()
            .map(|g| (g.key(), g))
            .collect();
        let new_grants: BTreeMap<GrantKey, GrantRow> =
            grant_rows(p).into_iter().map(|g| (g.key(), g)).collect();
        for (k, g) in &new_grants {
            match old_grants.get(k) {
                Some(o) if o == g => {}
                Some(_) => {
                    w.close_grants.push(k.clone());
                    w.open_grants.push(g.clone());
                }
                None => w.open_grants.push(g.clone()),
            }
        }
        for k in old_grants.keys() {
            if !new_grants.contains_key(k) {
                w.close_grants.push(k.clone());
            }
        }
    }
    for o in current {
        if !staged_ids.contains(&o.id) {
            w.close_projects.push(i(o.id));
            w.close_grants
                .extend(grant_rows(o).into_iter().map(|g| g.key()));
        }
    }
    if !baseline {
        w.changes = project_changes(current, &staged);
    }
    w
}

/// The principal columns of a change row: (user id, group id).
pub(crate) fn principal_ids(p: Option<Principal>) -> (Option<i64>, Option<i64>) {
    match p {
        Some(Principal::User(id)) => (Some(i(id)), None),
        Some(Principal::Group(id)) => (None, Some(i(id))),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: u64, role_id: u64) -> ProjectGrant {
        ProjectGrant {
            id,
            role_id,
            role: Some(format!("r{role_id}")),
        }
    }

    fn project(users: Vec<ProjectGrant>) -> Project {
        Project {
            id: 1,
            name: Some("P".into()),
            is_completed: false,
            completed_on: None,
            access: Some(ProjectAccessFacts {
                default: Some(grant(0, 3)),
                groups: vec![grant(4, 1)],
                users: Some(users),
            }),
        }
    }

    #[test]
    fn rows_round_trip_and_unchanged_writes_nothing() {
        let p = project(vec![grant(9, 2)]);
        let back = assemble(vec![project_row(&p)], grant_rows(&p));
        assert_eq!(back, vec![p.clone()]);
        let w = plan(
            std::slice::from_ref(&p),
            vec![p.clone()],
            &HashSet::new(),
            false,
        );
        assert_eq!(w.rows(), 0);
        assert!(w.changes.is_empty());
    }

    #[test]
    fn a_held_grant_is_left_as_the_newer_revision_wrote_it() {
        // A provisioning revision gave user 9 role 2 after the scan read TestRail (without it).
        let current = project(vec![grant(9, 2)]);
        let staged = project(vec![]);
        let held: HashSet<GrantKey> = [(1, USER.to_string(), 9)].into_iter().collect();
        let w = plan(
            std::slice::from_ref(&current),
            vec![staged.clone()],
            &held,
            false,
        );
        assert_eq!(w.rows(), 0, "{w:?}");
        // Without the hold the scan would revoke it.
        let w = plan(&[current], vec![staged], &HashSet::new(), false);
        assert_eq!(w.close_grants, vec![(1, USER.to_string(), 9)]);
        assert_eq!(w.changes.len(), 1);
    }

    #[test]
    fn a_removed_project_closes_its_grants() {
        let p = project(vec![grant(9, 2)]);
        let w = plan(&[p], vec![], &HashSet::new(), false);
        assert_eq!(w.close_projects, vec![1]);
        assert_eq!(w.close_grants.len(), 3);
        let w = plan(&[], vec![project(vec![])], &HashSet::new(), true);
        assert_eq!((w.open_projects.len(), w.open_grants.len()), (1, 2));
        assert!(w.changes.is_empty(), "a baseline reports nothing");
    }
}
