//! The deployments page (`/deployments`) and its JSON (`GET /api/deployments`): alive
//! deployments, oldest first, with their commit, definition, machine, boot time, uptime,
//! attached terminals, and the "connect" (terminal page) and "shutdown" (POST) actions.

use crate::reads::model::{DeploymentView, ReadError};
use crate::views::format;
use crate::views::format::short_hash;
use crate::views::paths;
use crate::web::error::ApiError;
use crate::web::render::error_page;
use crate::web::ui::Ui;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Serialize;

/// What the page and the API show.
#[derive(Clone, Debug, Serialize)]
pub struct DeploymentsView {
    pub state_wired: bool,
    pub deployments: Vec<DeploymentRow>,
}

/// One alive deployment.
#[derive(Clone, Debug, Serialize)]
pub struct DeploymentRow {
    pub deployment: DeploymentView,
    pub commit_url: String,
    pub commit_short: String,
    /// The machine, or "waiting for hardware".
    pub machine: String,
    /// Who booted it ("anonymous" when nobody was authenticated).
    pub booter: String,
    pub booted_at: String,
    pub up_for: String,
    pub terminal_url: String,
}

/// The row of one deployment (`now_ms`: the current time).
pub fn deployment_row(deployment: DeploymentView, now_ms: u64) -> DeploymentRow {
    DeploymentRow {
        commit_url: paths::commit_url(&deployment.repo, &deployment.commit),
        commit_short: short_hash(&deployment.commit).to_owned(),
        machine: deployment
            .machine_id
            .clone()
            .unwrap_or_else(|| "waiting for hardware".into()),
        booter: deployment
            .booted_by
            .as_ref()
            .map_or_else(|| "anonymous".to_string(), |owner| owner.login.clone()),
        booted_at: format::utc_millis(deployment.created),
        up_for: format::duration((now_ms.saturating_sub(deployment.created) / 1000) as i64),
        terminal_url: paths::terminal_url(&deployment.deployment_id),
        deployment,
    }
}

async fn view(ui: &Ui) -> Result<DeploymentsView, ReadError> {
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    let deployments = ui.sources.state.deployments().await?;
    Ok(DeploymentsView {
        state_wired: ui.sources.state.wired(),
        deployments: deployments
            .into_iter()
            .map(|d| deployment_row(d, now_ms))
            .collect(),
    })
}

#[derive(Template)]
#[template(path = "deployments.html")]
struct DeploymentsPage<'a> {
    csrf: &'a str,
    view: DeploymentsView,
}

/// `GET /deployments`.
pub async fn page(ui: web::Data<Ui>) -> HttpResponse {
    let view = match view(&ui).await {
        Ok(view) => view,
        Err(err) => return error_page(ApiError::from(err)),
    };
    let page = DeploymentsPage {
        csrf: crate::web::render::CSRF_SLOT,
        view,
    };
    crate::web::render::html(&page)
}

/// `GET /api/deployments`.
pub async fn api_list(ui: web::Data<Ui>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(view(&ui).await?))
}
