//! Chat message bodies: Slack (blocks with a text fallback), Mattermost (Slack-compatible attachments), Discord
//! (an embed), Matrix (`m.notice` with an HTML body).

use serde_json::{json, Value};

use super::super::message::{colour, md_escape, slack_escape, truncate, Rendered};

/// Slack's section text limit.
const SLACK_SECTION: usize = 3000;
/// Discord's limits: content, embed description, field value.
const DISCORD_CONTENT: usize = 2000;
const DISCORD_DESCRIPTION: usize = 4096;
const DISCORD_FIELD: usize = 1024;

fn details(context: &Value) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    if let Some(branch) = context["branch"].as_str() {
        fields.push(("Branch".to_owned(), branch.to_owned()));
    }
    let blamelist: Vec<&str> =
        context["blamelist"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if let Some(builds) = context["builds"].as_array() {
        let lines: Vec<String> = builds
            .iter()
            .map(|b| {
                let result = b["results"].as_i64().and_then(|r| i32::try_from(r).ok()).and_then(crate::results::name);
                format!(
                    "{} #{}: {}",
                    b["buildername"].as_str().unwrap_or(""),
                    b["build"]["number"],
                    result.unwrap_or("running")
                )
            })
            .collect();
        fields.push(("Builds".to_owned(), lines.join("\n")));
    }
    if !blamelist.is_empty() {
        let more = context["blamelist_more"].as_u64().unwrap_or(0);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        fields.push(("Blamelist".to_owned(), format!("{}{more}", blamelist.join(", "))));
    }
    if let Some(tail) = context["log_tail"].as_object() {
        let lines: Vec<&str> = tail["lines"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if !lines.is_empty() {
            let step = tail["step"].as_str().unwrap_or("");
            fields.push((format!("Last lines of '{step}'"), lines.join("\n")));
        }
    }
    fields
}

/// A Slack incoming-webhook body.
pub fn slack(rendered: &Rendered, context: &Value, url: &str, results: Option<i32>) -> Value {
    let title = format!("*<{url}|{}>*", slack_escape(&rendered.subject));
    let mut blocks =
        vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&title, SLACK_SECTION)}})];
    for (name, value) in details(context) {
        let text = if name.starts_with("Last lines") {
            format!("*{}*\n```{}```", slack_escape(&name), slack_escape(&value))
        } else {
            format!("*{}*: {}", slack_escape(&name), slack_escape(&value))
        };
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, SLACK_SECTION)}}));
    }
    json!({
        "text": rendered.subject,
        "blocks": blocks,
        "attachments": [{"color": format!("#{:06x}", colour(results)), "fallback": rendered.subject}],
    })
}

/// A Mattermost incoming-webhook body.
pub fn mattermost(rendered: &Rendered, url: &str, results: Option<i32>) -> Value {
    json!({
        "text": format!("[{}]({url})", md_escape(&rendered.subject)),
        "attachments": [{
            "fallback": rendered.subject,
            "color": format!("#{:06x}", colour(results)),
            "text": format!("```\n{}\n```", truncate(&rendered.text, 3500)),
        }],
    })
}

/// A Discord webhook body.
pub fn discord(rendered: &Rendered, context: &Value, url: &str, results: Option<i32>) -> Value {
    let fields: Vec<Value> = details(context)
        .into_iter()
        .map(|(name, value)| {
            let value = if name.starts_with("Last lines") { format!("```\n{value}\n```") } else { md_escape(&value) };
            json!({"name": truncate(&name, 256), "value": truncate(&value, DISCORD_FIELD), "inline": false})
        })
        .collect();
    json!({
        "content": truncate(&rendered.subject, DISCORD_CONTENT),
        "embeds": [{
            "title": truncate(&rendered.subject, 256),
            "url": url,
            "description": truncate(&md_escape(context["status_detected"].as_str().unwrap_or("")), DISCORD_DESCRIPTION),
            "color": colour(results),
            "fields": fields,
        }],
    })
}

/// A Matrix `m.room.message` body.
pub fn matrix(rendered: &Rendered) -> Value {
    let mut body = json!({
        "msgtype": "m.notice",
        "body": format!("{}\n\n{}", rendered.subject, rendered.text),
    });
    if let Some(html) = &rendered.html {
        let subject = rendered.subject.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        body["format"] = json!("org.matrix.custom.html");
        body["formatted_body"] = json!(format!("<p><strong>{subject}</strong></p>{html}"));
    }
    body
}
