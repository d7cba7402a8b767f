//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Accessrail: who has access to your TestRail, matched to the people you know.
#[derive(Debug, Parser)]
#[command(name = "accessrail", version, about, long_about = None)]
pub struct Cli {
    /// Where Accessrail keeps its database and master key.
    #[arg(long, global = true, env = "ACCESSRAIL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The database: a PostgreSQL URL (`postgres://...`, for several replicas on one
    /// database), or `sqlite://PATH` / a file path (default: accessrail.db in the data dir).
    #[arg(
        long,
        global = true,
        env = "ACCESSRAIL_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Machine-readable output; errors go to stderr as {"error": {"code", "message"}}.
    #[arg(long, global = true)]
    pub json: bool,
    /// Allow plain-http TestRail Server addresses beyond loopback (not recommended).
    #[arg(long, global = true)]
    pub allow_http: bool,
    /// Which connection a command works on (default: the only one). Before or after the
    /// subcommand.
    #[arg(long, global = true, value_name = "NAME")]
    pub connection: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Hands `--connection` (given before or after the subcommand) to the command that takes
    /// it; a command that works on no connection refuses it.
    pub fn route_connection(&mut self) -> Result<(), String> {
        let Some(name) = self.connection.clone() else {
            return Ok(());
        };
        match self.command.connection_slot() {
            Some(slot) => {
                *slot = Some(name);
                Ok(())
            }
            None => Err("--connection does not apply to this command".into()),
        }
    }
}

/// The connection a command works on: set from the global `--connection`.
#[derive(Debug, Args)]
pub struct ConnSel {
    #[arg(skip)]
    pub connection: Option<String>,
}

impl Command {
    fn connection_slot(&mut self) -> Option<&mut Option<String>> {
        let sel = match self {
            Command::Test(s)
            | Command::Scan(s)
            | Command::Scans(s)
            | Command::Summary(s)
            | Command::Groups(s)
            | Command::Roles(s)
            | Command::Changes { conn: s, .. }
            | Command::Users(UsersArgs { conn: s, .. })
            | Command::Projects(ProjectsArgs { conn: s, .. })
            | Command::Access(AccessArgs { conn: s, .. })
            | Command::Provisioning {
                action: OnOff::Enable(s) | OnOff::Disable(s),
            } => s,
            Command::Identities {
                action: Some(IdentitiesAction::Import { connection, .. }),
            } => return Some(connection),
            Command::Tokens {
                action: TokensAction::Create { connection, .. },
            } => return Some(connection),
            Command::Match {
                action:
                    MatchAction::Set { conn, .. }
                    | MatchAction::Clear { conn, .. }
                    | MatchAction::Reset { conn, .. },
            } => conn,
            Command::Provision { action } => match action {
                ProvisionAction::CreateUser { opts, .. }
                | ProvisionAction::Deactivate { opts, .. }
                | ProvisionAction::Reactivate { opts, .. }
                | ProvisionAction::SetRole { opts, .. }
                | ProvisionAction::AddToGroup { opts, .. }
                | ProvisionAction::RemoveFromGroup { opts, .. }
                | ProvisionAction::SetProjectRole { opts, .. }
                | ProvisionAction::SetGroupProjectRole { opts, .. } => &mut opts.conn,
            },
            Command::Protect { action } => match action {
                ProtectAction::Add { conn, .. } | ProtectAction::Remove { conn, .. } => conn,
                ProtectAction::List(s) => s,
            },
            Command::Evidence {
                action: EvidenceAction::Scan { conn, .. } | EvidenceAction::Runs(conn),
            }
            | Command::Seats { conn, .. }
            | Command::Offboard {
                opts: ProvOpts { conn, .. },
                ..
            } => conn,
            Command::Reviews {
                action:
                    ReviewsAction::Start { conn, .. }
                    | ReviewsAction::List { conn }
                    | ReviewsAction::Owner { conn, .. }
                    | ReviewsAction::Owners { conn },
            } => conn,
            Command::Flows { action } => match action {
                FlowsAction::Init(s) | FlowsAction::Show(s) | FlowsAction::Get(s) => s,
                FlowsAction::Set { sel, .. } => sel,
                FlowsAction::Run(opts) => &mut opts.conn,
            },
            _ => return None,
        };
        Some(&mut sel.connection)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect a TestRail instance: runs Test, then saves only if Test passed.
    Connect(ConnectArgs),
    /// List connections, or remove one.
    Connections {
        #[command(subcommand)]
        action: Option<ConnectionsAction>,
    },
    /// Test a saved connection: reachable, credentials, administrator, groups.
    Test(ConnSel),
    /// Scan users, roles, groups and memberships now.
    Scan(ConnSel),
    /// Scan history.
    Scans(ConnSel),
    /// What changed, scan by scan.
    Changes {
        #[command(flatten)]
        conn: ConnSel,
        /// Only changes since a time: RFC 3339, a date (2026-11-01) or an age (7d, 24h).
        #[arg(long)]
        since: Option<String>,
        /// Only the changes one scan found.
        #[arg(long)]
        scan: Option<i64>,
    },
    /// List identities, or import them.
    Identities {
        #[command(subcommand)]
        action: Option<IdentitiesAction>,
    },
    /// Pin or exclude a match by hand.
    Match {
        #[command(subcommand)]
        action: MatchAction,
    },
    /// Every TestRail account with role, groups and matched identity.
    Users(UsersArgs),
    /// Seats, inactive accounts, unmatched accounts and leavers.
    Summary(ConnSel),
    /// Groups and their members.
    Groups(ConnSel),
    /// Roles.
    Roles(ConnSel),
    /// TestRail projects: default role, group and user project roles, who can reach each.
    Projects(ProjectsArgs),
    /// Effective project access with its source: one person's across projects (--email) or
    /// who can reach one project (--project).
    Access(AccessArgs),
    /// Reseal every stored API key with a new master key.
    RotateMasterKey,
    /// Change TestRail: every action is planned first (--dry-run shows the plan), then applied
    /// with read-back, and written to the audit log.
    Provision {
        #[command(subcommand)]
        action: ProvisionAction,
    },
    /// Turn provisioning on or off for a connection (off by default: read-only).
    Provisioning {
        #[command(subcommand)]
        action: OnOff,
    },
    /// Protected accounts (service accounts, CI bots) that no flow touches.
    Protect {
        #[command(subcommand)]
        action: ProtectAction,
    },
    /// The append-only audit log of every change; `audit verify` checks its hash chain.
    Audit {
        #[command(subcommand)]
        action: Option<AuditAction>,
    },
    /// Joiner / leaver rules, stored per connection (`flows get` / `flows set FILE` to edit).
    Flows {
        #[command(subcommand)]
        action: FlowsAction,
    },
    /// Run the JSON API, the web console and the scan scheduler.
    Serve(ServeArgs),
    /// Offboard a person: what is still theirs (open runs and plans assigned to them, their
    /// untested or retest tests in open runs, cases they created or updated last), then one
    /// plan that reassigns their runs and tests (--reassign-to) and deactivates the account.
    Offboard {
        #[command(flatten)]
        opts: ProvOpts,
        #[arg(long)]
        email: String,
        /// Give their open runs and tests to this person.
        #[arg(long, value_name = "EMAIL")]
        reassign_to: Option<String>,
    },
    /// The licence picture: active seats, seats without recorded activity in 30/60/90 days,
    /// leavers still active, and what deactivating them would save.
    Seats {
        #[command(flatten)]
        conn: ConnSel,
        /// Price of one seat per month (any currency).
        #[arg(long, value_name = "PRICE")]
        seat_price: Option<f64>,
        /// The day of the month the TestRail billing period renews (1-28).
        #[arg(long, value_name = "DAY", value_parser = clap::value_parser!(u8).range(1..=28))]
        billing_day: Option<u8>,
    },
    /// Activity evidence: TestRail has no last-login time; this records who created or
    /// updated results, runs, plans and cases, and when.
    Evidence {
        #[command(subcommand)]
        action: EvidenceAction,
    },
    /// Access reviews: certify who has access to TestRail, revoke what nobody vouches for
    /// (through a provisioning plan), and export the evidence.
    Reviews {
        #[command(subcommand)]
        action: ReviewsAction,
    },
    /// API tokens for the JSON API and the console.
    Tokens {
        #[command(subcommand)]
        action: TokensAction,
    },
    /// Run the whole job against a built-in TestRail simulator: connect, test, scan, import
    /// sample identities, and show what an admin would look at.
    Demo(DemoArgs),
    /// Move this installation's SQLite store (accessrail.db in the data dir, or
    /// --database-url) into an empty PostgreSQL database, all or nothing. Leases, console
    /// sessions and kept plans are not copied. The API keys stay sealed with the same master key.
    MigrateStore {
        /// The PostgreSQL database to copy into (`postgres://...`); it must hold no
        /// Accessrail data yet. From the environment, it stays out of `ps` and shell history.
        #[arg(long, env = "ACCESSRAIL_MIGRATE_TO", hide_env_values = true)]
        to: String,
    },
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// TestRail Cloud subdomain: `company` for company.testrail.io.
    #[arg(
        long,
        conflicts_with = "base_url",
        required_unless_present = "base_url"
    )]
    pub subdomain: Option<String>,
    /// TestRail Server address, e.g. https://testrail.example.com/testrail.
    #[arg(long)]
    pub base_url: Option<String>,
    /// The administrator's email (the API key's owner).
    #[arg(long)]
    pub email: String,
    /// Read the API key from standard input.
    #[arg(
        long,
        conflicts_with = "api_key_file",
        required_unless_present = "api_key_file"
    )]
    pub api_key_stdin: bool,
    /// Read the API key from a file.
    #[arg(long)]
    pub api_key_file: Option<PathBuf>,
    /// Connection name (default: the subdomain or host).
    #[arg(long)]
    pub name: Option<String>,
    /// Replace an existing connection of that name.
    #[arg(long)]
    pub replace: bool,
    /// Requests per minute a scan may use (default 60 on TestRail Cloud, none elsewhere; 0: none).
    #[arg(long)]
    pub request_budget: Option<u32>,
    /// Hours between scheduled scans of this connection (default: `serve --scan-interval-hours`).
    #[arg(long)]
    pub scan_interval_hours: Option<f64>,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionsAction {
    /// Remove a connection and its history.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum IdentitiesAction {
    /// Import identities from CSV (id,name,email,other_emails,status[,more...]) or JSON.
    Import {
        file: PathBuf,
        /// Only add and update; do not mark missing identities as gone.
        #[arg(long)]
        partial: bool,
        /// Do not evaluate the flows after the import.
        #[arg(long)]
        no_flows: bool,
        /// The connection whose flows run after the import (`--connection`; default: every
        /// connection).
        #[arg(skip)]
        connection: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MatchAction {
    /// This account is this identity (survives rescans).
    Set {
        #[command(flatten)]
        conn: ConnSel,
        /// TestRail user id or email.
        account: String,
        identity: String,
    },
    /// This account is not this identity (survives rescans).
    Clear {
        #[command(flatten)]
        conn: ConnSel,
        account: String,
        identity: String,
    },
    /// Forget every manual decision about this account.
    Reset {
        #[command(flatten)]
        conn: ConnSel,
        account: String,
    },
}

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(flatten)]
    pub conn: ConnSel,
    /// Only accounts that match no identity.
    #[arg(long)]
    pub unmatched: bool,
    /// Only accounts whose match is ambiguous.
    #[arg(long)]
    pub ambiguous: bool,
    /// Only inactive accounts.
    #[arg(long)]
    pub inactive: bool,
    /// Only this role (name or id).
    #[arg(long)]
    pub role: Option<String>,
    /// Only members of this group (name or id).
    #[arg(long)]
    pub group: Option<String>,
    /// The accounts as they were after this scan (who had access then).
    #[arg(long)]
    pub at_scan: Option<i64>,
    /// Only active accounts with no recorded activity (results, runs, plans, cases) in this
    /// long, e.g. 90d (needs `accessrail evidence scan`).
    #[arg(long, value_name = "DAYS", conflicts_with = "at_scan")]
    pub idle_for: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum EvidenceAction {
    /// Read who created or updated results, runs, plans and cases (per artefact, never per
    /// user; after the first scan only what is new since the last one).
    Scan {
        #[command(flatten)]
        conn: ConnSel,
        /// Read this far back (e.g. 180d) instead of from the last scan (the first scan reads
        /// 180 days).
        #[arg(long, value_name = "DAYS")]
        reach: Option<String>,
    },
    /// Evidence scans: when, what they read from, requests.
    Runs(ConnSel),
}

#[derive(Debug, Args)]
pub struct ProjectsArgs {
    #[command(flatten)]
    pub conn: ConnSel,
    /// The projects as they were after this scan.
    #[arg(long)]
    pub at_scan: Option<i64>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("whose").required(true).args(["email", "project"])))]
pub struct AccessArgs {
    #[command(flatten)]
    pub conn: ConnSel,
    /// One person's access across every project (their TestRail email).
    #[arg(long)]
    pub email: Option<String>,
    /// Who can reach this project (its name or id).
    #[arg(long)]
    pub project: Option<String>,
    /// With --project: list accounts without access too (and inactive ones).
    #[arg(long, requires = "project")]
    pub all: bool,
    /// Access as it was after this scan.
    #[arg(long)]
    pub at_scan: Option<i64>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// People in the simulated TestRail.
    #[arg(long, default_value_t = 120)]
    pub users: u32,
    /// Exit after printing instead of serving the console on the demo data.
    #[arg(long)]
    pub no_serve: bool,
    /// Where the demo serves the console.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Bring back the simulated TestRail of an earlier demo's data directory (as Accessrail
    /// last saw it, at the same address), so every command works on it again; runs until
    /// Ctrl-C.
    #[arg(long, value_name = "DIR", conflicts_with = "users")]
    pub resume: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProvOpts {
    #[command(flatten)]
    pub conn: ConnSel,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Deactivations allowed in this run (default 10).
    #[arg(long)]
    pub max_deactivations: Option<u32>,
    /// Go past the deactivation cap, act on protected accounts, and confirm deactivating a
    /// TestRail administrator or Accessrail's own account.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ProvisionAction {
    /// Create a user (no second account for an email that exists).
    CreateUser {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        /// Role name or id (default: TestRail's default role).
        #[arg(long)]
        role: Option<String>,
        /// Group name or id; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// If the account exists, bring its active state, role and groups to what was asked.
        #[arg(long)]
        reconcile: bool,
        #[command(flatten)]
        opts: ProvOpts,
    },
    /// Deactivate an account (TestRail cannot delete; this frees the seat).
    Deactivate {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        opts: ProvOpts,
    },
    /// Reactivate an account.
    Reactivate {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        opts: ProvOpts,
    },
    /// Change an account's global role.
    SetRole {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
        #[command(flatten)]
        opts: ProvOpts,
    },
    /// Add an account to a group.
    AddToGroup {
        #[arg(long)]
        email: String,
        #[arg(long)]
        group: String,
        #[command(flatten)]
        opts: ProvOpts,
    },
    /// Remove an account from a group.
    RemoveFromGroup {
        #[arg(long)]
        email: String,
        #[arg(long)]
        group: String,
        #[command(flatten)]
        opts: ProvOpts,
    },
    /// Set or clear an account's own role in a project (TestRail 7.3+; read back only where
    /// TestRail reports users' project roles: Enterprise).
    SetProjectRole {
        #[arg(long)]
        email: String,
        /// Project name or id.
        #[arg(long)]
        project: String,
        /// Role name or id, or `global` for the account's global role.
        #[arg(long, required_unless_present = "clear", conflicts_with = "clear")]
        role: Option<String>,
        /// Remove the account's own project role: its groups' roles or the project default
        /// apply again.
        #[arg(long)]
        clear: bool,
        #[command(flatten)]
        opts: ProvOpts,
    },
    /// Set or clear a group's role in a project (TestRail 7.3+).
    SetGroupProjectRole {
        /// Group name or id.
        #[arg(long)]
        group: String,
        /// Project name or id.
        #[arg(long)]
        project: String,
        /// Role name or id, or `global` for each member's global role.
        #[arg(long, required_unless_present = "clear", conflicts_with = "clear")]
        role: Option<String>,
        /// Remove the group's project role.
        #[arg(long)]
        clear: bool,
        #[command(flatten)]
        opts: ProvOpts,
    },
}

#[derive(Debug, Subcommand)]
pub enum OnOff {
    Enable(ConnSel),
    Disable(ConnSel),
}

#[derive(Debug, Subcommand)]
pub enum ProtectAction {
    /// Protect an account.
    Add {
        email: String,
        #[arg(long)]
        owner: String,
        #[arg(long)]
        reason: String,
        /// Protection ends on this date (YYYY-MM-DD) or time (RFC 3339).
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        conn: ConnSel,
    },
    Remove {
        email: String,
        #[command(flatten)]
        conn: ConnSel,
    },
    List(ConnSel),
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check the hash chain.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum FlowsAction {
    /// Store commented starter rules (one active rule: deactivate leavers).
    Init(ConnSel),
    /// Print the rules in force.
    Show(ConnSel),
    /// Print the rules' TOML text, to edit it and `flows set` it back.
    Get(ConnSel),
    /// Check a TOML file of rules and store it for the connection (every process and replica
    /// applies the stored rules).
    Set {
        file: std::path::PathBuf,
        #[command(flatten)]
        sel: ConnSel,
    },
    /// Evaluate the rules into one plan and apply it.
    Run(ProvOpts),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Let the console's setup form take a TestRail Server URL (otherwise only Cloud subdomains,
    /// so a console user cannot make the server call arbitrary hosts).
    #[arg(long)]
    pub allow_base_urls: bool,
    /// Hours between scans of each connection.
    #[arg(long, default_value_t = 6.0)]
    pub scan_interval_hours: f64,
    /// The address browsers use, e.g. https://accessrail.example.com behind a TLS proxy: when it
    /// is https, cookies are Secure and answers carry Strict-Transport-Security.
    #[arg(long, env = "ACCESSRAIL_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds a running scan may take to finish at shutdown before it is recorded as
    /// interrupted (its lease is released at once either way).
    #[arg(long, default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Seconds between the scheduler's looks for due scans.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub scheduler_tick_secs: u64,
    /// Up to this many seconds added to each connection's interval (stable per connection),
    /// so instances do not all scan at once.
    #[arg(long, default_value_t = 600)]
    pub scan_jitter_secs: u32,
    /// Milliseconds between an idle job worker's looks for queued jobs (scans, flows, plan
    /// applies).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..))]
    pub job_poll_ms: u64,
    /// Do not run activity evidence scans on the scan schedule (`accessrail evidence scan`
    /// still runs one by hand).
    #[arg(long)]
    pub no_evidence_scans: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokensAction {
    /// Create a token; it is shown once and stored hashed. With --reviewer, a reviewer
    /// sign-in: it reaches only the review pages and that reviewer's own items.
    Create {
        name: String,
        /// Bind the token to this reviewer (an email): not an administrator token.
        #[arg(long, value_name = "EMAIL", conflicts_with = "scim")]
        reviewer: Option<String>,
        /// A SCIM token for an identity provider: valid only under
        /// /scim/v2/<connection>/ (the global --connection, or the only connection), nowhere
        /// else.
        #[arg(long)]
        scim: bool,
        /// Set from the global --connection.
        #[arg(skip)]
        connection: Option<String>,
    },
    /// Revoke a token.
    Revoke { name: String },
    /// List tokens (names and dates only).
    List,
}

#[derive(Debug, Subcommand)]
pub enum ReviewsAction {
    /// Start a review at the latest scan: every account in scope becomes an item, routed to
    /// its reviewer (the owner of the scope's group or project, else the identity's
    /// manager_email, else an owner of one of the account's groups, else the fallback).
    Start {
        #[command(flatten)]
        conn: ConnSel,
        /// Reviews unmatched accounts and anyone's own access; give it twice so the first
        /// fallback's own account has a reviewer too.
        #[arg(long = "fallback-reviewer", value_name = "EMAIL", required = true)]
        fallback_reviewer: Vec<String>,
        /// Due date (YYYY-MM-DD, end of that day UTC, or RFC 3339); default in 14 days.
        #[arg(long, value_name = "DATE")]
        due: Option<String>,
        /// What closing does with items nobody decided (or whose decisions were not approved).
        #[arg(long, value_name = "keep|revoke", default_value = "keep")]
        undecided: String,
        /// active (default), all, role:R, group:G, project:P, admins or unmatched.
        #[arg(long, default_value = "active")]
        scope: String,
        /// Start the next round this long after this one starts (e.g. 3mo, 90d, 1y).
        #[arg(long, value_name = "PERIOD")]
        every: Option<String>,
    },
    /// Reviews with their progress.
    List {
        #[command(flatten)]
        conn: ConnSel,
    },
    /// One review: progress per reviewer and its items (one reviewer's with --reviewer).
    Show {
        id: i64,
        #[arg(long, value_name = "EMAIL")]
        reviewer: Option<String>,
    },
    /// Decide one item (reviewers can change a decision until they submit).
    Decide {
        id: i64,
        /// The account under review (its email, or #ITEM).
        #[arg(long)]
        account: String,
        /// keep, revoke, out-of-scope or already-removed.
        #[arg(long)]
        decision: String,
        /// With revoke: deactivate (default), remove-group:GROUP or role:ROLE.
        #[arg(long)]
        action: Option<String>,
        /// Required for revoke and out-of-scope.
        #[arg(long)]
        comment: Option<String>,
        /// The reviewer deciding (the item's reviewer).
        #[arg(long = "as", value_name = "EMAIL")]
        as_reviewer: String,
    },
    /// Submit a reviewer's decisions for approval (every item decided).
    Submit {
        id: i64,
        #[arg(long, value_name = "EMAIL")]
        reviewer: String,
    },
    /// Approve a reviewer's submission (an administrator; nobody approves their own).
    Approve {
        id: i64,
        #[arg(long, value_name = "EMAIL")]
        reviewer: String,
        /// The approving administrator's email (recorded; must not be the reviewer).
        #[arg(long = "as", value_name = "EMAIL")]
        approver: Option<String>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Send a reviewer's submission back so they can change their decisions.
    SendBack {
        id: i64,
        #[arg(long, value_name = "EMAIL")]
        reviewer: String,
        /// Why (required).
        #[arg(long)]
        comment: String,
        #[arg(long = "as", value_name = "EMAIL")]
        approver: Option<String>,
    },
    /// Close: undecided items by the review's setting; revocations become one provisioning
    /// plan (shown first; applied with --yes), each outcome audited with the review and item.
    Close {
        id: i64,
        /// Show what closing would do and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply: plan again under the review's lease and apply what it shows.
        #[arg(long)]
        yes: bool,
        /// Confirm deactivating a TestRail administrator the plan shows.
        #[arg(long)]
        acknowledge: bool,
        /// Deactivations allowed (default 10).
        #[arg(long)]
        max_deactivations: Option<u32>,
    },
    /// Export the evidence: every item with its snapshot, reviewer, decision, approval and
    /// outcome, and the audit chain's head hash.
    Export {
        id: i64,
        #[arg(long, value_name = "csv|json|html")]
        format: String,
        #[arg(long, value_name = "PATH")]
        output: std::path::PathBuf,
    },
    /// Set or clear who reviews access to a group or a project.
    Owner {
        #[command(flatten)]
        conn: ConnSel,
        #[arg(long, conflicts_with = "project")]
        group: Option<String>,
        #[arg(long)]
        project: Option<String>,
        #[arg(long, value_name = "EMAIL", conflicts_with = "clear")]
        owner: Option<String>,
        #[arg(long)]
        clear: bool,
    },
    /// Group and project owners.
    Owners {
        #[command(flatten)]
        conn: ConnSel,
    },
    /// Start the next round of recurring reviews that are due (`serve` does this itself).
    StartDue,
}
