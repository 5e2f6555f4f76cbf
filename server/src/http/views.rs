//! Page views: plain data assembled from git ([`GitReads`]) and the scheduler's live state
//! ([`StateReads`]). HTML templates and the JSON API serve the same views, so the API covers
//! everything the pages show.

use super::cells::{self, Cell, Member, ParseState};
use super::format::{self, short_hash};
use super::git_reads::{CommitDefinitions, DefinitionSummary, GitReads, HistoryPage};
use super::highlight;
use super::merge_graph;
use super::paths;
use super::plot::{self, PlotPoint};
use super::read_model::{
    ArtifactFiles, BranchState, CommitState, MachineView, QueueEntry, ReadError, RunStatus,
    RunView, StateReads, TestStatus, WaitReason,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use test_looper_core::definitions::DefinitionKind;
use test_looper_core::protocol::RunResult;
use test_looper_core::scheduling::stats::FailureRate;

/// Commits per branch page by default, and at most.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 1000;
/// Commit counts on the repo page stop here.
const COUNT_CAP: usize = 10_000;

mod coalesce;

/// The git and state sources pages read from.
pub struct Sources {
    pub git: GitReads,
    pub state: Arc<dyn StateReads>,
    /// The files runs stored (listed on run pages).
    pub files: Arc<dyn ArtifactFiles>,
    /// The heavy views being computed, shared by concurrent requests for the same one.
    pub coalesced: Coalesced,
}

/// A view or why it failed, shareable between the requests of one batch.
type Shared<T> = Result<T, Arc<ReadError>>;

/// The scheduler's state of a page of commits, by hash.
type CommitStates = Arc<HashMap<String, CommitState>>;

/// Views computed for concurrent requests at once ([`coalesce`]): the branch grid, the test
/// history, the commit page and the machines page each read thousands of definitions'
/// states (the states of a history page are shared by the grid and every test's history).
/// Every request still gets a view computed after it arrived.
#[derive(Default)]
pub struct Coalesced {
    repos: coalesce::Coalescer<(), Shared<ReposView>>,
    repo: coalesce::Coalescer<String, Shared<RepoView>>,
    branch: coalesce::Coalescer<(String, String, usize, usize), Shared<BranchView>>,
    test_history:
        coalesce::Coalescer<(String, String, String, usize, usize), Shared<TestHistoryView>>,
    commit: coalesce::Coalescer<(String, String), Shared<CommitPageView>>,
    machines: coalesce::Coalescer<(), Shared<MachinesView>>,
    commit_states: coalesce::Coalescer<(String, Vec<String>), Shared<CommitStates>>,
}

fn share<T>(result: Result<T, ReadError>) -> Shared<T> {
    result.map_err(Arc::new)
}

fn unshare<T>(result: Shared<T>) -> Result<T, ReadError> {
    result.map_err(|error| {
        Arc::try_unwrap(error).unwrap_or_else(|error| match &*error {
            ReadError::NotFound(what) => ReadError::NotFound(what.clone()),
            ReadError::Unavailable(why) => ReadError::Unavailable(why.clone()),
            ReadError::Internal(why) => ReadError::Internal(why.clone()),
        })
    })
}

async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, ReadError> + Send + 'static,
) -> Result<T, ReadError> {
    actix_web::rt::task::spawn_blocking(job)
        .await
        .map_err(|e| ReadError::Internal(format!("git task failed: {e}")))?
}

// ---------------------------------------------------------------------------------------
// Repos

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
    pub async fn repos(self: &Arc<Self>) -> Result<ReposView, ReadError> {
        let version = self.refs_version(None);
        unshare(
            self.coalesced
                .repos
                .read_unless_changed((), version, || async { share(self.repos_now().await) })
                .await,
        )
    }

    async fn repos_now(self: &Arc<Self>) -> Result<ReposView, ReadError> {
        let this = self.clone();
        let names = blocking(move || this.git.repos()).await?;
        let mut repos = Vec::with_capacity(names.len());
        for name in names {
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
                    let cell = self.commit_cell(&name, &head).await?;
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
        Ok(ReposView {
            state_wired: self.state.wired(),
            repos,
        })
    }

    /// The cell summarising every definition of one commit.
    async fn commit_cell(self: &Arc<Self>, repo: &str, hash: &str) -> Result<Cell, ReadError> {
        let defs = self.definitions(repo, hash).await?;
        let hashes = [hash.to_owned()];
        let states = self.state.commits(repo, &hashes).await?;
        let state = states.get(hash);
        Ok(group_cell(&defs, state, defs.definitions.iter()))
    }

    async fn definitions(
        self: &Arc<Self>,
        repo: &str,
        hash: &str,
    ) -> Result<Arc<CommitDefinitions>, ReadError> {
        let this = self.clone();
        let (repo, hash) = (repo.to_owned(), hash.to_owned());
        blocking(move || this.git.definitions(&repo, &hash)).await
    }

    pub async fn repo(self: &Arc<Self>, repo: &str) -> Result<RepoView, ReadError> {
        let version = self.refs_version(Some(repo));
        unshare(
            self.coalesced
                .repo
                .read_unless_changed(repo.to_owned(), version, || async {
                    share(self.repo_now(repo).await)
                })
                .await,
        )
    }

    async fn repo_now(self: &Arc<Self>, repo: &str) -> Result<RepoView, ReadError> {
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
        for (branch, head, count) in branches {
            let defs = self.definitions(repo, &head).await?;
            let cell = group_cell(&defs, states.get(&head), defs.definitions.iter());
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
        Ok(RepoView {
            state_wired: self.state.wired(),
            name: repo.to_owned(),
            url: paths::repo_url(repo),
            branches: rows,
        })
    }
}

/// The cell of `members` (a subset of `defs`), given the commit's state.
fn group_cell<'a>(
    defs: &CommitDefinitions,
    state: Option<&'a CommitState>,
    members: impl Iterator<Item = &'a DefinitionSummary>,
) -> Cell {
    let enabled = state.is_some_and(|s| s.user_priority > 0);
    cells::summarize(
        &defs.parse,
        enabled,
        members.filter(|d| !d.disabled).map(|d| Member {
            kind: d.kind,
            name: &d.name,
            status: state.and_then(|s| s.tests.get(&d.hash)),
        }),
    )
}

// ---------------------------------------------------------------------------------------
// Branch grid

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

impl Sources {
    /// One page of a branch's history (newest first) with each commit's definitions and
    /// scheduler state: what the branch grid and the test-history plot are built from.
    async fn history_page(
        self: &Arc<Self>,
        repo: &str,
        branch: &str,
        page: usize,
        per_page: usize,
    ) -> Result<(HistoryPage, Vec<Arc<CommitDefinitions>>, CommitStates), ReadError> {
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
        let hashes: Vec<String> = history.commits.iter().map(|c| c.hash.clone()).collect();
        // The branch grid and every test's history of this page read the same states.
        let key = (repo.to_owned(), hashes);
        let states = unshare(
            self.coalesced
                .commit_states
                .read(key.clone(), || async {
                    share(self.state.commits(&key.0, &key.1).await.map(Arc::new))
                })
                .await,
        )?;
        Ok((history, defs, states))
    }
}

impl Sources {
    /// The version of the scheduler's state (for views that read nothing else that moves).
    fn state_version(&self) -> coalesce::Version {
        coalesce::Version {
            state: self.state.version(),
            head: None,
        }
    }

    /// The version of views over whole repos: the state and every branch head of `repo`
    /// (or of every repo), so a push, a new or a deleted branch or repo changes it.
    fn refs_version(&self, repo: Option<&str>) -> coalesce::Version {
        let repos = match repo {
            Some(repo) => vec![repo.to_owned()],
            None => self.git.repos().unwrap_or_default(),
        };
        let mut refs = String::new();
        for repo in repos {
            refs.push_str(&repo);
            refs.push('\n');
            for (branch, head) in self.git.branches(&repo).unwrap_or_default() {
                refs.push_str(&branch);
                refs.push(' ');
                refs.push_str(&head);
                refs.push('\n');
            }
        }
        coalesce::Version {
            state: self.state.version(),
            head: Some(refs),
        }
    }

    /// The version of a branch's views: the state and the branch head (none while the
    /// branch is unknown; its appearance changes the version).
    fn branch_version(&self, repo: &str, branch: &str) -> coalesce::Version {
        coalesce::Version {
            state: self.state.version(),
            head: self.git.branch_head(repo, branch).ok(),
        }
    }

    pub async fn branch(
        self: &Arc<Self>,
        repo: &str,
        branch: &str,
        page: usize,
        per_page: usize,
    ) -> Result<BranchView, ReadError> {
        let key = (repo.to_owned(), branch.to_owned(), page, per_page);
        let version = self.branch_version(repo, branch);
        unshare(
            self.coalesced
                .branch
                .read_unless_changed(key, version, || async {
                    share(self.branch_now(repo, branch, page, per_page).await)
                })
                .await,
        )
    }

    async fn branch_now(
        self: &Arc<Self>,
        repo: &str,
        branch: &str,
        page: usize,
        per_page: usize,
    ) -> Result<BranchView, ReadError> {
        let per_page = per_page.clamp(1, MAX_PAGE);
        let (history, defs, states) = self.history_page(repo, branch, page, per_page).await?;
        let flags = self.state.branches(repo).await?;
        Ok(build_branch_view(
            BranchInputs {
                repo,
                branch,
                under_test: flags
                    .get(branch)
                    .is_some_and(|f: &BranchState| f.under_test),
                state_wired: self.state.wired(),
                page,
                per_page,
                now: format::now_seconds(),
            },
            history,
            &defs,
            &states,
        ))
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
    history: super::git_reads::HistoryPage,
    defs: &[Arc<CommitDefinitions>],
    states: &HashMap<String, CommitState>,
) -> BranchView {
    let included = |d: &&DefinitionSummary| !d.disabled && d.kind != DefinitionKind::Deployment;
    let mut projects = BTreeMap::new();
    let mut configurations = BTreeMap::new();
    let mut tests = std::collections::BTreeSet::new();
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
// Commit

#[derive(Clone, Debug, Serialize)]
pub struct CommitPageView {
    pub state_wired: bool,
    pub repo: String,
    pub repo_url: String,
    pub hash: String,
    pub short: String,
    pub url: String,
    pub subject: String,
    pub message: String,
    pub author: String,
    pub author_email: String,
    pub date: String,
    pub parents: Vec<CommitLink>,
    pub enabled: bool,
    pub priority: u32,
    pub parse: ParseState,
    pub summary: Cell,
    pub definitions: Vec<DefinitionRow>,
    pub definitions_file: Option<DefinitionsFile>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CommitLink {
    pub hash: String,
    pub short: String,
    pub url: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct DefinitionsFile {
    pub path: String,
    pub text: String,
    /// The line the error points at, if the commit is untestable.
    pub error_line: Option<usize>,
    #[serde(skip)]
    pub html: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct DefinitionRow {
    pub name: String,
    pub kind: DefinitionKind,
    pub kind_label: &'static str,
    pub hash: String,
    pub project: String,
    pub configuration: String,
    pub disabled: bool,
    pub cell: Cell,
    pub status: Option<TestStatus>,
    pub wait: String,
    pub runs_desired: u32,
    /// Failure reasons over counted runs: (reason, count).
    pub failure_reasons: Vec<(String, usize)>,
    pub runs: Vec<RunRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub url: String,
    pub state: RunStatus,
    pub state_label: &'static str,
    pub machine_id: String,
    pub started: String,
    pub result: String,
    pub cleared: bool,
}

impl Sources {
    pub async fn commit(
        self: &Arc<Self>,
        repo: &str,
        hash: &str,
    ) -> Result<CommitPageView, ReadError> {
        let key = (repo.to_owned(), hash.to_owned());
        unshare(
            self.coalesced
                .commit
                .read_unless_changed(key, self.state_version(), || async {
                    share(self.commit_now(repo, hash).await)
                })
                .await,
        )
    }

    async fn commit_now(
        self: &Arc<Self>,
        repo: &str,
        hash: &str,
    ) -> Result<CommitPageView, ReadError> {
        let this = self.clone();
        let (name, commit) = (repo.to_owned(), hash.to_owned());
        let (metadata, defs, file) = blocking(move || {
            let metadata = this.git.commit(&name, &commit)?;
            let defs = this.git.definitions(&name, &commit)?;
            let file = this.git.definitions_file(&name, &commit)?;
            Ok((metadata, defs, file))
        })
        .await?;
        let hashes = [metadata.hash.clone()];
        let states = self.state.commits(repo, &hashes).await?;
        let state = states.get(&metadata.hash);
        let mut definitions = Vec::new();
        let test_hashes: Vec<String> = defs.definitions.iter().map(|d| d.hash.clone()).collect();
        let mut runs_by_test = self.state.runs_of_many(&test_hashes).await?;
        for d in &defs.definitions {
            let status = state.and_then(|s| s.tests.get(&d.hash)).cloned();
            let runs = runs_by_test.remove(&d.hash).unwrap_or_default();
            let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
            for run in runs.iter().filter(|r| !r.cleared) {
                if let Some(RunResult::Failed { reason, .. }) = &run.result {
                    *reasons.entry(failure_reason_label(reason)).or_default() += 1;
                }
            }
            let cell = group_cell(&defs, state, std::iter::once(d));
            definitions.push(DefinitionRow {
                name: d.name.clone(),
                kind: d.kind,
                kind_label: kind_label(d.kind),
                hash: d.hash.clone(),
                project: d.project.clone(),
                configuration: d.configuration.clone(),
                disabled: d.disabled,
                wait: status
                    .as_ref()
                    .map(|s| wait_text(&s.wait))
                    .unwrap_or_default(),
                runs_desired: status.as_ref().map_or(0, |s| s.runs_desired),
                status,
                cell,
                failure_reasons: reasons.into_iter().collect(),
                runs: runs.iter().take(50).map(run_row).collect(),
            });
        }
        let error_line = match &defs.parse {
            ParseState::Untestable(message) => highlight::error_line(message),
            _ => None,
        };
        let definitions_file = file.map(|(path, text)| DefinitionsFile {
            html: highlight::yaml_to_html(&text, error_line),
            path,
            text,
            error_line,
        });
        Ok(CommitPageView {
            state_wired: self.state.wired(),
            repo: repo.to_owned(),
            repo_url: paths::repo_url(repo),
            short: short_hash(&metadata.hash).to_owned(),
            url: paths::commit_url(repo, &metadata.hash),
            subject: metadata.subject.clone(),
            author: metadata.author.clone(),
            author_email: metadata.author_email.clone(),
            date: format::utc_seconds(metadata.timestamp),
            parents: metadata
                .parents
                .iter()
                .map(|p| CommitLink {
                    short: short_hash(p).to_owned(),
                    url: paths::commit_url(repo, p),
                    hash: p.clone(),
                })
                .collect(),
            enabled: state.is_some_and(|s| s.user_priority > 0),
            priority: state.map_or(0, |s| s.user_priority),
            summary: group_cell(&defs, state, defs.definitions.iter()),
            parse: defs.parse.clone(),
            definitions,
            definitions_file,
            message: metadata.message,
            hash: metadata.hash,
        })
    }
}

fn kind_label(kind: DefinitionKind) -> &'static str {
    match kind {
        DefinitionKind::Build => "build",
        DefinitionKind::Test => "test",
        DefinitionKind::Deployment => "deployment",
    }
}

fn failure_reason_label(reason: &test_looper_core::protocol::FailureReason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_else(|| format!("{reason:?}"))
}

/// Why a definition waits, in words.
pub fn wait_text(wait: &WaitReason) -> String {
    match wait {
        WaitReason::NotWanted => "priority zero: no enabled commit wants it".into(),
        WaitReason::Queued { priority } => format!("queued for a machine (priority {priority})"),
        WaitReason::BlockedOnBuild { build } => format!("blocked on build {build}"),
        WaitReason::DependencyFailed { reason } => format!("dependency failed: {reason}"),
        WaitReason::UnresolvedDependencies { missing } => {
            format!("needs builds whose definitions are not known yet: {missing}")
        }
        WaitReason::NoHardware { detail } => format!("no machine can provide: {detail}"),
        WaitReason::RetryWait { until } => {
            format!("build retry after {}", format::utc_millis(*until))
        }
        WaitReason::Done => "has all the runs it wants".into(),
    }
}

fn run_row(run: &RunView) -> RunRow {
    RunRow {
        run_id: run.run_id.clone(),
        url: paths::run_url(&run.run_id),
        state: run.state,
        state_label: run.state.label(),
        machine_id: run.machine_id.clone(),
        started: format::utc_millis(run.started),
        result: match &run.result {
            Some(RunResult::Passed) => "passed".into(),
            Some(RunResult::Failed { reason, message }) => {
                format!("{}: {message}", failure_reason_label(reason))
            }
            None if !run.reason.is_empty() => run.reason.clone(),
            None => String::new(),
        },
        cleared: run.cleared,
    }
}

// ---------------------------------------------------------------------------------------
// Test across history

#[derive(Clone, Debug, Serialize)]
pub struct TestHistoryView {
    pub repo: String,
    pub branch: String,
    pub branch_url: String,
    pub test: String,
    pub points: Vec<TestHistoryPoint>,
    pub has_more: bool,
    pub older_url: Option<String>,
    #[serde(skip)]
    pub svg: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct TestHistoryPoint {
    pub hash: String,
    pub short: String,
    pub url: String,
    pub subject: String,
    /// Whether the commit defines the test at all.
    pub defined: bool,
    pub rate: FailureRate,
    pub rate_text: String,
    pub active: u32,
}

impl Sources {
    pub async fn test_history(
        self: &Arc<Self>,
        repo: &str,
        branch: &str,
        test: &str,
        page: usize,
        per_page: usize,
    ) -> Result<TestHistoryView, ReadError> {
        let key = (
            repo.to_owned(),
            branch.to_owned(),
            test.to_owned(),
            page,
            per_page,
        );
        unshare(
            self.coalesced
                .test_history
                .read_unless_changed(key, self.branch_version(repo, branch), || async {
                    share(
                        self.test_history_now(repo, branch, test, page, per_page)
                            .await,
                    )
                })
                .await,
        )
    }

    async fn test_history_now(
        self: &Arc<Self>,
        repo: &str,
        branch: &str,
        test: &str,
        page: usize,
        per_page: usize,
    ) -> Result<TestHistoryView, ReadError> {
        let per_page = per_page.clamp(1, MAX_PAGE);
        let (history, defs, states) = self.history_page(repo, branch, page, per_page).await?;
        let mut points = Vec::new();
        for (commit, defs) in history.commits.iter().zip(&defs) {
            let definition = defs.definitions.iter().find(|d| d.name == test);
            let status = definition
                .and_then(|d| states.get(&commit.hash).and_then(|s| s.tests.get(&d.hash)));
            let rate = FailureRate::new(
                status.map_or(0, |s| s.failures),
                status.map_or(0, |s| s.runs),
            );
            points.push(TestHistoryPoint {
                short: short_hash(&commit.hash).to_owned(),
                url: paths::commit_url(repo, &commit.hash),
                subject: commit.subject.clone(),
                defined: definition.is_some(),
                rate_text: if rate.runs > 0 {
                    cells::rate_text(&rate)
                } else {
                    String::new()
                },
                rate,
                active: status.map_or(0, |s| s.active),
                hash: commit.hash.clone(),
            });
        }
        let oldest_first: Vec<PlotPoint> = points
            .iter()
            .rev()
            .filter(|p| p.defined)
            .map(|p| PlotPoint {
                label: format!("{} {}", p.short, p.subject),
                href: p.url.clone(),
                rate: p.rate,
            })
            .collect();
        let url = paths::test_history_url(repo, branch, test);
        Ok(TestHistoryView {
            repo: repo.to_owned(),
            branch: branch.to_owned(),
            branch_url: paths::branch_url(repo, branch),
            test: test.to_owned(),
            svg: plot::failure_rate_svg(&oldest_first, 900.0),
            points,
            has_more: history.has_more,
            older_url: history
                .has_more
                .then(|| format!("{url}?page={}&per_page={per_page}", page + 1)),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Run, machines, queue

#[derive(Clone, Debug, Serialize)]
pub struct RunPageView {
    pub run: RunView,
    pub state_label: &'static str,
    pub active: bool,
    pub started: String,
    pub ended: String,
    pub result: String,
    pub commit_url: String,
    pub artifacts: Vec<ArtifactLink>,
    pub passed_cases: usize,
    pub failed_cases: usize,
    pub log_socket: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ArtifactLink {
    pub name: String,
    pub url: String,
    pub size: u64,
    /// "12.3 Kb".
    pub size_text: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct MachinesView {
    pub state_wired: bool,
    pub machines: Vec<MachineRow>,
    pub queue: Vec<QueueRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MachineRow {
    pub machine: MachineView,
    pub hardware: String,
    pub up_for: String,
    pub heartbeat_age: String,
    pub busy_url: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct QueueRow {
    pub entry: QueueEntry,
    pub commit_url: String,
    pub why: String,
}

impl Sources {
    pub async fn run(self: &Arc<Self>, run_id: &str) -> Result<RunPageView, ReadError> {
        let run = self
            .state
            .run(run_id)
            .await?
            .ok_or_else(|| ReadError::NotFound(format!("run {run_id}")))?;
        let row = run_row(&run);
        let files = match self.files.list(&run.test_hash, &run.run_id).await {
            Ok(files) => files,
            // The run page still shows the run while the store is unreachable.
            Err(err) => {
                tracing::warn!(%err, run_id, "cannot list the run's stored files");
                Vec::new()
            }
        };
        Ok(RunPageView {
            state_label: run.state.label(),
            active: run.state.is_active(),
            started: format::utc_millis(run.started),
            ended: if run.ended > 0 {
                format::utc_millis(run.ended)
            } else {
                String::new()
            },
            result: row.result,
            commit_url: paths::commit_url(&run.repo, &run.commit),
            artifacts: files
                .into_iter()
                .map(|file| ArtifactLink {
                    url: paths::artifact_url(&run.run_id, &file.name),
                    size_text: format::bytes(file.size),
                    size: file.size,
                    name: file.name,
                })
                .collect(),
            passed_cases: run.test_cases.iter().filter(|c| c.passed).count(),
            failed_cases: run.test_cases.iter().filter(|c| !c.passed).count(),
            log_socket: format!("/api/runs/{}/log", paths::encode_component(&run.run_id)),
            run,
        })
    }

    pub async fn machines(self: &Arc<Self>) -> Result<MachinesView, ReadError> {
        unshare(
            self.coalesced
                .machines
                .read_unless_changed((), self.state_version(), || async {
                    share(self.machines_now().await)
                })
                .await,
        )
    }

    async fn machines_now(self: &Arc<Self>) -> Result<MachinesView, ReadError> {
        let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let machines = self.state.machines().await?;
        let queue = self.state.queue().await?;
        let deployment_ids: std::collections::HashSet<String> = self
            .state
            .deployments()
            .await?
            .into_iter()
            .map(|deployment| deployment.deployment_id)
            .collect();
        // A machine is busy with a run (its page) or a deployment (its terminal).
        let busy_url = |busy: &str| {
            if deployment_ids.contains(busy) {
                super::actions::terminal_url(busy)
            } else {
                paths::run_url(busy)
            }
        };
        Ok(MachinesView {
            state_wired: self.state.wired(),
            machines: machines
                .into_iter()
                .map(|m| MachineRow {
                    hardware: format!("{} cores, {} GB", m.info.cores, m.info.ram_gb),
                    up_for: format::duration((now_ms.saturating_sub(m.registered) / 1000) as i64),
                    heartbeat_age: format::duration(
                        (now_ms.saturating_sub(m.last_heartbeat) / 1000) as i64,
                    ),
                    busy_url: m.busy_with.as_deref().map(busy_url),
                    machine: m,
                })
                .collect(),
            queue: queue
                .into_iter()
                .map(|entry| QueueRow {
                    commit_url: paths::commit_url(&entry.repo, &entry.commit),
                    why: wait_text(&entry.wait),
                    entry,
                })
                .collect(),
        })
    }
}
