//! The scheduler's state in Redis: facts only (ingested commits, definitions, user settings,
//! runs, machines, deployments); derived values (test states, priorities of definitions,
//! counters) are recomputed in memory at load, so they cannot drift from the runs.
//!
//! # Key layout
//!
//! | key | type | field → value |
//! |---|---|---|
//! | `tl:meta` | string | `"1"` once the store holds state (absent = empty Redis → rebuild) |
//! | `tl:commits` | hash | `repo\nhash` → `CommitRecord` JSON (metadata, parse outcome, name → test hash) |
//! | `tl:commit_settings` | hash | `repo\nhash` → `CommitSettings` JSON (user priority, runs desired per test) |
//! | `tl:commit_priority` | hash | `repo\nhash` → calculated priority (derived; for other readers) |
//! | `tl:branches` | hash | `repo\nbranch` → `BranchRecord` JSON (head, under test, default runs desired) |
//! | `tl:tests` | hash | test hash → `TestRecord` JSON (resolved definition, declaring commit) |
//! | `tl:runs` | hash | run id → `RunRecord` JSON (state, times, artifacts, result, cases) |
//! | `tl:machines` | hash | machine id → `MachineRecord` JSON |
//! | `tl:deployments` | hash | deployment id → `DeploymentRecord` JSON |
//! | `tl:next_id` | string | next run/deployment sequence number |
//! | `tl:feed` | stream | change feed, field `e` = `FeedEvent` JSON, trimmed to ~10,000 entries |
//!
//! Every scheduler step is written with one `MULTI`/`EXEC` transaction (state writes and
//! feed entries together), issued by the single writer that owns the in-memory engine, so
//! concurrent events are serialized and no update is lost or half-applied.

pub mod keys;

use std::collections::HashMap;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::de::DeserializeOwned;
use test_looper_core::scheduling::{Changes, Engine, Snapshot};
use thiserror::Error;

use crate::scheduler::feed::FeedEvent;

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

fn decode_all<T: DeserializeOwned>(
    key: &'static str,
    entries: HashMap<String, String>,
) -> Result<Vec<(String, T)>, StateError> {
    entries
        .into_iter()
        .map(|(field, value)| {
            serde_json::from_str(&value)
                .map(|decoded| (field.clone(), decoded))
                .map_err(|source| StateError::Corrupt { key, field, source })
        })
        .collect()
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
        let mut connection = self.connection.clone();
        Ok(connection.exists(keys::META).await?)
    }

    /// Everything stored, as a snapshot to build the engine from.
    pub async fn load(&self) -> Result<Snapshot, StateError> {
        let mut connection = self.connection.clone();
        let mut snapshot = Snapshot::default();
        let commits: HashMap<String, String> = connection.hgetall(keys::COMMITS).await?;
        snapshot.commits = decode_all(keys::COMMITS, commits)?
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        let settings: HashMap<String, String> = connection.hgetall(keys::COMMIT_SETTINGS).await?;
        snapshot.commit_settings = decode_all(keys::COMMIT_SETTINGS, settings)?
            .into_iter()
            .filter_map(|(field, value)| keys::split_pair_field(&field).map(|pair| (pair, value)))
            .collect();
        let branches: HashMap<String, String> = connection.hgetall(keys::BRANCHES).await?;
        snapshot.branches = decode_all(keys::BRANCHES, branches)?
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        let tests: HashMap<String, String> = connection.hgetall(keys::TESTS).await?;
        snapshot.tests = decode_all(keys::TESTS, tests)?
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        let runs: HashMap<String, String> = connection.hgetall(keys::RUNS).await?;
        snapshot.runs = decode_all(keys::RUNS, runs)?
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        let machines: HashMap<String, String> = connection.hgetall(keys::MACHINES).await?;
        snapshot.machines = decode_all(keys::MACHINES, machines)?
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        let deployments: HashMap<String, String> = connection.hgetall(keys::DEPLOYMENTS).await?;
        snapshot.deployments = decode_all(keys::DEPLOYMENTS, deployments)?
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        let next_id: Option<u64> = connection.get(keys::NEXT_ID).await?;
        snapshot.next_id = next_id.unwrap_or(1);
        Ok(snapshot)
    }

    /// Writes what `changes` lists (read from `engine`) plus the feed events, atomically.
    pub async fn persist(
        &self,
        engine: &Engine,
        changes: &Changes,
        events: &[FeedEvent],
    ) -> Result<(), StateError> {
        let commands = Self::prepare(engine, changes, events)?;
        self.execute(commands).await
    }

    /// Runs commands (of one or several steps) in one `MULTI`/`EXEC` transaction.
    pub async fn execute(&self, commands: Vec<redis::Cmd>) -> Result<(), StateError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for command in commands {
            pipe.add_command(command).ignore();
        }
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
        pipe.set(keys::META, "1").ignore();
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

    /// Deletes every scheduler key (tests and the "flush" admin action).
    pub async fn wipe(&self) -> Result<(), StateError> {
        let mut connection = self.connection.clone();
        let all = [
            keys::META,
            keys::COMMITS,
            keys::COMMIT_SETTINGS,
            keys::COMMIT_PRIORITY,
            keys::BRANCHES,
            keys::TESTS,
            keys::RUNS,
            keys::MACHINES,
            keys::DEPLOYMENTS,
            keys::NEXT_ID,
            keys::FEED,
        ];
        connection.del::<_, ()>(&all[..]).await?;
        Ok(())
    }
}

fn hset_chunks(pipe: &mut redis::Pipeline, key: &str, fields: &[(String, String)]) {
    for chunk in fields.chunks(1000) {
        pipe.hset_multiple(key, chunk).ignore();
    }
}
