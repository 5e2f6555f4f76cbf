//! A branch's commit grid: one row per commit of a history page (hash, subject, author, age,
//! merge graph) with one cell per project or configuration, and the history page itself,
//! which the grid and every test's history plot are built from.

use crate::reads::git::{CommitDefinitions, DefinitionSummary, HistoryPage};
use crate::reads::model::{BranchState, CommitState, ReadError};
use crate::views::cells::{Cell, ParseState};
use crate::views::change_points::{page_changes, PagePoint};
use crate::views::format;
use crate::views::format::elapsed_texts_keep;
use crate::views::format::short_hash;
use crate::views::{
    blocking, branches_part, commit_part, group_cell, parses_keep, CommitStates, Keep, Reads,
    Snapshot, Sources, MAX_PAGE,
};
use crate::views::{merge_graph, paths};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use test_looper_core::definitions::DefinitionKind;

#[derive(Clone, Debug, Serialize)]
pub struct BranchView {
    pub state_wired: bool,
    pub repo: String,
    pub repo_url: String,
    pub branch: String,
    pub url: String,
    pub under_test: bool,
    /// "project" or "configuration" or "" (one unlabeled column).
    pub grouped_by: &'static str,
    pub columns: Vec<GridColumn>,
    pub rows: Vec<GridRow>,
    pub page: usize,
    pub per_page: usize,
    pub has_more: bool,
    pub newer_url: Option<String>,
    pub older_url: Option<String>,
    /// Tests seen on this page, linking to their history.
    pub tests: Vec<TestLink>,
    /// Lanes of the merge graph.
    pub graph_width: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct TestLink {
    pub name: String,
    pub url: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct GridColumn {
    pub label: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct GridRow {
    pub hash: String,
    pub short: String,
    pub url: String,
    pub subject: String,
    pub author: String,
    pub age: String,
    pub timestamp: i64,
    pub enabled: bool,
    pub priority: u32,
    /// Untestable / pending / no tests: the whole row says so.
    pub parse: ParseState,
    pub cells: Vec<Cell>,
    #[serde(skip)]
    pub graph_svg: String,
}

/// A page of a branch's history with each commit's definitions and scheduler state.
pub(super) struct HistoryWithStates {
    pub history: HistoryPage,
    pub defs: Vec<Arc<CommitDefinitions>>,
    pub states: Arc<Snapshot<CommitStates>>,
}

impl Sources {
    /// One page of a branch's history (newest first) with each commit's definitions and
    /// scheduler state: what the branch grid and the test-history plot are built from.
    pub(super) async fn history_page(
        self: &Arc<Self>,
        repo: &str,
        branch: &str,
        page: usize,
        per_page: usize,
    ) -> Result<HistoryWithStates, ReadError> {
        let this = self.clone();
        let (name, branch_name) = (repo.to_owned(), branch.to_owned());
        let offset = page.saturating_mul(per_page);
        let (history, defs) = blocking(move || {
            let head = this.git.branch_head(&name, &branch_name)?;
            let history = this.git.history(&name, &head, offset, per_page)?;
            let defs = history
                .commits
                .iter()
                .map(|c| this.git.definitions(&name, &c.hash))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((history, defs))
        })
        .await?;
        // The branch grid and every test's history of this page read the same states, kept
        // while none of the page's commits changes.
        let hashes: Vec<String> = history.commits.iter().map(|c| c.hash.clone()).collect();
        let key = (repo.to_owned(), hashes);
        let version = self.state_version();
        let states = self
            .kept_view(
                &self.coalesced.commit_states,
                key.clone(),
                version,
                || async {
                    let (repo, hashes) = &key;
                    let states = self.state.commits(repo, hashes).await?;
                    let reads = hashes.iter().map(|hash| commit_part(repo, hash)).collect();
                    // About a hash, a status and a map slot per definition.
                    let size = states.values().map(|s| 200 * s.tests.len()).sum();
                    let reads = Reads::Parts(reads);
                    Ok(Snapshot::with_size_hint(
                        states,
                        reads,
                        Keep::WhileUnchanged,
                        size,
                    ))
                },
            )
            .await?;
        Ok(HistoryWithStates {
            history,
            defs,
            states,
        })
    }

    pub async fn branch(
        self: &Arc<Self>,
        repo: &str,
        branch: &str,
        page: usize,
        per_page: usize,
    ) -> Result<Arc<Snapshot<BranchView>>, ReadError> {
        let key = (repo.to_owned(), branch.to_owned(), page, per_page);
        let version = self.branch_version(repo, branch);
        self.kept_view(&self.coalesced.branch, key, version, || {
            self.branch_now(repo, branch, page, per_page)
        })
        .await
    }

    async fn branch_now(
        self: &Arc<Self>,
        repo: &str,
        branch: &str,
        page: usize,
        per_page: usize,
    ) -> Result<Arc<Snapshot<BranchView>>, ReadError> {
        let now_ms = format::now_millis();
        let per_page = per_page.clamp(1, MAX_PAGE);
        let HistoryWithStates {
            history,
            defs,
            states,
        } = self.history_page(repo, branch, page, per_page).await?;
        let flags = self.state.branches(repo).await?;
        // The ages of the rows, and parses still waiting for another repo, change by
        // themselves.
        let keep = elapsed_texts_keep(
            now_ms,
            history
                .commits
                .iter()
                .map(|c| c.timestamp.saturating_mul(1000)),
        )
        .min(parses_keep(defs.iter().map(|d| &d.parse), now_ms));
        let reads = std::iter::once(branches_part(repo))
            .chain(history.commits.iter().map(|c| commit_part(repo, &c.hash)))
            .collect();
        let view = build_branch_view(
            BranchInputs {
                repo,
                branch,
                under_test: flags
                    .get(branch)
                    .is_some_and(|f: &BranchState| f.under_test),
                state_wired: self.state.wired(),
                page,
                per_page,
                now: i64::try_from(now_ms / 1000).unwrap_or(i64::MAX),
            },
            history,
            &defs,
            states.view(),
        );
        Ok(Snapshot::new(view, Reads::Parts(reads), keep))
    }
}

/// Everything [`build_branch_view`] needs besides the data.
pub struct BranchInputs<'a> {
    pub repo: &'a str,
    pub branch: &'a str,
    pub under_test: bool,
    pub state_wired: bool,
    pub page: usize,
    pub per_page: usize,
    pub now: i64,
}

/// Builds the grid (pure: the benchmark measures this plus the template).
pub fn build_branch_view(
    inputs: BranchInputs<'_>,
    history: HistoryPage,
    defs: &[Arc<CommitDefinitions>],
    states: &HashMap<String, CommitState>,
) -> BranchView {
    let included = |d: &&DefinitionSummary| !d.disabled && d.kind != DefinitionKind::Deployment;
    let mut projects = BTreeMap::new();
    let mut configurations = BTreeMap::new();
    let mut tests = BTreeSet::new();
    for d in defs
        .iter()
        .flat_map(|d| d.definitions.iter())
        .filter(included)
    {
        projects.insert(d.project.as_str(), ());
        configurations.insert(d.configuration.as_str(), ());
        if d.kind == DefinitionKind::Test {
            tests.insert(d.name.as_str());
        }
    }
    let (grouped_by, labels): (&'static str, Vec<String>) = if projects.len() > 1 {
        ("project", projects.keys().map(|s| s.to_string()).collect())
    } else if configurations.len() > 1 {
        (
            "configuration",
            configurations.keys().map(|s| s.to_string()).collect(),
        )
    } else {
        ("", vec![String::new()])
    };
    let column_of: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let graph_width = history.graph.iter().map(|g| g.width).max().unwrap_or(1);
    let mut rows = Vec::with_capacity(history.commits.len());
    let mut groups: Vec<Vec<&DefinitionSummary>> = vec![Vec::new(); labels.len()];
    // Per row and column: the definitions of the cell (consecutive commits with the same
    // ones share their runs and count once for the change points).
    let mut definitions_of_cells: Vec<Vec<Vec<&str>>> = Vec::with_capacity(rows.capacity());
    for ((commit, graph), defs) in history.commits.iter().zip(&history.graph).zip(defs) {
        let state = states.get(&commit.hash);
        for group in groups.iter_mut() {
            group.clear();
        }
        for d in defs.definitions.iter().filter(included) {
            let key = match grouped_by {
                "project" => d.project.as_str(),
                "configuration" => d.configuration.as_str(),
                _ => "",
            };
            if let Some(&index) = column_of.get(key) {
                groups[index].push(d);
            }
        }
        definitions_of_cells.push(
            groups
                .iter()
                .map(|members| members.iter().map(|d| d.hash.as_str()).collect())
                .collect(),
        );
        let cells = if defs.parse == ParseState::Ok {
            groups
                .iter()
                .map(|members| {
                    if members.is_empty() {
                        Cell::empty()
                    } else {
                        group_cell(defs, state, members.iter().copied())
                    }
                })
                .collect()
        } else {
            vec![group_cell(defs, state, std::iter::empty())]
        };
        let title = format!("{} {}", short_hash(&commit.hash), commit.subject);
        rows.push(GridRow {
            short: short_hash(&commit.hash).to_owned(),
            url: paths::commit_url(inputs.repo, &commit.hash),
            subject: format::truncate(&commit.subject, 80),
            author: commit.author.clone(),
            age: format::age(commit.timestamp, inputs.now),
            timestamp: commit.timestamp,
            enabled: state.is_some_and(|s| s.user_priority > 0),
            priority: state.map_or(0, |s| s.user_priority),
            parse: defs.parse.clone(),
            cells,
            graph_svg: merge_graph::row_svg(graph, graph_width, &title),
            hash: commit.hash.clone(),
        });
    }
    mark_change_points(&mut rows, &definitions_of_cells);
    let url = paths::branch_url(inputs.repo, inputs.branch);
    let page_url = |page: usize| format!("{url}?page={page}&per_page={}", inputs.per_page);
    BranchView {
        state_wired: inputs.state_wired,
        repo: inputs.repo.to_owned(),
        repo_url: paths::repo_url(inputs.repo),
        branch: inputs.branch.to_owned(),
        under_test: inputs.under_test,
        grouped_by,
        columns: labels
            .into_iter()
            .map(|label| GridColumn { label })
            .collect(),
        rows,
        page: inputs.page,
        per_page: inputs.per_page,
        has_more: history.has_more,
        newer_url: (inputs.page > 0).then(|| page_url(inputs.page - 1)),
        older_url: history.has_more.then(|| page_url(inputs.page + 1)),
        tests: tests
            .into_iter()
            .map(|name| TestLink {
                url: paths::test_history_url(inputs.repo, inputs.branch, name),
                name: name.to_owned(),
            })
            .collect(),
        graph_width,
        url,
    }
}

// ---------------------------------------------------------------------------------------

/// Sets each cell's change probability, per column ([`crate::views::change_points`]).
fn mark_change_points(rows: &mut [GridRow], definitions_of_cells: &[Vec<Vec<&str>>]) {
    let columns = rows.iter().map(|r| r.cells.len()).max().unwrap_or(0);
    for column in 0..columns {
        let oldest_first: Vec<PagePoint<&Vec<&str>>> = rows
            .iter()
            .zip(definitions_of_cells)
            .rev()
            .map(|(row, definitions)| {
                let cell = row.cells.get(column);
                PagePoint {
                    definitions: definitions.get(column).filter(|d| !d.is_empty()),
                    failures: cell.map_or(0, |c| c.failures),
                    runs: cell.map_or(0, |c| c.runs),
                }
            })
            .collect();
        let Some(changes) = page_changes(&oldest_first) else {
            continue;
        };
        for (index, probability) in changes.probabilities.iter().enumerate() {
            let row = rows.len() - 1 - index;
            if let Some(cell) = rows[row].cells.get_mut(column) {
                cell.change_probability = *probability;
            }
        }
    }
}
