//! Source tarballs for workers' source dependencies, streamed from the git service's cache.

use crate::AppContext;
use actix_web::{web, HttpRequest, HttpResponse};

#[derive(serde::Deserialize)]
pub struct SourceQuery {
    repo: String,
    commit: String,
    #[serde(default)]
    path: String,
}

pub async fn source_tarball(
    context: web::Data<AppContext>,
    req: HttpRequest,
    query: web::Query<SourceQuery>,
) -> HttpResponse {
    if let Err(response) = super::check_auth(&context, &req) {
        return *response;
    }
    let git = context.git.clone();
    let SourceQuery { repo, commit, path } = query.into_inner();
    let built = web::block(move || git.source_tarball(&repo, &commit, &path)).await;
    let file = match built {
        Ok(Ok(file)) => file,
        Ok(Err(error)) => return HttpResponse::NotFound().body(error.to_string()),
        Err(error) => return HttpResponse::InternalServerError().body(error.to_string()),
    };
    match actix_files::NamedFile::open_async(&file).await {
        Ok(named) => named.into_response(&req),
        Err(error) => HttpResponse::InternalServerError().body(error.to_string()),
    }
}
