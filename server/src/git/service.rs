//! The git service: a background thread that keeps the repo store current and turns
//! changes into [`RepoScanned`] events.
//!
//! - A push webhook calls [`GitService::request_scan`]: the repo is fetched (remote back
//!   ends) and rescanned at once; the event is broadcast as soon as the scan ends.
//! - Local repos are also re-read every `poll_interval_ms` (reading refs is cheap), so a push
//!   into `path_to_repos` is seen without a webhook. Remote repos are listed and fetched on
//!   a slow safety timer (`fetch_interval_seconds`).
//! - After scans, floating pins with `auto: true` are brought up to date ([`super::pins`]).
//!
//! Consumers call [`GitService::subscribe`] and then [`GitService::resync`] to receive the
//! full state once (every branch and every reachable commit as new), then only changes.
//! The thread ends when the service is dropped.

use super::definitions_source::{DefinitionsCaches, GitDefinitionsSource};
use super::pins::PinUpdater;
use super::scanner::{self, BranchHeads, ParseOutcome, RepoScanned};
use super::tarball::TarballCache;
use super::{credentials::GitCredentials, history, store::RepoStore, GitError};
use crate::config::Config;
use crate::scm::{RemoteRepo, ScmClient};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Events kept for slow subscribers before they start lagging.
const EVENT_CAPACITY: usize = 1024;

/// Levels of chained pin updates applied after one scan.
const MAX_PIN_ROUNDS: usize = 16;

/// How the service finds and refreshes repos.
pub struct ServiceOptions {
    /// Re-read every repo's refs this often without fetching (local back end).
    pub poll_interval: Option<Duration>,
    /// List and fetch every repo this often (remote back ends).
    pub fetch_interval: Option<Duration>,
    /// Lists remote repos (remote back ends).
    pub lister: Option<Arc<ScmClient>>,
    /// Commit auto pin updates.
    pub auto_pins: bool,
}

enum Request {
    Scan { repo: String, fetch: bool },
    Resync,
}

/// Handle to the git background thread.
pub struct GitService {
    store: Arc<RepoStore>,
    caches: Arc<DefinitionsCaches>,
    tarballs: TarballCache,
    requests: mpsc::Sender<Request>,
    events: broadcast::Sender<Arc<RepoScanned>>,
    scm: Option<Arc<ScmClient>>,
}

impl GitService {
    /// Builds the store for the configured back end and starts the thread.
    pub fn from_config(config: &Config) -> Arc<Self> {
        let data_dir = config.server.data_dir.clone();
        let sc = &config.source_control;
        if let Some(github) = &sc.github {
            let credentials = GitCredentials {
                https_token: Some(("x-access-token".into(), github.access_token.clone())),
                ssh_key: github.ssh_key.clone(),
            };
            let client = Arc::new(ScmClient::github(github));
            return Self::start(
                RepoStore::remote(&data_dir, credentials),
                data_dir,
                ServiceOptions {
                    poll_interval: None,
                    fetch_interval: Some(Duration::from_secs(github.fetch_interval_seconds.max(1))),
                    lister: Some(client),
                    auto_pins: true,
                },
            );
        }
        if let Some(gitlab) = &sc.gitlab {
            let credentials = GitCredentials {
                https_token: Some(("oauth2".into(), gitlab.private_token.clone())),
                ssh_key: gitlab.ssh_key.clone(),
            };
            let client = Arc::new(ScmClient::gitlab(gitlab));
            return Self::start(
                RepoStore::remote(&data_dir, credentials),
                data_dir,
                ServiceOptions {
                    poll_interval: None,
                    fetch_interval: Some(Duration::from_secs(gitlab.fetch_interval_seconds.max(1))),
                    lister: Some(client),
                    auto_pins: true,
                },
            );
        }
        let (root, poll) = match &sc.local {
            Some(local) => (local.path_to_repos.clone(), local.poll_interval_ms),
            None => (data_dir.join("repos"), 500),
        };
        Self::start(
            RepoStore::local(&root),
            data_dir,
            ServiceOptions {
                poll_interval: Some(Duration::from_millis(poll.max(10))),
                fetch_interval: None,
                lister: None,
                auto_pins: true,
            },
        )
    }

    /// Starts the thread over `store`; tarballs are cached under `data_dir/tarballs`.
    pub fn start(store: RepoStore, data_dir: PathBuf, options: ServiceOptions) -> Arc<Self> {
        Self::start_subscribed(store, data_dir, options).0
    }

    /// [`GitService::start`], with a receiver subscribed before the first scan (so the
    /// initial full state is not missed).
    pub fn start_subscribed(
        store: RepoStore,
        data_dir: PathBuf,
        options: ServiceOptions,
    ) -> (Arc<Self>, broadcast::Receiver<Arc<RepoScanned>>) {
        let store = Arc::new(store);
        let caches = Arc::new(DefinitionsCaches::new());
        let (requests, receiver) = mpsc::channel();
        let (events, first_receiver) = broadcast::channel(EVENT_CAPACITY);
        let service = Arc::new(GitService {
            store: store.clone(),
            caches: caches.clone(),
            tarballs: TarballCache::new(&data_dir.join("tarballs")),
            requests,
            events: events.clone(),
            scm: options.lister.clone(),
        });
        let worker = Worker {
            store,
            caches,
            events,
            heads: HashMap::new(),
            pins: PinUpdater::default(),
            options,
        };
        let spawned = std::thread::Builder::new()
            .name("git-service".into())
            .spawn(move || worker.run(receiver));
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the git service thread");
        }
        (service, first_receiver)
    }

    /// Receives every future [`RepoScanned`] event.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RepoScanned>> {
        self.events.subscribe()
    }

    /// Fetches (remote back ends) and rescans `repo` now. Unknown repos trigger a repo-list
    /// refresh first.
    pub fn request_scan(&self, repo: &str) {
        self.send(Request::Scan {
            repo: repo.to_owned(),
            fetch: true,
        });
    }

    /// Forgets what was seen: the next scan reports every branch and every reachable commit
    /// of every repo as new (for a consumer that just subscribed or lost its state).
    pub fn resync(&self) {
        self.send(Request::Resync);
    }

    /// The repo store (reading files and history of any repo).
    pub fn store(&self) -> &RepoStore {
        &self.store
    }

    /// The REST client of the remote back end, if any (statuses, listings).
    pub fn scm(&self) -> Option<&Arc<ScmClient>> {
        self.scm.as_ref()
    }

    /// Parses `commit` of `repo` again (e.g. a pending commit once its dependency appeared).
    pub fn parse_commit(&self, repo: &str, commit: &str) -> Result<ParseOutcome, GitError> {
        let git = self.store.open(repo)?;
        let oid = history::find_commit_id(&git, repo, commit)?;
        let metadata = history::commit_metadata(&git, repo, oid)?;
        let source =
            GitDefinitionsSource::new(&*self.store, &self.caches).with_open_repo(repo, git);
        Ok(scanner::parse_commit(&source, repo, &metadata))
    }

    /// Sets the size budget of the source tarball cache (L6).
    pub fn set_tarball_cache_budget(&self, bytes: u64) {
        self.tarballs.set_budget(bytes);
    }

    /// The path of the cached source tarball of `path` (empty: whole tree) at `commit`.
    pub fn source_tarball(
        &self,
        repo: &str,
        commit: &str,
        path: &str,
    ) -> Result<PathBuf, GitError> {
        let git = self.store.open(repo)?;
        let oid = history::find_commit_id(&git, repo, commit)?;
        self.tarballs.tarball(&git, repo, oid, path)
    }

    fn send(&self, request: Request) {
        if self.requests.send(request).is_err() {
            tracing::error!("the git service thread has stopped");
        }
    }
}

/// State of the background thread.
struct Worker {
    store: Arc<RepoStore>,
    caches: Arc<DefinitionsCaches>,
    events: broadcast::Sender<Arc<RepoScanned>>,
    heads: HashMap<String, BranchHeads>,
    pins: PinUpdater,
    options: ServiceOptions,
}

impl Worker {
    fn run(mut self, receiver: mpsc::Receiver<Request>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "git service: cannot build a runtime");
                return;
            }
        };
        self.refresh_repo_list(&runtime);
        self.scan_all(true);
        let mut next_poll = self.options.poll_interval.map(|p| Instant::now() + p);
        let mut next_fetch = self.options.fetch_interval.map(|p| Instant::now() + p);
        loop {
            let now = Instant::now();
            let deadline = [next_poll, next_fetch].into_iter().flatten().min();
            let wait = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(now)
            });
            let first = match receiver.recv_timeout(wait) {
                Ok(request) => Some(request),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut batch: Vec<Request> = first.into_iter().collect();
            batch.extend(receiver.try_iter());
            self.handle_batch(batch, &runtime);
            let now = Instant::now();
            if let (Some(at), Some(period)) = (next_fetch, self.options.fetch_interval) {
                if now >= at {
                    self.refresh_repo_list(&runtime);
                    self.scan_all(true);
                    next_fetch = Some(now + period);
                }
            }
            if let (Some(at), Some(period)) = (next_poll, self.options.poll_interval) {
                if now >= at {
                    if self.store.is_local() {
                        self.refresh_repo_list(&runtime);
                    }
                    self.scan_all(false);
                    next_poll = Some(Instant::now() + period);
                }
            }
        }
    }

    fn handle_batch(&mut self, batch: Vec<Request>, runtime: &tokio::runtime::Runtime) {
        let mut list = false;
        let mut resync = false;
        let mut repos: BTreeSet<(String, bool)> = BTreeSet::new();
        for request in batch {
            match request {
                Request::Scan { repo, fetch } => {
                    if !self.store.contains(&repo) {
                        list = true;
                    }
                    repos.insert((repo, fetch));
                }
                Request::Resync => {
                    self.heads.clear();
                    resync = true;
                }
            }
        }
        if list {
            self.refresh_repo_list(runtime);
        }
        if resync {
            self.scan_all(false);
            return;
        }
        let mut scanned = Vec::new();
        for (repo, fetch) in repos {
            if self.store.contains(&repo) && self.scan_one(&repo, fetch) {
                scanned.push(repo);
            }
        }
        if !scanned.is_empty() {
            self.update_pins();
        }
    }

    fn refresh_repo_list(&mut self, runtime: &tokio::runtime::Runtime) {
        if self.store.is_local() {
            if let Err(error) = self.store.refresh_local() {
                tracing::debug!(%error, "cannot list local repos");
            }
        } else if let Some(lister) = &self.options.lister {
            match runtime.block_on(lister.list_repos()) {
                Ok(repos) => self.store.set_remote_repos(repos.into_iter().map(
                    |RemoteRepo {
                         name, clone_url, ..
                     }| (name, clone_url),
                )),
                Err(error) => tracing::warn!(%error, "cannot list remote repos"),
            }
        }
        let known: BTreeSet<String> = self.store.repo_names().into_iter().collect();
        self.heads.retain(|name, _| known.contains(name));
    }

    fn scan_all(&mut self, fetch: bool) {
        let mut changed = false;
        for repo in self.store.repo_names() {
            changed |= self.scan_one(&repo, fetch);
        }
        if changed {
            self.update_pins();
        }
    }

    /// Fetches and scans one repo; true when something changed.
    fn scan_one(&mut self, repo: &str, fetch: bool) -> bool {
        if fetch {
            if let Err(error) = self.store.fetch(repo) {
                tracing::warn!(%error, "fetch failed");
                return false;
            }
        }
        let started = Instant::now();
        let previous = self.heads.get(repo).cloned().unwrap_or_default();
        match scanner::scan_repo(&self.store, &self.caches, repo, &previous) {
            Ok(None) => false,
            Ok(Some((event, heads))) => {
                tracing::info!(
                    repo,
                    new_commits = event.new_commits.len(),
                    deleted = event.deleted_branches.len(),
                    orphaned = event.orphaned_commits.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "repo scanned"
                );
                self.heads.insert(repo.to_owned(), heads);
                // No subscriber yet is fine: `resync` replays the state.
                let _ = self.events.send(Arc::new(event));
                true
            }
            Err(error) => {
                tracing::warn!(repo, %error, "scan failed");
                false
            }
        }
    }

    fn update_pins(&mut self) {
        if !self.options.auto_pins {
            return;
        }
        // Each round pushes the branches whose upstream pins are settled; the rescan then
        // exposes the next level. Cycles are refused by the updater, so this ends.
        for _ in 0..MAX_PIN_ROUNDS {
            let updated = self.pins.update(&self.store, &self.caches, &self.heads);
            if updated.is_empty() {
                return;
            }
            for repo in updated {
                self.scan_one(&repo, true);
            }
        }
    }
}
