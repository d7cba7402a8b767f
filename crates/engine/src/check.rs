//! The connection Test: host reachable and API enabled, credentials valid, the key's owner an
//! administrator, groups available. Each check carries the troubleshooting guidance admins need.

use serde::Serialize;
use testrail_client::{Client, ErrorKind, User};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
    /// Not run because an earlier check failed.
    Skipped,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
            Self::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `reachable`, `credentials`, `administrator`, `groups`.
    pub name: &'static str,
    pub title: &'static str,
    pub status: CheckStatus,
    pub message: String,
    /// What to do about a failure or warning.
    pub hint: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestReport {
    pub base_url: String,
    pub checks: Vec<Check>,
    pub passed: bool,
    pub groups_supported: Option<bool>,
    /// The key owner's name, when the credentials were accepted.
    pub user_name: Option<String>,
}

pub const HINT_UNREACHABLE: &str = "Confirm the API is enabled under Administration > Site Settings > API, and that the subdomain (or TestRail Server address) is correct.";
pub const HINT_API_DISABLED: &str = "Sign in to TestRail as an administrator, go to Administration > Site Settings > API, turn on Enable API and save.";
pub const HINT_CREDENTIALS: &str = "Invalid email or API key. Check the administrator email and make sure the API key was copied in full with no extra spaces.";
pub const HINT_NOT_ADMIN: &str = "The API key must belong to a TestRail administrator. Generate the key while signed in as an administrator (My Settings > API Keys > Add Key).";
pub const HINT_GROUPS: &str =
    "Group features require TestRail 7.5 or later; users and roles are still imported.";
pub const HINT_BUSY: &str = "TestRail is busy or in maintenance; try again in a few minutes.";

const TITLES: [(&str, &str); 4] = [
    ("reachable", "TestRail reachable and API enabled"),
    ("credentials", "Email and API key accepted"),
    ("administrator", "Key belongs to an administrator"),
    ("groups", "Groups available (TestRail 7.5+)"),
];

fn check(
    i: usize,
    status: CheckStatus,
    message: impl Into<String>,
    hint: Option<&'static str>,
) -> Check {
    Check {
        name: TITLES[i].0,
        title: TITLES[i].1,
        status,
        message: message.into(),
        hint,
    }
}

fn skipped_from(i: usize) -> impl Iterator<Item = Check> {
    (i..TITLES.len()).map(|j| {
        check(
            j,
            CheckStatus::Skipped,
            "not run: an earlier check failed",
            None,
        )
    })
}

fn testrail_text(e: &testrail_client::Error) -> String {
    e.testrail_message()
        .map_or_else(|| e.to_string(), |m| format!("TestRail says: {m}"))
}

/// An address typed without `http://` or `https://` is taken as https; when it then cannot be
/// reached, the failing check says so (a plain-http server is the likely cause).
pub fn note_assumed_scheme(mut report: TestReport, target: &crate::Target) -> TestReport {
    if let crate::Target::BaseUrl(typed) = target
        && !typed.contains("://")
        && let Some(c) = report
            .checks
            .iter_mut()
            .find(|c| c.name == "reachable" && c.status == CheckStatus::Fail)
    {
        c.message.push_str(&format!(
            " (the address {:?} has no scheme, so https:// was assumed: if the server speaks plain HTTP, write http://{})",
            typed.trim(),
            typed.trim()
        ));
    }
    report
}

/// Runs the checks in order. Never fails: every outcome is a check in the report.
pub async fn run(client: &Client) -> TestReport {
    let host = client.base_url().to_string();
    let mut checks = Vec::new();
    let mut first = client.get_current_user().await;
    if first
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::Unsupported)
    {
        // Before TestRail 6.6 there is no get_current_user; the own record by email works.
        first = client.get_user_by_email(client.email()).await;
    }
    let me: User = match first {
        Ok(u) => {
            checks.push(check(
                0,
                CheckStatus::Pass,
                format!("{host} answered as TestRail with the API enabled"),
                None,
            ));
            checks.push(check(
                1,
                CheckStatus::Pass,
                format!(
                    "signed in as {}",
                    u.name.as_deref().unwrap_or(client.email())
                ),
                None,
            ));
            u
        }
        Err(e) => {
            let (i, msg, hint) = match e.kind() {
                ErrorKind::InvalidCredentials => {
                    (1, "Invalid email or API key".to_string(), HINT_CREDENTIALS)
                }
                ErrorKind::ApiDisabled => (
                    0,
                    format!("the TestRail API is disabled on {host}"),
                    HINT_API_DISABLED,
                ),
                ErrorKind::Maintenance | ErrorKind::RateLimited | ErrorKind::Server => (
                    0,
                    format!("TestRail at {host} is not answering normally: {e}"),
                    HINT_BUSY,
                ),
                ErrorKind::UpstreamBug | ErrorKind::Unsupported => (
                    0,
                    format!("{host} does not answer like TestRail's API: {e}"),
                    HINT_UNREACHABLE,
                ),
                ErrorKind::NotAdministrator => (2, testrail_text(&e), HINT_NOT_ADMIN),
                _ => (
                    0,
                    format!("cannot reach TestRail at {host}: {e}"),
                    HINT_UNREACHABLE,
                ),
            };
            for j in 0..i {
                let msg = if j == 0 {
                    format!("{host} answered")
                } else {
                    "accepted".into()
                };
                checks.push(check(j, CheckStatus::Pass, msg, None));
            }
            checks.push(check(i, CheckStatus::Fail, msg, Some(hint)));
            checks.extend(skipped_from(i + 1));
            return TestReport {
                base_url: host,
                checks,
                passed: false,
                groups_supported: None,
                user_name: None,
            };
        }
    };

    // Administrator: is_admin where TestRail returns it (7.3+), otherwise a get_users probe.
    let admin = match me.is_admin {
        Some(true) => Ok("is_admin is true".to_string()),
        Some(false) => Err(format!(
            "{} is not a TestRail administrator",
            me.email.as_deref().unwrap_or(client.email())
        )),
        None => match client.users().next_page().await {
            Ok(_) => Ok("can list every user (get_users)".to_string()),
            Err(e) if e.kind() == ErrorKind::NotAdministrator => {
                Err(format!("get_users was refused: {}", testrail_text(&e)))
            }
            Err(e) => Err(format!("could not confirm: {e}")),
        },
    };
    match admin {
        Ok(m) => checks.push(check(2, CheckStatus::Pass, m, None)),
        Err(m) => {
            checks.push(check(
                2,
                CheckStatus::Fail,
                format!("the key is not an administrator key: {m}"),
                Some(HINT_NOT_ADMIN),
            ));
            checks.extend(skipped_from(3));
            return TestReport {
                base_url: host,
                checks,
                passed: false,
                groups_supported: None,
                user_name: me.name,
            };
        }
    }

    let groups_supported = match client.groups().next_page().await {
        Ok(_) => {
            checks.push(check(3, CheckStatus::Pass, "group methods answer", None));
            Some(true)
        }
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            checks.push(check(
                3,
                CheckStatus::Warn,
                "this TestRail has no group methods (before 7.5): group features are off",
                Some(HINT_GROUPS),
            ));
            Some(false)
        }
        Err(e) => {
            checks.push(check(
                3,
                CheckStatus::Warn,
                format!("could not read groups: {e}"),
                Some(HINT_BUSY),
            ));
            None
        }
    };
    TestReport {
        base_url: host,
        checks,
        passed: true,
        groups_supported,
        user_name: me.name,
    }
}
