use std::fmt;

use accessrail_domain::{Account, AuditRecord, ChangeKind, OverrideKind};

/// An API key sealed with a master key: `bytes` is nonce || ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SealedSecret(key {}, {} bytes)",
            self.key_id,
            self.bytes.len()
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConnection {
    pub id: String,
    pub name: String,
    pub base_url: String,
    pub email: String,
    pub secret: SealedSecret,
    pub request_budget: Option<u32>,
    pub groups_supported: Option<bool>,
    /// Seconds between scheduled scans; `None`: the service's default.
    pub scan_interval_secs: Option<i64>,
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    pub name: String,
    pub base_url: String,
    pub email: String,
    pub secret: SealedSecret,
    pub request_budget: Option<u32>,
    pub groups_supported: Option<bool>,
    /// Off until `accessrail provisioning enable`: a read-only connection cannot change TestRail.
    pub provisioning_enabled: bool,
    pub scan_interval_secs: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStatus {
    Running,
    Succeeded,
    Failed,
    /// Stopped before it finished (a signal, a shutdown, a crash found later): nothing saved.
    Interrupted,
}

impl ScanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "interrupted" => Self::Interrupted,
            _ => Self::Running,
        }
    }
}

/// A held lease: the holder's name and the generation (fencing token) it was granted with.
/// A write guarded by a lease checks, right before it happens, that this token still holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseToken {
    pub name: String,
    pub holder: String,
    pub generation: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRecord {
    pub id: i64,
    pub connection_id: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub status: ScanStatus,
    pub error: Option<String>,
    pub requests: u64,
    pub retries: u64,
    pub users_seen: u64,
    pub groups_seen: u64,
    pub active_seats: u64,
    pub changes: u64,
    pub rows_written: u64,
    pub warnings: Vec<String>,
}

/// What the scanner reports when it commits or fails a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub requests: u64,
    pub retries: u64,
    pub users_seen: u64,
    pub groups_seen: u64,
    /// Groups were read in this scan (false on TestRail before 7.5): only then are groups and
    /// memberships compared.
    pub groups_fetched: bool,
    pub roles_fetched: bool,
    /// Projects were read in this scan: only then are projects and their access compared.
    pub projects_fetched: bool,
    pub projects_seen: u64,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitSummary {
    pub scan_id: i64,
    pub changes: u64,
    /// Version and change rows written (staging excluded).
    pub rows_written: u64,
    pub account_rows_written: u64,
    pub active_seats: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    pub id: i64,
    pub scan_id: i64,
    pub at: i64,
    pub kind: String,
    pub tr_user_id: Option<u64>,
    pub tr_group_id: Option<u64>,
    /// The account's email (or name) or the group's name, for display.
    pub subject: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    /// The audit entry of the provisioning action behind this change (none for scans).
    pub audit_id: Option<i64>,
    /// The project a project change is about, and its name then.
    pub tr_project_id: Option<u64>,
    pub project: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub id: u64,
    pub name: Option<String>,
    pub member_ids: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRecord {
    pub id: u64,
    pub name: Option<String>,
    pub is_default: Option<bool>,
    pub is_project_admin: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportSummary {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub marked_gone: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideRecord {
    pub account_id: u64,
    pub identity_id: String,
    pub kind: OverrideKind,
}

/// A service account (CI bot, integration user) that no flow touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedAccount {
    /// Lower-cased email.
    pub email: String,
    pub owner: String,
    pub reason: String,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub record: AuditRecord,
    pub prev_hash: String,
    pub hash: String,
}

/// A change to record with a provisioning action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChange {
    pub kind: ChangeKind,
    pub user: Option<u64>,
    pub group: Option<u64>,
    pub subject: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What one provisioning action did, as TestRail showed it on read-back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProvisionUpdate {
    /// The account's new state (group ids ignored: memberships come with `group`).
    pub account: Option<Account>,
    /// A group's new name and whole membership.
    pub group: Option<GroupRecord>,
    /// Single memberships that now exist (group id, user id), e.g. a new user's groups.
    pub joined: Vec<(u64, u64)>,
    pub changes: Vec<NewChange>,
    /// A project's whole access as read back after a project-role change: its grants replace
    /// the stored ones, and the differences become change rows.
    pub project: Option<accessrail_domain::project::Project>,
    /// Whose role in `project` the action changed: only that change row points at the audit
    /// entry (other differences found in the read-back are TestRail's own).
    pub project_principal: Option<accessrail_domain::project::Principal>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// A reviewer sign-in: the reviewer's email.
    pub reviewer: Option<String>,
    /// A SCIM token: the id of the only connection it is valid for (under `/scim/v2/`).
    pub scim_connection: Option<String>,
}

/// A stored match result for one account (see `domain::match_accounts`), as of a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMatch {
    pub state: accessrail_domain::MatchState,
    pub identity_id: Option<String>,
    pub identity_name: Option<String>,
    /// `active`, `leaver` or `gone` (no longer in the identity import), when matched.
    pub identity_status: Option<String>,
    pub pinned: bool,
    pub reason: String,
    /// For an ambiguous account: the identities that claim its email.
    pub candidates: Vec<String>,
}

/// How a listing of accounts is sorted (then by id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AccountSort {
    #[default]
    Name,
    Email,
    Role,
    /// Active accounts first.
    Active,
    Id,
}

/// One listing of accounts: every filter narrows it. The same query serves the current state
/// and history (`at_scan`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountQuery {
    /// The accounts as they were right after this scan committed; `None`: now.
    pub at_scan: Option<i64>,
    pub active: Option<bool>,
    pub match_state: Option<accessrail_domain::MatchState>,
    pub role_id: Option<u64>,
    pub group_id: Option<u64>,
    /// Only accounts matched to an identity marked as a leaver.
    pub leaver: bool,
    pub admin: Option<bool>,
    /// A substring of the email or the name, any case.
    pub q: Option<String>,
    pub sort: AccountSort,
    /// `None`: every account.
    pub limit: Option<u64>,
    pub offset: u64,
}

/// An account in a listing, with its groups (id, name) and its match then.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedAccount {
    pub account: Account,
    pub groups: Vec<(u64, Option<String>)>,
    /// `None` in history from before match results were recorded.
    pub matched: Option<StoredMatch>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccountListing {
    /// Accounts that pass the filters (all pages).
    pub total: u64,
    pub accounts: Vec<ListedAccount>,
}

/// Counts over the current accounts, for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountCounts {
    pub accounts: u64,
    pub active: u64,
    pub unmatched_active: u64,
    pub ambiguous: u64,
    pub forgotten: u64,
    pub leavers_active: u64,
    pub admins: u64,
}

/// A group as the groups page shows it: counts, not member lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub id: u64,
    pub name: Option<String>,
    pub members: u64,
    pub active_members: u64,
}

/// A signed-in console session, kept in the store so every replica knows it. `id_hash` is the
/// SHA-256 of the session cookie's value: the database never holds a usable session id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id_hash: String,
    pub csrf: String,
    /// The API token the visitor signed in with (its name) and that token's hash.
    pub token: String,
    pub token_hash: String,
    pub created_at: i64,
}

/// Where a kept provisioning plan is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanStatus {
    Ready,
    /// Claimed by one apply request (on any replica); no other can take it.
    Applying,
    Applied,
    /// Its apply stopped half way (the process running it died): TestRail may have been
    /// partly changed. It is never applied again; scan, then plan again.
    Interrupted,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Applying => "applying",
            Self::Applied => "applied",
            Self::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ready" => Some(Self::Ready),
            "applying" => Some(Self::Applying),
            "applied" => Some(Self::Applied),
            "interrupted" => Some(Self::Interrupted),
            _ => None,
        }
    }
}

/// A provisioning plan kept for its apply request (any replica may apply it, once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRecord {
    pub id: String,
    pub connection: String,
    /// The planned actions, as JSON (the engine's `Action`s).
    pub actions: String,
    pub fingerprint: String,
    pub actor: String,
    pub max_deactivations: u32,
    pub force: bool,
    pub created_at: i64,
    pub status: PlanStatus,
    /// When its apply began sending to TestRail (`None` before).
    pub started_at: Option<i64>,
    /// How its apply ended, as JSON (the apply report, or `{"error": ...}`).
    pub outcome: Option<String>,
}

/// What claiming a plan for its apply found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanClaim {
    /// Now `Applying`, held by the caller.
    Claimed(PlanRecord),
    NotFound,
    /// Ready but older than the plan lifetime (it is forgotten now).
    Stale,
    BeingApplied,
    AlreadyApplied,
    /// Its apply was cut short; it is never applied again.
    Interrupted,
}

/// An API key that passed the console's Test, kept sealed for the Save that follows, so the
/// administrator need not paste it twice. It belongs to one signed-in session (it goes with
/// the session) and is kept for minutes only; `target` and `email` are what was tested, and a
/// Save for anything else does not use it.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingSetupKey {
    /// The session's `id_hash`.
    pub session_hash: String,
    /// The TestRail address as tested (a subdomain or a URL, as the form had it).
    pub target: String,
    pub email: String,
    pub secret: SealedSecret,
    pub created_at: i64,
}

impl fmt::Debug for PendingSetupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingSetupKey")
            .field("target", &self.target)
            .field("email", &self.email)
            .field("secret", &self.secret)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// What a live token may do: an administrator token (`reviewer` none) or a reviewer sign-in
/// bound to one reviewer's email (review pages and the review API, own items only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAuth {
    pub name: String,
    pub reviewer: Option<String>,
}

/// Who reviews access to one group or project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRecord {
    /// `group` or `project`.
    pub kind: String,
    pub target_id: u64,
    pub target_name: String,
    pub owner_email: String,
    pub set_at: i64,
}

/// A review to start (its items come with it).
#[derive(Debug, Clone)]
pub struct NewReview {
    pub connection_id: String,
    pub scope: String,
    pub scan_id: i64,
    pub undecided: String,
    pub every: Option<String>,
    pub fallbacks: Vec<String>,
    pub due_at: Option<i64>,
    pub created_at: i64,
    pub created_by: String,
    pub previous_id: Option<i64>,
    pub next_start_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRecord {
    pub id: i64,
    pub connection_id: String,
    pub scope: String,
    pub scan_id: i64,
    pub undecided: String,
    pub every: Option<String>,
    pub fallbacks: Vec<String>,
    pub due_at: Option<i64>,
    /// `open` or `closed`.
    pub status: String,
    pub created_at: i64,
    pub created_by: String,
    pub closed_at: Option<i64>,
    pub closed_by: Option<String>,
    /// JSON summary of the close.
    pub outcome: Option<String>,
    pub previous_id: Option<i64>,
    pub next_start_at: Option<i64>,
    pub items: u64,
    pub decided: u64,
}

/// One item of a review: an account as the snapshot had it, its reviewer, decision and
/// (after close) what was done.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReviewItemRecord {
    pub review_id: i64,
    pub item: i64,
    pub tr_user_id: u64,
    pub email: String,
    pub name: String,
    pub reviewer: String,
    pub route: String,
    /// JSON `domain::review::Entitlements`.
    pub snapshot: String,
    /// JSON of the matched identity then, if any.
    pub identity: Option<String>,
    pub decision: Option<String>,
    pub action: Option<String>,
    pub comment: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub final_decision: Option<String>,
    pub final_source: Option<String>,
    pub outcome: Option<String>,
    pub outcome_audit_id: Option<i64>,
    pub outcome_at: Option<i64>,
}

/// A decision on one item (`decision: None` clears it).
#[derive(Debug, Clone)]
pub struct ReviewDecision {
    pub item: i64,
    pub decision: Option<String>,
    pub action: Option<String>,
    pub comment: Option<String>,
    pub by: String,
    pub at: i64,
}

/// A reviewer's submission and its approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionRecord {
    pub review_id: i64,
    pub reviewer: String,
    /// `submitted`, `approved` or `sent_back`.
    pub status: String,
    pub submitted_at: i64,
    pub digest: String,
    pub judged_by: Option<String>,
    pub judged_at: Option<i64>,
    pub comment: Option<String>,
    /// Who submitted it (the actor): never its approver.
    pub submitted_by: String,
}

/// Items and decided items of one reviewer in a review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewerProgress {
    pub reviewer: String,
    pub items: u64,
    pub decided: u64,
}

/// What closing did with one item.
#[derive(Debug, Clone)]
pub struct ItemOutcome {
    pub item: i64,
    pub final_decision: String,
    pub final_source: String,
    pub outcome: String,
    pub audit_id: Option<i64>,
    pub at: i64,
}

/// The review's close, recorded with the last outcomes.
#[derive(Debug, Clone)]
pub struct ReviewClose {
    pub at: i64,
    pub by: String,
    pub outcome: String,
}

/// One piece of activity evidence: someone created or updated an artefact at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRecord {
    /// `result`, `run`, `plan`, `case_created` or `case_updated`.
    pub kind: String,
    pub artefact_id: u64,
    pub tr_user_id: u64,
    pub at: i64,
    pub project_id: Option<u64>,
    /// Results: the run they were added in.
    pub run_id: Option<u64>,
}

/// One evidence scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRun {
    pub id: i64,
    pub connection_id: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// Artefacts created or updated from this time on were read.
    pub read_from: i64,
    pub requests: u64,
    pub estimate: u64,
    pub evidence: u64,
    pub error: Option<String>,
}

/// An account's evidence: the latest piece and counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEvidence {
    pub tr_user_id: u64,
    pub latest: EvidenceRecord,
    pub last_30_days: u64,
    pub last_90_days: u64,
    /// Of the last 90 days' evidence, how much is results.
    pub results_90_days: u64,
}

/// What SCIM keeps about a TestRail user or group that TestRail does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimResource {
    pub connection_id: String,
    /// `user` or `group`.
    pub kind: String,
    /// The TestRail id (the SCIM `id`).
    pub tr_id: u64,
    pub external_id: Option<String>,
    /// The client's `userName` when it is not the account's email (kept as given).
    pub user_name: Option<String>,
    /// JSON: the sub-attributes of the email entry as the client wrote them (type, primary).
    pub email_meta: Option<String>,
    /// The SCIM token that last wrote it.
    pub token: String,
    /// The SCIM token that created it in TestRail (None: it existed, SCIM adopted it).
    pub created_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// DELETEd through SCIM: the account is deactivated and the id answers 404.
    pub deleted_at: Option<i64>,
}

/// Whether a SCIM deactivation may go ahead under the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimClaim {
    /// Counted (or exempt, or approved by an administrator): go ahead.
    Go,
    /// Over the cap: held for an administrator's approval (this hold's id).
    Held(i64),
    /// An administrator rejected it: refuse.
    Rejected(i64),
}

/// A SCIM deactivation as the cap recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimDeactivation {
    pub id: i64,
    pub connection_id: String,
    pub token: String,
    pub tr_user_id: u64,
    pub email: String,
    pub requested_at: i64,
    /// `counted`, `exempt`, `held`, `approved`, `rejected` or `used` (approved, then applied).
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
}
