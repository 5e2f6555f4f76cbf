//! The JSON API under `/api/`: the same views the pages show, the actions (see
//! [`crate::web::actions`]), live events and logs (see [`crate::web::live`]) and artifact
//! downloads. Names travel as query parameters and are validated like page URLs (`?repo=../x`
//! is a 400). Errors are JSON ([`crate::web::error::ApiError`]). The OpenAPI description is served at
//! `/api/openapi.json`.

use crate::views;
use crate::views::paths;
use crate::views::Snapshot;
use crate::web::error::ApiError;
use crate::web::routes::{get, post, RouteSpec, ACT, READ};
use crate::web::ui::Ui;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use std::sync::Arc;
use test_looper_auth::Category;

/// The OpenAPI document (kept next to the code it describes).
const OPENAPI: &str = include_str!("openapi.json");

/// The API routes (under `/api`) and what each needs.
pub fn routes() -> Vec<RouteSpec> {
    use crate::web::{actions, live, pins};
    vec![
        get("/api/openapi.json", READ, openapi),
        get("/api/repos", READ, repos),
        get("/api/repo", READ, repo),
        get("/api/branch", READ, branch),
        get("/api/commit", READ, commit),
        get("/api/branch_pins", READ, pins::api_branch_pins),
        get("/api/commit_refs", READ, pins::api_commit_refs),
        get("/api/test_history", READ, test_history),
        get("/api/machines", READ, machines),
        get("/api/deployments", READ, crate::web::deployments::api_list),
        get("/api/events", READ, live::events),
        get("/api/runs/{id}", READ, run),
        get("/api/runs/{id}/log", READ, live::run_log),
        get("/api/runs/{id}/artifacts/{name:.*}", READ, artifact),
        post("/api/actions/{name}", ACT, actions::api_action).limited(Category::Action),
    ]
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

#[derive(Deserialize)]
pub struct Names {
    pub(crate) repo: Option<String>,
    pub(crate) branch: Option<String>,
    commit: Option<String>,
    pub(crate) test: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

/// A query parameter that must be present.
pub(crate) fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, ApiError> {
    value
        .as_deref()
        .ok_or_else(|| ApiError::bad_request(format!("missing query parameter {name}")))
}

/// A kept view's JSON, serialised once and shared by every request it answers.
fn json<V: serde::Serialize>(snapshot: Arc<Snapshot<V>>) -> Result<HttpResponse, ApiError> {
    let body = snapshot.json().map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

async fn repos(ui: web::Data<Ui>) -> Result<HttpResponse, ApiError> {
    json(ui.sources.repos().await?)
}

async fn repo(ui: web::Data<Ui>, q: web::Query<Names>) -> Result<HttpResponse, ApiError> {
    let repo = paths::repo_name(required(&q.repo, "repo")?)?;
    json(ui.sources.repo(&repo).await?)
}

async fn branch(ui: web::Data<Ui>, q: web::Query<Names>) -> Result<HttpResponse, ApiError> {
    let repo = paths::repo_name(required(&q.repo, "repo")?)?;
    let branch = paths::branch_name(required(&q.branch, "branch")?)?;
    let view = ui
        .sources
        .branch(
            &repo,
            &branch,
            q.page.unwrap_or(0),
            q.per_page.unwrap_or(views::DEFAULT_PAGE),
        )
        .await?;
    json(view)
}

async fn commit(ui: web::Data<Ui>, q: web::Query<Names>) -> Result<HttpResponse, ApiError> {
    let repo = paths::repo_name(required(&q.repo, "repo")?)?;
    let commit = paths::commit_hash(required(&q.commit, "commit")?)?;
    json(ui.sources.commit(&repo, &commit).await?)
}

async fn test_history(ui: web::Data<Ui>, q: web::Query<Names>) -> Result<HttpResponse, ApiError> {
    let repo = paths::repo_name(required(&q.repo, "repo")?)?;
    let branch = paths::branch_name(required(&q.branch, "branch")?)?;
    let test = paths::test_name(required(&q.test, "test")?)?;
    let view = ui
        .sources
        .test_history(
            &repo,
            &branch,
            &test,
            q.page.unwrap_or(0),
            q.per_page.unwrap_or(views::DEFAULT_PAGE),
        )
        .await?;
    json(view)
}

async fn machines(ui: web::Data<Ui>) -> Result<HttpResponse, ApiError> {
    json(ui.sources.machines().await?)
}

async fn run(ui: web::Data<Ui>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let run_id = paths::run_id(&id)?;
    Ok(HttpResponse::Ok().json(ui.sources.run(&run_id).await?))
}

async fn artifact(
    ui: web::Data<Ui>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, name) = path.into_inner();
    let run_id = paths::run_id(&id)?;
    let name = paths::artifact_name(&name)?;
    let run = ui
        .sources
        .state
        .run(&run_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("run {run_id}")))?;
    // The store key is built from the validated run's hash and id: a name can only reach
    // this run's own files.
    let download = ui.artifacts.open(&run.test_hash, &run_id, &name).await?;
    let (content_type, inline) = content_type(&name);
    let file_name = name.rsplit('/').next().unwrap_or(&name).replace('"', "");
    let disposition = if inline {
        format!("inline; filename=\"{file_name}\"")
    } else {
        format!("attachment; filename=\"{file_name}\"")
    };
    let mut response = HttpResponse::Ok();
    response
        .content_type(content_type)
        .insert_header(("Content-Disposition", disposition))
        .insert_header(("X-Content-Type-Options", "nosniff"));
    if let Some(size) = download.size {
        response.no_chunking(size);
    }
    Ok(response.streaming(tokio_util::io::ReaderStream::new(download.reader)))
}

/// Text logs display inline; everything else downloads.
fn content_type(name: &str) -> (&'static str, bool) {
    let lower = name.to_ascii_lowercase();
    if [".txt", ".log", ".out", ".stdout", ".stderr"]
        .iter()
        .any(|ext| lower.ends_with(ext))
    {
        ("text/plain; charset=utf-8", true)
    } else if lower.ends_with(".json") {
        ("application/json", true)
    } else if lower.ends_with(".png") {
        ("image/png", true)
    } else {
        ("application/octet-stream", false)
    }
}
