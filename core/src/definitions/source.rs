//! How the resolver reads the outside world: the [`DefinitionsSource`] trait (files at a
//! commit, the "last commit touching a path" lookup) and the [`CommitRef`] it is keyed by.
//! The server implements it over its git mirrors, `tl` over local checkouts, tests over maps.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::discovery;
use super::limits::check_file_size;

/// A commit of a named repo. Repo names may contain `/` (`ufora/test-looper`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitRef {
    pub repo: String,
    pub commit: String,
}

impl CommitRef {
    pub fn new(repo: impl Into<String>, commit: impl Into<String>) -> Self {
        CommitRef {
            repo: repo.into(),
            commit: commit.into(),
        }
    }
}

impl std::fmt::Display for CommitRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.repo, self.commit)
    }
}

/// Why a source could not answer.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SourceError {
    /// The repo is not known (yet): the commit being resolved is *pending*.
    #[error("unknown repo {repo}")]
    UnknownRepo { repo: String },
    /// The repo is known but the commit is not (yet): *pending*.
    #[error("unknown commit {repo}/{commit}")]
    UnknownCommit { repo: String, commit: String },
    /// The file is larger than [`MAX_FILE_BYTES`](super::limits::MAX_FILE_BYTES): makes the
    /// commit untestable (H4). Build it with [`SourceError::file_too_large`].
    #[error("{message}")]
    FileTooLarge { path: String, message: String },
    /// Anything else (I/O, corrupt object...): makes the commit untestable.
    #[error("{0}")]
    Other(String),
}

impl SourceError {
    /// `Err(FileTooLarge)` when a file of `bytes` bytes is over the file size limit: for
    /// sources to call with the size they know *before* reading the file.
    pub fn check_size(path: &str, bytes: u64) -> Result<(), SourceError> {
        check_file_size(path, bytes).map_err(|e| SourceError::FileTooLarge {
            path: path.to_owned(),
            message: e.message,
        })
    }
}

/// Read access to commits of named repos.
pub trait DefinitionsSource {
    /// Every file path (repo-relative, `/`-separated) in the commit's tree.
    fn list_files(&self, commit: &CommitRef) -> Result<Vec<String>, SourceError>;

    /// The text of a file at the commit; `Ok(None)` when the commit has no such file.
    /// A file larger than [`MAX_FILE_BYTES`](super::limits::MAX_FILE_BYTES) must not be read
    /// whole: answer [`SourceError::check_size`]'s error, from its size, instead (the
    /// resolver checks the text's size again either way).
    fn read_file(&self, commit: &CommitRef, path: &str) -> Result<Option<String>, SourceError>;

    /// The most recent commit at or before `commit` that touched `path` (a file or a
    /// directory); `Ok(None)` when `path` does not exist at `commit`.
    fn last_commit_touching(
        &self,
        commit: &CommitRef,
        path: &str,
    ) -> Result<Option<String>, SourceError>;

    /// Whether `commit` names a commit whose definitions are read at all. Anything
    /// else is treated as a commit with no definitions. Default: 40 lowercase hex digits.
    fn is_valid_commit_ref(&self, commit: &str) -> bool {
        commit.len() == 40
            && commit
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    /// The path of the commit's definitions file, by the basename rule of
    /// [`discovery::find_definitions_path`]. Override to cache.
    fn definitions_path(&self, commit: &CommitRef) -> Result<Option<String>, SourceError> {
        let files = self.list_files(commit)?;
        Ok(discovery::find_definitions_path(files.iter().map(String::as_str)).map(str::to_owned))
    }
}
