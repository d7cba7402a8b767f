//! One listing query for accounts: filters, sort, paging and a total count in SQL, now or at
//! a scan (the same query with a revision bound). Only the page's rows are read, and only the
//! page's memberships.

use std::collections::BTreeMap;

use sqlx::{FromRow, QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::{i, matches, u};
use crate::error::{StoreError, StoreResult};
use crate::model::{
    AccountCounts, AccountListing, AccountQuery, AccountSort, ListedAccount, StoredMatch,
};
use accessrail_domain::Account;

/// Rows are read by id, this many ids per statement.
const IN_LIST_MAX: usize = 500;

/// `alias` valid now (`rev` None) or right after revision `rev`.
fn push_valid(qb: &mut QueryBuilder<Sqlite>, alias: &str, rev: Option<i64>) {
    match rev {
        None => {
            qb.push(format!(" {alias}.valid_to_rev IS NULL "));
        }
        Some(r) => {
            qb.push(format!(" {alias}.valid_from_rev <= "));
            qb.push_bind(r);
            qb.push(format!(
                " AND ({alias}.valid_to_rev IS NULL OR {alias}.valid_to_rev > "
            ));
            qb.push_bind(r);
            qb.push(") ");
        }
    }
}

/// Whether the filters read the stored match (otherwise the match is joined for the page only).
fn needs_match(q: &AccountQuery) -> bool {
    q.match_state.is_some() || q.leaver
}

/// How a filter on the stored match reaches the accounts.
#[derive(Clone, Copy, PartialEq)]
enum MatchJoin {
    /// The matching ids as a set (`IN`): best when few accounts pass.
    IdSet,
    /// A lookup per account, in the sort's index order (`EXISTS`): best when most accounts
    /// pass, as the page's first rows are found at once.
    PerAccount,
    /// The query is driven from the match index: the match filter is outside.
    Outside,
}

/// No search and no group: the current total is a sum over `account_facets`.
fn total_from_facets(q: &AccountQuery, rev: Option<i64>) -> bool {
    rev.is_none() && q.group_id.is_none() && q.q.as_deref().is_none_or(str::is_empty)
}

/// The total of a listing without a search or a group, from the facet counts (a few rows,
/// whatever the number of accounts).
fn push_facet_total<'a>(qb: &mut QueryBuilder<Sqlite>, cid: &'a str, q: &'a AccountQuery) {
    qb.push("SELECT COALESCE(SUM(n), 0) FROM account_facets WHERE connection_id = ");
    qb.push_bind(cid);
    if let Some(active) = q.active {
        qb.push(" AND is_active = ");
        qb.push_bind(active);
    }
    if let Some(role) = q.role_id {
        qb.push(" AND role_id = ");
        qb.push_bind(i(role));
    }
    if let Some(admin) = q.admin {
        qb.push(" AND is_admin = ");
        qb.push_bind(admin);
    }
    if let Some(state) = q.match_state {
        qb.push(" AND state = ");
        qb.push_bind(matches::state_str(state));
    }
    if q.leaver {
        qb.push(" AND state = 'matched' AND identity_status = 'leaver' ");
    }
}

fn push_match_filter(qb: &mut QueryBuilder<Sqlite>, q: &AccountQuery) {
    if let Some(state) = q.match_state {
        qb.push(" AND m.state = ");
        qb.push_bind(matches::state_str(state));
    }
    if q.leaver {
        // Only a match names an identity (and so its status): `match_current_state` serves.
        qb.push(" AND m.state = 'matched' AND m.identity_status = 'leaver' ");
    }
}

/// The index a listing must read, where SQLite's own choice can cost a pass over every
/// account: a group's members by id; for a search (`q`), an index holding both keys (without
/// this, SQLite may pick a narrower index and read every row).
fn search_index(
    q: &AccountQuery,
    rev: Option<i64>,
    sort: Option<AccountSort>,
) -> Option<&'static str> {
    if rev.is_some() {
        return None;
    }
    // A group is a few hundred accounts at most: probe them by id and sort them, rather than
    // walk a sort index over every account looking for members.
    if q.group_id.is_some() {
        return Some("account_current");
    }
    if q.q.as_deref().is_none_or(str::is_empty) {
        return None;
    }
    Some(match sort {
        Some(AccountSort::Name) => "account_current_name",
        Some(AccountSort::Email) => "account_current_email",
        _ => "account_current_search",
    })
}

fn push_from_where<'a>(
    qb: &mut QueryBuilder<Sqlite>,
    cid: &'a str,
    rev: Option<i64>,
    q: &'a AccountQuery,
    join: MatchJoin,
    index: Option<&'static str>,
) {
    qb.push(" FROM account_versions a ");
    if let Some(index) = index {
        qb.push(format!(" INDEXED BY {index} "));
    }
    qb.push(" WHERE a.connection_id = ");
    qb.push_bind(cid);
    qb.push(" AND ");
    push_valid(qb, "a", rev);
    // Filters on groups are id sets (`IN` a subquery on their own index): SQLite then starts
    // from the smaller side instead of probing every account. Filters on the match are either.
    if needs_match(q) && join != MatchJoin::Outside {
        match join {
            MatchJoin::IdSet => {
                qb.push(" AND a.tr_user_id IN (SELECT m.tr_user_id FROM match_versions m WHERE m.connection_id = ");
                qb.push_bind(cid);
            }
            MatchJoin::PerAccount | MatchJoin::Outside => {
                qb.push(" AND EXISTS (SELECT 1 FROM match_versions m WHERE m.connection_id = a.connection_id
                          AND m.tr_user_id = a.tr_user_id ");
            }
        }
        qb.push(" AND ");
        push_valid(qb, "m", rev);
        push_match_filter(qb, q);
        qb.push(") ");
    }
    if let Some(g) = q.group_id {
        qb.push(" AND a.tr_user_id IN (SELECT g.tr_user_id FROM membership_versions g WHERE g.connection_id = ");
        qb.push_bind(cid);
        qb.push(" AND g.tr_group_id = ");
        qb.push_bind(i(g));
        qb.push(" AND ");
        push_valid(qb, "g", rev);
        qb.push(") ");
    }
    if let Some(active) = q.active {
        qb.push(" AND a.is_active = ");
        qb.push_bind(active);
    }
    if let Some(role) = q.role_id {
        qb.push(" AND a.role_id = ");
        qb.push_bind(i(role));
    }
    match q.admin {
        Some(true) => {
            qb.push(" AND a.is_admin = 1 ");
        }
        Some(false) => {
            qb.push(" AND (a.is_admin IS NULL OR a.is_admin = 0) ");
        }
        None => {}
    }
    if let Some(needle) =
        q.q.as_deref()
            .map(str::to_lowercase)
            .filter(|n| !n.is_empty())
    {
        qb.push(" AND (instr(a.email_key, ");
        qb.push_bind(needle.clone());
        qb.push(") > 0 OR instr(a.name_key, ");
        qb.push_bind(needle);
        qb.push(") > 0) ");
    }
}

fn sort_clause(sort: AccountSort) -> &'static str {
    match sort {
        AccountSort::Name => " ORDER BY a.name_key, a.tr_user_id ",
        AccountSort::Email => " ORDER BY a.email_key, a.tr_user_id ",
        AccountSort::Role => " ORDER BY COALESCE(a.role_name, ''), a.tr_user_id ",
        AccountSort::Active => " ORDER BY a.is_active DESC, a.tr_user_id ",
        AccountSort::Id => " ORDER BY a.tr_user_id ",
    }
}

#[derive(FromRow)]
struct Row {
    tr_user_id: i64,
    name: Option<String>,
    email: Option<String>,
    is_active: bool,
    role_id: Option<i64>,
    role_name: Option<String>,
    is_admin: Option<bool>,
    state: Option<String>,
    identity_id: Option<String>,
    identity_name: Option<String>,
    identity_status: Option<String>,
    pinned: Option<bool>,
    reason: Option<String>,
    candidates: Option<String>,
}

/// The revision a committed scan of this connection made.
pub(super) async fn revision_of(pool: &SqlitePool, cid: &str, scan: i64) -> StoreResult<i64> {
    let rev: Option<Option<i64>> =
        sqlx::query_scalar("SELECT revision FROM scans WHERE id = ? AND connection_id = ?")
            .bind(scan)
            .bind(cid)
            .fetch_optional(pool)
            .await?;
    rev.flatten()
        .ok_or_else(|| StoreError::NotFound(format!("a committed scan {scan} of this connection")))
}

pub(super) async fn list(
    pool: &SqlitePool,
    cid: &str,
    q: &AccountQuery,
) -> StoreResult<AccountListing> {
    let rev = match q.at_scan {
        Some(scan) => Some(revision_of(pool, cid, scan).await?),
        None => None,
    };
    // One read transaction: the total, the page's ids, its rows and memberships come from one
    // snapshot, whatever commits meanwhile.
    let mut conn = pool.begin().await?;
    let total: i64 = if total_from_facets(q, rev) {
        let mut count: QueryBuilder<Sqlite> = QueryBuilder::new("");
        push_facet_total(&mut count, cid, q);
        count.build_query_scalar().fetch_one(&mut *conn).await?
    } else {
        let mut count: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT COUNT(*) ");
        push_from_where(
            &mut count,
            cid,
            rev,
            q,
            MatchJoin::IdSet,
            search_index(q, rev, None),
        );
        count.build_query_scalar().fetch_one(&mut *conn).await?
    };
    if total == 0 || q.limit == Some(0) || i(q.offset) >= total {
        return Ok(AccountListing {
            total: u(total),
            accounts: Vec::new(),
        });
    }
    // With the total known, a match filter that most accounts pass is checked per account in
    // the sort's order (the page is found in its first rows); one that few pass, as a set.
    let all: i64 =
        sqlx::query_scalar("SELECT accounts FROM account_counts WHERE connection_id = ?")
            .bind(cid)
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or(0);
    let join = if rev.is_none() && total.saturating_mul(4) > all {
        MatchJoin::PerAccount
    } else {
        MatchJoin::IdSet
    };

    // The page's ids first (from the indexes), then only those rows in full. A match state in
    // id order walks the match index in that order, checking each account's other filters.
    let mut ids_q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT a.tr_user_id ");
    if rev.is_none() && q.match_state.is_some() && q.sort == AccountSort::Id {
        ids_q = QueryBuilder::new(
            "SELECT m.tr_user_id FROM match_versions m INDEXED BY match_current_state_id
             WHERE m.connection_id = ",
        );
        ids_q.push_bind(cid);
        ids_q.push(" AND m.valid_to_rev IS NULL ");
        push_match_filter(&mut ids_q, q);
        ids_q.push(" AND EXISTS (SELECT 1 ");
        push_from_where(
            &mut ids_q,
            cid,
            rev,
            q,
            MatchJoin::Outside,
            search_index(q, rev, None),
        );
        ids_q.push(" AND a.tr_user_id = m.tr_user_id) ORDER BY m.tr_user_id ");
    } else {
        push_from_where(
            &mut ids_q,
            cid,
            rev,
            q,
            join,
            search_index(q, rev, Some(q.sort)),
        );
        ids_q.push(sort_clause(q.sort));
    }
    ids_q.push(" LIMIT ");
    ids_q.push_bind(q.limit.map_or(-1, i));
    ids_q.push(" OFFSET ");
    ids_q.push_bind(i(q.offset));
    let ids: Vec<i64> = ids_q.build_query_scalar().fetch_all(&mut *conn).await?;
    let mut rows: Vec<Row> = Vec::with_capacity(ids.len());
    let mut groups: BTreeMap<i64, Vec<(u64, Option<String>)>> = BTreeMap::new();
    for chunk in ids.chunks(IN_LIST_MAX) {
        let mut page: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT a.tr_user_id, a.name, a.email, a.is_active, a.role_id, a.role_name, a.is_admin,
                    m.state, m.identity_id, m.identity_name, m.identity_status, m.pinned, m.reason, m.candidates
             FROM account_versions a LEFT JOIN match_versions m
               ON m.connection_id = a.connection_id AND m.tr_user_id = a.tr_user_id AND ",
        );
        push_valid(&mut page, "m", rev);
        page.push(" WHERE a.connection_id = ");
        page.push_bind(cid);
        page.push(" AND ");
        push_valid(&mut page, "a", rev);
        page.push(" AND a.tr_user_id IN (");
        let mut sep = page.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        page.push(") ");
        rows.extend(page.build_query_as::<Row>().fetch_all(&mut *conn).await?);

        // The page's memberships, with each group's name then.
        let mut g: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT g.tr_user_id, g.tr_group_id, gv.name FROM membership_versions g
             LEFT JOIN group_versions gv ON gv.connection_id = g.connection_id AND gv.tr_group_id = g.tr_group_id AND ",
        );
        push_valid(&mut g, "gv", rev);
        g.push(" WHERE g.connection_id = ");
        g.push_bind(cid);
        g.push(" AND ");
        push_valid(&mut g, "g", rev);
        g.push(" AND g.tr_user_id IN (");
        let mut sep = g.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        g.push(") ORDER BY g.tr_user_id, g.tr_group_id");
        let members: Vec<(i64, i64, Option<String>)> =
            g.build_query_as().fetch_all(&mut *conn).await?;
        for (user, group, name) in members {
            groups.entry(user).or_default().push((u(group), name));
        }
    }
    let order: BTreeMap<i64, usize> = ids.iter().enumerate().map(|(n, id)| (*id, n)).collect();
    rows.sort_by_key(|r| order.get(&r.tr_user_id).copied().unwrap_or(usize::MAX));

    let mut accounts = Vec::with_capacity(rows.len());
    for r in rows {
        let member_of = groups.remove(&r.tr_user_id).unwrap_or_default();
        let matched: Option<StoredMatch> = match &r.state {
            Some(state) => Some(matches::to_stored(
                state,
                r.identity_id,
                r.identity_name,
                r.identity_status,
                r.pinned.unwrap_or(false),
                r.reason.unwrap_or_default(),
                r.candidates.as_deref().unwrap_or("[]"),
            )?),
            None => None,
        };
        accounts.push(ListedAccount {
            account: Account {
                id: u(r.tr_user_id),
                name: r.name,
                email: r.email,
                is_active: r.is_active,
                role_id: r.role_id.map(u),
                role: r.role_name,
                is_admin: r.is_admin,
                group_ids: member_of.iter().map(|(id, _)| *id).collect(),
                fields: Default::default(),
            },
            groups: member_of,
            matched,
        });
    }
    Ok(AccountListing {
        total: u(total),
        accounts,
    })
}

/// Recounts a connection's current accounts into `account_counts` (inside the transaction
/// that changed them).
pub(super) async fn recount(tx: &mut SqliteConnection, cid: &str) -> StoreResult<()> {
    recount_accounts(tx, cid).await?;
    recount_groups(tx, cid).await
}

/// Recounts `account_counts` and `account_facets` (what a change of matches alone can move).
pub(super) async fn recount_accounts(tx: &mut SqliteConnection, cid: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM account_facets WHERE connection_id = ?")
        .bind(cid)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO account_facets (connection_id, is_active, is_admin, role_id, state, identity_status, n)
         SELECT ?1, a.is_active, COALESCE(a.is_admin = 1, 0), a.role_id, m.state, m.identity_status, COUNT(*)
         FROM account_versions a LEFT JOIN match_versions m
           ON m.connection_id = a.connection_id AND m.tr_user_id = a.tr_user_id AND m.valid_to_rev IS NULL
         WHERE a.connection_id = ?1 AND a.valid_to_rev IS NULL
         GROUP BY a.is_active, COALESCE(a.is_admin = 1, 0), a.role_id, m.state, m.identity_status",
    )
    .bind(cid)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT OR REPLACE INTO account_counts (connection_id, accounts, active, unmatched_active, ambiguous,
                forgotten, leavers_active, admins)
         SELECT ?1, COUNT(*),
                COALESCE(SUM(a.is_active), 0),
                COALESCE(SUM(a.is_active AND COALESCE(m.state, 'unmatched') = 'unmatched'), 0),
                COALESCE(SUM(m.state = 'ambiguous'), 0),
                COALESCE(SUM(m.state = 'forgotten'), 0),
                COALESCE(SUM(a.is_active AND m.identity_status = 'leaver'), 0),
                COALESCE(SUM(a.is_admin = 1), 0)
         FROM account_versions a LEFT JOIN match_versions m
           ON m.connection_id = a.connection_id AND m.tr_user_id = a.tr_user_id AND m.valid_to_rev IS NULL
         WHERE a.connection_id = ?1 AND a.valid_to_rev IS NULL",
    )
    .bind(cid)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Recounts `group_counts` (members and active members of each group).
async fn recount_groups(tx: &mut SqliteConnection, cid: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM group_counts WHERE connection_id = ?")
        .bind(cid)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO group_counts (connection_id, tr_group_id, members, active_members)
         SELECT ?1, m.tr_group_id, COUNT(*), COALESCE(SUM(a.is_active), 0)
         FROM membership_versions m
         LEFT JOIN account_versions a ON a.connection_id = m.connection_id
              AND a.tr_user_id = m.tr_user_id AND a.valid_to_rev IS NULL
         WHERE m.connection_id = ?1 AND m.valid_to_rev IS NULL
         GROUP BY m.tr_group_id",
    )
    .bind(cid)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(super) async fn counts(pool: &SqlitePool, cid: &str) -> StoreResult<AccountCounts> {
    let row: Option<(i64, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT accounts, active, unmatched_active, ambiguous, forgotten, leavers_active, admins
         FROM account_counts WHERE connection_id = ?",
    )
    .bind(cid)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(AccountCounts::default());
    };
    Ok(AccountCounts {
        accounts: u(row.0),
        active: u(row.1),
        unmatched_active: u(row.2),
        ambiguous: u(row.3),
        forgotten: u(row.4),
        leavers_active: u(row.5),
        admins: u(row.6),
    })
}
