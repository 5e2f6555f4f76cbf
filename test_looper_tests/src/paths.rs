//! Well-known locations: the workspace root, the tool cache and the shared folder.

use std::path::PathBuf;

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate has a parent")
        .to_path_buf()
}

/// Cache for tools the test command installs (`$TEST_LOOPER_CACHE`, else `~/.cache/test-looper`).
pub fn tool_cache() -> PathBuf {
    if let Ok(dir) = std::env::var("TEST_LOOPER_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/test-looper")
}

/// The fixture projects under `test_looper_tests/test_projects`.
pub fn test_projects() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test_projects")
}

/// The shared specification folder next to the workspace, if present.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = workspace_root().parent()?.join("shared");
    dir.is_dir().then_some(dir)
}
