//! The simulator's own model of a TestRail instance, written from the TestRail API reference.
//! Deliberately not shared with any client crate.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// TestRail edition: decides which fields exist on users and roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Edition {
    #[default]
    Professional,
    Enterprise,
}

impl FromStr for Edition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "professional" => Ok(Self::Professional),
            "enterprise" => Ok(Self::Enterprise),
            other => Err(format!(
                "unknown edition {other:?} (expected professional or enterprise)"
            )),
        }
    }
}

/// A TestRail version such as `7.5` or `9.3.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u16, pub u16, pub u16);

impl Version {
    pub const LATEST: Version = Version(9, 5, 0);

    pub fn at_least(self, major: u16, minor: u16) -> bool {
        self >= Version(major, minor, 0)
    }
}

impl Default for Version {
    fn default() -> Self {
        Self::LATEST
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.2 == 0 {
            write!(f, "{}.{}", self.0, self.1)
        } else {
            write!(f, "{}.{}.{}", self.0, self.1, self.2)
        }
    }
}

impl FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return Err(format!(
                "invalid TestRail version {s:?} (expected X.Y or X.Y.Z)"
            ));
        }
        let mut nums = [0u16; 3];
        for (i, p) in parts.iter().enumerate() {
            nums[i] = p
                .parse()
                .map_err(|_| format!("invalid TestRail version {s:?} (expected X.Y or X.Y.Z)"))?;
        }
        if parts.len() < 2 {
            return Err(format!(
                "invalid TestRail version {s:?} (expected X.Y or X.Y.Z)"
            ));
        }
        Ok(Version(nums[0], nums[1], nums[2]))
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How `get_users` answers: the paged envelope of current TestRail, or the bare array of every
/// user that older servers return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UsersPagination {
    #[default]
    Envelope,
    Array,
}

/// Instance-wide settings, switchable at run time through `PUT /__sim/settings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub api_enabled: bool,
    pub require_api_keys: bool,
    /// Requests per minute for the whole instance; `None` (or 0) means no limit.
    pub rate_limit_per_minute: Option<u32>,
    pub maintenance: bool,
    pub edition: Edition,
    pub testrail_version: Version,
    pub users_pagination: UsersPagination,
    /// Refuse a second account with the same email (case-insensitively).
    pub unique_emails: bool,
    /// What `add_user` does when the body has no `is_active` (TestRail's reference says false).
    pub add_user_active_default: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            api_enabled: true,
            require_api_keys: false,
            rate_limit_per_minute: None,
            maintenance: false,
            edition: Edition::Professional,
            testrail_version: Version::LATEST,
            users_pagination: UsersPagination::Envelope,
            unique_emails: true,
            add_user_active_default: false,
        }
    }
}

/// Fault injection, set through `PUT /__sim/faults`. Probabilities are 0..1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// A 500 before the request has any effect.
    pub error_rate: f64,
    /// The request takes effect, then the connection is cut before the answer.
    pub drop_rate: f64,
    /// The answer's body is cut half way.
    pub truncate_rate: f64,
    /// A list page is served again instead of the next one.
    pub repeat_page_rate: f64,
    /// Added to every TestRail request.
    pub latency_ms: u64,
    /// Every TestRail request after the Nth (counted from when the faults were set) fails with 500.
    pub fail_after_requests: Option<u64>,
    /// Limit the faults to these TestRail methods (e.g. `["add_user"]`); empty means all.
    pub methods: Vec<String>,
    /// Seed of the fault dice, so a faulty run can be replayed.
    pub seed: u64,
}

/// Request counters, read through `GET /__sim/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Stats {
    /// TestRail API requests, rejected ones included.
    pub requests_total: u64,
    pub by_method: BTreeMap<String, u64>,
    /// Requests answered 429.
    pub rate_limited: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub is_active: bool,
    pub is_admin: bool,
    pub role_id: u64,
    pub email_notifications: bool,
    pub mfa_required: bool,
    pub sso_enabled: bool,
    pub assigned_projects: Vec<u64>,
    /// Kept in step with the groups' `user_ids` by every mutation.
    pub group_ids: BTreeSet<u64>,
    pub api_keys: Vec<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: u64,
    pub name: String,
    /// Members in the order TestRail was given them.
    pub user_ids: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub id: u64,
    pub name: String,
    pub is_default: bool,
    pub is_project_admin: bool,
}

/// Project role id meaning "the user's global role" (a project's default, a user's or a group's
/// project role).
pub const GLOBAL_ROLE: u64 = 0;

/// How TestRail names role 0 in project objects.
pub const GLOBAL_ROLE_NAME: &str = "Global Role";

/// The simulator's id for "No Access". TestRail does not document how it represents this, so
/// this is our choice: a role named "No Access" that is valid only as a project role (a
/// project's default, a user's or a group's project role), never as a global role, and not
/// listed by `get_roles`.
pub const NO_ACCESS_ROLE_ID: u64 = 7;

/// The name of [`NO_ACCESS_ROLE_ID`].
pub const NO_ACCESS_ROLE_NAME: &str = "No Access";

/// A project and who can reach it (TestRail 7.3+ project access).
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub id: u64,
    pub name: String,
    pub announcement: Option<String>,
    pub show_announcement: bool,
    pub is_completed: bool,
    /// Unix seconds; set when the project is completed, cleared when it is reopened.
    pub completed_on: Option<i64>,
    pub suite_mode: u8,
    /// The role everyone gets unless something more specific applies; [`GLOBAL_ROLE`] (0) gives
    /// each user their global role, [`NO_ACCESS_ROLE_ID`] makes the project restricted.
    pub default_role_id: u64,
    /// Users with a project role of their own: user id → role id ([`GLOBAL_ROLE`]: their global
    /// role).
    pub user_roles: BTreeMap<u64, u64>,
    /// Groups with a project role: group id → role id ([`GLOBAL_ROLE`]: each member's global
    /// role).
    pub group_roles: BTreeMap<u64, u64>,
}
