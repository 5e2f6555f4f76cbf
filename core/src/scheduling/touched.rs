//! Which parts of the state a batch of [`Changes`] touched, for readers that keep what they
//! computed from a few parts (a commit page, a page of a branch's grid, one test's history)
//! and want to know whether those parts moved. A commit's part covers its record, settings
//! and calculated priority and the states, counters and runs of every definition it
//! declares, so a definition shared by many commits touches each of them; a definition's
//! part covers its own state, counters and runs.

use std::collections::HashSet;

use super::changes::Changes;
use super::engine::{Engine, TestIdx};

/// Past this many parts a batch counts as touching everything (cheaper to forget all than
/// to index each: ingesting or prioritising a long history).
pub const MAX_PARTS_TOUCHED: usize = 10_000;

/// A part of the scheduler's state a reader can depend on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatePart {
    /// A commit's record, settings, priority, and its definitions' states, counters and
    /// runs.
    Commit { repo: String, hash: String },
    /// A definition's state, priority, counters and runs.
    Test { hash: String },
    /// The branches of a repo, with their settings.
    Branches { repo: String },
}

/// The parts one batch touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartsTouched {
    Parts(HashSet<StatePart>),
    /// Too many to list, or not attributable to parts.
    Everything,
}

impl Engine {
    /// The parts `changes` touched (see the module documentation).
    pub fn parts_touched(&self, changes: &Changes) -> PartsTouched {
        // Each of these names distinct parts: past the bound, say so before listing any
        // (a long history's ingest or prioritisation touches hundreds of thousands).
        let named = [
            changes.commits.len(),
            changes.commit_settings.len(),
            changes.commit_priorities.len(),
            changes.test_states.len(),
            changes.new_tests.len(),
        ];
        // A quarantine change alters how every commit declaring the test reads (rare: a
        // user action or the automatic rule).
        if named.into_iter().any(|count| count > MAX_PARTS_TOUCHED)
            || !changes.quarantine.is_empty()
        {
            return PartsTouched::Everything;
        }
        let mut parts = HashSet::new();
        let commits = changes
            .commits
            .iter()
            .chain(&changes.commit_settings)
            .chain(&changes.commit_priorities);
        for (repo, hash) in commits {
            parts.insert(StatePart::Commit {
                repo: repo.clone(),
                hash: hash.clone(),
            });
        }
        for (repo, _) in changes.branches.iter().chain(&changes.removed_branches) {
            parts.insert(StatePart::Branches { repo: repo.clone() });
        }
        let run_tests = changes
            .runs
            .iter()
            .filter_map(|run_id| self.runs.get(run_id))
            .map(|run| &run.test_hash);
        let tests: HashSet<TestIdx> = changes
            .test_states
            .iter()
            .chain(&changes.new_tests)
            .chain(run_tests)
            .filter_map(|hash| self.test_index.get(hash).copied())
            .collect();
        for test in tests {
            parts.insert(StatePart::Test {
                hash: self.tests[test].hash.clone(),
            });
            for commit in &self.tests[test].commits {
                if parts.len() > MAX_PARTS_TOUCHED {
                    return PartsTouched::Everything;
                }
                let record = &self.commits[*commit].record;
                parts.insert(StatePart::Commit {
                    repo: record.repo.clone(),
                    hash: record.hash.clone(),
                });
            }
        }
        if parts.len() > MAX_PARTS_TOUCHED {
            PartsTouched::Everything
        } else {
            PartsTouched::Parts(parts)
        }
    }
}
