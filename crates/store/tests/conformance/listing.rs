//! Property: on random accounts, groups, identities, manual match decisions and several
//! revisions, the store's one listing query (every filter, sort and page, now and at each
//! scan) equals a plain in-memory reference built from `domain::match_accounts`.
//!
//! Seeded, so a failure names the seed that reproduces it (`LISTING_SEEDS=N` runs more).

use std::collections::BTreeMap;

use accessrail_domain::{
    Account, AccountRef, Fields, Identity, IdentityStatus, MatchOverride, MatchState, OverrideKind,
    match_accounts,
};
use accessrail_store::{
    AccountQuery, AccountSort, GroupRecord, NewConnection, OverrideRecord, RoleRecord, ScanReport,
    ScanWriter, SealedSecret, Store,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Backend;

const EMAILS: &[&str] = &[
    "ann@x.io",
    "Ann@X.io",
    "bob@x.io",
    "cleo@y.org",
    "dan@y.org",
    "eve@x.io",
    "F1234567",
    "not-an-email",
    "łukasz@x.io",
];
const NAMES: &[&str] = &["Ann", "bob", "Cleo", "Łukasz", "Zoë", "ann marie", ""];

/// One revision's world, as the reference sees it.
#[derive(Clone)]
struct World {
    accounts: Vec<Account>,
    groups: BTreeMap<u64, String>,
    identities: Vec<Identity>,
    overrides: Vec<MatchOverride>,
}

fn pick<'a, T>(rng: &mut StdRng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

fn random_accounts(rng: &mut StdRng) -> Vec<Account> {
    let mut out = vec![];
    for id in 1..=24u64 {
        if rng.random_bool(0.8) {
            let email = rng
                .random_bool(0.9)
                .then(|| (*pick(rng, EMAILS)).to_string());
            let name = rng
                .random_bool(0.9)
                .then(|| (*pick(rng, NAMES)).to_string());
            let role = rng.random_range(1..=2u64);
            out.push(Account {
                id,
                name,
                email: email.clone(),
                is_active: rng.random_bool(0.7),
                role_id: Some(role),
                role: Some(if role == 1 { "Lead" } else { "Tester" }.into()),
                is_admin: match rng.random_range(0..3) {
                    0 => None,
                    1 => Some(true),
                    _ => Some(false),
                },
                group_ids: vec![],
                fields: Fields::from_value(serde_json::json!({"id": id, "email": email})),
            });
        }
    }
    out
}

fn random_groups(rng: &mut StdRng, accounts: &mut [Account]) -> Vec<GroupRecord> {
    let mut groups = vec![];
    for gid in 1..=4u64 {
        if !rng.random_bool(0.85) {
            continue;
        }
        let members: Vec<u64> = accounts
            .iter()
            .filter(|_| rng.random_bool(0.35))
            .map(|a| a.id)
            .collect();
        groups.push(GroupRecord {
            id: gid,
            name: Some(format!("Group {gid}")),
            member_ids: members,
        });
    }
    for a in accounts.iter_mut() {
        a.group_ids = groups
            .iter()
            .filter(|g| g.member_ids.contains(&a.id))
            .map(|g| g.id)
            .collect();
    }
    groups
}

fn random_identities(rng: &mut StdRng) -> Vec<Identity> {
    let mut out = vec![];
    for n in 0..rng.random_range(0..8) {
        let mut emails = vec![(*pick(rng, EMAILS)).to_string()];
        if rng.random_bool(0.3) {
            emails.push((*pick(rng, EMAILS)).to_string());
        }
        emails.dedup();
        out.push(Identity {
            id: format!("p{n}"),
            name: format!("Person {n}"),
            emails,
            status: if rng.random_bool(0.3) {
                IdentityStatus::Leaver
            } else {
                IdentityStatus::Active
            },
            attributes: BTreeMap::new(),
            gone: false,
        });
    }
    out
}

fn reference(world: &World, q: &AccountQuery) -> (u64, Vec<String>) {
    let refs: Vec<AccountRef<'_>> = world
        .accounts
        .iter()
        .map(|a| AccountRef {
            id: a.id,
            email: a.email.as_deref(),
        })
        .collect();
    let matches = match_accounts(&refs, &world.identities, &world.overrides);
    let by_id: BTreeMap<&str, &Identity> = world
        .identities
        .iter()
        .map(|i| (i.id.as_str(), i))
        .collect();
    let status = |i: &Identity| -> String {
        if i.gone {
            "gone".into()
        } else {
            i.status.as_str().into()
        }
    };
    let needle =
        q.q.as_deref()
            .map(str::to_lowercase)
            .filter(|n| !n.is_empty());
    let mut rows: Vec<(&Account, String)> = world
        .accounts
        .iter()
        .filter_map(|a| {
            let m = &matches[&a.id];
            let ident = m.identity_id.as_deref().and_then(|x| by_id.get(x));
            let istatus = ident.map(|i| status(i));
            let keep = q.active.is_none_or(|x| a.is_active == x)
                && q.match_state.is_none_or(|s| m.state == s)
                && q.role_id.is_none_or(|r| a.role_id == Some(r))
                && q.group_id.is_none_or(|g| a.group_ids.contains(&g))
                && (!q.leaver || istatus.as_deref() == Some("leaver"))
                && match q.admin {
                    Some(true) => a.is_admin == Some(true),
                    Some(false) => a.is_admin != Some(true),
                    None => true,
                }
                && needle.as_ref().is_none_or(|n| {
                    a.email.as_deref().unwrap_or("").to_lowercase().contains(n)
                        || a.name.as_deref().unwrap_or("").to_lowercase().contains(n)
                });
            keep.then(|| {
                let mut groups = a.group_ids.clone();
                groups.sort_unstable();
                let group_names: Vec<String> =
                    groups.iter().map(|g| world.groups[g].clone()).collect();
                (
                    a,
                    format!(
                        "{} {:?} {:?} {} {:?} {:?} {} {:?} {:?} {} {:?} {:?}",
                        a.id,
                        a.email,
                        a.name,
                        a.is_active,
                        a.role,
                        a.is_admin,
                        m.state.as_str(),
                        m.identity_id,
                        istatus,
                        m.pinned,
                        m.candidates,
                        (groups, group_names)
                    ),
                )
            })
        })
        .collect();
    let lower = |s: &Option<String>| s.as_deref().unwrap_or("").to_lowercase();
    match q.sort {
        AccountSort::Name => rows.sort_by_key(|(a, _)| (lower(&a.name), a.id)),
        AccountSort::Email => rows.sort_by_key(|(a, _)| (lower(&a.email), a.id)),
        AccountSort::Role => rows.sort_by_key(|(a, _)| (a.role.clone().unwrap_or_default(), a.id)),
        AccountSort::Active => rows.sort_by_key(|(a, _)| (!a.is_active, a.id)),
        AccountSort::Id => rows.sort_by_key(|(a, _)| a.id),
    }
    let total = rows.len() as u64;
    let page = rows
        .into_iter()
        .skip(q.offset as usize)
        .take(q.limit.map_or(usize::MAX, |l| l as usize))
        .map(|(_, line)| line)
        .collect();
    (total, page)
}

fn random_query(rng: &mut StdRng, at_scan: Option<i64>, world: &World) -> AccountQuery {
    let maybe = |rng: &mut StdRng| rng.random_bool(0.3);
    let q = if maybe(rng) {
        let source = pick(rng, &world.accounts).clone();
        let text = if rng.random_bool(0.5) {
            source.email.unwrap_or_default()
        } else {
            source.name.unwrap_or_default()
        };
        let chars: Vec<char> = text.chars().collect();
        if chars.is_empty() {
            Some("x".into())
        } else {
            let a = rng.random_range(0..chars.len());
            let b = rng.random_range(a..=chars.len());
            let s: String = chars[a..b].iter().collect();
            Some(if rng.random_bool(0.5) {
                s.to_uppercase()
            } else {
                s
            })
        }
    } else {
        None
    };
    AccountQuery {
        at_scan,
        active: maybe(rng).then(|| rng.random_bool(0.5)),
        match_state: maybe(rng).then(|| {
            *pick(
                rng,
                &[
                    MatchState::Matched,
                    MatchState::Unmatched,
                    MatchState::Ambiguous,
                    MatchState::Forgotten,
                ],
            )
        }),
        role_id: maybe(rng).then(|| rng.random_range(1..=3)),
        group_id: maybe(rng).then(|| rng.random_range(1..=5)),
        leaver: rng.random_bool(0.15),
        admin: maybe(rng).then(|| rng.random_bool(0.5)),
        q,
        sort: *pick(
            rng,
            &[
                AccountSort::Name,
                AccountSort::Email,
                AccountSort::Role,
                AccountSort::Active,
                AccountSort::Id,
            ],
        ),
        limit: rng.random_bool(0.6).then(|| rng.random_range(1..8)),
        offset: if rng.random_bool(0.5) {
            0
        } else {
            rng.random_range(0..20)
        },
    }
}

/// Returns (queries run, queries with a non-empty page), so the test can show it is not vacuous.
async fn run_seed<B: Backend>(b: &B, seed: u64) -> (u64, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let store = b.fresh().await;
    store
        .insert_connection(NewConnection {
            id: "c1".into(),
            name: "acme".into(),
            base_url: "https://acme.testrail.io".into(),
            email: "admin@acme.io".into(),
            secret: SealedSecret {
                key_id: "k".into(),
                bytes: vec![1],
            },
            request_budget: None,
            groups_supported: None,
            scan_interval_secs: None,
            now: 0,
        })
        .await
        .unwrap();
    let mut identities = random_identities(&mut rng);
    store
        .import_identities(identities.clone(), true, 1)
        .await
        .unwrap();
    let mut overrides: Vec<MatchOverride> = vec![];
    let mut worlds: Vec<(i64, World)> = vec![];
    for round in 0..3i64 {
        let now = 1000 * (round + 1);
        let mut accounts = random_accounts(&mut rng);
        let groups = random_groups(&mut rng, &mut accounts);
        let lease = store
            .acquire_lease("scan:c1", "t", now, 600)
            .await
            .unwrap()
            .unwrap();
        let mut w = store.begin_scan("c1", now, lease).await.unwrap();
        w.stage_accounts(&accounts).await.unwrap();
        w.stage_groups(&groups).await.unwrap();
        w.stage_roles(&[
            RoleRecord {
                id: 1,
                name: Some("Lead".into()),
                is_default: Some(false),
                is_project_admin: None,
            },
            RoleRecord {
                id: 2,
                name: Some("Tester".into()),
                is_default: Some(true),
                is_project_admin: None,
            },
        ])
        .await
        .unwrap();
        let report = ScanReport {
            groups_fetched: true,
            roles_fetched: true,
            ..ScanReport::default()
        };
        let summary = w.commit(report, now).await.unwrap();
        worlds.push((
            summary.scan_id,
            World {
                accounts: accounts.clone(),
                groups: groups
                    .iter()
                    .map(|g| (g.id, g.name.clone().unwrap()))
                    .collect(),
                identities: identities.clone(),
                overrides: overrides.clone(),
            },
        ));
        // Between scans: manual decisions and a new identity import.
        for _ in 0..rng.random_range(0..3) {
            if identities.is_empty() || accounts.is_empty() {
                break;
            }
            let account = pick(&mut rng, &accounts).id;
            let identity = pick(&mut rng, &identities).id.clone();
            let kind = if rng.random_bool(0.5) {
                OverrideKind::Pin
            } else {
                OverrideKind::Exclude
            };
            store
                .set_override(
                    "c1",
                    OverrideRecord {
                        account_id: account,
                        identity_id: identity.clone(),
                        kind,
                    },
                    now + 1,
                )
                .await
                .unwrap();
            if kind == OverrideKind::Pin {
                overrides.retain(|o| !(o.account_id == account && o.kind == OverrideKind::Pin));
            }
            overrides.retain(|o| !(o.account_id == account && o.identity_id == identity));
            overrides.push(MatchOverride {
                account_id: account,
                identity_id: identity,
                kind,
            });
        }
        if rng.random_bool(0.5) {
            let fresh = random_identities(&mut rng);
            let full = rng.random_bool(0.5);
            store
                .import_identities(fresh.clone(), full, now + 2)
                .await
                .unwrap();
            let mut merged: BTreeMap<String, Identity> = identities
                .into_iter()
                .map(|i| {
                    let mut i = i;
                    if full && !fresh.iter().any(|f| f.id == i.id) {
                        i.gone = true;
                    }
                    (i.id.clone(), i)
                })
                .collect();
            for f in fresh {
                merged.insert(f.id.clone(), f);
            }
            identities = merged.into_values().collect();
        }
    }
    // The current state: the last scan's accounts with today's identities and decisions.
    let mut now_world = worlds.last().unwrap().1.clone();
    now_world.identities = identities.clone();
    now_world.overrides = overrides.clone();
    let mut views: Vec<(Option<i64>, &World)> =
        worlds.iter().map(|(id, w)| (Some(*id), w)).collect();
    views.push((None, &now_world));
    let (mut ran, mut non_empty) = (0u64, 0u64);
    for (at, world) in views {
        for n in 0..60 {
            let q = random_query(&mut rng, at, world);
            let got = store.list_accounts("c1", &q).await.unwrap();
            let lines: Vec<String> = got
                .accounts
                .iter()
                .map(|l| {
                    let m = l
                        .matched
                        .as_ref()
                        .expect("every account has a stored match");
                    let groups: Vec<u64> = l.groups.iter().map(|(g, _)| *g).collect();
                    let names: Vec<String> =
                        l.groups.iter().map(|(_, n)| n.clone().unwrap()).collect();
                    format!(
                        "{} {:?} {:?} {} {:?} {:?} {} {:?} {:?} {} {:?} {:?}",
                        l.account.id,
                        l.account.email,
                        l.account.name,
                        l.account.is_active,
                        l.account.role,
                        l.account.is_admin,
                        m.state.as_str(),
                        m.identity_id,
                        m.identity_status,
                        m.pinned,
                        m.candidates,
                        (groups, names)
                    )
                })
                .collect();
            let (total, want) = reference(world, &q);
            ran += 1;
            non_empty += u64::from(!want.is_empty());
            assert_eq!(
                (got.total, &lines),
                (total, &want),
                "seed {seed}, view {at:?}, query {n}: {q:?}"
            );
        }
    }
    // The summary counts agree with the reference too.
    let counts = store.account_counts("c1").await.unwrap();
    let all = AccountQuery {
        limit: None,
        ..AccountQuery::default()
    };
    assert_eq!(
        counts.accounts,
        reference(&now_world, &all).0,
        "seed {seed}"
    );
    let active_unmatched = AccountQuery {
        active: Some(true),
        match_state: Some(MatchState::Unmatched),
        ..all.clone()
    };
    assert_eq!(
        counts.unmatched_active,
        reference(&now_world, &active_unmatched).0,
        "seed {seed}"
    );
    let leavers = AccountQuery {
        active: Some(true),
        leaver: true,
        ..all
    };
    assert_eq!(
        counts.leavers_active,
        reference(&now_world, &leavers).0,
        "seed {seed}"
    );
    // Group counts (kept up to date by each write) agree with the reference.
    let summaries = store.group_summaries("c1").await.unwrap();
    let want: Vec<(u64, u64, u64)> = now_world
        .groups
        .keys()
        .map(|g| {
            let members: Vec<&Account> = now_world
                .accounts
                .iter()
                .filter(|a| a.group_ids.contains(g))
                .collect();
            (
                *g,
                members.len() as u64,
                members.iter().filter(|a| a.is_active).count() as u64,
            )
        })
        .collect();
    let got: Vec<(u64, u64, u64)> = summaries
        .iter()
        .map(|g| (g.id, g.members, g.active_members))
        .collect();
    assert_eq!(got, want, "seed {seed}: group counts");
    (ran, non_empty)
}

pub async fn the_listing_query_equals_the_in_memory_reference<B: Backend>(b: &B) {
    let seeds: u64 = std::env::var("LISTING_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let (mut ran, mut non_empty) = (0, 0);
    for seed in 0..seeds {
        let (r, n) = run_seed(b, seed).await;
        ran += r;
        non_empty += n;
    }
    assert!(
        non_empty * 3 > ran,
        "most queries should find something: {non_empty} of {ran}"
    );
}
