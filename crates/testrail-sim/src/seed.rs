//! Deterministic seeded data: realistic people, groups and projects.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

mod artefacts;

pub use artefacts::{AUTOMATION_KEY, DAY, seed_artefacts};

use crate::model::{GLOBAL_ROLE, NO_ACCESS_ROLE_ID, Project, User};
use crate::state::{Instance, default_roles};

/// What the simulator seeds on start and on every `POST /__sim/reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedConfig {
    /// Seeded users, not counting the administrator below.
    pub users: u32,
    pub groups: u32,
    pub seed: u64,
    pub admin_email: String,
    #[serde(skip_serializing)]
    pub admin_key: String,
    pub admin_name: String,
    /// Domain of the seeded people's emails.
    pub email_domain: String,
}

impl Default for SeedConfig {
    fn default() -> Self {
        Self {
            users: 25,
            groups: 4,
            seed: 1,
            admin_email: "admin@example.com".into(),
            admin_key: "sim-admin-key".into(),
            admin_name: "TestRail Administrator".into(),
            email_domain: "example.com".into(),
        }
    }
}

const FIRST: &[&str] = &[
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Amelia",
    "Oliver",
    "Sophia",
    "Elijah",
    "Mia",
    "James",
    "Charlotte",
    "William",
    "Ava",
    "Benjamin",
    "Isabella",
    "Lucas",
    "Harper",
    "Henry",
    "Evelyn",
    "Theodore",
    "Aisha",
    "Mateo",
    "Priya",
    "Hiroshi",
    "Ingrid",
    "Kwame",
    "Zofia",
    "Rafael",
    "Mei",
    "Dmitri",
    "Fatima",
    "Lars",
    "Chiara",
    "Tomás",
    "Yuki",
    "Anouk",
    "Siddharth",
    "Nadia",
    "Björn",
    "Leila",
];

const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Garcia",
    "Müller",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Nakamura",
    "Kowalski",
    "Okafor",
    "Rossi",
    "Novak",
    "Andersson",
    "Dubois",
    "Haddad",
    "Singh",
    "Kim",
    "O'Brien",
    "Van der Berg",
    "Costa",
    "Yilmaz",
    "Petrov",
    "Sato",
    "Larsen",
    "Fischer",
];

const GROUPS: &[&str] = &[
    "QA",
    "Developers",
    "Automation",
    "Mobile",
    "Release Managers",
    "Security Testing",
    "Performance",
    "Customer Support",
    "Contractors",
    "Localization",
    "Data Platform",
    "Payments",
];

const PROJECTS: &[&str] = &[
    "Web Storefront",
    "iOS App",
    "Android App",
    "Payments API",
    "Data Warehouse",
    "Internal Tools",
    "Partner Portal",
    "Checkout Revamp",
    "Customer Portal",
    "Billing Service",
    "Search Platform",
    "Mobile Banking",
    "Identity & SSO",
    "Admin Console",
    "Reporting Dashboard",
    "Notification Service",
    "Loyalty Program",
    "Inventory Management",
    "Shipping Integration",
    "Marketing Website",
    "Public API v3",
    "Desktop Client",
    "Smart TV App",
    "Point of Sale",
    "Fraud Detection",
    "Recommendations Engine",
    "Help Center",
    "Onboarding Flow",
    "GDPR Compliance",
    "Accessibility Audit",
    "Legacy ERP Migration",
    "Warehouse Scanner App",
    "Subscription Management",
    "Partner SDK",
    "Release 2026.1 Regression",
    "Performance Baseline",
    "Security Hardening",
    "Kiosk Firmware",
    "Chat Support Widget",
    "Analytics Pipeline",
];

/// The project count when [`generate_with_projects`] is given none: one per 25 users, 4 to 40.
pub fn default_project_count(cfg: &SeedConfig) -> u32 {
    (cfg.users / 25).clamp(4, 40)
}

/// Group project roles in the seed: mostly Lead or Designer, some Tester, a few "the global
/// role" (0).
const GROUP_ROLE_MIX: &[(u64, u32)] = &[(1, 4), (2, 4), (3, 2), (GLOBAL_ROLE, 1)];

/// Per-user project roles in the seed: sometimes the global role (0), sometimes "No Access".
const USER_ROLE_MIX: &[(u64, u32)] = &[
    (GLOBAL_ROLE, 3),
    (NO_ACCESS_ROLE_ID, 2),
    (1, 2),
    (2, 2),
    (3, 2),
    (4, 1),
    (5, 1),
];

fn weighted(rng: &mut ChaCha8Rng, mix: &[(u64, u32)]) -> u64 {
    let total: u32 = mix.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total.max(1));
    for (id, w) in mix {
        if pick < *w {
            return *id;
        }
        pick -= w;
    }
    mix.first().map_or(GLOBAL_ROLE, |(id, _)| *id)
}

/// `n * num / den`, rounded to the nearest whole number.
fn share(n: usize, num: usize, den: usize) -> usize {
    (n * num + den / 2) / den
}

/// Role ids of the default roles, with the weights of a typical instance.
const ROLE_MIX: &[(u64, u32)] = &[(3, 55), (2, 15), (1, 12), (4, 12), (5, 6)];

fn slug(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            'ü' => Some('u'),
            'ö' => Some('o'),
            'á' => Some('a'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// A placeholder such as TestRail leaves after "Forget this user": `F` and 14 digits.
fn forgotten_placeholder(rng: &mut ChaCha8Rng) -> String {
    format!(
        "F{}",
        rng.random_range(10_000_000_000_000u64..99_999_999_999_999)
    )
}

/// Builds the seeded instance with [`default_project_count`] projects. The same config always
/// gives the same instance.
pub fn generate(cfg: &SeedConfig) -> Instance {
    generate_with_projects(cfg, None)
}

/// Builds the seeded instance with `projects` projects (`None`: [`default_project_count`]).
/// Users and groups do not depend on the project count.
pub fn generate_with_projects(cfg: &SeedConfig, projects: Option<u32>) -> Instance {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut inst = Instance::new(default_roles());

    inst.insert_user(User {
        id: 0,
        name: cfg.admin_name.clone(),
        email: cfg.admin_email.clone(),
        is_active: true,
        is_admin: true,
        role_id: 1,
        email_notifications: true,
        mfa_required: false,
        sso_enabled: false,
        assigned_projects: Vec::new(),
        group_ids: BTreeSet::new(),
        api_keys: vec![cfg.admin_key.clone()],
        password: None,
    });

    let n = cfg.users as usize;
    // About 1 in 60 seeded users is forgotten (at least one once there are ten people), about
    // 1 in 12 is inactive, about 1 in 40 is an administrator.
    let forgotten = if n >= 10 { (n / 60).max(1) } else { 0 };
    let mut used_emails: HashSet<String> = HashSet::new();
    used_emails.insert(cfg.admin_email.to_lowercase());
    let total_weight: u32 = ROLE_MIX.iter().map(|(_, w)| w).sum();

    for i in 0..n {
        let first = FIRST.choose(&mut rng).copied().unwrap_or("Alex");
        let last = LAST.choose(&mut rng).copied().unwrap_or("Doe");
        let mut pick = rng.random_range(0..total_weight);
        let mut role_id = 3;
        for (id, w) in ROLE_MIX {
            if pick < *w {
                role_id = *id;
                break;
            }
            pick -= w;
        }
        let is_forgotten = i >= n - forgotten;
        let (name, email, is_active) = if is_forgotten {
            let p = forgotten_placeholder(&mut rng);
            (p.clone(), p, false)
        } else {
            let base = format!("{}.{}", slug(first), slug(last));
            // A few people use a plus-address, which clients must encode as %2B.
            let local = if rng.random_bool(0.03) {
                format!("{base}+testrail")
            } else {
                base
            };
            let mut email = format!("{local}@{}", cfg.email_domain);
            let mut k = 2;
            while used_emails.contains(&email.to_lowercase()) {
                email = format!("{local}{k}@{}", cfg.email_domain);
                k += 1;
            }
            // Every eleventh person has left (plus a random few), so even small seeds have some.
            let active = i % 11 != 3 && !rng.random_bool(0.02);
            (format!("{first} {last}"), email, active)
        };
        used_emails.insert(email.to_lowercase());
        let is_admin = !is_forgotten && rng.random_bool(1.0 / 40.0);
        inst.insert_user(User {
            id: 0,
            name,
            email,
            is_active,
            is_admin,
            role_id: if is_admin { 1 } else { role_id },
            email_notifications: rng.random_bool(0.8),
            mfa_required: rng.random_bool(0.2),
            sso_enabled: rng.random_bool(0.5),
            assigned_projects: Vec::new(),
            group_ids: BTreeSet::new(),
            api_keys: Vec::new(),
            password: None,
        });
    }

    // Groups of realistic size: up to a quarter of the people, at most 150 (forgotten users keep
    // old memberships, as TestRail does).
    let people: Vec<u64> = inst.users.keys().copied().filter(|id| *id != 1).collect();
    for g in 0..cfg.groups as usize {
        let name = match GROUPS.get(g) {
            Some(n) => (*n).to_string(),
            None => format!("{} {}", GROUPS[g % GROUPS.len()], g / GROUPS.len() + 1),
        };
        let most = (people.len() / 4).clamp(1, 150);
        let size = rng.random_range(0..=most).min(people.len());
        let mut members: Vec<u64> = people.choose_multiple(&mut rng, size).copied().collect();
        members.shuffle(&mut rng);
        inst.insert_group(name, &members);
    }

    seed_projects(&mut inst, &mut rng, cfg, &people, projects);
    inst
}

/// Builds the seeded instance with `projects` projects (see [`generate_with_projects`]) and,
/// when `results` is above 0, artefacts with about that many results relative to `now` (Unix
/// seconds; see [`seed_artefacts`]). Users, groups and projects are those of
/// [`generate_with_projects`], plus one automation account (`ci-bot@<domain>`) appended last.
pub fn generate_with_artefacts(
    cfg: &SeedConfig,
    projects: Option<u32>,
    results: u32,
    now: i64,
) -> Instance {
    let mut inst = generate_with_projects(cfg, projects);
    seed_artefacts(&mut inst, cfg, results, now);
    inst
}

/// The projects, after users and groups (so the project count never changes who is seeded).
/// Exact shares, shuffled: about 1 in 5 restricted (default "No Access"), 1 in 8 default "Global
/// Role" (0), 3 in 20 Read-only, the rest Tester; about 1 in 3 give one or two groups a role
/// (every restricted one does when there are groups); 0 to 3 users per project with a role of
/// their own; about 1 in 6 completed at a past time drawn from the seed.
fn seed_projects(
    inst: &mut Instance,
    rng: &mut ChaCha8Rng,
    cfg: &SeedConfig,
    people: &[u64],
    count: Option<u32>,
) {
    let n = count.unwrap_or_else(|| default_project_count(cfg)) as usize;
    let restricted = share(n, 1, 5);
    let global = share(n, 1, 8).min(n - restricted);
    let read_only = (n * 3 / 20).min(n - restricted - global);
    let mut defaults: Vec<u64> = std::iter::repeat_n(NO_ACCESS_ROLE_ID, restricted)
        .chain(std::iter::repeat_n(GLOBAL_ROLE, global))
        .chain(std::iter::repeat_n(4, read_only))
        .collect();
    defaults.resize(n, 3);
    defaults.shuffle(rng);

    let mut completed = vec![false; n];
    completed
        .iter_mut()
        .take(share(n, 1, 6))
        .for_each(|c| *c = true);
    completed.shuffle(rng);

    let group_ids: Vec<u64> = inst.groups.keys().copied().collect();
    let mut with_groups: Vec<bool> = defaults.iter().map(|d| *d == NO_ACCESS_ROLE_ID).collect();
    let mut open: Vec<usize> = (0..n).filter(|i| !with_groups[*i]).collect();
    open.shuffle(rng);
    for i in open
        .into_iter()
        .take(share(n, 1, 3).saturating_sub(restricted))
    {
        with_groups[i] = true;
    }

    for i in 0..n {
        let name = match PROJECTS.get(i) {
            Some(p) => (*p).to_string(),
            None => format!(
                "{} {}",
                PROJECTS[i % PROJECTS.len()],
                i / PROJECTS.len() + 1
            ),
        };
        let mut group_roles = BTreeMap::new();
        if with_groups[i] && !group_ids.is_empty() {
            let k = rng.random_range(1..=2usize).min(group_ids.len());
            for g in group_ids.choose_multiple(rng, k) {
                group_roles.insert(*g, weighted(rng, GROUP_ROLE_MIX));
            }
        }
        let mut user_roles = BTreeMap::new();
        let k = rng.random_range(0..=3usize).min(people.len());
        for u in people.choose_multiple(rng, k) {
            user_roles.insert(*u, weighted(rng, USER_ROLE_MIX));
        }
        // 2022-01-01 to 2024-01-01.
        let completed_on = completed[i].then(|| 1_640_995_200 + rng.random_range(0..63_072_000));
        inst.insert_project(Project {
            id: 0,
            name,
            announcement: None,
            show_announcement: false,
            is_completed: completed[i],
            completed_on,
            suite_mode: if rng.random_bool(0.3) { 3 } else { 1 },
            default_role_id: defaults[i],
            user_roles,
            group_roles,
        });
    }
}
