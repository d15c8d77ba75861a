//! Buildbot's `Interpolate` forms in step commands, environments and paths (`master/buildbot/process/
//! properties.py`): `%(prop:NAME)s`, `%(src:CODEBASE:ATTR)s`, `%(worker:KEY)s`, each with an optional modifier,
//! `%(secret:NAME)s` (no modifier: a secret the build fetched from a provider), and `%%` for a `%`.
//!
//! Where a template is rendered for something that is stored or shown (a state string, a trigger step's
//! properties), the lookup has no secrets and `%(secret:NAME)s` renders as `<secret:NAME>`.
//!
//! Modifiers, after a further `:` (the text after them is itself a template, so forms nest):
//! - `:-ALT`: the value if set, else ALT (no modifier is `:-` with an empty ALT);
//! - `:~ALT`: the value if set and true, else ALT;
//! - `:+ALT`: ALT if set, else nothing;
//! - `:?|A|B`: A if set, else B; `:#?|A|B`: A if set and true, else B (any character but `(` may stand for `|`).
//!
//! "Set" means present, even with a `null` value (which then renders as nothing, as Buildbot's `None` does);
//! "true" is Python's truth (not `null`, `false`, `0`, `""`, `[]` or `{}`). Values render as Python's `str()`
//! would (`True`, `3`, `1.5`). Unlike Python's `%`, a `%` followed by anything but `(` or `%` is kept as written,
//! so that shell commands such as `date +%Y` need no escaping.
//!
//! Templates are parsed when the config is read (a malformed one is a config error) and rendered when a build
//! runs, from its properties and source stamps ([`Lookup`]).

use serde_json::Value;

/// What a template is rendered from.
pub trait Lookup {
    /// The property `name`: `None` when the build has no such property.
    fn property(&self, name: &str) -> Option<&Value>;
    /// The attribute `attr` (`repository`, `branch`, `revision`, `project`, `codebase`) of the source stamp of
    /// `codebase`: `None` when the build has no source stamp for it.
    fn source(&self, codebase: &str, attr: &str) -> Option<Value>;
    /// The worker's information `key` (e.g. `os`, `numcpus`): `None` when unknown.
    fn worker(&self, key: &str) -> Option<Value>;
    /// The value of the secret `name`, when the renderer may use it (only where a command is sent to a worker,
    /// never where text is stored): `None` renders as `<secret:NAME>`.
    fn secret(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// The attributes `%(src:CODEBASE:ATTR)s` may name.
pub const SOURCE_ATTRIBUTES: [&str; 5] = ["repository", "branch", "revision", "project", "codebase"];

/// Why a template is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Interpolate form in {text:?}: {reason}")]
pub struct InterpolateError {
    /// The whole template.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed template: text and substitutions.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Substitution(Box<Substitution>),
}

#[derive(Debug, Clone, PartialEq)]
struct Substitution {
    selector: Selector,
    modifier: Modifier,
}

#[derive(Debug, Clone, PartialEq)]
enum Selector {
    Property(String),
    Source { codebase: String, attr: String },
    Worker(String),
    Secret(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Modifier {
    /// `:-` (`when_false` false) and `:~` (true): the value, or `alt` when unset (or false).
    Default { alt: Template, when_false: bool },
    /// `:+`: `replacement` when set, else nothing.
    Replace(Template),
    /// `:?` (`when_false` false) and `:#?` (true).
    Ternary { if_set: Template, if_unset: Template, when_false: bool },
}

impl Template {
    /// Parses `text`; every `%(…)s` must be well formed.
    pub fn parse(text: &str) -> Result<Template, InterpolateError> {
        parse_template(text).map_err(|reason| InterpolateError { text: text.to_owned(), reason })
    }

    /// Whether the template has no substitution (renders as its text).
    pub fn is_plain(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The names of the secrets the template uses (nested forms included), each once, in order.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        self.collect_secrets(&mut names);
        names
    }

    fn collect_secrets(&self, names: &mut Vec<String>) {
        for part in &self.parts {
            let Part::Substitution(sub) = part else { continue };
            if let Selector::Secret(name) = &sub.selector {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
            match &sub.modifier {
                Modifier::Default { alt, .. } => alt.collect_secrets(names),
                Modifier::Replace(replacement) => replacement.collect_secrets(names),
                Modifier::Ternary { if_set, if_unset, .. } => {
                    if_set.collect_secrets(names);
                    if_unset.collect_secrets(names);
                }
            }
        }
    }

    /// The text with every substitution made.
    pub fn render(&self, lookup: &dyn Lookup) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Substitution(sub) => out.push_str(&sub.render(lookup)),
            }
        }
        out
    }
}

/// The secrets `text` uses (none when it is malformed, which the config refuses).
pub fn secret_names(text: &str) -> Vec<String> {
    Template::parse(text).map(|t| t.secret_names()).unwrap_or_default()
}

/// Checks `text` without keeping the template (for the config).
pub fn check(text: &str) -> Result<(), InterpolateError> {
    Template::parse(text).map(|_| ())
}

/// Renders `text`, which the config has checked; a malformed one (which the config refuses) renders as written.
pub fn render(text: &str, lookup: &dyn Lookup) -> String {
    match Template::parse(text) {
        Ok(template) => template.render(lookup),
        Err(_) => text.to_owned(),
    }
}

impl Substitution {
    fn render(&self, lookup: &dyn Lookup) -> String {
        if let Selector::Secret(name) = &self.selector {
            return match lookup.secret(name) {
                Some(value) => value.to_owned(),
                None => format!("<secret:{name}>"),
            };
        }
        let value = match &self.selector {
            Selector::Property(name) => lookup.property(name).cloned(),
            Selector::Source { codebase, attr } => lookup.source(codebase, attr),
            Selector::Worker(key) => lookup.worker(key),
            Selector::Secret(_) => None,
        };
        match (&self.modifier, value) {
            (Modifier::Default { alt, .. }, None) => alt.render(lookup),
            (Modifier::Default { alt, when_false: true }, Some(v)) if !truthy(&v) => alt.render(lookup),
            (Modifier::Default { .. }, Some(v)) => python_str(&v),
            (Modifier::Replace(replacement), Some(_)) => replacement.render(lookup),
            (Modifier::Replace(_), None) => String::new(),
            (Modifier::Ternary { if_set, if_unset, when_false }, value) => {
                let chosen = match value {
                    Some(v) => !*when_false || truthy(&v),
                    None => false,
                };
                if chosen { if_set } else { if_unset }.render(lookup)
            }
        }
    }
}

/// Python's truth of a value.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A value as Python's `str()` shows it; `null` (Buildbot's `None`) is elided.
pub fn python_str(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn parse_template(text: &str) -> Result<Template, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        literal.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            literal.push('%');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            let close = matching_paren(inner).ok_or_else(|| format!("'%({inner}' has no closing parenthesis"))?;
            let key = &inner[..close];
            let tail = &inner[close + 1..];
            let Some(tail) = tail.strip_prefix('s') else {
                return Err(format!("'%({key})' must be followed by 's'"));
            };
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Substitution(Box::new(parse_substitution(key)?)));
            rest = tail;
        } else {
            literal.push('%');
            rest = after;
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(Template { parts })
}

/// The index of the `)` closing an already opened `(`, counting nested parentheses.
fn matching_paren(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(i),
            ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn parse_substitution(key: &str) -> Result<Substitution, String> {
    let Some((kind, arg)) = key.split_once(':') else {
        return Err(format!("'{key}' has no selector (prop:, src:, worker: or secret:)"));
    };
    let (selector, modifier) = match kind {
        "prop" | "worker" => {
            let (name, modifier) = match arg.split_once(':') {
                Some((name, modifier)) => (name, Some(modifier)),
                None => (arg, None),
            };
            if name.is_empty() {
                return Err(format!("'{key}' names no {}", if kind == "prop" { "property" } else { "key" }));
            }
            let selector =
                if kind == "prop" { Selector::Property(name.to_owned()) } else { Selector::Worker(name.to_owned()) };
            (selector, modifier)
        }
        "secret" => {
            if arg.is_empty() {
                return Err(format!("'{key}' names no secret"));
            }
            if arg.contains(':') {
                return Err(format!("'{key}': a secret takes no modifier (%(secret:NAME)s)"));
            }
            (Selector::Secret(arg.to_owned()), None)
        }
        "src" => {
            let mut fields = arg.splitn(3, ':');
            let codebase = fields.next().unwrap_or_default();
            let Some(attr) = fields.next() else {
                return Err(format!("'{key}' must name a codebase and an attribute (src:CODEBASE:ATTR)"));
            };
            if !SOURCE_ATTRIBUTES.contains(&attr) {
                return Err(format!(
                    "'{key}': unknown source stamp attribute '{attr}' (one of: {})",
                    SOURCE_ATTRIBUTES.join(", ")
                ));
            }
            (Selector::Source { codebase: codebase.to_owned(), attr: attr.to_owned() }, fields.next())
        }
        other => return Err(format!("'{key}': unknown selector '{other}' (one of: prop, src, worker, secret)")),
    };
    let modifier = match modifier {
        None => Modifier::Default { alt: Template { parts: Vec::new() }, when_false: false },
        Some(modifier) => parse_modifier(key, modifier)?,
    };
    Ok(Substitution { selector, modifier })
}

fn parse_modifier(key: &str, modifier: &str) -> Result<Modifier, String> {
    if let Some(alt) = modifier.strip_prefix('-') {
        Ok(Modifier::Default { alt: parse_template(alt)?, when_false: false })
    } else if let Some(alt) = modifier.strip_prefix('~') {
        Ok(Modifier::Default { alt: parse_template(alt)?, when_false: true })
    } else if let Some(replacement) = modifier.strip_prefix('+') {
        Ok(Modifier::Replace(parse_template(replacement)?))
    } else if let Some(parts) = modifier.strip_prefix('?') {
        let (if_set, if_unset) = ternary(key, parts)?;
        Ok(Modifier::Ternary { if_set, if_unset, when_false: false })
    } else if let Some(parts) = modifier.strip_prefix("#?") {
        let (if_set, if_unset) = ternary(key, parts)?;
        Ok(Modifier::Ternary { if_set, if_unset, when_false: true })
    } else {
        Err(format!("'{key}': unknown modifier '{modifier}' (one of :-, :~, :+, :?|a|b, :#?|a|b)"))
    }
}

/// `|A|B` (any delimiter but `(`): A and B, split at the first delimiter outside parentheses.
fn ternary(key: &str, parts: &str) -> Result<(Template, Template), String> {
    let mut chars = parts.chars();
    let delimiter = match chars.next() {
        None => return Err(format!("'{key}': a ternary needs two alternatives (?|if_set|if_unset)")),
        Some('(') => return Err(format!("'{key}': '(' cannot delimit a ternary")),
        Some(d) => d,
    };
    let body = chars.as_str();
    let mut depth = 0i32;
    for (i, c) in body.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            break;
        }
        if depth == 0 && c == delimiter {
            return Ok((parse_template(&body[..i])?, parse_template(&body[i + c.len_utf8()..])?));
        }
    }
    Err(format!("'{key}': a ternary needs two alternatives separated by '{delimiter}'"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    struct Build {
        properties: BTreeMap<&'static str, Value>,
        /// codebase → attributes
        sources: BTreeMap<&'static str, BTreeMap<&'static str, Value>>,
    }

    impl Lookup for Build {
        fn property(&self, name: &str) -> Option<&Value> {
            self.properties.get(name)
        }
        fn source(&self, codebase: &str, attr: &str) -> Option<Value> {
            self.sources.get(codebase).map(|ss| ss.get(attr).cloned().unwrap_or(Value::Null))
        }
        fn worker(&self, key: &str) -> Option<Value> {
            (key == "os").then(|| json!("posix"))
        }
    }

    fn build() -> Build {
        Build {
            properties: BTreeMap::from([
                ("name", json!("kiln")),
                ("empty", json!("")),
                ("none", Value::Null),
                ("zero", json!(0)),
                ("yes", json!(true)),
                ("no", json!(false)),
                ("half", json!(1.5)),
                ("whole", json!(2.0)),
                ("other", json!("name")),
            ]),
            sources: BTreeMap::from([
                ("", BTreeMap::from([("branch", json!("main")), ("revision", Value::Null)])),
                ("lib", BTreeMap::from([("branch", json!("dev")), ("repository", json!("https://x/lib.git"))])),
            ]),
        }
    }

    fn render(text: &str) -> String {
        Template::parse(text).unwrap_or_else(|e| panic!("{e}")).render(&build())
    }

    fn error(text: &str) -> String {
        Template::parse(text).expect_err(text).reason
    }

    #[test]
    fn plain_text_and_escapes() {
        assert_eq!(render("echo hello"), "echo hello");
        assert_eq!(render("100%% sure, %%(prop:name)s"), "100% sure, %(prop:name)s");
        assert_eq!(render("date +%Y-%m-%d 50%"), "date +%Y-%m-%d 50%");
        assert!(Template::parse("a %% b").expect("parses").is_plain());
        assert!(!Template::parse("%(prop:x)s").expect("parses").is_plain());
    }

    #[test]
    fn properties_render_as_python_shows_them() {
        assert_eq!(render("%(prop:name)s-%(prop:zero)s-%(prop:yes)s-%(prop:no)s"), "kiln-0-True-False");
        assert_eq!(render("%(prop:half)s %(prop:whole)s"), "1.5 2.0");
        assert_eq!(render("[%(prop:missing)s][%(prop:none)s][%(prop:empty)s]"), "[][][]");
    }

    #[test]
    fn default_if_unset() {
        assert_eq!(render("%(prop:name:-x)s"), "kiln");
        assert_eq!(render("%(prop:missing:-x)s"), "x");
        assert_eq!(render("%(prop:empty:-x)s"), "");
        assert_eq!(render("%(prop:none:-x)s"), "", "set to None: Buildbot elides None, no default");
        assert_eq!(render("%(prop:no:-x)s"), "False");
    }

    #[test]
    fn default_if_false() {
        assert_eq!(render("%(prop:name:~x)s"), "kiln");
        for falsy in ["missing", "empty", "none", "zero", "no"] {
            assert_eq!(render(&format!("%(prop:{falsy}:~x)s")), "x", "{falsy}");
        }
    }

    #[test]
    fn replacement_if_set() {
        assert_eq!(render("%(prop:name:+--name)s"), "--name");
        assert_eq!(render("%(prop:empty:+--name)s"), "--name");
        assert_eq!(render("%(prop:missing:+--name)s"), "");
    }

    #[test]
    fn ternaries() {
        assert_eq!(render("%(prop:name:?|yes|no)s"), "yes");
        assert_eq!(render("%(prop:empty:?|yes|no)s"), "yes");
        assert_eq!(render("%(prop:missing:?|yes|no)s"), "no");
        assert_eq!(render("%(prop:name:#?|yes|no)s"), "yes");
        assert_eq!(render("%(prop:empty:#?|yes|no)s"), "no");
        assert_eq!(render("%(prop:zero:#?|yes|no)s"), "no");
        assert_eq!(render("%(prop:missing:#?|yes|no)s"), "no");
        assert_eq!(render("%(prop:name:?/a|b/c)s"), "a|b");
        assert_eq!(render("%(prop:name:?||)s"), "");
    }

    #[test]
    fn forms_nest() {
        assert_eq!(render("%(prop:missing:-%(prop:name)s)s"), "kiln");
        assert_eq!(render("%(prop:name:?|%(src::branch)s|none)s"), "main");
        assert_eq!(render("%(prop:missing:?|x|%(prop:name:+n)s)s"), "n");
    }

    #[test]
    fn source_stamps() {
        assert_eq!(render("%(src::branch)s %(src:lib:branch)s %(src:lib:repository)s"), "main dev https://x/lib.git");
        assert_eq!(render("[%(src::revision)s]"), "[]");
        assert_eq!(render("%(src::revision:-HEAD)s"), "", "present but None: elided, as Buildbot");
        assert_eq!(render("%(src::revision:~HEAD)s"), "HEAD");
        assert_eq!(render("%(src:nope:branch:-master)s"), "master");
        assert_eq!(render("%(src:nope:branch:?|a|b)s"), "b");
    }

    struct WithSecret;

    impl Lookup for WithSecret {
        fn property(&self, _name: &str) -> Option<&Value> {
            None
        }
        fn source(&self, _codebase: &str, _attr: &str) -> Option<Value> {
            None
        }
        fn worker(&self, _key: &str) -> Option<Value> {
            None
        }
        fn secret(&self, name: &str) -> Option<&str> {
            (name == "token").then_some("s3cret")
        }
    }

    #[test]
    fn secrets_render_only_where_the_lookup_has_them() {
        let t = Template::parse("curl -H 'X: %(secret:token)s' %(prop:x:-%(secret:other)s)s").expect("parses");
        assert_eq!(t.secret_names(), vec!["token".to_string(), "other".to_string()]);
        assert_eq!(t.render(&WithSecret), "curl -H 'X: s3cret' <secret:other>");
        assert_eq!(t.render(&build()), "curl -H 'X: <secret:token>' <secret:other>", "no secrets: the names");
        assert_eq!(secret_names("a %(secret:pass/ci/token)s b"), vec!["pass/ci/token".to_string()]);
        assert!(error("%(secret:)s").contains("names no secret"));
        assert!(error("%(secret:x:-y)s").contains("takes no modifier"));
    }

    #[test]
    fn worker_info() {
        assert_eq!(render("%(worker:os)s/%(worker:arch:-any)s"), "posix/any");
    }

    #[test]
    fn malformed_forms_are_errors() {
        assert!(error("%(prop:name").contains("no closing parenthesis"));
        assert!(error("%(prop:name)d").contains("followed by 's'"));
        assert!(error("%(name)s").contains("no selector"));
        assert!(error("%(kw:x)s").contains("unknown selector 'kw'"));
        assert!(error("%(prop:)s").contains("names no property"));
        assert!(error("%(src:branch)s").contains("codebase and an attribute"));
        assert!(error("%(src::bogus)s").contains("unknown source stamp attribute 'bogus'"));
        assert!(error("%(prop:x:*y)s").contains("unknown modifier"));
        assert!(error("%(prop:x:?|only)s").contains("two alternatives"));
        assert!(error("%(prop:x:?)s").contains("two alternatives"));
        assert!(error("%(prop:x:?(a)(b))s").contains("'(' cannot delimit"));
        assert!(error("%(prop:x:-%(prop:y)d)s").contains("followed by 's'"), "nested forms are checked");
        let e = Template::parse("echo %(prop:)s").expect_err("error");
        assert_eq!(e.to_string(), "invalid Interpolate form in \"echo %(prop:)s\": 'prop:' names no property");
    }
}
