//! Access reviews: who reviews which account (the routing rule), what a reviewer may decide,
//! and what closing a review does with each item. Pure: the engine feeds it the snapshot.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::email::EmailKey;

/// Which accounts a review covers, as of its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every active account (the default).
    Active,
    /// Every account, deactivated ones too.
    All,
    /// Active accounts with this global role (name, any case).
    Role(String),
    /// Active members of this group (name, any case).
    Group(String),
    /// Active accounts that can reach this project (name or id).
    Project(String),
    /// Active TestRail administrators.
    Admins,
    /// Active accounts that match no identity.
    Unmatched,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k.trim().to_ascii_lowercase(), Some(a.trim().to_string())),
            None => (s.to_ascii_lowercase(), None),
        };
        let need = |a: Option<String>| {
            a.filter(|a| !a.is_empty())
                .ok_or_else(|| format!("scope {kind}: needs a name, e.g. {kind}:Lead"))
        };
        match kind.as_str() {
            "active" if arg.is_none() => Ok(Self::Active),
            "all" if arg.is_none() => Ok(Self::All),
            "admins" if arg.is_none() => Ok(Self::Admins),
            "unmatched" if arg.is_none() => Ok(Self::Unmatched),
            "role" => Ok(Self::Role(need(arg)?)),
            "group" => Ok(Self::Group(need(arg)?)),
            "project" => Ok(Self::Project(need(arg)?)),
            _ => Err(format!(
                "unknown scope {s:?}: use active, all, role:R, group:G, project:P, admins or unmatched"
            )),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Active => f.write_str("active"),
            Self::All => f.write_str("all"),
            Self::Role(r) => write!(f, "role:{r}"),
            Self::Group(g) => write!(f, "group:{g}"),
            Self::Project(p) => write!(f, "project:{p}"),
            Self::Admins => f.write_str("admins"),
            Self::Unmatched => f.write_str("unmatched"),
        }
    }
}

/// A reviewer's decision on one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Keep,
    Revoke,
    OutOfScope,
    AlreadyRemoved,
}

impl Decision {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "keep" => Some(Self::Keep),
            "revoke" => Some(Self::Revoke),
            "out_of_scope" => Some(Self::OutOfScope),
            "already_removed" => Some(Self::AlreadyRemoved),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Revoke => "revoke",
            Self::OutOfScope => "out_of_scope",
            Self::AlreadyRemoved => "already_removed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Revoke => "revoke",
            Self::OutOfScope => "out of scope",
            Self::AlreadyRemoved => "already removed",
        }
    }

    /// A comment is required with this decision.
    pub fn needs_comment(self) -> bool {
        matches!(self, Self::Revoke | Self::OutOfScope)
    }
}

/// What a revocation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Deactivate the account (TestRail cannot delete; this frees the seat).
    Deactivate,
    /// Remove the account from this group.
    RemoveGroup(String),
    /// Lower the global role to this one.
    Role(String),
}

impl Revocation {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("deactivate") {
            return Ok(Self::Deactivate);
        }
        match s.split_once(':') {
            Some((k, v))
                if k.trim().eq_ignore_ascii_case("remove-group") && !v.trim().is_empty() =>
            {
                Ok(Self::RemoveGroup(v.trim().to_string()))
            }
            Some((k, v)) if k.trim().eq_ignore_ascii_case("role") && !v.trim().is_empty() => {
                Ok(Self::Role(v.trim().to_string()))
            }
            _ => Err(format!(
                "unknown revocation {s:?}: use deactivate, remove-group:GROUP or role:ROLE"
            )),
        }
    }
}

impl fmt::Display for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Deactivate => f.write_str("deactivate"),
            Self::RemoveGroup(g) => write!(f, "remove-group:{g}"),
            Self::Role(r) => write!(f, "role:{r}"),
        }
    }
}

/// What happens at close to items nobody decided (or whose decisions were not approved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Undecided {
    Keep,
    Revoke,
}

impl Undecided {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "keep" => Some(Self::Keep),
            "revoke" => Some(Self::Revoke),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Revoke => "revoke",
        }
    }
}

/// How often a review recurs: `14d`, `2w`, `3mo`, `1y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    Days(u32),
    Months(u32),
}

impl Every {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
        let unit = t[digits.len()..].trim();
        let n: u32 = digits
            .parse()
            .ok()
            .filter(|n| (1..=120).contains(n))
            .ok_or_else(|| format!("{s:?}: give a number from 1 to 120 and a unit, e.g. 3mo"))?;
        match unit {
            "d" | "day" | "days" => Ok(Self::Days(n)),
            "w" | "wk" | "week" | "weeks" => Ok(Self::Days(n * 7)),
            "mo" | "month" | "months" => Ok(Self::Months(n)),
            "y" | "year" | "years" => Ok(Self::Months(n * 12)),
            _ => Err(format!(
                "{s:?}: the unit must be d (days), w (weeks), mo (months) or y (years)"
            )),
        }
    }
}

impl fmt::Display for Every {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Days(d) if d % 7 == 0 => write!(f, "{}w", d / 7),
            Self::Days(d) => write!(f, "{d}d"),
            Self::Months(m) if m % 12 == 0 => write!(f, "{}y", m / 12),
            Self::Months(m) => write!(f, "{m}mo"),
        }
    }
}

/// Who could review one account, in the rule's order of preference.
#[derive(Debug, Clone, Default)]
pub struct RouteFacts {
    /// The account's email and its identity's addresses: the person under review.
    pub own_emails: Vec<EmailKey>,
    /// Matched to an identity.
    pub matched: bool,
    /// The owner of the group or project the review's scope names.
    pub scope_owner: Option<(String, EmailKey)>,
    /// The identity's manager.
    pub manager: Option<EmailKey>,
    /// Owners of the account's groups, by group name (the first is used).
    pub group_owners: Vec<(String, EmailKey)>,
}

/// Who reviews an item and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub reviewer: EmailKey,
    pub reason: String,
}

/// The routing rule: the owner of the scope's group or project, else the identity's manager,
/// else the owner of one of the account's groups (first by name), else the first fallback
/// reviewer. Unmatched accounts go to the fallback. Nobody reviews their own access: when the
/// chosen reviewer is the person under review, the item goes to the fallback (the next fallback
/// if the first is that person too). `None` when every fallback is the person under review.
pub fn route(facts: &RouteFacts, fallbacks: &[EmailKey]) -> Option<Route> {
    let is_self = |e: &EmailKey| facts.own_emails.contains(e);
    let fallback = |reason: String| {
        fallbacks.iter().find(|f| !is_self(f)).map(|f| Route {
            reviewer: f.clone(),
            reason: if fallbacks.first() == Some(f) {
                reason
            } else {
                format!("{reason}; the first fallback is the person under review")
            },
        })
    };
    if !facts.matched {
        return fallback("fallback: the account matches no identity".into());
    }
    let chosen = facts
        .scope_owner
        .as_ref()
        .map(|(what, e)| (format!("owner of {what}"), e.clone()))
        .or_else(|| facts.manager.clone().map(|m| ("manager".to_string(), m)))
        .or_else(|| {
            facts
                .group_owners
                .first()
                .map(|(g, e)| (format!("owner of group {g}"), e.clone()))
        });
    match chosen {
        Some((why, who)) if is_self(&who) => fallback(format!(
            "fallback: self-review rerouted (the {why} is the person under review)"
        )),
        Some((why, who)) => Some(Route {
            reviewer: who,
            reason: why,
        }),
        None => fallback("fallback: no manager or owner".into()),
    }
}

/// What one account had at the snapshot: what a reviewer certifies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entitlements {
    pub active: bool,
    pub is_admin: bool,
    pub role: Option<String>,
    pub groups: Vec<String>,
    /// The TestRail ids of `groups`, in the same order (a removal is sent only to the group
    /// the reviewer saw).
    #[serde(default)]
    pub group_ids: Vec<u64>,
    /// Projects the account could reach, with the role and where it came from; `None` when
    /// project access was not known at the snapshot.
    pub projects: Option<Vec<ProjectEntitlement>>,
    /// Why project access is partly known, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects_note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectEntitlement {
    pub id: u64,
    pub name: String,
    pub role: Option<String>,
    pub source: String,
}

impl Entitlements {
    /// One line: "active, Lead, administrator; groups QA, Mobile; 3 projects".
    pub fn summary(&self) -> String {
        let mut s = String::from(if self.active { "active" } else { "inactive" });
        if let Some(r) = &self.role {
            s.push_str(", ");
            s.push_str(r);
        }
        if self.is_admin {
            s.push_str(", administrator");
        }
        if !self.groups.is_empty() {
            s.push_str("; groups ");
            s.push_str(&self.groups.join(", "));
        }
        match &self.projects {
            Some(p) => s.push_str(&format!("; {} project{}", p.len(), plural(p.len()))),
            None => s.push_str("; project access unknown"),
        }
        s
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Checks a decision before it is stored; returns the revocation it implies (deactivation when
/// none is named). A comment is required for revoke and out of scope; a group to remove must be
/// one the account had; a role to lower to must differ from the account's role.
pub fn check_decision(
    decision: Decision,
    action: Option<&str>,
    comment: Option<&str>,
    had: &Entitlements,
) -> Result<Option<Revocation>, String> {
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if decision.needs_comment() && comment.is_none() {
        return Err(format!(
            "a comment is required to decide {} (say why)",
            decision.label()
        ));
    }
    if comment.is_some_and(|c| c.chars().count() > 2000) {
        return Err("a comment is at most 2000 characters".into());
    }
    let action = action.map(str::trim).filter(|a| !a.is_empty());
    if decision != Decision::Revoke {
        return match action {
            Some(_) => Err(format!(
                "--action goes with revoke only, not with {}",
                decision.label()
            )),
            None => Ok(None),
        };
    }
    let rev = action.map_or(Ok(Revocation::Deactivate), Revocation::parse)?;
    match &rev {
        Revocation::RemoveGroup(g) => {
            if !had.groups.iter().any(|h| h.eq_ignore_ascii_case(g)) {
                return Err(format!(
                    "the account was not in group {g:?} at the snapshot (its groups: {})",
                    if had.groups.is_empty() {
                        "none".to_string()
                    } else {
                        had.groups.join(", ")
                    }
                ));
            }
        }
        Revocation::Role(r) => {
            if had
                .role
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(r))
            {
                return Err(format!("the account already had the role {r}"));
            }
        }
        Revocation::Deactivate => {}
    }
    Ok(Some(rev))
}

/// What closing does with one item: the reviewer's decision if their submission was approved,
/// else the review's setting for undecided items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Final {
    pub decision: Decision,
    pub revocation: Option<Revocation>,
    /// `reviewer` or `undecided (review setting: keep)`.
    pub source: String,
}

pub fn final_decision(
    decided: Option<(Decision, Option<&str>)>,
    approved: bool,
    undecided: Undecided,
) -> Final {
    match decided {
        Some((d, action)) if approved => Final {
            decision: d,
            revocation: if d == Decision::Revoke {
                Some(action.map_or(Revocation::Deactivate, |a| {
                    Revocation::parse(a).unwrap_or(Revocation::Deactivate)
                }))
            } else {
                None
            },
            source: "reviewer".into(),
        },
        other => {
            let why = if other.is_some() {
                "not approved"
            } else {
                "undecided"
            };
            Final {
                decision: match undecided {
                    Undecided::Keep => Decision::Keep,
                    Undecided::Revoke => Decision::Revoke,
                },
                revocation: (undecided == Undecided::Revoke).then_some(Revocation::Deactivate),
                source: format!("{why} (review setting: {})", undecided.as_str()),
            }
        }
    }
}

/// One decision as a reviewer submitted it: what the submission's digest covers.
#[derive(Debug, Clone)]
pub struct Submitted<'a> {
    pub item: i64,
    pub email: &'a str,
    pub decision: Option<&'a str>,
    pub action: Option<&'a str>,
    pub comment: Option<&'a str>,
}

/// SHA-256 over a reviewer's decisions (in item order), recorded in the audit log when they
/// submit: an item edited afterwards no longer matches the audited digest.
pub fn submission_digest(items: &[Submitted<'_>]) -> String {
    let mut sorted: Vec<&Submitted<'_>> = items.iter().collect();
    sorted.sort_by_key(|s| s.item);
    let mut h = Sha256::new();
    for s in sorted {
        let line = serde_json::json!([s.item, s.email, s.decision, s.action, s.comment]);
        h.update(line.to_string().as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 over every item's outcome at close, `(item, email, final decision, outcome, audit
/// entry)` in item order: recorded in the close's audit entry, so the outcomes an export shows
/// can be checked against the audit chain.
pub fn outcome_digest(rows: &[(i64, &str, &str, &str, Option<i64>)]) -> String {
    let mut sorted: Vec<&(i64, &str, &str, &str, Option<i64>)> = rows.iter().collect();
    sorted.sort_by_key(|r| r.0);
    let mut h = Sha256::new();
    for r in sorted {
        h.update(
            serde_json::json!([r.0, r.1, r.2, r.3, r.4])
                .to_string()
                .as_bytes(),
        );
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> EmailKey {
        EmailKey::parse(s).unwrap()
    }

    #[test]
    fn scopes_parse_and_print() {
        for s in [
            "active",
            "all",
            "admins",
            "unmatched",
            "role:Lead",
            "group:QA Team",
            "project:Mobile",
        ] {
            assert_eq!(Scope::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            Scope::parse(" Role : Lead ").unwrap(),
            Scope::Role("Lead".into())
        );
        assert!(Scope::parse("role:").is_err());
        assert!(Scope::parse("everyone").is_err());
        assert!(Scope::parse("active:x").is_err());
    }

    #[test]
    fn every_parses_units() {
        assert_eq!(Every::parse("3mo").unwrap(), Every::Months(3));
        assert_eq!(Every::parse("1y").unwrap(), Every::Months(12));
        assert_eq!(Every::parse("2w").unwrap(), Every::Days(14));
        assert_eq!(Every::parse("90d").unwrap(), Every::Days(90));
        assert_eq!(Every::parse("3mo").unwrap().to_string(), "3mo");
        assert_eq!(Every::parse("12mo").unwrap().to_string(), "1y");
        assert!(Every::parse("0d").is_err());
        assert!(Every::parse("3").is_err());
        assert!(
            Every::parse("3m").is_err(),
            "m is ambiguous: minutes or months"
        );
    }

    fn facts(own: &[&str]) -> RouteFacts {
        RouteFacts {
            own_emails: own.iter().map(|e| k(e)).collect(),
            matched: true,
            ..Default::default()
        }
    }

    #[test]
    fn routing_prefers_scope_owner_then_manager_then_group_owner_then_fallback() {
        let fb = [k("fallback@x.io")];
        let mut f = facts(&["ana@x.io"]);
        assert_eq!(route(&f, &fb).unwrap().reviewer, k("fallback@x.io"));
        f.group_owners = vec![("QA".into(), k("qa-owner@x.io"))];
        let r = route(&f, &fb).unwrap();
        assert_eq!(
            (r.reviewer, r.reason.as_str()),
            (k("qa-owner@x.io"), "owner of group QA")
        );
        f.manager = Some(k("boss@x.io"));
        assert_eq!(route(&f, &fb).unwrap().reviewer, k("boss@x.io"));
        f.scope_owner = Some(("project Mobile".into(), k("mobile@x.io")));
        let r = route(&f, &fb).unwrap();
        assert_eq!(
            (r.reviewer, r.reason.as_str()),
            (k("mobile@x.io"), "owner of project Mobile")
        );
    }

    #[test]
    fn nobody_reviews_themselves_and_unmatched_go_to_the_fallback() {
        let fb = [k("fallback@x.io"), k("second@x.io")];
        let mut f = facts(&["boss@x.io", "b.oss@x.io"]);
        f.manager = Some(k("B.OSS@x.io"));
        let r = route(&f, &fb).unwrap();
        assert_eq!(r.reviewer, k("fallback@x.io"));
        assert!(r.reason.contains("self-review rerouted"), "{}", r.reason);
        // The fallback's own account goes to the second fallback.
        let mut f = facts(&["fallback@x.io"]);
        f.manager = Some(k("fallback@x.io"));
        assert_eq!(route(&f, &fb).unwrap().reviewer, k("second@x.io"));
        assert!(route(&f, &fb[..1]).is_none());
        let mut u = facts(&["ghost@x.io"]);
        u.matched = false;
        u.manager = Some(k("boss@x.io"));
        let r = route(&u, &fb).unwrap();
        assert_eq!(r.reviewer, k("fallback@x.io"));
        assert!(r.reason.contains("matches no identity"));
    }

    #[test]
    fn decisions_are_checked() {
        let had = Entitlements {
            active: true,
            role: Some("Lead".into()),
            groups: vec!["QA".into()],
            ..Default::default()
        };
        assert_eq!(check_decision(Decision::Keep, None, None, &had), Ok(None));
        assert!(check_decision(Decision::Revoke, None, None, &had).is_err());
        assert!(check_decision(Decision::OutOfScope, None, Some("  "), &had).is_err());
        assert_eq!(
            check_decision(Decision::Revoke, None, Some("left"), &had),
            Ok(Some(Revocation::Deactivate))
        );
        assert_eq!(
            check_decision(
                Decision::Revoke,
                Some("remove-group:qa"),
                Some("moved"),
                &had
            ),
            Ok(Some(Revocation::RemoveGroup("qa".into())))
        );
        assert!(
            check_decision(Decision::Revoke, Some("remove-group:Ops"), Some("x"), &had).is_err()
        );
        assert!(check_decision(Decision::Revoke, Some("role:lead"), Some("x"), &had).is_err());
        assert_eq!(
            check_decision(Decision::Revoke, Some("role:Tester"), Some("x"), &had),
            Ok(Some(Revocation::Role("Tester".into())))
        );
        assert!(check_decision(Decision::Keep, Some("deactivate"), None, &had).is_err());
        assert!(check_decision(Decision::Revoke, Some("delete"), Some("x"), &had).is_err());
    }

    #[test]
    fn closing_uses_approved_decisions_and_the_setting_for_the_rest() {
        let f = final_decision(
            Some((Decision::Revoke, Some("role:Tester"))),
            true,
            Undecided::Keep,
        );
        assert_eq!(f.revocation, Some(Revocation::Role("Tester".into())));
        assert_eq!(f.source, "reviewer");
        let f = final_decision(Some((Decision::Revoke, None)), false, Undecided::Keep);
        assert_eq!((f.decision, f.revocation), (Decision::Keep, None));
        assert_eq!(f.source, "not approved (review setting: keep)");
        let f = final_decision(None, false, Undecided::Revoke);
        assert_eq!(f.revocation, Some(Revocation::Deactivate));
        assert_eq!(f.source, "undecided (review setting: revoke)");
    }

    #[test]
    fn the_outcome_digest_covers_every_outcome_in_item_order() {
        let a = (1, "a@x.io", "keep", "kept", None);
        let b = (2, "b@x.io", "revoke", "done: deactivate", Some(9));
        assert_eq!(outcome_digest(&[a, b]), outcome_digest(&[b, a]));
        assert_ne!(
            outcome_digest(&[a, b]),
            outcome_digest(&[a, (2, "b@x.io", "revoke", "failed: x", Some(9))])
        );
    }

    #[test]
    fn the_digest_covers_every_decision() {
        let a = Submitted {
            item: 1,
            email: "a@x.io",
            decision: Some("keep"),
            action: None,
            comment: None,
        };
        let mut b = a.clone();
        let d1 = submission_digest(std::slice::from_ref(&a));
        b.decision = Some("revoke");
        assert_ne!(d1, submission_digest(&[b]));
        let c = Submitted {
            item: 2,
            ..a.clone()
        };
        assert_eq!(
            submission_digest(&[a.clone(), c.clone()]),
            submission_digest(&[c, a])
        );
    }
}
