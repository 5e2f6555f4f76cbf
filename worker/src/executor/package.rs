//! Artifact packaging: a directory (filtered by include/exclude globs) into a gzip tarball,
//! and safe extraction of tarballs into an input directory. Blocking; call from
//! `spawn_blocking`. Packing walks the directory through [`super::confined`]: links are stored
//! as links and never followed, so a test cannot pack host files into its artifact (H6).

use super::confined::{ConfinedDir, EntryKind};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::fs::File;
use std::path::{Path, PathBuf};
use test_looper_core::definitions::glob::fnmatch;

/// Writes `dir` as a `.tar.gz` to `dest`: regular files kept when they match an include
/// pattern (if any) and no exclude pattern (on the path relative to `dir`); directories and
/// symlinks always kept. A missing directory gives an empty tarball. Returns the file count.
pub fn pack_directory(
    dir: &Path,
    include: &[String],
    exclude: &[String],
    dest: &Path,
) -> std::io::Result<usize> {
    pack_directory_below(dir, Path::new(""), include, exclude, dest)
}

/// [`pack_directory`] of `root/relative`, where no component of `relative` (nor anything
/// inside it) is followed if it is a link: a linked directory is an error.
pub fn pack_directory_below(
    root: &Path,
    relative: &Path,
    include: &[String],
    exclude: &[String],
    dest: &Path,
) -> std::io::Result<usize> {
    let start = match ConfinedDir::open_root(root).and_then(|r| r.open_dir(relative)) {
        Ok(dir) => Some(dir),
        Err(error) if error.is_not_found() => None,
        Err(error) => return Err(std::io::Error::other(error.to_string())),
    };
    let file = File::create(dest)?;
    let mut builder = tar::Builder::new(GzEncoder::new(file, Compression::fast()));
    let mut count = 0;
    let mut pending: Vec<(PathBuf, ConfinedDir)> =
        start.into_iter().map(|d| (PathBuf::new(), d)).collect();
    while let Some((prefix, current)) = pending.pop() {
        for (name, kind) in current
            .entries()
            .map_err(|e| std::io::Error::other(e.to_string()))?
        {
            let path = prefix.join(&name);
            let relative = path.to_string_lossy().replace('\\', "/");
            match kind {
                EntryKind::Dir => {
                    let Ok(sub) = current.open_dir(Path::new(&name)) else {
                        continue;
                    };
                    let mut header = tar::Header::new_gnu();
                    header.set_metadata(&sub.metadata()?);
                    builder.append_data(&mut header, &relative, std::io::empty())?;
                    pending.push((path, sub));
                }
                EntryKind::Symlink => {
                    let target = current
                        .read_link(&name)
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    let mut header = tar::Header::new_gnu();
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, &relative, &target)?;
                }
                EntryKind::File => {
                    let included =
                        include.is_empty() || include.iter().any(|p| fnmatch(p, &relative));
                    let excluded = exclude.iter().any(|p| fnmatch(p, &relative));
                    if !included || excluded {
                        continue;
                    }
                    // Swapped for something else meanwhile: skipped, never followed.
                    let Ok(file) = current.open_file(Path::new(&name)) else {
                        continue;
                    };
                    let metadata = file.metadata()?;
                    let mut header = tar::Header::new_gnu();
                    header.set_metadata(&metadata);
                    // A file that grows meanwhile is cut at the size in its header.
                    let data = std::io::Read::take(file, metadata.len());
                    builder.append_data(&mut header, &relative, data)?;
                    count += 1;
                }
                EntryKind::Other => {}
            }
        }
    }
    builder.into_inner()?.finish()?.sync_all()?;
    Ok(count)
}

/// Extracts a `.tar.gz` into `dest` (created). Entries that would land outside `dest`
/// (absolute paths, `..`, writes through symlinks) are refused by `tar`'s `unpack_in`.
pub fn extract_tarball(tarball: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    let file = File::open(tarball)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.unpack_in(dest)? {
            let path = entry.path()?.display().to_string();
            return Err(std::io::Error::other(format!(
                "archive entry {path} points outside the destination"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_with_patterns_and_extracts_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("lib/deep")).unwrap();
        std::fs::write(src.join("a.txt"), "a").unwrap();
        std::fs::write(src.join("lib/deep/b.so"), "b").unwrap();
        std::fs::write(src.join("lib/c.o"), "c").unwrap();
        let tarball = dir.path().join("out.tar.gz");
        let count = pack_directory(
            &src,
            &["*.so".into(), "*.txt".into()],
            &["a.*".into()],
            &tarball,
        )
        .unwrap();
        assert_eq!(count, 1);
        let out = dir.path().join("out");
        extract_tarball(&tarball, &out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("lib/deep/b.so")).unwrap(),
            "b"
        );
        assert!(!out.join("a.txt").exists());
        assert!(!out.join("lib/c.o").exists());
    }

    #[test]
    fn a_missing_directory_packs_empty() {
        let dir = tempfile::tempdir().unwrap();
        let tarball = dir.path().join("empty.tar.gz");
        assert_eq!(
            pack_directory(&dir.path().join("none"), &[], &[], &tarball).unwrap(),
            0
        );
        extract_tarball(&tarball, &dir.path().join("x")).unwrap();
    }

    #[test]
    fn traversal_entries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tarball = dir.path().join("evil.tar.gz");
        {
            let file = File::create(&tarball).unwrap();
            let mut builder = tar::Builder::new(GzEncoder::new(file, Compression::fast()));
            let mut header = tar::Header::new_gnu();
            let data = b"pwned";
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            // Bypass the builder's own path checks to forge a hostile entry.
            header.as_gnu_mut().unwrap().name[..12].copy_from_slice(b"../evil.txt\0");
            header.set_cksum();
            builder.append(&header, &data[..]).unwrap();
            builder.into_inner().unwrap().finish().unwrap();
        }
        let dest = dir.path().join("dest");
        let _ = extract_tarball(&tarball, &dest);
        assert!(!dir.path().join("evil.txt").exists());
    }
}
