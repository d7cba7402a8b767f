//! Seeded artefacts: suites, cases, runs, plans, tests and results with a realistic spread of
//! activity, from their own random stream (so the users, groups and projects of a seed never
//! change when artefacts are asked for).

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{SeedConfig, share};
use crate::artefacts::{
    Case, NewResult, Plan, PlanEntry, Run, STATUS_BLOCKED, STATUS_FAILED, STATUS_PASSED,
    STATUS_RETEST,
};
use crate::model::User;
use crate::state::Instance;

/// Seconds in a day.
pub const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// Mixed into the seed so the artefact stream is independent of the people stream.
const STREAM: u64 = 0xA57E_FAC7_5EED_0001;

/// The automation account's API key.
pub const AUTOMATION_KEY: &str = "ci-bot-key";

/// How recently a seeded person last left evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recency {
    Week,
    Quarter,
    Months,
    Never,
}

const SUITES: &[&str] = &["Regression", "Smoke", "Integration"];
const RUN_KINDS: &[&str] = &["Regression", "Smoke", "Nightly", "Release", "Sprint"];
const CASE_TOPICS: &[&str] = &[
    "Log in with valid credentials",
    "Reset a forgotten password",
    "Add an item to the cart",
    "Check out with a saved card",
    "Search returns relevant results",
    "Export a report as CSV",
    "Change notification settings",
    "Invite a team member",
    "Upload a profile picture",
    "Apply a discount code",
    "Refund a payment",
    "Switch the language",
];

/// Seeds artefacts into a seeded instance, relative to `now` (Unix seconds):
///
/// - one extra user, the automation account `ci-bot@<domain>` (active, Tester, API key
///   [`AUTOMATION_KEY`]), who adds about 60% of the results;
/// - active people: exactly 15% last active this week, 20% more within 90 days, 35% idle for
///   3 to 18 months, 30% never; inactive people: 70% last active 1 to 24 months ago, 30% never.
///   Everyone with activity has a result at exactly their latest time, and nothing of theirs
///   is later;
/// - per project one suite (suite mode 1) or two or three (mode 3), 15 to 60 cases per suite
///   created and updated by two to four designers;
/// - per project, its results in time order cut into runs of 40 to 400; runs whose last result
///   is under 14 days old stay open, the others are completed with a probability of 0.65;
///   about one run in eight starts a plan that also takes the next zero to two runs.
///
/// `results` of 0 seeds nothing. At least one result per person with activity is seeded, so a
/// very small `results` can give a few more.
pub fn seed_artefacts(inst: &mut Instance, cfg: &SeedConfig, results: u32, now: i64) {
    if results == 0 || inst.projects.is_empty() {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ STREAM);
    let start = now - 730 * DAY;

    // The automation account.
    let mut email = format!("ci-bot@{}", cfg.email_domain);
    let mut k = 2;
    while inst.user_by_email(&email).is_some() {
        email = format!("ci-bot{k}@{}", cfg.email_domain);
        k += 1;
    }
    let bot = inst.insert_user(User {
        id: 0,
        name: "CI Bot".into(),
        email,
        is_active: true,
        is_admin: false,
        role_id: 3,
        email_notifications: false,
        mfa_required: false,
        sso_enabled: false,
        assigned_projects: Vec::new(),
        group_ids: Default::default(),
        api_keys: vec![AUTOMATION_KEY.to_string()],
        password: None,
    });
    inst.artefacts.automation_user = Some(bot);

    // Who was last active when (exact shares, shuffled).
    let people: Vec<&User> = inst.users.values().filter(|u| u.id != bot).collect();
    let active: Vec<u64> = people
        .iter()
        .filter(|u| u.is_active)
        .map(|u| u.id)
        .collect();
    let n = active.len();
    let week = share(n, 15, 100);
    let quarter = share(n, 35, 100) - week;
    let months = share(n, 35, 100).min(n - week - quarter);
    let mut classes: Vec<Recency> = std::iter::repeat_n(Recency::Week, week)
        .chain(std::iter::repeat_n(Recency::Quarter, quarter))
        .chain(std::iter::repeat_n(Recency::Months, months))
        .collect();
    classes.resize(n, Recency::Never);
    classes.shuffle(&mut rng);
    // (user, latest time, weight for the share of results)
    let mut authors: Vec<(u64, i64, u32)> = Vec::new();
    for (id, class) in active.iter().zip(&classes) {
        let (last, weight) = match class {
            Recency::Week => (now - rng.random_range(0..7 * DAY), 6),
            Recency::Quarter => (now - rng.random_range(7 * DAY..90 * DAY), 3),
            Recency::Months => (now - rng.random_range(91 * DAY..540 * DAY), 1),
            Recency::Never => continue,
        };
        authors.push((*id, last, weight));
    }
    for u in people.iter().filter(|u| !u.is_active) {
        if rng.random_bool(0.7) {
            authors.push((u.id, now - rng.random_range(30 * DAY..720 * DAY), 1));
        }
    }
    authors.sort_unstable();
    let humans_active: Vec<u64> = active.clone();
    let designers: Vec<(u64, i64)> = {
        let d: Vec<(u64, i64)> = authors
            .iter()
            .filter(|(id, _, _)| {
                inst.users
                    .get(id)
                    .is_some_and(|u| matches!(u.role_id, 1 | 2))
            })
            .map(|(id, last, _)| (*id, *last))
            .collect();
        if d.is_empty() {
            authors.iter().map(|(id, last, _)| (*id, *last)).collect()
        } else {
            d
        }
    };
    let bot_last = now - rng.random_range(0..2 * HOUR);

    // Suites and cases.
    let project_ids: Vec<u64> = inst.projects.keys().copied().collect();
    for pid in &project_ids {
        let mode = inst.projects.get(pid).map_or(1, |p| p.suite_mode);
        let names: Vec<&str> = if mode == 3 {
            SUITES[..rng.random_range(2..=3usize)].to_vec()
        } else {
            vec!["Master"]
        };
        let k = rng.random_range(2..=4usize).min(designers.len());
        let team: Vec<(u64, i64)> = designers.choose_multiple(&mut rng, k).copied().collect();
        for name in names {
            let sid = inst
                .artefacts
                .insert_suite(*pid, name.to_string(), mode != 3);
            for c in 0..rng.random_range(15..=60u32) {
                let (by, created_on, updated_by, updated_on) = match team.choose(&mut rng) {
                    Some((cid, clast)) => {
                        let created = *clast - rng.random_range(0..(*clast - start).max(1));
                        let (uid, ulast) = team.choose(&mut rng).copied().unwrap_or((*cid, *clast));
                        let (uid, ulast) = if ulast >= created {
                            (uid, ulast)
                        } else {
                            (*cid, *clast)
                        };
                        let updated = created + rng.random_range(0..=(ulast - created));
                        (*cid, created, uid, updated)
                    }
                    None => {
                        let t = bot_last - rng.random_range(0..365 * DAY);
                        (bot, t, bot, t)
                    }
                };
                let topic = CASE_TOPICS[c as usize % CASE_TOPICS.len()];
                inst.artefacts.insert_case(Case {
                    id: 0,
                    suite_id: sid,
                    section_id: None,
                    title: format!("{topic} ({name} {})", c + 1),
                    created_by: by,
                    created_on,
                    updated_by,
                    updated_on,
                });
            }
        }
    }

    // Results: (time, author), each with a project, grouped per project.
    let total = results as usize;
    let bot_share = if authors.is_empty() {
        total
    } else {
        share(total, 60, 100)
    };
    let human_total = total.saturating_sub(bot_share).max(authors.len());
    let mut per_project: Vec<Vec<(i64, u64)>> = vec![Vec::new(); project_ids.len()];
    let np = project_ids.len();
    // Each person works in one to three projects, from their id.
    let home = |uid: u64, pick: usize| -> usize {
        let k = (uid as usize).wrapping_mul(2_654_435_761) % np;
        (k + pick * 7) % np
    };
    for (uid, last, _) in &authors {
        per_project[home(*uid, 0)].push((*last, *uid));
    }
    let mut cumulative = Vec::with_capacity(authors.len());
    let mut sum = 0u64;
    for (_, _, w) in &authors {
        sum += u64::from(*w);
        cumulative.push(sum);
    }
    for _ in authors.len()..human_total {
        let pick = rng.random_range(0..sum);
        let i = cumulative.partition_point(|c| *c <= pick);
        let (uid, last, _) = authors[i];
        let t = last - rng.random_range(0..(last - start).clamp(1, 365 * DAY));
        let p = home(uid, rng.random_range(0..3usize));
        per_project[p].push((t, uid));
    }
    per_project[rng.random_range(0..np)].push((bot_last, bot));
    for _ in 1..bot_share {
        let t = bot_last - rng.random_range(0..365 * DAY);
        per_project[rng.random_range(0..np)].push((t, bot));
    }

    // Runs, tests and results, project by project.
    let statuses: &[(u64, u32)] = &[
        (STATUS_PASSED, 70),
        (STATUS_FAILED, 15),
        (STATUS_RETEST, 8),
        (STATUS_BLOCKED, 7),
    ];
    for (pi, mut items) in per_project.into_iter().enumerate() {
        let pid = project_ids[pi];
        items.sort_unstable();
        let suites: Vec<u64> = inst.artefacts.project_suites(pid).to_vec();
        let mut seq = 0usize;
        let mut runs_here: Vec<(u64, i64)> = Vec::new();
        let mut rest = items.as_slice();
        while !rest.is_empty() {
            let size = rng.random_range(40..=400usize).min(rest.len());
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            seq += 1;
            let (first_t, creator) = chunk[0];
            let last_t = chunk[chunk.len() - 1].0;
            let sid = *suites.choose(&mut rng).unwrap_or(&0);
            let created_on = first_t - rng.random_range(0..6 * HOUR);
            let case_ids: Vec<u64> = {
                let all = inst.artefacts.suite(sid).map_or(&[][..], |s| &s.case_ids);
                let before: Vec<u64> = all
                    .iter()
                    .copied()
                    .filter(|c| {
                        inst.artefacts
                            .case(*c)
                            .is_some_and(|c| c.created_on <= created_on)
                    })
                    .collect();
                if before.len() >= 5 {
                    before
                } else {
                    all.iter().take(5).copied().collect()
                }
            };
            if case_ids.is_empty() {
                continue;
            }
            let tests: Vec<(u64, Option<u64>)> = case_ids
                .iter()
                .map(|c| {
                    let a = rng
                        .random_bool(0.6)
                        .then(|| humans_active.choose(&mut rng).copied())
                        .flatten();
                    (*c, a)
                })
                .collect();
            let open = now - last_t < 14 * DAY || !rng.random_bool(0.65);
            let completed_on =
                (!open).then(|| (last_t + rng.random_range(HOUR..3 * DAY)).min(now - 1));
            let kind = RUN_KINDS.choose(&mut rng).copied().unwrap_or("Regression");
            let suite_name = inst
                .artefacts
                .suite(sid)
                .map_or_else(String::new, |s| s.name.clone());
            let run = Run {
                id: 0,
                project_id: pid,
                suite_id: sid,
                name: format!("{kind} #{seq} ({suite_name})"),
                description: None,
                created_by: creator,
                created_on,
                updated_on: completed_on.unwrap_or(last_t),
                assignedto_id: rng
                    .random_bool(0.7)
                    .then(|| humans_active.choose(&mut rng).copied())
                    .flatten(),
                is_completed: !open,
                completed_on,
                plan_id: None,
                entry_id: None,
                test_ids: Vec::new(),
                result_ids: Vec::new(),
            };
            let rid = inst.artefacts.insert_run(run, &tests);
            let test_ids = inst
                .artefacts
                .run(rid)
                .map_or(Vec::new(), |r| r.test_ids.clone());
            for (t, by) in chunk {
                let test_id = *test_ids.choose(&mut rng).unwrap_or(&0);
                let status = super::weighted(&mut rng, statuses);
                let comment = rng
                    .random_bool(0.05)
                    .then(|| "See the attached log.".to_string());
                inst.artefacts.add_result(
                    rid,
                    &NewResult {
                        test_id,
                        status_id: Some(status),
                        assignedto_id: None,
                        comment,
                    },
                    *by,
                    *t,
                );
            }
            if let Some(r) = inst.artefacts.run_mut(rid) {
                r.updated_on = completed_on.unwrap_or(last_t);
            }
            runs_here.push((rid, last_t));
        }

        // Plans: about one run in eight starts a plan with the next zero to two runs.
        let mut i = 0;
        while i < runs_here.len() {
            if !rng.random_bool(0.125) {
                i += 1;
                continue;
            }
            let take = rng.random_range(1..=3usize).min(runs_here.len() - i);
            let group = &runs_here[i..i + take];
            i += take;
            let last_t = group.iter().map(|(_, t)| *t).max().unwrap_or(now);
            let open = group
                .iter()
                .any(|(r, _)| inst.artefacts.run(*r).is_some_and(|r| !r.is_completed));
            let completed_on =
                (!open).then(|| (last_t + rng.random_range(HOUR..3 * DAY)).min(now - 1));
            let mut entries = Vec::new();
            for (rid, _) in group {
                if let Some(r) = inst.artefacts.run_mut(*rid) {
                    r.is_completed = !open;
                    r.completed_on = completed_on;
                    r.updated_on = completed_on.unwrap_or(r.updated_on);
                    entries.push(PlanEntry {
                        id: guid(&mut rng),
                        suite_id: r.suite_id,
                        name: r.name.clone(),
                        run_ids: vec![*rid],
                    });
                }
            }
            let Some(first) = inst.artefacts.run(group[0].0) else {
                continue;
            };
            let plan = Plan {
                id: 0,
                project_id: pid,
                name: format!("Release plan {}", inst.artefacts.plans.len() + 1),
                description: None,
                created_by: first.created_by,
                created_on: first.created_on - rng.random_range(0..HOUR),
                assignedto_id: first.assignedto_id,
                is_completed: !open,
                completed_on,
                entries,
            };
            inst.artefacts.insert_plan(plan);
        }
    }
}

/// A GUID string from the seed's stream (version 4 layout).
pub(crate) fn guid(rng: &mut ChaCha8Rng) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        rng.random::<u32>(),
        rng.random::<u16>(),
        rng.random::<u16>() & 0x0fff,
        (rng.random::<u16>() & 0x3fff) | 0x8000,
        rng.random::<u64>() & 0xffff_ffff_ffff
    )
}
