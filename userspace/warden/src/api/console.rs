//! The security team's console at `/ui/`: a page, a style sheet and a few JavaScript
//! modules, compiled into the binary so it works offline on a management network. The
//! files hold no data and need no token; the page signs in with a bearer token kept in
//! the tab's `sessionStorage` and sends it on every API call, so no cookie exists for a
//! forged cross-site request to ride on. Every answer carries a strict
//! Content-Security-Policy: scripts and styles only from these files, no inline code, no
//! framing.

use axum::{
    extract::Path,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
};

use super::error::ApiError;

/// The console's policy: only its own files, no inline script or style, no plugins, no
/// framing, forms and fetches to this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One file of the console: its name under `/ui/`, type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const fn asset(name: &'static str, content_type: &'static str, body: &'static str) -> Asset {
    Asset {
        name,
        content_type,
        body,
    }
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console; `index.html` is also `/ui/`.
const ASSETS: &[Asset] = &[
    asset("index.html", HTML, include_str!("../../console/index.html")),
    asset(
        "console.css",
        CSS,
        include_str!("../../console/console.css"),
    ),
    asset("main.js", JS, include_str!("../../console/main.js")),
    asset("api.js", JS, include_str!("../../console/api.js")),
    asset("dom.js", JS, include_str!("../../console/dom.js")),
    asset("queue.js", JS, include_str!("../../console/queue.js")),
    asset("flag.js", JS, include_str!("../../console/flag.js")),
    asset("tenant.js", JS, include_str!("../../console/tenant.js")),
    asset("audit.js", JS, include_str!("../../console/audit.js")),
    asset("session.js", JS, include_str!("../../console/session.js")),
    asset("frames.js", JS, include_str!("../../console/frames.js")),
    asset("chart.js", JS, include_str!("../../console/chart.js")),
];

/// `GET /` and `GET /ui`: to the console.
pub(super) async fn to_console() -> Redirect {
    Redirect::to("/ui/")
}

/// `GET /ui/`: the page.
pub(super) async fn index() -> Response {
    serve("index.html")
}

/// `GET /ui/{file}`.
pub(super) async fn file(Path(name): Path<String>) -> Response {
    serve(&name)
}

fn serve(name: &str) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == name) else {
        return ApiError::new(StatusCode::NOT_FOUND, format!("no console file {name:?}"))
            .into_response();
    };
    let mut response = ([(header::CONTENT_TYPE, a.content_type)], a.body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new binary brings new files: the browser asks again rather than mixing versions.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            for line in a.body.lines().filter(|l| l.starts_with("import ")) {
                let target = line
                    .split('"')
                    .nth(1)
                    .and_then(|t| t.strip_prefix("./"))
                    .unwrap_or_else(|| panic!("{}: import without ./: {line}", a.name));
                assert!(
                    ASSETS.iter().any(|b| b.name == target),
                    "{} imports {target}, which is not served",
                    a.name
                );
            }
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = ASSETS[0].body;
        assert!(!html.contains("<style"), "inline style element");
        assert!(!html.contains(" style="), "inline style attribute");
        let handler = html.split(" on").skip(1).find(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(handler.is_none(), "inline event handler: on{handler:?}");
        for tag in html.split("<script").skip(1) {
            assert!(tag.contains(" src="), "inline script: <script{tag}");
        }
    }
}
