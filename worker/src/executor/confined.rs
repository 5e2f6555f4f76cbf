//! Opening what a job's containers wrote without following anything they planted (H6).
//!
//! Every path is opened one component at a time from a directory the worker created, each
//! component with `O_NOFOLLOW`: a symbolic link anywhere in the path is refused (never
//! followed, not even one pointing back inside), `..` and absolute paths are refused, and
//! only regular files are opened as files (a FIFO or device planted under a known name cannot
//! block or feed the worker; files are opened with `O_NONBLOCK` before their type is checked).
//! The opened descriptor is what the worker then reads or uploads, so swapping a file for a
//! link after the check changes nothing.

use rustix::fs::{openat, readlinkat, statat, AtFlags, Dir, FileType, Mode, OFlags, CWD};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Why a path could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConfinedError {
    #[error("{0} is outside the directory it must be under")]
    Outside(String),
    #[error("{0} is (or passes through) a symbolic link, which the worker never follows")]
    Symlink(String),
    #[error("{0} is not a regular file")]
    NotAFile(String),
    #[error("{0} is larger than {1} bytes")]
    TooLarge(String, u64),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

impl ConfinedError {
    fn from_errno(shown: &Path, errno: rustix::io::Errno) -> Self {
        let shown = shown.display().to_string();
        // O_NOFOLLOW on a link: ELOOP; O_DIRECTORY|O_NOFOLLOW on a link: ENOTDIR or ELOOP.
        if errno == rustix::io::Errno::LOOP {
            ConfinedError::Symlink(shown)
        } else {
            ConfinedError::Io(shown, errno.into())
        }
    }

    /// Whether the path simply does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ConfinedError::Io(_, e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// The components of `relative` (which must stay below its base), as names.
fn names(relative: &Path) -> Result<Vec<&OsStr>, ConfinedError> {
    let mut out = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            _ => return Err(ConfinedError::Outside(relative.display().to_string())),
        }
    }
    Ok(out)
}

/// An open directory below which paths are resolved without following links.
pub struct ConfinedDir {
    fd: OwnedFd,
    /// For messages: the host path of this directory.
    path: PathBuf,
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

impl ConfinedDir {
    /// Opens `root`, a directory the worker itself created (its own path may contain links).
    pub fn open_root(root: &Path) -> Result<Self, ConfinedError> {
        let fd = openat(
            CWD,
            root,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ConfinedError::from_errno(root, e))?;
        Ok(Self {
            fd,
            path: root.to_path_buf(),
        })
    }

    /// The metadata of this directory itself.
    pub fn metadata(&self) -> std::io::Result<std::fs::Metadata> {
        File::from(rustix::io::dup(&self.fd)?).metadata()
    }

    /// The host path of this directory (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the subdirectory `relative` (no component may be a link).
    pub fn open_dir(&self, relative: &Path) -> Result<ConfinedDir, ConfinedError> {
        let mut current: Option<OwnedFd> = None;
        let mut path = self.path.clone();
        for name in names(relative)? {
            path.push(name);
            let parent = current.as_ref().unwrap_or(&self.fd);
            let fd = openat(parent, name, DIR_FLAGS, Mode::empty()).map_err(|e| {
                if e == rustix::io::Errno::NOTDIR && self.is_link(&path) {
                    ConfinedError::Symlink(path.display().to_string())
                } else {
                    ConfinedError::from_errno(&path, e)
                }
            })?;
            current = Some(fd);
        }
        let fd = match current {
            Some(fd) => fd,
            None => rustix::io::dup(&self.fd).map_err(|e| ConfinedError::from_errno(&path, e))?,
        };
        Ok(ConfinedDir { fd, path })
    }

    fn is_link(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
    }

    /// Opens the regular file `relative` for reading (no component may be a link).
    pub fn open_file(&self, relative: &Path) -> Result<File, ConfinedError> {
        let parts = names(relative)?;
        let Some((last, parents)) = parts.split_last() else {
            return Err(ConfinedError::NotAFile(self.path.display().to_string()));
        };
        let parent_path: PathBuf = parents.iter().collect();
        let dir = self.open_dir(&parent_path)?;
        dir.open_entry_file(last)
    }

    /// Opens the regular file `name` of this directory.
    fn open_entry_file(&self, name: &OsStr) -> Result<File, ConfinedError> {
        let path = self.path.join(name);
        let fd = openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| ConfinedError::from_errno(&path, e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| ConfinedError::from_errno(&path, e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(ConfinedError::NotAFile(path.display().to_string()));
        }
        Ok(File::from(fd))
    }

    /// Creates the new file `name` in this directory (it must not exist, links included)
    /// and writes `contents` to it.
    pub fn create_file(&self, name: &str, contents: &[u8], mode: u32) -> Result<(), ConfinedError> {
        use std::io::Write;
        let path = self.path.join(name);
        if names(Path::new(name))?.len() != 1 {
            return Err(ConfinedError::Outside(name.to_string()));
        }
        let fd = openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(|e| ConfinedError::from_errno(&path, e))?;
        File::from(fd)
            .write_all(contents)
            .map_err(|e| ConfinedError::Io(path.display().to_string(), e))
    }

    /// The entries of this directory (name and type, links not followed), sorted by name.
    pub fn entries(&self) -> Result<Vec<(std::ffi::OsString, EntryKind)>, ConfinedError> {
        let dir = Dir::read_from(&self.fd).map_err(|e| ConfinedError::from_errno(&self.path, e))?;
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| ConfinedError::from_errno(&self.path, e))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes()).to_os_string();
            if name == "." || name == ".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => statat(&self.fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                    .map(|s| FileType::from_raw_mode(s.st_mode))
                    .unwrap_or(FileType::Unknown),
                known => known,
            };
            let kind = match kind {
                FileType::RegularFile => EntryKind::File,
                FileType::Directory => EntryKind::Dir,
                FileType::Symlink => EntryKind::Symlink,
                _ => EntryKind::Other,
            };
            out.push((name, kind));
        }
        out.sort();
        Ok(out)
    }

    /// The target of the link `name` of this directory (the link itself, never followed).
    pub fn read_link(&self, name: &OsStr) -> Result<PathBuf, ConfinedError> {
        let target = readlinkat(&self.fd, name, Vec::new())
            .map_err(|e| ConfinedError::from_errno(&self.path.join(name), e))?;
        Ok(PathBuf::from(OsStr::from_bytes(target.to_bytes())))
    }
}

/// What a directory entry is (links are never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// FIFO, socket, device: never read.
    Other,
}

/// Opens the regular file at host path `path`, which must be below `root`, with no link
/// followed below `root`.
pub fn open_file_beneath(root: &Path, path: &Path) -> Result<File, ConfinedError> {
    let relative = path
        .strip_prefix(root)
        .map_err(|_| ConfinedError::Outside(path.display().to_string()))?;
    ConfinedDir::open_root(root)?.open_file(relative)
}

/// Reads the whole of `file` when it holds at most `limit` bytes.
pub fn read_bounded(mut file: File, shown: &Path, limit: u64) -> Result<Vec<u8>, ConfinedError> {
    let mut bytes = Vec::new();
    (&mut file)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ConfinedError::Io(shown.display().to_string(), e))?;
    if bytes.len() as u64 > limit {
        return Err(ConfinedError::TooLarge(shown.display().to_string(), limit));
    }
    Ok(bytes)
}

/// Every regular file below `relative` of `root`, as paths relative to `root`'s `relative`
/// directory, with their open handles passed to `visit` one by one; links and special files
/// are skipped (never followed). A missing directory visits nothing.
pub fn walk_files(
    root: &ConfinedDir,
    relative: &Path,
    visit: &mut dyn FnMut(&Path, File),
) -> Result<(), ConfinedError> {
    let start = match root.open_dir(relative) {
        Ok(dir) => dir,
        Err(error) if error.is_not_found() => return Ok(()),
        Err(error) => return Err(error),
    };
    let mut pending: Vec<(PathBuf, ConfinedDir)> = vec![(PathBuf::new(), start)];
    while let Some((prefix, dir)) = pending.pop() {
        for (name, kind) in dir.entries()? {
            let path = prefix.join(&name);
            match kind {
                EntryKind::Dir => match dir.open_dir(Path::new(&name)) {
                    Ok(sub) => pending.push((path, sub)),
                    // Swapped for a link or removed meanwhile: skipped, never followed.
                    Err(_) => continue,
                },
                EntryKind::File => {
                    if let Ok(file) = dir.open_entry_file(&name) {
                        visit(&path, file);
                    }
                }
                EntryKind::Symlink | EntryKind::Other => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_never_followed_and_special_files_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "secret").unwrap();
        std::fs::create_dir_all(root.join("out/sub")).unwrap();
        std::fs::write(root.join("out/sub/ok.txt"), "ok").unwrap();
        symlink(outside.path().join("secret"), root.join("out/leak")).unwrap();
        symlink(outside.path(), root.join("out/dirlink")).unwrap();
        symlink("sub/ok.txt", root.join("out/inside")).unwrap();
        rustix::fs::mknodat(
            CWD,
            root.join("out/fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let confined = ConfinedDir::open_root(root).unwrap();
        let mut read = String::new();
        confined
            .open_file(Path::new("out/sub/ok.txt"))
            .unwrap()
            .read_to_string(&mut read)
            .unwrap();
        assert_eq!(read, "ok");
        for refused in ["out/leak", "out/dirlink/secret", "out/inside"] {
            let error = confined.open_file(Path::new(refused)).unwrap_err();
            assert!(
                matches!(error, ConfinedError::Symlink(_)),
                "{refused}: {error}"
            );
        }
        assert!(matches!(
            confined.open_file(Path::new("out/fifo")).unwrap_err(),
            ConfinedError::NotAFile(_)
        ));
        assert!(matches!(
            confined
                .open_file(Path::new("out/../../etc/passwd"))
                .unwrap_err(),
            ConfinedError::Outside(_)
        ));
        let mut seen = Vec::new();
        walk_files(&confined, Path::new("out"), &mut |path, _| {
            seen.push(path.to_path_buf())
        })
        .unwrap();
        assert_eq!(seen, vec![PathBuf::from("sub/ok.txt")]);
        assert!(matches!(
            open_file_beneath(root, Path::new("/etc/passwd")).unwrap_err(),
            ConfinedError::Outside(_)
        ));
    }

    #[test]
    fn created_files_never_replace_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "untouched").unwrap();
        std::fs::create_dir(dir.path().join("command")).unwrap();
        symlink(&target, dir.path().join("command/cleanup_0.sh")).unwrap();
        let confined = ConfinedDir::open_root(&dir.path().join("command")).unwrap();
        assert!(confined.create_file("cleanup_0.sh", b"x", 0o644).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
        confined.create_file("cmd_0.sh", b"echo", 0o644).unwrap();
    }

    #[test]
    fn reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![b'x'; 100]).unwrap();
        let file = open_file_beneath(dir.path(), &dir.path().join("big")).unwrap();
        assert!(matches!(
            read_bounded(file, Path::new("big"), 99).unwrap_err(),
            ConfinedError::TooLarge(_, 99)
        ));
        let file = open_file_beneath(dir.path(), &dir.path().join("big")).unwrap();
        assert_eq!(
            read_bounded(file, Path::new("big"), 100).unwrap().len(),
            100
        );
    }
}
