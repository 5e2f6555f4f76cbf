//! Cross-repo references in the UI over real repos and a real server: the branch Pins view
//! shows every pin status (auto, unknown branch, up to date, behind with an Update button),
//! the commit page lists its Repo Refs, and "update pin" pushes a fast-forward commit that
//! rewrites only that pin's hash (the scheduler ingests it), refuses a branch that moved
//! since the page was shown (409, nothing pushed), and a GET changes nothing.

mod ui_support;

use git2::Oid;
use serde_json::{json, Value};
use std::path::Path;
use test_looper_tests::{GitRepo, RedisServer};
use ui_support::LiveServer;

const GHOST: &str = "0123456789abcdef0123456789abcdef01234567";

/// The definitions of `app`: one reference of every kind and status.
fn app_file(l1: Oid, d1: Oid) -> String {
    format!(
        "looper_version: 4
repos:
  fixed_lib: lib/{l1}
  follows_dev:
    reference: lib/{d1}
    branch: dev
    auto: true
  manual_dev:
    reference: lib/{d1}
    branch: dev
  manual_master:
    reference: lib/{l1}
    branch: master
  gone:
    reference: lib/{l1}
    branch: nosuch
  ghost:
    reference: ghost/{GHOST}
    branch: master
  late_ref: {{branch: master, reference: lib/{l1}}}
"
    )
}

struct Fixture {
    _redis: RedisServer,
    _dir: tempfile::TempDir,
    server: LiveServer,
    lib: GitRepo,
    app: GitRepo,
    l1: Oid,
    l3: Oid,
    a1: Oid,
}

async fn fixture() -> Fixture {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let lib = GitRepo::init_bare(&dir.path().join("repos/lib"));
    let l1 = lib.commit("master", "lib one", &[("l", "1")]);
    lib.commit("master", "lib two", &[("l", "2")]);
    let l3 = lib.commit("master", "lib three\n\nwith a body", &[("l", "3")]);
    let d1 = lib.commit("dev", "dev one", &[("d", "1")]);
    let app = GitRepo::init_bare(&dir.path().join("repos/app"));
    let a1 = app.commit(
        "master",
        "app pins lib",
        &[("testlooper.yml", &app_file(l1, d1))],
    );
    app.commit(
        "broken",
        "broken definitions",
        &[("testlooper.yml", "looper_version: 4\nrepos: [unclosed\n")],
    );
    let server = LiveServer::start(dir.path(), &redis.url()).await;
    Fixture {
        _redis: redis,
        _dir: dir,
        server,
        lib,
        app,
        l1,
        l3,
        a1,
    }
}

async fn get(server: &LiveServer, path: &str) -> (u16, String) {
    let response = reqwest::get(server.url(path)).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The `<tr>` of pin `name` on a Pins page.
fn pin_row<'a>(page: &'a str, name: &str) -> &'a str {
    let start = page
        .find(&format!("<tr data-pin=\"{name}\">"))
        .unwrap_or_else(|| panic!("no row for pin {name}: {page}"));
    let rest = &page[start..];
    &rest[..rest.find("</tr>").unwrap()]
}

fn pin<'a>(view: &'a Value, name: &str) -> &'a Value {
    view["pins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no pin {name} in {view}"))
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

#[actix_web::test]
async fn pins_view_shows_every_status_and_the_commit_page_its_repo_refs() {
    let f = fixture().await;
    let (status, page) = get(&f.server, "/repos/app/-/branches/master?view=pins").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("{}</a>", &f.a1.to_string()[..8])),
        "the head: {page}"
    );
    assert!(
        !page.contains("data-pin=\"fixed_lib\""),
        "fixed references are not pins"
    );

    let auto = pin_row(&page, "follows_dev");
    assert!(auto.contains("auto (moved by the server)"), "{auto}");
    assert!(!auto.contains("update_pin"), "{auto}");
    let current = pin_row(&page, "manual_dev");
    assert!(current.contains("up to date"), "{current}");
    assert!(!current.contains("update_pin"), "{current}");
    assert!(
        current.contains("href=\"/repos/lib/-/branches/dev\">lib/dev</a>"),
        "{current}"
    );
    let behind = pin_row(&page, "manual_master");
    assert!(behind.contains("behind: 2 commits"), "{behind}");
    assert!(
        behind.contains("action=\"/actions/update_pin\""),
        "{behind}"
    );
    assert!(behind.contains("name=\"csrf_token\""), "{behind}");
    assert!(
        behind.contains(&format!("name=\"head\" value=\"{}\"", f.a1)),
        "{behind}"
    );
    assert!(
        behind.contains(&format!("href=\"/repos/lib/-/commits/{}\"", f.l1)),
        "the current commit links to its page: {behind}"
    );
    let gone = pin_row(&page, "gone");
    assert!(gone.contains("unknown branch lib/nosuch"), "{gone}");
    assert!(!gone.contains("update_pin"), "{gone}");
    let ghost = pin_row(&page, "ghost");
    assert!(ghost.contains("unknown branch ghost/master"), "{ghost}");
    assert!(
        ghost.contains("class=\"mono muted\"") && ghost.contains("is not known to this server"),
        "an unknown commit is grey with a tooltip: {ghost}"
    );
    assert!(!ghost.contains("/repos/ghost/-/commits"), "{ghost}");

    // The same facts as JSON.
    let view = f
        .server
        .get_json("/api/branch_pins?repo=app&branch=master")
        .await;
    assert_eq!(view["head"], f.a1.to_string());
    assert_eq!(view["pins"].as_array().unwrap().len(), 6, "{view}");
    assert_eq!(pin(&view, "follows_dev")["status"]["kind"], "auto");
    assert_eq!(pin(&view, "manual_dev")["status"]["kind"], "up_to_date");
    assert_eq!(pin(&view, "gone")["status"]["kind"], "unknown_branch");
    assert_eq!(pin(&view, "ghost")["commit_known"], false);
    let behind = pin(&view, "manual_master");
    assert_eq!(behind["status"], json!({"kind": "behind", "commits": 2}));
    assert_eq!(behind["branch_head"], f.l3.to_string());
    assert_eq!(behind["can_update"], true);
    assert_eq!(pin(&view, "manual_dev")["can_update"], false);

    // A branch without pins, a head whose definitions do not parse, an unknown view.
    let (_, page) = get(&f.server, "/repos/lib/-/branches/master?view=pins").await;
    assert!(page.contains("Branch has no pins."), "{page}");
    let (status, page) = get(&f.server, "/repos/app/-/branches/broken?view=pins").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"pins-error\""), "{page}");
    assert!(
        page.contains("testlooper.yml"),
        "the error names the file: {page}"
    );
    let (status, _) = get(&f.server, "/repos/app/-/branches/master?view=nonsense").await;
    assert_eq!(status, 400);
    let (_, grid) = get(&f.server, "/repos/app/-/branches/master").await;
    assert!(grid.contains("?view=pins\">Pins</a>"), "the tab: {grid}");

    // Repo Refs of the commit: every reference, fixed ones too.
    let (status, page) = get(&f.server, &format!("/repos/app/-/commits/{}", f.a1)).await;
    assert_eq!(status, 200, "{page}");
    let refs = &page[page.find("id=\"repo-refs\"").expect("Repo Refs section")..];
    for name in [
        "fixed_lib",
        "follows_dev",
        "manual_dev",
        "manual_master",
        "gone",
        "ghost",
        "late_ref",
    ] {
        assert!(
            refs.contains(&format!("data-ref=\"{name}\"")),
            "{name}: {refs}"
        );
    }
    assert!(refs.contains(">fixed</td>") && refs.contains(">pin (auto)</td>"));
    let api = f
        .server
        .get_json(&format!("/api/commit_refs?repo=app&commit={}", f.a1))
        .await;
    let refs = api["refs"].as_array().unwrap();
    assert_eq!(refs.len(), 7, "{api}");
    assert_eq!(refs[0]["name"], "fixed_lib");
    assert_eq!(refs[0]["kind"], "fixed");
    assert_eq!(refs[0]["commit"], f.l1.to_string());
    assert_eq!(
        refs[0]["commit_url"],
        format!("/repos/lib/-/commits/{}", f.l1)
    );
    let (_, page) = get(&f.server, &format!("/repos/lib/-/commits/{}", f.l1)).await;
    assert!(
        page.contains("Commit has no references to external repos."),
        "{page}"
    );
    let response = reqwest::get(f.server.url("/api/branch_pins?repo=app&branch=nosuch"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = reqwest::get(f.server.url("/api/commit_refs?repo=app&commit=xyz"))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[actix_web::test]
async fn update_pin_pushes_a_fast_forward_and_refuses_a_branch_that_moved() {
    let f = fixture().await;
    let original = app_file_at(&f, f.a1);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // A GET changes nothing.
    for path in [
        "/actions/update_pin?repo=app&branch=master&pin=manual_master",
        "/api/actions/update_pin",
    ] {
        let response = client.get(f.server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 405, "{path}");
    }
    // Without the token: 403.
    let response = client
        .post(f.server.url("/api/actions/update_pin"))
        .json(&json!({"repo": "app", "branch": "master", "pin": "manual_master"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(f.app.branch_head("master"), Some(f.a1));

    // Refusals, with JSON errors and nothing pushed.
    for (body, status, code, says) in [
        (
            json!({"repo": "app", "branch": "master", "pin": "follows_dev"}),
            409,
            "conflict",
            "auto",
        ),
        (
            json!({"repo": "app", "branch": "master", "pin": "manual_dev"}),
            409,
            "conflict",
            "already points at the head of lib/dev",
        ),
        (
            json!({"repo": "app", "branch": "master", "pin": "gone"}),
            409,
            "conflict",
            "lib/nosuch, which does not exist",
        ),
        (
            json!({"repo": "app", "branch": "master", "pin": "late_ref"}),
            409,
            "conflict",
            "Failed to update the pin in the testDefinitions file",
        ),
        (
            json!({"repo": "app", "branch": "master", "pin": "fixed_lib"}),
            404,
            "not_found",
            "pin \"fixed_lib\" in the head of app/master not found",
        ),
        (
            json!({"repo": "app", "branch": "nosuch", "pin": "manual_master"}),
            404,
            "not_found",
            "branch nosuch of repo app not found",
        ),
    ] {
        let (got, answer) = f.server.act("update_pin", body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    assert_eq!(f.app.branch_head("master"), Some(f.a1));

    // The branch moved after the page was shown: 409 and nothing pushed.
    let a2 = f
        .app
        .commit("master", "unrelated change", &[("src.txt", "x")]);
    let (status, answer) = f
        .server
        .act(
            "update_pin",
            json!({"repo": "app", "branch": "master", "pin": "manual_master", "head": f.a1.to_string()}),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("moved") && message.contains(&a2.to_string()),
        "{message}"
    );
    assert_eq!(f.app.branch_head("master"), Some(a2));
    assert_eq!(
        f.app
            .repository()
            .find_commit(a2)
            .unwrap()
            .parent_ids()
            .count(),
        1
    );

    // The form on the Pins page, with the head it was rendered at: a fast-forward commit
    // that rewrites only that pin's hash, then back to the page.
    let pins_url = f.server.url("/repos/app/-/branches/master?view=pins");
    let (_, page) = get(&f.server, "/repos/app/-/branches/master?view=pins").await;
    assert!(pin_row(&page, "manual_master").contains(&format!("value=\"{a2}\"")));
    let response = client
        .post(f.server.url("/actions/update_pin"))
        .header("Referer", &pins_url)
        .form(&[
            ("csrf_token", f.server.csrf().await.as_str()),
            ("repo", "app"),
            ("branch", "master"),
            ("pin", "manual_master"),
            ("head", &a2.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        "/repos/app/-/branches/master?view=pins"
    );
    let a3 = f.app.branch_head("master").unwrap();
    assert_ne!(a3, a2);
    let commit = f.app.repository().find_commit(a3).unwrap();
    assert_eq!(
        commit.parent_ids().collect::<Vec<_>>(),
        [a2],
        "a fast-forward"
    );
    let expected = original.replacen(
        &format!("  manual_master:\n    reference: lib/{}", f.l1),
        &format!("  manual_master:\n    reference: lib/{}", f.l3),
        1,
    );
    assert_ne!(expected, original);
    assert_eq!(
        app_file_at(&f, a3),
        expected,
        "only that pin's hash changed"
    );
    let message = commit.message().unwrap();
    assert!(
        message.starts_with(&format!(
            "Updating pin manual_master:\n\nNew commit in pinned branch lib/master:\n    commit {}\n",
            f.l3
        )),
        "{message}"
    );
    assert!(message.contains("        lib three"), "{message}");

    // The new head shows at once: the scheduler ingested it, the pin is up to date.
    f.server
        .wait_for_branch("app", "master", &a3.to_string())
        .await;
    let view = f
        .server
        .get_json("/api/branch_pins?repo=app&branch=master")
        .await;
    assert_eq!(view["head"], a3.to_string());
    assert_eq!(pin(&view, "manual_master")["status"]["kind"], "up_to_date");
    assert_eq!(pin(&view, "manual_master")["commit"], f.l3.to_string());
    let (_, grid) = get(&f.server, "/repos/app/-/branches/master").await;
    assert!(grid.contains(&a3.to_string()[..8]), "{grid}");
    // lib is untouched.
    assert_eq!(f.lib.branch_head("master"), Some(f.l3));
}

fn app_file_at(f: &Fixture, commit: Oid) -> String {
    file_at(&f.app, commit, "testlooper.yml")
}
