//! The change feed: one event per kind of change after every scheduler step, published to
//! the Redis stream [`crate::scheduler::keys::FEED`] (for other processes: machine pools, a
//! second web front end) and to an in-process broadcast channel (web UI websockets, idle
//! workers waiting for work). Events name what changed; readers fetch the details.

use serde::{Deserialize, Serialize};
use test_looper_core::scheduling::{Changes, RunState};

/// Lists in one event are capped; `more` says how many were left out.
pub const MAX_IDS_PER_EVENT: usize = 200;

/// One change notice.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedEvent {
    /// Commit records, settings or calculated priorities changed: `[repo, hash]` pairs.
    CommitsChanged {
        commits: Vec<(String, String)>,
        more: usize,
    },
    BranchesChanged {
        branches: Vec<(String, String)>,
    },
    /// States, priorities or counters of definitions changed.
    TestsChanged {
        hashes: Vec<String>,
        more: usize,
    },
    RunChanged {
        run_id: String,
        test_hash: String,
        machine_id: String,
        state: RunState,
    },
    /// A worker must stop this run.
    RunCancelled {
        run_id: String,
        machine_id: String,
        reason: String,
    },
    MachinesChanged {
        machine_ids: Vec<String>,
    },
    DeploymentsChanged {
        deployment_ids: Vec<String>,
    },
    /// Runnable work appeared: idle workers should ask again; pools may boot machines.
    WorkAvailable,
}

fn capped<T: Clone>(items: impl ExactSizeIterator<Item = T>) -> (Vec<T>, usize) {
    let total = items.len();
    let list: Vec<T> = items.take(MAX_IDS_PER_EVENT).collect();
    let more = total - list.len();
    (list, more)
}

/// The events describing `changes`; `run_info` looks up (test hash, machine, state) of a run.
pub fn events_for(
    changes: &Changes,
    run_info: impl Fn(&str) -> Option<(String, String, RunState)>,
) -> Vec<FeedEvent> {
    let mut events = Vec::new();
    let mut commits: std::collections::BTreeSet<&(String, String)> =
        changes.commits.iter().collect();
    commits.extend(changes.commit_settings.iter());
    commits.extend(changes.commit_priorities.iter());
    if !commits.is_empty() {
        let (commits, more) = capped(commits.into_iter().cloned());
        events.push(FeedEvent::CommitsChanged { commits, more });
    }
    let mut branches: Vec<(String, String)> = changes.branches.iter().cloned().collect();
    branches.extend(changes.removed_branches.iter().cloned());
    if !branches.is_empty() {
        events.push(FeedEvent::BranchesChanged { branches });
    }
    let extra_new: Vec<&String> = changes
        .new_tests
        .iter()
        .filter(|hash| !changes.test_states.contains(*hash))
        .collect();
    let total = changes.test_states.len() + extra_new.len();
    if total > 0 {
        let hashes: Vec<String> = changes
            .test_states
            .iter()
            .chain(extra_new)
            .take(MAX_IDS_PER_EVENT)
            .cloned()
            .collect();
        let more = total - hashes.len();
        events.push(FeedEvent::TestsChanged { hashes, more });
    }
    for run_id in changes.runs.iter().take(MAX_IDS_PER_EVENT) {
        if let Some((test_hash, machine_id, state)) = run_info(run_id) {
            events.push(FeedEvent::RunChanged {
                run_id: run_id.clone(),
                test_hash,
                machine_id,
                state,
            });
        }
    }
    for cancellation in &changes.cancellations {
        events.push(FeedEvent::RunCancelled {
            run_id: cancellation.run_id.clone(),
            machine_id: cancellation.machine_id.clone(),
            reason: cancellation.reason.clone(),
        });
    }
    if !changes.machines.is_empty() {
        events.push(FeedEvent::MachinesChanged {
            machine_ids: changes.machines.iter().cloned().collect(),
        });
    }
    if !changes.deployments.is_empty() {
        events.push(FeedEvent::DeploymentsChanged {
            deployment_ids: changes.deployments.iter().cloned().collect(),
        });
    }
    if changes.work_available {
        events.push(FeedEvent::WorkAvailable);
    }
    events
}
