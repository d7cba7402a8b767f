//! Deterministic seeded data: realistic people, groups and projects.

use std::collections::{BTreeSet, HashSet};

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::model::{Project, ProjectAccess, User};
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
];

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

/// Builds the seeded instance. The same config always gives the same instance.
pub fn generate(cfg: &SeedConfig) -> Instance {
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

    // Projects with explicit access for some people, a few with a project-level role.
    let project_count = (n / 40).clamp(1, PROJECTS.len());
    for name in PROJECTS.iter().take(project_count) {
        let mut access = Vec::new();
        for &user_id in &people {
            if rng.random_bool(0.3) {
                let role_id = rng.random_bool(0.2).then(|| rng.random_range(1..=4u64));
                access.push(ProjectAccess { user_id, role_id });
            }
        }
        inst.insert_project(Project {
            id: 0,
            name: (*name).to_string(),
            announcement: None,
            is_completed: false,
            suite_mode: 1,
            default_role_id: Some(3),
            access,
        });
    }
    inst
}
