//! Finding the definitions file in a commit tree: one basename rule for the server and `tl`.
//!
//! A path is a candidate when its basename is `testDefinitions.yml`,
//! `testDefinitions.json`, `testlooper.yml`, or ends with `.testlooper.yml` (including the
//! hidden `.testlooper.yml` itself, the conventional name), in any directory, and no path
//! segment is `.git`. Candidates are sorted by their full path as bytes and the first wins
//! (so `Zed.testlooper.yml` < `a.testlooper.yml` < `b/testDefinitions.yml` <
//! `testlooper.yml`). This unifies the original's two rules (docs/definitions.md#the-file):
//! unlike the original server, `sub/testlooper.yml` is a candidate.

/// Whether `path` is a definitions-file candidate.
pub fn is_definitions_file(path: &str) -> bool {
    if path.split('/').any(|segment| segment == ".git") {
        return false;
    }
    let basename = path.rsplit('/').next().unwrap_or(path);
    basename == "testDefinitions.yml"
        || basename == "testDefinitions.json"
        || basename == "testlooper.yml"
        || basename.ends_with(".testlooper.yml")
}

/// The definitions file among `paths`: the smallest candidate by byte order.
pub fn find_definitions_path<'a>(paths: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    paths
        .into_iter()
        .filter(|path| is_definitions_file(path))
        .min_by(|a, b| a.as_bytes().cmp(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e1_uppercase_sorts_first() {
        let tree = [
            "testlooper.yml",
            "b/testDefinitions.yml",
            "a.testlooper.yml",
            "z/testlooper.yml",
            "Zed.testlooper.yml",
        ];
        assert_eq!(find_definitions_path(tree), Some("Zed.testlooper.yml"));
    }

    #[test]
    fn nested_testlooper_yml_is_a_candidate_and_git_is_skipped() {
        assert_eq!(
            find_definitions_path(["src/x.rs", "sub/testlooper.yml"]),
            Some("sub/testlooper.yml")
        );
        assert_eq!(
            find_definitions_path([".git/testlooper.yml", "readme"]),
            None
        );
        assert_eq!(
            find_definitions_path(["README.md", ".testlooper.yml"]),
            Some(".testlooper.yml")
        );
        assert_eq!(
            find_definitions_path(["ci/.testlooper.yml", "testlooper.yml"]),
            Some("ci/.testlooper.yml")
        );
        assert!(is_definitions_file("ci/testDefinitions.json"));
        assert!(!is_definitions_file("ci/testDefinitions.yaml"));
    }
}
