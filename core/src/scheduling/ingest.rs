//! Events from git ingestion: a branch scan (commits with their parse outcome and the new
//! head), branch deletion, orphaned commits, and re-delivered parse outcomes.

use std::collections::HashSet;

use indexmap::IndexMap;

use super::engine::{CommitIdx, Engine};
use super::model::{BranchRecord, CommitInfo, ParseOutcome, ParseRecord, TestRecord};
use crate::protocol::{Millis, SourceCommit};

impl Engine {
    /// A scan of `branch` of `repo` found `head` and these commits (any order; usually the
    /// new ones since the last scan). Creates the branch if needed. When the branch is under
    /// test and its head moved, the head and the newly pushed commits (at most
    /// `max_new_commits_enabled_per_push`) are enabled.
    pub fn ingest_branch_scan(
        &mut self,
        repo: &str,
        branch: &str,
        head: &str,
        commits: Vec<CommitInfo>,
        now: Millis,
    ) {
        self.now = now;
        let new_commits = self.store_commits(repo, commits);
        let key = (repo.to_string(), branch.to_string());
        let record = self
            .branches
            .entry(key.clone())
            .or_insert_with(|| BranchRecord {
                repo: repo.to_string(),
                name: branch.to_string(),
                head: None,
                under_test: false,
                default_runs_desired: 1,
            });
        let old_head = record.head.clone();
        let moved = old_head.as_deref() != Some(head);
        let under_test = record.under_test;
        if moved {
            record.head = Some(head.to_string());
            self.changes.branches.insert(key);
        }
        let head_idx = self.commit_slot(repo, head);
        if moved && under_test {
            let mut to_enable = vec![head_idx];
            if old_head.is_some() {
                to_enable = self.pushed_range(head_idx, &new_commits);
            }
            for idx in to_enable {
                self.raise_user_priority(idx, 1);
            }
        }
        self.recompute_reachability(repo);
        self.hunts_recheck();
        self.settle();
    }

    /// Parse outcomes (or metadata) re-delivered for known commits, e.g. a pending commit
    /// whose missing repo has appeared.
    pub fn update_commits(&mut self, repo: &str, commits: Vec<CommitInfo>, now: Millis) {
        self.now = now;
        self.store_commits(repo, commits);
        self.recompute_reachability(repo);
        self.hunts_recheck();
        self.settle();
    }

    /// The branch is gone: its commits lose their reachability through it (running work of
    /// commits no longer reachable is cancelled; user priorities are kept).
    pub fn branch_deleted(&mut self, repo: &str, branch: &str, now: Millis) {
        self.now = now;
        let key = (repo.to_string(), branch.to_string());
        if self.branches.remove(&key).is_some() {
            self.changes.removed_branches.insert(key);
        }
        self.recompute_reachability(repo);
        self.settle();
    }

    /// Commits git no longer reaches from any branch (force push): re-derive reachability,
    /// which drops their calculated priority to zero and cancels their running work.
    pub fn commits_orphaned(&mut self, repo: &str, _hashes: &[String], now: Millis) {
        self.now = now;
        self.recompute_reachability(repo);
        self.settle();
    }

    /// Stores commit metadata and parse outcomes; returns the commits seen for the first time.
    fn store_commits(&mut self, repo: &str, commits: Vec<CommitInfo>) -> HashSet<CommitIdx> {
        let mut new_commits = HashSet::new();
        for info in commits {
            let idx = self.commit_slot(repo, &info.hash);
            let was_loaded = self.commits[idx].record.parse != ParseRecord::NotLoaded;
            if !was_loaded {
                new_commits.insert(idx);
            }
            let parents: Vec<CommitIdx> = info
                .parents
                .iter()
                .map(|parent| self.commit_slot(repo, parent))
                .collect();
            let (parse, tests) = match info.parse {
                ParseOutcome::NoTests => (ParseRecord::NoTests, IndexMap::new()),
                ParseOutcome::Pending(reason) => (ParseRecord::Pending { reason }, IndexMap::new()),
                ParseOutcome::Untestable(message) => {
                    (ParseRecord::Untestable { message }, IndexMap::new())
                }
                ParseOutcome::Ok(resolved) => {
                    let mut tests = IndexMap::new();
                    for (name, definition) in resolved.definitions {
                        tests.insert(name, definition.hash.clone());
                        self.add_test_record(TestRecord {
                            hash: definition.hash.clone(),
                            source: SourceCommit {
                                repo: repo.to_string(),
                                commit: info.hash.clone(),
                            },
                            definition,
                        });
                    }
                    (ParseRecord::Ok, tests)
                }
            };
            let old_tests = std::mem::take(&mut self.commits[idx].tests);
            for test in &old_tests {
                self.tests[*test].commits.retain(|commit| *commit != idx);
                self.mark_priority(*test);
            }
            let test_indices: Vec<usize> =
                tests.values().map(|hash| self.test_slot(hash)).collect();
            for test in &test_indices {
                self.tests[*test].commits.push(idx);
                self.mark_priority(*test);
            }
            let commit = &mut self.commits[idx];
            commit.parents = parents;
            commit.tests = test_indices;
            commit.record.parents = info.parents;
            commit.record.author = info.author;
            commit.record.timestamp = info.timestamp;
            commit.record.subject = info.subject;
            commit.record.parse = parse;
            commit.record.tests = tests;
            self.changes
                .commits
                .insert((repo.to_string(), commit.record.hash.clone()));
        }
        new_commits
    }

    /// The head plus its ancestors that are new in this scan, newest first, capped.
    fn pushed_range(&self, head: CommitIdx, new_commits: &HashSet<CommitIdx>) -> Vec<CommitIdx> {
        let cap = self.config.max_new_commits_enabled_per_push.max(1);
        let mut out = vec![head];
        let mut seen: HashSet<CommitIdx> = HashSet::from([head]);
        let mut frontier = std::collections::VecDeque::from([head]);
        while let Some(idx) = frontier.pop_front() {
            for parent in &self.commits[idx].parents {
                if out.len() >= cap {
                    return out;
                }
                if new_commits.contains(parent) && seen.insert(*parent) {
                    out.push(*parent);
                    frontier.push_back(*parent);
                }
            }
        }
        out
    }

    pub(crate) fn raise_user_priority(&mut self, idx: CommitIdx, priority: u32) {
        if self.commits[idx].settings.user_priority < priority {
            self.set_user_priority_idx(idx, priority);
        }
    }

    pub(crate) fn set_user_priority_idx(&mut self, idx: CommitIdx, priority: u32) {
        let commit = &mut self.commits[idx];
        if commit.settings.user_priority == priority {
            return;
        }
        commit.settings.user_priority = priority;
        self.changes
            .commit_settings
            .insert((commit.record.repo.clone(), commit.record.hash.clone()));
        self.changes.settings = true;
        self.refresh_commit_priority(idx);
    }
}
