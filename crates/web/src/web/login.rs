//! The login page (`GET /login`, `POST /login`: a form, no script) and `POST /logout`.
//!
//! The form is protected from cross-site posting by a random value in a cookie of its own (`SameSite=Strict`)
//! that the form must repeat; a successful login starts a session ([`crate::auth::session`]) and goes to the
//! form's `next` (a path of this master only). Logging out needs the session's CSRF token.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;

use super::auth::{Gate, Viewer, CSRF_HEADER};
use crate::auth::headers::cookie;
use crate::auth::{session, LoginError};

/// The cookie holding the login form's anti-forgery value.
const FORM_COOKIE: &str = "kiln_login";
/// How long a login form may be left open.
const FORM_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest form body read.
const MAX_FORM: usize = 8 * 1024;

/// Text for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `next` if it is a path of this master (`/…`, not `//host`), else `/`.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') && !p.contains("://") => {
            p.to_string()
        }
        _ => "/".to_string(),
    }
}

fn form_page(status: StatusCode, form_value: &str, next: &str, message: Option<&str>, secure: bool) -> Response {
    let message = message.map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(m))).unwrap_or_default();
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Log in - Kiln</title>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n</head>\n<body>\n<main>\n\
         <h1>Log in</h1>\n{message}<form method=\"post\" action=\"/login\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{form}\">\n<input type=\"hidden\" name=\"next\" value=\"{next}\">\n\
         <p><label for=\"name\">User name</label>\n<input id=\"name\" name=\"name\" autocomplete=\"username\" required autofocus></p>\n\
         <p><label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required></p>\n\
         <p><button type=\"submit\">Log in</button></p>\n</form>\n</main>\n</body>\n</html>\n",
        form = escape(form_value),
        next = escape(next),
    );
    let mut response = (status, Html(body)).into_response();
    let cookie = session::set_cookie(FORM_COOKIE, form_value, "/login", FORM_LIFETIME, secure)
        .replace("SameSite=Lax", "SameSite=Strict");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /login?next=/path`: the form.
pub(super) async fn page(
    Extension(gate): Extension<Arc<Gate>>,
    Query(query): Query<std::collections::BTreeMap<String, String>>,
) -> Response {
    let next = local_path(query.get("next").map(String::as_str));
    form_page(StatusCode::OK, &session::new_secret(), &next, None, gate.secure())
}

/// The fields of a form body.
fn fields(body: &[u8]) -> std::collections::BTreeMap<String, String> {
    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// `POST /login` (`name`, `password`, `csrf`, `next`): starts a session and goes to `next`.
pub(super) async fn login(
    Extension(gate): Extension<Arc<Gate>>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let secure = gate.secure();
    if body.len() > MAX_FORM {
        return form_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            &session::new_secret(),
            "/",
            Some("the form is too long"),
            secure,
        );
    }
    let form = fields(&body);
    let next = local_path(form.get("next").map(String::as_str));
    let fresh = session::new_secret();
    let sent = form.get("csrf").map(String::as_str).unwrap_or("");
    let expected = headers.get(header::COOKIE).and_then(|c| cookie(c.as_bytes(), FORM_COOKIE)).unwrap_or("");
    if expected.is_empty() || !session::same(sent, expected) {
        let message = "the form expired or came from another site: log in again";
        return form_page(StatusCode::FORBIDDEN, &fresh, &next, Some(message), secure);
    }
    let name = form.get("name").map(String::as_str).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    let user = match gate.auth.check_password(name, password, viewer.address).await {
        Ok(user) => user,
        Err(LoginError::Invalid) => {
            tracing::info!(user = name, address = ?viewer.address, "login refused");
            return form_page(StatusCode::UNAUTHORIZED, &fresh, &next, Some("wrong user name or password"), secure);
        }
        Err(e @ LoginError::Limited(wait)) => {
            let mut response = form_page(StatusCode::TOO_MANY_REQUESTS, &fresh, &next, Some(&e.to_string()), secure);
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return response;
        }
        Err(LoginError::Store(e)) => return super::ApiError::from(e).into_response(),
    };
    let started = match gate.auth.create_session(&user, "password").await {
        Ok(started) => started,
        Err(e) => return super::ApiError::from(e).into_response(),
    };
    tracing::info!(user = %user.name, address = ?viewer.address, "logged in");
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, next)]).into_response();
    let cookies = [
        session::set_cookie(session::COOKIE, &started.id, "/", started.lifetime, secure),
        session::clear_cookie(FORM_COOKIE, "/login", secure),
    ];
    for c in cookies {
        if let Ok(value) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// `POST /logout` (form field `csrf` or the `X-Kiln-CSRF` header: the session's token): ends the session.
pub(super) async fn logout(
    Extension(gate): Extension<Arc<Gate>>,
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (Some(id_hash), Some(expected)) = (viewer.session.as_deref(), viewer.csrf_token()) else {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
    };
    let form = fields(&body);
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| form.get("csrf").cloned())
        .unwrap_or_default();
    if !session::same(&sent, expected) {
        return super::ApiError { status: StatusCode::FORBIDDEN, message: "missing or wrong CSRF token".into() }
            .into_response();
    }
    if let Err(e) = gate.auth.logout(id_hash).await {
        return super::ApiError::from(e).into_response();
    }
    tracing::info!(user = ?viewer.name(), "logged out");
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
    if let Ok(value) = HeaderValue::from_str(&session::clear_cookie(session::COOKIE, "/", gate.secure())) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_master() {
        assert_eq!(local_path(Some("/builders/1?x=2")), "/builders/1?x=2");
        for away in ["//evil.example/", "https://evil.example/", "/\\evil.example", "builders", ""] {
            assert_eq!(local_path(Some(away)), "/", "{away}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
