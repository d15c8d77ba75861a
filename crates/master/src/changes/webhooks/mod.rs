//! Forge webhooks: push events turned into changes.
//!
//! Pure functions, no I/O: the web layer hands over the headers and the raw body of a request to
//! `/change_hook/<forge>` as a [`HookRequest`]; [`changes_from`] verifies it (HMAC signature or token, when the
//! hook has a secret) and returns the [`NewChange`]s it carries, oldest first. What the forges send follows
//! Buildbot's `www/hooks/{github,gitlab,bitbucketcloud}.py` and the `buildbot-gitea` plugin:
//!
//! - one change per pushed commit (Bitbucket Cloud: per commit it lists, else its new tip);
//! - a branch deletion, a ping, a ref that is neither a branch nor a tag → no changes;
//! - a tag → a change only when [`HookConfig::with_tags`], with the tag name as branch and category `tag`;
//!   a branch push has category `push`;
//! - `when_timestamp` is `0` when the payload carries no time (a GitLab tag push without commits): the caller
//!   stamps such a change with the time it received it, as Buildbot's `addChange` does.
//!
//! - a pull or merge request opened, reopened or pushed to → one change for its head revision, category `pull`,
//!   on a branch the build can fetch (`refs/pull/N/head`, `refs/merge-requests/N/head`), with the request's
//!   number, title, URL, author and branches as properties ([`pull`]); one from a fork only with
//!   [`HookConfig::build_forks`];
//! - a push whose head commit's message has a skip marker (`[ci skip]`, `[skip ci]`) → no changes; so does a
//!   pull or merge request whose title has one (their events carry no commit message, but GitLab's);
//! - an authenticated event the hook does not turn into changes → [`HookError::Ignored`], which the web layer
//!   answers with 200 (a forge disables a hook whose deliveries keep failing).
//!
//! Every error maps to an HTTP status with [`HookError::status`].

mod bitbucket;
mod gitea;
mod github;
mod gitlab;
pub mod pull;

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use regex::Regex;
use serde_json::Value;
use sha1::Sha1;
use sha2::Sha256;

use super::NewChange;

/// What a hook is configured with.
#[derive(Debug, Clone)]
pub struct HookConfig {
    /// The shared secret: the HMAC key (GitHub, Gitea, Forgejo, Bitbucket Cloud) or the token (GitLab).
    /// When set, a request without a valid signature or token is rejected.
    pub secret: Option<String>,
    /// Whether a pushed tag makes a change (category `tag`, the tag name as branch).
    pub with_tags: bool,
    /// The project of the changes; the repository's full name (`owner/name`) when unset.
    pub project: Option<String>,
    /// The codebase of the changes; `""` when unset.
    pub codebase: Option<String>,
    /// Whether pull and merge requests make changes at all.
    pub pull_requests: bool,
    /// Whether a pull request from another repository (a fork) makes a change. Off by default: its code is
    /// anyone's, and a build of it must not see what the master's own builds see.
    pub build_forks: bool,
    /// GitHub: a draft marked ready for review (`ready_for_review`) makes a change too.
    pub ready_for_review: bool,
    /// GitHub: a label named here, added to a pull request (`labeled`), makes a change too.
    pub labels: Vec<String>,
    /// GitHub: the ref a pull request's change names as branch: `head` (`refs/pull/N/head`, the request's own
    /// commits at its head revision; the default) or `merge` (`refs/pull/N/merge`, GitHub's trial merge into the
    /// base, whose tip the build takes: Buildbot's default).
    pub pull_request_ref: PullRef,
    /// GitLab: a comment on a merge request that contains this text makes a change for its head again.
    pub note_trigger: Option<String>,
    /// A push whose head commit's message matches one of these makes no changes (nor does a pull or merge
    /// request whose title does, nor a GitLab merge request whose last commit's message does).
    pub skip_markers: Vec<Regex>,
}

/// Which of GitHub's refs of a pull request its change names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullRef {
    Merge,
    #[default]
    Head,
}

impl PullRef {
    pub fn name(self) -> &'static str {
        match self {
            PullRef::Merge => "merge",
            PullRef::Head => "head",
        }
    }
}

/// Buildbot's skip patterns: `[ci skip]` and `[skip ci]`, with any spaces inside the brackets.
pub const DEFAULT_SKIP_MARKERS: [&str; 2] = [r"\[ *skip *ci *\]", r"\[ *ci *skip *\]"];

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            secret: None,
            with_tags: false,
            project: None,
            codebase: None,
            pull_requests: true,
            build_forks: false,
            ready_for_review: false,
            labels: Vec::new(),
            pull_request_ref: PullRef::default(),
            note_trigger: None,
            skip_markers: default_skip_markers(),
        }
    }
}

/// [`DEFAULT_SKIP_MARKERS`], compiled.
pub fn default_skip_markers() -> Vec<Regex> {
    DEFAULT_SKIP_MARKERS.iter().filter_map(|p| Regex::new(p).ok()).collect()
}

impl HookConfig {
    /// Whether `message` has one of the skip markers.
    pub fn skips(&self, message: &str) -> bool {
        self.skip_markers.iter().any(|marker| marker.is_match(message))
    }
}

/// An HTTP request as the web layer hands it over: header lookup (case-insensitive names) and the raw body.
#[derive(Debug, Clone, Copy)]
pub struct HookRequest<'a> {
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl HookRequest<'_> {
    /// The value of the first header named `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
    }
}

/// A forge that sends webhooks, as named by the last segment of the hook's URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forge {
    GitHub,
    GitLab,
    /// Gitea, Forgejo and Gogs (same payloads).
    Gitea,
    /// Bitbucket Cloud.
    Bitbucket,
}

impl Forge {
    /// The forge a URL segment names: `github`, `gitlab`, `gitea`, `forgejo`, `bitbucket` (or Buildbot's
    /// `bitbucketcloud`); `None` for any other.
    pub fn from_segment(segment: &str) -> Option<Forge> {
        match segment.to_ascii_lowercase().as_str() {
            "github" => Some(Forge::GitHub),
            "gitlab" => Some(Forge::GitLab),
            "gitea" | "forgejo" => Some(Forge::Gitea),
            "bitbucket" | "bitbucketcloud" => Some(Forge::Bitbucket),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::GitLab => "gitlab",
            Forge::Gitea => "gitea",
            Forge::Bitbucket => "bitbucket",
        }
    }

    /// The headers with the forge's id of a delivery, the same when it sends the request again: GitHub's and
    /// Gitea's delivery GUIDs, GitLab's `Idempotency-Key`, Bitbucket Cloud's `X-Request-UUID` (its retries of a
    /// request carry the same one, counted by `X-Attempt-Number`) and Bitbucket Data Center's `X-Request-Id`.
    pub fn delivery_headers(self) -> &'static [&'static str] {
        match self {
            Forge::GitHub => &["X-GitHub-Delivery"],
            Forge::GitLab => &["Idempotency-Key"],
            Forge::Gitea => &["X-Gitea-Delivery"],
            Forge::Bitbucket => &["X-Request-UUID", "X-Request-Id"],
        }
    }

    /// The forge's id of the delivery `request` is (the first of [`Forge::delivery_headers`] it has, not
    /// empty), which a redelivery repeats.
    pub fn delivery_id(self, request: &HookRequest) -> Option<String> {
        self.delivery_headers()
            .iter()
            .filter_map(|name| request.header(name))
            .find(|value| !value.is_empty())
            .map(str::to_string)
    }
}

/// Why a hook request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("missing signature header {header} (the hook has a secret)")]
    MissingSignature { header: &'static str },
    #[error("invalid signature in header {header}")]
    BadSignature { header: &'static str },
    #[error("missing token header {header} (the hook has a secret)")]
    MissingToken { header: &'static str },
    #[error("invalid token in header {header}")]
    BadToken { header: &'static str },
    #[error("missing header {header}")]
    MissingHeader { header: &'static str },
    /// An authenticated event that makes no changes (answered 200 with none, and logged).
    #[error("{forge}: {reason}: no changes")]
    Ignored { forge: &'static str, reason: String },
    #[error("malformed body: {detail}")]
    MalformedBody { detail: String },
    #[error("missing field {path}")]
    MissingField { path: String },
    #[error("field {path} is not {expected}")]
    WrongType { path: String, expected: &'static str },
    #[error("field {path} is not an ISO 8601 timestamp: {value:?}")]
    BadTimestamp { path: String, value: String },
}

impl HookError {
    /// The HTTP status to answer with: 401 for a missing token, 403 for a missing or wrong signature and a
    /// wrong token, 400 for everything wrong with the request itself, 200 for an event the hook ignores.
    pub fn status(&self) -> u16 {
        match self {
            HookError::Ignored { .. } => 200,
            HookError::MissingToken { .. } => 401,
            HookError::MissingSignature { .. } | HookError::BadSignature { .. } | HookError::BadToken { .. } => 403,
            HookError::MissingHeader { .. }
            | HookError::MalformedBody { .. }
            | HookError::MissingField { .. }
            | HookError::WrongType { .. }
            | HookError::BadTimestamp { .. } => 400,
        }
    }
}

/// Verifies the request and returns the changes it carries (possibly none: e.g. a ping event, a branch deletion,
/// a tag when `with_tags` is false).
pub fn changes_from(forge: Forge, config: &HookConfig, request: &HookRequest) -> Result<Vec<NewChange>, HookError> {
    match forge {
        Forge::GitHub => github::changes(config, request),
        Forge::GitLab => gitlab::changes(config, request),
        Forge::Gitea => gitea::changes(config, request),
        Forge::Bitbucket => bitbucket::changes(config, request),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Shared by the forges.

/// Checks `signature` (lowercase or uppercase hex, no prefix) against the HMAC-SHA256 of `body` keyed with
/// `secret`, in constant time.
fn verify_hmac_sha256(secret: &str, body: &[u8], signature: &str, header: &'static str) -> Result<(), HookError> {
    let expected = hex::decode(signature).map_err(|_| HookError::BadSignature { header })?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| HookError::BadSignature { header })?;
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| HookError::BadSignature { header })
}

/// Checks `signature` (hex) against the HMAC-SHA1 of `body` keyed with `secret`, in constant time (GitHub's
/// older `X-Hub-Signature: sha1=…`).
fn verify_hmac_sha1(secret: &str, body: &[u8], signature: &str, header: &'static str) -> Result<(), HookError> {
    let expected = hex::decode(signature).map_err(|_| HookError::BadSignature { header })?;
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).map_err(|_| HookError::BadSignature { header })?;
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| HookError::BadSignature { header })
}

/// Whether two tokens are equal, in constant time (the master's one comparison, [`crate::secrets::equal`]).
fn tokens_equal(a: &str, b: &str) -> bool {
    crate::secrets::equal(a, b)
}

/// The JSON payload of the request: the body itself, or the `payload` field of a form-encoded body (GitHub and
/// Gitea can be configured to send `application/x-www-form-urlencoded`).
fn json_payload(request: &HookRequest) -> Result<Value, HookError> {
    let form = request
        .header("Content-Type")
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    let parsed = if form {
        let payload = form_field(request.body, b"payload").ok_or_else(|| HookError::MalformedBody {
            detail: "form-encoded body without a `payload` field".to_string(),
        })?;
        serde_json::from_slice(&payload)
    } else {
        serde_json::from_slice(request.body)
    };
    parsed.map_err(|e| HookError::MalformedBody { detail: format!("invalid JSON: {e}") })
}

/// The percent-decoded values of every field `name` of a form-encoded text (a URL's query).
pub fn form_values(text: &str, name: &str) -> Vec<String> {
    text.as_bytes()
        .split(|&b| b == b'&')
        .filter_map(|pair| {
            let mut parts = pair.splitn(2, |&b| b == b'=');
            let key = parts.next()?;
            (percent_decode(key) == name.as_bytes()).then(|| percent_decode(parts.next().unwrap_or_default()))
        })
        .map(|value| String::from_utf8_lossy(&value).into_owned())
        .collect()
}

/// The percent-decoded value of the first field `name` of a form-encoded body.
fn form_field(body: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let mut parts = pair.splitn(2, |&b| b == b'=');
        let key = parts.next()?;
        (percent_decode(key) == name).then(|| percent_decode(parts.next().unwrap_or_default()))
    })
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    fn hex_digit(b: u8) -> Option<u8> {
        char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => match (s.get(i + 1).copied().and_then(hex_digit), s.get(i + 2).copied().and_then(hex_digit)) {
                (Some(hi), Some(lo)) => {
                    out.push(hi * 16 + lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// A place in a JSON payload, with its path for error messages (`commits[2].author.name`).
#[derive(Debug, Clone)]
struct Node<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Node<'a> {
    /// A pull request's number (GitHub's and Gitea's payloads): the top-level `number`, else that of `pr`, the
    /// pull request object.
    fn pull_request_number(&self, pr: &Node<'a>) -> Result<i64, HookError> {
        match self.opt("number")? {
            Some(n) => n.value.as_i64().ok_or_else(|| n.wrong_type("an integer")),
            None => pr.field("number")?.value.as_i64().ok_or_else(|| pr.wrong_type("an integer")),
        }
    }

    fn root(value: &'a Value) -> Self {
        Node { value, path: String::new() }
    }

    fn child_path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// The field `name`; absent or `null` → `None`.
    fn opt(&self, name: &str) -> Result<Option<Node<'a>>, HookError> {
        let Value::Object(map) = self.value else {
            return Err(self.wrong_type("an object"));
        };
        Ok(map.get(name).filter(|v| !v.is_null()).map(|value| Node { value, path: self.child_path(name) }))
    }

    /// The field `name`, which must be present and not `null`.
    fn field(&self, name: &str) -> Result<Node<'a>, HookError> {
        self.opt(name)?.ok_or_else(|| HookError::MissingField { path: self.child_path(name) })
    }

    fn str(&self) -> Result<&'a str, HookError> {
        self.value.as_str().ok_or_else(|| self.wrong_type("a string"))
    }

    fn str_field(&self, name: &str) -> Result<&'a str, HookError> {
        self.field(name)?.str()
    }

    fn opt_str(&self, name: &str) -> Result<Option<&'a str>, HookError> {
        self.opt(name)?.map(|n| n.str()).transpose()
    }

    fn opt_bool(&self, name: &str) -> Result<Option<bool>, HookError> {
        self.opt(name)?.map(|n| n.value.as_bool().ok_or_else(|| n.wrong_type("a boolean"))).transpose()
    }

    /// The elements of this array.
    fn items(&self) -> Result<Vec<Node<'a>>, HookError> {
        let Value::Array(items) = self.value else {
            return Err(self.wrong_type("an array"));
        };
        Ok(items.iter().enumerate().map(|(i, value)| Node { value, path: format!("{}[{i}]", self.path) }).collect())
    }

    /// The elements of the array `name`; absent or `null` → none.
    fn opt_items(&self, name: &str) -> Result<Vec<Node<'a>>, HookError> {
        self.opt(name)?.map(|n| n.items()).transpose().map(Option::unwrap_or_default)
    }

    /// The timestamp this string holds, in seconds since the epoch.
    fn timestamp(&self) -> Result<i64, HookError> {
        let value = self.str()?;
        parse_timestamp(value).ok_or_else(|| HookError::BadTimestamp { path: self.path.clone(), value: value.into() })
    }

    fn wrong_type(&self, expected: &'static str) -> HookError {
        let path = if self.path.is_empty() { "(root)".to_string() } else { self.path.clone() };
        HookError::WrongType { path, expected }
    }
}

/// What a pushed ref names, when it makes changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PushedRef {
    /// The branch or tag name, without `refs/heads/` or `refs/tags/`.
    branch: String,
    /// `push` for a branch, `tag` for a tag.
    category: &'static str,
}

/// `refs/heads/x` → branch `x`; `refs/tags/v1` → tag `v1` when `with_tags`; `None` for any other ref (Buildbot
/// ignores refs that are neither branches nor tags) and for tags without `with_tags`.
fn pushed_ref(full_ref: &str, with_tags: bool) -> Option<PushedRef> {
    let (name, category) = match full_ref.strip_prefix("refs/heads/") {
        Some(branch) => (branch, "push"),
        None => (full_ref.strip_prefix("refs/tags/").filter(|_| with_tags)?, "tag"),
    };
    (!name.is_empty()).then(|| PushedRef { branch: name.to_string(), category })
}

/// An event the hook takes no changes from.
fn ignored(forge: &'static str, reason: impl Into<String>) -> HookError {
    HookError::Ignored { forge, reason: reason.into() }
}

/// Whether `sha` is git's null object id (the `after` of a deleted ref, the `before` of a new one).
fn is_null_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// The commits oldest first: GitHub lists them so, Gitea, Bitbucket and GitLab (since 14.x) newest first; the
/// pushed head is the newest, so a list whose first commit (its `id_field`) is `head` is reversed.
fn oldest_first<'a>(mut commits: Vec<Node<'a>>, id_field: &str, head: Option<&str>) -> Vec<Node<'a>> {
    let starts_with_head = commits.first().and_then(|c| c.value.get(id_field)).and_then(Value::as_str) == head;
    if commits.len() > 1 && head.is_some() && starts_with_head {
        commits.reverse();
    }
    commits
}

/// What every change of one push shares.
struct PushContext {
    pushed: PushedRef,
    repository: String,
    project: String,
    codebase: String,
    properties: BTreeMap<String, Value>,
}

impl PushContext {
    fn new(config: &HookConfig, pushed: PushedRef, repository: &str, default_project: &str) -> Self {
        PushContext {
            pushed,
            repository: repository.to_string(),
            project: config.project.clone().unwrap_or_else(|| default_project.to_string()),
            codebase: config.codebase.clone().unwrap_or_default(),
            properties: BTreeMap::new(),
        }
    }

    fn property(&mut self, name: &str, value: impl Into<Value>) {
        self.properties.insert(name.to_string(), value.into());
    }

    /// A change with everything but what comes from the commit.
    fn change(&self) -> NewChange {
        NewChange {
            branch: Some(self.pushed.branch.clone()),
            repository: self.repository.clone(),
            project: self.project.clone(),
            codebase: self.codebase.clone(),
            category: Some(self.pushed.category.to_string()),
            properties: self.properties.clone(),
            ..NewChange::default()
        }
    }

    /// A change from a GitHub-style commit object (GitHub, GitLab, Gitea): `id`, `message`, `timestamp`,
    /// `author{name,email}`, optional `committer`, `added`/`modified`/`removed`, `url`.
    fn commit_change(&self, commit: &Node) -> Result<NewChange, HookError> {
        let mut files: Vec<String> = Vec::new();
        for kind in ["added", "modified", "removed"] {
            for file in commit.opt_items(kind)? {
                let file = file.str()?;
                if !files.iter().any(|f| f == file) {
                    files.push(file.to_string());
                }
            }
        }
        let mut change = self.change();
        change.revision = Some(commit.str_field("id")?.to_string());
        change.comments = commit.str_field("message")?.to_string();
        change.when_timestamp = commit.field("timestamp")?.timestamp()?;
        change.author = person(&commit.field("author")?)?;
        change.committer = commit.opt("committer")?.map(|c| person(&c)).transpose()?;
        change.files = files;
        if let Some(url) = commit.opt_str("url")? {
            change.properties.insert("revlink".to_string(), url.into());
        }
        Ok(change)
    }
}

/// `Name <email>` (or `Name` without an email) from an object with `name` and `email`.
fn person(node: &Node) -> Result<String, HookError> {
    let name = node.str_field("name")?;
    Ok(match node.opt_str("email")?.filter(|e| !e.is_empty()) {
        Some(email) => format!("{name} <{email}>"),
        None => name.to_string(),
    })
}

/// Seconds since the epoch of an ISO 8601 date and time: `2024-03-01T12:34:56+02:00`, with `Z`, `+0200`, `+02`
/// or ` UTC` as offset (none: UTC), `T` or a space between date and time, optional fractional seconds (dropped).
fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(digits.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let expect = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(expect(4, b"-") && expect(7, b"-") && expect(10, b"Tt ") && expect(13, b":") && expect(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    if expect(i, b".,") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    while expect(i, b" ") {
        i += 1;
    }
    let rest = &b[i..];
    let offset = match rest {
        [] | [b'Z' | b'z'] | b"UTC" | b"GMT" => 0,
        [sign @ (b'+' | b'-'), ..] => {
            let (h, m) = match rest.len() {
                3 => (num(i + 1..i + 3)?, 0),
                5 => (num(i + 1..i + 3)?, num(i + 3..i + 5)?),
                6 if rest[3] == b':' => (num(i + 1..i + 3)?, num(i + 4..i + 6)?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let seconds = h * 3600 + m * 60;
            if *sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86400 + hour * 3600 + minute * 60 + second - offset)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Helpers for tests of hooks, here and (through the `test-support` feature) in the web's change hooks.
#[cfg(any(test, feature = "test-support"))]
pub mod test_support {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    /// Hex HMAC-SHA256 of `body` keyed with `secret`, as the forges compute it.
    pub fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    pub fn header_list(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    /// A fixture, changed by `edit`, serialised again.
    pub fn edited(fixture: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut value: serde_json::Value = serde_json::from_slice(fixture).unwrap();
        edit(&mut value);
        serde_json::to_vec(&value).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timestamps_with_offsets() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2024-02-29T12:00:00+00:00"), Some(1_709_208_000));
        assert_eq!(parse_timestamp("2024-02-29T14:00:00+02:00"), Some(1_709_208_000));
        assert_eq!(parse_timestamp("2024-02-29T06:30:00-0530"), Some(1_709_208_000));
        assert_eq!(parse_timestamp("2024-02-29T14:00:00+02"), Some(1_709_208_000));
        assert_eq!(parse_timestamp("2024-02-29 12:00:00 UTC"), Some(1_709_208_000));
        assert_eq!(parse_timestamp("2024-02-29T12:00:00.123456Z"), Some(1_709_208_000));
        assert_eq!(parse_timestamp("2024-02-29T12:00:00"), Some(1_709_208_000));
        assert_eq!(parse_timestamp("1969-12-31T23:59:59Z"), Some(-1));
        for bad in
            ["", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01", "yesterday"]
        {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        for bad in
            ["2024-01-01T00:00:00+2:00", "2024-01-01T00:00:00+02:0", "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00é"]
        {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn forge_from_url_segment() {
        assert_eq!(Forge::from_segment("github"), Some(Forge::GitHub));
        assert_eq!(Forge::from_segment("GitLab"), Some(Forge::GitLab));
        assert_eq!(Forge::from_segment("forgejo"), Some(Forge::Gitea));
        assert_eq!(Forge::from_segment("gitea"), Some(Forge::Gitea));
        assert_eq!(Forge::from_segment("bitbucket"), Some(Forge::Bitbucket));
        assert_eq!(Forge::from_segment("svn"), None);
    }

    #[test]
    fn delivery_ids() {
        let id = |forge: Forge, pairs: &[(&str, &str)]| {
            let headers = header_list(pairs);
            forge.delivery_id(&HookRequest { headers: &headers, body: b"" })
        };
        let uuid = "5b4b0c1e-3f0a-4d7e-9a51-7c7d2f0c9e11";
        let cloud = [("X-Event-Key", "repo:push"), ("x-request-uuid", uuid), ("X-Attempt-Number", "2")];
        assert_eq!(id(Forge::Bitbucket, &cloud).as_deref(), Some(uuid));
        let server = [("X-Event-Key", "repo:refs_changed"), ("X-Request-Id", "a1f4c6e2-93b1-4a4e-8a0c-2d1e0b6f7c55")];
        assert_eq!(id(Forge::Bitbucket, &server).as_deref(), Some("a1f4c6e2-93b1-4a4e-8a0c-2d1e0b6f7c55"));
        assert_eq!(id(Forge::Bitbucket, &[("X-Request-UUID", " "), ("X-Hook-UUID", uuid)]), None);
        assert_eq!(id(Forge::GitHub, &[("X-GitHub-Delivery", "72d3162e")]).as_deref(), Some("72d3162e"));
        assert_eq!(id(Forge::GitLab, &[("Idempotency-Key", "k")]).as_deref(), Some("k"));
        assert_eq!(id(Forge::Gitea, &[("X-Gitea-Delivery", "g")]).as_deref(), Some("g"));
        assert_eq!(id(Forge::GitHub, &[("X-Request-UUID", uuid)]), None);
    }

    #[test]
    fn headers_are_case_insensitive() {
        let headers = header_list(&[("x-github-event", " push ")]);
        let request = HookRequest { headers: &headers, body: b"" };
        assert_eq!(request.header("X-GitHub-Event"), Some("push"));
        assert_eq!(request.header("X-Gitlab-Event"), None);
    }

    #[test]
    fn signatures() {
        let sig = sign("s3cret", b"body");
        assert_eq!(verify_hmac_sha256("s3cret", b"body", &sig, "H"), Ok(()));
        assert_eq!(verify_hmac_sha256("s3cret", b"body", &sig.to_uppercase(), "H"), Ok(()));
        let bad = Err(HookError::BadSignature { header: "H" });
        assert_eq!(verify_hmac_sha256("other", b"body", &sig, "H"), bad);
        assert_eq!(verify_hmac_sha256("s3cret", b"bodY", &sig, "H"), bad);
        assert_eq!(verify_hmac_sha256("s3cret", b"body", &sig[..62], "H"), bad);
        assert_eq!(verify_hmac_sha256("s3cret", b"body", "zz", "H"), bad);
        assert_eq!(verify_hmac_sha256("s3cret", b"body", "", "H"), bad);
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "abcd"));
    }

    #[test]
    fn form_encoded_payload() {
        let headers = header_list(&[("Content-Type", "application/x-www-form-urlencoded")]);
        let body = b"other=1&payload=%7B%22a%22%3A+%22b%C3%A9%22%7D";
        let value = json_payload(&HookRequest { headers: &headers, body }).unwrap();
        assert_eq!(value, serde_json::json!({"a": "bé"}));
        let err = json_payload(&HookRequest { headers: &headers, body: b"x=1" }).unwrap_err();
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn node_paths_in_errors() {
        let value = serde_json::json!({"commits": [{"id": "a"}, {"id": 3}, {}]});
        let root = Node::root(&value);
        let commits = root.field("commits").unwrap().items().unwrap();
        assert_eq!(commits[0].str_field("id"), Ok("a"));
        let err = commits[1].str_field("id").unwrap_err();
        assert_eq!(err.to_string(), "field commits[1].id is not a string");
        let err = commits[2].str_field("id").unwrap_err();
        assert_eq!(err.to_string(), "missing field commits[2].id");
        assert_eq!(err.status(), 400);
        assert_eq!(
            root.field("commits").unwrap().field("x").unwrap_err().to_string(),
            "field commits is not an object"
        );
    }

    #[test]
    fn refs() {
        assert_eq!(pushed_ref("refs/heads/main", false), Some(PushedRef { branch: "main".into(), category: "push" }));
        assert_eq!(pushed_ref("refs/heads/feature/x", false).map(|r| r.branch), Some("feature/x".into()));
        assert_eq!(pushed_ref("refs/tags/v1", false), None);
        assert_eq!(pushed_ref("refs/tags/v1", true), Some(PushedRef { branch: "v1".into(), category: "tag" }));
        assert_eq!(pushed_ref("refs/notes/commits", true), None);
        assert_eq!(pushed_ref("refs/heads/", true), None);
        assert!(is_null_sha("0000000000000000000000000000000000000000"));
        assert!(!is_null_sha(""));
        assert!(!is_null_sha("0000000000000000000000000000000000000001"));
    }

    proptest! {
        #[test]
        fn any_body_never_panics(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            secret in proptest::option::of("[a-z]{0,8}"),
            with_tags in any::<bool>(),
            event in prop::sample::select(vec!["push", "ping", "Push Hook", "Tag Push Hook", "repo:push", "x"]),
            form in any::<bool>(),
        ) {
            let content_type = if form { "application/x-www-form-urlencoded" } else { "application/json" };
            let headers = header_list(&[
                ("Content-Type", content_type),
                ("X-GitHub-Event", event), ("X-Gitlab-Event", event), ("X-Gitea-Event", event),
                ("X-Event-Key", event), ("X-Gitlab-Token", "abc"),
                ("X-Hub-Signature-256", "sha256=00"), ("X-Hub-Signature", "sha256=zz"), ("X-Gitea-Signature", "0"),
            ]);
            let config = HookConfig { secret, with_tags, ..HookConfig::default() };
            let request = HookRequest { headers: &headers, body: &body };
            for forge in [Forge::GitHub, Forge::GitLab, Forge::Gitea, Forge::Bitbucket] {
                if let Err(e) = changes_from(forge, &config, &request) {
                    prop_assert!([200, 400, 401, 403].contains(&e.status()));
                }
            }
        }

        #[test]
        fn any_json_never_panics(json in arb_json(), with_tags in any::<bool>()) {
            let body = serde_json::to_vec(&json).unwrap();
            let config = HookConfig { with_tags, ..HookConfig::default() };
            for (forge, header, event) in [
                (Forge::GitHub, "X-GitHub-Event", "push"), (Forge::GitLab, "X-Gitlab-Event", "Push Hook"),
                (Forge::Gitea, "X-Gitea-Event", "push"), (Forge::Bitbucket, "X-Event-Key", "repo:push"),
            ] {
                let headers = header_list(&[(header, event)]);
                let _ = changes_from(forge, &config, &HookRequest { headers: &headers, body: &body });
            }
        }

        #[test]
        fn any_timestamp_never_panics(s in "\\PC{0,40}") {
            let _ = parse_timestamp(&s);
        }
    }

    /// JSON shaped like push payloads: the forges' field names, so the parsers get past the first checks.
    fn arb_json() -> impl Strategy<Value = Value> {
        let names = prop::sample::select(vec![
            "ref",
            "commits",
            "head_commit",
            "id",
            "message",
            "timestamp",
            "author",
            "name",
            "email",
            "repository",
            "html_url",
            "full_name",
            "added",
            "deleted",
            "project",
            "git_http_url",
            "push",
            "changes",
            "new",
            "type",
            "target",
            "hash",
            "date",
            "links",
            "html",
            "href",
            "after",
            "checkout_sha",
            "path_with_namespace",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            prop::sample::select(vec!["refs/heads/main", "refs/tags/v1", "branch", "tag", "2024-01-01T00:00:00Z", "x"])
                .prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(names.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            ]
        })
    }
}

#[cfg(test)]
mod fixture_tests;
