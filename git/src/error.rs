//! Errors of git access.

use thiserror::Error;

/// Why a git operation failed. Messages never contain credentials.
#[derive(Debug, Error)]
pub enum GitError {
    #[error("unknown repo {0}")]
    UnknownRepo(String),
    #[error("unknown commit {commit} in repo {repo}")]
    UnknownCommit { repo: String, commit: String },
    #[error("git error in repo {repo}: {message}")]
    Git { repo: String, message: String },
    #[error("fetching repo {repo} failed: {message}")]
    Fetch { repo: String, message: String },
    #[error("pushing to repo {repo} failed: {message}")]
    Push { repo: String, message: String },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl GitError {
    /// Wraps a libgit2 error of `repo`.
    pub fn git(repo: &str, error: git2::Error) -> Self {
        GitError::Git {
            repo: repo.to_owned(),
            message: error.message().to_owned(),
        }
    }
}
