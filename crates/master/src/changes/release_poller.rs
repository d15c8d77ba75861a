//! The release poller (`type = "package"`): polls a PyPI-style JSON index (`<index_url>/<package>/json`) and turns
//! each new release of the package into a change.
//!
//! Semantics: the first poll (no stored state) only records the versions it sees (state key `versions`); later
//! polls give one change per version not seen before, oldest upload first. A version without any uploaded file
//! is not a release yet: it is neither reported nor recorded until it has one. Delivery is two-phase and
//! at-least-once, as for the git poller: [`ReleasePoller::commit_state`] saves the versions only after the caller
//! stored the changes.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use serde::Deserialize;

use super::git_poller::PollError;
use super::NewChange;
use crate::config::ReleasePollerDef;
use crate::store::Store;

/// The state key of the versions seen: a JSON array of version strings.
pub const VERSIONS_KEY: &str = "versions";

/// How long one request to the index may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// A release poller: one per `[[change_source]]` of `type = "package"`.
pub struct ReleasePoller {
    def: ReleasePollerDef,
    store: Store,
    client: Option<reqwest::Client>,
    /// The versions the last successful poll saw, saved by [`ReleasePoller::commit_state`].
    pending: Option<BTreeSet<String>>,
}

#[derive(Deserialize)]
struct PackageJson {
    info: Info,
    /// Every version's files; absent from a version's own page, where `urls` has the files.
    releases: Option<BTreeMap<String, Vec<FileJson>>>,
    #[serde(default)]
    urls: Vec<FileJson>,
}

#[derive(Deserialize)]
struct Info {
    version: String,
    author: Option<String>,
    maintainer: Option<String>,
}

#[derive(Deserialize)]
struct FileJson {
    upload_time_iso_8601: Option<String>,
    upload_time: Option<String>,
}

impl ReleasePoller {
    pub fn new(def: ReleasePollerDef, store: Store) -> ReleasePoller {
        ReleasePoller { def, store, client: None, pending: None }
    }

    pub fn def(&self) -> &ReleasePollerDef {
        &self.def
    }

    fn url(&self) -> String {
        format!("{}/{}/json", self.def.index_url, self.def.package)
    }

    /// Polls once: the changes for the versions released since the last committed poll, oldest first. The seen
    /// versions stay pending until [`ReleasePoller::commit_state`]; a failed poll changes nothing.
    pub async fn poll(&mut self) -> Result<Vec<NewChange>, PollError> {
        self.pending = None;
        let url = self.url();
        let known: Option<BTreeSet<String>> = match self.store.get_state(&self.def.name, VERSIONS_KEY).await? {
            None => None,
            Some(value) => Some(serde_json::from_value(value).map_err(|e| PollError::State {
                name: self.def.name.clone(),
                key: VERSIONS_KEY.into(),
                reason: e.to_string(),
            })?),
        };
        let package = self.fetch(&url).await?;

        let files = match package.releases {
            Some(releases) => releases,
            None => BTreeMap::from([(package.info.version.clone(), package.urls)]),
        };
        // Released versions (with at least one file) and when their first file was uploaded.
        let mut released: Vec<(i64, String)> = Vec::new();
        for (version, files) in files {
            let times: Vec<i64> = files.iter().filter_map(upload_time).collect();
            if !files.is_empty() {
                released.push((times.into_iter().min().unwrap_or(0), version));
            }
        }
        released.sort();
        let mut seen: BTreeSet<String> = released.iter().map(|(_, v)| v.clone()).collect();
        let changes = match &known {
            None => Vec::new(),
            Some(known) => {
                seen.extend(known.iter().cloned());
                let author = [&package.info.author, &package.info.maintainer]
                    .into_iter()
                    .flatten()
                    .map(|a| a.trim())
                    .find(|a| !a.is_empty())
                    .unwrap_or(&self.def.package)
                    .to_string();
                released
                    .into_iter()
                    .filter(|(_, version)| !known.contains(version))
                    .map(|(when, version)| self.change(&author, version, when))
                    .collect()
            }
        };
        self.pending = Some(seen);
        Ok(changes)
    }

    async fn fetch(&mut self, url: &str) -> Result<PackageJson, PollError> {
        let http_error = |source| PollError::Http { url: url.to_string(), source };
        let client = match &self.client {
            Some(client) => client.clone(),
            None => {
                let client = reqwest::Client::builder().timeout(HTTP_TIMEOUT).build().map_err(http_error)?;
                self.client = Some(client.clone());
                client
            }
        };
        let response = client.get(url).send().await.map_err(http_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(PollError::Index { url: url.to_string(), reason: format!("HTTP {status}") });
        }
        let body = response.bytes().await.map_err(http_error)?;
        serde_json::from_slice(&body).map_err(|e| PollError::Index { url: url.to_string(), reason: e.to_string() })
    }

    fn change(&self, author: &str, version: String, when: i64) -> NewChange {
        let package = &self.def.package;
        let project = if self.def.project.is_empty() { package.clone() } else { self.def.project.clone() };
        NewChange {
            author: author.to_string(),
            committer: None,
            comments: format!("{package} {version} released"),
            files: Vec::new(),
            revision: Some(version.clone()),
            branch: None,
            repository: format!("{}/{package}", self.def.index_url),
            project,
            codebase: self.def.codebase.clone(),
            category: Some("release".into()),
            when_timestamp: when,
            properties: BTreeMap::from([
                ("package".to_string(), serde_json::Value::from(package.as_str())),
                ("version".to_string(), serde_json::Value::from(version)),
            ]),
        }
    }

    /// Saves the versions of the last successful poll, once its changes are stored.
    pub async fn commit_state(&mut self) -> Result<(), PollError> {
        if let Some(versions) = self.pending.take() {
            let value = serde_json::Value::from(versions.into_iter().collect::<Vec<_>>());
            self.store.set_state(&self.def.name, VERSIONS_KEY, &value).await?;
        }
        Ok(())
    }
}

impl super::Poller for ReleasePoller {
    fn name(&self) -> &str {
        &self.def.name
    }

    fn poll(&mut self) -> impl Future<Output = Result<Vec<NewChange>, PollError>> + Send {
        ReleasePoller::poll(self)
    }

    fn commit_state(&mut self) -> impl Future<Output = Result<(), PollError>> + Send {
        ReleasePoller::commit_state(self)
    }

    fn discard(&mut self) {
        self.pending = None;
    }
}

/// When a file was uploaded, in epoch seconds.
fn upload_time(file: &FileJson) -> Option<i64> {
    if let Some(time) = &file.upload_time_iso_8601 {
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(time) {
            return Some(t.timestamp());
        }
    }
    let time = file.upload_time.as_deref()?;
    let naive = chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Some(naive.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::{json, Value};

    use super::*;
    use crate::store::testing::temp_store;

    /// A JSON index on 127.0.0.1 serving `/<package>/json` from a document the test changes.
    async fn index(document: Arc<Mutex<Value>>) -> String {
        let app = axum::Router::new().route(
            "/demo/json",
            axum::routing::get(move || {
                let document = document.lock().expect("lock").clone();
                async move { axum::Json(document) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn file(time: &str) -> Value {
        json!({"filename": "demo.tar.gz", "upload_time_iso_8601": time})
    }

    fn def(index_url: String) -> ReleasePollerDef {
        ReleasePollerDef {
            name: "package:demo".into(),
            package: "demo".into(),
            index_url,
            poll_interval: Duration::from_secs(60),
            project: String::new(),
            codebase: "cb".into(),
        }
    }

    async fn poll(poller: &mut ReleasePoller) -> Vec<NewChange> {
        let changes = poller.poll().await.expect("poll");
        poller.commit_state().await.expect("commit");
        changes
    }

    #[tokio::test]
    async fn new_versions_become_changes_once() {
        let (store, _dir) = temp_store().await;
        let document = Arc::new(Mutex::new(json!({
            "info": {"version": "1.0", "author": "", "maintainer": "Grace Hopper"},
            "releases": {"0.9": [file("2024-01-01T00:00:00.000000Z")], "1.0": [file("2024-02-01T00:00:00.000000Z")]},
        })));
        let url = index(document.clone()).await;
        let mut poller = ReleasePoller::new(def(url.clone()), store.clone());
        assert!(poll(&mut poller).await.is_empty(), "the first poll only records");
        assert_eq!(store.get_state("package:demo", VERSIONS_KEY).await.expect("state"), Some(json!(["0.9", "1.0"])));
        assert!(poll(&mut poller).await.is_empty());

        {
            let mut document = document.lock().expect("lock");
            document["info"]["version"] = json!("1.1");
            document["releases"]["1.1"] = json!([file("2024-03-01T12:00:00.000000Z"), file("2024-03-01T13:00:00Z")]);
            document["releases"]["2.0rc1"] = json!([]);
        }
        let changes = poll(&mut poller).await;
        assert_eq!(changes.len(), 1, "{changes:?}");
        let change = &changes[0];
        assert_eq!(change.author, "Grace Hopper");
        assert_eq!(change.comments, "demo 1.1 released");
        assert_eq!(change.revision.as_deref(), Some("1.1"));
        assert_eq!(change.branch, None);
        assert_eq!(change.category.as_deref(), Some("release"));
        assert_eq!(change.repository, format!("{url}/demo"));
        assert_eq!((change.project.as_str(), change.codebase.as_str()), ("demo", "cb"));
        assert_eq!(change.when_timestamp, 1_709_294_400);
        assert_eq!(change.properties.get("package"), Some(&json!("demo")));
        assert_eq!(change.properties.get("version"), Some(&json!("1.1")));

        // A restart: no duplicate; a version's first file makes it a release.
        let mut poller = ReleasePoller::new(def(url.clone()), store.clone());
        assert!(poll(&mut poller).await.is_empty());
        document.lock().expect("lock")["releases"]["2.0rc1"] = json!([file("2024-04-01T00:00:00Z")]);
        let changes = poll(&mut poller).await;
        assert_eq!(changes.iter().map(|c| c.revision.as_deref()).collect::<Vec<_>>(), vec![Some("2.0rc1")]);
    }

    #[tokio::test]
    async fn a_missing_package_or_index_is_an_error_and_changes_no_state() {
        let (store, _dir) = temp_store().await;
        let url = index(Arc::new(Mutex::new(json!({})))).await;
        let mut poller = ReleasePoller::new(def(url.clone()), store.clone());
        let err = poller.poll().await.expect_err("not a package document");
        assert!(matches!(err, PollError::Index { .. }), "{err}");
        let mut other = def(url);
        other.package = "other".into();
        let mut poller = ReleasePoller::new(other, store.clone());
        let err = poller.poll().await.expect_err("404");
        assert!(err.to_string().contains("404"), "{err}");
        poller.commit_state().await.expect("nothing to commit");
        let mut poller = ReleasePoller::new(def("http://127.0.0.1:1".into()), store.clone());
        assert!(matches!(poller.poll().await, Err(PollError::Http { .. })));
        assert_eq!(store.get_state("package:demo", VERSIONS_KEY).await.expect("state"), None);
    }
}
