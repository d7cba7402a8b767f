//! [`AnyStore`]: the back end chosen at start-up — an embedded SQLite file (the default) or a
//! PostgreSQL database shared by several replicas — behind the one [`Store`] trait.

use std::path::PathBuf;

use accessrail_domain::{Account, AuditRecord, Identity};

use crate::error::{StoreError, StoreResult};
use crate::model::*;
use crate::postgres::{PgScan, PgStore};
use crate::sqlite::{SqliteScan, SqliteStore};
use crate::{ScanWriter, Store};

/// Where the store lives, as given by `--database-url` / `ACCESSRAIL_DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://...`); never printed whole (it may hold a password).
    Postgres(String),
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Self::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

impl StoreLocation {
    /// `postgres://...` or `postgresql://...` is PostgreSQL; `sqlite://PATH` or a plain path is
    /// a SQLite file. Anything else with a scheme is refused.
    pub fn parse(url: &str) -> StoreResult<Self> {
        let url = url.trim();
        if url.is_empty() {
            return Err(StoreError::Invalid("the database URL is empty".into()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_string()));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::Invalid("sqlite:// needs a file path".into()));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(StoreError::Invalid(format!(
                "unsupported database URL scheme {scheme:?}: use postgres://..., sqlite://PATH or a file path"
            )));
        }
        Ok(Self::Sqlite(PathBuf::from(url)))
    }

    /// What logs and status pages may show: the back end and, for PostgreSQL, the host and
    /// database without user or password.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("SQLite {}", p.display()),
            Self::Postgres(url) => {
                let rest = url.split_once("://").map_or("", |(_, r)| r);
                let host_and_db = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                let host_and_db = host_and_db.split('?').next().unwrap_or_default();
                format!("PostgreSQL {host_and_db}")
            }
        }
    }
}

/// The store the application runs on.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl AnyStore {
    pub async fn open(location: &StoreLocation) -> StoreResult<Self> {
        Ok(match location {
            StoreLocation::Sqlite(path) => Self::Sqlite(SqliteStore::open(path).await?),
            StoreLocation::Postgres(url) => Self::Postgres(PgStore::open(url).await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

impl From<SqliteStore> for AnyStore {
    fn from(s: SqliteStore) -> Self {
        Self::Sqlite(s)
    }
}

impl From<PgStore> for AnyStore {
    fn from(s: PgStore) -> Self {
        Self::Postgres(s)
    }
}

/// A scan being written on either back end.
#[derive(Debug)]
pub enum AnyScan {
    Sqlite(SqliteScan),
    Postgres(PgScan),
}

macro_rules! on_store {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $call.await,
            AnyStore::Postgres($s) => $call.await,
        }
    };
}

macro_rules! on_scan {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyScan::Sqlite($s) => $call.await,
            AnyScan::Postgres($s) => $call.await,
        }
    };
}

impl Store for AnyStore {
    type Scan = AnyScan;

    async fn insert_connection(&self, c: NewConnection) -> StoreResult<Connection> {
        on_store!(self, s => s.insert_connection(c))
    }
    async fn replace_connection(&self, c: NewConnection) -> StoreResult<Connection> {
        on_store!(self, s => s.replace_connection(c))
    }
    async fn connections(&self) -> StoreResult<Vec<Connection>> {
        on_store!(self, s => s.connections())
    }
    async fn connection(&self, name: &str) -> StoreResult<Option<Connection>> {
        on_store!(self, s => s.connection(name))
    }
    async fn remove_connection(&self, name: &str) -> StoreResult<bool> {
        on_store!(self, s => s.remove_connection(name))
    }
    async fn set_groups_supported(&self, connection_id: &str, supported: bool) -> StoreResult<()> {
        on_store!(self, s => s.set_groups_supported(connection_id, supported))
    }
    async fn reseal_secrets(&self, secrets: Vec<(String, SealedSecret)>) -> StoreResult<()> {
        on_store!(self, s => s.reseal_secrets(secrets))
    }
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl_secs: i64,
    ) -> StoreResult<Option<LeaseToken>> {
        on_store!(self, s => s.acquire_lease(name, holder, now, ttl_secs))
    }
    async fn renew_lease(&self, token: &LeaseToken, now: i64, ttl_secs: i64) -> StoreResult<bool> {
        on_store!(self, s => s.renew_lease(token, now, ttl_secs))
    }
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        on_store!(self, s => s.release_lease(name, holder))
    }
    async fn release_leases_held_by(&self, holder_prefix: &str) -> StoreResult<u64> {
        on_store!(self, s => s.release_leases_held_by(holder_prefix))
    }
    async fn begin_scan(
        &self,
        connection_id: &str,
        now: i64,
        lease: LeaseToken,
    ) -> StoreResult<AnyScan> {
        Ok(match self {
            AnyStore::Sqlite(s) => AnyScan::Sqlite(s.begin_scan(connection_id, now, lease).await?),
            AnyStore::Postgres(s) => {
                AnyScan::Postgres(s.begin_scan(connection_id, now, lease).await?)
            }
        })
    }
    async fn scans(&self, connection_id: &str) -> StoreResult<Vec<ScanRecord>> {
        on_store!(self, s => s.scans(connection_id))
    }
    async fn scan(&self, scan_id: i64) -> StoreResult<Option<ScanRecord>> {
        on_store!(self, s => s.scan(scan_id))
    }
    async fn current_accounts(&self, connection_id: &str) -> StoreResult<Vec<Account>> {
        on_store!(self, s => s.current_accounts(connection_id))
    }
    async fn accounts_at_scan(
        &self,
        connection_id: &str,
        scan_id: i64,
    ) -> StoreResult<Vec<Account>> {
        on_store!(self, s => s.accounts_at_scan(connection_id, scan_id))
    }
    async fn current_groups(&self, connection_id: &str) -> StoreResult<Vec<GroupRecord>> {
        on_store!(self, s => s.current_groups(connection_id))
    }
    async fn current_group_names(
        &self,
        connection_id: &str,
    ) -> StoreResult<Vec<(u64, Option<String>)>> {
        on_store!(self, s => s.current_group_names(connection_id))
    }
    async fn group_summaries(&self, connection_id: &str) -> StoreResult<Vec<GroupSummary>> {
        on_store!(self, s => s.group_summaries(connection_id))
    }
    async fn list_accounts(
        &self,
        connection_id: &str,
        query: &AccountQuery,
    ) -> StoreResult<AccountListing> {
        on_store!(self, s => s.list_accounts(connection_id, query))
    }
    async fn account_counts(&self, connection_id: &str) -> StoreResult<AccountCounts> {
        on_store!(self, s => s.account_counts(connection_id))
    }
    async fn current_roles(&self, connection_id: &str) -> StoreResult<Vec<RoleRecord>> {
        on_store!(self, s => s.current_roles(connection_id))
    }
    async fn changes(
        &self,
        connection_id: &str,
        since: Option<i64>,
        scan_id: Option<i64>,
    ) -> StoreResult<Vec<ChangeRecord>> {
        on_store!(self, s => s.changes(connection_id, since, scan_id))
    }
    async fn recent_changes(
        &self,
        connection_id: &str,
        before: Option<i64>,
        limit: u64,
    ) -> StoreResult<Vec<ChangeRecord>> {
        on_store!(self, s => s.recent_changes(connection_id, before, limit))
    }
    async fn account(
        &self,
        connection_id: &str,
        account_id: u64,
    ) -> StoreResult<Option<ListedAccount>> {
        on_store!(self, s => s.account(connection_id, account_id))
    }
    async fn latest_revision(&self, connection_id: &str) -> StoreResult<Option<i64>> {
        on_store!(self, s => s.latest_revision(connection_id))
    }
    async fn projects(
        &self,
        connection_id: &str,
        at_scan: Option<i64>,
    ) -> StoreResult<Vec<accessrail_domain::project::Project>> {
        on_store!(self, s => s.projects(connection_id, at_scan))
    }
    async fn project_changes(
        &self,
        connection_id: &str,
        project_id: u64,
        limit: u64,
    ) -> StoreResult<Vec<ChangeRecord>> {
        on_store!(self, s => s.project_changes(connection_id, project_id, limit))
    }
    async fn account_changes(
        &self,
        connection_id: &str,
        account_id: u64,
        limit: u64,
    ) -> StoreResult<Vec<ChangeRecord>> {
        on_store!(self, s => s.account_changes(connection_id, account_id, limit))
    }
    async fn account_audit(
        &self,
        connection_id: &str,
        account_id: u64,
        email: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<AuditEntry>> {
        on_store!(self, s => s.account_audit(connection_id, account_id, email, limit))
    }
    async fn import_identities(
        &self,
        identities: Vec<Identity>,
        full: bool,
        now: i64,
    ) -> StoreResult<ImportSummary> {
        on_store!(self, s => s.import_identities(identities, full, now))
    }
    async fn identities(&self) -> StoreResult<Vec<Identity>> {
        on_store!(self, s => s.identities())
    }
    async fn set_override(
        &self,
        connection_id: &str,
        o: OverrideRecord,
        now: i64,
    ) -> StoreResult<()> {
        on_store!(self, s => s.set_override(connection_id, o, now))
    }
    async fn clear_override(
        &self,
        connection_id: &str,
        account_id: u64,
        identity_id: Option<&str>,
        now: i64,
    ) -> StoreResult<u64> {
        on_store!(self, s => s.clear_override(connection_id, account_id, identity_id, now))
    }
    async fn overrides(&self, connection_id: &str) -> StoreResult<Vec<OverrideRecord>> {
        on_store!(self, s => s.overrides(connection_id))
    }
    async fn set_provisioning(&self, connection_id: &str, enabled: bool) -> StoreResult<()> {
        on_store!(self, s => s.set_provisioning(connection_id, enabled))
    }
    async fn protect(&self, connection_id: &str, p: ProtectedAccount) -> StoreResult<()> {
        on_store!(self, s => s.protect(connection_id, p))
    }
    async fn unprotect(&self, connection_id: &str, email: &str) -> StoreResult<bool> {
        on_store!(self, s => s.unprotect(connection_id, email))
    }
    async fn protected(&self, connection_id: &str) -> StoreResult<Vec<ProtectedAccount>> {
        on_store!(self, s => s.protected(connection_id))
    }
    async fn append_audit(&self, record: AuditRecord) -> StoreResult<AuditEntry> {
        on_store!(self, s => s.append_audit(record))
    }
    async fn audit_log(&self) -> StoreResult<Vec<AuditEntry>> {
        on_store!(self, s => s.audit_log())
    }
    async fn recent_audit(&self, before: Option<i64>, limit: u64) -> StoreResult<Vec<AuditEntry>> {
        on_store!(self, s => s.recent_audit(before, limit))
    }
    async fn record_provision(
        &self,
        connection_id: &str,
        audit_id: i64,
        now: i64,
        update: ProvisionUpdate,
    ) -> StoreResult<i64> {
        on_store!(self, s => s.record_provision(connection_id, audit_id, now, update))
    }
    async fn create_token(&self, name: &str, hash: &str, now: i64) -> StoreResult<()> {
        on_store!(self, s => s.create_token(name, hash, now))
    }
    async fn upsert_token(&self, name: &str, hash: &str, now: i64) -> StoreResult<()> {
        on_store!(self, s => s.upsert_token(name, hash, now))
    }
    async fn revoke_token(&self, name: &str, now: i64) -> StoreResult<bool> {
        on_store!(self, s => s.revoke_token(name, now))
    }
    async fn tokens(&self) -> StoreResult<Vec<TokenRecord>> {
        on_store!(self, s => s.tokens())
    }
    async fn create_reviewer_token(
        &self,
        name: &str,
        hash: &str,
        reviewer: &str,
        now: i64,
    ) -> StoreResult<()> {
        on_store!(self, s => s.create_reviewer_token(name, hash, reviewer, now))
    }
    async fn token_auth_by_hash(&self, hash: &str) -> StoreResult<Option<TokenAuth>> {
        on_store!(self, s => s.token_auth_by_hash(hash))
    }
    async fn set_owner(
        &self,
        connection_id: &str,
        kind: &str,
        target_id: u64,
        target_name: &str,
        owner: Option<&str>,
        now: i64,
    ) -> StoreResult<bool> {
        on_store!(self, s => s.set_owner(connection_id, kind, target_id, target_name, owner, now))
    }
    async fn owners(&self, connection_id: &str) -> StoreResult<Vec<OwnerRecord>> {
        on_store!(self, s => s.owners(connection_id))
    }
    async fn create_review(
        &self,
        review: NewReview,
        items: Vec<ReviewItemRecord>,
    ) -> StoreResult<i64> {
        on_store!(self, s => s.create_review(review, items))
    }
    async fn reviews(&self, connection_id: Option<&str>) -> StoreResult<Vec<ReviewRecord>> {
        on_store!(self, s => s.reviews(connection_id))
    }
    async fn review(&self, id: i64) -> StoreResult<Option<ReviewRecord>> {
        on_store!(self, s => s.review(id))
    }
    async fn review_items(
        &self,
        review_id: i64,
        reviewer: Option<&str>,
    ) -> StoreResult<Vec<ReviewItemRecord>> {
        on_store!(self, s => s.review_items(review_id, reviewer))
    }
    async fn review_progress(&self, review_id: i64) -> StoreResult<Vec<ReviewerProgress>> {
        on_store!(self, s => s.review_progress(review_id))
    }
    async fn decide_review_items(
        &self,
        review_id: i64,
        reviewer: &str,
        decisions: Vec<ReviewDecision>,
    ) -> StoreResult<u64> {
        on_store!(self, s => s.decide_review_items(review_id, reviewer, decisions))
    }
    async fn review_submissions(&self, review_id: i64) -> StoreResult<Vec<SubmissionRecord>> {
        on_store!(self, s => s.review_submissions(review_id))
    }
    async fn submit_review(
        &self,
        review_id: i64,
        reviewer: &str,
        by: &str,
        now: i64,
    ) -> StoreResult<String> {
        on_store!(self, s => s.submit_review(review_id, reviewer, by, now))
    }
    async fn begin_review_close(&self, review_id: i64) -> StoreResult<()> {
        on_store!(self, s => s.begin_review_close(review_id))
    }
    async fn end_review_close(&self, review_id: i64) -> StoreResult<()> {
        on_store!(self, s => s.end_review_close(review_id))
    }
    async fn judge_submission(
        &self,
        review_id: i64,
        reviewer: &str,
        approve: bool,
        by: &str,
        comment: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        on_store!(self, s => s.judge_submission(review_id, reviewer, approve, by, comment, now))
    }
    async fn record_review_outcomes(
        &self,
        review_id: i64,
        outcomes: Vec<ItemOutcome>,
        close: Option<ReviewClose>,
    ) -> StoreResult<()> {
        on_store!(self, s => s.record_review_outcomes(review_id, outcomes, close))
    }
    async fn review_items_page(
        &self,
        review_id: i64,
        reviewer: Option<&str>,
        decided: Option<bool>,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<ReviewItemRecord>, u64)> {
        on_store!(self, s => s.review_items_page(review_id, reviewer, decided, offset, limit))
    }
    async fn review_decision_counts(
        &self,
        review_id: i64,
    ) -> StoreResult<Vec<(String, Option<String>, u64)>> {
        on_store!(self, s => s.review_decision_counts(review_id))
    }
    async fn begin_evidence_run(
        &self,
        connection_id: &str,
        now: i64,
        read_from: i64,
    ) -> StoreResult<i64> {
        on_store!(self, s => s.begin_evidence_run(connection_id, now, read_from))
    }
    async fn add_evidence(
        &self,
        connection_id: &str,
        evidence: Vec<EvidenceRecord>,
    ) -> StoreResult<u64> {
        on_store!(self, s => s.add_evidence(connection_id, evidence))
    }
    #[allow(clippy::too_many_arguments)]
    async fn finish_evidence_run(
        &self,
        run_id: i64,
        status: &str,
        requests: u64,
        estimate: u64,
        evidence: u64,
        error: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        on_store!(self, s => s.finish_evidence_run(run_id, status, requests, estimate, evidence, error, now))
    }
    async fn evidence_runs(&self, connection_id: &str) -> StoreResult<Vec<EvidenceRun>> {
        on_store!(self, s => s.evidence_runs(connection_id))
    }
    async fn account_evidence(
        &self,
        connection_id: &str,
        now: i64,
        account: Option<u64>,
    ) -> StoreResult<Vec<AccountEvidence>> {
        on_store!(self, s => s.account_evidence(connection_id, now, account))
    }
    async fn create_scim_token(
        &self,
        name: &str,
        hash: &str,
        connection_id: &str,
        now: i64,
    ) -> StoreResult<()> {
        on_store!(self, s => s.create_scim_token(name, hash, connection_id, now))
    }
    async fn scim_token_by_hash(&self, hash: &str) -> StoreResult<Option<(String, String)>> {
        on_store!(self, s => s.scim_token_by_hash(hash))
    }
    async fn scim_resource(
        &self,
        connection_id: &str,
        kind: &str,
        tr_id: u64,
    ) -> StoreResult<Option<ScimResource>> {
        on_store!(self, s => s.scim_resource(connection_id, kind, tr_id))
    }
    async fn scim_resources(
        &self,
        connection_id: &str,
        kind: &str,
    ) -> StoreResult<Vec<ScimResource>> {
        on_store!(self, s => s.scim_resources(connection_id, kind))
    }
    async fn put_scim_resource(&self, r: ScimResource) -> StoreResult<()> {
        on_store!(self, s => s.put_scim_resource(r))
    }
    async fn scim_claim_deactivation(
        &self,
        connection_id: &str,
        token: &str,
        tr_user_id: u64,
        email: &str,
        now: i64,
        cap: u32,
        window: i64,
    ) -> StoreResult<ScimClaim> {
        on_store!(self, s => s.scim_claim_deactivation(connection_id, token, tr_user_id, email, now, cap, window))
    }
    async fn scim_holds(&self, connection_id: Option<&str>) -> StoreResult<Vec<ScimDeactivation>> {
        on_store!(self, s => s.scim_holds(connection_id))
    }
    async fn scim_decide(&self, id: i64, approve: bool, by: &str, now: i64) -> StoreResult<bool> {
        on_store!(self, s => s.scim_decide(id, approve, by, now))
    }
    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<String>> {
        on_store!(self, s => s.token_by_hash(hash))
    }
    async fn create_session(
        &self,
        rec: SessionRecord,
        expired_before: i64,
        max: u64,
    ) -> StoreResult<()> {
        on_store!(self, s => s.create_session(rec, expired_before, max))
    }
    async fn session(&self, id_hash: &str) -> StoreResult<Option<SessionRecord>> {
        on_store!(self, s => s.session(id_hash))
    }
    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        on_store!(self, s => s.delete_session(id_hash))
    }
    async fn session_count(&self) -> StoreResult<u64> {
        on_store!(self, s => s.session_count())
    }
    async fn keep_setup_key(&self, key: PendingSetupKey, expired_before: i64) -> StoreResult<()> {
        on_store!(self, s => s.keep_setup_key(key, expired_before))
    }
    async fn setup_key(
        &self,
        session_hash: &str,
        not_before: i64,
    ) -> StoreResult<Option<PendingSetupKey>> {
        on_store!(self, s => s.setup_key(session_hash, not_before))
    }
    async fn drop_setup_key(&self, session_hash: &str) -> StoreResult<()> {
        on_store!(self, s => s.drop_setup_key(session_hash))
    }
    async fn forget_setup_keys(&self, kept_before: Option<i64>) -> StoreResult<u64> {
        on_store!(self, s => s.forget_setup_keys(kept_before))
    }
    async fn insert_plan(&self, p: PlanRecord, forget_before: i64) -> StoreResult<()> {
        on_store!(self, s => s.insert_plan(p, forget_before))
    }
    async fn claim_plan(&self, id: &str, stale_before: i64) -> StoreResult<PlanClaim> {
        on_store!(self, s => s.claim_plan(id, stale_before))
    }
    async fn release_plan(&self, id: &str, status: PlanStatus) -> StoreResult<()> {
        on_store!(self, s => s.release_plan(id, status))
    }
    async fn start_plan_apply(&self, id: &str, now: i64) -> StoreResult<bool> {
        on_store!(self, s => s.start_plan_apply(id, now))
    }
    async fn finish_plan(
        &self,
        id: &str,
        status: PlanStatus,
        outcome: Option<&str>,
    ) -> StoreResult<()> {
        on_store!(self, s => s.finish_plan(id, status, outcome))
    }
    async fn plan(&self, id: &str) -> StoreResult<Option<PlanRecord>> {
        on_store!(self, s => s.plan(id))
    }
    async fn take_request_slot(
        &self,
        instance: &str,
        per_minute: u32,
        now: i64,
    ) -> StoreResult<Option<i64>> {
        on_store!(self, s => s.take_request_slot(instance, per_minute, now))
    }
    async fn flows(&self, connection_id: &str) -> StoreResult<Option<String>> {
        on_store!(self, s => s.flows(connection_id))
    }
    async fn set_flows(
        &self,
        connection_id: &str,
        text: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        on_store!(self, s => s.set_flows(connection_id, text, now))
    }
    async fn set_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        on_store!(self, s => s.set_setting(name, value))
    }
    async fn claim_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        on_store!(self, s => s.claim_setting(name, value))
    }
    async fn interrupt_running_scans(
        &self,
        connection_id: &str,
        now: i64,
        reason: &str,
    ) -> StoreResult<u64> {
        on_store!(self, s => s.interrupt_running_scans(connection_id, now, reason))
    }
    async fn abandon_running_scans(&self, now: i64, reason: &str) -> StoreResult<u64> {
        on_store!(self, s => s.abandon_running_scans(now, reason))
    }
}

impl ScanWriter for AnyScan {
    fn id(&self) -> i64 {
        match self {
            AnyScan::Sqlite(s) => s.id(),
            AnyScan::Postgres(s) => s.id(),
        }
    }
    async fn stage_accounts(&mut self, accounts: &[Account]) -> StoreResult<()> {
        on_scan!(self, s => s.stage_accounts(accounts))
    }
    async fn stage_groups(&mut self, groups: &[GroupRecord]) -> StoreResult<()> {
        on_scan!(self, s => s.stage_groups(groups))
    }
    async fn stage_roles(&mut self, roles: &[RoleRecord]) -> StoreResult<()> {
        on_scan!(self, s => s.stage_roles(roles))
    }
    async fn stage_projects(
        &mut self,
        projects: Vec<accessrail_domain::project::Project>,
    ) -> StoreResult<()> {
        on_scan!(self, s => s.stage_projects(projects))
    }
    async fn commit(self, report: ScanReport, now: i64) -> StoreResult<CommitSummary> {
        on_scan!(self, s => s.commit(report, now))
    }
    async fn fail(self, error: &str, report: ScanReport, now: i64) -> StoreResult<()> {
        on_scan!(self, s => s.fail(error, report, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_never_show_a_password() {
        let pg = StoreLocation::parse(
            "postgres://ar:s3cret@db.internal:5432/accessrail?sslmode=require",
        )
        .expect("pg");
        assert!(matches!(pg, StoreLocation::Postgres(_)));
        assert_eq!(pg.describe(), "PostgreSQL db.internal:5432/accessrail");
        assert!(!format!("{pg:?}").contains("s3cret"));
        assert_eq!(
            StoreLocation::parse("sqlite:///var/lib/accessrail/a.db").expect("sqlite"),
            StoreLocation::Sqlite(PathBuf::from("/var/lib/accessrail/a.db"))
        );
        assert_eq!(
            StoreLocation::parse("data/accessrail.db").expect("path"),
            StoreLocation::Sqlite(PathBuf::from("data/accessrail.db"))
        );
        assert!(StoreLocation::parse("mysql://x/y").is_err());
        assert!(StoreLocation::parse("  ").is_err());
    }
}
