//! Auto-updating floating pins over real repos: when a followed branch moves, the pinning
//! branch gets a fast-forward commit that rewrites only the hash; a linear run of upstream
//! commits is followed one commit at a time; chains update upstream first; cycles are left
//! alone.

use git2::Oid;
use std::path::Path;
use std::time::{Duration, Instant};
use test_looper_server::git::service::ServiceOptions;
use test_looper_server::git::{GitService, RepoStore};
use test_looper_tests::GitRepo;

fn pin_file(name: &str, target_repo: &str, hash: &str) -> String {
    format!(
        "looper_version: 4\n# keep this comment\nrepos:\n  {name}:\n    reference: {target_repo}/{hash}\n    branch: master\n    auto: true\n"
    )
}

fn start(root: &Path, data: &Path) -> std::sync::Arc<GitService> {
    GitService::start(
        RepoStore::local(root),
        data.to_path_buf(),
        ServiceOptions {
            poll_interval: Some(Duration::from_millis(50)),
            fetch_interval: None,
            lister: None,
            auto_pins: true,
        },
    )
}

fn file_at(repo: &GitRepo, commit: Oid, path: &str) -> String {
    let tree = repo
        .repository()
        .find_commit(commit)
        .unwrap()
        .tree()
        .unwrap();
    let blob = tree
        .get_path(Path::new(path))
        .unwrap()
        .to_object(repo.repository())
        .unwrap();
    String::from_utf8(blob.as_blob().unwrap().content().to_vec()).unwrap()
}

/// Waits until `repo`'s master satisfies `done`, returning the head.
fn wait_for_head(repo: &GitRepo, mut done: impl FnMut(Oid) -> bool) -> Oid {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let head = repo.branch_head("master").unwrap();
        if done(head) {
            return head;
        }
        assert!(
            Instant::now() < deadline,
            "master never reached the expected state"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn message(repo: &GitRepo, commit: Oid) -> String {
    repo.repository()
        .find_commit(commit)
        .unwrap()
        .message()
        .unwrap()
        .to_string()
}

#[test]
fn moving_a_followed_branch_commits_pin_updates_one_upstream_commit_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    let lib = GitRepo::init_bare(&root.join("lib.git"));
    let l1 = lib.commit("master", "lib one", &[("l", "1")]);
    let app = GitRepo::init_bare(&root.join("app.git"));
    let a1 = app.commit(
        "master",
        "app",
        &[("testlooper.yml", &pin_file("lib", "lib", &l1.to_string()))],
    );
    let _service = start(&root, &dir.path().join("data"));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        app.branch_head("master"),
        Some(a1),
        "an up-to-date pin is left alone"
    );

    let l2 = lib.commit("master", "lib two\n\nwith a body", &[("l", "2")]);
    let a2 = wait_for_head(&app, |head| head != a1);
    let commit = app.repository().find_commit(a2).unwrap();
    assert_eq!(
        commit.parent_ids().collect::<Vec<_>>(),
        [a1],
        "a fast-forward"
    );
    assert_eq!(commit.author().name().unwrap(), "test_looper");
    assert_eq!(
        file_at(&app, a2, "testlooper.yml"),
        pin_file("lib", "lib", &l2.to_string()),
        "only the hash changed"
    );
    let text = message(&app, a2);
    assert!(
        text.starts_with("Updating pin lib:\n\nNew commit in pinned branch lib/master:\n"),
        "{text}"
    );
    assert!(text.contains(&format!("    commit {l2}")), "{text}");
    assert!(text.contains("        lib two"), "{text}");

    // Two commits at once, linear: one pin commit per upstream commit.
    let l3 = lib.commit("master", "lib three", &[("l", "3")]);
    let l4 = lib.commit("master", "lib four", &[("l", "4")]);
    let a4 = wait_for_head(&app, |head| {
        file_at(&app, head, "testlooper.yml").contains(&l4.to_string())
    });
    let a3 = app
        .repository()
        .find_commit(a4)
        .unwrap()
        .parent_id(0)
        .unwrap();
    assert!(file_at(&app, a3, "testlooper.yml").contains(&l3.to_string()));
    assert_eq!(
        app.repository()
            .find_commit(a3)
            .unwrap()
            .parent_id(0)
            .unwrap(),
        a2
    );
}

#[test]
fn chains_update_upstream_first_and_cycles_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    let lib = GitRepo::init_bare(&root.join("lib.git"));
    let l1 = lib.commit("master", "lib", &[("l", "1")]);
    let mid = GitRepo::init_bare(&root.join("mid.git"));
    let m1 = mid.commit(
        "master",
        "mid",
        &[("testlooper.yml", &pin_file("lib", "lib", &l1.to_string()))],
    );
    let top = GitRepo::init_bare(&root.join("top.git"));
    let t1 = top.commit(
        "master",
        "top",
        &[("testlooper.yml", &pin_file("mid", "mid", &m1.to_string()))],
    );
    // A cycle: a follows b and b follows a.
    let a = GitRepo::init_bare(&root.join("a.git"));
    let b = GitRepo::init_bare(&root.join("b.git"));
    let b0 = b.commit("master", "b0", &[("x", "0")]);
    let a1 = a.commit(
        "master",
        "a1",
        &[("testlooper.yml", &pin_file("b", "b", &b0.to_string()))],
    );
    let b1 = b.commit(
        "master",
        "b1",
        &[("testlooper.yml", &pin_file("a", "a", &a1.to_string()))],
    );
    let _service = start(&root, &dir.path().join("data"));

    let l2 = lib.commit("master", "lib two", &[("l", "2")]);
    let m2 = wait_for_head(&mid, |head| head != m1);
    assert!(file_at(&mid, m2, "testlooper.yml").contains(&l2.to_string()));
    let t2 = wait_for_head(&top, |head| head != t1);
    assert!(
        file_at(&top, t2, "testlooper.yml").contains(&m2.to_string()),
        "top follows mid's pin-update commit"
    );
    assert!(message(&top, t2).contains("New commit in pinned branch mid/master:"));

    // By now the cycle has been scanned many times and nothing was pushed.
    assert_eq!(a.branch_head("master"), Some(a1));
    assert_eq!(b.branch_head("master"), Some(b1));
}
