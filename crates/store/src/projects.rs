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

/// The stored projects as last known: a project whose access a later read did not report
/// keeps the grants it had (carried, see [`plan`]), and they are what the next read that does
/// report access is compared with. (Views use [`assemble`], which shows such access as unknown.)
pub(crate) fn assemble_last_known(projects: &[ProjectRow], grants: &[GrantRow]) -> Vec<Project> {
    let with_grants: HashSet<(i64, &str)> = grants
        .iter()
        .map(|g| (g.tr_project_id, g.principal.as_str()))
        .collect();
    let rows: Vec<ProjectRow> = projects
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let id = r.tr_project_id;
            r.users_known |= with_grants.contains(&(id, USER));
            r.access_known |= r.users_known
                || with_grants.contains(&(id, GROUP))
                || with_grants.contains(&(id, DEFAULT));
            r
        })
        .collect();
    assemble(rows, grants.to_vec())
}

/// What a provisioning revision written after a scan began has touched: the scan leaves those
/// projects exactly as stored (its read is older); the next scan reads them again.
pub(crate) type Held = HashSet<i64>;

/// What to write so that the stored projects become what `staged` reports, and the change rows
/// (none for a baseline, the first sighting of a connection's projects). What a read does not
/// report is carried, not closed: a project whose access came back unknown keeps its grants
/// (hidden from views, which say "unknown", but compared with when access is reported again),
/// and so do users' own roles when the `users` list is missing; neither reports a change.
pub(crate) fn plan(
    rows: &[ProjectRow],
    grants: &[GrantRow],
    staged: Vec<Project>,
    held: &Held,
    baseline: bool,
) -> Writes {
    let mut w = Writes::default();
    let last_known = assemble_last_known(rows, grants);
    let cur_rows: BTreeMap<i64, &ProjectRow> = rows.iter().map(|r| (r.tr_project_id, r)).collect();
    let cur: BTreeMap<u64, &Project> = last_known.iter().map(|p| (p.id, p)).collect();
    let staged_ids: HashSet<u64> = staged.iter().map(|p| p.id).collect();
    let mut compared_old: Vec<Project> = Vec::new();
    let mut compared_new: Vec<Project> = Vec::new();
    for p in staged {
        if held.contains(&i(p.id)) {
            continue;
        }
        let old = cur.get(&p.id).copied();
        // The row records what this read reported.
        let row = project_row(&p);
        if cur_rows.get(&row.tr_project_id).copied() != Some(&row) {
            if cur_rows.contains_key(&row.tr_project_id) {
                w.close_projects.push(row.tr_project_id);
            }
            w.open_projects.push(row);
        }
        // The grants: what was reported, and what was not, carried.
        let mut eff = p;
        match (eff.access.as_mut(), old.and_then(|o| o.access.as_ref())) {
            (None, Some(oa)) => eff.access = Some(oa.clone()),
            (Some(na), Some(oa)) if na.users.is_none() && oa.users.is_some() => {
                na.users = oa.users.clone();
            }
            _ => {}
        }
        let old_grants: BTreeMap<GrantKey, GrantRow> = old
            .map(grant_rows)
            .unwrap_or_default()
            .into_iter()
            .map(|g| (g.key(), g))
            .collect();
        let new_grants: BTreeMap<GrantKey, GrantRow> =
            grant_rows(&eff).into_iter().map(|g| (g.key(), g)).collect();
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
        if let Some(o) = old {
            compared_old.push(o.clone());
        }
        compared_new.push(eff);
    }
    for o in &last_known {
        if !staged_ids.contains(&o.id) && !held.contains(&i(o.id)) {
            w.close_projects.push(i(o.id));
            w.close_grants
                .extend(grant_rows(o).into_iter().map(|g| g.key()));
            compared_old.push(o.clone());
        }
    }
    if !baseline {
        w.changes = project_changes(&compared_old, &compared_new);
    }
    w
}

/// What to write for one project as a provisioning action read it back: that project alone
/// (the others are not in the read-back), nothing held.
pub(crate) fn plan_read_back(
    rows: Vec<ProjectRow>,
    grants: Vec<GrantRow>,
    project: &Project,
) -> Writes {
    let pid = i(project.id);
    let rows: Vec<ProjectRow> = rows
        .into_iter()
        .filter(|r| r.tr_project_id == pid)
        .collect();
    let grants: Vec<GrantRow> = grants
        .into_iter()
        .filter(|g| g.tr_project_id == pid)
        .collect();
    plan(&rows, &grants, vec![project.clone()], &Held::new(), false)
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

    fn project(users: Option<Vec<ProjectGrant>>) -> Project {
        Project {
            id: 1,
            name: Some("P".into()),
            is_completed: false,
            completed_on: None,
            access: Some(ProjectAccessFacts {
                default: Some(grant(0, 3)),
                groups: vec![grant(4, 1)],
                users,
            }),
        }
    }

    fn rows(p: &[Project]) -> (Vec<ProjectRow>, Vec<GrantRow>) {
        (
            p.iter().map(project_row).collect(),
            p.iter().flat_map(grant_rows).collect(),
        )
    }

    #[test]
    fn rows_round_trip_and_unchanged_writes_nothing() {
        let p = project(Some(vec![grant(9, 2)]));
        let (r, g) = rows(std::slice::from_ref(&p));
        assert_eq!(assemble(r.clone(), g.clone()), vec![p.clone()]);
        let w = plan(&r, &g, vec![p], &Held::new(), false);
        assert_eq!(w.rows(), 0);
        assert!(w.changes.is_empty());
    }

    #[test]
    fn a_project_a_newer_revision_touched_is_left_as_stored() {
        // A provisioning revision gave user 9 role 2 after the scan read TestRail (without it).
        let (r, g) = rows(&[project(Some(vec![grant(9, 2)]))]);
        let staged = project(Some(vec![]));
        let held: Held = [1].into_iter().collect();
        let w = plan(&r, &g, vec![staged.clone()], &held, false);
        assert_eq!(w.rows(), 0, "{w:?}");
        assert!(w.changes.is_empty());
        // Held and not listed by the scan (created after it read the list): kept too.
        let w = plan(&r, &g, vec![], &held, false);
        assert_eq!(w.rows(), 0, "{w:?}");
        // Without the hold the scan would revoke it.
        let w = plan(&r, &g, vec![staged], &Held::new(), false);
        assert_eq!(w.close_grants, vec![(1, USER.to_string(), 9)]);
        assert_eq!(w.changes.len(), 1);
    }

    #[test]
    fn what_a_read_does_not_report_is_carried_and_compared_later() {
        let before = project(Some(vec![grant(9, 2)]));
        let (r, g) = rows(std::slice::from_ref(&before));
        // This read reports no access: nothing closed, nothing reported; views say unknown.
        let mut unknown = before.clone();
        unknown.access = None;
        let w = plan(&r, &g, vec![unknown.clone()], &Held::new(), false);
        assert!(
            w.close_grants.is_empty() && w.open_grants.is_empty(),
            "{w:?}"
        );
        assert!(w.changes.is_empty());
        assert_eq!(
            w.open_projects.len(),
            1,
            "the row says access was not reported"
        );
        let r2: Vec<ProjectRow> = vec![project_row(&unknown)];
        assert_eq!(assemble(r2.clone(), g.clone())[0].access, None);
        // Reported again without user 9: the revocation is found against the carried grants.
        let after = project(Some(vec![]));
        let w = plan(&r2, &g, vec![after], &Held::new(), false);
        assert_eq!(w.close_grants, vec![(1, USER.to_string(), 9)]);
        assert_eq!(w.changes.len(), 1);
        assert_eq!(
            w.changes[0].kind,
            accessrail_domain::ChangeKind::ProjectAccessRevoked
        );
        // The users list missing: users' roles carried, no change.
        let w = plan(&r, &g, vec![project(None)], &Held::new(), false);
        assert!(w.close_grants.is_empty() && w.changes.is_empty(), "{w:?}");
    }

    #[test]
    fn a_removed_project_closes_its_grants() {
        let (r, g) = rows(&[project(Some(vec![grant(9, 2)]))]);
        let w = plan(&r, &g, vec![], &Held::new(), false);
        assert_eq!(w.close_projects, vec![1]);
        assert_eq!(w.close_grants.len(), 3);
        assert_eq!(
            w.changes[0].kind,
            accessrail_domain::ChangeKind::ProjectRemoved
        );
        let w = plan(&[], &[], vec![project(Some(vec![]))], &Held::new(), true);
        assert_eq!((w.open_projects.len(), w.open_grants.len()), (1, 2));
        assert!(w.changes.is_empty(), "a baseline reports nothing");
    }
}
