//! A builder for real git repos: commits, branches, merges, tags and force pushes.
//!
//! Commits are written straight into the object database with libgit2 (no work tree, no
//! subprocess), with deterministic authors and timestamps, so the same script always produces
//! the same hashes.

use git2::{Oid, Repository, Signature, Time};
use std::cell::Cell;
use std::path::{Path, PathBuf};

/// First commit time of every repo built here (2026-01-01T00:00:00Z), one minute per commit.
const EPOCH: i64 = 1_767_225_600;

/// A change to one file in a commit.
#[derive(Debug, Clone)]
pub enum FileChange<'a> {
    Write(&'a str, &'a [u8]),
    Delete(&'a str),
}

/// A real git repository being built by a test.
pub struct GitRepo {
    repo: Repository,
    clock: Cell<i64>,
}

impl GitRepo {
    /// Creates a non-bare repo at `path` (with `HEAD` detached so every branch can take pushes).
    pub fn init(path: &Path) -> Self {
        std::fs::create_dir_all(path).expect("create repo dir");
        let repo = Repository::init(path).expect("git init");
        Self::wrap(repo)
    }

    /// Creates a bare repo at `path`.
    pub fn init_bare(path: &Path) -> Self {
        std::fs::create_dir_all(path).expect("create repo dir");
        Self::wrap(Repository::init_bare(path).expect("git init --bare"))
    }

    /// Opens an existing repo for more changes.
    pub fn open(path: &Path) -> Self {
        Self::wrap(Repository::open(path).expect("open repo"))
    }

    fn wrap(repo: Repository) -> Self {
        Self {
            repo,
            clock: Cell::new(EPOCH),
        }
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The repo's git dir (the repo itself when bare).
    pub fn path(&self) -> PathBuf {
        self.repo.path().to_path_buf()
    }

    /// The directory to clone from: the work tree when there is one.
    pub fn clone_path(&self) -> PathBuf {
        self.repo
            .workdir()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.path())
    }

    /// Commits `files` on top of `branch` (creating it as a root commit when absent).
    pub fn commit(&self, branch: &str, message: &str, files: &[(&str, &str)]) -> Oid {
        let changes: Vec<FileChange> = files
            .iter()
            .map(|(path, text)| FileChange::Write(path, text.as_bytes()))
            .collect();
        let parents: Vec<Oid> = self.branch_head(branch).into_iter().collect();
        self.commit_with(branch, &parents, message, &changes)
    }

    /// Commits `changes` with explicit `parents` (two or more make a merge) and moves `branch`
    /// there. The tree starts from the first parent's tree.
    pub fn commit_with(
        &self,
        branch: &str,
        parents: &[Oid],
        message: &str,
        changes: &[FileChange],
    ) -> Oid {
        let mut index = git2::Index::new().expect("index");
        if let Some(first) = parents.first() {
            let tree = self
                .repo
                .find_commit(*first)
                .expect("parent")
                .tree()
                .expect("tree");
            index.read_tree(&tree).expect("read tree");
        }
        for change in changes {
            match change {
                FileChange::Write(path, data) => {
                    let blob = self.repo.blob(data).expect("blob");
                    let entry = git2::IndexEntry {
                        ctime: git2::IndexTime::new(0, 0),
                        mtime: git2::IndexTime::new(0, 0),
                        dev: 0,
                        ino: 0,
                        mode: if path.ends_with(".sh") {
                            0o100755
                        } else {
                            0o100644
                        },
                        uid: 0,
                        gid: 0,
                        file_size: data.len() as u32,
                        id: blob,
                        flags: 0,
                        flags_extended: 0,
                        path: path.as_bytes().to_vec(),
                    };
                    index.add(&entry).expect("add to index");
                }
                FileChange::Delete(path) => {
                    index.remove_path(Path::new(path)).expect("remove path")
                }
            }
        }
        let tree_id = index.write_tree_to(&self.repo).expect("write tree");
        let tree = self.repo.find_tree(tree_id).expect("tree");
        let parent_commits: Vec<git2::Commit> = parents
            .iter()
            .map(|oid| self.repo.find_commit(*oid).expect("parent commit"))
            .collect();
        let parent_refs: Vec<&git2::Commit> = parent_commits.iter().collect();
        let signature = self.next_signature();
        let oid = self
            .repo
            .commit(None, &signature, &signature, message, &tree, &parent_refs)
            .expect("commit");
        self.set_branch(branch, oid);
        oid
    }

    /// Merges `from` into `into` with a merge commit whose tree is `into`'s plus `changes`.
    pub fn merge(&self, into: &str, from: &str, message: &str) -> Oid {
        let ours = self.branch_head(into).expect("target branch exists");
        let theirs = self.branch_head(from).expect("source branch exists");
        let merged = self
            .repo
            .merge_commits(
                &self.repo.find_commit(ours).expect("ours"),
                &self.repo.find_commit(theirs).expect("theirs"),
                None,
            )
            .expect("merge");
        assert!(!merged.has_conflicts(), "test merge has conflicts");
        let mut merged = merged;
        let tree_id = merged.write_tree_to(&self.repo).expect("write merged tree");
        let tree = self.repo.find_tree(tree_id).expect("tree");
        let signature = self.next_signature();
        let parents = [
            self.repo.find_commit(ours).expect("ours"),
            self.repo.find_commit(theirs).expect("theirs"),
        ];
        let oid = self
            .repo
            .commit(
                None,
                &signature,
                &signature,
                message,
                &tree,
                &[&parents[0], &parents[1]],
            )
            .expect("merge commit");
        self.set_branch(into, oid);
        oid
    }

    /// Points `branch` at `oid`, creating or force-moving it (a force push when it rewinds).
    pub fn set_branch(&self, branch: &str, oid: Oid) {
        self.repo
            .reference(
                &format!("refs/heads/{branch}"),
                oid,
                true,
                "test-looper harness",
            )
            .expect("update branch");
    }

    /// Deletes `branch`.
    pub fn delete_branch(&self, branch: &str) {
        self.repo
            .find_reference(&format!("refs/heads/{branch}"))
            .and_then(|mut reference| reference.delete())
            .expect("delete branch");
    }

    /// Creates a lightweight tag.
    pub fn tag(&self, name: &str, oid: Oid) {
        self.repo
            .reference(&format!("refs/tags/{name}"), oid, true, "tag")
            .expect("tag");
    }

    /// The commit `branch` points at, if it exists.
    pub fn branch_head(&self, branch: &str) -> Option<Oid> {
        self.repo
            .find_reference(&format!("refs/heads/{branch}"))
            .ok()
            .and_then(|reference| reference.target())
    }

    /// Branch names, sorted.
    pub fn branches(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .repo
            .branches(Some(git2::BranchType::Local))
            .expect("branches")
            .filter_map(|branch| branch.ok()?.0.name().ok()?.map(str::to_string))
            .collect();
        names.sort();
        names
    }

    fn next_signature(&self) -> Signature<'static> {
        let seconds = self.clock.get();
        self.clock.set(seconds + 60);
        Signature::new("Test Author", "author@example.com", &Time::new(seconds, 0))
            .expect("signature")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_history_with_merges_tags_and_force_pushes() {
        let dir = tempfile::tempdir().unwrap();
        let git = GitRepo::init_bare(&dir.path().join("repo.git"));
        let root = git.commit("master", "root", &[("a.txt", "1")]);
        let side = git.commit_with(
            "feature",
            &[root],
            "side",
            &[FileChange::Write("b/c.txt", b"2")],
        );
        let main2 = git.commit("master", "main work", &[("a.txt", "3")]);
        let merge = git.merge("master", "feature", "merge feature");
        let merged = git.repository().find_commit(merge).unwrap();
        assert_eq!(merged.parent_ids().collect::<Vec<_>>(), [main2, side]);
        let tree = merged.tree().unwrap();
        assert!(tree.get_path(Path::new("b/c.txt")).is_ok());
        git.tag("v1", merge);
        git.set_branch("master", root);
        assert_eq!(git.branch_head("master"), Some(root));
        assert_eq!(git.branches(), ["feature", "master"]);
        git.delete_branch("feature");
        assert_eq!(git.branches(), ["master"]);
        // Deterministic: the same script gives the same hashes.
        let again = GitRepo::init_bare(&dir.path().join("again.git"));
        assert_eq!(again.commit("master", "root", &[("a.txt", "1")]), root);
    }

    #[test]
    fn repos_can_pin_each_other_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let lib = GitRepo::init_bare(&dir.path().join("lib.git"));
        let lib_commit = lib.commit("master", "lib", &[("lib.txt", "x")]);
        let app = GitRepo::init_bare(&dir.path().join("app.git"));
        let pin = format!("repos:\n  lib: lib/{lib_commit}\n");
        let app_commit = app.commit("master", "pin lib", &[("testlooper.yml", &pin)]);
        let blob = app
            .repository()
            .find_commit(app_commit)
            .unwrap()
            .tree()
            .unwrap()
            .get_path(Path::new("testlooper.yml"))
            .unwrap()
            .to_object(app.repository())
            .unwrap();
        let text = std::str::from_utf8(blob.as_blob().unwrap().content())
            .unwrap()
            .to_string();
        assert!(text.contains(&lib_commit.to_string()));
    }
}
