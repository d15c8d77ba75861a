//! Notices sent as HTTP requests: chat webhooks, Matrix, Kiln's signed JSON push, and commit statuses. The
//! payload holds the method, URL and body; the credentials are added here, at send time, from the config.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use sha2::Sha256;

use super::{SendError, SetupError};
use crate::config::{Forge, ReporterDef, Target};
use crate::model::Notification;
use crate::reporters::HttpPayload;
use crate::store::Store;

/// Bytes of an answer kept (in `answer` or `last_error`).
const ANSWER_BYTES: usize = 300;

pub struct HttpSender {
    def: Arc<ReporterDef>,
    client: reqwest::Client,
    store: Store,
}

impl HttpSender {
    pub fn new(def: Arc<ReporterDef>, store: Store) -> Result<HttpSender, SetupError> {
        let client = reqwest::Client::builder()
            .timeout(def.timeout)
            .connect_timeout(def.timeout)
            .user_agent(concat!("Kiln/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SetupError::Http(e.to_string()))?;
        Ok(HttpSender { def, client, store })
    }

    pub async fn send(&self, notice: &Notification) -> Result<String, SendError> {
        let payload: HttpPayload = serde_json::from_slice(&notice.payload)
            .map_err(|e| SendError::Permanent(format!("the stored notice cannot be read: {e}")))?;
        let mut url = payload.url.clone();
        if let Some(project) = &payload.project {
            let id = self.gitlab_project_id(project).await?;
            url = url.replace("{project_id}", &id);
        }
        let body = serde_json::to_vec(&payload.body).map_err(|e| SendError::Permanent(e.to_string()))?;
        let method = reqwest::Method::from_bytes(payload.method.as_bytes())
            .map_err(|e| SendError::Permanent(format!("method {:?}: {e}", payload.method)))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.authorize(&mut headers, notice, &body)?;
        let answer = self.client.request(method, &url).headers(headers).body(body).send().await;
        classify(answer, &url).await
    }

    /// Adds what the target needs to accept the request: a token, or the push's signature and delivery id.
    fn authorize(&self, headers: &mut HeaderMap, notice: &Notification, body: &[u8]) -> Result<(), SendError> {
        let value = |text: String| {
            HeaderValue::from_str(&text).map_err(|_| SendError::Permanent("a credential is not a valid header".into()))
        };
        let token = self.def.credentials.token.clone().unwrap_or_default();
        match &self.def.target {
            Target::Matrix { .. } => {
                headers.insert(AUTHORIZATION, value(format!("Bearer {token}"))?);
            }
            Target::Http { .. } => {
                headers.insert("x-kiln-delivery", value(notice.dedupe_key.clone())?);
                headers.insert("x-kiln-event", value(notice.event.clone())?);
                if let Some(secret) = &self.def.credentials.secret {
                    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                        .map_err(|e| SendError::Permanent(e.to_string()))?;
                    mac.update(body);
                    let signature = hex::encode(mac.finalize().into_bytes());
                    headers.insert("x-kiln-signature", value(format!("sha256={signature}"))?);
                }
            }
            Target::Forge(forge) => match forge.forge {
                Forge::Github => {
                    headers.insert(AUTHORIZATION, value(format!("token {token}"))?);
                    headers.insert("accept", HeaderValue::from_static("application/vnd.github+json"));
                    headers.insert("x-github-api-version", HeaderValue::from_static("2022-11-28"));
                }
                Forge::Gitea => {
                    headers.insert(AUTHORIZATION, value(format!("token {token}"))?);
                }
                Forge::Gitlab => {
                    headers.insert("private-token", value(token)?);
                }
                Forge::Bitbucket => {
                    let auth = if token.contains(':') {
                        use base64::Engine;
                        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(token.as_bytes()))
                    } else {
                        format!("Bearer {token}")
                    };
                    headers.insert(AUTHORIZATION, value(auth)?);
                }
            },
            Target::Chat { .. } | Target::Mail(_) => {}
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, HeaderValue::from_static(concat!("Kiln/", env!("CARGO_PKG_VERSION"))));
        }
        Ok(())
    }

    /// A GitLab project's id, asked of the server once and then kept in the store (it survives restarts).
    async fn gitlab_project_id(&self, project: &str) -> Result<String, SendError> {
        let state_name = format!("reporter:{}", self.def.name);
        let key = format!("gitlab_project:{project}");
        let stored = self.store.get_state(&state_name, &key).await.map_err(|e| SendError::retry(e.to_string()))?;
        if let Some(id) = stored.as_ref().and_then(serde_json::Value::as_i64) {
            return Ok(id.to_string());
        }
        let Target::Forge(forge) = &self.def.target else {
            return Err(SendError::Permanent("a project id is for GitLab".into()));
        };
        let encoded: String = url::form_urlencoded::byte_serialize(project.as_bytes()).collect();
        let url = format!("{}/api/v4/projects/{}", forge.base_url, encoded.replace('+', "%20"));
        let token = self.def.credentials.token.clone().unwrap_or_default();
        let answer = self.client.get(&url).header("private-token", token).send().await;
        let text = classify(answer, &url).await?;
        let body = text.split_once(' ').map_or("", |(_, b)| b).split_once(' ').map_or("", |(_, b)| b);
        let id = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["id"].as_i64())
            .ok_or_else(|| SendError::Permanent(format!("GitLab did not say the id of project {project}: {text}")))?;
        if let Err(e) = self.store.set_state(&state_name, &key, &serde_json::json!(id)).await {
            tracing::warn!(error = %e, "keeping a GitLab project id failed");
        }
        Ok(id.to_string())
    }
}

/// Sorts an answer into success (`"<code> <reason> <body>"`), a retry (with the wait the server asked for) or a
/// refusal. GitLab's "Cannot transition status" means the status is already in that state: done.
async fn classify(answer: Result<reqwest::Response, reqwest::Error>, url: &str) -> Result<String, SendError> {
    let response = match answer {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return Err(SendError::retry(format!("{url}: timed out: {e}"))),
        Err(e) => return Err(SendError::retry(format!("{url}: {e}"))),
    };
    let status = response.status();
    let after = retry_after(response.headers());
    let text = response.text().await.unwrap_or_default();
    let shown: String = text.chars().take(ANSWER_BYTES).collect();
    let summary = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    if status.is_success() {
        return Ok(format!("{summary} {shown}"));
    }
    let code = status.as_u16();
    if code == 400 && text.contains("Cannot transition status") {
        return Ok(format!("{summary} already in that state: {shown}"));
    }
    let discord_after = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["retry_after"].as_f64())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64);
    let message = format!("{url}: {summary} {shown}");
    match code {
        408 | 429 | 500..=599 => Err(SendError::Retry { after: after.or(discord_after), message }),
        403 if after.is_some() => Err(SendError::Retry { after, message }),
        _ => Err(SendError::Permanent(message)),
    }
}

/// `Retry-After` in seconds, or GitHub's `x-ratelimit-reset` when no requests remain.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(seconds) = header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(seconds));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        let reset = header("x-ratelimit-reset")?.parse::<u64>().ok()?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        return Some(Duration::from_secs(reset.saturating_sub(now).max(1)));
    }
    None
}
