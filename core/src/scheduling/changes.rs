//! What one batch of events changed: the entities the server must persist, the runs that
//! need a durable result record, and the notices to publish (cancellations, new work).

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

/// A run the worker must stop.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Cancellation {
    pub run_id: String,
    pub machine_id: String,
    pub reason: String,
}

/// Keys of everything touched since the last [`super::Engine::take_changes`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// (repo, hash) of commits whose record (metadata, parse, tests) changed.
    pub commits: BTreeSet<(String, String)>,
    /// (repo, hash) of commits whose user settings changed.
    pub commit_settings: BTreeSet<(String, String)>,
    /// (repo, hash) of commits whose calculated priority changed.
    pub commit_priorities: BTreeSet<(String, String)>,
    /// (repo, name) of branches created or changed.
    pub branches: BTreeSet<(String, String)>,
    /// (repo, name) of branches deleted.
    pub removed_branches: BTreeSet<(String, String)>,
    /// Hashes of definitions first seen.
    pub new_tests: HashSet<String>,
    /// Hashes of definitions whose state, priority or counters changed.
    pub test_states: HashSet<String>,
    /// Run ids whose record changed.
    pub runs: BTreeSet<String>,
    /// Run ids that need their durable result record (re)written.
    pub result_records: BTreeSet<String>,
    pub machines: BTreeSet<String>,
    pub deployments: BTreeSet<String>,
    pub cancellations: Vec<Cancellation>,
    /// Ids of flake hunts created or changed.
    pub hunts: BTreeSet<String>,
    /// (repo, test) of quarantine entries added or removed.
    pub quarantine: BTreeSet<(String, String)>,
    /// Quarantine log entries to append.
    pub quarantine_events: Vec<super::quarantine::QuarantineEvent>,
    /// User settings changed (the durable settings document must be rewritten).
    pub settings: bool,
    /// Runnable work may have appeared: idle workers should ask again.
    pub work_available: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}
