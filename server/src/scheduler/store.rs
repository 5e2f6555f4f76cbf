//! The scheduler's state in Redis: facts only (ingested commits, definitions, user settings,
//! runs, machines, deployments); derived values (test states, priorities of definitions,
//! counters) are recomputed in memory at load, so they cannot drift from the runs.
//!
//! # Key layout
//!
//! | key | type | field → value |
//! |---|---|---|
//! | `tl:meta` | string | the epoch of the server life that owns the state (absent = empty Redis → rebuild) |
//! | `tl:quarantine` | hash | `key\nfield` → a stored value that could not be decoded at load (kept for inspection) |
//! | `tl:commits` | hash | `repo\nhash` → `CommitRecord` JSON (metadata, parse outcome, name → test hash) |
//! | `tl:commit_settings` | hash | `repo\nhash` → `CommitSettings` JSON (user priority, runs desired per test) |
//! | `tl:commit_priority` | hash | `repo\nhash` → calculated priority (derived; for other readers) |
//! | `tl:branches` | hash | `repo\nbranch` → `BranchRecord` JSON (head, under test, default runs desired) |
//! | `tl:tests` | hash | test hash → `TestRecord` JSON (resolved definition, declaring commit) |
//! | `tl:runs` | hash | run id → `RunRecord` JSON (state, times, artifacts, result, cases) |
//! | `tl:machines` | hash | machine id → `MachineRecord` JSON |
//! | `tl:deployments` | hash | deployment id → `DeploymentRecord` JSON |
//! | `tl:hunts` | hash | hunt id → `HuntRecord` JSON (flake hunts, running and ended) |
//! | `tl:quarantined_tests` | hash | `repo\ntest` → `QuarantineEntry` JSON (tests in quarantine) |
//! | `tl:quarantine_log` | list | `QuarantineEvent` JSON, oldest first, trimmed to the newest 2,000 |
//! | `tl:next_id` | string | next run/deployment sequence number |
//! | `tl:feed` | stream | change feed, field `e` = `FeedEvent` JSON, trimmed to ~10,000 entries |
//!
//! Every scheduler step is written with one `MULTI`/`EXEC` transaction (state writes and
//! feed entries together), issued by the single writer that owns the in-memory engine, so
//! concurrent events are serialized and no update is lost or half-applied.
//!
//! # Detecting a lost store (review M1)
//!
//! `tl:meta` holds a random *epoch*, written only when a server life takes the store over
//! ([`RedisState::claim`]) or rewrites it whole ([`RedisState::write_everything`]), never by
//! a step. Every step's transaction reads it back first ([`RedisState::execute`]), in the
//! same round trip: a flushed, restarted-empty or replaced Redis answers with no epoch or
//! another one, and the scheduler rewrites its whole state instead of building on a partial
//! store. A Redis that lost its state is therefore never mistaken for a complete one, even
//! across a server restart: with no epoch, the next start rebuilds from the durable records.

use std::collections::HashMap;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::de::DeserializeOwned;
use test_looper_core::scheduling::{Changes, Engine, Snapshot};
use thiserror::Error;

use crate::scheduler::feed::FeedEvent;
use crate::scheduler::keys;

/// A failure reading or writing the Redis state.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("corrupt value in {key} field {field:?}: {source}")]
    Corrupt {
        key: &'static str,
        field: String,
        source: serde_json::Error,
    },
    #[error("cannot encode state: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Reads and writes the scheduler's facts in Redis.
#[derive(Clone)]
pub struct RedisState {
    connection: ConnectionManager,
}

/// What a step's transaction found in `tl:meta` before it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCheck {
    /// The epoch of this server life: the store held the whole state.
    Intact,
    /// No epoch, or another one: the store lost (or was given) another state before this
    /// step, which was written into it all the same and must be followed by a full rewrite.
    Lost,
}

/// A new random epoch for a server life.
pub fn new_epoch() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The values of one hash that decode; the others are moved aside (review L9) so that one
/// corrupt record cannot keep the scheduler from starting.
fn decode_all<T: DeserializeOwned>(
    key: &'static str,
    entries: HashMap<String, String>,
    quarantine: &mut Vec<(String, String)>,
) -> Vec<(String, T)> {
    let mut decoded = Vec::with_capacity(entries.len());
    for (field, value) in entries {
        match serde_json::from_str(&value) {
            Ok(record) => decoded.push((field, record)),
            Err(err) => {
                tracing::error!(key, %field, %err, "undecodable record moved to {}", keys::QUARANTINE);
                quarantine.push((keys::pair_field(key, &field), value));
            }
        }
    }
    decoded
}

impl RedisState {
    pub async fn connect(client: &redis::Client) -> Result<RedisState, StateError> {
        // Large steps (a first scan of a long history) write hundreds of megabytes in one
        // transaction: allow them time.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
            .set_response_timeout(Some(std::time::Duration::from_secs(120)));
        Ok(RedisState {
            connection: client.get_connection_manager_with_config(config).await?,
        })
    }

    /// `false` when Redis holds no scheduler state (first start, or flushed).
    pub async fn is_initialized(&self) -> Result<bool, StateError> {
        Ok(self.epoch().await?.is_some())
    }

    /// The epoch in `tl:meta` (see the module docs).
    pub async fn epoch(&self) -> Result<Option<String>, StateError> {
        let mut connection = self.connection.clone();
        Ok(connection.get(keys::META).await?)
    }

    /// Takes the stored state over for the server life `epoch` (after loading it).
    pub async fn claim(&self, epoch: &str) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        connection.set::<_, _, ()>(keys::META, epoch).await?;
        Ok(())
    }

    /// Everything stored, as a snapshot to build the engine from. Records that do not
    /// decode are moved to `tl:quarantine` and left out (their count is returned).
    pub async fn load(&self) -> Result<(Snapshot, usize), StateError> {
        let mut connection = self.connection.clone();
        let mut snapshot = Snapshot::default();
        let mut quarantine = Vec::new();
        let commits: HashMap<String, String> = connection.hgetall(keys::COMMITS).await?;
        snapshot.commits = decode_all(keys::COMMITS, commits, &mut quarantine)
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        let settings: HashMap<String, String> = connection.hgetall(keys::COMMIT_SETTINGS).await?;
        snapshot.commit_settings = decode_all(keys::COMMIT_SETTINGS, settings, &mut quarantine)
            .into_iter()
            .filter_map(|(field, value)| keys::split_pair_field(&field).map(|pair| (pair, value)))
            .collect();
        let branches: HashMap<String, String> = connection.hgetall(keys::BRANCHES).await?;
        snapshot.branches = decode_all(keys::BRANCHES, branches, &mut quarantine)
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        let tests: HashMap<String, String> = connection.hgetall(keys::TESTS).await?;
        snapshot.tests = decode_all(keys::TESTS, tests, &mut quarantine)
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        let runs: HashMap<String, String> = connection.hgetall(keys::RUNS).await?;
        snapshot.runs = decode_all(keys::RUNS, runs, &mut quarantine)
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        let machines: HashMap<String, String> = connection.hgetall(keys::MACHINES).await?;
        snapshot.machines = decode_all(keys::MACHINES, machines, &mut quarantine)
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        let deployments: HashMap<String, String> = connection.hgetall(keys::DEPLOYMENTS).await?;
        snapshot.deployments = decode_all(keys::DEPLOYMENTS, deployments, &mut quarantine)
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        let hunts: HashMap<String, String> = connection.hgetall(keys::HUNTS).await?;
        snapshot.hunts = decode_all(keys::HUNTS, hunts, &mut quarantine)
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        let quarantined: HashMap<String, String> =
            connection.hgetall(keys::QUARANTINED_TESTS).await?;
        snapshot.quarantine = decode_all(keys::QUARANTINED_TESTS, quarantined, &mut quarantine)
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        let log: Vec<String> = connection.lrange(keys::QUARANTINE_LOG, 0, -1).await?;
        snapshot.quarantine_log = log
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let next_id: Option<u64> = connection.get(keys::NEXT_ID).await?;
        snapshot.next_id = next_id.unwrap_or(1);
        let quarantined = quarantine.len();
        if quarantined > 0 {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (field, _) in &quarantine {
                if let Some((key, field)) = keys::split_pair_field(field) {
                    pipe.hdel(key, field).ignore();
                }
            }
            hset_chunks(&mut pipe, keys::QUARANTINE, &quarantine);
            pipe.query_async::<()>(&mut connection).await?;
        }
        Ok((snapshot, quarantined))
    }

    /// Runs commands (of one or several steps) in one `MULTI`/`EXEC` transaction that first
    /// reads the epoch back, and says whether the store still held this life's state.
    pub async fn execute(
        &self,
        commands: Vec<redis::Cmd>,
        epoch: &str,
    ) -> Result<StoreCheck, StateError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.get(keys::META);
        for command in commands {
            pipe.add_command(command).ignore();
        }
        let mut connection = self.connection.clone();
        let (stored,): (Option<String>,) = pipe.query_async(&mut connection).await?;
        Ok(if stored.as_deref() == Some(epoch) {
            StoreCheck::Intact
        } else {
            StoreCheck::Lost
        })
    }

    /// Replaces whatever the store holds with the engine's whole state and the epoch `epoch`,
    /// in one transaction (a rebuild at start, or a store found lost while running).
    pub async fn write_everything(&self, engine: &Engine, epoch: &str) -> Result<(), StateError> {
        let commands = Self::prepare(engine, &engine.everything(), &[])?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.del(&SCHEDULER_KEYS[..]).ignore();
        for command in commands {
            pipe.add_command(command).ignore();
        }
        pipe.set(keys::META, epoch).ignore();
        let mut connection = self.connection.clone();
        pipe.query_async::<()>(&mut connection).await?;
        Ok(())
    }

    /// The commands that write what `changes` lists (read from `engine`) plus the feed
    /// events. Built while the engine is locked; executed later with [`Self::execute`].
    pub fn prepare(
        engine: &Engine,
        changes: &Changes,
        events: &[FeedEvent],
    ) -> Result<Vec<redis::Cmd>, StateError> {
        let mut pipe = redis::pipe();
        pipe.set(keys::NEXT_ID, engine.next_id()).ignore();

        let mut commit_fields = Vec::new();
        let mut priority_fields = Vec::new();
        let mut settings_fields = Vec::new();
        let mut settings_removed = Vec::new();
        let touched = changes
            .commits
            .iter()
            .chain(&changes.commit_priorities)
            .chain(&changes.commit_settings);
        let mut seen = std::collections::HashSet::new();
        for (repo, hash) in touched {
            if !seen.insert((repo, hash)) {
                continue;
            }
            let Some((record, settings, priority)) = engine.commit_record(repo, hash) else {
                continue;
            };
            let field = keys::pair_field(repo, hash);
            if changes.commits.contains(&(repo.clone(), hash.clone())) {
                commit_fields.push((field.clone(), serde_json::to_string(record)?));
            }
            if changes
                .commit_priorities
                .contains(&(repo.clone(), hash.clone()))
            {
                priority_fields.push((field.clone(), priority.to_string()));
            }
            if changes
                .commit_settings
                .contains(&(repo.clone(), hash.clone()))
            {
                if *settings == Default::default() {
                    settings_removed.push(field);
                } else {
                    settings_fields.push((field, serde_json::to_string(settings)?));
                }
            }
        }
        hset_chunks(&mut pipe, keys::COMMITS, &commit_fields);
        hset_chunks(&mut pipe, keys::COMMIT_PRIORITY, &priority_fields);
        hset_chunks(&mut pipe, keys::COMMIT_SETTINGS, &settings_fields);
        for chunk in settings_removed.chunks(1000) {
            pipe.hdel(keys::COMMIT_SETTINGS, chunk).ignore();
        }

        let mut branch_fields = Vec::new();
        for (repo, name) in &changes.branches {
            if let Some(branch) = engine.branch(repo, name) {
                branch_fields.push((keys::pair_field(repo, name), serde_json::to_string(branch)?));
            }
        }
        hset_chunks(&mut pipe, keys::BRANCHES, &branch_fields);
        for (repo, name) in &changes.removed_branches {
            if engine.branch(repo, name).is_none() {
                pipe.hdel(keys::BRANCHES, keys::pair_field(repo, name))
                    .ignore();
            }
        }

        let mut test_fields = Vec::new();
        for hash in &changes.new_tests {
            if let Some(record) = engine.test_record(hash) {
                test_fields.push((hash.clone(), serde_json::to_string(record)?));
            }
        }
        hset_chunks(&mut pipe, keys::TESTS, &test_fields);

        let mut run_fields = Vec::new();
        for run_id in &changes.runs {
            if let Some(run) = engine.run(run_id) {
                run_fields.push((run_id.clone(), serde_json::to_string(run)?));
            }
        }
        hset_chunks(&mut pipe, keys::RUNS, &run_fields);
        // Runs the engine no longer has were forgotten by retention.
        let forgotten_runs: Vec<&String> = changes
            .runs
            .iter()
            .filter(|run_id| engine.run(run_id).is_none())
            .collect();
        for chunk in forgotten_runs.chunks(1000) {
            pipe.hdel(keys::RUNS, chunk).ignore();
        }

        for machine_id in &changes.machines {
            match engine.machine(machine_id) {
                Some(machine) => {
                    pipe.hset(keys::MACHINES, machine_id, serde_json::to_string(machine)?)
                        .ignore();
                }
                None => {
                    pipe.hdel(keys::MACHINES, machine_id).ignore();
                }
            }
        }
        for deployment_id in &changes.deployments {
            if let Some(deployment) = engine.deployment(deployment_id) {
                pipe.hset(
                    keys::DEPLOYMENTS,
                    deployment_id,
                    serde_json::to_string(deployment)?,
                )
                .ignore();
            } else {
                // Forgotten by retention.
                pipe.hdel(keys::DEPLOYMENTS, deployment_id).ignore();
            }
        }
        for hunt_id in &changes.hunts {
            if let Some(hunt) = engine.hunt(hunt_id) {
                pipe.hset(keys::HUNTS, hunt_id, serde_json::to_string(hunt)?)
                    .ignore();
            }
        }
        for (repo, test) in &changes.quarantine {
            let field = keys::pair_field(repo, test);
            match engine
                .quarantined()
                .into_iter()
                .find(|entry| entry.repo == *repo && entry.test == *test)
            {
                Some(entry) => {
                    pipe.hset(
                        keys::QUARANTINED_TESTS,
                        field,
                        serde_json::to_string(entry)?,
                    )
                    .ignore();
                }
                None => {
                    pipe.hdel(keys::QUARANTINED_TESTS, field).ignore();
                }
            }
        }
        if !changes.quarantine_events.is_empty() {
            let lines = changes
                .quarantine_events
                .iter()
                .map(serde_json::to_string)
                .collect::<Result<Vec<_>, _>>()?;
            pipe.rpush(keys::QUARANTINE_LOG, lines).ignore();
            pipe.ltrim(
                keys::QUARANTINE_LOG,
                -(test_looper_core::scheduling::MAX_QUARANTINE_LOG as isize),
                -1,
            )
            .ignore();
        }
        for event in events {
            pipe.cmd("XADD")
                .arg(keys::FEED)
                .arg("MAXLEN")
                .arg("~")
                .arg(keys::FEED_MAX_LEN)
                .arg("*")
                .arg("e")
                .arg(serde_json::to_string(event)?)
                .ignore();
        }
        Ok(pipe.cmd_iter().cloned().collect())
    }
}

/// Every key of the scheduler's state (the change feed included, the quarantine not).
const SCHEDULER_KEYS: [&str; 14] = [
    keys::META,
    keys::COMMITS,
    keys::COMMIT_SETTINGS,
    keys::COMMIT_PRIORITY,
    keys::BRANCHES,
    keys::TESTS,
    keys::RUNS,
    keys::MACHINES,
    keys::DEPLOYMENTS,
    keys::HUNTS,
    keys::QUARANTINED_TESTS,
    keys::QUARANTINE_LOG,
    keys::NEXT_ID,
    keys::FEED,
];

fn hset_chunks(pipe: &mut redis::Pipeline, key: &str, fields: &[(String, String)]) {
    for chunk in fields.chunks(1000) {
        pipe.hset_multiple(key, chunk).ignore();
    }
}
