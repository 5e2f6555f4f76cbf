//! Push webhooks over real HTTP: GitHub `push` payloads signed with `X-Hub-Signature-256`,
//! GitLab `Push Hook` payloads with `X-Gitlab-Token`, and every refusal (bad or missing
//! signature, no secret configured, malformed body, oversized body, unknown events). A valid
//! push rescans the repo at once: the local poll is switched off here, so only the webhook
//! can make the new commit appear.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_looper_server::config::Config;
use test_looper_server::git::RepoScanned;
use test_looper_server::AppContext;
use test_looper_tests::server::local_config;
use test_looper_tests::GitRepo;
use tokio::sync::broadcast::Receiver;

const SECRET: &str = "test-secret";

struct Served {
    base_url: String,
    context: Arc<AppContext>,
    _handle: actix_web::dev::ServerHandle,
}

fn serve(config: Config) -> Served {
    let context = AppContext::new(config).expect("context");
    let (server, addrs) =
        test_looper_server::web::start(context.clone(), ("127.0.0.1".into(), 0)).expect("bind");
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Served {
        base_url: format!("http://{}", addrs[0]),
        context,
        _handle: handle,
    }
}

/// A local config whose repos are only rescanned by webhooks (no poll).
fn config(dir: &std::path::Path, secret: Option<&str>) -> Config {
    let mut config = local_config(dir, "redis://127.0.0.1:1/0");
    let local = config.source_control.local.as_mut().unwrap();
    local.poll_interval_ms = 3_600_000;
    local.webhook_secret = secret.map(str::to_owned);
    config
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A push payload shaped like GitHub's documented `push` event.
fn github_push(full_name: &str, reference: &str, before: &str, after: &str) -> Vec<u8> {
    let (owner, name) = full_name.split_once('/').unwrap_or(("", full_name));
    serde_json::to_vec(&serde_json::json!({
        "ref": reference,
        "before": before,
        "after": after,
        "repository": {
            "id": 1296269,
            "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
            "name": name,
            "full_name": full_name,
            "private": false,
            "owner": {"name": owner, "login": owner, "id": 1},
            "html_url": format!("https://github.com/{full_name}"),
            "clone_url": format!("https://github.com/{full_name}.git"),
            "default_branch": "master",
            "master_branch": "master"
        },
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "sender": {"login": "octocat", "id": 1},
        "created": false,
        "deleted": false,
        "forced": false,
        "base_ref": null,
        "compare": format!("https://github.com/{full_name}/compare/{before}...{after}"),
        "commits": [{
            "id": after,
            "tree_id": "0000000000000000000000000000000000000000",
            "distinct": true,
            "message": "two",
            "timestamp": "2026-01-01T00:01:00Z",
            "url": format!("https://github.com/{full_name}/commit/{after}"),
            "author": {"name": "Test Author", "email": "author@example.com", "username": "test"},
            "committer": {"name": "Test Author", "email": "author@example.com", "username": "test"},
            "added": ["b.txt"], "removed": [], "modified": []
        }],
        "head_commit": {"id": after, "message": "two"}
    }))
    .unwrap()
}

/// A push payload shaped like GitLab's documented `Push Hook`.
fn gitlab_push(path: &str, before: &str, after: &str) -> Vec<u8> {
    let name = path.rsplit('/').next().unwrap();
    serde_json::to_vec(&serde_json::json!({
        "object_kind": "push",
        "event_name": "push",
        "before": before,
        "after": after,
        "ref": "refs/heads/master",
        "ref_protected": true,
        "checkout_sha": after,
        "user_id": 4,
        "user_name": "John Smith",
        "user_username": "jsmith",
        "user_email": "john@example.com",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": name,
            "web_url": format!("https://gitlab.example.com/{path}"),
            "git_ssh_url": format!("git@gitlab.example.com:{path}.git"),
            "git_http_url": format!("https://gitlab.example.com/{path}.git"),
            "namespace": "group",
            "path_with_namespace": path,
            "default_branch": "master"
        },
        "commits": [{
            "id": after,
            "message": "two",
            "title": "two",
            "timestamp": "2026-01-01T00:01:00+00:00",
            "author": {"name": "Test Author", "email": "author@example.com"},
            "added": ["b.txt"], "modified": [], "removed": []
        }],
        "total_commits_count": 1,
        "repository": {"name": name, "homepage": format!("https://gitlab.example.com/{path}")}
    }))
    .unwrap()
}

/// Waits for the initial full scan, then for a quiet moment (the service may have scanned
/// once before the subscription and once for the resync).
async fn settle(events: &mut Receiver<Arc<RepoScanned>>) -> Arc<RepoScanned> {
    let mut last = next_event(events).await;
    while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_millis(300), events.recv()).await
    {
        last = event;
    }
    last
}

async fn next_event(events: &mut Receiver<Arc<RepoScanned>>) -> Arc<RepoScanned> {
    tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("no scan event within 20 s")
        .expect("channel open")
}

async fn post(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

#[actix_web::test]
async fn signed_github_push_rescans_at_once_and_bad_signatures_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let git = GitRepo::init_bare(&dir.path().join("repos/group/app.git"));
    let c1 = git.commit("master", "one", &[("a.txt", "1")]);
    let served = serve(config(dir.path(), Some(SECRET)));
    let mut events = served.context.git.subscribe();
    served.context.git.resync();
    let initial = settle(&mut events).await;
    assert_eq!(initial.new_commits.len(), 1);

    let c2 = git.commit("master", "two", &[("b.txt", "2")]);
    let url = format!("{}/webhook", served.base_url);
    let body = github_push(
        "group/app",
        "refs/heads/master",
        &c1.to_string(),
        &c2.to_string(),
    );

    // Refusals first: nothing is rescanned.
    let (status, _) = post(&url, &[("x-github-event", "push")], body.clone()).await;
    assert_eq!(status, 401, "missing signature");
    let wrong = sign(b"another body");
    let (status, _) = post(
        &url,
        &[("x-github-event", "push"), ("x-hub-signature-256", &wrong)],
        body.clone(),
    )
    .await;
    assert_eq!(status, 401, "signature of another body");
    let (status, _) = post(
        &url,
        &[
            ("x-github-event", "push"),
            ("x-hub-signature-256", "sha256=zz"),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(status, 401, "garbage signature");
    assert!(events.try_recv().is_err(), "refused pushes trigger nothing");

    let signature = sign(&body);
    let sent_at = Instant::now();
    let (status, reply) = post(
        &url,
        &[
            ("x-github-event", "push"),
            ("x-hub-signature-256", &signature),
        ],
        body,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["repo"], "group/app");
    assert_eq!(reply["branch"], "master");
    let event = next_event(&mut events).await;
    println!("webhook to event: {:?}", sent_at.elapsed());
    assert_eq!(event.repo, "group/app");
    assert_eq!(event.new_commits.len(), 1);
    assert_eq!(event.new_commits[0].hash, c2.to_string());

    // The legacy path, the form encoding GitHub can use, and a branch with a slash.
    let c3 = git.commit("feature/x", "three", &[("c.txt", "3")]);
    let json = github_push(
        "group/app",
        "refs/heads/feature/x",
        "0000000000000000000000000000000000000000",
        &c3.to_string(),
    );
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&json).unwrap())
        .finish();
    let signature = sign(form.as_bytes());
    let response = reqwest::Client::new()
        .post(format!("{}/githubReceivedAPush", served.base_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", signature)
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reply: serde_json::Value = response.json().await.unwrap();
    assert_eq!(reply["branch"], "feature/x", "full branch names are kept");
    let event = next_event(&mut events).await;
    assert_eq!(event.new_commits[0].hash, c3.to_string());
}

#[actix_web::test]
async fn ping_unknown_events_tags_and_malformed_bodies() {
    let dir = tempfile::tempdir().unwrap();
    GitRepo::init_bare(&dir.path().join("repos/app.git")).commit("master", "one", &[("a", "1")]);
    let served = serve(config(dir.path(), Some(SECRET)));
    let url = format!("{}/webhook", served.base_url);
    let signed = |event: &'static str, body: Vec<u8>| {
        let signature = sign(&body);
        let url = url.clone();
        async move {
            post(
                &url,
                &[
                    ("x-github-event", event),
                    ("x-hub-signature-256", &signature),
                ],
                body,
            )
            .await
            .0
        }
    };
    let ping = serde_json::to_vec(&serde_json::json!({
        "zen": "Keep it logically awesome.",
        "hook_id": 1,
        "hook": {"type": "Repository", "events": ["push"], "config": {"content_type": "json"}},
        "repository": {"name": "app", "full_name": "org/app"}
    }))
    .unwrap();
    assert_eq!(signed("ping", ping.clone()).await, 200);
    assert_eq!(signed("issues", ping).await, 202);
    let tag = github_push(
        "org/app",
        "refs/tags/v1",
        "0000000000000000000000000000000000000000",
        "1111111111111111111111111111111111111111",
    );
    assert_eq!(signed("push", tag).await, 202);
    assert_eq!(signed("push", b"{not json".to_vec()).await, 400);
    assert_eq!(signed("push", b"{\"ref\": 5}".to_vec()).await, 400);
    let (status, _) = post(&url, &[], b"{}".to_vec()).await;
    assert_eq!(status, 400, "neither GitHub nor GitLab");
    // The body is bounded (server.max_body_bytes, 4 MiB by default).
    let huge = vec![b' '; 5 * 1024 * 1024];
    let (status, _) = post(
        &url,
        &[
            ("x-github-event", "push"),
            ("x-hub-signature-256", "sha256=00"),
        ],
        huge,
    )
    .await;
    assert_eq!(status, 413);
}

#[actix_web::test]
async fn gitlab_push_hook_with_token() {
    let dir = tempfile::tempdir().unwrap();
    let git = GitRepo::init_bare(&dir.path().join("repos/group/sub/proj.git"));
    let c1 = git.commit("master", "one", &[("a", "1")]);
    let served = serve(config(dir.path(), Some(SECRET)));
    let mut events = served.context.git.subscribe();
    served.context.git.resync();
    settle(&mut events).await;
    let c2 = git.commit("master", "two", &[("b", "2")]);
    let url = format!("{}/webhook", served.base_url);
    let body = gitlab_push("group/sub/proj", &c1.to_string(), &c2.to_string());
    let (status, _) = post(
        &url,
        &[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "wrong")],
        body.clone(),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = post(&url, &[("x-gitlab-event", "Push Hook")], body.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = post(
        &url,
        &[
            ("x-gitlab-event", "Merge Request Hook"),
            ("x-gitlab-token", SECRET),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(status, 202);
    let (status, reply) = post(
        &url,
        &[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", SECRET)],
        body,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["repo"], "group/sub/proj");
    let event = next_event(&mut events).await;
    assert_eq!(event.repo, "group/sub/proj");
    assert_eq!(event.new_commits[0].hash, c2.to_string());
}

#[actix_web::test]
async fn webhooks_are_refused_without_a_configured_secret() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(config(dir.path(), None));
    let body = github_push(
        "org/app",
        "refs/heads/master",
        "0000000000000000000000000000000000000000",
        "1111111111111111111111111111111111111111",
    );
    let signature = sign(&body);
    let (status, reply) = post(
        &format!("{}/webhook", served.base_url),
        &[
            ("x-github-event", "push"),
            ("x-hub-signature-256", &signature),
        ],
        body,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("no webhook_secret"),
        "{reply}"
    );
}

#[actix_web::test]
async fn a_replayed_delivery_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let git = GitRepo::init_bare(&dir.path().join("repos/group/app.git"));
    let c1 = git.commit("master", "one", &[("a.txt", "1")]);
    let served = serve(config(dir.path(), Some(SECRET)));
    let url = format!("{}/webhook", served.base_url);
    let body = github_push(
        "group/app",
        "refs/heads/master",
        &c1.to_string(),
        &c1.to_string(),
    );
    let signature = sign(&body);
    let delivery = |id: &'static str| {
        [
            ("x-github-event", "push"),
            ("x-hub-signature-256", signature.as_str()),
            ("x-github-delivery", id),
        ]
    };
    let id = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    let (status, reply) = post(&url, &delivery(id), body.clone()).await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = post(&url, &delivery(id), body.clone()).await;
    assert_eq!(status, 409, "{reply}");
    assert!(reply["message"]
        .as_str()
        .unwrap()
        .contains("already handled"));
    // Another delivery of the same body is a new event.
    let (status, reply) = post(
        &url,
        &delivery("72d3162e-cc78-11e3-81ab-4c9367dc0959"),
        body.clone(),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    // GitLab's event id is remembered the same way.
    let gitlab = gitlab_push("group/app", &c1.to_string(), &c1.to_string());
    let headers = [
        ("x-gitlab-event", "Push Hook"),
        ("x-gitlab-token", SECRET),
        (
            "x-gitlab-event-uuid",
            "13792a34-cac6-4fda-95a8-c58e00a3954e",
        ),
    ];
    let (first, _) = post(&url, &headers, gitlab.clone()).await;
    let (second, _) = post(&url, &headers, gitlab).await;
    assert_eq!((first, second), (200, 409));
}
