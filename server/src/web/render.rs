//! Rendering for the HTML side of the web layer: a template as a response, a kept view's page
//! rendered once, and the error page ([`crate::web::error::ApiError`] as HTML; the API renders
//! the same error as JSON).
//!
//! Pages are rendered once for everybody (kept views are shared by every request), so what
//! belongs to one caller is filled in on the way out by the access guard: templates write
//! [`CSRF_SLOT`] where the CSRF token goes, and the base template holds [`SESSION_SLOT`] where
//! the login bar goes; [`personalize`] replaces both in responses [`html`] marked as pages.
//! The slots are raw tags that askama's escaping can never produce from data (a test name
//! `<tl-csrf/>` is rendered `&lt;tl-csrf/&gt;`), so only the template's own slots are filled.

use crate::cache::snapshot::Snapshot;
use crate::web::error::ApiError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;

/// Where a template puts the caller's CSRF token (write it `{{ csrf|safe }}`).
pub const CSRF_SLOT: &str = "<tl-csrf/>";
/// Where the base template puts the login bar.
pub const SESSION_SLOT: &str = "<tl-session/>";

/// Marks a response as a page to personalize.
#[derive(Clone, Copy)]
struct PersonalPage;

/// Whether the access guard should personalize `response`.
pub fn is_personal_page<B>(response: &actix_web::dev::ServiceResponse<B>) -> bool {
    response
        .response()
        .extensions()
        .get::<PersonalPage>()
        .is_some()
}

/// `body` with the slots filled: `csrf` (already safe: URL-safe base64 or hex) and `bar`
/// (HTML built by [`session_bar`]). Bodies that are not whole in memory are left alone.
/// One SIMD scan for the slots' common prefix and one copy: a few hundred microseconds on a
/// 2 MB page.
pub fn personalize<B: MessageBody + 'static>(body: B, csrf: &str, bar: &str) -> BoxBody {
    match body.try_into_bytes() {
        Ok(bytes) => BoxBody::new(fill_slots(&bytes, csrf, bar)),
        Err(body) => BoxBody::new(body),
    }
}

/// `page` with every [`CSRF_SLOT`] replaced by `csrf` and the first [`SESSION_SLOT`] by `bar`.
fn fill_slots(page: &[u8], csrf: &str, bar: &str) -> Vec<u8> {
    const PREFIX: &[u8] = b"<tl-";
    let mut out = Vec::with_capacity(page.len() + bar.len() + 64 * csrf.len());
    let mut copied = 0;
    let mut bar_done = false;
    for at in memchr::memmem::find_iter(page, PREFIX) {
        if at < copied {
            continue;
        }
        let rest = &page[at..];
        let (slot, value) = if rest.starts_with(CSRF_SLOT.as_bytes()) {
            (CSRF_SLOT, csrf)
        } else if !bar_done && rest.starts_with(SESSION_SLOT.as_bytes()) {
            bar_done = true;
            (SESSION_SLOT, bar)
        } else {
            continue;
        };
        out.extend_from_slice(&page[copied..at]);
        // The bar holds CSRF slots of its own (the logout form).
        if slot == SESSION_SLOT {
            out.extend_from_slice(&fill_slots(value.as_bytes(), csrf, ""));
        } else {
            out.extend_from_slice(value.as_bytes());
        }
        copied = at + slot.len();
    }
    out.extend_from_slice(&page[copied..]);
    out
}

/// The login bar of every page: who is logged in with their role, their tokens, the audit
/// log for admins and the logout button; or the login link when logins are configured.
pub fn session_bar(
    access: &crate::access::AccessControl,
    who: Option<&crate::access::RequestCaller>,
    path: &str,
) -> String {
    use crate::views::format::escape;
    use test_looper_auth::{Caller, Role};
    let caller = who.map(|w| &w.caller);
    match caller {
        Some(Caller::Session(user)) => {
            let admin = if user.role == Role::Admin {
                r#" <a href="/audit">Audit</a>"#
            } else {
                ""
            };
            format!(
                r#"<span class="session"><span class="who" title="{key}">{name}</span> <span class="role">{role}</span> <a href="/tokens">Tokens</a>{admin} <form method="post" action="/auth/logout" class="inline"><input type="hidden" name="csrf_token" value="{csrf}"><button type="submit" class="small" id="logout">Log out</button></form></span>"#,
                key = escape(&user.identity.key()),
                name = escape(user.identity.display_name()),
                role = user.role,
                csrf = CSRF_SLOT,
            )
        }
        Some(Caller::Token(token)) => format!(
            r#"<span class="session"><span class="who">token {}</span> <span class="role">{}</span></span>"#,
            escape(&token.token_name),
            token.role
        ),
        _ if access.provider_names().next().is_some() => format!(
            r#"<span class="session"><a class="login" id="login" href="/login?next={}">Log in</a></span>"#,
            escape(&crate::views::paths::encode_component(path))
        ),
        _ => String::new(),
    }
}

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

/// [`kept_html`] with the first `slot` of the shared page replaced by `fill`: a part of the
/// page that changes on its own clock (the EC2 pool's status) rendered per request.
pub fn kept_html_with_slot<V>(
    snapshot: &Snapshot<V>,
    render: impl FnOnce(&V) -> Result<String, askama::Error>,
    slot: &str,
    fill: &str,
) -> HttpResponse {
    let page = snapshot.page(|view| render(view).map_err(|err| err.to_string()));
    html_response(
        page.map(|page| match memchr::memmem::find(&page, slot.as_bytes()) {
            Some(at) => {
                let mut out = Vec::with_capacity(page.len() + fill.len());
                out.extend_from_slice(&page[..at]);
                out.extend_from_slice(fill.as_bytes());
                out.extend_from_slice(&page[at + slot.len()..]);
                bytes::Bytes::from(out)
            }
            None => page,
        }),
    )
}

fn html_response<B: MessageBody + 'static>(rendered: Result<B, String>) -> HttpResponse {
    match rendered {
        Ok(body) => {
            let mut response = HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .insert_header(("Cache-Control", "no-store"))
                .body(body);
            response.extensions_mut().insert(PersonalPage);
            response
        }
        Err(err) => {
            tracing::error!(%err, "template rendering failed");
            HttpResponse::InternalServerError().body("template rendering failed")
        }
    }
}

/// The error page for `error`.
pub fn error_page(error: ApiError) -> HttpResponse {
    let title = match error.status {
        StatusCode::BAD_REQUEST => "Invalid URL provided",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::CONFLICT => "Not possible now",
        StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
        _ => "Server error",
    };
    let page = ErrorPage {
        csrf: CSRF_SLOT,
        status: error.status.as_u16(),
        title,
        message: error.message,
    };
    let mut response = html(&page);
    *response.status_mut() = error.status;
    response
}

pub fn respond(result: Result<HttpResponse, ApiError>) -> HttpResponse {
    result.unwrap_or_else(error_page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_filled_and_escaped_look_alikes_are_not() {
        let page = format!(
            "<head><meta content=\"{CSRF_SLOT}\"></head><nav>{SESSION_SLOT}</nav>\
             <form><input value=\"{CSRF_SLOT}\"></form><p>&lt;tl-csrf/&gt; <tl-other/></p>{SESSION_SLOT}"
        );
        let bar = format!("<b>alice</b><input value=\"{CSRF_SLOT}\">");
        let filled = String::from_utf8(fill_slots(page.as_bytes(), "TOKEN", &bar)).unwrap();
        assert_eq!(
            filled,
            "<head><meta content=\"TOKEN\"></head><nav><b>alice</b><input value=\"TOKEN\"></nav>\
             <form><input value=\"TOKEN\"></form><p>&lt;tl-csrf/&gt; <tl-other/></p><tl-session/>"
        );
    }
}
