//! The status cell: what one group of a commit's tests looks like in a grid. Pure function of
//! the commit's parse state, whether it is enabled, and the scheduler's counters.
//!
//! A cell shows `failed/total` finished runs and their verdict
//! ([`test_looper_core::scheduling::Verdict`]), the failure rate with its 95% Wilson interval and
//! the runs in flight. Cells without results say why, each in its own style: *untestable*
//! (broken definitions), *pending* (a referenced repo or commit is not known yet), *not
//! enabled* (nobody asked for this commit), *blocked* (a build failed or is not done, or no
//! machine has the hardware), *queued*, *running*.

use crate::reads::model::{TestStatus, WaitReason};
use crate::views::format::percent;
use serde::Serialize;
use test_looper_core::definitions::DefinitionKind;
use test_looper_core::scheduling::stats::{FailureRate, Verdict};

pub use crate::reads::git::ParseState;

/// The look of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    Empty,
    Passing,
    Flaky,
    Failing,
    Running,
    Queued,
    Blocked,
    NotEnabled,
    Pending,
    Untestable,
}

impl From<Verdict> for CellKind {
    fn from(verdict: Verdict) -> CellKind {
        match verdict {
            Verdict::Passing => CellKind::Passing,
            Verdict::Flaky => CellKind::Flaky,
            Verdict::Failing => CellKind::Failing,
        }
    }
}

impl CellKind {
    /// The CSS class (`cell-<kind>`).
    pub fn class(self) -> &'static str {
        match self {
            CellKind::Empty => "cell-empty",
            CellKind::Passing => "cell-passing",
            CellKind::Flaky => "cell-flaky",
            CellKind::Failing => "cell-failing",
            CellKind::Running => "cell-running",
            CellKind::Queued => "cell-queued",
            CellKind::Blocked => "cell-blocked",
            CellKind::NotEnabled => "cell-not-enabled",
            CellKind::Pending => "cell-pending",
            CellKind::Untestable => "cell-untestable",
        }
    }
}

/// One rendered cell.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cell {
    pub kind: CellKind,
    /// Main text: `failed/total`, or a word for cells without results.
    pub text: String,
    /// Finished runs counted, and how many failed.
    pub failures: u64,
    pub runs: u64,
    /// Failure rate with its interval, when there are results.
    pub rate: Option<FailureRate>,
    /// "12% [4.1–31%]".
    pub rate_text: String,
    /// Runs assigned or running now.
    pub in_flight: u32,
    /// The tooltip: why the cell looks this way.
    pub reason: String,
    /// P(the column's failure rate changed at this commit), from the one-change posterior
    /// over the page (set by the branch view; 0 elsewhere).
    pub change_probability: f64,
}

/// The change probability at which a grid cell is marked as a change point.
pub const CHANGE_POINT_MARK: f64 = 0.5;

impl Cell {
    fn word(kind: CellKind, text: &str, reason: impl Into<String>) -> Cell {
        Cell {
            kind,
            text: text.into(),
            failures: 0,
            runs: 0,
            rate: None,
            rate_text: String::new(),
            in_flight: 0,
            reason: reason.into(),
            change_probability: 0.0,
        }
    }

    /// A blank cell (the group has nothing at this commit).
    pub fn empty() -> Cell {
        Cell::word(CellKind::Empty, "", "")
    }

    pub fn class(&self) -> &'static str {
        self.kind.class()
    }

    /// Whether the column's failure rate most likely changed at this commit.
    pub fn is_change_point(&self) -> bool {
        self.change_probability >= CHANGE_POINT_MARK
    }
}

/// "12% [4.1–31%]".
pub fn rate_text(rate: &FailureRate) -> String {
    format!(
        "{} [{}–{}]",
        percent(rate.rate),
        percent(rate.low),
        percent(rate.high)
    )
}

/// One definition of the group: its kind, name and the scheduler's status (if known).
pub struct Member<'a> {
    pub kind: DefinitionKind,
    pub name: &'a str,
    pub status: Option<&'a TestStatus>,
}

/// The cell of a group of definitions of one commit.
pub fn summarize<'a>(
    parse: &ParseState,
    enabled: bool,
    members: impl IntoIterator<Item = Member<'a>>,
) -> Cell {
    match parse {
        ParseState::NotLoaded => {
            return Cell::word(
                CellKind::Pending,
                "…",
                "the commit has not been scanned yet",
            )
        }
        ParseState::Pending(reason) => {
            return Cell::word(CellKind::Pending, "pending", format!("pending: {reason}"))
        }
        ParseState::Untestable(message) => {
            return Cell::word(CellKind::Untestable, "untestable", message.clone())
        }
        ParseState::NoTests => {
            return Cell::word(CellKind::Empty, "", "the commit has no definitions file")
        }
        ParseState::Ok => {}
    }
    let members: Vec<Member<'a>> = members
        .into_iter()
        .filter(|m| m.kind != DefinitionKind::Deployment)
        .collect();
    if members.is_empty() {
        return Cell::empty();
    }
    let has_tests = members.iter().any(|m| m.kind == DefinitionKind::Test);
    let quarantined = |m: &&Member<'_>| m.status.is_some_and(|s| s.quarantined);
    // Quarantined tests run, but their failures do not count against the commit (unless
    // nothing else is left to count).
    let only_quarantined = members
        .iter()
        .filter(|m| !has_tests || m.kind == DefinitionKind::Test)
        .all(|m| quarantined(&m));
    let counted = |m: &&Member<'_>| {
        (!has_tests || m.kind == DefinitionKind::Test) && (only_quarantined || !quarantined(m))
    };
    let quarantined_names: Vec<&str> = if only_quarantined {
        Vec::new()
    } else {
        members.iter().filter(quarantined).map(|m| m.name).collect()
    };
    let rate = FailureRate::pooled(
        members
            .iter()
            .filter(counted)
            .filter_map(|m| m.status)
            .map(|s| (s.failures, s.runs)),
    );
    let (runs, failures) = (rate.runs, rate.failures);
    let in_flight_all: u32 = members
        .iter()
        .filter_map(|m| m.status)
        .map(|s| s.active)
        .sum();
    let failed_builds: Vec<&str> = members
        .iter()
        .filter(|m| m.kind == DefinitionKind::Build)
        .filter(|m| m.status.is_some_and(|s| s.runs > 0 && s.failures >= s.runs))
        .map(|m| m.name)
        .collect();
    if let Some(verdict) = rate.verdict() {
        let kind = CellKind::from(verdict);
        let mut reason = format!(
            "{failures} of {runs} runs failed; failure rate {}",
            rate_text(&rate)
        );
        if in_flight_all > 0 {
            reason.push_str(&format!("; {in_flight_all} running now"));
        }
        if !failed_builds.is_empty() {
            reason.push_str(&format!("; build failed: {}", failed_builds.join(", ")));
        }
        if !quarantined_names.is_empty() {
            reason.push_str(&format!(
                "; in quarantine, not counted: {}",
                quarantined_names.join(", ")
            ));
        }
        return Cell {
            kind,
            text: format!("{failures}/{runs}"),
            failures,
            runs,
            rate_text: rate_text(&rate),
            rate: Some(rate),
            in_flight: in_flight_all,
            reason,
            change_probability: 0.0,
        };
    }
    if in_flight_all > 0 {
        let mut cell = Cell::word(
            CellKind::Running,
            "running",
            format!("{in_flight_all} runs in flight, no results yet"),
        );
        cell.in_flight = in_flight_all;
        return cell;
    }
    if !failed_builds.is_empty() {
        return Cell::word(
            CellKind::Blocked,
            "blocked",
            format!("build failed: {}", failed_builds.join(", ")),
        );
    }
    if !enabled {
        return Cell::word(
            CellKind::NotEnabled,
            "not enabled",
            "not enabled: enable the commit (▶) to test it",
        );
    }
    let waits: Vec<&WaitReason> = members
        .iter()
        .filter_map(|m| m.status)
        .map(|s| &s.wait)
        .collect();
    if let Some(cell) = blocked_cell(&waits) {
        return cell;
    }
    if waits.is_empty() {
        return Cell::word(
            CellKind::Queued,
            "waiting",
            "enabled; the scheduler has not picked these definitions up yet",
        );
    }
    if waits.iter().all(|w| matches!(w, WaitReason::NotWanted)) {
        return Cell::word(
            CellKind::NotEnabled,
            "not enabled",
            "priority zero: no enabled commit wants these definitions",
        );
    }
    let priority = waits
        .iter()
        .filter_map(|w| match w {
            WaitReason::Queued { priority } => Some(*priority),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    Cell::word(
        CellKind::Queued,
        "queued",
        format!("queued for a machine at priority {priority}"),
    )
}

fn blocked_cell(waits: &[&WaitReason]) -> Option<Cell> {
    for wait in waits {
        if let WaitReason::DependencyFailed { reason } = wait {
            return Some(Cell::word(
                CellKind::Blocked,
                "blocked",
                format!("blocked: {reason}"),
            ));
        }
    }
    for wait in waits {
        match wait {
            WaitReason::NoHardware { detail } => {
                return Some(Cell::word(
                    CellKind::Blocked,
                    "no machine",
                    format!("blocked: no machine can provide the hardware ({detail})"),
                ))
            }
            WaitReason::BlockedOnBuild { build } => {
                return Some(Cell::word(
                    CellKind::Blocked,
                    "blocked",
                    format!("waiting for build {build}"),
                ))
            }
            WaitReason::UnresolvedDependencies { missing } => {
                return Some(Cell::word(
                    CellKind::Blocked,
                    "unresolved",
                    format!("waiting for build definitions not known yet: {missing}"),
                ))
            }
            WaitReason::RetryWait { .. } => {
                return Some(Cell::word(
                    CellKind::Blocked,
                    "retry wait",
                    "a build failed and waits before its next retry",
                ))
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(runs: u64, failures: u64, active: u32, wait: WaitReason) -> TestStatus {
        TestStatus {
            runs,
            failures,
            active,
            runs_desired: 10,
            wait,
            quarantined: false,
        }
    }

    fn test<'a>(name: &'a str, status: &'a TestStatus) -> Member<'a> {
        Member {
            kind: DefinitionKind::Test,
            name,
            status: Some(status),
        }
    }

    #[test]
    fn results_show_failed_over_total_rate_interval_and_in_flight() {
        let a = status(4, 1, 2, WaitReason::Queued { priority: 1 });
        let b = status(6, 0, 0, WaitReason::Done);
        let cell = summarize(&ParseState::Ok, true, [test("a", &a), test("b", &b)]);
        assert_eq!(cell.kind, CellKind::Flaky);
        assert_eq!(cell.text, "1/10");
        assert_eq!(cell.in_flight, 2);
        let rate = cell.rate.unwrap();
        assert!((rate.rate - 0.1).abs() < 1e-9);
        assert!(rate.low < 0.1 && rate.high > 0.1);
        assert_eq!(cell.rate_text, "10% [1.8%–40%]");
        let all_bad = status(3, 3, 0, WaitReason::Done);
        let cell = summarize(&ParseState::Ok, true, [test("a", &all_bad)]);
        assert_eq!((cell.kind, cell.text.as_str()), (CellKind::Failing, "3/3"));
        let good = status(3, 0, 0, WaitReason::Done);
        assert_eq!(
            summarize(&ParseState::Ok, true, [test("a", &good)]).kind,
            CellKind::Passing
        );
    }

    #[test]
    fn quarantined_failures_do_not_count_unless_nothing_else_does() {
        let flaky = TestStatus {
            quarantined: true,
            ..status(10, 4, 0, WaitReason::Done)
        };
        let good = status(6, 0, 0, WaitReason::Done);
        let cell = summarize(&ParseState::Ok, true, [test("f", &flaky), test("g", &good)]);
        assert_eq!((cell.kind, cell.text.as_str()), (CellKind::Passing, "0/6"));
        assert!(
            cell.reason.contains("in quarantine, not counted: f"),
            "{}",
            cell.reason
        );
        let alone = summarize(&ParseState::Ok, true, [test("f", &flaky)]);
        assert_eq!((alone.kind, alone.text.as_str()), (CellKind::Flaky, "4/10"));
    }

    #[test]
    fn cells_without_results_are_distinct_and_say_why() {
        let untestable = summarize(
            &ParseState::Untestable("testlooper.yml line 3: bad".into()),
            true,
            [],
        );
        assert_eq!(untestable.kind, CellKind::Untestable);
        assert!(untestable.reason.contains("line 3"));
        let pending = summarize(
            &ParseState::Pending("repo lib is not known".into()),
            true,
            [],
        );
        assert_eq!(pending.kind, CellKind::Pending);
        assert!(pending.reason.contains("repo lib"));
        let idle = status(0, 0, 0, WaitReason::NotWanted);
        let off = summarize(&ParseState::Ok, false, [test("a", &idle)]);
        assert_eq!(off.kind, CellKind::NotEnabled);
        let blocked = status(
            0,
            0,
            0,
            WaitReason::BlockedOnBuild {
                build: "build/linux".into(),
            },
        );
        let cell = summarize(&ParseState::Ok, true, [test("a", &blocked)]);
        assert_eq!(cell.kind, CellKind::Blocked);
        assert!(cell.reason.contains("build/linux"));
        let no_hw = status(
            0,
            0,
            0,
            WaitReason::NoHardware {
                detail: "64 cores".into(),
            },
        );
        let cell = summarize(&ParseState::Ok, true, [test("a", &no_hw)]);
        assert!(cell.reason.contains("64 cores"));
        let queued = status(0, 0, 0, WaitReason::Queued { priority: 3 });
        assert_eq!(
            summarize(&ParseState::Ok, true, [test("a", &queued)]).kind,
            CellKind::Queued
        );
        let running = status(0, 0, 2, WaitReason::Queued { priority: 3 });
        let cell = summarize(&ParseState::Ok, true, [test("a", &running)]);
        assert_eq!((cell.kind, cell.in_flight), (CellKind::Running, 2));
        let kinds = [
            untestable.kind,
            pending.kind,
            off.kind,
            CellKind::Blocked,
            CellKind::Queued,
            CellKind::Running,
        ];
        let classes: std::collections::BTreeSet<_> = kinds.iter().map(|k| k.class()).collect();
        assert_eq!(classes.len(), kinds.len());
    }

    #[test]
    fn a_failed_build_blocks_its_tests() {
        let build = status(1, 1, 0, WaitReason::Done);
        let waiting = status(
            0,
            0,
            0,
            WaitReason::DependencyFailed {
                reason: "b failed (1 of 1 runs)".into(),
            },
        );
        let members = [
            Member {
                kind: DefinitionKind::Build,
                name: "b",
                status: Some(&build),
            },
            test("t", &waiting),
        ];
        let cell = summarize(&ParseState::Ok, true, members);
        assert_eq!(cell.kind, CellKind::Blocked);
        assert!(cell.reason.contains("build failed: b"), "{}", cell.reason);
    }
}
