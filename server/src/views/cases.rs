//! Individual test cases of one definition on one commit, over its counted runs: how often
//! each case failed, with the failure rate's 95% interval, and a verdict in the words of the
//! original's test grid ("OK (4 runs)", "FLAKY (1/4 runs failed)", "FAIL (4 runs)"). This is
//! where a flaky case inside a suite that fails once in fifty runs shows by name.

use crate::reads::model::RunView;
use crate::views::cells::{rate_text, CellKind};
use serde::Serialize;
use std::collections::BTreeMap;
use test_looper_core::scheduling::stats::{FailureRate, Verdict};

/// One individual test case.
#[derive(Clone, Debug, Serialize)]
pub struct CaseRow {
    pub name: String,
    pub verdict: Verdict,
    /// The CSS class of the verdict (the grid's cell classes).
    #[serde(skip)]
    pub class: &'static str,
    /// "OK (4 runs)", "FLAKY (1/4 runs failed)", "FAIL".
    pub text: String,
    pub rate: FailureRate,
    /// "25% [4.6–70%]".
    pub rate_text: String,
    /// Runs that kept logs for this case (the case failed, usually).
    pub runs_with_logs: usize,
}

/// The cases reported by the counted `runs`, least reliable first (highest failure rate,
/// then most failures), then by name.
pub fn case_rows(runs: &[RunView]) -> Vec<CaseRow> {
    #[derive(Default)]
    struct Tally {
        runs: u64,
        failures: u64,
        with_logs: usize,
    }
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for run in runs.iter().filter(|run| run.counted) {
        for case in &run.test_cases {
            let tally = tallies.entry(case.name.as_str()).or_default();
            tally.runs += 1;
            tally.failures += u64::from(!case.passed);
            tally.with_logs += usize::from(case.has_logs);
        }
    }
    let mut rows: Vec<CaseRow> = tallies
        .into_iter()
        .map(|(name, tally)| {
            let rate = FailureRate::new(tally.failures, tally.runs);
            let (verdict, text) = verdict(tally.failures, tally.runs);
            CaseRow {
                name: name.to_owned(),
                verdict,
                class: CellKind::from(verdict).class(),
                text,
                rate_text: rate_text(&rate),
                rate,
                runs_with_logs: tally.with_logs,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.rate
            .rate
            .total_cmp(&a.rate.rate)
            .then(b.rate.failures.cmp(&a.rate.failures))
            .then_with(|| a.name.cmp(&b.name))
    });
    rows
}

/// The verdict over a case's `runs` reports, in the original's words.
fn verdict(failures: u64, runs: u64) -> (Verdict, String) {
    let over = |word: &str| {
        if runs == 1 {
            word.to_owned()
        } else {
            format!("{word} ({runs} runs)")
        }
    };
    // Every case counted here was reported by at least one run.
    match Verdict::of(failures, runs).unwrap_or(Verdict::Passing) {
        Verdict::Passing => (Verdict::Passing, over("OK")),
        Verdict::Failing => (Verdict::Failing, over("FAIL")),
        Verdict::Flaky => (
            Verdict::Flaky,
            format!("FLAKY ({failures}/{runs} runs failed)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reads::model::RunState;
    use test_looper_core::protocol::TestCaseResult;

    fn run(state: RunState, cleared: bool, cases: &[(&str, bool)]) -> RunView {
        RunView {
            run_id: "r".into(),
            test_hash: "h".into(),
            test_name: "suite".into(),
            machine_id: "m".into(),
            attempt: 1,
            state,
            started: 0,
            ended: 0,
            result: None,
            reason: String::new(),
            cleared,
            counted: !cleared
                && matches!(
                    state,
                    RunState::Passed | RunState::Failed | RunState::TimedOut
                ),
            artifacts: Vec::new(),
            test_cases: cases
                .iter()
                .map(|(name, passed)| TestCaseResult {
                    name: (*name).into(),
                    passed: *passed,
                    has_logs: !passed,
                })
                .collect(),
            repo: "app".into(),
            commit: "c".into(),
        }
    }

    #[test]
    fn flaky_cases_come_first_with_their_rate_and_the_originals_words() {
        let runs = [
            run(
                RunState::Passed,
                false,
                &[("a::b", true), ("a::c", false), ("z", true)],
            ),
            run(
                RunState::Failed,
                false,
                &[("a::b", false), ("a::c", false), ("z", true)],
            ),
            run(
                RunState::Passed,
                false,
                &[("a::b", true), ("a::c", false), ("z", true)],
            ),
            run(
                RunState::Passed,
                false,
                &[("a::b", true), ("a::c", false), ("z", true)],
            ),
            // Not counted: cancelled, cleared, still running.
            run(RunState::Cancelled, false, &[("a::b", false)]),
            run(RunState::Failed, true, &[("a::b", false)]),
            run(RunState::Running, false, &[("a::b", false)]),
        ];
        let rows = case_rows(&runs);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a::c", "a::b", "z"]);
        assert_eq!(rows[0].text, "FAIL (4 runs)");
        assert_eq!(rows[0].verdict, Verdict::Failing);
        assert_eq!(rows[1].text, "FLAKY (1/4 runs failed)");
        assert_eq!(rows[1].verdict, Verdict::Flaky);
        assert_eq!((rows[1].rate.failures, rows[1].rate.runs), (1, 4));
        assert_eq!(rows[1].rate_text, rate_text(&FailureRate::new(1, 4)));
        assert_eq!(rows[1].runs_with_logs, 1);
        assert_eq!(rows[2].text, "OK (4 runs)");
        assert_eq!(rows[2].verdict, Verdict::Passing);
        assert_eq!(verdict(0, 1).1, "OK");
        assert_eq!(verdict(1, 1).1, "FAIL");
    }
}
