//! The bridge from git scans to the scheduler's ingest API: every [`RepoScanned`] becomes
//! `branch_deleted`, `ingest_branch_scan` (one call per new or moved branch; the new
//! commits go with the first) and `commits_orphaned` calls. Commits whose parse is
//! *pending* on another repo are parsed again whenever that repo is scanned, and their new
//! outcome is delivered with `update_commits`.
//!
//! [`spawn_scheduler_feed`] subscribes, asks the git service for a full resync (so a fresh
//! or restarted scheduler sees every branch and reachable commit once) and then forwards
//! changes as they come, within the same scheduler step as the scan that found them.

use crate::git::scanner::{
    pending_reason, CommitInfo as ScannedCommit, ParseOutcome as ScannedParse, RepoScanned,
};
use crate::git::GitService;
use crate::scheduler::{CommitInfo, ParseOutcome, Scheduler};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// The scheduler's view of a scanned commit.
pub fn to_scheduler_commit(commit: ScannedCommit) -> CommitInfo {
    CommitInfo {
        hash: commit.hash,
        parents: commit.parents,
        author: commit.author,
        timestamp: commit.timestamp,
        subject: commit.subject,
        parse: to_scheduler_parse(commit.parse),
    }
}

/// The scheduler's view of a parse outcome.
pub fn to_scheduler_parse(parse: ScannedParse) -> ParseOutcome {
    match parse {
        ScannedParse::NoTests => ParseOutcome::NoTests,
        ScannedParse::Pending { repo, commit } => {
            ParseOutcome::Pending(pending_reason(&repo, commit.as_deref()))
        }
        ScannedParse::Untestable { message, .. } => ParseOutcome::Untestable(message),
        ScannedParse::Ok(resolved) => ParseOutcome::Ok(resolved),
    }
}

/// Forwards scans to `scheduler` until the git service goes away.
pub fn spawn_scheduler_feed(
    git: Arc<GitService>,
    scheduler: Arc<Scheduler>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut events = git.subscribe();
        git.resync();
        let mut feed = Feed::default();
        loop {
            match events.recv().await {
                Ok(event) => feed.forward(&git, &scheduler, &event).await,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "scheduler feed lagged behind git scans; resyncing");
                    feed = Feed::default();
                    git.resync();
                }
                Err(RecvError::Closed) => return,
            }
        }
    })
}

/// What the bridge remembers: branch heads already delivered and pending commits by the
/// repo they wait for.
#[derive(Default)]
struct Feed {
    heads: HashMap<String, BTreeMap<String, String>>,
    /// waited-for repo → (repo, commit) of pending commits.
    pending: HashMap<String, Vec<(String, String)>>,
}

impl Feed {
    async fn forward(&mut self, git: &Arc<GitService>, scheduler: &Scheduler, event: &RepoScanned) {
        let repo = event.repo.as_str();
        for branch in &event.deleted_branches {
            if let Err(error) = scheduler.branch_deleted(repo, branch).await {
                tracing::error!(%error, repo, branch, "scheduler refused a deleted branch");
            }
        }
        for commit in &event.new_commits {
            if let ScannedParse::Pending { repo: waited, .. } = &commit.parse {
                self.pending
                    .entry(waited.clone())
                    .or_default()
                    .push((repo.to_owned(), commit.hash.clone()));
            }
        }
        let known = self.heads.entry(repo.to_owned()).or_default();
        let mut commits: Vec<CommitInfo> = event
            .new_commits
            .iter()
            .cloned()
            .map(to_scheduler_commit)
            .collect();
        for (branch, head) in &event.branches {
            if known.get(branch) == Some(head) && commits.is_empty() {
                continue;
            }
            let batch = std::mem::take(&mut commits);
            if let Err(error) = scheduler
                .ingest_branch_scan(repo, branch, head, batch)
                .await
            {
                tracing::error!(%error, repo, branch, "scheduler refused a branch scan");
            }
            known.insert(branch.clone(), head.clone());
        }
        for branch in &event.deleted_branches {
            known.remove(branch);
        }
        if !event.orphaned_commits.is_empty() {
            if let Err(error) = scheduler
                .commits_orphaned(repo, &event.orphaned_commits)
                .await
            {
                tracing::error!(%error, repo, "scheduler refused orphaned commits");
            }
        }
        self.reparse_waiting_on(git, scheduler, repo).await;
    }

    /// Parses again the commits that were pending on `repo`, now that it was scanned.
    async fn reparse_waiting_on(
        &mut self,
        git: &Arc<GitService>,
        scheduler: &Scheduler,
        repo: &str,
    ) {
        let Some(waiting) = self.pending.remove(repo) else {
            return;
        };
        let git = git.clone();
        let reparsed = tokio::task::spawn_blocking(move || {
            waiting
                .into_iter()
                .map(|(owner, hash)| {
                    let outcome = git.parse_commit(&owner, &hash);
                    let info = git.store().open(&owner).ok().and_then(|g| {
                        let oid = git2::Oid::from_str(&hash).ok()?;
                        crate::git::history::commit_metadata(&g, &owner, oid).ok()
                    });
                    (owner, hash, outcome, info)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut by_repo: HashMap<String, Vec<CommitInfo>> = HashMap::new();
        for (owner, hash, outcome, metadata) in reparsed {
            let (Ok(parse), Some(metadata)) = (outcome, metadata) else {
                continue;
            };
            if let ScannedParse::Pending { repo: waited, .. } = &parse {
                self.pending
                    .entry(waited.clone())
                    .or_default()
                    .push((owner.clone(), hash.clone()));
                if waited == repo {
                    continue;
                }
            }
            by_repo.entry(owner).or_default().push(CommitInfo {
                hash,
                parents: metadata.parents,
                author: metadata.author,
                timestamp: metadata.timestamp,
                subject: metadata.subject,
                parse: to_scheduler_parse(parse),
            });
        }
        for (owner, commits) in by_repo {
            if let Err(error) = scheduler.update_commits(&owner, commits).await {
                tracing::error!(%error, repo = owner, "scheduler refused re-parsed commits");
            }
        }
    }
}
