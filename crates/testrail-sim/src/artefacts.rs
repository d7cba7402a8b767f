//! Suites, cases, runs, plans, tests and results: the artefacts that carry people and times
//! (TestRail's evidence of activity). Ids are dense and never reused, so each kind is a `Vec`
//! indexed by `id - 1`.

use std::collections::BTreeMap;

/// TestRail's built-in statuses.
pub const STATUS_PASSED: u64 = 1;
pub const STATUS_BLOCKED: u64 = 2;
pub const STATUS_UNTESTED: u64 = 3;
pub const STATUS_RETEST: u64 = 4;
pub const STATUS_FAILED: u64 = 5;

#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    pub id: u64,
    pub project_id: u64,
    pub name: String,
    pub is_master: bool,
    /// Cases of the suite, ascending.
    pub case_ids: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub id: u64,
    pub suite_id: u64,
    pub section_id: Option<u64>,
    pub title: String,
    pub created_by: u64,
    pub created_on: i64,
    pub updated_by: u64,
    pub updated_on: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: u64,
    pub project_id: u64,
    pub suite_id: u64,
    pub name: String,
    pub description: Option<String>,
    pub created_by: u64,
    pub created_on: i64,
    pub updated_on: i64,
    pub assignedto_id: Option<u64>,
    pub is_completed: bool,
    pub completed_on: Option<i64>,
    /// The plan the run belongs to; `None` for a standalone run.
    pub plan_id: Option<u64>,
    /// The plan entry (a GUID string) for a run inside a plan.
    pub entry_id: Option<String>,
    /// The run's tests, ascending.
    pub test_ids: Vec<u64>,
    /// The run's results, in the order they were added.
    pub result_ids: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanEntry {
    /// A GUID string, as TestRail's entry ids are.
    pub id: String,
    pub suite_id: u64,
    pub name: String,
    pub run_ids: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub id: u64,
    pub project_id: u64,
    pub name: String,
    pub description: Option<String>,
    pub created_by: u64,
    pub created_on: i64,
    pub assignedto_id: Option<u64>,
    pub is_completed: bool,
    pub completed_on: Option<i64>,
    pub entries: Vec<PlanEntry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Test {
    pub id: u64,
    pub run_id: u64,
    pub case_id: u64,
    pub title: String,
    pub status_id: u64,
    pub assignedto_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    pub id: u64,
    pub test_id: u64,
    pub run_id: u64,
    /// `None` for a result that only comments or reassigns.
    pub status_id: Option<u64>,
    pub created_by: u64,
    pub created_on: i64,
    pub assignedto_id: Option<u64>,
    pub comment: Option<String>,
}

/// A result to add (by `add_results` or the control API), already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewResult {
    pub test_id: u64,
    pub status_id: Option<u64>,
    pub assignedto_id: Option<u64>,
    pub comment: Option<String>,
}

/// Every artefact of the instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Artefacts {
    pub suites: Vec<Suite>,
    pub cases: Vec<Case>,
    pub runs: Vec<Run>,
    pub plans: Vec<Plan>,
    pub tests: Vec<Test>,
    pub results: Vec<TestResult>,
    /// The seeded automation account (`ci-bot@...`), when artefacts were seeded.
    pub automation_user: Option<u64>,
    project_suites: BTreeMap<u64, Vec<u64>>,
    project_runs: BTreeMap<u64, Vec<u64>>,
    project_plans: BTreeMap<u64, Vec<u64>>,
}

fn at<T>(v: &[T], id: u64) -> Option<&T> {
    usize::try_from(id)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| v.get(i))
}

fn at_mut<T>(v: &mut [T], id: u64) -> Option<&mut T> {
    usize::try_from(id)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| v.get_mut(i))
}

fn next_id(len: usize) -> u64 {
    len as u64 + 1
}

impl Artefacts {
    pub fn suite(&self, id: u64) -> Option<&Suite> {
        at(&self.suites, id)
    }
    pub fn case(&self, id: u64) -> Option<&Case> {
        at(&self.cases, id)
    }
    pub fn run(&self, id: u64) -> Option<&Run> {
        at(&self.runs, id)
    }
    pub fn run_mut(&mut self, id: u64) -> Option<&mut Run> {
        at_mut(&mut self.runs, id)
    }
    pub fn plan(&self, id: u64) -> Option<&Plan> {
        at(&self.plans, id)
    }
    pub fn plan_mut(&mut self, id: u64) -> Option<&mut Plan> {
        at_mut(&mut self.plans, id)
    }
    pub fn test(&self, id: u64) -> Option<&Test> {
        at(&self.tests, id)
    }
    pub fn result(&self, id: u64) -> Option<&TestResult> {
        at(&self.results, id)
    }

    /// A project's suites, ascending.
    pub fn project_suites(&self, project_id: u64) -> &[u64] {
        self.project_suites
            .get(&project_id)
            .map_or(&[], Vec::as_slice)
    }
    /// A project's runs (standalone and in plans), ascending.
    pub fn project_runs(&self, project_id: u64) -> &[u64] {
        self.project_runs
            .get(&project_id)
            .map_or(&[], Vec::as_slice)
    }
    /// A project's plans, ascending.
    pub fn project_plans(&self, project_id: u64) -> &[u64] {
        self.project_plans
            .get(&project_id)
            .map_or(&[], Vec::as_slice)
    }

    pub fn insert_suite(&mut self, project_id: u64, name: String, is_master: bool) -> u64 {
        let id = next_id(self.suites.len());
        self.suites.push(Suite {
            id,
            project_id,
            name,
            is_master,
            case_ids: Vec::new(),
        });
        self.project_suites.entry(project_id).or_default().push(id);
        id
    }

    /// Inserts a case (its `id` is replaced); `None` when its suite does not exist.
    pub fn insert_case(&mut self, mut case: Case) -> Option<u64> {
        let id = next_id(self.cases.len());
        case.id = id;
        at_mut(&mut self.suites, case.suite_id)?.case_ids.push(id);
        self.cases.push(case);
        Some(id)
    }

    /// Inserts a run (its `id`, `test_ids` and `result_ids` are replaced) with one untested
    /// test per case in `cases` (each assigned as given).
    pub fn insert_run(&mut self, mut run: Run, tests: &[(u64, Option<u64>)]) -> u64 {
        let id = next_id(self.runs.len());
        run.id = id;
        run.result_ids = Vec::new();
        run.test_ids = Vec::with_capacity(tests.len());
        for (case_id, assignee) in tests {
            let tid = next_id(self.tests.len());
            let title = self
                .case(*case_id)
                .map_or_else(|| format!("Case {case_id}"), |c| c.title.clone());
            self.tests.push(Test {
                id: tid,
                run_id: id,
                case_id: *case_id,
                title,
                status_id: STATUS_UNTESTED,
                assignedto_id: *assignee,
            });
            run.test_ids.push(tid);
        }
        self.project_runs
            .entry(run.project_id)
            .or_default()
            .push(id);
        self.runs.push(run);
        id
    }

    /// Inserts a plan (its `id` is replaced) and marks the runs of its entries as its own.
    pub fn insert_plan(&mut self, mut plan: Plan) -> u64 {
        let id = next_id(self.plans.len());
        plan.id = id;
        for e in &plan.entries {
            for r in &e.run_ids {
                if let Some(run) = at_mut(&mut self.runs, *r) {
                    run.plan_id = Some(id);
                    run.entry_id = Some(e.id.clone());
                }
            }
        }
        self.project_plans
            .entry(plan.project_id)
            .or_default()
            .push(id);
        self.plans.push(plan);
        id
    }

    /// Adds a result to a test of `run_id` by `user` at `now`: the test takes its status (when
    /// given) and assignee (when given); the result records the assignee the test then has.
    /// Returns the new result's id, or `None` when the test is not in the run.
    pub fn add_result(&mut self, run_id: u64, new: &NewResult, user: u64, now: i64) -> Option<u64> {
        let test = at_mut(&mut self.tests, new.test_id).filter(|t| t.run_id == run_id)?;
        if let Some(s) = new.status_id {
            test.status_id = s;
        }
        if let Some(a) = new.assignedto_id {
            test.assignedto_id = Some(a);
        }
        let assignedto_id = test.assignedto_id;
        let id = next_id(self.results.len());
        self.results.push(TestResult {
            id,
            test_id: new.test_id,
            run_id,
            status_id: new.status_id,
            created_by: user,
            created_on: now,
            assignedto_id,
            comment: new.comment.clone(),
        });
        let run = at_mut(&mut self.runs, run_id)?;
        run.result_ids.push(id);
        run.updated_on = run.updated_on.max(now);
        Some(id)
    }

    /// Counts of the run's tests per status id 1..=5.
    pub fn status_counts(&self, run: &Run) -> [u64; 5] {
        let mut counts = [0u64; 5];
        for t in run.test_ids.iter().filter_map(|t| self.test(*t)) {
            if let Some(c) = usize::try_from(t.status_id)
                .ok()
                .and_then(|s| s.checked_sub(1))
                .and_then(|i| counts.get_mut(i))
            {
                *c += 1;
            }
        }
        counts
    }
}
