//! An in-memory [`DefinitionsSource`]: a "world" of commits, each a map from path to file
//! text. Used by tests, the conformance suite, the fuzzer and the bench; handy for any
//! caller that already holds the files.

use std::collections::BTreeMap;

use super::source::{CommitRef, DefinitionsSource, SourceError};

/// Commits by `(repo, commit)`, each a map from path to text.
#[derive(Clone, Debug, Default)]
pub struct MemorySource {
    commits: BTreeMap<CommitRef, BTreeMap<String, String>>,
    last_touch: BTreeMap<(CommitRef, String), String>,
    any_ref_is_valid: bool,
    all_paths_exist: bool,
}

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Accept any commit ref except `HEAD` as a valid commit (instead of 40-hex only).
    pub fn accepting_any_ref(mut self) -> Self {
        self.any_ref_is_valid = true;
        self
    }

    /// Treat every sub-path as existing (for single-snapshot worlds that hold only the
    /// definitions files, like the conformance cases).
    pub fn assuming_paths_exist(mut self) -> Self {
        self.all_paths_exist = true;
        self
    }

    /// Add (or replace) a file of a commit; the commit is created if needed.
    pub fn add_file(&mut self, repo: &str, commit: &str, path: &str, text: &str) -> &mut Self {
        self.commits
            .entry(CommitRef::new(repo, commit))
            .or_default()
            .insert(path.to_owned(), text.to_owned());
        self
    }

    /// Declare that the last commit touching `path` at `commit` is `last` (default: the
    /// commit itself, when the path exists).
    pub fn set_last_touch(
        &mut self,
        repo: &str,
        commit: &str,
        path: &str,
        last: &str,
    ) -> &mut Self {
        self.last_touch.insert(
            (CommitRef::new(repo, commit), path.to_owned()),
            last.to_owned(),
        );
        self
    }

    fn files(&self, commit: &CommitRef) -> Result<&BTreeMap<String, String>, SourceError> {
        match self.commits.get(commit) {
            Some(files) => Ok(files),
            None if self.commits.keys().any(|c| c.repo == commit.repo) => {
                Err(SourceError::UnknownCommit {
                    repo: commit.repo.clone(),
                    commit: commit.commit.clone(),
                })
            }
            None => Err(SourceError::UnknownRepo {
                repo: commit.repo.clone(),
            }),
        }
    }
}

impl DefinitionsSource for MemorySource {
    fn list_files(&self, commit: &CommitRef) -> Result<Vec<String>, SourceError> {
        Ok(self.files(commit)?.keys().cloned().collect())
    }

    fn read_file(&self, commit: &CommitRef, path: &str) -> Result<Option<String>, SourceError> {
        match self.files(commit)?.get(path) {
            Some(text) => {
                SourceError::check_size(path, text.len() as u64)?;
                Ok(Some(text.clone()))
            }
            None => Ok(None),
        }
    }

    fn last_commit_touching(
        &self,
        commit: &CommitRef,
        path: &str,
    ) -> Result<Option<String>, SourceError> {
        let files = self.files(commit)?;
        let trimmed = path.trim_matches('/');
        let exists = self.all_paths_exist
            || files.contains_key(trimmed)
            || files
                .keys()
                .any(|f| f.starts_with(trimmed) && f[trimmed.len()..].starts_with('/'));
        if !exists {
            return Ok(None);
        }
        Ok(Some(
            self.last_touch
                .get(&(commit.clone(), trimmed.to_owned()))
                .cloned()
                .unwrap_or_else(|| commit.commit.clone()),
        ))
    }

    fn is_valid_commit_ref(&self, commit: &str) -> bool {
        if self.any_ref_is_valid {
            commit != "HEAD"
        } else {
            commit.len() == 40
                && commit
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        }
    }
}
