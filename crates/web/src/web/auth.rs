//! Who is asking, for every request: the layer that finds the [`Viewer`] (a token, HTTP Basic, the session
//! cookie, a trusted proxy's header, or nobody), refuses a `Host` the master is not served as (DNS rebinding),
//! hides everything but the login page from anonymous clients under `[auth] private = true`, and the checks
//! every control action makes before it acts ([`control`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::ApiError;
use crate::auth::headers::{self, Credentials};
use crate::auth::{session, Auth, LoginError, User, Via};
use crate::config::MasterConfig;

/// The header a cookie-authenticated POST carries its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-kiln-csrf";

/// The client's address, put on every request by the web server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer(pub SocketAddr);

/// Who sent a request, and whether it came from the master's own pages.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    /// The authenticated user, if any.
    pub user: Option<User>,
    /// How they were authenticated.
    pub via: Option<Via>,
    /// The client's address (none in tests that call the router directly).
    pub address: Option<IpAddr>,
    /// The CSRF token of the session, when the user came with the session cookie.
    csrf: Option<String>,
    /// The stored session's hash, to log out.
    pub(super) session: Option<String>,
    /// Whether the request's `Origin` (else `Referer`) is the master's own, or absent; and `Sec-Fetch-Site` is
    /// not `cross-site`.
    same_origin: bool,
}

impl Viewer {
    /// The CSRF token a page's form and scripts must send back (`<meta name="kiln-csrf" content=…>`, the
    /// `X-Kiln-CSRF` header or a form's `csrf` field): the session's, when the viewer is logged in by cookie.
    pub fn csrf_token(&self) -> Option<&str> {
        self.csrf.as_deref()
    }

    /// The user's name, if one is logged in.
    pub fn name(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.name.as_str())
    }
}

/// What the layer needs, built once per router; what it checks comes from the config in force at each request
/// (a reconfig changes users, rules, `[auth]` and the master's `url` for the next request).
#[derive(Debug)]
pub(crate) struct Gate {
    pub(crate) auth: Auth,
}

impl Gate {
    pub(crate) fn new(auth: Auth) -> Gate {
        Gate { auth }
    }

    /// The hosts the config in force answers to.
    fn hosts(&self) -> Hosts {
        Hosts::new(self.auth.config().master())
    }

    /// Whether the master's URL is https or it serves https itself (cookies get `Secure`, HTTP Basic is
    /// accepted from anywhere).
    pub(crate) fn secure(&self) -> bool {
        let config = self.auth.config();
        config.master().url.starts_with("https://") || config.master().web.tls.is_some()
    }
}

/// The `Host` values a master answers to.
#[derive(Debug)]
struct Hosts {
    /// The `Host` values the master answers to, lower case.
    hosts: Vec<String>,
    /// Whether any IP-literal host with the listen port is accepted (a wildcard listen address).
    any_ip_port: Option<u16>,
    /// Whether the listen port is picked when the master starts (port 0): then any port of the listen host.
    any_port: bool,
}

impl Hosts {
    fn new(config: &MasterConfig) -> Hosts {
        let mut hosts = Vec::new();
        if let Some(host) = url_host(&config.url) {
            hosts.push(host);
        }
        let address = config.web.address;
        let port = address.port();
        hosts.push(address.to_string());
        if address.ip().is_loopback() || address.ip().is_unspecified() {
            hosts.extend([format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")]);
        }
        let any_ip_port = address.ip().is_unspecified().then_some(port);
        let any_port = port == 0;
        Hosts { hosts, any_ip_port, any_port }
    }

    /// Whether `host` (a `Host` header, or the authority of an `Origin`) names this master.
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if self.hosts.contains(&host) {
            return true;
        }
        if self.any_port {
            let name = host.rsplit_once(':').map_or(host.as_str(), |(name, _)| name);
            if self.hosts.iter().any(|h| h.rsplit_once(':').is_some_and(|(n, p)| n == name && p == "0")) {
                return true;
            }
        }
        let Some(port) = self.any_ip_port else { return false };
        host.parse::<SocketAddr>().is_ok_and(|a| a.port() == port)
    }

    /// Whether an `Origin` (`scheme://host[:port]`) or a `Referer` URL is this master's.
    fn origin_allowed(&self, origin: &str) -> bool {
        url_host(origin).is_some_and(|host| self.host_allowed(&host))
    }
}

/// The `host[:port]` of an `http(s)://` URL, lower case, without a default port.
fn url_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host).to_ascii_lowercase();
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    Some(authority.strip_suffix(default).map(str::to_string).unwrap_or(authority)).filter(|a| !a.is_empty())
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError { status, message: message.into() }.into_response()
}

/// Paths an anonymous client may read under `private = true`: the login page itself and the forges' hooks
/// (which authenticate themselves).
fn public_path(path: &str) -> bool {
    path == "/login" || path == "/logout" || path.starts_with("/change_hook/")
}

/// Paths whose requests are refused outright when they carry bad credentials: the API, `/ws`, `/metrics`.
fn credentialed_path(path: &str) -> bool {
    path.starts_with("/api/") || path == "/ws" || path == "/metrics"
}

/// The layer: finds the viewer, and refuses what must be refused before any handler runs.
pub(crate) async fn identify(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let hosts = gate.hosts();
    if let Some(host) = headers.get(header::HOST) {
        let allowed = host.to_str().is_ok_and(|h| hosts.host_allowed(h));
        if !allowed {
            let shown = String::from_utf8_lossy(host.as_bytes()).into_owned();
            let message = format!("Host '{shown}' is not this master's (see `url` and [web] address in master.toml)");
            return refuse(StatusCode::MISDIRECTED_REQUEST, message);
        }
    }
    let peer = request.extensions().get::<Peer>().map(|p| p.0.ip());
    let address = client_address(&gate, peer, headers);
    let same_origin = same_origin(&hosts, headers);
    let mut viewer = Viewer { address, same_origin, ..Viewer::default() };
    // A forge's hook request carries the hook's own token, which the hook checks.
    let hook = request.uri().path().starts_with("/change_hook/");
    if let Some(value) = headers.get(header::AUTHORIZATION).filter(|_| !hook) {
        match credentials(&gate, value.as_bytes(), address).await {
            Ok((user, via)) => {
                viewer.user = Some(user);
                viewer.via = Some(via);
            }
            // Elsewhere (a page, or a worker knocking at the wrong port with its own Basic credentials) bad
            // credentials make an anonymous request, which `private` and the control checks then refuse.
            Err(response) if credentialed_path(request.uri().path()) => return response,
            Err(_) => {}
        }
    } else if let Some(id) = headers.get(header::COOKIE).and_then(|c| headers::cookie(c.as_bytes(), session::COOKIE)) {
        match gate.auth.session(id).await {
            Ok(Some(found)) => {
                viewer.user = Some(found.user);
                viewer.via = Some(Via::Session);
                viewer.csrf = Some(found.csrf);
                viewer.session = Some(found.id_hash);
            }
            Ok(None) => {}
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    if viewer.user.is_none() {
        if let Some(proxy) = &gate.auth.config().proxy {
            let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
            let groups = proxy.groups_header.as_deref().and_then(text);
            if let Some(user) = gate.auth.proxy_user(peer, text(&proxy.header), groups) {
                viewer.user = Some(user);
                viewer.via = Some(Via::Proxy);
            }
        }
    }
    if gate.auth.config().private && viewer.user.is_none() && !public_path(request.uri().path()) {
        return private_refusal(&request);
    }
    request.extensions_mut().insert(viewer);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.entry(header::X_CONTENT_TYPE_OPTIONS).or_insert(HeaderValue::from_static("nosniff"));
    headers.entry(header::REFERRER_POLICY).or_insert(HeaderValue::from_static("same-origin"));
    response
}

/// The client's address: the peer's, or behind a trusted proxy the last address its `X-Forwarded-For` names (the
/// one the proxy saw), so that logins are limited and audited per client, not per proxy.
fn client_address(gate: &Gate, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let trusted = gate.auth.config().proxy.as_ref().is_some_and(|p| peer.is_some_and(|a| p.trusted.contains(&a)));
    if !trusted {
        return peer;
    }
    let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).next_back();
    forwarded.and_then(|list| list.rsplit(',').next()).and_then(|a| a.trim().parse().ok()).or(peer)
}

/// The CSRF token of the request whose extensions are `extensions` (see [`Viewer::csrf_token`]), for a page's
/// `<meta name="kiln-csrf" content=…>`.
pub fn csrf_token(extensions: &axum::http::Extensions) -> Option<&str> {
    extensions.get::<Viewer>().and_then(Viewer::csrf_token)
}

/// An anonymous read of a private master: a page goes to the login form, the API answers 401.
fn private_refusal(request: &Request) -> Response {
    let path = request.uri().path();
    let wants_page = request.method() == Method::GET
        && !path.starts_with("/api/")
        && path != "/ws"
        && request.headers().get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if wants_page {
        let next = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let query: String = form_urlencoded::Serializer::new(String::new()).append_pair("next", next).finish();
        return Redirect::to(&format!("/login?{query}")).into_response();
    }
    refuse(StatusCode::UNAUTHORIZED, "this master is private: log in (/login) or send a token (Authorization: Bearer)")
}

fn same_origin(hosts: &Hosts, headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or(""));
    if text("sec-fetch-site") == Some("cross-site") {
        return false;
    }
    match (text(header::ORIGIN.as_str()), text(header::REFERER.as_str())) {
        (Some(origin), _) => hosts.origin_allowed(origin),
        (None, Some(referer)) => hosts.origin_allowed(referer),
        (None, None) => true,
    }
}

/// The user an `Authorization` header names, or the answer refusing it.
async fn credentials(gate: &Gate, value: &[u8], address: Option<IpAddr>) -> Result<(User, Via), Response> {
    let unauthorized = |message: &str| refuse(StatusCode::UNAUTHORIZED, message);
    let bad_token = || unauthorized("the API token is unknown, revoked or expired");
    match headers::parse_authorization(value) {
        Err(e) => Err(unauthorized(&e.to_string())),
        Ok(Credentials::Bearer(token)) => match gate.auth.check_token(&token).await {
            Ok(Some((user, _))) => Ok((user, Via::Token)),
            Ok(None) => Err(bad_token()),
            Err(e) => Err(ApiError::from(e).into_response()),
        },
        Ok(Credentials::Basic { name, password }) => {
            if !gate.secure() && !address.is_some_and(|a| a.is_loopback()) {
                let message = "HTTP Basic is accepted only over https or from this machine; send a token \
                               (Authorization: Bearer) instead";
                return Err(unauthorized(message));
            }
            if password.starts_with(crate::auth::token::PREFIX) {
                return match gate.auth.check_token(&password).await {
                    Ok(Some((user, _))) if user.name == name => Ok((user, Via::Token)),
                    Ok(_) => Err(bad_token()),
                    Err(e) => Err(ApiError::from(e).into_response()),
                };
            }
            match gate.auth.check_password(&name, &password, address).await {
                Ok(user) => Ok((user, Via::Basic)),
                Err(LoginError::Invalid) => Err(unauthorized("wrong user name or password")),
                Err(e @ LoginError::Limited(wait)) => {
                    let mut response = refuse(StatusCode::TOO_MANY_REQUESTS, e.to_string());
                    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                        response.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                    Err(response)
                }
                Err(LoginError::Store(e)) => Err(ApiError::from(e).into_response()),
            }
        }
    }
}

/// Why a control request was refused: the status and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

/// The checks of every state-changing request before it acts: a JSON body (`json_body`) must say
/// `application/json`; it must come from the master's own origin; there must be a user; a user who came with
/// the session cookie must send the session's CSRF token in `X-Kiln-CSRF`. Returns the user.
pub(super) fn control(
    config: &MasterConfig,
    viewer: &Viewer,
    headers: &HeaderMap,
    json_body: bool,
) -> Result<(User, Via), Refusal> {
    let refusal = |status, message: &str| Refusal { status, message: message.to_string() };
    if json_body {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(refusal(StatusCode::BAD_REQUEST, "Invalid content-type (use application/json)"));
        }
    }
    if !viewer.same_origin {
        return Err(refusal(StatusCode::BAD_REQUEST, "invalid origin: control actions come from the master's pages"));
    }
    let (Some(user), Some(via)) = (viewer.user.clone(), viewer.via) else {
        let message = if config.auth.has_users() {
            "log in first: send a token (Authorization: Bearer), HTTP Basic, or the session cookie of /login"
        } else {
            "control actions need a user, and none is configured: add a [[user]] to master.toml with a \
             password_hash printed by `kiln hash-password` (docs/security.md)"
        };
        return Err(refusal(StatusCode::UNAUTHORIZED, message));
    };
    if via == Via::Session {
        let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        let expected = viewer.csrf.as_deref().unwrap_or("");
        if expected.is_empty() || !session::same(sent, expected) {
            return Err(refusal(StatusCode::FORBIDDEN, "missing or wrong X-Kiln-CSRF header (the page's kiln-csrf)"));
        }
    }
    Ok((user, via))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(url: &str, address: &str) -> Hosts {
        let text = format!("url = \"{url}\"\n[web]\naddress = \"{address}\"\n");
        Hosts::new(&MasterConfig::from_str(&text, "master.toml").expect("config"))
    }

    #[test]
    fn hosts_and_origins() {
        let g = hosts("https://ci.example.org/", "127.0.0.1:8010");
        for good in ["ci.example.org", "CI.example.org", "127.0.0.1:8010", "localhost:8010", "[::1]:8010"] {
            assert!(g.host_allowed(good), "{good}");
        }
        for bad in ["evil.example", "ci.example.org.evil.example", "127.0.0.1:8011", "localhost", ""] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
        assert!(g.origin_allowed("https://ci.example.org"));
        assert!(g.origin_allowed("http://127.0.0.1:8010/builders?x"));
        assert!(!g.origin_allowed("http://evil.example"));
        assert!(!g.origin_allowed("null"));
        let wild = hosts("http://ci:8010/", "0.0.0.0:8010");
        assert!(wild.host_allowed("10.1.2.3:8010") && wild.host_allowed("ci:8010"));
        assert!(!wild.host_allowed("evil.example:8010"));
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("http://a.b:80/x"), Some("a.b".into()));
        assert_eq!(url_host("https://u:p@A.b:8443"), Some("a.b:8443".into()));
        assert_eq!(url_host("ftp://a"), None);
        assert_eq!(url_host("nonsense"), None);
    }
}
