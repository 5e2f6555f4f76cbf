//! What retention may remove from the scheduler's facts, and the removal itself (M2, M6).
//!
//! A run's result record backs the failure rate of its definition, and that rate is shown on
//! every commit declaring the definition. The rule: a definition is *shown* when a commit
//! reachable from a branch declares it, or when a shown definition depends on it (builds).
//! Runs of shown definitions are kept whatever their age. A finished run of a definition that
//! is not shown may be forgotten once it ended before the cutoff, but only if at least one
//! commit declaring that definition is known and none of them is reachable: after an empty
//! Redis is rebuilt, definitions come back only as branches are scanned again, and a
//! definition no commit declares yet is kept rather than guessed about.
//!
//! Ended deployments are forgotten once booted before their cutoff.

use std::collections::{BTreeSet, HashSet};

use super::engine::{Engine, TestIdx};
use super::model::RunState;
use crate::protocol::Millis;

/// A run retention may forget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredRun {
    pub test_hash: String,
    pub run_id: String,
}

impl Engine {
    /// Hashes of the definitions whose failure rate is shown (see the module docs).
    pub fn shown_tests(&self) -> HashSet<String> {
        let mut shown: HashSet<TestIdx> = HashSet::new();
        let mut frontier: Vec<TestIdx> = Vec::new();
        for commit in &self.commits {
            if commit.reached_by.is_some() {
                for test in &commit.tests {
                    if shown.insert(*test) {
                        frontier.push(*test);
                    }
                }
            }
        }
        while let Some(test) = frontier.pop() {
            for (dependency, _) in &self.tests[test].deps {
                if shown.insert(*dependency) {
                    frontier.push(*dependency);
                }
            }
        }
        shown
            .into_iter()
            .map(|test| self.tests[test].hash.clone())
            .collect()
    }

    /// Finished runs that ended before `cutoff` and back no shown failure rate.
    pub fn expired_runs(&self, cutoff: Millis) -> Vec<ExpiredRun> {
        let shown = self.shown_tests();
        let mut expired = Vec::new();
        for test in &self.tests {
            if shown.contains(&test.hash) || test.commits.is_empty() {
                continue;
            }
            for run_id in &test.runs {
                let Some(run) = self.runs.get(run_id) else {
                    continue;
                };
                if !run.state.is_active() && run.ended.max(run.started) < cutoff {
                    expired.push(ExpiredRun {
                        test_hash: test.hash.clone(),
                        run_id: run_id.clone(),
                    });
                }
            }
        }
        expired
    }

    /// Forgets finished runs (retention): their tests are recounted and their records are
    /// deleted from the stored state. Active or unknown runs are skipped; returns how many
    /// were forgotten.
    pub fn forget_runs(&mut self, run_ids: &[String], now: Millis) -> usize {
        self.now = now;
        let mut touched: BTreeSet<TestIdx> = BTreeSet::new();
        let mut forgotten = 0;
        for run_id in run_ids {
            if self
                .runs
                .get(run_id)
                .is_none_or(|run| run.state.is_active())
            {
                continue;
            }
            let Some(run) = self.runs.remove(run_id) else {
                continue;
            };
            if let Some(test) = self.test_index.get(&run.test_hash).copied() {
                self.tests[test].runs.retain(|id| id != run_id);
                touched.insert(test);
            }
            self.changes.runs.insert(run_id.clone());
            forgotten += 1;
        }
        for test in touched {
            let mut available = HashSet::new();
            for run_id in &self.tests[test].runs {
                if let Some(run) = self.runs.get(run_id) {
                    if run.state != RunState::Cancelled {
                        available.extend(run.artifacts.iter().cloned());
                    }
                }
            }
            self.tests[test].available = available;
            // Its run list changed even when its counts did not.
            self.changes
                .test_states
                .insert(self.tests[test].hash.clone());
            self.recount(test);
            self.mark_priority(test);
        }
        self.settle();
        forgotten
    }

    /// Ids of ended deployments booted before `cutoff`.
    pub fn expired_deployments(&self, cutoff: Millis) -> Vec<String> {
        self.deployments
            .values()
            .filter(|deployment| !deployment.alive && deployment.created < cutoff)
            .map(|deployment| deployment.deployment_id.clone())
            .collect()
    }

    /// Forgets ended deployments (retention); alive or unknown ones are skipped. Returns how
    /// many were forgotten.
    pub fn forget_deployments(&mut self, deployment_ids: &[String], now: Millis) -> usize {
        self.now = now;
        let mut forgotten = 0;
        for id in deployment_ids {
            if self.deployments.get(id).is_some_and(|d| !d.alive) {
                self.deployments.remove(id);
                self.changes.deployments.insert(id.clone());
                forgotten += 1;
            }
        }
        forgotten
    }
}
