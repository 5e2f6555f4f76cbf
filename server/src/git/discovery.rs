//! Discovery of the git repos below a local `path_to_repos` directory.
//!
//! A directory is a repo when it is a bare repo (`HEAD` + `objects/`) or has a `.git` entry; repo
//! names are paths relative to the root, so `group/name` nests. Discovery does not descend into
//! repos, skips hidden directories and follows no symlinks.

use std::path::{Path, PathBuf};

/// Deepest nesting of repo names (`a/b/c/d`).
const MAX_DEPTH: usize = 4;

/// A repo found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRepo {
    /// Name relative to the root, with `/` separators.
    pub name: String,
    pub path: PathBuf,
}

/// Lists every repo below `root`, sorted by name.
pub fn discover(root: &Path) -> std::io::Result<Vec<LocalRepo>> {
    let mut found = Vec::new();
    walk(root, root, 0, &mut found)?;
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn walk(root: &Path, dir: &Path, depth: usize, found: &mut Vec<LocalRepo>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') || !entry.file_type()?.is_dir() {
            continue;
        }
        let path = entry.path();
        if is_repo(&path) {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            found.push(LocalRepo {
                name: name.trim_end_matches(".git").to_string(),
                path,
            });
        } else if depth + 1 < MAX_DEPTH {
            walk(root, &path, depth + 1, found)?;
        }
    }
    Ok(())
}

fn is_repo(path: &Path) -> bool {
    path.join(".git").exists() || (path.join("HEAD").is_file() && path.join("objects").is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_and_bare_repos() {
        let root = tempfile::tempdir().unwrap();
        for dir in [
            "plain/.git",
            "group/inner/.git",
            "bare.git/objects",
            ".hidden/.git",
        ] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("bare.git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::create_dir_all(root.path().join("plain/sub/.git")).unwrap();
        let names: Vec<_> = discover(root.path())
            .unwrap()
            .into_iter()
            .map(|repo| repo.name)
            .collect();
        assert_eq!(names, ["bare", "group/inner", "plain"]);
    }
}
