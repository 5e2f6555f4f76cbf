//! What every web handler shares: the [`Ui`] (view sources, the scheduler's state and
//! actions, live logs, stored files), built once per server from the
//! [`Attachments`] to the real services.

use crate::logs::feed::RedisLogs;
use crate::reads::artifacts::StoredArtifacts;
use crate::reads::git::GitReads;
use crate::reads::state::SchedulerState;
use crate::views;
use crate::AppContext;
use std::sync::Arc;

/// What UI handlers share (one per server, shared by all worker threads).
pub struct Ui {
    pub sources: Arc<views::Sources>,
    pub actions: Arc<SchedulerState>,
    pub logs: Arc<RedisLogs>,
    pub artifacts: Arc<StoredArtifacts>,
    pub(super) git: Arc<crate::git::GitService>,
}

/// The live-state services the UI reads from and acts on.
pub struct Attachments {
    /// Reads of the scheduler's state and the user actions it accepts.
    pub state: Arc<SchedulerState>,
    pub logs: Arc<RedisLogs>,
    pub artifacts: Arc<StoredArtifacts>,
}

impl Attachments {
    /// The real services of `context` (scheduler, live logs, artifact store).
    pub fn live(context: &Arc<AppContext>) -> Self {
        let state = Arc::new(SchedulerState::new(context.clone()));
        Attachments {
            state,
            logs: Arc::new(RedisLogs::new(context.clone())),
            artifacts: Arc::new(StoredArtifacts::new(context.clone())),
        }
    }
}

impl Ui {
    pub fn new(git: Arc<crate::git::GitService>, attachments: Attachments) -> Arc<Ui> {
        Arc::new(Ui {
            sources: Arc::new(views::Sources {
                git: GitReads::new(git.clone()),
                state: attachments.state.clone(),
                files: attachments.artifacts.clone(),
                coalesced: Default::default(),
            }),
            actions: attachments.state,
            logs: attachments.logs,
            artifacts: attachments.artifacts,
            git,
        })
    }

    /// Git scan events (one of the sources of live updates).
    pub fn git_events(&self) -> tokio::sync::broadcast::Receiver<Arc<crate::git::RepoScanned>> {
        self.git.subscribe()
    }
}
