//! The web UI and JSON API over real HTTP against real git repos: the branch grid, commit
//! pages with highlighted definitions or their error, HTML escaping, path validation, JSON
//! errors, and that actions are POST-only with CSRF (a GET changes nothing).

use test_looper_tests::server::local_config;
use test_looper_tests::{GitRepo, RedisServer, TestServer};

const GOOD: &str = "looper_version: 4\nenvironments: {linux: {platform: linux, image: {dockerfile_contents: \"FROM x\"}}}\nbuilds:\n  build/linux: {command: \"make\"}\ntests:\n  core/linux: {command: \"./core\", dependencies: {b: build/linux}}\n  ui/linux: {command: \"./ui\"}\n";
const BROKEN: &str = "looper_version: 4\nenvironments: {linux: {platform: linux, image: {dockerfile_contents: \"FROM x\"}}}\ntests:\n  t/linux: {command: [unclosed\n";

struct Fixture {
    _redis: RedisServer,
    _dir: tempfile::TempDir,
    server: TestServer,
    good: String,
    broken: String,
    escaped: String,
}

fn fixture() -> Fixture {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::init_bare(&dir.path().join("repos/group/app"));
    let good = repo
        .commit("master", "first good commit", &[("testlooper.yml", GOOD)])
        .to_string();
    let escaped = repo
        .commit(
            "master",
            "<script>alert('x')</script> & <b>bold</b>",
            &[("src.txt", "1")],
        )
        .to_string();
    let broken = repo
        .commit("master", "break the yml", &[("testlooper.yml", BROKEN)])
        .to_string();
    let server = TestServer::start(local_config(dir.path(), &redis.url()));
    Fixture {
        _redis: redis,
        _dir: dir,
        server,
        good,
        broken,
        escaped,
    }
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[actix_web::test]
async fn branch_grid_groups_by_project_escapes_markup_and_marks_untestable() {
    let f = fixture();
    let (status, page) = get(&f.server.url("/repos/group/app/-/branches/master")).await;
    assert_eq!(status, 200, "{page}");
    // Columns grouped by project (core, ui; the build's project is "build").
    for project in ["build", "core", "ui"] {
        assert!(
            page.contains(&format!("<th class=\"group\">{project}</th>")),
            "{page}"
        );
    }
    // Newest first: broken, escaped, good.
    let broken = page.find(&f.broken[..8]).unwrap();
    let escaped = page.find(&f.escaped[..8]).unwrap();
    let good = page.find(&f.good[..8]).unwrap();
    assert!(broken < escaped && escaped < good);
    assert!(page.contains("cell-untestable"), "{page}");
    assert!(page.contains("cell-not-enabled"));
    assert!(!page.contains("<script>alert"), "markup must be escaped");
    assert!(page.contains("&#60;script&#62;alert") || page.contains("&lt;script&gt;alert"));
    assert!(page.contains("<svg class=\"graph\""));
    // Pagination.
    let (_, first) = get(&f
        .server
        .url("/repos/group/app/-/branches/master?per_page=2"))
    .await;
    assert!(first.contains("rel=\"next\""));
    assert!(!first.contains(&f.good[..8]));
    let (_, second) = get(&f
        .server
        .url("/repos/group/app/-/branches/master?per_page=2&page=1"))
    .await;
    assert!(second.contains(&f.good[..8]) && second.contains("rel=\"prev\""));
}

#[actix_web::test]
async fn commit_page_shows_highlighted_definitions_or_the_error_with_its_line() {
    let f = fixture();
    let (status, page) = get(&f
        .server
        .url(&format!("/repos/group/app/-/commits/{}", f.good)))
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<span class=\"y-key\">tests</span>"),
        "{page}"
    );
    for name in ["build/linux", "core/linux", "ui/linux"] {
        assert!(page.contains(&format!("data-test=\"{name}\"")), "{name}");
    }
    let (status, page) = get(&f
        .server
        .url(&format!("/repos/group/app/-/commits/{}", f.broken)))
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"definitions-error\""), "{page}");
    assert!(page.contains("testlooper.yml"), "{page}");
    assert!(page.contains("class=\"error-line\""), "{page}");
    // The API carries the same facts.
    let api: serde_json::Value = reqwest::get(
        f.server
            .url(&format!("/api/commit?repo=group/app&commit={}", f.broken)),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(api["parse"]["kind"], "untestable");
    assert!(
        api["definitions_file"]["error_line"].as_u64().is_some(),
        "{api}"
    );
}

#[actix_web::test]
async fn bad_names_are_rejected_and_api_errors_are_json() {
    let f = fixture();
    for path in [
        "/repos/..%2F..%2Fetc",
        "/repos/group/app/-/branches/..",
        "/repos/group/app/-/commits/nothex",
    ] {
        let (status, page) = get(&f.server.url(path)).await;
        assert_eq!(status, 400, "{path}: {page}");
        assert!(page.contains("Invalid URL provided"));
    }
    let response = reqwest::get(f.server.url("/api/repo?repo=../../etc"))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_name");
    let response = reqwest::get(f.server.url("/api/repo?repo=nosuch"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = reqwest::get(f.server.url("/api/runs/r1")).await.unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["status"], 404);
    let openapi: serde_json::Value = reqwest::get(f.server.url("/api/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(openapi["paths"]["/api/branch"].is_object());
}

#[actix_web::test]
async fn actions_are_post_only_with_csrf() {
    let f = fixture();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // A GET to an action URL changes nothing.
    let get = client
        .get(
            f.server
                .url("/actions/branch?repo=group/app&branch=master&under_test=true"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    let get = client
        .get(f.server.url("/api/actions/branch"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    // POST without the token: 403.
    let form = [
        ("repo", "group/app"),
        ("branch", "master"),
        ("under_test", "true"),
    ];
    let response = client
        .post(f.server.url("/actions/branch"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = client
        .post(f.server.url("/api/actions/branch"))
        .json(&serde_json::json!({"repo": "group/app", "branch": "master", "under_test": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "csrf");
    // With the token from the page, a bad name is still a 400.
    let (_, page) = self::get(&f.server.url("/repos")).await;
    let token = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let response = client
        .post(f.server.url("/api/actions/branch"))
        .header("X-CSRF-Token", &token)
        .json(&serde_json::json!({"repo": "../../etc", "branch": "master", "under_test": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}
