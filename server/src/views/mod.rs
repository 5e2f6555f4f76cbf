//! Page views: plain data assembled from git ([`GitReads`]) and the scheduler's live state
//! ([`SchedulerState`]). HTML templates and the JSON API serve the same views, so the API covers
//! everything the pages show.
//!
//! Each heavy view is computed once per version of its sources and shared: concurrent
//! requests join one computation ([`crate::cache::coalesce`]), and the result is kept as a [`Snapshot`],
//! its JSON serialised once, for as long as its sources keep their version and its
//! clock-dependent texts hold ([`crate::cache::snapshot`]). A kept view is therefore what a new computation
//! would give, and a request costs a version check and a copy of shared bytes.
//!
//! - [`repos`]: the repos list and one repo's branches.
//! - [`branch`]: a branch's commit grid.
//! - [`commit`]: one commit's definitions, runs and definitions file; [`cases`]: the
//!   individual test cases of a definition over its runs.
//! - [`test_history`]: one test's failure rate across a branch's history.
//! - [`runs`]: one run; [`machines`]: machines and the queue.
//! - [`hunts`]: flake hunts (state, culprit, posterior over commits).
//! - [`labels`]: words for the scheduler's states.
//! - [`cells`], [`change_points`], [`merge_graph`], [`plot`], [`highlight`], [`format`], [`paths`]: the pieces
//!   views are built from (status cells, the history graph, failure-rate plots, definitions
//!   files, numbers and times in words, the URL scheme).
//!
//! No transport here: views are plain data, rendered by [`crate::web`].

mod branch;
mod cases;
pub mod cells;
pub mod change_points;
mod commit;
pub mod format;
pub mod highlight;
pub mod hunts;
mod labels;
mod machines;
pub mod merge_graph;
pub mod paths;
pub mod plot;
mod repos;
mod runs;
mod test_history;

pub use crate::cache::snapshot::{Keep, Reads, Snapshot};
pub use branch::{build_branch_view, BranchInputs, BranchView, GridColumn, GridRow, TestLink};
pub use cases::CaseRow;
pub use commit::{CommitLink, CommitPageView, DefinitionRow, DefinitionsFile};
pub use labels::wait_text;
pub use machines::{MachineRow, MachinesView, QueueRow};
pub use repos::{BranchHealth, BranchRow, RepoSummary, RepoView, ReposView};
pub use runs::{ArtifactLink, RunPageView, RunRow};
pub use test_history::{TestHistoryPoint, TestHistoryView};

use crate::cache::coalesce::{Coalescer, Kept, Version, Weigh};
use crate::reads::artifacts::StoredArtifacts;
use crate::reads::git::{CommitDefinitions, DefinitionSummary, GitReads};
use crate::reads::model::{CommitState, ReadError, StatePart};
use crate::reads::state::SchedulerState;
use crate::views::cells::{Cell, Member, ParseState};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

/// Commits per branch page by default, and at most.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 1000;

/// The git and state sources pages read from.
pub struct Sources {
    pub git: GitReads,
    pub state: Arc<SchedulerState>,
    /// The files runs stored (listed on run pages).
    pub files: Arc<StoredArtifacts>,
    /// The heavy views being computed, shared by concurrent requests for the same one.
    pub coalesced: Coalesced,
}

/// A value or why it failed, shareable between the requests of one batch.
type Shared<T> = Result<T, Arc<ReadError>>;

/// A computed view or why it failed, as kept and shared.
type SharedView<T> = Shared<Arc<Snapshot<T>>>;

impl<T> Weigh for SharedView<T> {
    fn weight(&self) -> usize {
        self.as_ref().map_or(1024, |snapshot| snapshot.weight())
    }
}

/// The scheduler's state of a page of commits, by hash.
type CommitStates = HashMap<String, CommitState>;

/// Views computed for concurrent requests at once and kept while current ([`coalesce`]):
/// the branch grid, the test history, the commit page and the machines page each read
/// thousands of definitions' states (the states of a history page are shared by the grid and
/// every test's history).
#[derive(Default)]
pub struct Coalesced {
    repos: Coalescer<(), SharedView<ReposView>>,
    repo: Coalescer<String, SharedView<RepoView>>,
    branch: Coalescer<(String, String, usize, usize), SharedView<BranchView>>,
    test_history: Coalescer<(String, String, String, usize, usize), SharedView<TestHistoryView>>,
    commit: Coalescer<(String, String), SharedView<CommitPageView>>,
    machines: Coalescer<(), SharedView<MachinesView>>,
    commit_states: Coalescer<(String, Vec<String>), SharedView<CommitStates>>,
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
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| ReadError::Internal(format!("git task failed: {e}")))?
}

impl Sources {
    /// The view of `key`: the one kept in `views` while it is current ([`Sources::is_current`]),
    /// else the one `compute` makes (shared with concurrent requests).
    async fn kept_view<K, T, Fut>(
        &self,
        views: &Coalescer<K, SharedView<T>>,
        key: K,
        version: Version,
        compute: impl FnOnce() -> Fut,
    ) -> Result<Arc<Snapshot<T>>, ReadError>
    where
        K: std::hash::Hash + Eq + Clone,
        Fut: Future<Output = Result<Arc<Snapshot<T>>, ReadError>>,
    {
        let now = version.clone();
        let is_current = |kept: &Kept<SharedView<T>>| self.is_current(kept, &now);
        unshare(
            views
                .read_unless_changed(key, version, is_current, || async {
                    share(compute().await)
                })
                .await,
        )
    }

    /// Whether a kept view is what computing it again now would give: it did not fail, its
    /// git sources are unchanged (`now` is their version now), none of the state it read
    /// changed, and its clock-dependent texts still hold.
    fn is_current<T>(&self, kept: &Kept<SharedView<T>>, now: &Version) -> bool {
        let Ok(snapshot) = &kept.value else {
            return false;
        };
        kept.version.head == now.head
            && snapshot.keep().holds_at(format::now_millis())
            && (kept.version.state == now.state
                || match snapshot.reads() {
                    Reads::Everything => false,
                    Reads::Parts(parts) => !self.state.changed_since(parts, kept.version.state),
                })
    }

    /// The version of the scheduler's state (for views that read nothing else that moves).
    fn state_version(&self) -> Version {
        Version {
            state: self.state.version(),
            head: None,
        }
    }

    /// The version of views over whole repos: the state and every branch head of `repo`
    /// (or of every repo), so a push, a new or a deleted branch or repo changes it.
    fn refs_version(&self, repo: Option<&str>) -> Version {
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
        Version {
            state: self.state.version(),
            head: Some(refs),
        }
    }

    /// The version of a branch's views: the state and the branch head (none while the
    /// branch is unknown; its appearance changes the version).
    fn branch_version(&self, repo: &str, branch: &str) -> Version {
        Version {
            state: self.state.version(),
            head: self.git.branch_head(repo, branch).ok(),
        }
    }

    /// Hunts of a repo and branch (or all), newest first.
    pub async fn hunts(
        &self,
        repo: Option<&str>,
        branch: Option<&str>,
    ) -> Result<Vec<hunts::HuntSummary>, ReadError> {
        let records = self.state.hunts(repo, branch).await?;
        Ok(records.iter().map(hunts::hunt_summary).collect())
    }

    /// One hunt, with git's facts about its culprit and (`with_diff`) the culprit's diff.
    /// Not kept: a hunt page is one posterior over at most a few thousand commits.
    pub async fn hunt(
        self: &Arc<Self>,
        hunt_id: &str,
        with_diff: bool,
    ) -> Result<Option<(hunts::HuntView, Option<crate::git::history::CommitDiff>)>, ReadError> {
        let Some(report) = self.state.hunt_report(hunt_id).await? else {
            return Ok(None);
        };
        let culprit = report.record.culprit.as_ref().map(|c| c.commit.clone());
        let (metadata, diff) = match culprit {
            Some(commit) => {
                let this = self.clone();
                let repo = report.record.spec.repo.clone();
                blocking(move || {
                    let metadata = this.git.commit(&repo, &commit).ok();
                    let diff = if with_diff {
                        this.git.diff(&repo, &commit).ok()
                    } else {
                        None
                    };
                    Ok((metadata, diff))
                })
                .await?
            }
            None => (None, None),
        };
        Ok(Some((hunts::hunt_view(report, metadata.as_ref()), diff)))
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
}

/// The state part of one commit.
fn commit_part(repo: &str, hash: &str) -> StatePart {
    StatePart::Commit {
        repo: repo.to_owned(),
        hash: hash.to_owned(),
    }
}

/// The state part of one definition.
fn test_part(hash: &str) -> StatePart {
    StatePart::Test {
        hash: hash.to_owned(),
    }
}

/// The state part of a repo's branches.
fn branches_part(repo: &str) -> StatePart {
    StatePart::Branches {
        repo: repo.to_owned(),
    }
}

/// How long a view showing these parses may be kept: a parse waiting for another repo or
/// commit can finish without any version changing.
fn parses_keep<'a>(parses: impl IntoIterator<Item = &'a ParseState>, now_ms: u64) -> Keep {
    if parses
        .into_iter()
        .any(|parse| matches!(parse, ParseState::Pending(_)))
    {
        Keep::unversioned(now_ms)
    } else {
        Keep::WhileUnchanged
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
