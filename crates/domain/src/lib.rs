//! Accessrail's domain: plain types and pure logic, no I/O and no async.
//!
//! - [`email`]: the case-insensitive email key every match uses, and TestRail's "forgotten"
//!   placeholders.
//! - [`account`]: a TestRail account as a scan saw it, and what changed between two scans.
//! - [`identity`]: the organisation's people.
//! - [`matching`]: accounts matched to identities by email, with manual pins and exclusions.
//! - [`project`]: projects, who can reach them (the one effective-access rule) and what changed.
//! - [`review`]: access reviews: the reviewer routing rule, decisions and what closing does.
//! - [`scim`]: SCIM 2.0 filters, PATCH and attribute selection on JSON users and groups.
//! - [`text`]: text that may be written to TestRail (no hidden characters).

pub mod account;
pub mod audit;
pub mod email;
pub mod identity;
pub mod matching;
pub mod project;
pub mod review;
pub mod scim;
pub mod text;

pub use account::{Account, ChangeKind, Fields, account_changes};
pub use audit::{AuditRecord, Outcome};
pub use email::{EmailKey, is_forgotten_placeholder};
pub use identity::{Identity, IdentityStatus};
pub use matching::{
    AccountRef, MatchOutcome, MatchOverride, MatchState, OverrideKind, match_accounts,
};
