//! Git scanning benchmarks (issue 4), on a generated real repo:
//!
//! - **full walk**: a fresh scan of a 10,000-commit branch that reads the definitions file
//!   of every commit (by the basename rule over the whole tree) and resolves it with the
//!   core resolver, exactly what the git service does for a newly watched repo;
//! - **rescan after a push**: one new commit on top of the 10,000-commit branch, scanned
//!   against the previous heads with warm caches (what a push webhook triggers).
//!
//! The repo has ~120 files in 6 directories; every commit changes one source file and every
//! 10th commit also edits the definitions file (the demo project's `.testlooper.yml`).
//!
//! Run: `cargo run --release -p test_looper_tests --bin bench_git [-- COMMITS]`.

use git2::{Oid, Repository, Signature, Time};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use test_looper_server::git::definitions_source::DefinitionsCaches;
use test_looper_server::git::scanner::{scan_repo, BranchHeads};
use test_looper_server::git::{history, ParseOutcome, RepoStore};

const DEFINITIONS: &str = include_str!("../../test_projects/simple_project/.testlooper.yml");
const DIRS: usize = 6;
const FILES_PER_DIR: usize = 20;

/// Writes `commits` commits on `master`, returning the head.
fn generate(repo: &Repository, commits: usize) -> Oid {
    let mut index = git2::Index::new().unwrap();
    let add = |index: &mut git2::Index, path: &str, text: &str| {
        let blob = repo.blob(text.as_bytes()).unwrap();
        index
            .add(&git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                file_size: text.len() as u32,
                id: blob,
                flags: 0,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            })
            .unwrap();
    };
    for d in 0..DIRS {
        for f in 0..FILES_PER_DIR {
            add(
                &mut index,
                &format!("dir{d}/file{f}.txt"),
                &format!("{d} {f} 0\n"),
            );
        }
    }
    add(
        &mut index,
        "docker/Dockerfile",
        include_str!("../../test_projects/simple_project/docker/Dockerfile"),
    );
    let mut parent: Option<Oid> = None;
    for i in 0..commits {
        let d = i % DIRS;
        let f = (i / DIRS) % FILES_PER_DIR;
        add(
            &mut index,
            &format!("dir{d}/file{f}.txt"),
            &format!("{d} {f} {i}\n"),
        );
        if i % 10 == 0 {
            let text = DEFINITIONS.replace("GREETING: hello", &format!("GREETING: hello{i}"));
            add(&mut index, "testlooper.yml", &text);
        }
        parent = Some(commit(
            repo,
            &mut index,
            parent,
            &format!("commit {i}"),
            i as i64,
        ));
    }
    parent.unwrap()
}

fn commit(
    repo: &Repository,
    index: &mut git2::Index,
    parent: Option<Oid>,
    message: &str,
    i: i64,
) -> Oid {
    let tree = repo.find_tree(index.write_tree_to(repo).unwrap()).unwrap();
    let signature = Signature::new(
        "Bench",
        "bench@example.com",
        &Time::new(1_767_225_600 + i * 60, 0),
    )
    .unwrap();
    let parents: Vec<git2::Commit> = parent
        .into_iter()
        .map(|p| repo.find_commit(p).unwrap())
        .collect();
    let parent_refs: Vec<&git2::Commit> = parents.iter().collect();
    let oid = repo
        .commit(None, &signature, &signature, message, &tree, &parent_refs)
        .unwrap();
    repo.reference("refs/heads/master", oid, true, "bench")
        .unwrap();
    oid
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let commits: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    let repo = Repository::init_bare(root.join("bench.git")).unwrap();
    let started = Instant::now();
    let mut head = generate(&repo, commits);
    println!("generated {commits} commits in {:.2?}", started.elapsed());
    let store = RepoStore::local(&root);
    store.refresh_local().unwrap();

    // Revwalk alone, for context.
    let started = Instant::now();
    let walked = history::walk(&repo, "bench", &[head], &[]).unwrap();
    println!(
        "revwalk alone: {} commits in {:.2?}",
        walked.len(),
        started.elapsed()
    );

    // Full walk + definitions of every commit, fresh caches each time.
    let mut full = Vec::new();
    let mut heads = BranchHeads::new();
    for _ in 0..3 {
        let caches = DefinitionsCaches::new();
        let started = Instant::now();
        let (event, new_heads) = scan_repo(&store, &caches, "bench", &BTreeMap::new())
            .unwrap()
            .unwrap();
        full.push(started.elapsed());
        assert_eq!(event.new_commits.len(), commits);
        let ok = event
            .new_commits
            .iter()
            .filter(|c| matches!(&c.parse, ParseOutcome::Ok(r) if r.definitions.len() == 5))
            .count();
        assert_eq!(
            ok, commits,
            "every commit resolves to its 5 definitions; first: {:?}",
            event.new_commits[0].parse
        );
        heads = new_heads;
    }
    let full_median = median(full.clone());
    println!(
        "full walk + parse of {commits} commits: median {:.3?} (runs {:.3?}), {:.1} µs/commit",
        full_median,
        full,
        full_median.as_secs_f64() * 1e6 / commits as f64
    );

    // Rescan after a push of one commit, warm caches (the running service's state).
    let caches = DefinitionsCaches::new();
    scan_repo(&store, &caches, "bench", &BTreeMap::new()).unwrap();
    let mut index = git2::Index::new().unwrap();
    index
        .read_tree(&repo.find_commit(head).unwrap().tree().unwrap())
        .unwrap();
    let mut rescans = Vec::new();
    for i in 0..30 {
        let blob = repo.blob(format!("push {i}\n").as_bytes()).unwrap();
        let mut entry = index.get_path(Path::new("dir0/file0.txt"), 0).unwrap();
        entry.id = blob;
        index.add(&entry).unwrap();
        head = commit(
            &repo,
            &mut index,
            Some(head),
            &format!("push {i}"),
            (commits + i) as i64,
        );
        let started = Instant::now();
        let (event, new_heads) = scan_repo(&store, &caches, "bench", &heads)
            .unwrap()
            .unwrap();
        rescans.push(started.elapsed());
        assert_eq!(event.new_commits.len(), 1);
        assert!(matches!(event.new_commits[0].parse, ParseOutcome::Ok(_)));
        heads = new_heads;
    }
    let mut sorted = rescans.clone();
    sorted.sort();
    println!(
        "rescan after a 1-commit push onto a {commits}-commit branch: median {:.3?}, min {:.3?}, max {:.3?} ({} pushes)",
        median(rescans),
        sorted[0],
        sorted[sorted.len() - 1],
        sorted.len()
    );
}
