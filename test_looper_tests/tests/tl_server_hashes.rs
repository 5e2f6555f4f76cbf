//! `tl info` and the server resolve every commit of a merge history to the same identity
//! hashes (issue 13). A source dependency on a path resolves to the last commit that touched
//! the path, and that commit feeds the hash; here the path changes only on the second parent
//! of a merge, where a first-parent-only walk (the old `tl` reader) answers the merge itself
//! and the server answers the side commit. The server's side is the scanner's
//! [`GitDefinitionsSource`] over the repo store; `tl`'s side is the real `tl` binary run in a
//! checkout of each commit.

use git2::Oid;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use test_looper_core::definitions::{resolve_commit, CommitRef};
use test_looper_server::git::definitions_source::{DefinitionsCaches, GitDefinitionsSource};
use test_looper_server::git::store::RepoStore;
use test_looper_tests::git_repo::FileChange;
use test_looper_tests::install::tl_binary;
use test_looper_tests::GitRepo;

/// `app`'s definitions: source dependencies on paths of its own tree and of repo `lib` at
/// `lib_commit`, a build that depends on one, a test that depends on the build.
fn definitions(lib_commit: Oid) -> String {
    format!(
        "looper_version: 4
repos: {{lib: lib/{lib_commit}}}
environments:
  linux: {{platform: linux, image: {{dockerfile_contents: \"FROM test-looper/base:1\"}}}}
builds:
  core/linux: {{command: make, dependencies: {{src: HEAD/source/src}}}}
tests:
  unit/linux:
    command: test
    dependencies:
      core: core/linux
      docs: HEAD/source/docs
      libsrc: lib/source/src
      whole: HEAD
"
    )
}

/// Every `"hash"` in `value`, by its JSON path.
fn hashes(value: &Value, path: &str, found: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let here = format!("{path}/{key}");
                match (key.as_str(), inner) {
                    ("hash", Value::String(hash)) => {
                        found.insert(here, hash.clone());
                    }
                    _ => hashes(inner, &here, found),
                }
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                hashes(inner, &format!("{path}/{i}"), found);
            }
        }
        _ => {}
    }
}

/// `tl info --json` with `HEAD` of the checkout `workdir` detached at `commit`.
fn tl_info(workdir: &Path, repos: &Path, commit: Oid) -> Value {
    let repo = git2::Repository::open(workdir).expect("open checkout");
    repo.set_head_detached(commit).expect("detach HEAD");
    repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
        .expect("check out");
    let output = Command::new(tl_binary())
        .args(["info", "--json", "--repo-name", "app", "--repos"])
        .arg(repos)
        .current_dir(workdir)
        .output()
        .expect("run tl");
    assert!(
        output.status.success(),
        "tl info at {commit}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("tl prints JSON")
}

#[test]
fn tl_info_and_the_server_give_every_commit_of_a_merge_history_the_same_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");

    // lib: `src` changes only on the second parent of the merge.
    let lib = GitRepo::init_bare(&root.join("lib"));
    lib.commit("master", "lib", &[("src/a.rs", "a"), ("README", "1")]);
    let lib_side = lib.commit_with(
        "side",
        &[lib.branch_head("master").unwrap()],
        "lib side",
        &[FileChange::Write("src/b.rs", b"b")],
    );
    lib.commit("master", "lib readme", &[("README", "2")]);
    let lib_merge = lib.merge("master", "side", "merge side");

    // app: a non-bare repo (tl runs in its work tree, the server reads it in place).
    let app = GitRepo::init(&root.join("app"));
    let yml = definitions(lib_merge);
    let base = app.commit(
        "master",
        "base",
        &[
            ("testlooper.yml", yml.as_str()),
            ("src/main.rs", "1"),
            ("docs/index.md", "1"),
            ("README", "1"),
        ],
    );
    let main2 = app.commit("master", "readme 2", &[("README", "2")]);
    // `src` changes only on the side branch, which is merged as the second parent.
    let side = app.commit_with(
        "feature",
        &[base],
        "feature: src",
        &[FileChange::Write("src/feature.rs", b"f")],
    );
    let merge1 = app.merge("master", "feature", "merge feature");
    let after = app.commit("master", "readme 3", &[("README", "3")]);
    // `docs` from the second parent, `src` from the first.
    let side2 = app.commit_with(
        "docs",
        &[after],
        "docs",
        &[FileChange::Write("docs/more.md", b"m")],
    );
    let main3 = app.commit("master", "src again", &[("src/main.rs", "2")]);
    let merge2 = app.merge("master", "docs", "merge docs");
    let commits = [base, main2, side, merge1, after, side2, main3, merge2];

    let store = RepoStore::local(&root);
    store.refresh_local().unwrap();
    let caches = DefinitionsCaches::new();
    let source = GitDefinitionsSource::new(&store, &caches);
    let workdir = app.clone_path();

    for commit in commits {
        let server = resolve_commit(&CommitRef::new("app", commit.to_string()), &source)
            .unwrap_or_else(|e| panic!("the server resolves {commit}: {e}"));
        let server = serde_json::to_value(server).unwrap();
        let tl = tl_info(&workdir, &root, commit);

        let (mut server_hashes, mut tl_hashes) = (BTreeMap::new(), BTreeMap::new());
        hashes(&server, "", &mut server_hashes);
        hashes(&tl, "", &mut tl_hashes);
        assert!(server_hashes.len() >= 3, "{server_hashes:?}");
        assert_eq!(tl_hashes, server_hashes, "hashes of {commit}");
        assert_eq!(tl, server, "everything tl info prints for {commit}");
    }

    // The history does exercise the second parent: the server's answers.
    let at = |commit: Oid| {
        let resolved =
            resolve_commit(&CommitRef::new("app", commit.to_string()), &source).expect("resolves");
        let deps = |name: &str| {
            let definition = &resolved.definitions[name];
            serde_json::to_value(&definition.dependencies).unwrap()
        };
        (deps("core/linux"), deps("unit/linux"))
    };
    let (core, unit) = at(merge1);
    assert_eq!(core["src"]["commit"], side.to_string());
    assert_eq!(unit["libsrc"]["commit"], lib_side.to_string());
    let (core, unit) = at(after);
    assert_eq!(core["src"]["commit"], side.to_string());
    assert_eq!(unit["docs"]["commit"], base.to_string());
    let (core, unit) = at(merge2);
    assert_eq!(core["src"]["commit"], main3.to_string());
    assert_eq!(unit["docs"]["commit"], side2.to_string());
}
