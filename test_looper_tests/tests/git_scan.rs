//! The git service end to end: pushes into a local repo or into a repo served by a loopback
//! `git daemon` become `RepoScanned` events with only the new commits; force pushes and
//! deleted branches orphan the commits no branch reaches any more.

use std::sync::Arc;
use std::time::{Duration, Instant};
use test_looper_server::git::credentials::GitCredentials;
use test_looper_server::git::service::ServiceOptions;
use test_looper_server::git::{GitService, ParseOutcome, RepoScanned, RepoStore};
use test_looper_tests::git_repo::FileChange;
use test_looper_tests::git_server::GitDaemon;
use test_looper_tests::GitRepo;
use tokio::sync::broadcast::Receiver;

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

/// The next event of `repo`, failing after a generous timeout.
async fn next_event(events: &mut Receiver<Arc<RepoScanned>>, repo: &str) -> Arc<RepoScanned> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("no scan event within 20 s")
            .expect("event channel open");
        if event.repo == repo {
            return event;
        }
    }
}

fn hashes(event: &RepoScanned) -> Vec<String> {
    event.new_commits.iter().map(|c| c.hash.clone()).collect()
}

fn sorted(mut list: Vec<String>) -> Vec<String> {
    list.sort();
    list
}

#[tokio::test]
async fn local_pushes_force_pushes_and_deleted_branches() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    let git = GitRepo::init_bare(&root.join("group/app.git"));
    let c1 = git.commit("master", "one", &[("testlooper.yml", DEFINITIONS)]);
    let c2 = git.commit(
        "master",
        "two",
        &[("testlooper.yml", "looper_version: 4\ntests: [\n")],
    );
    let (_service, mut events) = GitService::start_subscribed(
        RepoStore::local(&root),
        dir.path().join("data"),
        ServiceOptions {
            poll_interval: Some(Duration::from_millis(100)),
            fetch_interval: None,
            lister: None,
            auto_pins: true,
        },
    );

    let initial = next_event(&mut events, "group/app").await;
    assert_eq!(initial.branches, [("master".to_string(), c2.to_string())]);
    assert_eq!(hashes(&initial), [c1.to_string(), c2.to_string()]);
    assert!(matches!(initial.new_commits[0].parse, ParseOutcome::Ok(_)));
    assert!(matches!(
        initial.new_commits[1].parse,
        ParseOutcome::Untestable { .. }
    ));
    assert_eq!(initial.new_commits[1].parents, [c1.to_string()]);

    // A push: only the new commit is reported, seen by the poll with no webhook.
    let pushed_at = Instant::now();
    let c3 = git.commit("master", "three", &[("testlooper.yml", DEFINITIONS)]);
    let pushed = next_event(&mut events, "group/app").await;
    println!("push seen after {:?}", pushed_at.elapsed());
    assert_eq!(hashes(&pushed), [c3.to_string()]);
    assert!(pushed.orphaned_commits.is_empty() && pushed.force_pushed_branches.is_empty());

    // A force push back to c1 plus a new commit: c2 and c3 are orphaned.
    let c4 = git.commit_with(
        "master",
        &[c1],
        "rewritten",
        &[FileChange::Write("x", b"x")],
    );
    let forced = next_event(&mut events, "group/app").await;
    assert_eq!(forced.force_pushed_branches, ["master"]);
    assert_eq!(hashes(&forced), [c4.to_string()]);
    assert_eq!(
        sorted(forced.orphaned_commits.clone()),
        sorted(vec![c2.to_string(), c3.to_string()])
    );

    // A branch brings c3 (and c2) back; deleting it orphans them again.
    git.set_branch("keep", c3);
    let restored = next_event(&mut events, "group/app").await;
    assert_eq!(hashes(&restored), [c2.to_string(), c3.to_string()]);
    git.delete_branch("keep");
    let deleted = next_event(&mut events, "group/app").await;
    assert_eq!(deleted.deleted_branches, ["keep"]);
    assert_eq!(
        sorted(deleted.orphaned_commits.clone()),
        sorted(vec![c2.to_string(), c3.to_string()])
    );
    assert_eq!(deleted.branches, [("master".to_string(), c4.to_string())]);
}

#[tokio::test]
async fn remote_repos_are_mirrored_over_a_loopback_git_server() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = GitDaemon::start(&dir.path().join("served"));
    let upstream = GitRepo::init_bare(&daemon.base_dir().join("org/app.git"));
    let c1 = upstream.commit("master", "one", &[("testlooper.yml", DEFINITIONS)]);
    let feature =
        upstream.commit_with("feature", &[c1], "feature", &[FileChange::Write("f", b"f")]);
    let c2 = upstream.commit("master", "two", &[("a", "a")]);
    upstream.merge("master", "feature", "merge feature");
    let merge = upstream.branch_head("master").unwrap();

    let store = RepoStore::remote(&dir.path().join("data"), GitCredentials::default());
    store.set_remote_repos([("org/app".to_string(), daemon.url("org/app.git"))]);
    let (service, mut events) = GitService::start_subscribed(
        store,
        dir.path().join("data"),
        ServiceOptions {
            poll_interval: None,
            fetch_interval: Some(Duration::from_secs(3600)),
            lister: None,
            auto_pins: true,
        },
    );
    let initial = next_event(&mut events, "org/app").await;
    assert_eq!(
        sorted(hashes(&initial)),
        sorted(vec![
            c1.to_string(),
            feature.to_string(),
            c2.to_string(),
            merge.to_string()
        ])
    );
    assert!(
        dir.path().join("data/git/org/app.git/HEAD").exists(),
        "mirrored into data_dir"
    );

    // A push upstream plus a push notification (what a webhook does): fetched and scanned.
    let c3 = upstream.commit("master", "three", &[("b", "b")]);
    let asked_at = Instant::now();
    service.request_scan("org/app");
    let pushed = next_event(&mut events, "org/app").await;
    println!(
        "fetch + scan after a push notification took {:?}",
        asked_at.elapsed()
    );
    assert_eq!(hashes(&pushed), [c3.to_string()]);

    // Force push upstream and a deleted branch: the mirror prunes, the commits are orphaned.
    upstream.set_branch("master", c1);
    upstream.delete_branch("feature");
    service.request_scan("org/app");
    let forced = next_event(&mut events, "org/app").await;
    assert_eq!(forced.deleted_branches, ["feature"]);
    assert_eq!(forced.force_pushed_branches, ["master"]);
    assert_eq!(
        sorted(forced.orphaned_commits.clone()),
        sorted(vec![
            feature.to_string(),
            c2.to_string(),
            merge.to_string(),
            c3.to_string()
        ])
    );
    // Orphaned commits stay readable (and can be pinned).
    let store = service.store();
    store.keep_commit("org/app", c3).unwrap();
    assert!(service
        .source_tarball("org/app", &c3.to_string(), "")
        .is_ok());
    assert!(matches!(
        service.parse_commit("org/app", &c1.to_string()).unwrap(),
        ParseOutcome::Ok(_)
    ));
}

#[tokio::test]
async fn fetch_errors_never_show_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let store = RepoStore::remote(
        &dir.path().join("data"),
        GitCredentials {
            https_token: Some(("x-access-token".into(), "sekrit-token-123".into())),
            ssh_key: None,
        },
    );
    store.set_remote_repos([(
        "app".to_string(),
        format!("file://{}/missing.git", dir.path().display()),
    )]);
    let error = store.fetch("app").unwrap_err().to_string();
    assert!(error.contains("fetching repo app failed"), "{error}");
    assert!(!error.contains("sekrit"), "{error}");
}
