//! Errors of definitions resolution: *pending* (a repo or commit is not available yet) or
//! *invalid* (the commit is untestable), the latter naming the file, the path inside the
//! document (e.g. `tests."foo/linux".dependencies.src`) and the line/column when known.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::source::{CommitRef, SourceError};

/// Where in the definitions an error was found.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorLocation {
    /// The file (repo, commit, path), when the error belongs to one file.
    pub file: Option<FileRef>,
    /// Path inside the document, e.g. `tests."foo/linux".dependencies.src`; empty for the root.
    pub document_path: String,
    /// 1-based line and column, when the YAML gives them.
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// A file at a commit.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct FileRef {
    pub commit: CommitRef,
    pub path: String,
}

impl std::fmt::Display for FileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.commit, self.path)
    }
}

impl std::fmt::Display for ErrorLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(file) = &self.file {
            parts.push(file.to_string());
        }
        if let (Some(line), Some(column)) = (self.line, self.column) {
            parts.push(format!("line {line} column {column}"));
        }
        if !self.document_path.is_empty() {
            parts.push(format!("at {}", self.document_path));
        }
        write!(f, "{}", parts.join(", "))
    }
}

/// Why a commit's definitions could not be resolved.
#[derive(Clone, Debug, Error, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DefinitionsError {
    /// A referenced repo (or a commit of it) is not available yet: resolve again later.
    #[error("pending: {}", pending_text(repo, commit))]
    Pending {
        repo: String,
        commit: Option<String>,
    },
    /// The definitions are invalid: the commit is untestable with this message.
    #[error("{}", invalid_text(message, location))]
    Invalid {
        message: String,
        location: Box<ErrorLocation>,
    },
}

fn pending_text(repo: &str, commit: &Option<String>) -> String {
    match commit {
        Some(commit) => format!("commit {commit} of repo {repo} is not available"),
        None => format!("repo {repo} is not known"),
    }
}

fn invalid_text(message: &str, location: &ErrorLocation) -> String {
    let where_ = location.to_string();
    if where_.is_empty() {
        message.to_owned()
    } else {
        format!("{where_}: {message}")
    }
}

impl DefinitionsError {
    /// An invalid-definitions error with no location yet.
    pub fn invalid(message: impl Into<String>) -> Self {
        DefinitionsError::Invalid {
            message: message.into(),
            location: Box::default(),
        }
    }

    /// True for [`DefinitionsError::Pending`].
    pub fn is_pending(&self) -> bool {
        matches!(self, DefinitionsError::Pending { .. })
    }

    /// Fill in the file when it is not known yet.
    pub fn in_file(mut self, file: &FileRef) -> Self {
        if let DefinitionsError::Invalid { location, .. } = &mut self {
            if location.file.is_none() {
                location.file = Some(file.clone());
            }
        }
        self
    }

    /// Prefix the message with context (e.g. `While processing test T:`).
    pub fn context(mut self, prefix: &str) -> Self {
        if let DefinitionsError::Invalid { message, .. } = &mut self {
            *message = format!("{prefix}\n{message}");
        }
        self
    }
}

impl From<SourceError> for DefinitionsError {
    fn from(error: SourceError) -> Self {
        match error {
            SourceError::UnknownRepo { repo } => DefinitionsError::Pending { repo, commit: None },
            SourceError::UnknownCommit { repo, commit } => DefinitionsError::Pending {
                repo,
                commit: Some(commit),
            },
            SourceError::FileTooLarge { message, .. } | SourceError::Other(message) => {
                DefinitionsError::invalid(message)
            }
        }
    }
}

/// An invalid-definitions error at a document path and source position.
pub(crate) fn invalid_at(
    message: impl Into<String>,
    path: &super::path::DocPath<'_>,
    mark: super::node::Mark,
) -> DefinitionsError {
    let (line, column) = match mark.known() {
        Some((line, column)) => (Some(line), Some(column)),
        None => (None, None),
    };
    DefinitionsError::Invalid {
        message: message.into(),
        location: Box::new(ErrorLocation {
            file: None,
            document_path: path.render(),
            line,
            column,
        }),
    }
}
