//! The repo store over real repos: branches, history walks through merges, commit metadata,
//! files at any commit, "last commit touching", source tarballs, and definitions parsing
//! through the git `DefinitionsSource`.

use std::io::Read;
use test_looper_server::git::definitions_source::{DefinitionsCaches, GitDefinitionsSource};
use test_looper_server::git::ParseOutcome;
use test_looper_server::git::{files, history, scanner, store::RepoStore, tarball::TarballCache};
use test_looper_tests::git_repo::FileChange;
use test_looper_tests::GitRepo;

const DEFINITIONS: &str = "looper_version: 4
environments:
  linux:
    platform: linux
    image:
      dockerfile_contents: \"FROM test-looper/base:1\"
tests:
  unit/linux:
    command: \"true\"
";

fn parse(
    store: &RepoStore,
    caches: &DefinitionsCaches,
    repo: &str,
    commit: git2::Oid,
) -> ParseOutcome {
    let git = store.open(repo).unwrap();
    let metadata = history::commit_metadata(&git, repo, commit).unwrap();
    let source = GitDefinitionsSource::new(store, caches);
    scanner::parse_commit(&source, repo, &metadata)
}

#[test]
fn nested_local_repos_branches_merges_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    let git = GitRepo::init_bare(&root.join("group/app.git"));
    GitRepo::init(&root.join("plain"));
    let base = git.commit("master", "base\n\nlong body", &[("a.txt", "1")]);
    let side = git.commit_with(
        "feature",
        &[base],
        "side",
        &[FileChange::Write("lib/x.txt", b"x")],
    );
    let main2 = git.commit("master", "main work", &[("a.txt", "2")]);
    let merge = git.merge("master", "feature", "merge feature");
    git.tag("v1", base);
    git.set_branch("weird(name)", base);

    let store = RepoStore::local(&root);
    assert_eq!(store.refresh_local().unwrap(), ["group/app", "plain"]);
    let repo = store.open("group/app").unwrap();
    let branches = history::branches(&repo, "group/app").unwrap();
    assert_eq!(
        branches,
        [("feature".to_string(), side), ("master".to_string(), merge)],
        "tags and names with ( are not branches"
    );

    let walked = history::walk(&repo, "group/app", &[merge], &[]).unwrap();
    assert_eq!(walked.len(), 4);
    assert_eq!(walked.first(), Some(&base), "parents come first");
    assert_eq!(walked.last(), Some(&merge));
    let position = |oid| walked.iter().position(|w| *w == oid).unwrap();
    assert!(position(side) < position(merge) && position(main2) < position(merge));
    // Only what a new head adds is walked.
    assert_eq!(
        history::walk(&repo, "group/app", &[merge], &[main2]).unwrap(),
        [side, merge]
    );

    let meta = history::commit_metadata(&repo, "group/app", merge).unwrap();
    assert_eq!(meta.parents, [main2.to_string(), side.to_string()]);
    assert_eq!(meta.author, "Test Author");
    assert_eq!(meta.author_email, "author@example.com");
    assert_eq!(meta.subject, "merge feature");
    let first = history::commit_metadata(&repo, "group/app", base).unwrap();
    assert_eq!(first.subject, "base");
    assert_eq!(first.message, "base\n\nlong body");
    assert!(first.timestamp < meta.timestamp);
    assert!(history::find_commit_id(&repo, "group/app", "nothex").is_err());
    assert_eq!(
        history::find_commit_id(&repo, "group/app", &merge.to_string()[..10]).unwrap(),
        merge
    );
}

#[test]
fn files_at_any_commit_and_last_commit_touching_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    let git = GitRepo::init_bare(&root.join("app"));
    let c1 = git.commit("master", "one", &[("lib/a.txt", "a1"), ("readme", "r")]);
    let c2 = git.commit("master", "two", &[("readme", "r2")]);
    let side = git.commit_with(
        "side",
        &[c2],
        "side lib",
        &[FileChange::Write("lib/b.txt", b"b")],
    );
    let c3 = git.commit("master", "three", &[("readme", "r3")]);
    let merge = git.merge("master", "side", "merge side");
    let store = RepoStore::local(&root);
    store.refresh_local().unwrap();
    let repo = store.open("app").unwrap();

    let tree = files::commit_tree(&repo, "app", c1).unwrap();
    assert_eq!(files::read_blob(&repo, &tree, "lib/a.txt").unwrap(), b"a1");
    assert!(
        files::read_blob(&repo, &tree, "lib").is_none(),
        "a directory is not a file"
    );
    assert!(files::read_blob(&repo, &tree, "../etc/passwd").is_none());
    let listed =
        files::list_files(&files::commit_tree(&repo, "app", merge).unwrap(), "app").unwrap();
    assert_eq!(listed, ["lib/a.txt", "lib/b.txt", "readme"]);

    let touching = |at, path| files::last_commit_touching(&repo, "app", at, path).unwrap();
    assert_eq!(touching(c3, "lib"), Some(c1));
    assert_eq!(
        touching(merge, "lib"),
        Some(side),
        "the merge follows the parent that changed it"
    );
    assert_eq!(touching(merge, "readme"), Some(c3));
    assert_eq!(touching(merge, "lib/a.txt"), Some(c1));
    assert_eq!(touching(c1, "missing"), None);
}

#[test]
fn source_tarballs_are_deterministic_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    let git = GitRepo::init_bare(&root.join("app"));
    let commit = git.commit(
        "master",
        "files",
        &[
            ("src/main.c", "int main;"),
            ("src/run.sh", "echo hi"),
            ("top.txt", "t"),
        ],
    );
    let store = RepoStore::local(&root);
    store.refresh_local().unwrap();
    let repo = store.open("app").unwrap();
    let cache = TarballCache::new(&dir.path().join("tarballs"));
    let whole = cache.tarball(&repo, "app", commit, "").unwrap();
    let sub = cache.tarball(&repo, "app", commit, "src").unwrap();
    assert_ne!(whole, sub);
    let bytes = std::fs::read(&whole).unwrap();
    let rebuilt =
        test_looper_server::git::tarball::build_tarball(&repo, "app", commit, "").unwrap();
    assert_eq!(bytes, rebuilt, "same commit, same bytes");
    // Served from the cache the second time.
    let modified = std::fs::metadata(&whole).unwrap().modified().unwrap();
    assert_eq!(cache.tarball(&repo, "app", commit, "/").unwrap(), whole);
    assert_eq!(
        std::fs::metadata(&whole).unwrap().modified().unwrap(),
        modified
    );

    let mut entries = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&sub).unwrap(),
    ));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mode = entry.header().mode().unwrap();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        entries.push((path, mode, text));
    }
    assert_eq!(
        entries,
        [
            ("main.c".to_string(), 0o644, "int main;".to_string()),
            ("run.sh".to_string(), 0o755, "echo hi".to_string()),
        ]
    );
    assert!(
        cache.tarball(&repo, "app", commit, "top.txt").is_err(),
        "a file is not a directory"
    );
    assert!(cache.tarball(&repo, "app", commit, "nope").is_err());
}

#[test]
fn the_tarball_cache_keeps_to_its_budget_evicting_the_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    let git = GitRepo::init_bare(&root.join("app"));
    let commit = git.commit(
        "master",
        "files",
        &[
            ("a/f.txt", "aaaa"),
            ("b/f.txt", "bbbb"),
            ("c/f.txt", "cccc"),
        ],
    );
    let store = RepoStore::local(&root);
    store.refresh_local().unwrap();
    let repo = store.open("app").unwrap();
    let cache = TarballCache::new(&dir.path().join("tarballs"));
    let a = cache.tarball(&repo, "app", commit, "a").unwrap();
    let one = std::fs::metadata(&a).unwrap().len();
    // Room for two tarballs of this size.
    cache.set_budget(2 * one + one / 2);
    let b = cache.tarball(&repo, "app", commit, "b").unwrap();
    // `a` is served again, so `b` is now the least recently used.
    assert_eq!(cache.tarball(&repo, "app", commit, "a").unwrap(), a);
    let c = cache.tarball(&repo, "app", commit, "c").unwrap();
    assert!(a.is_file() && c.is_file());
    assert!(!b.exists(), "the least recently used tarball is evicted");
    assert!(cache.cached_bytes() <= 2 * one + one / 2);
    // An evicted tarball is built again on demand, with the same bytes.
    let again = cache.tarball(&repo, "app", commit, "b").unwrap();
    assert_eq!(
        std::fs::read(&again).unwrap(),
        test_looper_server::git::tarball::build_tarball(&repo, "app", commit, "b").unwrap()
    );
    // A new cache over the same directory (a restart) knows what is there.
    let restarted = TarballCache::new(&dir.path().join("tarballs"));
    assert_eq!(restarted.cached_bytes(), cache.cached_bytes());
}

#[test]
fn definitions_parse_outcomes_through_git() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    let lib = GitRepo::init_bare(&root.join("lib"));
    let lib_head = lib.commit("master", "lib", &[("lib.txt", "x")]);
    let app = GitRepo::init_bare(&root.join("app"));
    let none = app.commit("master", "no tests yet", &[("readme", "r")]);
    let ok = app.commit("master", "tests", &[("ci/app.testlooper.yml", DEFINITIONS)]);
    let broken = app.commit(
        "master",
        "broken",
        &[("ci/app.testlooper.yml", "looper_version: 4\ntests: [\n")],
    );
    let pinned_text = format!(
        "looper_version: 4\nrepos:\n  lib:\n    reference: lib/{lib_head}\n    branch: master\n    auto: true\n"
    );
    let pinned = app.commit(
        "master",
        "pin lib",
        &[("ci/app.testlooper.yml", &pinned_text)],
    );
    let missing = app.commit(
        "master",
        "pin unknown",
        &[(
            "ci/app.testlooper.yml",
            &format!(
                "{DEFINITIONS}    dependencies:\n      code: other/source/lib\nrepos:\n  other: nowhere/0123456789012345678901234567890123456789\n"
            ),
        )],
    );
    let store = RepoStore::local(&root);
    store.refresh_local().unwrap();
    let caches = DefinitionsCaches::new();

    assert_eq!(parse(&store, &caches, "app", none), ParseOutcome::NoTests);
    match parse(&store, &caches, "app", ok) {
        ParseOutcome::Ok(resolved) => {
            assert_eq!(
                resolved.definitions_path.as_deref(),
                Some("ci/app.testlooper.yml")
            );
            assert!(resolved.definitions.contains_key("unit/linux"));
        }
        other => panic!("expected Ok, got {other:?}"),
    }
    match parse(&store, &caches, "app", broken) {
        ParseOutcome::Untestable { message, .. } => {
            assert!(message.contains("app.testlooper.yml"), "{message}")
        }
        other => panic!("expected Untestable, got {other:?}"),
    }
    match parse(&store, &caches, "app", pinned) {
        ParseOutcome::Ok(resolved) => {
            let reference = resolved.repos["lib"].reference();
            assert_eq!(reference.commit, lib_head.to_string());
        }
        other => panic!("expected Ok, got {other:?}"),
    }
    match parse(&store, &caches, "app", missing) {
        ParseOutcome::Pending { repo, .. } => assert_eq!(repo, "nowhere"),
        other => panic!("expected Pending, got {other:?}"),
    }
}
