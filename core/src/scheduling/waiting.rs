//! What waits and why, as the queue page lists it: runnable work in the order machines get
//! it; enabled work blocked on builds (found by walking the branches from their heads);
//! enabled work no machine can run; and the tests of branch heads nobody enabled (priority
//! zero). Walks commits and definitions by index, and builds a view only for what it lists.

use std::collections::{HashSet, VecDeque};

use super::engine::{CommitIdx, Engine, TestIdx};
use super::state::TestState;
use super::views::TestView;

/// How much [`Engine::waiting`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitingLimits {
    /// Runnable entries.
    pub runnable: usize,
    /// Commits walked from the branch heads to find blocked work.
    pub walk: usize,
    /// Entries of each other group (blocked, no hardware, priority zero).
    pub group: usize,
}

/// Which group an entry is listed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitingGroup {
    Runnable,
    Blocked,
    NoHardware,
    NotWanted,
}

/// One listed definition and the commit it is listed for.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitingEntry {
    pub group: WaitingGroup,
    pub test: TestView,
    pub repo: String,
    pub commit: String,
}

fn blocked(state: &TestState) -> bool {
    matches!(
        state,
        TestState::WaitingOnBuilds { .. }
            | TestState::DependencyFailed { .. }
            | TestState::UnresolvedDependencies { .. }
            | TestState::WaitingToRetry { .. }
    )
}

impl Engine {
    /// See the module documentation. Each definition is listed once, in its first group.
    pub fn waiting(&self, limits: WaitingLimits) -> Vec<WaitingEntry> {
        let mut listed: HashSet<TestIdx> = HashSet::new();
        let mut entries: Vec<WaitingEntry> = Vec::new();
        for (_, _, _, test) in self.queue.iter().take(limits.runnable) {
            listed.insert(*test);
            entries.push(self.entry_at_source(WaitingGroup::Runnable, *test));
        }

        let heads: Vec<CommitIdx> = self
            .branches
            .values()
            .filter_map(|branch| {
                let head = branch.head.as_ref()?;
                self.commit_index.get(&(branch.repo.clone(), head.clone()))
            })
            .copied()
            .collect();
        let is_head: HashSet<CommitIdx> = heads.iter().copied().collect();
        let mut seen: HashSet<CommitIdx> = HashSet::new();
        let mut frontier: VecDeque<CommitIdx> = heads.into_iter().collect();
        let (mut blocked_entries, mut idle_heads) = (Vec::new(), Vec::new());
        while let Some(commit_idx) = frontier.pop_front() {
            if seen.len() >= limits.walk || !seen.insert(commit_idx) {
                continue;
            }
            let commit = &self.commits[commit_idx];
            frontier.extend(commit.parents.iter().copied());
            let enabled = commit.calc_priority > 0;
            let head = is_head.contains(&commit_idx);
            // Only enabled commits and branch heads list anything.
            if !enabled && !head {
                continue;
            }
            for &test_idx in &commit.tests {
                if listed.contains(&test_idx) {
                    continue;
                }
                let test = &self.tests[test_idx];
                let group = if enabled && test.calc_priority > 0 && blocked(&test.state) {
                    if blocked_entries.len() >= limits.group {
                        continue;
                    }
                    &mut blocked_entries
                } else if !enabled && head && test.state == TestState::Unprioritized {
                    if idle_heads.len() >= limits.group {
                        continue;
                    }
                    &mut idle_heads
                } else {
                    continue;
                };
                listed.insert(test_idx);
                group.push((test_idx, commit_idx));
            }
        }
        let in_commit = |group: WaitingGroup, (test, commit): (TestIdx, CommitIdx)| {
            let record = &self.commits[commit].record;
            WaitingEntry {
                group,
                test: self.test_view_idx(test),
                repo: record.repo.clone(),
                commit: record.hash.clone(),
            }
        };
        entries.extend(
            blocked_entries
                .into_iter()
                .map(|at| in_commit(WaitingGroup::Blocked, at)),
        );
        let unrunnable = (0..self.tests.len())
            .filter(|idx| {
                matches!(self.tests[*idx].state, TestState::NoViableHardware { .. })
                    && self.tests[*idx].calc_priority > 0
                    && !listed.contains(idx)
            })
            .take(limits.group);
        for test in unrunnable.collect::<Vec<_>>() {
            entries.push(self.entry_at_source(WaitingGroup::NoHardware, test));
        }
        entries.extend(
            idle_heads
                .into_iter()
                .map(|at| in_commit(WaitingGroup::NotWanted, at)),
        );
        entries
    }

    /// An entry listed for the commit that defines the test.
    fn entry_at_source(&self, group: WaitingGroup, test: TestIdx) -> WaitingEntry {
        let source = self.tests[test]
            .record
            .as_ref()
            .map(|record| &record.source);
        WaitingEntry {
            group,
            test: self.test_view_idx(test),
            repo: source.map(|s| s.repo.clone()).unwrap_or_default(),
            commit: source.map(|s| s.commit.clone()).unwrap_or_default(),
        }
    }
}
