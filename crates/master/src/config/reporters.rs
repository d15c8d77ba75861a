//! `[[reporter]]`: who is told about builds, and how — mail, chat (Slack, Mattermost, Discord, Matrix), a signed
//! JSON push, and commit statuses on the forges (GitHub, GitLab, Gitea/Forgejo, Bitbucket). Buildbot's generators,
//! modes and filters under Buildbot's names, plus `fixed`, `first_failure` and `still_failing`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::error::Problems;
use super::parse::{check_builder_list, check_name, context_of, declared_name, read};

/// How long a notice is retried before it is given up (`dead`), by default.
const DEFAULT_MAX_AGE_SECONDS: u64 = 24 * 3600;
/// How long one attempt to send may take, by default: SMTP's exchanges are slower than one HTTP request.
const DEFAULT_MAIL_TIMEOUT_SECONDS: u64 = 30;
const DEFAULT_HTTP_TIMEOUT_SECONDS: u64 = 10;
/// How long a worker is away before it is reported missing, by default (Buildbot's `missing_timeout`).
const DEFAULT_MISSING_TIMEOUT_SECONDS: u64 = 3600;
/// The lines of the failing step's log a message quotes, by default.
const DEFAULT_LOG_LINES: usize = 20;
/// The people of a blamelist mailed and named in a message, by default; the rest are counted ("and 3 more").
const DEFAULT_BLAMELIST_LIMIT: usize = 20;
/// A commit status's context, by default (a minijinja template).
pub const DEFAULT_CONTEXT: &str = "kiln/{{ buildername }}";

/// A reporter (`[[reporter]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReporterDef {
    /// Unique among reporters: notices are stored under it.
    pub name: String,
    /// Where the notices go, and the settings of that target.
    pub target: Target,
    /// What the reporter reports on.
    pub generator: Generator,
    /// Which builds it reports on: by builder (or tag), branch and scheduler.
    pub filter: ReporterFilter,
    /// Which results it reports (build and buildset generators); forges report every state.
    pub modes: BTreeSet<Mode>,
    /// With `still_failing`: every Nth failure of a streak after the first (1: every one).
    pub repeat_every: u32,
    /// Which build a result is compared with.
    pub previous: PreviousRule,
    /// The user's templates, if any (else the default texts).
    pub template: Option<TemplateDef>,
    /// How many lines of the failing step's log a message quotes.
    pub log_lines: usize,
    /// A notice that could not be sent within this time of its creation is given up (`dead`).
    pub max_age: Duration,
    /// How long one attempt may take (connect, TLS, the whole exchange).
    pub timeout: Duration,
    /// With `generator = "worker_missing"`: how long a worker is away before it is reported missing.
    pub missing_timeout: Duration,
    /// At most this many people of a blamelist are mailed and named in a message; the others are counted.
    pub blamelist_limit: usize,
    /// At most this many sends in any minute: the excess waits its turn (delayed, in order, never dropped).
    pub max_per_minute: Option<u32>,
    /// Every setting that is a secret, in one place (tokens, passwords, signing keys).
    pub credentials: Credentials,
}

/// The secrets a reporter holds. Kept together so that reading them from a secret store changes one place.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// SMTP user (mail), from `smtp_user` or the URL.
    pub user: Option<String>,
    /// SMTP password, from `smtp_password` or the URL.
    pub password: Option<String>,
    /// A bearer or API token (Matrix, forges; Bitbucket: `user:app-password`).
    pub token: Option<String>,
    /// The HMAC key of an `http` push.
    pub secret: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |set: &Option<String>| if set.is_some() { "<set>" } else { "<none>" };
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &shown(&self.password))
            .field("token", &shown(&self.token))
            .field("secret", &shown(&self.secret))
            .finish()
    }
}

/// Where a reporter's notices go.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Mail(MailDef),
    /// Slack, Mattermost or Discord incoming webhooks.
    Chat {
        service: ChatService,
        webhook_url: String,
    },
    /// A Matrix room, through a homeserver's client-server API.
    Matrix {
        homeserver: String,
        room: String,
    },
    /// Kiln's versioned JSON envelope, signed with `secret`.
    Http {
        url: String,
    },
    /// Commit statuses on a forge.
    Forge(ForgeDef),
}

impl Target {
    /// The `type` that names it in `master.toml`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Target::Mail(_) => "mail",
            Target::Chat { service, .. } => service.type_name(),
            Target::Matrix { .. } => "matrix",
            Target::Http { .. } => "http",
            Target::Forge(forge) => forge.forge.type_name(),
        }
    }
}

/// The chat services that take an incoming webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatService {
    Slack,
    Mattermost,
    Discord,
}

impl ChatService {
    pub fn type_name(self) -> &'static str {
        match self {
            ChatService::Slack => "slack",
            ChatService::Mattermost => "mattermost",
            ChatService::Discord => "discord",
        }
    }
}

/// A mail reporter's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MailDef {
    /// `From:` and the envelope sender.
    pub from: String,
    /// The SMTP server.
    pub smtp: SmtpServer,
    /// Send to the blamelist (else only to `extra_recipients`).
    pub send_to_interested_users: bool,
    /// Always told: in `To:` when the blamelist is empty, else in `CC:`.
    pub extra_recipients: Vec<String>,
    /// The domain appended to names without `@`.
    pub lookup: Option<String>,
    /// Send the credentials over a connection without TLS.
    pub allow_plaintext_auth: bool,
    /// PEM certificates to trust besides the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// Where an SMTP server is and how to speak to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
}

/// How a mail connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// No TLS (a local relay): `smtp://`.
    Plain,
    /// STARTTLS, and fail if the server does not offer it: `smtp://…?tls=required`.
    StartTls,
    /// TLS from the first byte: `smtps://`.
    Implicit,
}

/// A forge's commit-status settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ForgeDef {
    pub forge: Forge,
    /// The API's base URL (GitHub Enterprise, self-hosted GitLab or Gitea), without a trailing `/`.
    pub base_url: String,
    /// The status context, a minijinja template (default `kiln/{{ buildername }}`).
    pub context: String,
}

/// The forges Kiln posts commit statuses to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    Github,
    Gitlab,
    /// Gitea and Forgejo (the same API).
    Gitea,
    Bitbucket,
}

impl Forge {
    pub fn type_name(self) -> &'static str {
        match self {
            Forge::Github => "github",
            Forge::Gitlab => "gitlab",
            Forge::Gitea => "gitea",
            Forge::Bitbucket => "bitbucket",
        }
    }

    fn default_base_url(self) -> Option<&'static str> {
        match self {
            Forge::Github => Some("https://api.github.com"),
            Forge::Gitlab => Some("https://gitlab.com"),
            Forge::Gitea => None,
            Forge::Bitbucket => Some("https://api.bitbucket.org"),
        }
    }
}

/// What a reporter reports on (Buildbot's generators).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    /// Each build's end, when its result passes the modes (`BuildStatusGenerator`).
    Build,
    /// Each build's start and end, whatever the result (`BuildStartEndStatusGenerator`).
    StartEnd,
    /// One message per completed buildset, with the builds that pass the modes (`BuildSetStatusGenerator`).
    Buildset,
    /// Each new build request, pending (`BuildRequestGenerator`).
    Request,
    /// Workers that go missing and come back (`WorkerMissingGenerator`).
    WorkerMissing,
    /// Commit statuses: pending at the request, running at the start, the result at the end (the forges).
    Status,
}

impl Generator {
    fn parse(text: &str) -> Option<Generator> {
        Some(match text {
            "build" => Generator::Build,
            "start_end" => Generator::StartEnd,
            "buildset" => Generator::Buildset,
            "request" => Generator::Request,
            "worker_missing" => Generator::WorkerMissing,
            "status" => Generator::Status,
            _ => return None,
        })
    }
}

/// One of Buildbot's modes, or one of Kiln's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// The build failed.
    Failing,
    /// The build succeeded.
    Passing,
    /// The build ended with warnings.
    Warnings,
    /// The build ended with an exception.
    Exception,
    /// The build was cancelled.
    Cancelled,
    /// A failure after a build that did not fail (Buildbot's `problem`, with Kiln's previous build).
    Problem,
    /// The result differs from the previous build's (never for RETRY).
    Change,
    /// A success after a failure or an exception.
    Fixed,
    /// The first failure after a build that did not fail (`problem` with the previous build on the branch).
    FirstFailure,
    /// A failure after a failure, every `repeat_every`th of the streak.
    StillFailing,
}

impl Mode {
    pub const ALL_NAMES: [&'static str; 11] = [
        "failing",
        "passing",
        "warnings",
        "exception",
        "cancelled",
        "problem",
        "change",
        "fixed",
        "first_failure",
        "still_failing",
        "all",
    ];

    pub fn parse(text: &str) -> Option<Mode> {
        Some(match text {
            "failing" => Mode::Failing,
            "passing" => Mode::Passing,
            "warnings" => Mode::Warnings,
            "exception" => Mode::Exception,
            "cancelled" => Mode::Cancelled,
            "problem" => Mode::Problem,
            "change" => Mode::Change,
            "fixed" => Mode::Fixed,
            "first_failure" => Mode::FirstFailure,
            "still_failing" => Mode::StillFailing,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Failing => "failing",
            Mode::Passing => "passing",
            Mode::Warnings => "warnings",
            Mode::Exception => "exception",
            Mode::Cancelled => "cancelled",
            Mode::Problem => "problem",
            Mode::Change => "change",
            Mode::Fixed => "fixed",
            Mode::FirstFailure => "first_failure",
            Mode::StillFailing => "still_failing",
        }
    }
}

/// Which build a result is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviousRule {
    /// The latest completed build of the same builder on the same branch, skipping RETRY, CANCELLED and SKIPPED.
    Branch,
    /// Buildbot's: the build numbered before it on the builder, skipping only RETRY.
    Builder,
}

/// Which builds a reporter reports on; `None` lets every one through.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReporterFilter {
    /// Builder names (patterns already expanded).
    pub builders: Option<Vec<String>>,
    /// Builder tags: a builder with any of them passes.
    pub tags: Option<Vec<String>>,
    /// Branch names (exact).
    pub branches: Option<Vec<String>>,
    /// Scheduler names (the `scheduler` property).
    pub schedulers: Option<Vec<String>>,
}

/// A user's message templates (minijinja, Buildbot's context keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateDef {
    /// The body.
    pub body: Option<String>,
    /// The subject (mail) or first line (chat).
    pub subject: Option<String>,
    /// The body is HTML: values are escaped.
    pub html: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReporter {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    generator: Option<Spanned<String>>,
    builders: Option<Spanned<Vec<Spanned<String>>>>,
    tags: Option<Spanned<Vec<String>>>,
    branches: Option<Vec<String>>,
    schedulers: Option<Spanned<Vec<Spanned<String>>>>,
    mode: Option<Spanned<RawMode>>,
    repeat_every: Option<Spanned<u32>>,
    previous: Option<Spanned<String>>,
    template: Option<Spanned<String>>,
    subject: Option<Spanned<String>>,
    template_type: Option<Spanned<String>>,
    log_lines: Option<usize>,
    blamelist_limit: Option<Spanned<usize>>,
    max_per_minute: Option<Spanned<u32>>,
    max_age: Option<Spanned<u64>>,
    timeout: Option<Spanned<u64>>,
    missing_timeout: Option<Spanned<u64>>,
    // mail
    from: Option<Spanned<String>>,
    smtp_url: Option<Spanned<String>>,
    smtp_user: Option<String>,
    smtp_password: Option<String>,
    allow_plaintext_auth: Option<bool>,
    ca_file: Option<String>,
    send_to_interested_users: Option<bool>,
    extra_recipients: Option<Vec<String>>,
    lookup: Option<Spanned<String>>,
    // chat
    webhook_url: Option<Spanned<String>>,
    // matrix
    homeserver: Option<Spanned<String>>,
    room: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    // http
    url: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
    // forges
    base_url: Option<Spanned<String>>,
    context: Option<Spanned<String>>,
}

/// `mode = "all"` or `mode = ["failing", "fixed"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawMode {
    One(String),
    List(Vec<String>),
}

/// The keys each type takes beyond the common ones (for "this key does not apply" problems).
const MAIL_KEYS: &[&str] = &[
    "from",
    "smtp_url",
    "smtp_user",
    "smtp_password",
    "allow_plaintext_auth",
    "ca_file",
    "send_to_interested_users",
    "extra_recipients",
    "lookup",
];

/// What the builders of the config say, for the filters.
pub(super) struct KnownNames<'a> {
    pub builders: &'a BTreeSet<String>,
    pub builder_tags: &'a BTreeMap<String, Vec<String>>,
    pub schedulers: &'a BTreeSet<String>,
}

/// Reads the `[[reporter]]` tables.
pub(super) fn read_reporters(
    tables: Vec<Spanned<DeValue<'_>>>,
    known: &KnownNames<'_>,
    problems: &mut Problems<'_>,
) -> Vec<ReporterDef> {
    let mut names = BTreeSet::new();
    let mut reporters = Vec::new();
    for (index, table) in tables.into_iter().enumerate() {
        let declared = declared_name(table.get_ref());
        let context = context_of("reporter", declared.as_deref(), index);
        let Some(raw) = read::<RawReporter>(table, problems, Some(&context), "reporter") else { continue };
        let named = check_name(&raw.name, &mut names, &context, "reporter", problems);
        if let Some(reporter) = check_reporter(raw, known, &context, problems) {
            if named {
                reporters.push(reporter);
            }
        }
    }
    reporters
}

/// A key, where it is if given, and the types it is for.
type Misplaced<'a> = (&'a str, Option<std::ops::Range<usize>>, &'a [&'a str]);

fn check_reporter(
    mut raw: RawReporter,
    known: &KnownNames<'_>,
    context: &str,
    problems: &mut Problems<'_>,
) -> Option<ReporterDef> {
    let ctx = Some(context);
    let mut valid = true;
    let kind = raw.kind.get_ref().clone();
    let is_mail = kind == "mail";
    if !is_mail {
        let mail_keys_given = [
            raw.from.as_ref().map(Spanned::span),
            raw.smtp_url.as_ref().map(Spanned::span),
            raw.lookup.as_ref().map(Spanned::span),
        ];
        let other = raw.smtp_user.is_some()
            || raw.smtp_password.is_some()
            || raw.allow_plaintext_auth.is_some()
            || raw.ca_file.is_some()
            || raw.send_to_interested_users.is_some()
            || raw.extra_recipients.is_some();
        if mail_keys_given.iter().any(Option::is_some) || other {
            let span = mail_keys_given.into_iter().flatten().next().unwrap_or_else(|| raw.kind.span());
            let message = format!("the mail keys ({}) apply only to type 'mail'", MAIL_KEYS.join(", "));
            problems.add(span, ctx, "type", message);
            valid = false;
        }
    }

    let mut credentials = Credentials::default();
    let timeout_default = if is_mail { DEFAULT_MAIL_TIMEOUT_SECONDS } else { DEFAULT_HTTP_TIMEOUT_SECONDS };
    let target = match kind.as_str() {
        "mail" => check_mail(&mut raw, &mut credentials, context, problems),
        "slack" | "mattermost" | "discord" => {
            let service = match kind.as_str() {
                "slack" => ChatService::Slack,
                "mattermost" => ChatService::Mattermost,
                _ => ChatService::Discord,
            };
            let url = required_url(raw.webhook_url.take(), &raw.kind, context, "webhook_url", problems);
            url.map(|webhook_url| Target::Chat { service, webhook_url })
        }
        "matrix" => {
            let homeserver = required_url(raw.homeserver.take(), &raw.kind, context, "homeserver", problems);
            let room = required(raw.room.take(), &raw.kind, context, "room", problems);
            let token = required(raw.token.take(), &raw.kind, context, "token", problems);
            credentials.token = token.clone();
            match (homeserver, room, token) {
                (Some(homeserver), Some(room), Some(_)) => {
                    Some(Target::Matrix { homeserver: homeserver.trim_end_matches('/').to_owned(), room })
                }
                _ => None,
            }
        }
        "http" => {
            let url = required_url(raw.url.take(), &raw.kind, context, "url", problems);
            credentials.secret = raw.secret.take().map(Spanned::into_inner);
            url.map(|url| Target::Http { url })
        }
        "github" | "gitlab" | "gitea" | "bitbucket" => {
            let forge = match kind.as_str() {
                "github" => Forge::Github,
                "gitlab" => Forge::Gitlab,
                "gitea" => Forge::Gitea,
                _ => Forge::Bitbucket,
            };
            let base_url = match raw.base_url.take() {
                Some(url) => check_url(&url, context, "base_url", problems),
                None => match forge.default_base_url() {
                    Some(url) => Some(url.to_owned()),
                    None => {
                        let message = format!("a {kind} reporter needs base_url (the server's address)");
                        problems.add(raw.kind.span(), ctx, "base_url", message);
                        None
                    }
                },
            };
            let token = required(raw.token.take(), &raw.kind, context, "token", problems);
            credentials.token = token.clone();
            let context_template = match raw.context.take() {
                Some(text) => check_template(&text, context, "context", problems).then(|| text.into_inner()),
                None => Some(DEFAULT_CONTEXT.to_owned()),
            };
            match (base_url, token, context_template) {
                (Some(base_url), Some(_), Some(template)) => Some(Target::Forge(ForgeDef {
                    forge,
                    base_url: base_url.trim_end_matches('/').to_owned(),
                    context: template,
                })),
                _ => None,
            }
        }
        other => {
            let message = format!(
                "unknown reporter type '{other}' (known: mail, slack, mattermost, discord, matrix, http, github, \
                 gitlab, gitea, bitbucket)"
            );
            problems.add(raw.kind.span(), ctx, "type", message);
            return None;
        }
    };
    // Keys the type did not take belong to another type.
    const FORGES: &[&str] = &["github", "gitlab", "gitea", "bitbucket"];
    let misplaced: [Misplaced<'_>; 8] = [
        ("webhook_url", raw.webhook_url.as_ref().map(Spanned::span), &["slack", "mattermost", "discord"]),
        ("homeserver", raw.homeserver.as_ref().map(Spanned::span), &["matrix"]),
        ("room", raw.room.as_ref().map(Spanned::span), &["matrix"]),
        ("token", raw.token.as_ref().map(Spanned::span), &["matrix", "github", "gitlab", "gitea", "bitbucket"]),
        ("url", raw.url.as_ref().map(Spanned::span), &["http"]),
        ("secret", raw.secret.as_ref().map(Spanned::span), &["http"]),
        ("base_url", raw.base_url.as_ref().map(Spanned::span), FORGES),
        ("context", raw.context.as_ref().map(Spanned::span), FORGES),
    ];
    for (key, span, types) in misplaced {
        if let Some(span) = span {
            let message = format!("'{key}' does not apply to type '{kind}' (it is for {})", types.join(", "));
            problems.add(span, ctx, key, message);
            valid = false;
        }
    }

    let is_forge = matches!(target, Some(Target::Forge(_)));
    let generator = match raw.generator.as_ref() {
        None if is_forge => Some(Generator::Status),
        None => Some(Generator::Build),
        Some(text) => match Generator::parse(text.get_ref()) {
            Some(Generator::Status) if !is_forge => {
                problems.add(text.span(), ctx, "generator", "'status' is the generator of the forges only");
                None
            }
            Some(g) if is_forge && g != Generator::Status => {
                problems.add(text.span(), ctx, "generator", "a forge reporter posts statuses: generator 'status'");
                None
            }
            Some(g) => Some(g),
            None => {
                let message = format!(
                    "unknown generator '{}' (known: build, start_end, buildset, request, worker_missing, status)",
                    text.get_ref()
                );
                problems.add(text.span(), ctx, "generator", message);
                None
            }
        },
    };

    let filter = check_filter(&mut raw, known, context, problems);
    let modes = check_modes(raw.mode.take(), context, problems);
    let repeat_every = match raw.repeat_every.take() {
        Some(n) if *n.get_ref() == 0 => {
            problems.add(n.span(), ctx, "repeat_every", "must be at least 1 (1: every failure)");
            None
        }
        Some(n) if !modes.as_ref().is_some_and(|m| m.contains(&Mode::StillFailing)) => {
            problems.add(n.span(), ctx, "repeat_every", "applies only with mode 'still_failing'");
            None
        }
        Some(n) => Some(*n.get_ref()),
        None => Some(1),
    };
    let previous = match raw.previous.as_ref().map(|p| p.get_ref().as_str()) {
        None | Some("branch") => Some(PreviousRule::Branch),
        Some("builder") => Some(PreviousRule::Builder),
        Some(other) => {
            let span = raw.previous.as_ref().map_or(0..0, Spanned::span);
            problems.add(span, ctx, "previous", format!("unknown rule '{other}' (known: branch, builder)"));
            None
        }
    };
    let template = check_templates(&raw, context, problems);
    let blamelist_limit = match raw.blamelist_limit.take() {
        Some(n) if *n.get_ref() == 0 => {
            problems.add(n.span(), ctx, "blamelist_limit", "must be at least 1");
            None
        }
        Some(n) => Some(*n.get_ref()),
        None => Some(DEFAULT_BLAMELIST_LIMIT),
    };
    let max_per_minute = match raw.max_per_minute.take() {
        Some(n) if *n.get_ref() == 0 => {
            problems.add(n.span(), ctx, "max_per_minute", "must be at least 1 (leave it out for no limit)");
            None
        }
        Some(n) => Some(Some(*n.get_ref())),
        None => Some(None),
    };
    let max_age = seconds(raw.max_age.take(), DEFAULT_MAX_AGE_SECONDS, context, "max_age", problems);
    let timeout = seconds(raw.timeout.take(), timeout_default, context, "timeout", problems);
    if let (Some(t), Some(g)) = (raw.missing_timeout.as_ref(), generator) {
        if g != Generator::WorkerMissing {
            problems.add(t.span(), ctx, "missing_timeout", "applies only with generator 'worker_missing'");
            valid = false;
        }
    }
    let missing_timeout =
        seconds(raw.missing_timeout.take(), DEFAULT_MISSING_TIMEOUT_SECONDS, context, "missing_timeout", problems);

    if !valid {
        return None;
    }
    Some(ReporterDef {
        name: raw.name.into_inner(),
        target: target?,
        generator: generator?,
        filter: filter?,
        modes: modes?,
        repeat_every: repeat_every?,
        previous: previous?,
        template: template?,
        log_lines: raw.log_lines.unwrap_or(DEFAULT_LOG_LINES),
        max_age: max_age?,
        timeout: timeout?,
        missing_timeout: missing_timeout?,
        blamelist_limit: blamelist_limit?,
        max_per_minute: max_per_minute?,
        credentials,
    })
}

fn check_mail(
    raw: &mut RawReporter,
    credentials: &mut Credentials,
    context: &str,
    problems: &mut Problems<'_>,
) -> Option<Target> {
    let ctx = Some(context);
    let from = required(raw.from.take(), &raw.kind, context, "from", problems);
    let from = from.filter(|from| {
        let ok = valid_address(from);
        if !ok {
            problems.add(raw.kind.span(), ctx, "from", format!("'{from}' is not a mail address"));
        }
        ok
    });
    let smtp = match raw.smtp_url.take() {
        None => Some(SmtpServer { host: "localhost".into(), port: 25, security: SmtpSecurity::Plain }),
        Some(url) => match parse_smtp_url(url.get_ref()) {
            Ok((server, user, password)) => {
                credentials.user = user;
                credentials.password = password;
                Some(server)
            }
            Err(message) => {
                problems.add(url.span(), ctx, "smtp_url", message);
                None
            }
        },
    };
    if let Some(user) = raw.smtp_user.take() {
        credentials.user = Some(user);
    }
    if let Some(password) = raw.smtp_password.take() {
        credentials.password = Some(password);
    }
    let allow_plaintext_auth = raw.allow_plaintext_auth.unwrap_or(false);
    if let Some(smtp) = &smtp {
        if credentials.user.is_some() != credentials.password.is_some() {
            let message = "SMTP authentication needs both a user and a password";
            problems.add(raw.kind.span(), ctx, "smtp_password", message);
            return None;
        }
        if credentials.user.is_some() && smtp.security == SmtpSecurity::Plain && !allow_plaintext_auth {
            let message = "a password would cross the network in clear: use smtps:// or ?tls=required, or set \
                           allow_plaintext_auth = true";
            problems.add(raw.kind.span(), ctx, "smtp_url", message);
            return None;
        }
    }
    let lookup = raw.lookup.take().and_then(|domain| {
        let text = domain.get_ref().trim_start_matches('@');
        if text.is_empty() || text.contains(['@', ' ']) {
            problems.add(domain.span(), ctx, "lookup", format!("'{}' is not a mail domain", domain.get_ref()));
            None
        } else {
            Some(text.to_owned())
        }
    });
    let extra_recipients = raw.extra_recipients.take().unwrap_or_default();
    let mut valid = true;
    for address in &extra_recipients {
        if !valid_address(address) {
            problems.add(raw.kind.span(), ctx, "extra_recipients", format!("'{address}' is not a mail address"));
            valid = false;
        }
    }
    valid.then_some(())?;
    Some(Target::Mail(MailDef {
        from: from?,
        smtp: smtp?,
        send_to_interested_users: raw.send_to_interested_users.unwrap_or(true),
        extra_recipients,
        lookup,
        allow_plaintext_auth,
        ca_file: raw.ca_file.take().map(PathBuf::from),
    }))
}

/// Buildbot's check of an address, simplified: `local@domain` with no space or angle bracket, and a dot-free
/// domain allowed (a local relay's `localhost`).
pub fn valid_address(address: &str) -> bool {
    let address = match (address.find('<'), address.rfind('>')) {
        (Some(open), Some(close)) if open < close => &address[open + 1..close],
        _ => address,
    };
    let Some((local, domain)) = address.split_once('@') else { return false };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !address.contains(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == ',')
}

/// `smtp://[user:password@]host[:port][?tls=required|none]` or `smtps://…`; the user and password, if given.
#[allow(clippy::type_complexity)]
pub fn parse_smtp_url(text: &str) -> Result<(SmtpServer, Option<String>, Option<String>), String> {
    let url = url::Url::parse(text).map_err(|e| format!("'{text}' is not a URL: {e}"))?;
    let mut security = match url.scheme() {
        "smtp" => SmtpSecurity::Plain,
        "smtps" => SmtpSecurity::Implicit,
        other => return Err(format!("unknown scheme '{other}' (known: smtp://, smtps://)")),
    };
    for (key, value) in url.query_pairs() {
        match (key.as_ref(), value.as_ref()) {
            ("tls", "required") if security == SmtpSecurity::Plain => security = SmtpSecurity::StartTls,
            ("tls", "required") => {}
            ("tls", "none") if security == SmtpSecurity::Plain => {}
            ("tls", other) => {
                return Err(format!("unknown tls '{other}' for {} (known: required, none)", url.scheme()));
            }
            (other, _) => return Err(format!("unknown parameter '{other}' (known: tls)")),
        }
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("'{text}' names no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = url.port().unwrap_or(match security {
        SmtpSecurity::Implicit => 465,
        SmtpSecurity::StartTls => 587,
        SmtpSecurity::Plain => 25,
    });
    let decode = |s: &str| {
        percent_decode(s).map_err(|()| format!("the user or password of '{text}' is not valid percent-encoding"))
    };
    let user = (!url.username().is_empty()).then(|| decode(url.username())).transpose()?;
    let password = url.password().map(decode).transpose()?;
    Ok((SmtpServer { host, port, security }, user, password))
}

fn percent_decode(text: &str) -> Result<String, ()> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or(())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

fn check_filter(
    raw: &mut RawReporter,
    known: &KnownNames<'_>,
    context: &str,
    problems: &mut Problems<'_>,
) -> Option<ReporterFilter> {
    let mut valid = true;
    if let (Some(_), Some(tags)) = (&raw.builders, &raw.tags) {
        problems.add(tags.span(), Some(context), "tags", "give builders or tags, not both");
        valid = false;
    }
    let builders = match raw.builders.take() {
        Some(mut list) => {
            valid &= check_builder_list(&mut list, known.builders, context, problems);
            Some(list.into_inner().into_iter().map(Spanned::into_inner).collect())
        }
        None => None,
    };
    let tags = raw.tags.take().map(|tags| {
        let span = tags.span();
        let tags = tags.into_inner();
        for tag in &tags {
            if !known.builder_tags.values().any(|t| t.contains(tag)) {
                problems.add(span.clone(), Some(context), "tags", format!("no builder has the tag '{tag}'"));
                valid = false;
            }
        }
        tags
    });
    let schedulers = raw.schedulers.take().map(|list| {
        let names: Vec<String> = list.into_inner().into_iter().map(Spanned::into_inner).collect();
        for name in &names {
            if !known.schedulers.contains(name) {
                let span = raw.kind.span();
                problems.add(span, Some(context), "schedulers", format!("unknown scheduler '{name}'"));
                valid = false;
            }
        }
        names
    });
    valid.then(|| ReporterFilter { builders, tags, branches: raw.branches.take(), schedulers })
}

/// Buildbot's modes: `"all"` (a string only) is every result mode; the string `"warnings"` is failing+warnings.
fn check_modes(raw: Option<Spanned<RawMode>>, context: &str, problems: &mut Problems<'_>) -> Option<BTreeSet<Mode>> {
    let Some(raw) = raw else {
        return Some([Mode::Failing, Mode::Passing, Mode::Warnings].into());
    };
    let span = raw.span();
    let unknown = |name: &str| format!("unknown mode '{name}' (known: {})", Mode::ALL_NAMES.join(", "));
    match raw.into_inner() {
        RawMode::One(name) if name == "all" => {
            Some([Mode::Failing, Mode::Passing, Mode::Warnings, Mode::Exception, Mode::Cancelled].into())
        }
        RawMode::One(name) if name == "warnings" => Some([Mode::Failing, Mode::Warnings].into()),
        RawMode::One(name) => match Mode::parse(&name) {
            Some(mode) => Some([mode].into()),
            None => {
                problems.add(span, Some(context), "mode", unknown(&name));
                None
            }
        },
        RawMode::List(names) => {
            let mut modes = BTreeSet::new();
            let mut valid = true;
            for name in names {
                match Mode::parse(&name) {
                    Some(mode) => {
                        modes.insert(mode);
                    }
                    None if name == "all" => {
                        let message = "'all' is a mode of its own (mode = \"all\"), not a member of a list";
                        problems.add(span.clone(), Some(context), "mode", message);
                        valid = false;
                    }
                    None => {
                        problems.add(span.clone(), Some(context), "mode", unknown(&name));
                        valid = false;
                    }
                }
            }
            if modes.is_empty() && valid {
                problems.add(span, Some(context), "mode", "needs at least one mode");
                valid = false;
            }
            valid.then_some(modes)
        }
    }
}

fn check_templates(raw: &RawReporter, context: &str, problems: &mut Problems<'_>) -> Option<Option<TemplateDef>> {
    let mut valid = true;
    let html = match raw.template_type.as_ref() {
        None => false,
        Some(t) if t.get_ref() == "plain" => false,
        Some(t) if t.get_ref() == "html" => true,
        Some(t) => {
            let message = format!("unknown template_type '{}' (known: plain, html)", t.get_ref());
            problems.add(t.span(), Some(context), "template_type", message);
            valid = false;
            false
        }
    };
    for (key, text) in [("template", &raw.template), ("subject", &raw.subject)] {
        if let Some(text) = text {
            valid &= check_template(text, context, key, problems);
        }
    }
    if let Some(subject) = &raw.subject {
        if subject.get_ref().contains(['\n', '\r']) {
            problems.add(subject.span(), Some(context), "subject", "a subject is one line");
            valid = false;
        }
    }
    if !valid {
        return None;
    }
    if raw.template.is_none() && raw.subject.is_none() {
        return Some(None);
    }
    Some(Some(TemplateDef {
        body: raw.template.as_ref().map(|t| t.get_ref().clone()),
        subject: raw.subject.as_ref().map(|t| t.get_ref().clone()),
        html,
    }))
}

/// Checks a minijinja template's syntax.
fn check_template(text: &Spanned<String>, context: &str, key: &str, problems: &mut Problems<'_>) -> bool {
    let env = minijinja::Environment::new();
    match env.template_from_str(text.get_ref()) {
        Ok(_) => true,
        Err(e) => {
            problems.add(text.span(), Some(context), key, format!("not a valid template: {e}"));
            false
        }
    }
}

fn required(
    value: Option<Spanned<String>>,
    kind: &Spanned<String>,
    context: &str,
    key: &str,
    problems: &mut Problems<'_>,
) -> Option<String> {
    match value {
        Some(value) if !value.get_ref().is_empty() => Some(value.into_inner()),
        Some(value) => {
            problems.add(value.span(), Some(context), key, "cannot be empty");
            None
        }
        None => {
            let message = format!("a {} reporter needs {key}", kind.get_ref());
            problems.add(kind.span(), Some(context), key, message);
            None
        }
    }
}

fn required_url(
    value: Option<Spanned<String>>,
    kind: &Spanned<String>,
    context: &str,
    key: &str,
    problems: &mut Problems<'_>,
) -> Option<String> {
    match value {
        Some(value) => check_url(&value, context, key, problems),
        None => required(None, kind, context, key, problems),
    }
}

fn check_url(value: &Spanned<String>, context: &str, key: &str, problems: &mut Problems<'_>) -> Option<String> {
    let text = value.get_ref();
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Some(text.clone()),
        _ => {
            problems.add(value.span(), Some(context), key, format!("'{text}' is not an http:// or https:// URL"));
            None
        }
    }
}

fn seconds(
    raw: Option<Spanned<u64>>,
    default: u64,
    context: &str,
    key: &str,
    problems: &mut Problems<'_>,
) -> Option<Duration> {
    match raw {
        Some(n) if *n.get_ref() == 0 => {
            problems.add(n.span(), Some(context), key, "must be at least 1 second");
            None
        }
        Some(n) => Some(Duration::from_secs(*n.get_ref())),
        None => Some(Duration::from_secs(default)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ConfigError, MasterConfig};
    use super::*;

    const BASE: &str = r#"
[[worker]]
name = "w"
password = "pw"

[[builder]]
name = "devel"
workers = ["w"]
tags = ["core"]
  [[builder.step]]
  command = "make"

[[builder]]
name = "docs"
workers = ["w"]
  [[builder.step]]
  command = "make docs"
"#;

    fn load(extra: &str) -> Result<MasterConfig, Vec<String>> {
        match MasterConfig::from_str(&format!("{BASE}{extra}"), "master.toml") {
            Ok(config) => Ok(config),
            Err(ConfigError::Invalid(problems)) => Err(problems.iter().map(ToString::to_string).collect()),
            Err(e) => panic!("{e}"),
        }
    }

    fn one(extra: &str) -> ReporterDef {
        match load(extra) {
            Ok(mut config) => config.reporters.remove(0),
            Err(problems) => panic!("should load: {problems:#?}"),
        }
    }

    fn problem(extra: &str, needle: &str) -> String {
        let problems = load(extra).expect_err("should not load");
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains(needle), "{:?} should contain {needle:?}", problems[0]);
        problems[0].clone()
    }

    #[test]
    fn a_mail_reporter_has_buildbot_defaults() {
        let r = one("[[reporter]]\nname = \"mail\"\ntype = \"mail\"\nfrom = \"kiln@example.org\"\n");
        assert_eq!(r.generator, Generator::Build);
        assert_eq!(r.modes, [Mode::Failing, Mode::Passing, Mode::Warnings].into());
        assert_eq!(r.previous, PreviousRule::Branch);
        let Target::Mail(mail) = &r.target else { panic!("mail") };
        assert!(mail.send_to_interested_users);
        assert_eq!(mail.smtp, SmtpServer { host: "localhost".into(), port: 25, security: SmtpSecurity::Plain });
        assert_eq!(r.timeout, Duration::from_secs(30));
        assert_eq!(r.max_age, Duration::from_secs(86400));
    }

    #[test]
    fn smtp_urls_say_how_to_protect_the_connection() {
        let (server, user, password) = parse_smtp_url("smtp://relay.example.org").expect("plain");
        assert_eq!((server.port, server.security, user, password), (25, SmtpSecurity::Plain, None, None));
        let (server, user, password) = parse_smtp_url("smtp://bob:p%40ss@mx:2525?tls=required").expect("starttls");
        assert_eq!((server.host.as_str(), server.port, server.security), ("mx", 2525, SmtpSecurity::StartTls));
        assert_eq!((user.as_deref(), password.as_deref()), (Some("bob"), Some("p@ss")));
        let (server, ..) = parse_smtp_url("smtps://mx").expect("implicit");
        assert_eq!((server.port, server.security), (465, SmtpSecurity::Implicit));
        assert!(parse_smtp_url("http://mx").expect_err("scheme").contains("unknown scheme"));
        assert!(parse_smtp_url("smtp://mx?tls=maybe").expect_err("tls").contains("unknown tls"));
    }

    #[test]
    fn credentials_never_cross_in_clear_unless_allowed() {
        let text = "[[reporter]]\nname = \"m\"\ntype = \"mail\"\nfrom = \"k@e.org\"\nsmtp_url = \"smtp://u:p@mx\"\n";
        let message = problem(text, "in clear");
        assert!(message.contains("reporter 'm', key 'smtp_url'"), "{message}");
        let r = one(&format!("{text}allow_plaintext_auth = true\n"));
        assert_eq!(r.credentials.user.as_deref(), Some("u"));
        assert!(!format!("{:?}", r.credentials).contains("\"p\""), "the password is not shown");
        one("[[reporter]]\nname = \"m\"\ntype = \"mail\"\nfrom = \"k@e.org\"\nsmtp_url = \"smtps://u:p@mx\"\n");
    }

    #[test]
    fn modes_follow_buildbot_and_add_kilns() {
        let modes = |m: &str| {
            one(&format!("[[reporter]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"https://h/x\"\nmode = {m}\n"))
                .modes
        };
        assert_eq!(
            modes("\"all\""),
            [Mode::Failing, Mode::Passing, Mode::Warnings, Mode::Exception, Mode::Cancelled].into()
        );
        assert_eq!(modes("\"warnings\""), [Mode::Failing, Mode::Warnings].into());
        assert_eq!(modes("[\"warnings\"]"), [Mode::Warnings].into());
        assert_eq!(modes("[\"fixed\", \"first_failure\"]"), [Mode::Fixed, Mode::FirstFailure].into());
        let base = "[[reporter]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"https://h/x\"\n";
        problem(&format!("{base}mode = [\"all\"]\n"), "a mode of its own");
        let message = problem(&format!("{base}mode = [\"failing\", \"sometimes\"]\n"), "unknown mode 'sometimes'");
        assert!(message.starts_with("master.toml:22: reporter 's', key 'mode'"), "{message}");
        problem(&format!("{base}repeat_every = 3\n"), "only with mode 'still_failing'");
        let r = one(&format!("{base}mode = [\"still_failing\"]\nrepeat_every = 3\n"));
        assert_eq!(r.repeat_every, 3);
    }

    #[test]
    fn filters_name_known_builders_tags_and_schedulers() {
        let base = "[[reporter]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"https://h/x\"\n";
        let r = one(&format!("{base}builders = [\"dev*\"]\nbranches = [\"main\"]\n"));
        assert_eq!(r.filter.builders, Some(vec!["devel".to_owned()]));
        assert_eq!(r.filter.branches, Some(vec!["main".to_owned()]));
        problem(&format!("{base}builders = [\"nope\"]\n"), "unknown builder 'nope'");
        problem(&format!("{base}builders = [\"devel\"]\ntags = [\"core\"]\n"), "not both");
        problem(&format!("{base}tags = [\"gpu\"]\n"), "no builder has the tag 'gpu'");
        one(&format!("{base}schedulers = [\"force-devel\"]\n"));
        problem(&format!("{base}schedulers = [\"nightly\"]\n"), "unknown scheduler 'nightly'");
    }

    #[test]
    fn each_type_has_its_keys() {
        problem("[[reporter]]\nname = \"s\"\ntype = \"slack\"\n", "needs webhook_url");
        problem("[[reporter]]\nname = \"s\"\ntype = \"irc\"\n", "unknown reporter type 'irc'");
        let message = problem(
            "[[reporter]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"https://h/x\"\ntoken = \"t\"\n",
            "does not apply",
        );
        assert!(message.contains("key 'token'"), "{message}");
        problem(
            "[[reporter]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"https://h/x\"\nfrom = \"a@b\"\n",
            "apply only to type 'mail'",
        );
        problem("[[reporter]]\nname = \"g\"\ntype = \"gitea\"\ntoken = \"t\"\n", "needs base_url");
        let r = one(
            "[[reporter]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"https://h/x\"\ngenerator = \"buildset\"\n",
        );
        assert_eq!(r.generator, Generator::Buildset);
        let r = one("[[reporter]]\nname = \"s\"\ntype = \"http\"\nurl = \"https://h/x\"\ngenerator = \"request\"\n");
        assert_eq!(r.generator, Generator::Request);
        problem(
            "[[reporter]]\nname = \"g\"\ntype = \"github\"\ntoken = \"t\"\ngenerator = \"buildset\"\n",
            "generator 'status'",
        );
        let r = one("[[reporter]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"https://h/x\"\nmax_per_minute = 6\nblamelist_limit = 3\n");
        assert_eq!((r.max_per_minute, r.blamelist_limit), (Some(6), 3));
        assert_eq!(
            one("[[reporter]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"https://h/x\"\n").blamelist_limit,
            20
        );
        problem(
            "[[reporter]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"https://h/x\"\nmax_per_minute = 0\n",
            "at least 1",
        );
        let r = one("[[reporter]]\nname = \"g\"\ntype = \"github\"\ntoken = \"t\"\n");
        assert_eq!(r.generator, Generator::Status);
        let Target::Forge(forge) = &r.target else { panic!("forge") };
        assert_eq!((forge.base_url.as_str(), forge.context.as_str()), ("https://api.github.com", DEFAULT_CONTEXT));
        assert_eq!(r.credentials.token.as_deref(), Some("t"));
        problem(
            "[[reporter]]\nname = \"g\"\ntype = \"github\"\ntoken = \"t\"\ncontext = \"{{ x\"\n",
            "not a valid template",
        );
        let r = one("[[reporter]]\nname = \"m\"\ntype = \"matrix\"\nhomeserver = \"https://m.org/\"\nroom = \"!r:m.org\"\ntoken = \"t\"\n");
        assert_eq!(r.target, Target::Matrix { homeserver: "https://m.org".into(), room: "!r:m.org".into() });
        let r = one("[[reporter]]\nname = \"h\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"k\"\n");
        assert_eq!(r.credentials.secret.as_deref(), Some("k"));
    }

    #[test]
    fn the_documented_example_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
        let doc = std::fs::read_to_string(path).expect("docs/configuration.md");
        let section = doc.split("\n## `[[reporter]]`\n").nth(1).expect("the section");
        let example = section.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("an example");
        let config = MasterConfig::from_str(&format!("{example}\n{BASE}"), "master.toml")
            .unwrap_or_else(|e| panic!("the example should load:\n{e}"));
        assert_eq!(config.reporters.len(), 3);
        for path in ["notifications.md"] {
            let doc = std::fs::read_to_string(format!("{}/../../docs/{path}", env!("CARGO_MANIFEST_DIR")))
                .expect("the notifications page");
            for example in doc.split("```toml\n").skip(1).filter_map(|b| b.split("```").next()) {
                let text =
                    if example.contains("[[builder]]") { example.to_owned() } else { format!("{example}\n{BASE}") };
                MasterConfig::from_str(&text, path)
                    .unwrap_or_else(|e| panic!("docs/{path}: an example should load:\n{e}"));
            }
        }
    }

    #[test]
    fn names_are_unique() {
        let r = "[[reporter]]\nname = \"s\"\ntype = \"slack\"\nwebhook_url = \"https://h/x\"\n";
        problem(&format!("{r}{r}"), "another reporter has this name");
    }
}
