//! Redis key names (all under the `tl:` prefix). See the layout table in [`super`].

pub const META: &str = "tl:meta";
pub const COMMITS: &str = "tl:commits";
pub const COMMIT_SETTINGS: &str = "tl:commit_settings";
pub const COMMIT_PRIORITY: &str = "tl:commit_priority";
pub const BRANCHES: &str = "tl:branches";
pub const TESTS: &str = "tl:tests";
pub const RUNS: &str = "tl:runs";
pub const MACHINES: &str = "tl:machines";
pub const DEPLOYMENTS: &str = "tl:deployments";
pub const HUNTS: &str = "tl:hunts";
pub const QUARANTINED_TESTS: &str = "tl:quarantined_tests";
pub const QUARANTINE_LOG: &str = "tl:quarantine_log";
pub const NEXT_ID: &str = "tl:next_id";
pub const FEED: &str = "tl:feed";
pub const QUARANTINE: &str = "tl:quarantine";

/// Approximate length the feed stream is trimmed to.
pub const FEED_MAX_LEN: usize = 10_000;

/// Field of a (repo, name-or-hash) pair inside a hash: `repo` + newline + `name`
/// (neither repo names nor branch names nor hashes contain a newline).
pub fn pair_field(repo: &str, name: &str) -> String {
    format!("{repo}\n{name}")
}

/// Inverse of [`pair_field`].
pub fn split_pair_field(field: &str) -> Option<(String, String)> {
    field
        .split_once('\n')
        .map(|(repo, name)| (repo.to_string(), name.to_string()))
}
