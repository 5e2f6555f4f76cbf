//! Flake hunts over HTTP: the hunts page (`/hunts`, with the form that starts one), a hunt's
//! page (`/hunts/{id}`: progress, budget, the posterior over commits as an SVG plot and the
//! culprit with its probability, author and diff), and their JSON
//! (`GET /api/flake_hunts?repo=R&branch=B`, `GET /api/flake_hunts/{id}`), and the quarantine
//! (`GET /api/quarantine`). Starting and cancelling hunts, quarantining tests and
//! branch-wide repeats are actions ([`crate::web::actions`]).

use crate::views::hunts::{hunt_page, HuntPage, HuntSummary};
use crate::views::paths;
use crate::web::api::Names;
use crate::web::error::ApiError;
use crate::web::render::error_page;
use crate::web::routes::{get, RouteSpec, READ};
use crate::web::ui::Ui;
use actix_web::{web, HttpResponse};
use askama::Template;
use test_looper_core::scheduling::{DEFAULT_HUNT_BATCH_RUNS, DEFAULT_HUNT_TARGET};

/// The hunt pages and API routes.
pub fn routes() -> Vec<RouteSpec> {
    vec![
        get("/hunts", READ, list_page),
        get("/hunts/{id}", READ, page),
        get("/api/flake_hunts", READ, api_list),
        get("/api/flake_hunts/{id}", READ, api_hunt),
        get("/api/quarantine", READ, api_quarantine),
    ]
}

/// `GET /api/quarantine`: tests in quarantine, and the newest 500 entries and exits with
/// their evidence.
async fn api_quarantine(ui: web::Data<Ui>) -> Result<HttpResponse, ApiError> {
    let (quarantined, log) = ui.actions.quarantine(500).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "quarantined": quarantined, "log": log })))
}

/// The repo and branch filters of a hunts query, validated (both optional).
fn filters(q: &Names) -> Result<(Option<String>, Option<String>), ApiError> {
    let repo = q.repo.as_deref().map(paths::repo_name).transpose()?;
    let branch = q.branch.as_deref().map(paths::branch_name).transpose()?;
    Ok((repo, branch))
}

fn hunt_id(text: &str) -> Result<String, ApiError> {
    Ok(paths::run_id(text)?)
}

/// `GET /api/flake_hunts?repo=R&branch=B`.
async fn api_list(ui: web::Data<Ui>, q: web::Query<Names>) -> Result<HttpResponse, ApiError> {
    let (repo, branch) = filters(&q)?;
    let hunts = ui.sources.hunts(repo.as_deref(), branch.as_deref()).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "hunts": hunts })))
}

/// `GET /api/flake_hunts/{id}`.
async fn api_hunt(ui: web::Data<Ui>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = hunt_id(&id)?;
    let (view, _) = ui
        .sources
        .hunt(&id, false)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("hunt {id}")))?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Template)]
#[template(path = "hunts.html")]
struct HuntsListPage<'a> {
    csrf: &'a str,
    hunts: Vec<HuntSummary>,
    repo: String,
    branch: String,
    test: String,
    default_batch: u32,
    default_target: f64,
}

/// `GET /hunts?repo=R&branch=B&test=T`: the hunts, and a form to start one (pre-filled).
async fn list_page(ui: web::Data<Ui>, q: web::Query<Names>) -> HttpResponse {
    let result = async {
        let (repo, branch) = filters(&q)?;
        let test = q.test.as_deref().map(paths::test_name).transpose()?;
        let hunts = ui.sources.hunts(repo.as_deref(), branch.as_deref()).await?;
        Ok::<_, ApiError>(HuntsListPage {
            csrf: crate::web::render::CSRF_SLOT,
            hunts,
            repo: repo.unwrap_or_default(),
            branch: branch.unwrap_or_default(),
            test: test.unwrap_or_default(),
            default_batch: DEFAULT_HUNT_BATCH_RUNS,
            default_target: DEFAULT_HUNT_TARGET,
        })
    }
    .await;
    match result {
        Ok(page) => crate::web::render::html(&page),
        Err(err) => error_page(err),
    }
}

#[derive(Template)]
#[template(path = "hunt.html")]
struct HuntTemplate<'a> {
    csrf: &'a str,
    page: HuntPage,
}

/// `GET /hunts/{id}`.
async fn page(ui: web::Data<Ui>, id: web::Path<String>) -> HttpResponse {
    let result = async {
        let id = hunt_id(&id)?;
        let (view, diff) = ui
            .sources
            .hunt(&id, true)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("hunt {id}")))?;
        Ok::<_, ApiError>(hunt_page(view, diff))
    }
    .await;
    match result {
        Ok(page) => crate::web::render::html(&HuntTemplate {
            csrf: crate::web::render::CSRF_SLOT,
            page,
        }),
        Err(err) => error_page(err),
    }
}
