//! What a notice says: Buildbot's template context (so Buildbot templates port), Kiln's default texts, and the
//! user's minijinja templates. HTML is autoescaped: a commit message's `<script>` arrives as text.

use std::collections::BTreeSet;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::{json, Value};

use super::mode::Outcome;
use crate::config::Mode;
use crate::model::{BuildFacts, BuildsetFacts};
use crate::results::{self, EXCEPTION, FAILURE, SUCCESS, WARNINGS};

/// Buildbot's `result_names`, by result code.
const RESULT_NAMES: [&str; 7] = ["success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"];

/// The lines of the failing step's log, read before the result is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogTail {
    pub step: String,
    pub log: String,
    pub lines: Vec<String>,
}

/// Where the master is and what it is called.
#[derive(Debug, Clone)]
pub struct Site {
    pub title: String,
    /// Ends with `/`.
    pub url: String,
}

/// A message rendered for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    /// An HTML body, when the target takes one.
    pub html: Option<String>,
}

/// The build's page in the web UI.
pub fn build_url(site: &Site, facts: &BuildFacts) -> String {
    format!("{}#/builders/{}/builds/{}", site.url, facts.build.builderid, facts.build.number)
}

/// A build request's page in the web UI (Buildbot's route).
pub fn request_url(site: &Site, brid: i64) -> String {
    format!("{}#/buildrequests/{brid}", site.url)
}

/// A buildset's page in the web UI (Buildbot's route).
pub fn buildset_url(site: &Site, bsid: i64) -> String {
    format!("{}#/buildsets/{bsid}", site.url)
}

/// Sets the context's `blamelist_all` (everyone) and `blamelist_more` (how many are not in `blamelist`, which
/// names at most `limit`).
pub fn count_blamelist(context: &mut Value, everyone: &[String], limit: usize) {
    context["blamelist_all"] = json!(everyone);
    context["blamelist_more"] = json!(everyone.len().saturating_sub(limit));
}

/// Buildbot's template context for a completed buildset (`results`, `buildset`, `builds`, `is_buildset`,
/// `blamelist`, `status_detected`, `sourcestamps`, `projects`, …); each of `builds` is a build's context.
pub fn buildset_context(
    site: &Site,
    facts: &BuildsetFacts,
    modes: &BTreeSet<Mode>,
    builds: Vec<Value>,
    blamelist: &[String],
    limit: usize,
) -> Value {
    let url = buildset_url(site, facts.bsid);
    let first = builds.first().cloned().unwrap_or(Value::Null);
    let results_name = results::name(facts.results).unwrap_or("unknown");
    let status_detected = match facts.results {
        SUCCESS => "passing buildset".to_owned(),
        WARNINGS => "problem in the buildset".to_owned(),
        FAILURE => "failed buildset".to_owned(),
        _ => format!("{results_name} buildset"),
    };
    let builders: Vec<Value> = builds.iter().map(|b| b["buildername"].clone()).collect();
    let mut context = json!({
        "results": facts.results,
        "result_name": results_name,
        "result_names": RESULT_NAMES,
        "mode": modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
        "buildset": {"bsid": facts.bsid, "reason": facts.reason, "results": facts.results, "url": url},
        "buildset_url": url,
        "builds": builds,
        "builders": builders,
        "is_buildset": true,
        "projects": first["projects"],
        "status_detected": status_detected,
        "buildbot_title": site.title,
        "buildbot_url": site.url,
        "kiln_title": site.title,
        "kiln_url": site.url,
        "blamelist": &blamelist[..blamelist.len().min(limit)],
        "sourcestamps": first["sourcestamps"],
        "changes": first["changes"],
        "branch": first["branch"],
        "reason": facts.reason,
    });
    count_blamelist(&mut context, blamelist, limit);
    context
}

/// Buildbot's template context for a build (`results`, `buildername`, `build`, `blamelist`, `status_detected`,
/// `summary`, `sourcestamps`, …) plus Kiln's `changes`, `branch`, `log_tail` and `previous_results`.
pub fn build_context(
    site: &Site,
    facts: &BuildFacts,
    modes: &BTreeSet<Mode>,
    outcome: Outcome,
    blamelist: &[String],
    tail: Option<&LogTail>,
) -> Value {
    let results = facts.build.results;
    let url = build_url(site, facts);
    let properties: serde_json::Map<String, Value> =
        facts.properties.iter().map(|(k, v)| (k.clone(), json!([v, "Build"]))).collect();
    let steps: Vec<Value> = facts
        .steps
        .iter()
        .filter(|s| !s.hidden)
        .map(|s| {
            json!({
                "name": s.name, "number": s.number, "results": s.results,
                "result_name": s.results.and_then(results::name),
                "state_string": s.state_string, "stepid": s.id,
                "url": format!("{url}/steps/{}", s.number),
            })
        })
        .collect();
    let sourcestamps: Vec<Value> = facts
        .sourcestamps
        .iter()
        .map(|ss| {
            json!({"branch": ss.branch, "revision": ss.revision, "repository": ss.repository,
                   "project": ss.project, "codebase": ss.codebase})
        })
        .collect();
    let changes: Vec<Value> = facts
        .changes
        .iter()
        .map(|c| {
            json!({"changeid": c.id, "author": c.author, "committer": c.committer, "comments": c.comments,
                   "title": c.comments.lines().next().unwrap_or(""), "revision": c.revision,
                   "short_revision": c.revision.as_deref().map(|r| &r[..r.len().min(12)]),
                   "branch": c.branch, "repository": c.repository, "files": c.files})
        })
        .collect();
    let projects: Vec<&str> =
        facts.sourcestamps.iter().map(|ss| ss.project.as_str()).filter(|p| !p.is_empty()).collect();
    let previous = outcome.previous.flatten();
    let state = &facts.build.state_string;
    let summary = match results {
        Some(SUCCESS) => "Build succeeded!".to_owned(),
        Some(WARNINGS) => format!("Build Had Warnings: {state}"),
        Some(crate::results::CANCELLED) => "Build was cancelled".to_owned(),
        Some(_) => format!("BUILD FAILED: {state}"),
        None => "Build started.".to_owned(),
    };
    json!({
        "results": results,
        "result_names": RESULT_NAMES,
        "mode": modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
        "buildername": facts.builder,
        "workername": facts.worker,
        "buildset": {"bsid": facts.buildsetid, "reason": facts.reason},
        "build": {
            "buildid": facts.build.id, "number": facts.build.number, "builderid": facts.build.builderid,
            "results": results, "state_string": state, "url": url, "properties": properties,
            "started_at": facts.build.started_at, "complete_at": facts.build.complete_at,
            "builder": {"name": facts.builder, "builderid": facts.build.builderid, "tags": facts.builder_tags},
            "prev_build": outcome.previous.map(|r| json!({"results": r})),
            "steps": steps,
        },
        "is_buildset": false,
        "projects": projects.join(", "),
        "previous_results": previous,
        "status_detected": super::mode::status_detected(modes, outcome),
        "build_url": url,
        "buildbot_title": site.title,
        "buildbot_url": site.url,
        "kiln_title": site.title,
        "kiln_url": site.url,
        "blamelist": blamelist,
        "summary": summary,
        "sourcestamps": sourcestamps,
        "changes": changes,
        "branch": facts.branch(),
        "got_revision": facts.properties.get("got_revision"),
        "reason": facts.reason,
        "streak": outcome.streak,
        "log_tail": tail.map(|t| json!({"step": t.step, "log": t.log, "lines": t.lines})),
    })
}

/// The default subject: a verdict sign and word first, so previews show it (Buildbot's form).
pub const DEFAULT_SUBJECT: &str = "{% if results == 2 %}☠{% elif results == 0 %}☺{% else %}☝{% endif %} \
    {{ kiln_title }}: {{ buildername }} - {{ build.state_string }}\
    {% if branch %} ({{ branch }}){% endif %}";

/// The default plain body.
pub const DEFAULT_TEXT: &str = "\
A {{ status_detected }} has been detected on builder {{ buildername }}\
{% if projects %} while building {{ projects }}{% endif %}.
Full details are available at:
    {{ build_url }}

Build state: {{ build.state_string }}
{% if got_revision %}Revision: {{ got_revision }}
{% endif %}{% if branch %}Branch: {{ branch }}
{% endif %}Worker: {{ workername or '' }}
Build reason: {{ reason }}
Blamelist: {{ blamelist | join(', ') }}{% if blamelist_more %} and {{ blamelist_more }} more{% endif %}
{% if changes %}
Changes:
{% for c in changes %}  {{ c.short_revision or '' }} {{ c.author }}: {{ c.title }}
{% endfor %}{% endif %}
Steps:
{% for s in build.steps %}  {{ s.number }}: {{ s.name }} ( {{ s.result_name or 'running' }} )
{% endfor %}{% if log_tail %}
The last lines of step '{{ log_tail.step }}' ({{ log_tail.log }}):
{% for line in log_tail.lines %}    {{ line }}
{% endfor %}{% endif %}
-- 
{{ kiln_title }} at {{ kiln_url }}
";

/// The default HTML body (autoescaped).
pub const DEFAULT_HTML: &str = "\
<p>A {{ status_detected }} has been detected on builder <a href=\"{{ build_url }}\">{{ buildername }}</a>\
{% if projects %} while building {{ projects }}{% endif %}.</p>
<ul>
<li>Build state: {{ build.state_string }}</li>
{% if got_revision %}<li>Revision: {{ got_revision }}</li>{% endif %}
{% if branch %}<li>Branch: {{ branch }}</li>{% endif %}
<li>Worker: {{ workername or '' }}</li>
<li>Build reason: {{ reason }}</li>
<li>Blamelist: {{ blamelist | join(', ') }}{% if blamelist_more %} and {{ blamelist_more }} more{% endif %}</li>
</ul>
{% if changes %}<p>Changes:</p>
<ul>{% for c in changes %}<li><code>{{ c.short_revision or '' }}</code> {{ c.author }}: {{ c.title }}</li>{% endfor %}</ul>
{% endif %}<p>Steps:</p>
<ul>{% for s in build.steps %}<li>{{ s.number }}: {{ s.name }} ( {{ s.result_name or 'running' }} )</li>{% endfor %}</ul>
{% if log_tail %}<p>The last lines of step '{{ log_tail.step }}' ({{ log_tail.log }}):</p>
<pre>{% for line in log_tail.lines %}{{ line }}
{% endfor %}</pre>{% endif %}
<p>{{ kiln_title }} at <a href=\"{{ kiln_url }}\">{{ kiln_url }}</a></p>
";

/// The default subject of a pending request.
pub const DEFAULT_REQUEST_SUBJECT: &str = "{% if results is none %}⏳ {{ kiln_title }}: {{ buildername }} - pending\
    {% else %}☝ {{ kiln_title }}: {{ buildername }} - request {{ build.state_string }}{% endif %}\
    {% if branch %} ({{ branch }}){% endif %}";

/// The default plain body of a pending request.
pub const DEFAULT_REQUEST_TEXT: &str = "\
{% if results is none %}A build is pending on builder {{ buildername }}{% else %}A build request of builder \
{{ buildername }} ended {{ build.state_string }} before it was built{% endif %}\
{% if projects %} for {{ projects }}{% endif %}.
    {{ build_url }}

{% if branch %}Branch: {{ branch }}
{% endif %}Reason: {{ reason }}
Blamelist: {{ blamelist | join(', ') }}{% if blamelist_more %} and {{ blamelist_more }} more{% endif %}
{% if changes %}
Changes:
{% for c in changes %}  {{ c.short_revision or '' }} {{ c.author }}: {{ c.title }}
{% endfor %}{% endif %}
-- 
{{ kiln_title }} at {{ kiln_url }}
";

/// The default subject of a buildset: its result, its builders.
pub const DEFAULT_BUILDSET_SUBJECT: &str = "{% if results == 2 %}☠{% elif results == 0 %}☺{% else %}☝{% endif %} \
    {{ kiln_title }}: {{ builders | join(', ') }} - {{ result_name }}{% if branch %} ({{ branch }}){% endif %}";

/// The default plain body of a buildset: one line per build, then what changed and who.
pub const DEFAULT_BUILDSET_TEXT: &str = "\
A {{ status_detected }} has been detected{% if projects %} while building {{ projects }}{% endif %}: \
{{ builds | length }} build(s) of buildset {{ buildset.bsid }} ({{ reason }}).

{% for b in builds %}  {{ b.buildername }} #{{ b.build.number }}: {{ b.result_names[b.results] if b.results is not none else 'running' }} - {{ b.build.state_string }}
      {{ b.build_url }}
{% endfor %}
{% if branch %}Branch: {{ branch }}
{% endif %}Blamelist: {{ blamelist | join(', ') }}{% if blamelist_more %} and {{ blamelist_more }} more{% endif %}
{% if changes %}
Changes:
{% for c in changes %}  {{ c.short_revision or '' }} {{ c.author }}: {{ c.title }}
{% endfor %}{% endif %}
-- 
{{ kiln_title }} at {{ kiln_url }}
";

/// The default HTML body of a buildset (autoescaped).
pub const DEFAULT_BUILDSET_HTML: &str = "\
<p>A {{ status_detected }} has been detected{% if projects %} while building {{ projects }}{% endif %}: \
{{ builds | length }} build(s) of buildset {{ buildset.bsid }} ({{ reason }}).</p>
<ul>{% for b in builds %}<li><a href=\"{{ b.build_url }}\">{{ b.buildername }} #{{ b.build.number }}</a>: \
{{ b.result_names[b.results] if b.results is not none else 'running' }} - {{ b.build.state_string }}</li>{% endfor %}</ul>
<ul>
{% if branch %}<li>Branch: {{ branch }}</li>{% endif %}
<li>Blamelist: {{ blamelist | join(', ') }}{% if blamelist_more %} and {{ blamelist_more }} more{% endif %}</li>
</ul>
{% if changes %}<p>Changes:</p>
<ul>{% for c in changes %}<li><code>{{ c.short_revision or '' }}</code> {{ c.author }}: {{ c.title }}</li>{% endfor %}</ul>
{% endif %}<p>{{ kiln_title }} at <a href=\"{{ kiln_url }}\">{{ kiln_url }}</a></p>
";

/// Renders `template` (`html`: autoescaped) with `context`; an error says which template failed and why.
pub fn render(template: &str, html: bool, context: &Value) -> Result<String, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_auto_escape_callback(move |_| if html { AutoEscape::Html } else { AutoEscape::None });
    env.set_fuel(Some(1_000_000));
    env.add_filter("slack_escape", |s: String| slack_escape(&s));
    env.add_filter("md_escape", |s: String| md_escape(&s));
    let template = env.template_from_str(template).map_err(|e| e.to_string())?;
    template.render(minijinja::value::Serde(context)).map_err(|e| e.to_string())
}

/// The subject and bodies of a build notice: the user's templates where given, else the defaults.
pub fn render_build(
    template: Option<&crate::config::TemplateDef>,
    context: &Value,
    want_html: bool,
) -> Result<Rendered, String> {
    render_with(template, context, want_html, (DEFAULT_SUBJECT, DEFAULT_TEXT, Some(DEFAULT_HTML)))
}

/// The subject and bodies of a request notice (pending, or ended without a build).
pub fn render_request(
    template: Option<&crate::config::TemplateDef>,
    context: &Value,
    want_html: bool,
) -> Result<Rendered, String> {
    render_with(template, context, want_html, (DEFAULT_REQUEST_SUBJECT, DEFAULT_REQUEST_TEXT, None))
}

/// The subject and bodies of a buildset notice.
pub fn render_buildset(
    template: Option<&crate::config::TemplateDef>,
    context: &Value,
    want_html: bool,
) -> Result<Rendered, String> {
    let defaults = (DEFAULT_BUILDSET_SUBJECT, DEFAULT_BUILDSET_TEXT, Some(DEFAULT_BUILDSET_HTML));
    render_with(template, context, want_html, defaults)
}

/// Renders the user's templates where given, else `defaults` (subject, text, HTML if any).
fn render_with(
    template: Option<&crate::config::TemplateDef>,
    context: &Value,
    want_html: bool,
    defaults: (&str, &str, Option<&str>),
) -> Result<Rendered, String> {
    let (default_subject, default_text, default_html) = defaults;
    let subject_template = template.and_then(|t| t.subject.as_deref()).unwrap_or(default_subject);
    let subject = render(subject_template, false, context)?.replace(['\r', '\n'], " ");
    let (text, html) = match template.and_then(|t| t.body.as_deref().map(|b| (b, t.html))) {
        Some((body, true)) => (render(default_text, false, context)?, Some(render(body, true, context)?)),
        Some((body, false)) => (render(body, false, context)?, None),
        None => {
            let html = default_html.filter(|_| want_html).map(|h| render(h, true, context)).transpose()?;
            (render(default_text, false, context)?, html)
        }
    };
    Ok(Rendered { subject: subject.trim().to_owned(), text, html })
}

/// Slack's mrkdwn escapes (`&`, `<`, `>`).
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Markdown's special characters escaped (Mattermost, Discord).
pub fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '_' | '`' | '~' | '|' | '<' | '>' | '[' | ']' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A colour for the result (chat side bars), as RGB.
pub fn colour(results: Option<i32>) -> u32 {
    match results {
        Some(SUCCESS) => 0x2e_b8_86,
        Some(WARNINGS) => 0xda_a0_38,
        Some(FAILURE) => 0xa3_00_00,
        Some(EXCEPTION) => 0x88_00_88,
        Some(_) => 0x88_88_88,
        None => 0x43_9f_e0,
    }
}

/// Cuts `text` to at most `max` characters, ending with `…` when it was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Build, Change, NewChange, SourceStamp, Step};

    fn facts() -> BuildFacts {
        let reported = NewChange {
            author: "Mallory <m@x.org>".into(),
            comments: "fix <script>alert(1)</script> & more\n\nbody".into(),
            revision: Some("0123456789abcdef".into()),
            ..NewChange::default()
        };
        BuildFacts {
            build: Build {
                id: 7,
                number: 3,
                builderid: 2,
                results: Some(FAILURE),
                state_string: "failed 'make' (failure)".into(),
                ..Build::default()
            },
            builder: "devel".into(),
            worker: Some("w1".into()),
            reason: "change".into(),
            sourcestamps: vec![SourceStamp { branch: Some("main".into()), ..SourceStamp::default() }],
            changes: vec![Change { id: 1, sourcestampid: 1, reported, parent_changeids: Vec::new() }],
            steps: vec![Step { name: "make".into(), number: 1, results: Some(FAILURE), ..Step::default() }],
            ..BuildFacts::default()
        }
    }

    fn context() -> Value {
        let site = Site { title: "Scipion".into(), url: "http://ci.example.org/".into() };
        let outcome = Outcome { results: FAILURE, previous: Some(Some(SUCCESS)), streak: 1 };
        let tail = LogTail { step: "make".into(), log: "stdio".into(), lines: vec!["error: <x> undefined".into()] };
        build_context(&site, &facts(), &[Mode::Problem].into(), outcome, &["Mallory <m@x.org>".into()], Some(&tail))
    }

    #[test]
    fn the_default_texts_read_well() {
        let rendered = render_build(None, &context(), true).expect("render");
        assert_eq!(rendered.subject, "☠ Scipion: devel - failed 'make' (failure) (main)");
        let text = &rendered.text;
        assert!(text.starts_with("A new failure has been detected on builder devel."), "{text}");
        assert!(text.contains("http://ci.example.org/#/builders/2/builds/3"), "{text}");
        assert!(text.contains("0123456789ab Mallory <m@x.org>: fix <script>alert(1)</script> & more"), "{text}");
        assert!(text.contains("The last lines of step 'make' (stdio):\n    error: <x> undefined"), "{text}");
    }

    #[test]
    fn html_is_escaped() {
        let html = render_build(None, &context(), true).expect("render").html.expect("html");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("fix &lt;script&gt;alert(1)&lt;&#x2f;script&gt; &amp; more"), "{html}");
        assert!(html.contains("Mallory &lt;m@x.org&gt;"), "{html}");
        assert!(html.contains("error: &lt;x&gt; undefined"), "{html}");
        let user = crate::config::TemplateDef {
            body: Some("<b>{{ changes[0].comments }}</b>".into()),
            subject: None,
            html: true,
        };
        let html = render_build(Some(&user), &context(), true).expect("render").html.expect("html");
        assert!(html.starts_with("<b>fix &lt;script&gt;"), "{html}");
    }

    #[test]
    fn buildbot_templates_port() {
        let template =
            "{{ buildername }} {{ status_detected }} {{ summary }} {% for b in blamelist %}{{ b }}{% endfor %} \
                        {{ build['properties']['missing'] }}{{ build.number }} {{ result_names[results] }}";
        let text = render(template, false, &context()).expect("render");
        assert_eq!(text, "devel new failure BUILD FAILED: failed 'make' (failure) Mallory <m@x.org> 3 failure");
    }

    #[test]
    fn truncation_and_escapes() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert_eq!(slack_escape("<a & b>"), "&lt;a &amp; b&gt;");
        assert_eq!(md_escape("a_b*c"), "a\\_b\\*c");
    }
}
