//! Machines and the run lifecycle: registration, work selection (deployments, then builds,
//! first runs, repeat runs), heartbeats, artifact reports, idempotent completion,
//! cancellation, lost runs and the time-driven deadlines (heartbeat expiry of runs and of
//! machines, build retry).
//!
//! A machine is listed only while it is alive: it leaves when its pool says it is gone,
//! when its session closes while it holds nothing, and when it has not been heard from for
//! the heartbeat timeout (workers beat while idle too). A run it held is then lost (once)
//! and offered again.

use super::changes::Cancellation;
use super::engine::{Engine, TestIdx};
use super::inputs::SchedulingError;
use super::model::{DeploymentRecord, Held, MachineRecord, RunRecord, RunState};
use crate::protocol::{
    ArtifactAck, ArtifactUploaded, Assignment, Completion, CompletionAck, DeploymentAssignment,
    FailureReason, Heartbeat, HeartbeatReply, MachineInfo, Millis, RunResult, Work,
};

impl Engine {
    /// Registers (or re-registers) a worker machine.
    pub fn register_machine(&mut self, info: MachineInfo, now: Millis) {
        self.now = now;
        let id = info.machine_id.clone();
        let new_shape = !self
            .machines
            .values()
            .any(|machine| machine.info.cores == info.cores && machine.info.ram_gb == info.ram_gb);
        match self.machines.get_mut(&id) {
            Some(machine) => {
                machine.info = info;
                machine.last_heartbeat = now;
            }
            None => {
                self.machines.insert(
                    id.clone(),
                    MachineRecord {
                        info,
                        registered: now,
                        last_heartbeat: now,
                        holds: Vec::new(),
                        retired: false,
                    },
                );
            }
        }
        self.changes.machines.insert(id);
        if new_shape {
            // Work reported as needing unavailable hardware may now fit.
            for idx in 0..self.tests.len() {
                if matches!(
                    self.tests[idx].state,
                    super::state::TestState::NoViableHardware { .. }
                ) {
                    self.mark_state(idx);
                }
            }
        }
        self.settle();
    }

    /// The machine is gone (terminated by its pool): its run is lost and retried.
    pub fn machine_gone(&mut self, machine_id: &str, now: Millis) {
        self.now = now;
        self.drop_machine(machine_id, "machine terminated");
        self.settle();
    }

    /// Drains (`retired = true`: it takes no new work, what it runs goes on) or undrains a
    /// machine; its pool ends a drained machine once it is idle. Unknown machines are ignored.
    pub fn set_machine_retired(&mut self, machine_id: &str, retired: bool, now: Millis) {
        self.now = now;
        if let Some(machine) = self.machines.get_mut(machine_id) {
            // A one-shot machine that has done its job is never taken back.
            let may_undrain = retired || !machine.info.os.is_one_shot();
            if machine.retired != retired && may_undrain {
                machine.retired = retired;
                self.changes.machines.insert(machine_id.into());
            }
        }
        self.settle();
    }

    /// The machine's session closed. Holding nothing, it leaves at once; holding a run or a
    /// deployment it stays until its heartbeat deadline, so that a worker that reconnects
    /// in time keeps its work.
    pub fn machine_disconnected(&mut self, machine_id: &str, now: Millis) {
        self.now = now;
        let holds_work = self.machines.get(machine_id).is_some_and(|machine| {
            machine.holds.iter().any(|held| {
                self.active_runs.contains(&held.id)
                    || self.deployments.get(&held.id).is_some_and(|d| d.alive)
            })
        });
        if !holds_work {
            self.drop_machine(machine_id, "machine disconnected");
            self.settle();
        }
    }

    /// Forgets a machine; the runs it held are lost (a deployment it served ends).
    fn drop_machine(&mut self, machine_id: &str, reason: &str) {
        let Some(machine) = self.machines.remove(machine_id) else {
            return;
        };
        self.changes.machines.insert(machine_id.into());
        for held in machine.holds {
            if self.active_runs.contains(&held.id) {
                self.end_active_run(&held.id, RunState::Lost, reason, false);
            } else if let Some(deployment) = self.deployments.get_mut(&held.id) {
                if deployment.alive {
                    deployment.alive = false;
                    self.changes.deployments.insert(held.id);
                }
            }
        }
    }

    /// The highest-priority work a machine holding nothing can run, or `None`: see
    /// [`Engine::next_work_holding`].
    pub fn next_work(
        &mut self,
        machine_id: &str,
        now: Millis,
    ) -> Result<Option<Work>, SchedulingError> {
        self.next_work_holding(machine_id, &[], now)
    }

    /// The highest-priority work that fits what the machine has free, or `None`. The runs
    /// it holds are `holding`; one of its runs not listed was abandoned (the worker
    /// restarted): that run is lost (and retried). A machine serving a deployment gets
    /// nothing else; one that does not share its cores gets work only when it holds
    /// nothing.
    pub fn next_work_holding(
        &mut self,
        machine_id: &str,
        holding: &[String],
        now: Millis,
    ) -> Result<Option<Work>, SchedulingError> {
        self.now = now;
        let machine = self
            .machines
            .get_mut(machine_id)
            .ok_or_else(|| SchedulingError::UnknownMachine(machine_id.into()))?;
        machine.last_heartbeat = now;
        if machine.retired {
            return Ok(None);
        }
        let abandoned: Vec<String> = machine
            .holds
            .iter()
            .filter(|held| !holding.contains(&held.id) && self.active_runs.contains(&held.id))
            .map(|held| held.id.clone())
            .collect();
        for run_id in abandoned {
            self.end_active_run(&run_id, RunState::Lost, "machine asked for new work", false);
        }
        let Some(machine) = self.machines.get(machine_id) else {
            return Ok(None);
        };
        let serving_deployment = machine
            .holds
            .iter()
            .any(|held| self.deployments.get(&held.id).is_some_and(|d| d.alive));
        if serving_deployment || (!machine.info.shares_cores && !machine.is_idle()) {
            return Ok(None);
        }
        let info = machine.info.clone();
        let idle = machine.is_idle();
        let (free_cores, free_ram_gb) = machine.free();
        if idle {
            if let Some(work) = self.assign_deployment(&info, now) {
                self.settle();
                return Ok(Some(work));
            }
        }
        let chosen = self.queue.iter().find_map(|(_, _, _, test)| {
            let requirements = self.tests[*test].requirements.as_ref()?;
            if !requirements.fits_machine(&info) {
                return None;
            }
            let grant = if info.shares_cores {
                requirements.share(&info, free_cores, free_ram_gb)?
            } else {
                requirements.whole_machine(&info)
            };
            Some((*test, grant))
        });
        let work = chosen.map(|(test, grant)| self.start_run(test, &info, grant, now));
        self.settle();
        Ok(work)
    }

    fn assign_deployment(&mut self, info: &MachineInfo, now: Millis) -> Option<Work> {
        let deployment_id = self.deployments.values().find_map(|deployment| {
            let test = self.test_index.get(&deployment.test_hash)?;
            let fits = self.tests[*test]
                .requirements
                .as_ref()
                .is_some_and(|requirements| requirements.fits_machine(info));
            (deployment.alive && deployment.machine_id.is_none() && fits)
                .then(|| deployment.deployment_id.clone())
        })?;
        let deployment = self.deployments.get_mut(&deployment_id)?;
        deployment.machine_id = Some(info.machine_id.clone());
        let test = *self.test_index.get(&deployment.test_hash)?;
        let record = self.tests[test].record.clone()?;
        let requirements = self.tests[test].requirements.clone()?;
        self.changes.deployments.insert(deployment_id.clone());
        // A deployment has the machine to itself, shared or not.
        let grant = requirements.whole_machine(info);
        self.occupy_machine(&info.machine_id, &deployment_id, grant, now);
        Some(Work::Deployment(Box::new(DeploymentAssignment {
            deployment_id,
            test_hash: record.hash.clone(),
            source: record.source.clone(),
            definition: record.definition.clone(),
            cores: grant.0,
            ram_gb: grant.1,
        })))
    }

    /// Records that the machine holds `id` with `(cores, ram_gb)` granted to it.
    fn occupy_machine(&mut self, machine_id: &str, id: &str, grant: (u32, u32), now: Millis) {
        if let Some(machine) = self.machines.get_mut(machine_id) {
            machine.holds.push(Held {
                id: id.to_string(),
                cores: grant.0,
                ram_gb: grant.1,
            });
            machine.last_heartbeat = now;
            self.changes.machines.insert(machine_id.into());
        }
    }

    /// Frees a machine's share held by `id`; a one-shot VM is retired instead.
    pub(crate) fn release_machine(&mut self, machine_id: &str, id: &str, _now: Millis) {
        if let Some(machine) = self.machines.get_mut(machine_id) {
            if machine.holds_item(id) {
                machine.holds.retain(|held| held.id != id);
                if machine.info.os.is_one_shot() {
                    machine.retired = true;
                }
                self.changes.machines.insert(machine_id.into());
            }
        }
    }

    fn start_run(
        &mut self,
        test: TestIdx,
        info: &MachineInfo,
        grant: (u32, u32),
        now: Millis,
    ) -> Work {
        let run_id = self.fresh_id("run");
        let slot = &self.tests[test];
        let record = slot.record.clone().expect("only defined tests are queued");
        let attempt = u32::try_from(slot.counts.runs + slot.counts.running + 1).unwrap_or(u32::MAX);
        let run = RunRecord {
            run_id: run_id.clone(),
            test_hash: slot.hash.clone(),
            machine_id: info.machine_id.clone(),
            attempt,
            state: RunState::Assigned,
            started: now,
            last_heartbeat: now,
            ended: 0,
            artifacts: Vec::new(),
            result: None,
            test_cases: Vec::new(),
            reason: String::new(),
            cleared: false,
        };
        let artifacts = slot.artifacts.clone();
        self.tests[test].runs.push(run_id.clone());
        self.runs.insert(run_id.clone(), run);
        self.active_runs.insert(run_id.clone());
        self.changes.runs.insert(run_id.clone());
        self.occupy_machine(&info.machine_id, &run_id, grant, now);
        self.recount(test);
        let timeout_seconds = record.definition.timeout;
        Work::Run(Box::new(Assignment {
            run_id,
            test_hash: record.hash.clone(),
            attempt,
            source: record.source.clone(),
            definition: record.definition.clone(),
            artifacts,
            timeout_seconds,
            cores: grant.0,
            ram_gb: grant.1,
        }))
    }

    /// A worker is alive (and running `run_id`, if given; `run_id` may also name the
    /// deployment the machine serves).
    pub fn heartbeat(&mut self, heartbeat: &Heartbeat, now: Millis) -> HeartbeatReply {
        self.now = now;
        let Some(machine) = self.machines.get_mut(&heartbeat.machine_id) else {
            return HeartbeatReply::UnknownMachine;
        };
        machine.last_heartbeat = now;
        let Some(run_id) = &heartbeat.run_id else {
            return HeartbeatReply::Continue;
        };
        if !self.runs.contains_key(run_id) {
            if let Some(deployment) = self.deployments.get(run_id) {
                return deployment_heartbeat(deployment, &heartbeat.machine_id);
            }
        }
        match self.runs.get_mut(run_id) {
            Some(run) if run.state.is_active() && run.machine_id == heartbeat.machine_id => {
                run.last_heartbeat = now;
                if run.state == RunState::Assigned {
                    run.state = RunState::Running;
                    self.changes.runs.insert(run_id.clone());
                }
                HeartbeatReply::Continue
            }
            Some(run) if run.state.is_active() => HeartbeatReply::Cancel {
                run_id: run_id.clone(),
                reason: format!("run belongs to machine {}", run.machine_id),
            },
            Some(run) => HeartbeatReply::Cancel {
                run_id: run_id.clone(),
                reason: if run.reason.is_empty() {
                    format!("run already {:?}", run.state).to_lowercase()
                } else {
                    run.reason.clone()
                },
            },
            None => HeartbeatReply::Cancel {
                run_id: run_id.clone(),
                reason: "unknown run or deployment".into(),
            },
        }
    }

    /// One artifact stored: must be the next expected name. Dependents waiting for it
    /// become runnable at once.
    pub fn artifact_uploaded(&mut self, report: &ArtifactUploaded, now: Millis) -> ArtifactAck {
        self.now = now;
        let Some(run) = self.runs.get_mut(&report.run_id) else {
            return ArtifactAck::UnknownRun;
        };
        if !run.state.is_active() {
            return ArtifactAck::UnknownRun;
        }
        run.last_heartbeat = now;
        let Some(test) = self.test_index.get(&run.test_hash).copied() else {
            return ArtifactAck::UnknownRun;
        };
        if run.artifacts.contains(&report.artifact) {
            return ArtifactAck::AlreadyRecorded;
        }
        let expected = self.tests[test].artifacts.get(run.artifacts.len());
        if expected != Some(&report.artifact) {
            return ArtifactAck::Rejected {
                reason: match expected {
                    Some(name) => {
                        format!("expected artifact {name:?} next, got {:?}", report.artifact)
                    }
                    None => format!(
                        "unexpected artifact {:?}: all artifacts reported",
                        report.artifact
                    ),
                },
            };
        }
        run.artifacts.push(report.artifact.clone());
        self.changes.runs.insert(report.run_id.clone());
        self.make_available(test, &report.artifact);
        self.settle();
        ArtifactAck::Recorded
    }

    fn make_available(&mut self, test: TestIdx, artifact: &str) {
        if self.tests[test].available.insert(artifact.to_string()) {
            for dependent in self.tests[test].dependents.clone() {
                self.mark_state(dependent);
            }
        }
    }

    /// Records a finished run exactly once. A resend is `AlreadyRecorded`; a completion of
    /// a cancelled or lost run is discarded. The reported artifact list must extend what
    /// was recorded; a "passed" run missing declared artifacts is recorded as failed.
    pub fn record_completion(&mut self, completion: &Completion, now: Millis) -> CompletionAck {
        self.now = now;
        let run_id = &completion.run_id;
        let Some(run) = self.runs.get(run_id) else {
            return CompletionAck::UnknownRun;
        };
        match run.state {
            RunState::Passed | RunState::Failed | RunState::TimedOut => {
                // A resend means the worker never saw the ack, so the step that stored the
                // result may have failed after memory took it: write the durable record
                // again (idempotent) so it cannot be missing.
                self.changes.result_records.insert(run_id.clone());
                return CompletionAck::AlreadyRecorded;
            }
            RunState::Cancelled | RunState::Lost => {
                return CompletionAck::Discarded {
                    reason: run.reason.clone(),
                }
            }
            RunState::Assigned | RunState::Running => {}
        }
        let Some(test) = self.test_index.get(&run.test_hash).copied() else {
            return CompletionAck::UnknownRun;
        };
        let expected = self.tests[test].artifacts.clone();
        let recorded = run.artifacts.clone();
        let reported = &completion.outcome.artifacts;
        let consistent = reported.len() <= expected.len()
            && reported.iter().zip(&expected).all(|(a, b)| a == b)
            && recorded.iter().zip(reported).all(|(a, b)| a == b);
        let artifacts = if consistent && reported.len() >= recorded.len() {
            reported.clone()
        } else {
            recorded.clone()
        };
        let mut result = completion.outcome.result.clone();
        if !consistent {
            result = RunResult::Failed {
                reason: FailureReason::Infrastructure,
                message: format!(
                    "artifact report {reported:?} does not match the declared {expected:?}"
                ),
            };
        } else if result.passed() && artifacts.len() < expected.len() {
            result = RunResult::Failed {
                reason: FailureReason::Infrastructure,
                message: format!(
                    "reported success but uploaded only {artifacts:?} of {expected:?}"
                ),
            };
        }
        let state = match &result {
            RunResult::Passed => RunState::Passed,
            RunResult::Failed {
                reason: FailureReason::Timeout,
                ..
            } => RunState::TimedOut,
            RunResult::Failed { .. } => RunState::Failed,
        };
        let mut cases = completion.outcome.test_cases.clone();
        cases.sort_by(|a, b| a.name.cmp(&b.name));
        cases.dedup_by(|a, b| a.name == b.name);
        let Some(run) = self.runs.get_mut(run_id) else {
            return CompletionAck::UnknownRun;
        };
        run.state = state;
        run.ended = now;
        run.last_heartbeat = now;
        run.result = Some(result);
        run.test_cases = cases;
        run.artifacts = artifacts.clone();
        let machine_id = run.machine_id.clone();
        self.active_runs.remove(run_id);
        self.changes.runs.insert(run_id.clone());
        self.changes.result_records.insert(run_id.clone());
        for artifact in &artifacts {
            self.make_available(test, artifact);
        }
        self.release_machine(&machine_id, run_id, now);
        self.recount(test);
        self.settle();
        CompletionAck::Recorded
    }

    /// Ends an active run without a counted result (cancelled or lost).
    pub(crate) fn end_active_run(
        &mut self,
        run_id: &str,
        state: RunState,
        reason: &str,
        notify: bool,
    ) {
        let Some(run) = self.runs.get_mut(run_id) else {
            return;
        };
        if !run.state.is_active() {
            return;
        }
        run.state = state;
        run.ended = self.now;
        run.reason = reason.to_string();
        let machine_id = run.machine_id.clone();
        let test_hash = run.test_hash.clone();
        self.active_runs.remove(run_id);
        self.changes.runs.insert(run_id.to_string());
        if notify || state == RunState::Lost {
            self.changes.cancellations.push(Cancellation {
                run_id: run_id.to_string(),
                machine_id: machine_id.clone(),
                reason: reason.to_string(),
            });
        }
        let now = self.now;
        self.release_machine(&machine_id, run_id, now);
        if let Some(test) = self.test_index.get(&test_hash).copied() {
            self.recount(test);
        }
    }

    pub(crate) fn cancel_active_runs_of(&mut self, test: TestIdx, reason: &str) {
        let active: Vec<String> = self.tests[test]
            .runs
            .iter()
            .filter(|run_id| self.active_runs.contains(*run_id))
            .cloned()
            .collect();
        for run_id in active {
            self.end_active_run(&run_id, RunState::Cancelled, reason, true);
        }
    }

    /// Applies every deadline that has passed: runs silent for longer than the heartbeat
    /// timeout are lost (and their tests offered again), machines silent that long are
    /// dropped; failed builds whose retry wait is over become runnable.
    pub fn expire(&mut self, now: Millis) {
        self.now = now;
        let timeout = self.config.heartbeat_timeout_ms;
        let lost: Vec<String> = self
            .active_runs
            .iter()
            .filter(|run_id| {
                self.runs
                    .get(*run_id)
                    .is_some_and(|run| run.last_heartbeat.saturating_add(timeout) <= now)
            })
            .cloned()
            .collect();
        for run_id in lost {
            self.end_active_run(&run_id, RunState::Lost, "no heartbeat", true);
        }
        let silent: Vec<String> = self
            .machines
            .values()
            .filter(|machine| machine.last_heartbeat.saturating_add(timeout) <= now)
            .map(|machine| machine.info.machine_id.clone())
            .collect();
        for machine_id in silent {
            self.drop_machine(&machine_id, "machine stopped heartbeating");
        }
        let waiting: Vec<TestIdx> = self.waiting_retry.iter().copied().collect();
        for test in waiting {
            self.mark_state(test);
        }
        self.settle();
    }

    /// The earliest time at which [`Engine::expire`] has something to do.
    pub fn next_deadline(&self) -> Option<Millis> {
        let timeout = self.config.heartbeat_timeout_ms;
        let heartbeat = self
            .active_runs
            .iter()
            .filter_map(|run_id| self.runs.get(run_id))
            .map(|run| run.last_heartbeat.saturating_add(timeout))
            .chain(
                self.machines
                    .values()
                    .map(|machine| machine.last_heartbeat.saturating_add(timeout)),
            )
            .min();
        let retry = self
            .waiting_retry
            .iter()
            .filter_map(|test| match self.tests[*test].state {
                super::state::TestState::WaitingToRetry { until } => Some(until),
                _ => None,
            })
            .min();
        match (heartbeat, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The answer to a heartbeat naming a deployment: keep going only while it is alive and
/// bound to the machine that sent it.
fn deployment_heartbeat(deployment: &DeploymentRecord, machine_id: &str) -> HeartbeatReply {
    let cancel = |reason: String| HeartbeatReply::Cancel {
        run_id: deployment.deployment_id.clone(),
        reason,
    };
    if !deployment.alive {
        return cancel("deployment was shut down".into());
    }
    match deployment.machine_id.as_deref() {
        Some(bound) if bound == machine_id => HeartbeatReply::Continue,
        Some(bound) => cancel(format!("deployment belongs to machine {bound}")),
        None => cancel("deployment is not assigned to this machine".into()),
    }
}
