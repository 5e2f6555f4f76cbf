//! Settling derived values after events: calculated priorities flow from commits to their
//! definitions and from each definition to the builds it needs (across commits and repos);
//! then each touched definition's [`TestState`] is recomputed and changes ripple to its
//! dependents. Work lists are de-duplicated with a flag cleared *before* recomputation, so
//! a trigger arriving during a recomputation is never lost (the original could lose one).

use std::cmp::Reverse;

use super::engine::{Engine, TestIdx};
use super::hardware::{choose_hardware, HardwareConfig};
use super::state::TestState;
use crate::definitions::DefinitionKind;
use crate::protocol::Millis;

impl Engine {
    /// Runs both work lists to a fixed point.
    pub(crate) fn settle(&mut self) {
        loop {
            self.settle_derived();
            if !self.hunt_index.dirty {
                break;
            }
            // Hunts look at what settled; new batches change priorities: settle again.
            self.advance_hunts();
        }
    }

    fn settle_derived(&mut self) {
        while let Some(test) = self.priority_dirty.pop_front() {
            self.in_priority_dirty[test] = false;
            let (priority, runs_desired) = self.compute_priority(test);
            let slot = &mut self.tests[test];
            if slot.calc_priority != priority || slot.runs_desired != runs_desired {
                let priority_changed = slot.calc_priority != priority;
                slot.calc_priority = priority;
                slot.runs_desired = runs_desired;
                self.changes.test_states.insert(slot.hash.clone());
                if priority_changed {
                    let deps: Vec<TestIdx> = slot.deps.iter().map(|(dep, _)| *dep).collect();
                    for dep in deps {
                        self.mark_priority(dep);
                    }
                    if priority == 0 {
                        self.cancel_active_runs_of(test, "priority dropped to zero");
                    }
                }
                self.mark_state(test);
            }
        }
        while let Some(test) = self.state_dirty.pop_front() {
            self.in_state_dirty[test] = false;
            let state = self.compute_state(test, self.now);
            let changed = self.tests[test].state != state;
            if changed {
                if let TestState::WaitingToRetry { .. } = state {
                    self.waiting_retry.insert(test);
                } else {
                    self.waiting_retry.remove(&test);
                }
                let slot = &mut self.tests[test];
                slot.state = state;
                self.changes.test_states.insert(slot.hash.clone());
                let dependents = slot.dependents.clone();
                self.hunt_watch_touched(test);
                for dependent in dependents {
                    self.mark_state(dependent);
                }
            }
            self.update_queue_key(test);
        }
    }

    /// (calculated priority, runs desired) of a definition.
    fn compute_priority(&self, test: TestIdx) -> (u32, u32) {
        let slot = &self.tests[test];
        let Some(record) = &slot.record else {
            return (0, 1);
        };
        let name = record.definition.name.as_str();
        let mut priority = 0;
        let mut runs_desired = 0;
        for commit in &slot.commits {
            let commit = &self.commits[*commit];
            if commit.calc_priority == 0 {
                continue;
            }
            priority = priority.max(commit.calc_priority);
            let wanted = commit
                .settings
                .runs_desired
                .get(name)
                .copied()
                .unwrap_or(commit.branch_default_runs);
            runs_desired = runs_desired.max(wanted);
        }
        if let Some((hunt_priority, hunt_runs)) = self.hunt_index.demand.get(&test) {
            priority = priority.max(*hunt_priority);
            runs_desired = runs_desired.max(*hunt_runs);
        }
        let needed_by = slot
            .dependents
            .iter()
            .map(|dependent| self.tests[*dependent].calc_priority)
            .max()
            .unwrap_or(0);
        let priority = if record.definition.disabled && needed_by == 0 {
            0
        } else {
            priority.max(needed_by)
        };
        (priority, runs_desired.max(1))
    }

    /// A build that failed but may try again.
    pub(crate) fn wants_retries(&self, test: TestIdx) -> bool {
        let slot = &self.tests[test];
        let Some(record) = &slot.record else {
            return false;
        };
        let attempts = record.definition.max_retries.max(1);
        record.definition.kind == DefinitionKind::Build
            && slot.calc_priority > 0
            && slot.counts.successes() == 0
            && slot.counts.runs > 0
            && slot.counts.runs < attempts
    }

    fn retry_at(&self, test: TestIdx) -> Millis {
        let slot = &self.tests[test];
        let wait = slot
            .record
            .as_ref()
            .map(|record| record.definition.retry_wait_seconds)
            .unwrap_or(0);
        slot.last_end.saturating_add(wait.saturating_mul(1000))
    }

    /// Why a dependency will never deliver, if it will not.
    fn dependency_failure(&self, dep: TestIdx) -> Option<String> {
        let slot = &self.tests[dep];
        let name = slot.name();
        match &slot.state {
            TestState::DependencyFailed { reason } => {
                return Some(format!("{name} is blocked: {reason}"))
            }
            TestState::NoViableHardware { needs } => {
                return Some(format!(
                    "{name} needs hardware no machine provides ({needs})"
                ))
            }
            _ => {}
        }
        if slot.counts.runs > 0 && slot.counts.successes() == 0 && !self.wants_retries(dep) {
            return Some(format!(
                "{name} failed ({} of {} runs)",
                slot.counts.failures, slot.counts.runs
            ));
        }
        None
    }

    /// Whether some configured (or registered) machine can run the definition.
    pub(crate) fn hardware_viable(&self, test: TestIdx) -> bool {
        let Some(requirements) = &self.tests[test].requirements else {
            return false;
        };
        let os_ok = self.config.os_configs.is_empty()
            || self.config.os_configs.contains(&requirements.os)
            || (self.config.boots_linux_vms
                && matches!(requirements.os, crate::protocol::OsConfig::LinuxVm { .. }));
        let configured = os_ok
            && (self.config.hardware.is_empty()
                || choose_hardware(&self.config.hardware, requirements).is_some());
        configured
            || self
                .machines
                .values()
                .any(|machine| requirements.fits_machine(&machine.info))
    }

    fn compute_state(&self, test: TestIdx, now: Millis) -> TestState {
        let slot = &self.tests[test];
        let Some(record) = &slot.record else {
            return TestState::Unprioritized;
        };
        let kind = record.definition.kind;
        if kind == DefinitionKind::Deployment {
            return TestState::NoMoreTests;
        }
        let missing: Vec<String> = slot
            .deps
            .iter()
            .filter(|(dep, _)| self.tests[*dep].record.is_none())
            .map(|(dep, _)| self.tests[*dep].hash.clone())
            .collect();
        if !missing.is_empty() {
            return TestState::UnresolvedDependencies { missing };
        }
        let mut waiting_for = Vec::new();
        for (dep, artifact) in &slot.deps {
            if self.tests[*dep].available.contains(artifact) {
                continue;
            }
            if let Some(reason) = self.dependency_failure(*dep) {
                return TestState::DependencyFailed { reason };
            }
            let name = self.tests[*dep].name();
            waiting_for.push(if artifact.is_empty() {
                name.to_string()
            } else {
                format!("{name}/{artifact}")
            });
        }
        if !self.hardware_viable(test) {
            let needs = slot
                .requirements
                .as_ref()
                .map(|r| {
                    format!(
                        "{:?}, at least {} cores, {} GB RAM",
                        r.os, r.min_cores, r.min_ram_gb
                    )
                })
                .unwrap_or_default();
            return TestState::NoViableHardware { needs };
        }
        if slot.calc_priority == 0 {
            return TestState::Unprioritized;
        }
        if !waiting_for.is_empty() {
            return TestState::WaitingOnBuilds { waiting_for };
        }
        let counts = slot.counts;
        let started = counts.runs + counts.running;
        let wants_retries = self.wants_retries(test);
        let ready = now >= self.retry_at(test);
        let needed = match kind {
            DefinitionKind::Build if wants_retries => counts.runs + u64::from(ready),
            DefinitionKind::Build => 1,
            _ => u64::from(slot.runs_desired),
        };
        if started >= needed {
            if wants_retries && counts.running == 0 && !ready {
                TestState::WaitingToRetry {
                    until: self.retry_at(test),
                }
            } else {
                TestState::NoMoreTests
            }
        } else if kind == DefinitionKind::Build {
            TestState::FirstBuild
        } else if started == 0 {
            TestState::FirstTest
        } else {
            TestState::WantsMoreTests
        }
    }

    fn update_queue_key(&mut self, test: TestIdx) {
        let slot = &self.tests[test];
        let key = slot.state.work_class().map(|class| {
            (
                class,
                Reverse(slot.calc_priority),
                slot.counts.runs + slot.counts.running,
                test,
            )
        });
        let old = slot.queue_key;
        if key == old {
            return;
        }
        if let Some(old) = old {
            self.queue.remove(&old);
        }
        if let Some(new) = key {
            self.queue.insert(new);
            if old.is_none() {
                // Newly runnable (a re-ordering of queued work is not news to idle workers).
                self.changes.work_available = true;
            }
        }
        self.tests[test].queue_key = key;
    }

    /// Machine shapes wanted right now: one per run still needed by runnable work, plus
    /// one per deployment waiting for a machine (for machine pools).
    pub fn demand(&self) -> Vec<(HardwareConfig, crate::protocol::OsConfig, u64)> {
        let mut demand: std::collections::BTreeMap<_, u64> = Default::default();
        let mut add = |test: TestIdx, count: u64| {
            if let Some(requirements) = &self.tests[test].requirements {
                let hardware = choose_hardware(&self.config.hardware, requirements).unwrap_or(
                    HardwareConfig {
                        cores: requirements.min_cores.max(1),
                        ram_gb: requirements.min_ram_gb,
                    },
                );
                *demand
                    .entry((hardware, requirements.os.clone()))
                    .or_default() += count;
            }
        };
        for (_, _, _, test) in &self.queue {
            let slot = &self.tests[*test];
            let wanted = match slot.kind() {
                Some(DefinitionKind::Build) => 1,
                _ => u64::from(slot.runs_desired).saturating_sub(slot.counts.runs),
            };
            add(*test, wanted.max(1));
        }
        for deployment in self.deployments.values() {
            if deployment.alive && deployment.machine_id.is_none() {
                if let Some(test) = self.test_index.get(&deployment.test_hash) {
                    add(*test, 1);
                }
            }
        }
        demand
            .into_iter()
            .map(|((hardware, os), count)| (hardware, os, count))
            .collect()
    }

    /// Queued items by their minimums, for pools that choose instance types (the EC2 pool):
    /// deployments waiting for a machine first, then runnable work in queue order, with
    /// neighbours of equal needs merged. One entry per run still needed (one per build).
    pub fn pool_demand(&self) -> Vec<PoolDemand> {
        let mut demand: Vec<PoolDemand> = Vec::new();
        let mut add = |test: TestIdx, deployment: bool, count: u64| {
            let Some(requirements) = &self.tests[test].requirements else {
                return;
            };
            let item = PoolDemand {
                min_cores: requirements.min_cores.max(1),
                min_ram_gb: requirements.min_ram_gb,
                min_disk_gb: requirements.min_disk_gb,
                os: requirements.os.clone(),
                deployment,
                count,
            };
            match demand.last_mut() {
                Some(last) if last.same_needs(&item) => last.count += count,
                _ => demand.push(item),
            }
        };
        for deployment in self.deployments.values() {
            if deployment.alive && deployment.machine_id.is_none() {
                if let Some(test) = self.test_index.get(&deployment.test_hash) {
                    add(*test, true, 1);
                }
            }
        }
        for (_, _, _, test) in &self.queue {
            let slot = &self.tests[*test];
            let wanted = match slot.kind() {
                Some(DefinitionKind::Build) => 1,
                _ => u64::from(slot.runs_desired).saturating_sub(slot.counts.runs),
            };
            add(*test, false, wanted.max(1));
        }
        demand
    }
}

/// `count` queued items with the same minimums (see [`Engine::pool_demand`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolDemand {
    pub min_cores: u32,
    pub min_ram_gb: u32,
    pub min_disk_gb: u32,
    pub os: crate::protocol::OsConfig,
    /// A deployment waiting for a machine (rather than a run).
    pub deployment: bool,
    pub count: u64,
}

impl PoolDemand {
    fn same_needs(&self, other: &PoolDemand) -> bool {
        (
            self.min_cores,
            self.min_ram_gb,
            self.min_disk_gb,
            self.deployment,
        ) == (
            other.min_cores,
            other.min_ram_gb,
            other.min_disk_gb,
            other.deployment,
        ) && self.os == other.os
    }
}
