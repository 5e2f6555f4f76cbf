//! The per-run directories on the worker's disk and their container mount points.
//!
//! Layout: `<storage>/runs/<run id>/{test_inputs,scratch,output,build_output,ccache,command,src,packages}`.
//! Container paths are the fixed ones of the runtime contract (`/test_looper/...`).
//! `command/` is mounted read-only: the worker writes every script of a job before its first
//! container starts, so no container can plant a link where a later script goes (H6).
//! [`RunDirs::host_path`] is lexical only: files a container wrote are opened through
//! [`super::confined`], which follows no link.

use std::path::{Component, Path, PathBuf};

/// Container path of every mounted directory, with the name of its host subdirectory.
pub const MOUNTS: [(&str, &str); 7] = [
    ("test_inputs", "/test_looper/test_inputs"),
    ("scratch", "/test_looper/scratch"),
    ("output", "/test_looper/output"),
    ("build_output", "/test_looper/build_output"),
    ("ccache", "/test_looper/ccache"),
    ("command", "/test_looper/command"),
    ("src", "/test_looper/src"),
];

/// The directories of one run.
#[derive(Clone, Debug)]
pub struct RunDirs {
    pub root: PathBuf,
}

impl RunDirs {
    /// Creates fresh (empty) directories for `run_id` under `storage`.
    pub fn create(storage: &Path, run_id: &str) -> std::io::Result<Self> {
        let root = storage.join("runs").join(run_id);
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        for (sub, _) in MOUNTS {
            std::fs::create_dir_all(root.join(sub))?;
        }
        std::fs::create_dir_all(root.join("packages"))?;
        Ok(Self { root })
    }

    pub fn test_inputs(&self) -> PathBuf {
        self.root.join("test_inputs")
    }
    pub fn output(&self) -> PathBuf {
        self.root.join("output")
    }
    pub fn build_output(&self) -> PathBuf {
        self.root.join("build_output")
    }
    pub fn command(&self) -> PathBuf {
        self.root.join("command")
    }
    pub fn packages(&self) -> PathBuf {
        self.root.join("packages")
    }

    /// `host:container[:ro]` bind specifications (`command/` read-only).
    pub fn binds(&self) -> Vec<String> {
        MOUNTS
            .iter()
            .map(|(sub, container)| {
                let mode = if *sub == "command" { ":ro" } else { "" };
                format!("{}:{container}{mode}", self.root.join(sub).display())
            })
            .collect()
    }

    /// Maps a container path (absolute, under a mount) to its host path; `None` when the
    /// path is outside every mount or tries to climb out with `..`.
    pub fn host_path(&self, container_path: &str) -> Option<PathBuf> {
        for (sub, mount) in MOUNTS {
            let rest = if container_path == mount {
                Some("")
            } else {
                container_path
                    .strip_prefix(mount)
                    .and_then(|r| r.strip_prefix('/'))
            };
            if let Some(rest) = rest {
                return join_inside(&self.root.join(sub), rest);
            }
        }
        None
    }
}

/// `base/relative`, refusing absolute paths and `..`.
pub fn join_inside(base: &Path, relative: &str) -> Option<PathBuf> {
    let mut path = base.to_path_buf();
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(path)
}

/// Removes a run directory. Files written by root inside containers are removable because the
/// worker runs as root or the container wrote them with the worker's permissions; anything
/// that still resists is reported.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_map_inside_mounts_only() {
        let dirs = RunDirs {
            root: PathBuf::from("/w/runs/r1"),
        };
        assert_eq!(
            dirs.host_path("/test_looper/output/logs/a.txt"),
            Some(PathBuf::from("/w/runs/r1/output/logs/a.txt"))
        );
        assert_eq!(
            dirs.host_path("/test_looper/build_output"),
            Some(PathBuf::from("/w/runs/r1/build_output"))
        );
        assert_eq!(dirs.host_path("/test_looper/output/../../etc"), None);
        assert_eq!(dirs.host_path("/etc/passwd"), None);
        assert_eq!(dirs.host_path("/test_looper/outputx/a"), None);
    }
}
