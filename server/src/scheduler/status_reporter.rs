//! Commit statuses from the scheduler's state: a task that follows the scheduler's change
//! feed and posts `pending` / `success` / `failure` (with a link to the commit's page on
//! this server) whenever the summary of an enabled commit changes. Nothing is posted when
//! the config's `post_commit_statuses` is off.
//!
//! The summary ([`summarize`]) counts the commit's builds and tests (deployments only run on
//! request): any failed run or failed dependency → failure once nothing is left to run
//! (failures of quarantined tests excepted);
//! everything finished and green → success; otherwise pending.

use super::feed::FeedEvent;
use super::Scheduler;
use crate::scm::{CommitState, CommitStatus, ScmClient};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use test_looper_core::definitions::DefinitionKind;
use test_looper_core::scheduling::{CommitView, TestState, TestView};
use tokio::sync::broadcast::error::RecvError;

/// Commits followed at most (the most recently changed ones).
const MAX_WATCHED_COMMITS: usize = 500;

/// The status a commit should show, or `None` when it has nothing to report (no tests,
/// not enabled).
pub fn summarize(view: &CommitView, target_url: &str) -> Option<CommitStatus> {
    let tests: Vec<_> = view
        .tests
        .iter()
        .filter(|t| t.kind != Some(DefinitionKind::Deployment))
        .collect();
    if tests.is_empty() || (view.priority == 0 && tests.iter().all(|t| t.counts.runs == 0)) {
        return None;
    }
    let finished = |t: &TestView| {
        t.counts.running == 0
            && matches!(
                t.state,
                TestState::NoMoreTests | TestState::DependencyFailed { .. }
            )
    };
    // A quarantined test still runs (and must finish), but its failures do not count.
    let failed = tests
        .iter()
        .filter(|t| !t.quarantined)
        .filter(|t| t.counts.failures > 0 || matches!(t.state, TestState::DependencyFailed { .. }))
        .count();
    let done = tests.iter().filter(|t| finished(t)).count();
    let total = tests.len();
    let (state, description) = if done == total {
        if failed > 0 {
            (
                CommitState::Failure,
                format!("{failed} of {total} builds and tests failed"),
            )
        } else {
            (
                CommitState::Success,
                format!("all {total} builds and tests passed"),
            )
        }
    } else {
        (
            CommitState::Pending,
            format!("{done} of {total} builds and tests finished, {failed} failing"),
        )
    };
    Some(CommitStatus {
        state,
        target_url: target_url.to_owned(),
        description,
    })
}

/// Follows the scheduler feed and posts statuses; returns at once when statuses are off.
pub fn spawn_status_reporter(
    scm: Arc<ScmClient>,
    scheduler: Arc<Scheduler>,
    server_base_url: String,
) -> Option<tokio::task::JoinHandle<()>> {
    if !scm.posts_statuses() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut feed = scheduler.subscribe();
        let mut watched: Vec<(String, String)> = Vec::new();
        let mut posted: HashMap<(String, String), CommitStatus> = HashMap::new();
        loop {
            let commits: BTreeSet<(String, String)> = match feed.recv().await {
                Ok(FeedEvent::CommitsChanged { commits, .. }) => {
                    for commit in &commits {
                        if !watched.contains(commit) {
                            watched.push(commit.clone());
                        }
                    }
                    if watched.len() > MAX_WATCHED_COMMITS {
                        let excess = watched.len() - MAX_WATCHED_COMMITS;
                        for gone in watched.drain(..excess) {
                            posted.remove(&gone);
                        }
                    }
                    commits.into_iter().collect()
                }
                Ok(FeedEvent::TestsChanged { .. }) | Ok(FeedEvent::RunChanged { .. }) => {
                    watched.iter().cloned().collect()
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => watched.iter().cloned().collect(),
                Err(RecvError::Closed) => return,
            };
            for (repo, hash) in commits {
                let url = format!(
                    "{}/repos/{repo}/-/commits/{hash}",
                    server_base_url.trim_end_matches('/')
                );
                let Some(view) = scheduler
                    .read(|engine| engine.commit_view(&repo, &hash))
                    .await
                else {
                    continue;
                };
                let Some(status) = summarize(&view, &url) else {
                    continue;
                };
                let key = (repo.clone(), hash.clone());
                if posted.get(&key) == Some(&status) {
                    continue;
                }
                match scm.post_status(&repo, &hash, &status).await {
                    Ok(_) => {
                        posted.insert(key, status);
                    }
                    Err(error) => tracing::warn!(%error, repo, hash, "cannot post a commit status"),
                }
            }
        }
    }))
}
