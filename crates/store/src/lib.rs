//! Accessrail's store. The [`Store`] trait is the interface the engine uses; [`SqliteStore`]
//! implements it on an embedded SQLite file, [`PgStore`] on PostgreSQL (several replicas on one
//! database). All SQL lives in this crate.
//!
//! History is kept as versioned rows: each account, group, membership and role version is
//! valid from one scan until another. A rescan that finds nothing changed writes no version
//! rows; "who had access at scan N" is a query over the versions.

mod any;
mod digest;
mod error;
mod evidence;
mod jobs;
mod migrate;
mod model;
mod postgres;
mod projects;
mod reviews;
mod sqlite;

use std::future::Future;

pub use accessrail_domain::{Account, AuditRecord, Identity};
pub use any::{AnyScan, AnyStore, StoreLocation};
pub use error::{StoreError, StoreResult};
pub use jobs::{JobStorage, JobTiming, NewJob};
pub use migrate::{MigrationReport, sqlite_to_postgres};
pub use model::{
    AccountCounts, AccountEvidence, AccountListing, AccountQuery, AccountSort, AuditEntry,
    ChangeRecord, CommitSummary, Connection, EvidenceRecord, EvidenceRun, GroupRecord,
    GroupSummary, ImportSummary, ItemOutcome, LeaseToken, ListedAccount, NewChange, NewConnection,
    NewReview, OverrideRecord, OwnerRecord, PendingSetupKey, PlanClaim, PlanRecord, PlanStatus,
    ProtectedAccount, ProvisionUpdate, ReviewClose, ReviewDecision, ReviewItemRecord, ReviewRecord,
    ReviewerProgress, RoleRecord, ScanRecord, ScanReport, ScanStatus, ScimClaim, ScimDeactivation,
    ScimResource, SealedSecret, SessionRecord, StoredMatch, SubmissionRecord, TokenAuth,
    TokenRecord,
};
pub use postgres::PgScan;
pub use postgres::PgStore;
pub use sqlite::{SqliteScan, SqliteStore};

/// Everything the engine stores. Times are Unix seconds.
/// Cheap to clone (a handle on a connection pool).
pub trait Store: Clone + Send + Sync + 'static {
    type Scan: ScanWriter;

    // ---- connections ----
    fn insert_connection(
        &self,
        c: NewConnection,
    ) -> impl Future<Output = StoreResult<Connection>> + Send;
    /// Replaces the connection of that name (its history is kept: the id stays).
    fn replace_connection(
        &self,
        c: NewConnection,
    ) -> impl Future<Output = StoreResult<Connection>> + Send;
    fn connections(&self) -> impl Future<Output = StoreResult<Vec<Connection>>> + Send;
    fn connection(
        &self,
        name: &str,
    ) -> impl Future<Output = StoreResult<Option<Connection>>> + Send;
    fn remove_connection(&self, name: &str) -> impl Future<Output = StoreResult<bool>> + Send;
    fn set_groups_supported(
        &self,
        connection_id: &str,
        supported: bool,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Replaces every sealed secret in one transaction (master key rotation).
    fn reseal_secrets(
        &self,
        secrets: Vec<(String, SealedSecret)>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    // ---- leases (one scan of a connection, one change of a group, at a time, across processes) ----
    /// Takes the lease if it is free, expired, or already this holder's. Returns the token
    /// (with its generation, which grows with every new holder), or `None` when someone else
    /// holds it.
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl_secs: i64,
    ) -> impl Future<Output = StoreResult<Option<LeaseToken>>> + Send;
    /// Extends a held lease. `false` when the token no longer holds it (it expired and was
    /// taken, or was released): the holder must stop before writing anything.
    fn renew_lease(
        &self,
        token: &LeaseToken,
        now: i64,
        ttl_secs: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn release_lease(
        &self,
        name: &str,
        holder: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Releases every lease whose holder starts with `holder_prefix` (a process that stops).
    fn release_leases_held_by(
        &self,
        holder_prefix: &str,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    // ---- scans ----
    /// Starts a scan guarded by the connection's scan lease: its commit checks, in the same
    /// transaction, that the lease still holds.
    fn begin_scan(
        &self,
        connection_id: &str,
        now: i64,
        lease: LeaseToken,
    ) -> impl Future<Output = StoreResult<Self::Scan>> + Send;
    fn scans(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<ScanRecord>>> + Send;
    fn scan(&self, scan_id: i64) -> impl Future<Output = StoreResult<Option<ScanRecord>>> + Send;
    /// The newest committed revision of a connection (a scan, a provisioning action, a change of
    /// matches): anything derived from the current state holds until it changes.
    fn latest_revision(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;
    /// The current accounts (as of the last good scan), with their group ids.
    fn current_accounts(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<Account>>> + Send;
    /// The accounts as they were right after scan `scan_id` committed, with their group ids
    /// then (later revisions, provisioning included, are not seen).
    fn accounts_at_scan(
        &self,
        connection_id: &str,
        scan_id: i64,
    ) -> impl Future<Output = StoreResult<Vec<Account>>> + Send;
    fn current_groups(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<GroupRecord>>> + Send;
    /// The current groups' ids and names (no members).
    fn current_group_names(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<(u64, Option<String>)>>> + Send;
    /// The current groups with their member and active member counts, counted in the store.
    fn group_summaries(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<GroupSummary>>> + Send;
    /// Accounts with their groups and stored match, filtered, sorted and paged in the store,
    /// now or at a scan. What `accessrail users`, the API and the console list.
    fn list_accounts(
        &self,
        connection_id: &str,
        query: &AccountQuery,
    ) -> impl Future<Output = StoreResult<AccountListing>> + Send;
    /// Counts over the current accounts and their stored matches.
    fn account_counts(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = StoreResult<AccountCounts>> + Send;
    fn current_roles(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<RoleRecord>>> + Send;
    /// The projects with their access facts (default role, group roles, users' own roles), now
    /// or right after scan `at_scan` committed. Empty until a scan has read projects.
    fn projects(
        &self,
        connection_id: &str,
        at_scan: Option<i64>,
    ) -> impl Future<Output = StoreResult<Vec<accessrail_domain::project::Project>>> + Send;
    /// One project's changes (the project and its access), newest first: at most `limit`.
    fn project_changes(
        &self,
        connection_id: &str,
        project_id: u64,
        limit: u64,
    ) -> impl Future<Output = StoreResult<Vec<ChangeRecord>>> + Send;
    /// One current account (as of the last revision), with its fields, groups and stored
    /// match: what the console's page of an account shows.
    fn account(
        &self,
        connection_id: &str,
        account_id: u64,
    ) -> impl Future<Output = StoreResult<Option<ListedAccount>>> + Send;
    /// One account's changes, newest first: at most `limit`.
    fn account_changes(
        &self,
        connection_id: &str,
        account_id: u64,
        limit: u64,
    ) -> impl Future<Output = StoreResult<Vec<ChangeRecord>>> + Send;
    /// Changes, newest last, optionally since a time and/or of one scan.
    fn changes(
        &self,
        connection_id: &str,
        since: Option<i64>,
        scan_id: Option<i64>,
    ) -> impl Future<Output = StoreResult<Vec<ChangeRecord>>> + Send;
    /// One page of changes, newest first: at most `limit`, older than change `before` if given.
    fn recent_changes(
        &self,
        connection_id: &str,
        before: Option<i64>,
        limit: u64,
    ) -> impl Future<Output = StoreResult<Vec<ChangeRecord>>> + Send;

    // ---- identities and overrides ----
    /// Upserts identities; a full import marks the ones it does not contain as gone.
    fn import_identities(
        &self,
        identities: Vec<Identity>,
        full: bool,
        now: i64,
    ) -> impl Future<Output = StoreResult<ImportSummary>> + Send;
    fn identities(&self) -> impl Future<Output = StoreResult<Vec<Identity>>> + Send;
    fn set_override(
        &self,
        connection_id: &str,
        o: OverrideRecord,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Removes the overrides of an account (all of them, or the one for `identity_id`).
    fn clear_override(
        &self,
        connection_id: &str,
        account_id: u64,
        identity_id: Option<&str>,
        now: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    fn overrides(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<OverrideRecord>>> + Send;

    // ---- provisioning ----
    fn set_provisioning(
        &self,
        connection_id: &str,
        enabled: bool,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn protect(
        &self,
        connection_id: &str,
        p: ProtectedAccount,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn unprotect(
        &self,
        connection_id: &str,
        email: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn protected(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<ProtectedAccount>>> + Send;
    /// Appends to the audit log, chaining the entry to the previous one's hash.
    fn append_audit(
        &self,
        record: AuditRecord,
    ) -> impl Future<Output = StoreResult<AuditEntry>> + Send;
    /// The whole audit log, oldest first.
    fn audit_log(&self) -> impl Future<Output = StoreResult<Vec<AuditEntry>>> + Send;
    /// One page of the audit log, newest first: at most `limit`, older than entry `before`.
    fn recent_audit(
        &self,
        before: Option<i64>,
        limit: u64,
    ) -> impl Future<Output = StoreResult<Vec<AuditEntry>>> + Send;
    /// The audit entries about one account of a connection, newest first, at most `limit`:
    /// those whose target is `email` (any case), and those behind a change of the account.
    fn account_audit(
        &self,
        connection_id: &str,
        account_id: u64,
        email: Option<&str>,
        limit: u64,
    ) -> impl Future<Output = StoreResult<Vec<AuditEntry>>> + Send;
    /// Makes the stored state reflect a provisioning action at once, as a new revision
    /// (numbered when it commits, after every revision committed before it), with change rows
    /// pointing at the audit entry. Returns the id of its row in `scans`.
    fn record_provision(
        &self,
        connection_id: &str,
        audit_id: i64,
        now: i64,
        update: ProvisionUpdate,
    ) -> impl Future<Output = StoreResult<i64>> + Send;

    // ---- API tokens (hashes only) ----
    /// Creates a token; a revoked token's name can be reused, a live one cannot.
    fn create_token(
        &self,
        name: &str,
        hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Sets the hash of a token, creating or un-revoking it (the bootstrap admin token).
    fn upsert_token(
        &self,
        name: &str,
        hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn revoke_token(&self, name: &str, now: i64) -> impl Future<Output = StoreResult<bool>> + Send;
    fn tokens(&self) -> impl Future<Output = StoreResult<Vec<TokenRecord>>> + Send;
    /// The name of the live token with this hash.
    fn token_by_hash(&self, hash: &str)
    -> impl Future<Output = StoreResult<Option<String>>> + Send;
    /// Creates a reviewer sign-in: a token bound to `reviewer` (an email, lower case).
    fn create_reviewer_token(
        &self,
        name: &str,
        hash: &str,
        reviewer: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The live token with this hash, administrator or reviewer. (`token_by_hash` finds
    /// administrator tokens only, so every route that asks it refuses reviewer sign-ins.)
    fn token_auth_by_hash(
        &self,
        hash: &str,
    ) -> impl Future<Output = StoreResult<Option<TokenAuth>>> + Send;

    // ---- SCIM ----
    /// Creates a SCIM token: valid only under `/scim/v2/<connection>/`, never as an
    /// administrator's or a reviewer's.
    fn create_scim_token(
        &self,
        name: &str,
        hash: &str,
        connection_id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The live SCIM token with this hash: its name and its connection's id.
    fn scim_token_by_hash(
        &self,
        hash: &str,
    ) -> impl Future<Output = StoreResult<Option<(String, String)>>> + Send;
    fn scim_resource(
        &self,
        connection_id: &str,
        kind: &str,
        tr_id: u64,
    ) -> impl Future<Output = StoreResult<Option<ScimResource>>> + Send;
    fn scim_resources(
        &self,
        connection_id: &str,
        kind: &str,
    ) -> impl Future<Output = StoreResult<Vec<ScimResource>>> + Send;
    /// Keeps a resource's SCIM facts; an existing row keeps who created it and when.
    fn put_scim_resource(&self, r: ScimResource) -> impl Future<Output = StoreResult<()>> + Send;
    /// Decides, in one transaction, whether a SCIM deactivation goes ahead: an administrator's
    /// approval for this account is used; a rejection refuses; an account this token created
    /// within `window` seconds is exempt; otherwise it is counted while fewer than `cap` were
    /// counted in the last `window` seconds, and held (once per account) beyond that.
    #[allow(clippy::too_many_arguments)]
    fn scim_claim_deactivation(
        &self,
        connection_id: &str,
        token: &str,
        tr_user_id: u64,
        email: &str,
        now: i64,
        cap: u32,
        window: i64,
    ) -> impl Future<Output = StoreResult<ScimClaim>> + Send;
    /// Held, approved and rejected deactivations (newest first), of one connection or all.
    fn scim_holds(
        &self,
        connection_id: Option<&str>,
    ) -> impl Future<Output = StoreResult<Vec<ScimDeactivation>>> + Send;
    /// Approves or rejects a held deactivation; `false` when it is not held (any more).
    fn scim_decide(
        &self,
        id: i64,
        approve: bool,
        by: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    // ---- access reviews ----
    /// Sets (or, with `owner: None`, removes) the owner of a group or project. `false` when
    /// there was nothing to remove.
    fn set_owner(
        &self,
        connection_id: &str,
        kind: &str,
        target_id: u64,
        target_name: &str,
        owner: Option<&str>,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn owners(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<OwnerRecord>>> + Send;
    /// Starts a review with its items, in one transaction. A second review recurring from the
    /// same `previous_id` is refused (`Conflict`), so replicas never start it twice.
    fn create_review(
        &self,
        review: NewReview,
        items: Vec<ReviewItemRecord>,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Reviews, newest first (of one connection, or all).
    fn reviews(
        &self,
        connection_id: Option<&str>,
    ) -> impl Future<Output = StoreResult<Vec<ReviewRecord>>> + Send;
    fn review(&self, id: i64) -> impl Future<Output = StoreResult<Option<ReviewRecord>>> + Send;
    /// A review's items in item order (all, or one reviewer's).
    fn review_items(
        &self,
        review_id: i64,
        reviewer: Option<&str>,
    ) -> impl Future<Output = StoreResult<Vec<ReviewItemRecord>>> + Send;
    /// One page of a review's items in item order (all, or one reviewer's; all, decided or
    /// undecided ones), with how many match.
    fn review_items_page(
        &self,
        review_id: i64,
        reviewer: Option<&str>,
        decided: Option<bool>,
        offset: u64,
        limit: u64,
    ) -> impl Future<Output = StoreResult<(Vec<ReviewItemRecord>, u64)>> + Send;
    /// How many items each reviewer decided each way (`None`: undecided).
    fn review_decision_counts(
        &self,
        review_id: i64,
    ) -> impl Future<Output = StoreResult<Vec<(String, Option<String>, u64)>>> + Send;
    fn review_progress(
        &self,
        review_id: i64,
    ) -> impl Future<Output = StoreResult<Vec<ReviewerProgress>>> + Send;
    /// Records decisions of one reviewer, in one transaction: refused (`Conflict`) when the
    /// review is closed or the reviewer's submission is waiting or approved, or when an item
    /// is not this reviewer's.
    fn decide_review_items(
        &self,
        review_id: i64,
        reviewer: &str,
        decisions: Vec<ReviewDecision>,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    fn review_submissions(
        &self,
        review_id: i64,
    ) -> impl Future<Output = StoreResult<Vec<SubmissionRecord>>> + Send;
    /// Submits a reviewer's decisions (first time, or again after being sent back); returns
    /// the digest of the decisions as submitted, computed in the same transaction.
    fn submit_review(
        &self,
        review_id: i64,
        reviewer: &str,
        by: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<String>> + Send;
    /// Marks a review as being closed (open, or closing after a close that stopped): decisions,
    /// submissions and approvals are refused until it closes or goes back to open. The caller
    /// holds the review's lease.
    fn begin_review_close(&self, review_id: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// A close that stopped before recording anything: the review is open again.
    fn end_review_close(&self, review_id: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// Approves or sends back a submitted submission (`Conflict` when it is not waiting).
    fn judge_submission(
        &self,
        review_id: i64,
        reviewer: &str,
        approve: bool,
        by: &str,
        comment: Option<&str>,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Records what closing did with items of a review being closed, and closes it (`close`)
    /// or opens it again (`None`: a step failed; closing again retries what is left).
    fn record_review_outcomes(
        &self,
        review_id: i64,
        outcomes: Vec<ItemOutcome>,
        close: Option<ReviewClose>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    // ---- activity evidence ----
    /// Starts an evidence scan that reads artefacts from `read_from` on. Called under the
    /// connection's evidence lease: a scan still `running` was left by a process that stopped
    /// (kill -9, a lost machine), and is recorded `failed` (its watermark never moved).
    fn begin_evidence_run(
        &self,
        connection_id: &str,
        now: i64,
        read_from: i64,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Keeps evidence; a piece already kept (the watermark's overlap) is not kept twice.
    /// Returns how many were new.
    fn add_evidence(
        &self,
        connection_id: &str,
        evidence: Vec<EvidenceRecord>,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Ends an evidence scan: `succeeded` moves the watermark, `failed` does not.
    #[allow(clippy::too_many_arguments)]
    fn finish_evidence_run(
        &self,
        run_id: i64,
        status: &str,
        requests: u64,
        estimate: u64,
        evidence: u64,
        error: Option<&str>,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Evidence scans, oldest first.
    fn evidence_runs(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<EvidenceRun>>> + Send;
    /// Every account's latest evidence and its counts in the 30 and 90 days before `now`; or
    /// only `account`'s (a TestRail user id).
    fn account_evidence(
        &self,
        connection_id: &str,
        now: i64,
        account: Option<u64>,
    ) -> impl Future<Output = StoreResult<Vec<AccountEvidence>>> + Send;

    // ---- what every replica shares: console sessions, kept plans, instance settings ----
    /// Keeps a new session. Expired sessions (created before `expired_before`) go first; then,
    /// while `max` or more are kept, the oldest.
    fn create_session(
        &self,
        s: SessionRecord,
        expired_before: i64,
        max: u64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn session(
        &self,
        id_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<SessionRecord>>> + Send;
    fn delete_session(&self, id_hash: &str) -> impl Future<Output = StoreResult<()>> + Send;
    fn session_count(&self) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Keeps the key a session's Test passed for its Save (one per session: a new one replaces
    /// it). Keys kept before `expired_before` go. The session must exist; the key goes with it.
    fn keep_setup_key(
        &self,
        key: PendingSetupKey,
        expired_before: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The key a session's Test passed, if it was kept at `not_before` or later.
    fn setup_key(
        &self,
        session_hash: &str,
        not_before: i64,
    ) -> impl Future<Output = StoreResult<Option<PendingSetupKey>>> + Send;
    /// Forgets the key a session's Test passed (saved, or replaced by a failed Test).
    fn drop_setup_key(&self, session_hash: &str) -> impl Future<Output = StoreResult<()>> + Send;
    /// Forgets every kept setup key kept before `kept_before`, or all of them (`None`: a master
    /// key rotation, after which they could not be opened). Returns how many went.
    fn forget_setup_keys(
        &self,
        kept_before: Option<i64>,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Keeps a plan; plans created before `forget_before` go, whatever their state (an apply
    /// takes minutes; a plan still `applying` hours later lost its request before its job was
    /// queued, and nothing was sent for it).
    fn insert_plan(
        &self,
        p: PlanRecord,
        forget_before: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Takes a ready plan for applying, atomically across replicas: only one caller gets
    /// `Claimed`. A ready plan created before `stale_before` is `Stale` (and forgotten).
    fn claim_plan(
        &self,
        id: &str,
        stale_before: i64,
    ) -> impl Future<Output = StoreResult<PlanClaim>> + Send;
    /// Hands a claimed plan back: `Ready` (nothing was sent to TestRail) or `Applied`.
    fn release_plan(
        &self,
        id: &str,
        status: PlanStatus,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Marks an applying plan as started (about to send to TestRail): `false` when it was
    /// started before, i.e. an earlier apply of it was cut short. Never true twice for a plan.
    fn start_plan_apply(
        &self,
        id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Ends an applying plan's apply: `Applied` or `Interrupted`, with its outcome (JSON).
    fn finish_plan(
        &self,
        id: &str,
        status: PlanStatus,
        outcome: Option<&str>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// One kept plan, whatever its state.
    fn plan(&self, id: &str) -> impl Future<Output = StoreResult<Option<PlanRecord>>> + Send;
    /// Takes one request slot from the budget of TestRail instance `instance` (`per_minute`
    /// requests in any 60 seconds, shared by every process on this store): `None` when taken,
    /// or the seconds to wait before asking again.
    fn take_request_slot(
        &self,
        instance: &str,
        per_minute: u32,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;
    /// A connection's flow rules (the TOML text), if it has any in the store.
    fn flows(
        &self,
        connection_id: &str,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    /// Replaces a connection's flow rules (`None` removes them).
    fn set_flows(
        &self,
        connection_id: &str,
        text: Option<&str>,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Sets an instance-wide setting, whatever it was (a master key rotation records the new
    /// key's id).
    fn set_setting(&self, name: &str, value: &str) -> impl Future<Output = StoreResult<()>> + Send;
    /// The value of an instance-wide setting, written once: the first writer's value stays
    /// and is returned to everyone (e.g. the id of the master key the replicas must share).
    fn claim_setting(
        &self,
        name: &str,
        value: &str,
    ) -> impl Future<Output = StoreResult<String>> + Send;

    /// Marks every scan of the connection still recorded as running as interrupted. Only the
    /// holder of the connection's scan lease calls this, before it starts its own scan.
    fn interrupt_running_scans(
        &self,
        connection_id: &str,
        now: i64,
        reason: &str,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Marks scans left running without a live scan lease as interrupted (the process that ran
    /// them stopped; their staged data is gone).
    fn abandon_running_scans(
        &self,
        now: i64,
        reason: &str,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// One scan being written. Pages are staged as they arrive; [`ScanWriter::commit`] turns them
/// into versions and changes in one transaction, and [`ScanWriter::fail`] discards them,
/// leaving the last good snapshot untouched.
pub trait ScanWriter: Send {
    fn id(&self) -> i64;
    fn stage_accounts(
        &mut self,
        accounts: &[Account],
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn stage_groups(
        &mut self,
        groups: &[GroupRecord],
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn stage_roles(&mut self, roles: &[RoleRecord])
    -> impl Future<Output = StoreResult<()>> + Send;
    /// Projects with their access, as read; kept until commit (compared only when the report
    /// says `projects_fetched`).
    fn stage_projects(
        &mut self,
        projects: Vec<accessrail_domain::project::Project>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn commit(
        self,
        report: ScanReport,
        now: i64,
    ) -> impl Future<Output = StoreResult<CommitSummary>> + Send;
    fn fail(
        self,
        error: &str,
        report: ScanReport,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}
