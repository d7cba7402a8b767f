//! The artefact methods: suites, cases, runs, plans, tests and results. The order of checks is
//! the one of every method (see `handle`): path id, unknown id or unreachable project (400),
//! filters (400), then for writes a completed run or plan (400) and the body (400), validated
//! in full before anything changes.

use serde_json::{Map, Value, json};

use super::{ApiError, Ctx, Res, bad, check_name, field_string, opt, paginate, path_id, reaches};
use crate::artefacts::{
    Case, NewResult, Plan, Run, STATUS_PASSED, STATUS_UNTESTED, Suite, Test, TestResult,
};
use crate::sim::SimState;

pub(super) mod texts {
    pub const INVALID_RUN: &str = "Field :run_id is not a valid run.";
    pub const INVALID_PLAN: &str = "Field :plan_id is not a valid plan.";
    pub const INVALID_SUITE: &str = "Field :suite_id is not a valid suite.";
    pub const SUITE_REQUIRED: &str = "Field :suite_id is a required field.";
    pub const INVALID_STATUS: &str = "Field :status_id is not a valid status.";
    pub const UNTESTED_STATUS: &str = "Field :status_id uses an invalid status (Untested).";
    pub const INVALID_ASSIGNEE: &str = "Field :assignedto_id is not a valid user.";
    pub const INVALID_TEST: &str = "Field :test_id is not a valid test.";
    pub const RESULTS_REQUIRED: &str = "Field :results is a required field.";
    pub const RESULTS_INVALID: &str = "Field :results is not a valid array.";
    pub const RESULT_EMPTY: &str =
        "Field :results requires at least one of status_id, comment or assignedto_id per result.";
    pub const RUN_COMPLETED: &str =
        "Field :run_id refers to a completed test run, which can no longer be changed.";
    pub const RUN_IN_PLAN: &str = "Field :run_id is part of a test plan: use update_run_in_plan_entry to change runs inside plans.";
    pub const RUN_NOT_IN_PLAN: &str = "Field :run_id is not part of a test plan.";
}

// ---- filters --------------------------------------------------------------------------------

/// A `&key=value` filter, echoed into `_links` in a fixed order.
struct Filters<'a> {
    ctx: &'a Ctx<'a>,
    link: String,
}

impl<'a> Filters<'a> {
    fn new(ctx: &'a Ctx<'a>, route: String) -> Self {
        Self { ctx, link: route }
    }

    fn raw(&mut self, key: &str) -> Option<&'a str> {
        let v = self.ctx.route.params.get(key).map(|v| v.trim())?;
        Some(v)
    }

    /// A Unix timestamp (seconds).
    fn time(&mut self, key: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        let t = v
            .parse::<i64>()
            .map_err(|_| bad(format!("Field :{key} is not a valid timestamp.")))?;
        self.link.push_str(&format!("&{key}={t}"));
        Ok(Some(t))
    }

    /// A comma-separated list of ids.
    fn ids(&mut self, key: &str, invalid: &str) -> Result<Option<Vec<u64>>, ApiError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        let ids = v
            .split(',')
            .map(|s| s.trim().parse::<u64>().map_err(|_| bad(invalid)))
            .collect::<Result<Vec<_>, _>>()?;
        let joined: Vec<String> = ids.iter().map(u64::to_string).collect();
        self.link.push_str(&format!("&{key}={}", joined.join(",")));
        Ok(Some(ids))
    }

    fn flag(&mut self, key: &str) -> Result<Option<bool>, ApiError> {
        let b = match self.raw(key) {
            None => return Ok(None),
            Some("1" | "true") => true,
            Some("0" | "false") => false,
            Some(_) => return Err(bad(format!("Field :{key} is not a valid boolean."))),
        };
        self.link.push_str(&format!("&{key}={}", u8::from(b)));
        Ok(Some(b))
    }

    fn id(&mut self, key: &str, invalid: &str) -> Result<Option<u64>, ApiError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        let id = v.parse::<u64>().map_err(|_| bad(invalid))?;
        self.link.push_str(&format!("&{key}={id}"));
        Ok(Some(id))
    }
}

/// `created_after` / `created_before` (both inclusive) and `created_by`.
struct Created {
    after: Option<i64>,
    before: Option<i64>,
    by: Option<Vec<u64>>,
}

impl Created {
    fn parse(f: &mut Filters<'_>) -> Result<Self, ApiError> {
        Ok(Self {
            after: f.time("created_after")?,
            before: f.time("created_before")?,
            by: f.ids(
                "created_by",
                "Field :created_by is not a valid list of users.",
            )?,
        })
    }

    fn matches(&self, on: i64, by: u64) -> bool {
        self.after.is_none_or(|a| on >= a)
            && self.before.is_none_or(|b| on <= b)
            && self.by.as_ref().is_none_or(|l| l.contains(&by))
    }
}

// ---- lookups --------------------------------------------------------------------------------

fn project_id_for(st: &SimState, ctx: &Ctx<'_>) -> Result<u64, ApiError> {
    super::project_for(st, ctx).map(|p| p.id)
}

/// A run the caller can reach (unknown and unreachable are the same 400).
fn run_for<'a>(st: &'a SimState, ctx: &Ctx<'_>) -> Result<&'a Run, ApiError> {
    let id = path_id(ctx, "run_id", texts::INVALID_RUN)?;
    let run = st
        .inst
        .artefacts
        .run(id)
        .ok_or_else(|| bad(texts::INVALID_RUN))?;
    let p = st
        .inst
        .projects
        .get(&run.project_id)
        .ok_or_else(|| bad(texts::INVALID_RUN))?;
    if !reaches(st, p, ctx.caller) {
        return Err(bad(texts::INVALID_RUN));
    }
    Ok(run)
}

fn plan_for<'a>(st: &'a SimState, ctx: &Ctx<'_>) -> Result<&'a Plan, ApiError> {
    let id = path_id(ctx, "plan_id", texts::INVALID_PLAN)?;
    let plan = st
        .inst
        .artefacts
        .plan(id)
        .ok_or_else(|| bad(texts::INVALID_PLAN))?;
    let p = st
        .inst
        .projects
        .get(&plan.project_id)
        .ok_or_else(|| bad(texts::INVALID_PLAN))?;
    if !reaches(st, p, ctx.caller) {
        return Err(bad(texts::INVALID_PLAN));
    }
    Ok(plan)
}

// ---- rendering ------------------------------------------------------------------------------

fn url(ctx: &Ctx<'_>, path: &str) -> Value {
    ctx.base_url
        .map_or(Value::Null, |b| json!(format!("{b}/index.php?/{path}")))
}

fn render_suite(s: &Suite, ctx: &Ctx<'_>) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "description": null,
        "project_id": s.project_id,
        "is_master": s.is_master,
        "is_baseline": false,
        "is_completed": false,
        "completed_on": null,
        "url": url(ctx, &format!("suites/view/{}", s.id)),
    })
}

fn render_case(c: &Case) -> Value {
    json!({
        "id": c.id,
        "title": c.title,
        "section_id": c.section_id,
        "template_id": 1,
        "type_id": 7,
        "priority_id": 2,
        "milestone_id": null,
        "refs": null,
        "created_by": c.created_by,
        "created_on": c.created_on,
        "updated_by": c.updated_by,
        "updated_on": c.updated_on,
        "estimate": null,
        "suite_id": c.suite_id,
    })
}

fn counts(m: &mut Map<String, Value>, c: [u64; 5]) {
    m.insert("passed_count".into(), json!(c[0]));
    m.insert("blocked_count".into(), json!(c[1]));
    m.insert("untested_count".into(), json!(c[2]));
    m.insert("retest_count".into(), json!(c[3]));
    m.insert("failed_count".into(), json!(c[4]));
}

fn render_run(st: &SimState, r: &Run, ctx: &Ctx<'_>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(r.id));
    m.insert("suite_id".into(), json!(r.suite_id));
    m.insert("name".into(), json!(r.name));
    m.insert("description".into(), json!(r.description));
    m.insert("milestone_id".into(), Value::Null);
    m.insert("assignedto_id".into(), json!(r.assignedto_id));
    m.insert("include_all".into(), json!(true));
    m.insert("is_completed".into(), json!(r.is_completed));
    m.insert("completed_on".into(), json!(r.completed_on));
    m.insert("config".into(), Value::Null);
    m.insert("config_ids".into(), json!([]));
    counts(&mut m, st.inst.artefacts.status_counts(r));
    m.insert("project_id".into(), json!(r.project_id));
    m.insert("plan_id".into(), json!(r.plan_id));
    if let Some(e) = &r.entry_id {
        m.insert("entry_id".into(), json!(e));
    }
    m.insert("created_on".into(), json!(r.created_on));
    m.insert("updated_on".into(), json!(r.updated_on));
    m.insert("created_by".into(), json!(r.created_by));
    m.insert("url".into(), url(ctx, &format!("runs/view/{}", r.id)));
    Value::Object(m)
}

fn render_plan(st: &SimState, p: &Plan, ctx: &Ctx<'_>, with_entries: bool) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(p.id));
    m.insert("name".into(), json!(p.name));
    m.insert("description".into(), json!(p.description));
    m.insert("milestone_id".into(), Value::Null);
    m.insert("assignedto_id".into(), json!(p.assignedto_id));
    m.insert("is_completed".into(), json!(p.is_completed));
    m.insert("completed_on".into(), json!(p.completed_on));
    let mut total = [0u64; 5];
    for r in p
        .entries
        .iter()
        .flat_map(|e| &e.run_ids)
        .filter_map(|r| st.inst.artefacts.run(*r))
    {
        for (t, c) in total.iter_mut().zip(st.inst.artefacts.status_counts(r)) {
            *t += c;
        }
    }
    counts(&mut m, total);
    m.insert("project_id".into(), json!(p.project_id));
    m.insert("created_on".into(), json!(p.created_on));
    m.insert("created_by".into(), json!(p.created_by));
    m.insert("url".into(), url(ctx, &format!("plans/view/{}", p.id)));
    if with_entries {
        let entries: Vec<Value> = p
            .entries
            .iter()
            .map(|e| {
                let runs: Vec<Value> = e
                    .run_ids
                    .iter()
                    .filter_map(|r| st.inst.artefacts.run(*r))
                    .map(|r| render_run(st, r, ctx))
                    .collect();
                json!({ "id": e.id, "suite_id": e.suite_id, "name": e.name, "runs": runs })
            })
            .collect();
        m.insert("entries".into(), Value::Array(entries));
    }
    Value::Object(m)
}

fn render_test(t: &Test) -> Value {
    json!({
        "id": t.id,
        "case_id": t.case_id,
        "status_id": t.status_id,
        "assignedto_id": t.assignedto_id,
        "run_id": t.run_id,
        "title": t.title,
    })
}

pub(crate) fn render_result(r: &TestResult) -> Value {
    json!({
        "id": r.id,
        "test_id": r.test_id,
        "status_id": r.status_id,
        "created_by": r.created_by,
        "created_on": r.created_on,
        "assignedto_id": r.assignedto_id,
        "comment": r.comment,
        "version": null,
        "elapsed": null,
        "defects": null,
        "attachment_ids": [],
    })
}

// ---- reads ----------------------------------------------------------------------------------

pub(super) fn get_suites(st: &SimState, ctx: &Ctx<'_>) -> Res {
    let pid = project_id_for(st, ctx)?;
    let a = &st.inst.artefacts;
    let suites: Vec<Value> = a
        .project_suites(pid)
        .iter()
        .filter_map(|s| a.suite(*s))
        .map(|s| render_suite(s, ctx))
        .collect();
    Ok(Some(Value::Array(suites)))
}

pub(super) fn get_cases(st: &SimState, ctx: &Ctx<'_>) -> Res {
    let pid = project_id_for(st, ctx)?;
    let a = &st.inst.artefacts;
    let mut f = Filters::new(ctx, format!("get_cases/{pid}"));
    let suites = a.project_suites(pid);
    let suite_id = match f.id("suite_id", texts::INVALID_SUITE)? {
        Some(s) => {
            if !suites.contains(&s) {
                return Err(bad(texts::INVALID_SUITE));
            }
            s
        }
        None => match suites {
            [only]
                if st
                    .inst
                    .projects
                    .get(&pid)
                    .is_some_and(|p| p.suite_mode != 3) =>
            {
                *only
            }
            [] => 0,
            _ => return Err(bad(texts::SUITE_REQUIRED)),
        },
    };
    let created = Created::parse(&mut f)?;
    let updated_after = f.time("updated_after")?;
    let updated_before = f.time("updated_before")?;
    let updated_by = f.ids(
        "updated_by",
        "Field :updated_by is not a valid list of users.",
    )?;
    let section = f.id("section_id", "Field :section_id is not a valid section.")?;
    let cases: Vec<&Case> = a
        .suite(suite_id)
        .map_or(&[][..], |s| &s.case_ids)
        .iter()
        .filter_map(|c| a.case(*c))
        .filter(|c| created.matches(c.created_on, c.created_by))
        .filter(|c| updated_after.is_none_or(|t| c.updated_on >= t))
        .filter(|c| updated_before.is_none_or(|t| c.updated_on <= t))
        .filter(|c| {
            updated_by
                .as_ref()
                .is_none_or(|l| l.contains(&c.updated_by))
        })
        .filter(|c| section.is_none_or(|s| c.section_id == Some(s)))
        .collect();
    paginate(&cases, "cases", &f.link, ctx, |c| render_case(c))
}

pub(super) fn get_runs(st: &SimState, ctx: &Ctx<'_>) -> Res {
    let pid = project_id_for(st, ctx)?;
    let a = &st.inst.artefacts;
    let mut f = Filters::new(ctx, format!("get_runs/{pid}"));
    let created = Created::parse(&mut f)?;
    let completed = f.flag("is_completed")?;
    let with_plans = f.flag("include_plan_runs")?.unwrap_or(false);
    let suites = f.ids("suite_id", texts::INVALID_SUITE)?;
    if let Some(l) = &suites
        && l.iter().any(|s| !a.project_suites(pid).contains(s))
    {
        return Err(bad(texts::INVALID_SUITE));
    }
    let runs: Vec<&Run> = a
        .project_runs(pid)
        .iter()
        .filter_map(|r| a.run(*r))
        .filter(|r| with_plans || r.plan_id.is_none())
        .filter(|r| created.matches(r.created_on, r.created_by))
        .filter(|r| completed.is_none_or(|c| r.is_completed == c))
        .filter(|r| suites.as_ref().is_none_or(|l| l.contains(&r.suite_id)))
        .collect();
    paginate(&runs, "runs", &f.link, ctx, |r| render_run(st, r, ctx))
}

pub(super) fn get_run(st: &SimState, ctx: &Ctx<'_>) -> Res {
    let run = run_for(st, ctx)?;
    Ok(Some(render_run(st, run, ctx)))
}

pub(super) fn get_plans(st: &SimState, ctx: &Ctx<'_>) -> Res {
    let pid = project_id_for(st, ctx)?;
    let a = &st.inst.artefacts;
    let mut f = Filters::new(ctx, format!("get_plans/{pid}"));
    let created = Created::parse(&mut f)?;
    let completed = f.flag("is_completed")?;
    let plans: Vec<&Plan> = a
        .project_plans(pid)
        .iter()
        .filter_map(|p| a.plan(*p))
        .filter(|p| created.matches(p.created_on, p.created_by))
        .filter(|p| completed.is_none_or(|c| p.is_completed == c))
        .collect();
    paginate(&plans, "plans", &f.link, ctx, |p| {
        render_plan(st, p, ctx, false)
    })
}

pub(super) fn get_plan(st: &SimState, ctx: &Ctx<'_>) -> Res {
    let plan = plan_for(st, ctx)?;
    Ok(Some(render_plan(st, plan, ctx, true)))
}

fn status_filter(f: &mut Filters<'_>) -> Result<Option<Vec<u64>>, ApiError> {
    f.ids("status_id", texts::INVALID_STATUS)
}

pub(super) fn get_tests(st: &SimState, ctx: &Ctx<'_>) -> Res {
    let run = run_for(st, ctx)?;
    let a = &st.inst.artefacts;
    let mut f = Filters::new(ctx, format!("get_tests/{}", run.id));
    let statuses = status_filter(&mut f)?;
    let tests: Vec<&Test> = run
        .test_ids
        .iter()
        .filter_map(|t| a.test(*t))
        .filter(|t| statuses.as_ref().is_none_or(|l| l.contains(&t.status_id)))
        .collect();
    paginate(&tests, "tests", &f.link, ctx, |t| render_test(t))
}

pub(super) fn get_results_for_run(st: &SimState, ctx: &Ctx<'_>) -> Res {
    let run = run_for(st, ctx)?;
    let a = &st.inst.artefacts;
    let mut f = Filters::new(ctx, format!("get_results_for_run/{}", run.id));
    let created = Created::parse(&mut f)?;
    let statuses = status_filter(&mut f)?;
    let mut results: Vec<&TestResult> = run
        .result_ids
        .iter()
        .filter_map(|r| a.result(*r))
        .filter(|r| created.matches(r.created_on, r.created_by))
        .filter(|r| {
            statuses
                .as_ref()
                .is_none_or(|l| r.status_id.is_some_and(|s| l.contains(&s)))
        })
        .collect();
    // Newest first, as TestRail lists results.
    results.sort_unstable_by_key(|r| std::cmp::Reverse((r.created_on, r.id)));
    paginate(&results, "results", &f.link, ctx, |r| render_result(r))
}

// ---- writes ---------------------------------------------------------------------------------

/// An assignee in a body: an active user, or null to clear (`Some(None)`).
fn assignee(st: &SimState, body: &Map<String, Value>) -> Result<Option<Option<u64>>, ApiError> {
    match body.get("assignedto_id") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => {
            let id = v
                .as_u64()
                .filter(|id| st.inst.users.get(id).is_some_and(|u| u.is_active))
                .ok_or_else(|| bad(texts::INVALID_ASSIGNEE))?;
            Ok(Some(Some(id)))
        }
    }
}

/// A run that may be written: reachable and not completed.
fn open_run(st: &SimState, ctx: &Ctx<'_>) -> Result<u64, ApiError> {
    let run = run_for(st, ctx)?;
    if run.is_completed {
        return Err(bad(texts::RUN_COMPLETED));
    }
    Ok(run.id)
}

fn change_run(st: &mut SimState, ctx: &Ctx<'_>, in_plan: bool) -> Res {
    let id = open_run(st, ctx)?;
    let is_plan_run = st
        .inst
        .artefacts
        .run(id)
        .is_some_and(|r| r.plan_id.is_some());
    match (in_plan, is_plan_run) {
        (false, true) => return Err(bad(texts::RUN_IN_PLAN)),
        (true, false) => return Err(bad(texts::RUN_NOT_IN_PLAN)),
        _ => {}
    }
    let name = if in_plan {
        None
    } else {
        field_string(ctx.body, "name")?
    };
    if let Some(n) = &name {
        check_name(n)?;
    }
    let description = match ctx.body.get("description") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(_) => Some(field_string(ctx.body, "description")?),
    };
    let assignee = assignee(st, ctx.body)?;
    let now = ctx.now;
    let Some(run) = st.inst.artefacts.run_mut(id) else {
        return Err(bad(texts::INVALID_RUN));
    };
    if let Some(n) = name {
        run.name = n;
    }
    if let Some(d) = description {
        run.description = d;
    }
    if let Some(a) = assignee {
        run.assignedto_id = a;
    }
    run.updated_on = run.updated_on.max(now);
    let run = st
        .inst
        .artefacts
        .run(id)
        .ok_or_else(|| bad(texts::INVALID_RUN))?;
    Ok(Some(render_run(st, run, ctx)))
}

pub(super) fn update_run(st: &mut SimState, ctx: &Ctx<'_>) -> Res {
    change_run(st, ctx, false)
}

pub(super) fn update_run_in_plan_entry(st: &mut SimState, ctx: &Ctx<'_>) -> Res {
    change_run(st, ctx, true)
}

/// A status id a result may set: 1, 2, 4, 5 (3, untested, is refused).
pub(crate) fn result_status(v: &Value) -> Result<u64, ApiError> {
    match v.as_u64() {
        Some(STATUS_UNTESTED) => Err(bad(texts::UNTESTED_STATUS)),
        Some(s) if (STATUS_PASSED..=5).contains(&s) => Ok(s),
        _ => Err(bad(texts::INVALID_STATUS)),
    }
}

pub(super) fn add_results(st: &mut SimState, ctx: &Ctx<'_>) -> Res {
    let run_id = open_run(st, ctx)?;
    let items = match ctx.body.get("results") {
        None | Some(Value::Null) => return Err(bad(texts::RESULTS_REQUIRED)),
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => return Err(bad(texts::RESULTS_REQUIRED)),
        Some(_) => return Err(bad(texts::RESULTS_INVALID)),
    };
    let mut new = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(entry) = item else {
            return Err(bad(texts::RESULTS_INVALID));
        };
        let test_id = entry
            .get("test_id")
            .and_then(Value::as_u64)
            .filter(|t| {
                st.inst
                    .artefacts
                    .test(*t)
                    .is_some_and(|t| t.run_id == run_id)
            })
            .ok_or_else(|| bad(texts::INVALID_TEST))?;
        let status_id = opt(entry, "status_id").map(result_status).transpose()?;
        let comment = field_string(entry, "comment")?.filter(|c| !c.trim().is_empty());
        let assignedto_id = assignee(st, entry)?.flatten();
        if status_id.is_none() && comment.is_none() && assignedto_id.is_none() {
            return Err(bad(texts::RESULT_EMPTY));
        }
        new.push(NewResult {
            test_id,
            status_id,
            assignedto_id,
            comment,
        });
    }
    let mut added = Vec::with_capacity(new.len());
    for n in &new {
        if let Some(id) = st
            .inst
            .artefacts
            .add_result(run_id, n, ctx.caller.id, ctx.now)
        {
            added.push(id);
        }
    }
    let a = &st.inst.artefacts;
    Ok(Some(Value::Array(
        added
            .iter()
            .filter_map(|id| a.result(*id))
            .map(render_result)
            .collect(),
    )))
}
