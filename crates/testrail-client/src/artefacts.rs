//! TestRail's artefacts that carry people and times: suites, cases, runs (standalone and inside
//! plans), plans, tests and results, with the list filters TestRail documents, and the writes
//! that reassign work (`update_run`, `update_run_in_plan_entry`, `add_results`).
//!
//! Only the fields about people and times are typed; the rest of each record stays in `extra`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{Client, On400, Retry};
use crate::error::Error;
use crate::models::HasId;
use crate::pager::Pager;

/// Filters of the artefact lists; each list sends only those TestRail documents for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Unix seconds, as TestRail takes them.
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    pub created_by: Vec<u64>,
    pub updated_after: Option<i64>,
    /// Cases: last updated by these users.
    pub updated_by: Vec<u64>,
    /// Runs and plans: `Some(false)` open ones, `Some(true)` completed ones. Always sent for
    /// runs and plans when set (TestRail's documented default contradicts itself).
    pub is_completed: Option<bool>,
    /// Runs: also runs inside plans (each with its `plan_id`).
    pub include_plan_runs: bool,
    pub suite_id: Option<u64>,
    /// Tests and results: these status ids only.
    pub status_id: Vec<u64>,
}

fn ids(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

impl ListFilter {
    /// The query string for `method` (e.g. `&created_after=...&is_completed=0`).
    pub fn query(&self, method: &str) -> String {
        let mut q = String::new();
        let dated = matches!(
            method,
            "get_cases" | "get_runs" | "get_plans" | "get_results_for_run"
        );
        if dated {
            if let Some(t) = self.created_after {
                let _ = write!(q, "&created_after={t}");
            }
            if let Some(t) = self.created_before {
                let _ = write!(q, "&created_before={t}");
            }
            if !self.created_by.is_empty() {
                let _ = write!(q, "&created_by={}", ids(&self.created_by));
            }
        }
        if method == "get_cases" {
            if let Some(s) = self.suite_id {
                let _ = write!(q, "&suite_id={s}");
            }
            if let Some(t) = self.updated_after {
                let _ = write!(q, "&updated_after={t}");
            }
            if !self.updated_by.is_empty() {
                let _ = write!(q, "&updated_by={}", ids(&self.updated_by));
            }
        }
        if matches!(method, "get_runs" | "get_plans")
            && let Some(c) = self.is_completed
        {
            let _ = write!(q, "&is_completed={}", u8::from(c));
        }
        if method == "get_runs" {
            if self.include_plan_runs {
                q.push_str("&include_plan_runs=1");
            }
            if let Some(s) = self.suite_id {
                let _ = write!(q, "&suite_id={s}");
            }
        }
        if matches!(method, "get_tests" | "get_results_for_run") && !self.status_id.is_empty() {
            let _ = write!(q, "&status_id={}", ids(&self.status_id));
        }
        q
    }
}

/// A suite (projects in suite mode 3 have several).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suite {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A test case: who created and last updated it, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub id: u64,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub suite_id: Option<u64>,
    #[serde(default)]
    pub created_by: Option<u64>,
    #[serde(default)]
    pub created_on: Option<i64>,
    #[serde(default)]
    pub updated_by: Option<u64>,
    #[serde(default)]
    pub updated_on: Option<i64>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A test run, standalone (`plan_id` none) or inside a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub project_id: Option<u64>,
    #[serde(default)]
    pub plan_id: Option<u64>,
    #[serde(default)]
    pub entry_id: Option<String>,
    #[serde(default)]
    pub created_by: Option<u64>,
    #[serde(default)]
    pub created_on: Option<i64>,
    #[serde(default)]
    pub assignedto_id: Option<u64>,
    #[serde(default)]
    pub is_completed: Option<bool>,
    #[serde(default)]
    pub completed_on: Option<i64>,
    #[serde(default)]
    pub updated_on: Option<i64>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A test plan; `entries` only in `get_plan` (the list form has none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub project_id: Option<u64>,
    #[serde(default)]
    pub created_by: Option<u64>,
    #[serde(default)]
    pub created_on: Option<i64>,
    #[serde(default)]
    pub assignedto_id: Option<u64>,
    #[serde(default)]
    pub is_completed: Option<bool>,
    #[serde(default)]
    pub completed_on: Option<i64>,
    #[serde(default)]
    pub entries: Option<Vec<PlanEntry>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One entry of a plan (its id is a GUID string) with its runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanEntry {
    pub id: String,
    #[serde(default)]
    pub runs: Vec<Run>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A test in a run: whom it is assigned to and its status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Test {
    pub id: u64,
    #[serde(default)]
    pub run_id: Option<u64>,
    #[serde(default)]
    pub case_id: Option<u64>,
    #[serde(default)]
    pub status_id: Option<u64>,
    #[serde(default)]
    pub assignedto_id: Option<u64>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A result: who added it (`created_by`, the API account for automation) and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    pub id: u64,
    #[serde(default)]
    pub test_id: Option<u64>,
    #[serde(default)]
    pub status_id: Option<u64>,
    #[serde(default)]
    pub created_by: Option<u64>,
    #[serde(default)]
    pub created_on: Option<i64>,
    #[serde(default)]
    pub assignedto_id: Option<u64>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

macro_rules! has_id {
    ($($t:ty => $kind:literal),*) => {
        $(impl HasId for $t {
            fn id(&self) -> u64 {
                self.id
            }

            fn describe(&self) -> String {
                format!("{} id {}", $kind, self.id)
            }
        })*
    };
}

has_id!(Suite => "suite", Case => "case", Run => "run", Plan => "plan", Test => "test", TestResult => "result");

/// The body of `update_run` / `update_run_in_plan_entry`: only what reassigning needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignedto_id: Option<u64>,
}

/// One entry of `add_results`: at least one of status, comment or assignee.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NewResult {
    pub test_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignedto_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Serialize)]
struct NewResults<'a> {
    results: &'a [NewResult],
}

impl Client {
    /// `get_suites/{project_id}` (a bare array in TestRail's docs; a paged answer is read too).
    pub fn suites(&self, project_id: u64) -> Pager<Suite> {
        Pager::new(
            self.clone(),
            "get_suites",
            format!("get_suites/{project_id}"),
            "suites",
            On400::NotFound,
        )
    }

    /// `get_cases/{project_id}` with `suite_id`, `created_*`, `updated_after`.
    pub fn cases(&self, project_id: u64, filter: &ListFilter) -> Pager<Case> {
        Pager::new(
            self.clone(),
            "get_cases",
            format!("get_cases/{project_id}{}", filter.query("get_cases")),
            "cases",
            On400::NotFound,
        )
    }

    /// `get_runs/{project_id}` with `created_*`, `is_completed`, `include_plan_runs`, `suite_id`.
    pub fn runs(&self, project_id: u64, filter: &ListFilter) -> Pager<Run> {
        Pager::new(
            self.clone(),
            "get_runs",
            format!("get_runs/{project_id}{}", filter.query("get_runs")),
            "runs",
            On400::NotFound,
        )
    }

    pub async fn get_run(&self, run_id: u64) -> Result<Run, Error> {
        self.get_json("get_run", &format!("get_run/{run_id}"), On400::NotFound)
            .await
    }

    /// `get_plans/{project_id}` with `created_*` and `is_completed` (no entries in this form).
    pub fn plans(&self, project_id: u64, filter: &ListFilter) -> Pager<Plan> {
        Pager::new(
            self.clone(),
            "get_plans",
            format!("get_plans/{project_id}{}", filter.query("get_plans")),
            "plans",
            On400::NotFound,
        )
    }

    /// `get_plan/{plan_id}`: the plan with its entries and their runs.
    pub async fn get_plan(&self, plan_id: u64) -> Result<Plan, Error> {
        self.get_json("get_plan", &format!("get_plan/{plan_id}"), On400::NotFound)
            .await
    }

    /// `get_tests/{run_id}` with `status_id` (TestRail has no assignee filter).
    pub fn tests(&self, run_id: u64, filter: &ListFilter) -> Pager<Test> {
        Pager::new(
            self.clone(),
            "get_tests",
            format!("get_tests/{run_id}{}", filter.query("get_tests")),
            "tests",
            On400::NotFound,
        )
    }

    /// `get_results_for_run/{run_id}` with `created_*` and `status_id`.
    pub fn results_for_run(&self, run_id: u64, filter: &ListFilter) -> Pager<TestResult> {
        Pager::new(
            self.clone(),
            "get_results_for_run",
            format!(
                "get_results_for_run/{run_id}{}",
                filter.query("get_results_for_run")
            ),
            "results",
            On400::NotFound,
        )
    }

    /// `update_run/{run_id}` (standalone runs). Setting an assignee is idempotent: retried.
    pub async fn update_run(&self, run_id: u64, update: &RunUpdate) -> Result<Run, Error> {
        self.post_json(
            "update_run",
            &format!("update_run/{run_id}"),
            update,
            On400::NotFoundIfField("run_id"),
            Retry::Safe,
        )
        .await
    }

    /// `update_run_in_plan_entry/{run_id}` (runs inside plans, TestRail 6.4+).
    pub async fn update_run_in_plan_entry(
        &self,
        run_id: u64,
        update: &RunUpdate,
    ) -> Result<Run, Error> {
        self.post_json(
            "update_run_in_plan_entry",
            &format!("update_run_in_plan_entry/{run_id}"),
            update,
            On400::NotFoundIfField("run_id"),
            Retry::Safe,
        )
        .await
    }

    /// `add_results/{run_id}`: adds results (the only way to reassign a test). Never retried
    /// blind: a lost answer may have added them; the caller reads the tests back.
    pub async fn add_results(
        &self,
        run_id: u64,
        results: &[NewResult],
    ) -> Result<Vec<TestResult>, Error> {
        self.post_json(
            "add_results",
            &format!("add_results/{run_id}"),
            &NewResults { results },
            On400::NotFoundIfField("run_id"),
            Retry::NoEffectOnly,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_list_sends_only_its_documented_filters() {
        let f = ListFilter {
            created_after: Some(100),
            created_before: Some(200),
            created_by: vec![3, 4],
            updated_after: Some(150),
            updated_by: vec![5],
            is_completed: Some(false),
            include_plan_runs: true,
            suite_id: Some(9),
            status_id: vec![3, 4],
        };
        assert_eq!(
            f.query("get_runs"),
            "&created_after=100&created_before=200&created_by=3,4&is_completed=0&include_plan_runs=1&suite_id=9"
        );
        assert_eq!(
            f.query("get_plans"),
            "&created_after=100&created_before=200&created_by=3,4&is_completed=0"
        );
        assert_eq!(
            f.query("get_cases"),
            "&created_after=100&created_before=200&created_by=3,4&suite_id=9&updated_after=150&updated_by=5"
        );
        assert_eq!(
            f.query("get_results_for_run"),
            "&created_after=100&created_before=200&created_by=3,4&status_id=3,4"
        );
        assert_eq!(f.query("get_tests"), "&status_id=3,4");
        assert_eq!(ListFilter::default().query("get_runs"), "");
    }

    #[test]
    fn artefacts_keep_unknown_fields_and_read_people_and_times() {
        let r: Run = serde_json::from_str(
            r#"{"id":5,"plan_id":null,"created_by":3,"created_on":1700000000,"assignedto_id":null,"is_completed":false,"config":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            (r.created_by, r.created_on, r.plan_id),
            (Some(3), Some(1_700_000_000), None)
        );
        assert_eq!(r.extra.get("config"), Some(&Value::String("x".into())));
        let body = serde_json::to_string(&NewResult {
            test_id: 7,
            assignedto_id: Some(4),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(body, r#"{"test_id":7,"assignedto_id":4}"#);
    }
}
