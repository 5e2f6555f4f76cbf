//! The first page: the configured repos.

use crate::{local_repos, AppContext};
use actix_web::{web, HttpResponse, Responder};
use askama::Template;
use askama_web::WebTemplate;

#[derive(Template, WebTemplate)]
#[template(path = "repos.html")]
struct ReposPage {
    repos: Vec<String>,
    error: Option<String>,
}

pub async fn repos_page(context: web::Data<AppContext>) -> impl Responder {
    let Some(local) = &context.config.source_control.local else {
        return ReposPage {
            repos: Vec::new(),
            error: Some("remote source control is not listed yet".into()),
        }
        .respond_to_page();
    };
    let root = local.path_to_repos.clone();
    let listing = web::block(move || local_repos::discover(&root)).await;
    let http = &context.config.http_server;
    let page = match listing {
        Ok(Ok(repos)) => ReposPage {
            repos: repos
                .into_iter()
                .map(|repo| repo.name)
                .filter(|name| {
                    !http
                        .repo_prefixes_to_suppress
                        .iter()
                        .any(|p| name.starts_with(p))
                })
                .collect(),
            error: None,
        },
        Ok(Err(err)) => ReposPage {
            repos: Vec::new(),
            error: Some(format!(
                "cannot list {}: {err}",
                local.path_to_repos.display()
            )),
        },
        Err(err) => ReposPage {
            repos: Vec::new(),
            error: Some(err.to_string()),
        },
    };
    page.respond_to_page()
}

impl ReposPage {
    fn respond_to_page(self) -> HttpResponse {
        match self.render() {
            Ok(body) => HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .body(body),
            Err(err) => HttpResponse::InternalServerError().body(err.to_string()),
        }
    }
}
