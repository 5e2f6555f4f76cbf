//! HTML pages: each handler validates the names in its URL, asks [`Sources`] for the view and
//! renders its askama template (escaping everything but the markup built and escaped in Rust:
//! graph rows, plots and highlighted source). Failures render the error page with the right
//! status.

use crate::views;
use crate::views::cells::ParseState;
use crate::views::paths;
use crate::views::paths::BrowsePath;
use crate::views::{
    BranchView, CommitPageView, MachinesView, RepoView, ReposView, RunPageView, TestHistoryView,
};
use crate::web::error::ApiError;
use crate::web::render::{html, kept_html, respond};
use crate::web::ui::Ui;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "repos.html")]
struct ReposPage<'a> {
    csrf: &'a str,
    repos: &'a [views::RepoSummary],
    view: Option<&'a ReposView>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "repo.html")]
struct RepoPage<'a> {
    csrf: &'a str,
    view: &'a RepoView,
}

#[derive(Template)]
#[template(path = "branch.html")]
struct BranchPage<'a> {
    csrf: &'a str,
    view: &'a BranchView,
}

#[derive(Template)]
#[template(path = "commit.html")]
struct CommitPage<'a> {
    csrf: &'a str,
    view: &'a CommitPageView,
    refs: crate::web::pins::CommitRefsView,
}

#[derive(Template)]
#[template(path = "test_history.html")]
struct TestHistoryPage<'a> {
    csrf: &'a str,
    view: &'a TestHistoryView,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage<'a> {
    csrf: &'a str,
    view: RunPageView,
}

#[derive(Template)]
#[template(path = "machines.html")]
struct MachinesPage<'a> {
    csrf: &'a str,
    view: &'a MachinesView,
}

/// Paging options of history pages, and the view of a page with several (`?view=pins`).
#[derive(Deserialize, Default)]
pub struct Paging {
    pub page: Option<usize>,
    pub per_page: Option<usize>,
    pub view: Option<String>,
}

pub async fn root() -> HttpResponse {
    HttpResponse::Found()
        .insert_header(("Location", "/repos"))
        .finish()
}

pub async fn repos(ui: web::Data<Ui>) -> HttpResponse {
    let csrf = crate::web::render::CSRF_SLOT;
    match ui.sources.repos().await {
        Ok(snapshot) => kept_html(&snapshot, |view| {
            ReposPage {
                csrf,
                repos: &view.repos,
                view: Some(view),
                error: None,
            }
            .render()
        }),
        Err(err) => html(&ReposPage {
            csrf,
            repos: &[],
            view: None,
            error: Some(err.to_string()),
        }),
    }
}

/// Everything under `/repos/…`.
pub async fn browse(
    ui: web::Data<Ui>,
    request: HttpRequest,
    paging: web::Query<Paging>,
) -> HttpResponse {
    let result = async {
        let raw = request
            .path()
            .strip_prefix("/repos/")
            .ok_or_else(|| ApiError::with_status(StatusCode::NOT_FOUND, "unknown page"))?;
        let csrf = crate::web::render::CSRF_SLOT;
        let page = paging.page.unwrap_or(0);
        let per_page = paging.per_page.unwrap_or(views::DEFAULT_PAGE);
        Ok(match BrowsePath::parse(raw)? {
            BrowsePath::Repo { repo } => {
                let snapshot = ui.sources.repo(&repo).await?;
                kept_html(&snapshot, |view| RepoPage { csrf, view }.render())
            }
            BrowsePath::Branch { repo, branch } => match paging.view.as_deref() {
                Some("pins") => {
                    crate::web::pins::branch_pins_page(&ui, csrf, &repo, &branch).await?
                }
                None | Some("commits") => {
                    let snapshot = ui.sources.branch(&repo, &branch, page, per_page).await?;
                    kept_html(&snapshot, |view| BranchPage { csrf, view }.render())
                }
                Some(other) => {
                    return Err(ApiError::with_status(
                        StatusCode::BAD_REQUEST,
                        format!("unknown branch view {other:?}"),
                    ))
                }
            },
            BrowsePath::TestHistory { repo, branch, test } => {
                let snapshot = ui
                    .sources
                    .test_history(&repo, &branch, &test, page, per_page)
                    .await?;
                kept_html(&snapshot, |view| TestHistoryPage { csrf, view }.render())
            }
            BrowsePath::Commit { repo, commit } => html(&CommitPage {
                csrf,
                view: ui.sources.commit(&repo, &commit).await?.view(),
                refs: crate::web::pins::commit_refs(&ui, &repo, &commit).await?,
            }),
        })
    }
    .await;
    respond(result)
}

pub async fn run(ui: web::Data<Ui>, id: web::Path<String>) -> HttpResponse {
    let result = async {
        let run_id = paths::run_id(&id)?;
        Ok(html(&RunPage {
            csrf: crate::web::render::CSRF_SLOT,
            view: ui.sources.run(&run_id).await?,
        }))
    }
    .await;
    respond(result)
}

pub async fn machines(ui: web::Data<Ui>, context: web::Data<crate::AppContext>) -> HttpResponse {
    let result = async {
        let snapshot = ui.sources.machines().await?;
        let csrf = crate::web::render::CSRF_SLOT;
        let pool = crate::web::pool::section(&context);
        Ok(crate::web::render::kept_html_with_slot(
            &snapshot,
            |view| MachinesPage { csrf, view }.render(),
            crate::web::pool::POOL_SLOT,
            &pool,
        ))
    }
    .await;
    respond(result)
}

/// Renders the branch page for a prepared view (used by the benchmark).
pub fn render_branch(view: &BranchView, csrf: &str) -> Result<String, askama::Error> {
    BranchPage { csrf, view }.render()
}
