//! Rendering for the HTML side of the web layer: a template as a response, a kept view's page
//! rendered once, and the error page ([`crate::web::error::ApiError`] as HTML; the API renders
//! the same error as JSON).

use crate::cache::snapshot::Snapshot;
use crate::web::error::ApiError;
use crate::web::ui::Ui;
use actix_web::body::MessageBody;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    csrf: &'a str,
    status: u16,
    title: &'a str,
    message: String,
}

/// Renders a template as an HTML response.
pub fn html(template: &impl Template) -> HttpResponse {
    html_response(template.render().map_err(|err| err.to_string()))
}

/// The page of a kept view: rendered once by `render` for every request the view answers.
pub fn kept_html<V>(
    snapshot: &Snapshot<V>,
    render: impl FnOnce(&V) -> Result<String, askama::Error>,
) -> HttpResponse {
    html_response(snapshot.page(|view| render(view).map_err(|err| err.to_string())))
}

fn html_response<B: MessageBody + 'static>(rendered: Result<B, String>) -> HttpResponse {
    match rendered {
        Ok(body) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"))
            .body(body),
        Err(err) => {
            tracing::error!(%err, "template rendering failed");
            HttpResponse::InternalServerError().body("template rendering failed")
        }
    }
}

/// The error page for `error`.
pub fn error_page(ui: &Ui, error: ApiError) -> HttpResponse {
    let title = match error.status {
        StatusCode::BAD_REQUEST => "Invalid URL provided",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::CONFLICT => "Not possible now",
        StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
        _ => "Server error",
    };
    let page = ErrorPage {
        csrf: ui.csrf.value(),
        status: error.status.as_u16(),
        title,
        message: error.message,
    };
    let mut response = html(&page);
    *response.status_mut() = error.status;
    response
}

pub fn respond(ui: &Ui, result: Result<HttpResponse, ApiError>) -> HttpResponse {
    result.unwrap_or_else(|error| error_page(ui, error))
}
