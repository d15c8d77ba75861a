//! A master's REST API (`/api/v2`) as the client commands use it: GETs, JSON-RPC actions, a bearer token.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A master's `/api/v2`. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    /// A user name and password, sent with HTTP Basic instead of the token.
    login: Option<(String, String)>,
    http: reqwest::Client,
}

impl Api {
    /// The API of the master whose web URL is `master` (`http://host:port/`, with or without `/api/v2`).
    pub fn new(master: &str, token: Option<&str>) -> anyhow::Result<Api> {
        let master = master.trim_end_matches('/');
        if !master.starts_with("http://") && !master.starts_with("https://") {
            bail!("--master '{master}': expected the master's web URL, e.g. http://127.0.0.1:8010/");
        }
        let base = if master.ends_with("/api/v2") { master.to_string() } else { format!("{master}/api/v2") };
        let http = reqwest::Client::builder().timeout(TIMEOUT).build()?;
        Ok(Api { base, token: token.map(str::to_owned), login: None, http })
    }

    /// Sends `user` and `password` (HTTP Basic) instead of a token.
    pub fn with_login(mut self, user: &str, password: &str) -> Api {
        self.login = Some((user.to_string(), password.to_string()));
        self
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.login, &self.token) {
            (Some((user, password)), _) => request.basic_auth(user, Some(password)),
            (None, Some(token)) => request.bearer_auth(token),
            (None, None) => request,
        }
    }

    /// Sends `method` to `path` with a JSON `body` (none for `DELETE`); returns the answer, or an error with
    /// the master's message.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let url = format!("{}/{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.authorized(request).send().await.with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let answer: Value = response.json().await.with_context(|| format!("{method} {url}: the answer is not JSON"))?;
        if !status.is_success() {
            bail!("{method} {url}: {status}: {}", answer["error"].as_str().unwrap_or(&answer.to_string()));
        }
        Ok(answer)
    }

    /// `GET path` (relative to `/api/v2`) as JSON; an error answer becomes an error naming the URL.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}/{path}", self.base);
        let response = self.authorized(self.http.get(&url)).send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body: Value = response.json().await.with_context(|| format!("GET {url}: the answer is not JSON"))?;
        if !status.is_success() {
            bail!("GET {url}: {status}: {}", body["error"].as_str().unwrap_or(&body.to_string()));
        }
        Ok(body)
    }

    /// `GET events?path=…` (Server-Sent Events), connected: the response's body is the stream, without the
    /// timeout of other requests.
    pub async fn events(&self, paths: &[String]) -> anyhow::Result<reqwest::Response> {
        // Routing-key patterns are ids, names, `*` and `/`: nothing a query string must escape.
        let query: Vec<String> = paths.iter().map(|p| format!("path={p}")).collect();
        let url = format!("{}/events?{}", self.base, query.join("&"));
        // A stream lasts as long as the build it follows: no overall timeout, only one for connecting.
        let request = self.http.get(&url).timeout(Duration::from_secs(365 * 24 * 3600));
        let response = tokio::time::timeout(TIMEOUT, self.authorized(request).send())
            .await
            .with_context(|| format!("GET {url}: no answer within {TIMEOUT:?}"))?
            .with_context(|| format!("GET {url}"))?;
        if !response.status().is_success() {
            bail!("GET {url}: {}", response.status());
        }
        Ok(response)
    }

    /// The `plural` list of `GET path`.
    pub async fn get_list(&self, path: &str, plural: &str) -> anyhow::Result<Vec<Value>> {
        let body = self.get(path).await?;
        body[plural].as_array().cloned().ok_or_else(|| anyhow!("GET {path}: no '{plural}' in the answer"))
    }

    /// The one item of `GET path` (`builds/42` → the first of `builds`).
    pub async fn get_one(&self, path: &str) -> anyhow::Result<Value> {
        let plural = path.split('?').next().unwrap_or(path).split('/').rev().nth(1).unwrap_or(path);
        self.get_list(path, plural).await?.into_iter().next().ok_or_else(|| anyhow!("{path}: not found"))
    }

    /// Calls the JSON-RPC `method` on `path` with `params`; returns its `result`.
    pub async fn rpc(&self, path: &str, method: &str, params: Value) -> anyhow::Result<Value> {
        let url = format!("{}/{path}", self.base);
        let body = json!({ "jsonrpc": "2.0", "method": method, "params": params, "id": 1 });
        let request = self.authorized(self.http.post(&url).json(&body));
        let response = request.send().await.with_context(|| format!("POST {url}"))?;
        let answer: Value = response.json().await.with_context(|| format!("POST {url}: the answer is not JSON"))?;
        if let Some(error) = answer.get("error") {
            bail!("{method} refused: {}", error["message"].as_str().unwrap_or(&error.to_string()));
        }
        Ok(answer["result"].clone())
    }

    /// The build named `build`: an id (`42`) or `BUILDER/NUMBER` (`test/7`).
    pub async fn build(&self, build: &str) -> anyhow::Result<Value> {
        match build.rsplit_once('/') {
            Some((builder, number)) => self.get_one(&format!("builders/{builder}/builds/{number}")).await,
            None => {
                let id: i64 = build.parse().map_err(|_| anyhow!("'{build}' is not a build id or BUILDER/NUMBER"))?;
                self.get_one(&format!("builds/{id}")).await
            }
        }
    }
}
