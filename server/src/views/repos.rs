//! The repos list (each repo with the health of its branches under test) and one repo's
//! branches (under-test flag, commit count, head cell and pass rate).

use crate::reads::model::ReadError;
use crate::views::cells::Cell;
use crate::views::format;
use crate::views::format::short_hash;
use crate::views::paths;
use crate::views::{
    blocking, branches_part, commit_part, group_cell, parses_keep, Reads, Snapshot, Sources,
};
use serde::Serialize;
use std::sync::Arc;

/// Commit counts on the repo page stop here.
const COUNT_CAP: usize = 10_000;

#[derive(Clone, Debug, Serialize)]
pub struct ReposView {
    pub state_wired: bool,
    pub repos: Vec<RepoSummary>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RepoSummary {
    pub name: String,
    pub url: String,
    /// Branches under test with the health of their head commit.
    pub watched: Vec<BranchHealth>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BranchHealth {
    pub name: String,
    pub url: String,
    pub head: String,
    pub head_url: String,
    pub cell: Cell,
}

#[derive(Clone, Debug, Serialize)]
pub struct RepoView {
    pub state_wired: bool,
    pub name: String,
    pub url: String,
    pub branches: Vec<BranchRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BranchRow {
    pub name: String,
    pub url: String,
    pub under_test: bool,
    pub head: String,
    pub head_url: String,
    /// Commits reachable from the head (capped; `commit_count_capped` says so).
    pub commit_count: usize,
    pub commit_count_capped: bool,
    /// The head commit's cell: failed/total runs and the failure rate.
    pub head_cell: Cell,
    /// "97% of 120 runs passed", or empty.
    pub pass_rate: String,
}

impl Sources {
    pub async fn repos(self: &Arc<Self>) -> Result<Arc<Snapshot<ReposView>>, ReadError> {
        let version = self.refs_version(None);
        self.kept_view(&self.coalesced.repos, (), version, || self.repos_now())
            .await
    }

    async fn repos_now(self: &Arc<Self>) -> Result<Arc<Snapshot<ReposView>>, ReadError> {
        let now_ms = format::now_millis();
        let this = self.clone();
        let names = blocking(move || this.git.repos()).await?;
        let mut repos = Vec::with_capacity(names.len());
        let mut parses = Vec::new();
        let mut reads = Vec::new();
        for name in names {
            reads.push(branches_part(&name));
            let flags = self.state.branches(&name).await?;
            let mut watched = Vec::new();
            let watched_names: Vec<String> = flags
                .iter()
                .filter(|(_, f)| f.under_test)
                .map(|(n, _)| n.clone())
                .collect();
            if !watched_names.is_empty() {
                let this = self.clone();
                let repo = name.clone();
                let heads = blocking(move || this.git.branches(&repo)).await?;
                for (branch, head) in heads {
                    if !watched_names.contains(&branch) {
                        continue;
                    }
                    let defs = self.definitions(&name, &head).await?;
                    let hashes = [head.clone()];
                    let states = self.state.commits(&name, &hashes).await?;
                    let cell = group_cell(&defs, states.get(&head), defs.definitions.iter());
                    parses.push(defs.parse.clone());
                    reads.push(commit_part(&name, &head));
                    watched.push(BranchHealth {
                        url: paths::branch_url(&name, &branch),
                        head_url: paths::commit_url(&name, &head),
                        head: short_hash(&head).to_owned(),
                        name: branch,
                        cell,
                    });
                }
            }
            repos.push(RepoSummary {
                url: paths::repo_url(&name),
                name,
                watched,
            });
        }
        let view = ReposView {
            state_wired: self.state.wired(),
            repos,
        };
        let keep = parses_keep(&parses, now_ms);
        Ok(Snapshot::new(view, Reads::Parts(reads), keep))
    }

    pub async fn repo(self: &Arc<Self>, repo: &str) -> Result<Arc<Snapshot<RepoView>>, ReadError> {
        let version = self.refs_version(Some(repo));
        self.kept_view(&self.coalesced.repo, repo.to_owned(), version, || {
            self.repo_now(repo)
        })
        .await
    }

    async fn repo_now(self: &Arc<Self>, repo: &str) -> Result<Arc<Snapshot<RepoView>>, ReadError> {
        let now_ms = format::now_millis();
        let this = self.clone();
        let name = repo.to_owned();
        let branches = blocking(move || {
            let branches = this.git.branches(&name)?;
            branches
                .into_iter()
                .map(|(branch, head)| {
                    let count = this.git.count_commits(&name, &head, COUNT_CAP)?;
                    Ok((branch, head, count))
                })
                .collect::<Result<Vec<_>, ReadError>>()
        })
        .await?;
        let flags = self.state.branches(repo).await?;
        let heads: Vec<String> = branches.iter().map(|(_, h, _)| h.clone()).collect();
        let states = self.state.commits(repo, &heads).await?;
        let mut rows = Vec::with_capacity(branches.len());
        let mut parses = Vec::with_capacity(branches.len());
        let mut reads = vec![branches_part(repo)];
        for (branch, head, count) in branches {
            reads.push(commit_part(repo, &head));
            let defs = self.definitions(repo, &head).await?;
            let cell = group_cell(&defs, states.get(&head), defs.definitions.iter());
            parses.push(defs.parse.clone());
            let pass_rate = match &cell.rate {
                Some(rate) => format!(
                    "{} of {} runs passed",
                    format::percent(1.0 - rate.rate),
                    rate.runs
                ),
                None => String::new(),
            };
            rows.push(BranchRow {
                url: paths::branch_url(repo, &branch),
                under_test: flags.get(&branch).is_some_and(|f| f.under_test),
                head_url: paths::commit_url(repo, &head),
                head: short_hash(&head).to_owned(),
                name: branch,
                commit_count: count,
                commit_count_capped: count >= COUNT_CAP,
                head_cell: cell,
                pass_rate,
            });
        }
        // Branches under test first, then by name.
        rows.sort_by(|a, b| b.under_test.cmp(&a.under_test).then(a.name.cmp(&b.name)));
        let view = RepoView {
            state_wired: self.state.wired(),
            name: repo.to_owned(),
            url: paths::repo_url(repo),
            branches: rows,
        };
        let keep = parses_keep(&parses, now_ms);
        Ok(Snapshot::new(view, Reads::Parts(reads), keep))
    }
}
