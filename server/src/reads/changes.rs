//! The scheduler's change feed ([`FeedEvent`]s) as the UI's [`Change`]s: commits and
//! branches by repo, definition counters and runs by the repo of the commit that declared
//! them, machines as such. A subscriber that falls behind gets [`Change::Everything`].
//! Subscribing before the scheduler has started waits for it.

use crate::reads::model::{Change, ChangeStream};
use crate::scheduler::feed::FeedEvent;
use crate::scheduler::Scheduler;
use crate::AppContext;
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use test_looper_core::scheduling::Engine;
use tokio::sync::broadcast::{self, error::RecvError};

/// How often a subscriber checks whether the scheduler has started.
const START_POLL: Duration = Duration::from_millis(500);

enum Feed {
    Starting(Arc<AppContext>),
    Running {
        scheduler: Arc<Scheduler>,
        events: broadcast::Receiver<FeedEvent>,
        ready: VecDeque<Change>,
    },
}

/// A stream of the UI changes of `context`'s scheduler (once it runs).
pub fn subscribe(context: Arc<AppContext>) -> ChangeStream {
    futures_util::stream::unfold(Feed::Starting(context), |mut feed| async move {
        loop {
            match feed {
                Feed::Starting(context) => match context.scheduler.get() {
                    Some(scheduler) => {
                        feed = Feed::Running {
                            events: scheduler.subscribe(),
                            scheduler: scheduler.clone(),
                            ready: VecDeque::new(),
                        }
                    }
                    None => {
                        tokio::time::sleep(START_POLL).await;
                        feed = Feed::Starting(context);
                    }
                },
                Feed::Running {
                    scheduler,
                    mut events,
                    mut ready,
                } => {
                    if let Some(change) = ready.pop_front() {
                        return Some((
                            change,
                            Feed::Running {
                                scheduler,
                                events,
                                ready,
                            },
                        ));
                    }
                    match events.recv().await {
                        Ok(event) => {
                            let changes =
                                scheduler.read(|engine| changes_for(engine, &event)).await;
                            ready.extend(changes);
                        }
                        Err(RecvError::Lagged(_)) => ready.push_back(Change::Everything),
                        Err(RecvError::Closed) => return None,
                    }
                    feed = Feed::Running {
                        scheduler,
                        events,
                        ready,
                    };
                }
            }
        }
    })
    .boxed()
}

/// The repo of the commit that declared a definition.
fn repo_of(engine: &Engine, test_hash: &str) -> Option<String> {
    engine
        .test_record(test_hash)
        .map(|record| record.source.repo.clone())
}

/// The UI changes one feed event stands for.
pub fn changes_for(engine: &Engine, event: &FeedEvent) -> Vec<Change> {
    match event {
        FeedEvent::CommitsChanged { commits, more } => {
            let mut by_repo: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for (repo, hash) in commits {
                by_repo.entry(repo).or_default().push(hash.clone());
            }
            let mut changes: Vec<Change> = by_repo
                .into_iter()
                .map(|(repo, commits)| Change::Commits {
                    repo: repo.to_string(),
                    // Some were left out: name none, so pages refresh for any commit.
                    commits: if *more > 0 { Vec::new() } else { commits },
                })
                .collect();
            if *more > 0 && changes.is_empty() {
                changes.push(Change::Everything);
            }
            changes
        }
        FeedEvent::BranchesChanged { branches } => {
            let repos: BTreeSet<&str> = branches.iter().map(|(repo, _)| repo.as_str()).collect();
            repos
                .into_iter()
                .map(|repo| Change::Branches {
                    repo: repo.to_string(),
                })
                .collect()
        }
        FeedEvent::TestsChanged { hashes, more } => {
            if *more > 0 {
                return vec![Change::Everything];
            }
            let repos: BTreeSet<String> =
                hashes.iter().filter_map(|h| repo_of(engine, h)).collect();
            repos
                .into_iter()
                .map(|repo| Change::Commits {
                    repo,
                    commits: Vec::new(),
                })
                .collect()
        }
        FeedEvent::RunChanged { test_hash, .. } => repo_of(engine, test_hash)
            .map(|repo| Change::Commits {
                repo,
                commits: Vec::new(),
            })
            .into_iter()
            .collect(),
        FeedEvent::MachinesChanged { .. } => vec![Change::Machines],
        FeedEvent::DeploymentsChanged { .. } => vec![Change::Deployments],
        FeedEvent::RunCancelled { .. } | FeedEvent::WorkAvailable => Vec::new(),
    }
}
