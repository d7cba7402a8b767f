//! What both back ends share about activity evidence: assembling an account's latest piece
//! and its counts from the two queries.

use std::collections::BTreeMap;

use crate::model::{AccountEvidence, EvidenceRecord};

/// One account's latest evidence: `(user, kind, artefact, at, project, run)`.
pub(crate) type LatestRow = (i64, String, i64, i64, Option<i64>, Option<i64>);

/// `(user, kind, artefact, at, project, run)` rows of each account's latest evidence (ties:
/// the first row wins) and `(user, 30 days, 90 days, results in 90 days)` counts.
pub(crate) fn assemble(
    latest: Vec<LatestRow>,
    counts: Vec<(i64, i64, i64, i64)>,
) -> Vec<AccountEvidence> {
    let counts: BTreeMap<i64, (i64, i64, i64)> = counts
        .into_iter()
        .map(|(u, a, b, c)| (u, (a, b, c)))
        .collect();
    let mut out: BTreeMap<i64, AccountEvidence> = BTreeMap::new();
    for (user, kind, artefact, at, project, run) in latest {
        out.entry(user).or_insert_with(|| {
            let (a, b, c) = counts.get(&user).copied().unwrap_or_default();
            AccountEvidence {
                tr_user_id: user as u64,
                latest: EvidenceRecord {
                    kind,
                    artefact_id: artefact as u64,
                    tr_user_id: user as u64,
                    at,
                    project_id: project.map(|p| p as u64),
                    run_id: run.map(|r| r as u64),
                },
                last_30_days: a as u64,
                last_90_days: b as u64,
                results_90_days: c as u64,
            }
        });
    }
    out.into_values().collect()
}

/// The error of an evidence scan whose process stopped before it finished.
pub const INTERRUPTED: &str = "interrupted: the process running it stopped before it finished";
