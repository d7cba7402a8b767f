//! Stored match results: recomputed with `domain::match_accounts` inside the transaction that
//! changed one of their inputs (accounts, identities, manual decisions), and written as versions
//! only where they differ from the current ones. Reads never recompute them.

use std::collections::BTreeMap;

use accessrail_domain::{AccountRef, Identity, MatchOverride, MatchState, match_accounts};
use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::{IdentityRow, u};
use crate::error::{StoreError, StoreResult};
use crate::model::StoredMatch;

/// Which revision new match versions belong to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Rev {
    /// The revision being committed in this transaction (a scan, a provisioning action).
    At(i64),
    /// A revision of its own (kind `match`), made only if something changed.
    OwnIfChanged { now: i64 },
}

pub(super) fn state_str(s: MatchState) -> &'static str {
    s.as_str()
}

pub(super) fn parse_state(s: &str) -> StoreResult<MatchState> {
    match s {
        "matched" => Ok(MatchState::Matched),
        "unmatched" => Ok(MatchState::Unmatched),
        "ambiguous" => Ok(MatchState::Ambiguous),
        "forgotten" => Ok(MatchState::Forgotten),
        other => Err(StoreError::Corrupt(format!("match state {other:?}"))),
    }
}

fn identity_status(i: &Identity) -> String {
    if i.gone {
        "gone".into()
    } else {
        i.status.as_str().into()
    }
}

type MatchTuple = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
    String,
    String,
);

/// Recomputes every current match of a connection and records the differences. Returns the
/// number of accounts whose match changed.
pub(super) async fn refresh(tx: &mut PgConnection, cid: &str, rev: Rev) -> StoreResult<u64> {
    super::bulk_joins(tx).await?;
    let accounts: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT tr_user_id, email FROM account_versions WHERE connection_id = $1 AND valid_to_rev IS NULL",
    )
    .bind(cid)
    .fetch_all(&mut *tx)
    .await?;
    let identities: Vec<Identity> = sqlx::query_as::<_, IdentityRow>(
        // Matching reads emails and status, never the attributes: they stay on disk.
        "SELECT id, name, status, emails, '{}' AS attributes, gone FROM identities",
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(IdentityRow::into_identity)
    .collect::<StoreResult<_>>()?;
    let overrides: Vec<MatchOverride> = sqlx::query_as::<_, (i64, String, String)>(
        "SELECT tr_user_id, identity_id, kind FROM match_overrides WHERE connection_id = $1",
    )
    .bind(cid)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(account, identity_id, kind)| MatchOverride {
        account_id: u(account),
        identity_id,
        kind: if kind == "pin" {
            accessrail_domain::OverrideKind::Pin
        } else {
            accessrail_domain::OverrideKind::Exclude
        },
    })
    .collect();
    let refs: Vec<AccountRef<'_>> = accounts
        .iter()
        .map(|(id, email)| AccountRef {
            id: u(*id),
            email: email.as_deref(),
        })
        .collect();
    let outcomes = match_accounts(&refs, &identities, &overrides);
    let by_id: BTreeMap<&str, &Identity> = identities.iter().map(|x| (x.id.as_str(), x)).collect();

    let current: BTreeMap<i64, MatchTuple> = sqlx::query_as::<_, MatchTuple>(
        "SELECT tr_user_id, state, identity_id, identity_name, identity_status, pinned, reason, candidates
         FROM match_versions WHERE connection_id = $1 AND valid_to_rev IS NULL",
    )
    .bind(cid)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|t| (t.0, t))
    .collect();

    let mut wanted: Vec<MatchTuple> = Vec::new();
    let mut close: Vec<i64> = Vec::new();
    for (id, _) in &accounts {
        let Some(o) = outcomes.get(&u(*id)) else {
            continue;
        };
        let ident = o.identity_id.as_deref().and_then(|x| by_id.get(x));
        let row: MatchTuple = (
            *id,
            state_str(o.state).to_string(),
            o.identity_id.clone(),
            ident.map(|x| x.name.clone()),
            ident.map(|x| identity_status(x)),
            o.pinned,
            o.reason.to_string(),
            serde_json::to_string(&o.candidates).unwrap_or_else(|_| "[]".into()),
        );
        match current.get(id) {
            Some(old) if *old == row => {}
            Some(_) => {
                close.push(*id);
                wanted.push(row);
            }
            None => wanted.push(row),
        }
    }
    let live: std::collections::BTreeSet<i64> = accounts.iter().map(|(id, _)| *id).collect();
    close.extend(current.keys().filter(|id| !live.contains(id)));
    if wanted.is_empty() && close.is_empty() {
        return Ok(0);
    }
    let recount = matches!(rev, Rev::OwnIfChanged { .. });
    let rev = match rev {
        Rev::At(r) => r,
        Rev::OwnIfChanged { now } => {
            let rev = super::new_revision(tx, cid, "match", now).await?;
            sqlx::query(
                "INSERT INTO scans (connection_id, started_at, finished_at, status, kind, revision)
                 VALUES ($1, $2, $3, 'succeeded', 'match', $4)",
            )
            .bind(cid)
            .bind(now)
            .bind(now)
            .bind(rev)
            .execute(&mut *tx)
            .await?;
            rev
        }
    };
    let changed = wanted.len() as u64;
    if !close.is_empty() {
        sqlx::query("CREATE TEMP TABLE IF NOT EXISTS match_close (tr_user_id BIGINT PRIMARY KEY)")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM match_close")
            .execute(&mut *tx)
            .await?;
        for chunk in close.chunks(500) {
            let mut qb: QueryBuilder<Postgres> =
                QueryBuilder::new("INSERT INTO match_close (tr_user_id) ");
            qb.push_values(chunk, |mut b, id| {
                b.push_bind(*id);
            });
            qb.push(" ON CONFLICT DO NOTHING");
            qb.build().execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE match_versions SET valid_to_rev = $2 WHERE connection_id = $1 AND valid_to_rev IS NULL
               AND tr_user_id IN (SELECT tr_user_id FROM match_close)",
        )
        .bind(cid)
        .bind(rev)
        .execute(&mut *tx)
        .await?;
    }
    for chunk in wanted.chunks(300) {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO match_versions (connection_id, tr_user_id, valid_from_rev, state, identity_id, identity_name,
             identity_status, pinned, reason, candidates) ",
        );
        qb.push_values(chunk, |mut b, m| {
            b.push_bind(cid)
                .push_bind(m.0)
                .push_bind(rev)
                .push_bind(m.1.clone())
                .push_bind(m.2.clone())
                .push_bind(m.3.clone())
                .push_bind(m.4.clone())
                .push_bind(m.5)
                .push_bind(m.6.clone())
                .push_bind(m.7.clone());
        });
        qb.build().execute(&mut *tx).await?;
    }
    // A scan or provisioning action recounts once at its end; a match revision of its own
    // recounts here.
    if recount {
        // Matches move no group's counts.
        super::listing::recount_accounts(tx, cid).await?;
    }
    Ok(changed)
}

/// Every connection's matches, after the identities changed.
pub(super) async fn refresh_all(tx: &mut PgConnection, now: i64) -> StoreResult<u64> {
    let ids: Vec<String> =
        sqlx::query_scalar(r#"SELECT id FROM connections ORDER BY id COLLATE "C""#)
            .fetch_all(&mut *tx)
            .await?;
    let mut n = 0;
    for cid in ids {
        n += refresh(tx, &cid, Rev::OwnIfChanged { now }).await?;
    }
    Ok(n)
}

pub(super) fn to_stored(
    state: &str,
    identity_id: Option<String>,
    identity_name: Option<String>,
    identity_status: Option<String>,
    pinned: bool,
    reason: String,
    candidates: &str,
) -> StoreResult<StoredMatch> {
    Ok(StoredMatch {
        state: parse_state(state)?,
        identity_id,
        identity_name,
        identity_status,
        pinned,
        reason,
        candidates: serde_json::from_str(candidates)
            .map_err(|e| StoreError::Corrupt(format!("match candidates: {e}")))?,
    })
}
