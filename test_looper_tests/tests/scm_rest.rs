//! GitHub and GitLab REST clients against a small loopback stand-in of their APIs (the only
//! stand-in allowed: no real GitHub runs here): paginated repo and branch listings, commit
//! statuses (and switching them off), errors without tokens, and a GitHub back end whose
//! repos are listed over REST and cloned from a real loopback `git daemon`.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_looper_server::config::{Config, GithubSourceControl, GitlabSourceControl};
use test_looper_server::git::GitService;
use test_looper_server::scm::{CommitState, CommitStatus, ScmClient, ScmError};
use test_looper_tests::git_server::GitDaemon;
use test_looper_tests::GitRepo;

/// One request the stand-in received.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    uri: String,
    auth: String,
    body: serde_json::Value,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// The stand-in: answers by method and raw URI, records every request.
async fn forge(request: HttpRequest, body: web::Bytes, log: web::Data<Log>) -> HttpResponse {
    let uri = request.uri().to_string();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let auth = format!("{}{}", header("authorization"), header("private-token"));
    log.lock().unwrap().push(Received {
        method: request.method().to_string(),
        uri: uri.clone(),
        auth: auth.clone(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    if auth != "Bearer gh-token" && auth != "gl-token" {
        return HttpResponse::Unauthorized()
            .json(serde_json::json!({"message": "Bad credentials"}));
    }
    let host = format!("http://{}", request.connection_info().host());
    let json = |value: serde_json::Value| HttpResponse::Ok().json(value);
    match (request.method().as_str(), uri.as_str()) {
        // GitHub: two pages of repos, linked with `Link`.
        ("GET", "/orgs/acme/repos?per_page=100") => HttpResponse::Ok()
            .insert_header((
                "link",
                format!("<{host}/orgs/acme/repos?per_page=100&page=2>; rel=\"next\", <{host}/orgs/acme/repos?per_page=100&page=2>; rel=\"last\""),
            ))
            .json(serde_json::json!([
                {"id": 1, "name": "app", "full_name": "acme/app", "private": false},
                {"id": 2, "name": "lib", "full_name": "acme/lib", "private": true}
            ])),
        ("GET", "/orgs/acme/repos?per_page=100&page=2") => json(serde_json::json!([
            {"id": 3, "name": "tools", "full_name": "acme/tools", "private": false}
        ])),
        ("GET", "/repos/acme/app/branches?per_page=100") => HttpResponse::Ok()
            .insert_header((
                "link",
                format!("<{host}/repos/acme/app/branches?per_page=100&page=2>; rel=\"next\""),
            ))
            .json(serde_json::json!([
                {"name": "master", "commit": {"sha": "a".repeat(40), "url": "x"}, "protected": true}
            ])),
        ("GET", "/repos/acme/app/branches?per_page=100&page=2") => json(serde_json::json!([
            {"name": "feature/x", "commit": {"sha": "b".repeat(40), "url": "x"}, "protected": false}
        ])),
        ("POST", path) if path.starts_with("/repos/acme/app/statuses/") => {
            HttpResponse::Created().json(serde_json::json!({"id": 1, "state": "pending"}))
        }
        // GitLab: pages by `X-Next-Page`, subgroups included, one project outside the group.
        ("GET", "/groups/acme/projects?include_subgroups=true&per_page=100&order_by=id&sort=asc&page=1") => {
            HttpResponse::Ok()
                .insert_header(("x-next-page", "2"))
                .json(serde_json::json!([
                    {"id": 10, "path_with_namespace": "acme/app", "name": "app"},
                    {"id": 11, "path_with_namespace": "acme/sub/proj", "name": "proj"}
                ]))
        }
        ("GET", "/groups/acme/projects?include_subgroups=true&per_page=100&order_by=id&sort=asc&page=2") => {
            HttpResponse::Ok()
                .insert_header(("x-next-page", ""))
                .json(serde_json::json!([
                    {"id": 12, "path_with_namespace": "acmeother/x", "name": "x"}
                ]))
        }
        ("GET", "/projects/acme%2Fsub%2Fproj/repository/branches?per_page=100&page=1") => {
            HttpResponse::Ok()
                .insert_header(("x-next-page", ""))
                .json(serde_json::json!([
                    {"name": "master", "commit": {"id": "c".repeat(40)}}
                ]))
        }
        ("POST", path) if path.starts_with("/projects/acme%2Fsub%2Fproj/statuses/") => {
            HttpResponse::Created().json(serde_json::json!({"id": 7}))
        }
        _ => HttpResponse::NotFound().json(serde_json::json!({"message": "Not Found"})),
    }
}

/// Starts the stand-in on a free loopback port; returns its base URL and request log.
fn start_forge() -> (String, Log) {
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let data = web::Data::new(log.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(forge))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    (format!("http://{addr}"), log)
}

fn github(api: &str, token: &str, statuses: bool, clone_url: &str) -> GithubSourceControl {
    serde_json::from_value(serde_json::json!({
        "owner": "org:acme",
        "access_token": token,
        "webhook_secret": "s",
        "api_url": api,
        "web_url": "https://github.example.com",
        "clone_url": clone_url,
        "post_commit_statuses": statuses,
    }))
    .unwrap()
}

fn gitlab(api: &str, statuses: bool) -> GitlabSourceControl {
    serde_json::from_value(serde_json::json!({
        "group": "acme",
        "private_token": "gl-token",
        "api_url": api,
        "web_url": "https://gitlab.example.com",
        "post_commit_statuses": statuses,
    }))
    .unwrap()
}

fn status(state: CommitState) -> CommitStatus {
    CommitStatus {
        state,
        target_url: "http://looper.example.com/repos/acme/app/-/commits/abc".into(),
        description: "3 of 4 tests passed".into(),
    }
}

#[actix_web::test]
async fn github_listings_follow_link_pages_and_statuses_are_posted() {
    let (api, log) = start_forge();
    let client = ScmClient::github(&github(&api, "gh-token", true, "git@github.com"));
    let repos = client.list_repos().await.unwrap();
    let names: Vec<_> = repos.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["app", "lib", "tools"]);
    assert_eq!(repos[0].clone_url, "git@github.com:acme/app.git");
    let branches = client.list_branches("app").await.unwrap();
    assert_eq!(
        branches,
        [
            ("master".to_string(), "a".repeat(40)),
            ("feature/x".to_string(), "b".repeat(40))
        ]
    );
    let sha = "d".repeat(40);
    assert!(client
        .post_status("app", &sha, &status(CommitState::Failure))
        .await
        .unwrap());
    let posted = log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(posted.method, "POST");
    assert_eq!(posted.uri, format!("/repos/acme/app/statuses/{sha}"));
    assert_eq!(posted.body["state"], "failure");
    assert_eq!(posted.body["context"], "test-looper");
    assert_eq!(
        posted.body["target_url"],
        "http://looper.example.com/repos/acme/app/-/commits/abc"
    );
    assert_eq!(
        client.commit_web_url("app", &sha),
        format!("https://github.example.com/acme/app/commit/{sha}")
    );
}

#[actix_web::test]
async fn statuses_switched_off_send_nothing_and_errors_hide_tokens() {
    let (api, log) = start_forge();
    let client = ScmClient::github(&github(&api, "gh-token", false, "https://github.com"));
    assert!(!client
        .post_status("app", &"d".repeat(40), &status(CommitState::Success))
        .await
        .unwrap());
    assert!(
        log.lock().unwrap().is_empty(),
        "no request when statuses are off"
    );

    let wrong = ScmClient::github(&github(
        &api,
        "wrong-secret-token",
        true,
        "https://github.com",
    ));
    let error = wrong.list_repos().await.unwrap_err();
    assert!(
        matches!(error, ScmError::Status { status: 401, .. }),
        "{error}"
    );
    assert!(!error.to_string().contains("wrong-secret-token"), "{error}");
    let error = wrong
        .post_status("app", &"d".repeat(40), &status(CommitState::Pending))
        .await
        .unwrap_err();
    assert!(!error.to_string().contains("wrong-secret-token"), "{error}");
}

#[actix_web::test]
async fn gitlab_listings_follow_next_page_and_statuses_are_posted() {
    let (api, log) = start_forge();
    let client = ScmClient::gitlab(&gitlab(&api, true));
    let repos = client.list_repos().await.unwrap();
    let names: Vec<_> = repos.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["acme/app", "acme/sub/proj"],
        "projects outside the group are dropped"
    );
    assert_eq!(repos[1].clone_url, "https://gitlab.com/acme/sub/proj.git");
    assert_eq!(
        client.list_branches("acme/sub/proj").await.unwrap(),
        [("master".to_string(), "c".repeat(40))]
    );
    let sha = "e".repeat(40);
    assert!(client
        .post_status("acme/sub/proj", &sha, &status(CommitState::Failure))
        .await
        .unwrap());
    let posted = log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        posted.uri,
        format!("/projects/acme%2Fsub%2Fproj/statuses/{sha}")
    );
    assert_eq!(posted.auth, "gl-token");
    assert_eq!(posted.body["state"], "failed");
    assert_eq!(posted.body["name"], "test-looper");
    assert!(client
        .post_status("acme/sub/proj", &sha, &status(CommitState::Pending))
        .await
        .unwrap());
    assert_eq!(log.lock().unwrap().last().unwrap().body["state"], "pending");
}

#[actix_web::test]
async fn github_back_end_lists_over_rest_and_clones_from_a_git_server() {
    let (api, _log) = start_forge();
    let dir = tempfile::tempdir().unwrap();
    let daemon = GitDaemon::start(&dir.path().join("served"));
    let app = GitRepo::init_bare(&daemon.base_dir().join("acme/app.git"));
    let head = app.commit("master", "one", &[("a", "1")]);
    GitRepo::init_bare(&daemon.base_dir().join("acme/lib.git")).commit(
        "main",
        "lib",
        &[("l", "1")],
    );
    // acme/tools is listed but not served: its fetch fails and the others still work.
    let mut config: Config =
        test_looper_tests::server::local_config(dir.path(), "redis://127.0.0.1:1/0");
    config.source_control.local = None;
    config.source_control.github = Some(github(&api, "gh-token", true, &daemon.base_url()));
    let service = GitService::from_config(&config);
    let mut events = service.subscribe();
    service.resync();
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("scan events for app and lib")
            .unwrap();
        seen.insert(event.repo.clone(), event.branches.clone());
    }
    assert_eq!(seen["app"], [("master".to_string(), head.to_string())]);
    assert_eq!(seen["lib"].len(), 1);
    assert_eq!(service.store().repo_names(), ["app", "lib", "tools"]);
    assert!(dir.path().join("data/git/app.git/HEAD").exists());
}
