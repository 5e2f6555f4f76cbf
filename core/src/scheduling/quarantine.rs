//! Quarantine: a test known to be flaky keeps running, but its failures stop counting
//! against its commits' status, until the evidence says it is fixed.
//!
//! A quarantine entry is per (repo, test name), so it covers every commit's definition of
//! that test. It is entered by hand ([`Engine::set_quarantine`]) or automatically, and left
//! by hand or by the mirror rule: with [`QuarantinePolicy::automatic`] on (in
//! [`super::SchedulerConfig::quarantine`]), whenever a
//! branch head's definition of a test gets a new finished run, the Beta posterior of its
//! failure rate (Jeffreys prior, see [`crate::stats::posterior`]) is checked: P(rate >
//! threshold) ≥ `probability` enters quarantine, P(rate < threshold) ≥ `probability` leaves
//! it. Each entry and exit is kept in a log with its evidence (the definition, its runs and
//! failures, the probability).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::engine::{Engine, TestIdx};
use super::inputs::SchedulingError;
use crate::protocol::Millis;
use crate::stats::posterior::{RatePosterior, RatePrior};

/// Log entries kept (oldest dropped first).
pub const MAX_QUARANTINE_LOG: usize = 2_000;

/// When tests enter and leave quarantine on their own.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct QuarantinePolicy {
    /// Enter and leave automatically (off: only by hand).
    pub automatic: bool,
    /// The failure rate that makes a test flaky enough to quarantine.
    pub threshold: f64,
    /// The posterior probability the rule needs, both ways.
    pub probability: f64,
}

impl Default for QuarantinePolicy {
    fn default() -> Self {
        QuarantinePolicy {
            automatic: false,
            threshold: 0.05,
            probability: 0.95,
        }
    }
}

/// What a quarantine decision rested on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QuarantineEvidence {
    /// The definition (identity hash) whose runs were counted.
    pub test_hash: String,
    /// The branch head that declares it.
    pub commit: String,
    pub runs: u64,
    pub failures: u64,
    pub threshold: f64,
    /// P(rate > threshold) for an entry, P(rate < threshold) for an exit.
    pub probability: f64,
}

/// A test in quarantine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QuarantineEntry {
    pub repo: String,
    pub test: String,
    pub since: Millis,
    /// A user name, or "automatic".
    pub by: String,
    #[serde(default)]
    pub evidence: Option<QuarantineEvidence>,
}

/// One entry into or exit from quarantine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QuarantineEvent {
    pub repo: String,
    pub test: String,
    pub entered: bool,
    pub at: Millis,
    pub by: String,
    #[serde(default)]
    pub evidence: Option<QuarantineEvidence>,
}

/// The quarantine's state inside the engine.
#[derive(Default)]
pub(crate) struct Quarantine {
    pub(crate) entries: BTreeMap<(String, String), QuarantineEntry>,
    pub(crate) log: VecDeque<QuarantineEvent>,
}

impl Engine {
    /// The automatic rule ([`super::SchedulerConfig::quarantine`]).
    pub fn quarantine_policy(&self) -> QuarantinePolicy {
        self.config.quarantine
    }

    /// Puts a test in quarantine or takes it out by hand (`by`: who).
    pub fn set_quarantine(
        &mut self,
        repo: &str,
        test: &str,
        on: bool,
        by: &str,
        now: Millis,
    ) -> Result<(), SchedulingError> {
        self.now = now;
        let declared = self.repo_commits.get(repo).is_some_and(|commits| {
            commits
                .iter()
                .any(|idx| self.commits[*idx].record.tests.contains_key(test))
        });
        if !declared {
            return Err(SchedulingError::UnknownTest(format!("{repo}/{test}")));
        }
        let key = (repo.to_string(), test.to_string());
        if on != self.quarantine.entries.contains_key(&key) {
            self.record_quarantine(key, on, by, None);
        }
        Ok(())
    }

    /// Whether a test is in quarantine.
    pub fn is_quarantined(&self, repo: &str, test: &str) -> bool {
        self.quarantine
            .entries
            .contains_key(&(repo.to_string(), test.to_string()))
    }

    /// Every test in quarantine.
    pub fn quarantined(&self) -> Vec<&QuarantineEntry> {
        self.quarantine.entries.values().collect()
    }

    /// Entries into and exits from quarantine, newest first.
    pub fn quarantine_log(&self) -> impl Iterator<Item = &QuarantineEvent> {
        self.quarantine.log.iter().rev()
    }

    pub(crate) fn load_quarantine(
        &mut self,
        entries: Vec<QuarantineEntry>,
        log: Vec<QuarantineEvent>,
    ) {
        for entry in entries {
            self.quarantine
                .entries
                .insert((entry.repo.clone(), entry.test.clone()), entry);
        }
        self.quarantine.log = log.into();
        while self.quarantine.log.len() > MAX_QUARANTINE_LOG {
            self.quarantine.log.pop_front();
        }
    }

    fn record_quarantine(
        &mut self,
        key: (String, String),
        entered: bool,
        by: &str,
        evidence: Option<QuarantineEvidence>,
    ) {
        let event = QuarantineEvent {
            repo: key.0.clone(),
            test: key.1.clone(),
            entered,
            at: self.now,
            by: by.to_string(),
            evidence: evidence.clone(),
        };
        if entered {
            self.quarantine.entries.insert(
                key.clone(),
                QuarantineEntry {
                    repo: key.0.clone(),
                    test: key.1.clone(),
                    since: self.now,
                    by: by.to_string(),
                    evidence,
                },
            );
        } else {
            self.quarantine.entries.remove(&key);
        }
        self.quarantine.log.push_back(event.clone());
        if self.quarantine.log.len() > MAX_QUARANTINE_LOG {
            self.quarantine.log.pop_front();
        }
        self.changes.quarantine.insert(key);
        self.changes.quarantine_events.push(event);
        self.changes.settings = true;
    }

    /// The automatic rule for a definition whose finished runs changed: checked for every
    /// branch head that declares it.
    pub(crate) fn check_quarantine(&mut self, test: TestIdx) {
        let policy = self.config.quarantine;
        if !policy.automatic {
            return;
        }
        let slot = &self.tests[test];
        let name = slot.name().to_string();
        let counts = slot.counts;
        if name.is_empty() || counts.runs == 0 {
            return;
        }
        let hash = slot.hash.clone();
        let heads: Vec<(String, String)> = self
            .branches
            .values()
            .filter_map(|branch| {
                let head = branch.head.as_ref()?;
                let idx = self
                    .commit_index
                    .get(&(branch.repo.clone(), head.clone()))?;
                (self.commits[*idx].record.tests.get(&name) == Some(&hash))
                    .then(|| (branch.repo.clone(), head.clone()))
            })
            .collect();
        if heads.is_empty() {
            return;
        }
        let posterior = RatePosterior::new(counts.failures, counts.runs, RatePrior::JEFFREYS);
        let above = posterior.prob_above(policy.threshold);
        for (repo, head) in heads {
            let key = (repo, name.clone());
            let quarantined = self.quarantine.entries.contains_key(&key);
            let probability = if quarantined { 1.0 - above } else { above };
            if probability < policy.probability {
                continue;
            }
            let evidence = QuarantineEvidence {
                test_hash: hash.clone(),
                commit: head,
                runs: counts.runs,
                failures: counts.failures,
                threshold: policy.threshold,
                probability,
            };
            self.record_quarantine(key, !quarantined, "automatic", Some(evidence));
        }
    }
}
