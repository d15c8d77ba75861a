//! Reusable builder definitions: named factories (`[[factory]]`, a list of steps several builders share) and
//! builder matrices (`matrix = { plugin = ["a", "b"], mode = ["devel", "production"] }` on a `[[builder]]`,
//! one builder per combination).
//!
//! Both are expanded on the parsed TOML, before builders are read, so that every builder key and step type works
//! in them and an error in a factory's step is reported at the factory's line. In a matrix builder every string
//! value (its own keys, and the steps it gets from its factory) has `{KEY}` replaced by the combination's value
//! of the matrix key `KEY`; other braces are left alone.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use toml::de::DeValue;
use toml::Spanned;

use super::error::Problems;
use super::parse::{context_of, declared_name};

/// The keys a `[[factory]]` table accepts.
const FACTORY_KEYS: [&str; 3] = ["name", "description", "step"];

/// A factory: its `[[factory.step]]` tables, as parsed; `None` when they are missing (already reported, so the
/// builders using the factory are not reported again).
pub(super) struct Factory<'i> {
    steps: Option<Spanned<DeValue<'i>>>,
}

/// The factories of a file, by name.
pub(super) type Factories<'i> = BTreeMap<String, Factory<'i>>;

/// Reads the `[[factory]]` tables: each needs a unique `name` and its `[[factory.step]]` tables (checked later,
/// in each builder that uses it).
pub(super) fn read_factories<'i>(tables: Vec<Spanned<DeValue<'i>>>, problems: &mut Problems<'_>) -> Factories<'i> {
    let mut factories = Factories::new();
    for (index, table) in tables.into_iter().enumerate() {
        let declared = declared_name(table.get_ref());
        let context = context_of("factory", declared.as_deref(), index);
        let span = table.span();
        let DeValue::Table(mut keys) = table.into_inner() else {
            problems.add(span, None, "factory", "expected a table, written [[factory]]");
            continue;
        };
        for key in keys.keys().filter(|key| !FACTORY_KEYS.contains(&key.get_ref().as_ref())) {
            let message = format!("unknown key '{}' (a factory has {})", key.get_ref(), FACTORY_KEYS.join(", "));
            problems.add(key.span(), Some(&context), key.get_ref(), message);
        }
        let Some(name) = declared else {
            problems.add(span, Some(&context), "name", "a factory needs a name (a string)");
            continue;
        };
        let steps = keys.remove("step");
        if steps.is_none() {
            problems.add(span.clone(), Some(&context), "step", "a factory needs at least one [[factory.step]]");
        }
        if factories.contains_key(&name) {
            let name_span = keys.get("name").map_or(span, Spanned::span);
            problems.add(name_span, Some(&context), "name", "another factory has this name");
            continue;
        }
        factories.insert(name, Factory { steps });
    }
    factories
}

/// Expands the `[[builder]]` tables: a table with a `matrix` becomes one table per combination of its values,
/// and a table with a `factory` gets that factory's steps. Tables with neither are returned as they are.
pub(super) fn expand_builders<'i>(
    tables: Vec<Spanned<DeValue<'i>>>,
    factories: &Factories<'i>,
    problems: &mut Problems<'_>,
) -> Vec<Spanned<DeValue<'i>>> {
    let mut expanded = Vec::new();
    for (index, mut table) in tables.into_iter().enumerate() {
        let context = context_of("builder", declared_name(table.get_ref()).as_deref(), index);
        let matrix = match table.get_mut() {
            DeValue::Table(keys) => keys.remove("matrix"),
            _ => None,
        };
        let matrix_span = matrix.as_ref().map_or(0..0, Spanned::span);
        let combinations = match matrix {
            None => vec![Vec::new()],
            Some(matrix) => match combinations(matrix, &context, problems) {
                Some(combinations) => combinations,
                None => continue,
            },
        };
        for (n, values) in combinations.into_iter().enumerate() {
            let mut builder = table.clone();
            substitute(&mut builder, &values);
            add_properties(&mut builder, &values, &matrix_span);
            if let Some(builder) = with_factory(builder, &values, factories, &context, problems) {
                // Every combination leaves the same misspelt keys: report them once.
                if n == 0 && !values.is_empty() && !check_misspelt_keys(&builder, &values, &context, problems) {
                    break;
                }
                expanded.push(builder);
            }
        }
    }
    expanded
}

/// One combination of a matrix: each key with one of its values.
type Combination = Vec<(String, String)>;

/// Every combination of a `matrix` table's values: keys by name (the toml map's order), the first varying slowest.
fn combinations(matrix: Spanned<DeValue<'_>>, context: &str, problems: &mut Problems<'_>) -> Option<Vec<Combination>> {
    const EXPECTED: &str = "expected a table of lists of strings, e.g. { mode = [\"devel\", \"production\"] }";
    let span = matrix.span();
    let DeValue::Table(keys) = matrix.into_inner() else {
        problems.add(span, Some(context), "matrix", EXPECTED);
        return None;
    };
    if keys.is_empty() {
        problems.add(span, Some(context), "matrix", "needs at least one key");
        return None;
    }
    let mut combinations: Vec<Combination> = vec![Vec::new()];
    let mut valid = true;
    for (key, values) in keys {
        let values_span = values.span();
        let DeValue::Array(values) = values.into_inner() else {
            problems.add(values_span, Some(context), "matrix", EXPECTED);
            valid = false;
            continue;
        };
        let mut strings = Vec::new();
        let mut seen = BTreeSet::new();
        for value in values.iter() {
            match value.get_ref().as_str() {
                Some(text) if !seen.insert(text) => {
                    let message = format!("matrix key '{}' lists '{text}' twice", key.get_ref());
                    problems.add(value.span(), Some(context), "matrix", message);
                    valid = false;
                }
                Some(text) => strings.push(text.to_owned()),
                None => {
                    problems.add(value.span(), Some(context), "matrix", EXPECTED);
                    valid = false;
                }
            }
        }
        if values.is_empty() {
            let message = format!("matrix key '{}' needs at least one value", key.get_ref());
            problems.add(values_span, Some(context), "matrix", message);
            valid = false;
        }
        let mut next = Vec::with_capacity(combinations.len() * strings.len());
        for combination in &combinations {
            for value in &strings {
                let mut longer = combination.clone();
                longer.push((key.get_ref().to_string(), value.clone()));
                next.push(longer);
            }
        }
        combinations = next;
    }
    valid.then_some(combinations)
}

/// Replaces `{KEY}` by its value in every string of `value`, recursively.
fn substitute(value: &mut Spanned<DeValue<'_>>, values: &[(String, String)]) {
    if values.is_empty() {
        return;
    }
    match value.get_mut() {
        DeValue::String(text) => {
            if let Some(replaced) = replace_keys(text, values) {
                *text = Cow::Owned(replaced);
            }
        }
        DeValue::Array(items) => items.iter_mut().for_each(|item| substitute(item, values)),
        DeValue::Table(keys) => keys.iter_mut().for_each(|(_, item)| substitute(item, values)),
        _ => {}
    }
}

/// `text` with each `{KEY}` replaced, or `None` when it holds none.
fn replace_keys(text: &str, values: &[(String, String)]) -> Option<String> {
    let mut replaced = Cow::Borrowed(text);
    for (key, value) in values {
        let pattern = format!("{{{key}}}");
        if replaced.contains(&pattern) {
            replaced = Cow::Owned(replaced.replace(&pattern, value));
        }
    }
    match replaced {
        Cow::Borrowed(_) => None,
        Cow::Owned(text) => Some(text),
    }
}

/// Reports each `{WORD}` left in a matrix builder's strings (after substitution) whose word is a misspelt matrix
/// key (`{plugn}` for `plugin`: at most two letters off), which would otherwise run literally. Other braces
/// (`${HOME}`, `{print $1}`) are left alone. Returns whether there was none.
fn check_misspelt_keys(
    builder: &Spanned<DeValue<'_>>,
    values: &[(String, String)],
    context: &str,
    problems: &mut Problems<'_>,
) -> bool {
    let mut valid = true;
    let mut visit = |key: &str, text: &Spanned<DeValue<'_>>| {
        let Some(text) = text.get_ref().as_str() else { return };
        for word in placeholders(text) {
            let near = values.iter().map(|(k, _)| k).find(|k| edit_distance(&word.to_lowercase(), k) <= 2);
            if let Some(near) = near {
                let keys = values.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ");
                let message =
                    format!("'{{{word}}}' is not a matrix key: did you mean '{{{near}}}'? (the keys are: {keys})");
                problems.add(builder_span_of(text, builder), Some(context), key, message);
                valid = false;
            }
        }
    };
    walk_strings(builder, "builder", &mut visit);
    valid
}

/// Where in the file the string `text` of `builder` is, for the report (the builder's own span if not found).
fn builder_span_of(text: &str, builder: &Spanned<DeValue<'_>>) -> std::ops::Range<usize> {
    let mut found = None;
    walk_strings(builder, "", &mut |_, value: &Spanned<DeValue<'_>>| {
        if found.is_none() && value.get_ref().as_str() == Some(text) {
            found = Some(value.span());
        }
    });
    found.unwrap_or_else(|| builder.span())
}

/// Calls `visit` with every string of `value` and the name of the key that holds it.
fn walk_strings<'v>(
    value: &'v Spanned<DeValue<'_>>,
    key: &str,
    visit: &mut impl FnMut(&str, &'v Spanned<DeValue<'_>>),
) {
    match value.get_ref() {
        DeValue::String(_) => visit(key, value),
        DeValue::Array(items) => items.iter().for_each(|item| walk_strings(item, key, visit)),
        DeValue::Table(keys) => keys.iter().for_each(|(name, item)| walk_strings(item, name.get_ref(), visit)),
        _ => {}
    }
}

/// The words in `{WORD}` (letters, digits, `_`, `-`) of `text` not preceded by `$`.
fn placeholders(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(open) = rest.find('{') {
        let start = offset + open;
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let word = &after[..close];
        let dollar = text[..start].ends_with('$');
        if !dollar && !word.is_empty() && word.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
            words.push(word.to_owned());
        }
        offset = start + 1;
        rest = &text[offset..];
    }
    words
}

/// Levenshtein distance between two short words.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Makes each matrix key a property of the builder (source `Builder`), unless its `properties` set it already, so
/// steps can use `%(prop:KEY)s` too.
fn add_properties(builder: &mut Spanned<DeValue<'_>>, values: &[(String, String)], span: &std::ops::Range<usize>) {
    let DeValue::Table(keys) = builder.get_mut() else { return };
    if !keys.contains_key("properties") {
        let empty = DeValue::Table(toml::de::DeTable::new());
        keys.insert(Spanned::new(span.clone(), Cow::Borrowed("properties")), Spanned::new(span.clone(), empty));
    }
    let Some(DeValue::Table(properties)) = keys.get_mut("properties").map(Spanned::get_mut) else { return };
    for (key, value) in values {
        if !properties.contains_key(key.as_str()) {
            let value = DeValue::String(Cow::Owned(value.clone()));
            properties.insert(Spanned::new(span.clone(), Cow::Owned(key.clone())), Spanned::new(span.clone(), value));
        }
    }
}

/// Gives a builder table the steps of the factory it names (after substitution, so `factory = "plugin-{mode}"`
/// works), substituted with the builder's matrix values.
fn with_factory<'i>(
    mut builder: Spanned<DeValue<'i>>,
    values: &[(String, String)],
    factories: &Factories<'i>,
    context: &str,
    problems: &mut Problems<'_>,
) -> Option<Spanned<DeValue<'i>>> {
    let DeValue::Table(keys) = builder.get_mut() else { return Some(builder) };
    let Some(factory) = keys.remove("factory") else { return Some(builder) };
    let Some(name) = factory.get_ref().as_str() else {
        problems.add(factory.span(), Some(context), "factory", "expected the name of a [[factory]] (a string)");
        return None;
    };
    let Some(found) = factories.get(name) else {
        let message = if factories.is_empty() {
            format!("unknown factory '{name}' (no [[factory]] is declared)")
        } else {
            let known = factories.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
            format!("unknown factory '{name}' (the factories are: {known})")
        };
        problems.add(factory.span(), Some(context), "factory", message);
        return None;
    };
    if keys.contains_key("step") {
        let message = "a builder takes its steps from its factory or from [[builder.step]], not both";
        problems.add(factory.span(), Some(context), "factory", message);
        return None;
    }
    let mut steps = found.steps.clone()?;
    substitute(&mut steps, values);
    keys.insert(Spanned::new(factory.span(), Cow::Borrowed("step")), steps);
    Some(builder)
}

#[cfg(test)]
mod tests {
    use super::replace_keys;
    use crate::config::{ConfigError, MasterConfig, StepDef};

    const WORKERS: &str = r#"
[[worker]]
name = "linux"
password = "pw"
"#;

    fn load(rest: &str) -> Result<MasterConfig, Vec<String>> {
        MasterConfig::from_str(&format!("{WORKERS}{rest}"), "master.toml").map_err(|error| match error {
            ConfigError::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        })
    }

    /// Loads a config that must be valid.
    fn loads(rest: &str) -> MasterConfig {
        load(rest).unwrap_or_else(|problems| panic!("{problems:#?}"))
    }

    /// Two factories and a matrix builder using them: four plugin builders.
    const PLUGINS: &str = r#"
[[factory]]
name = "plugin-devel"
  [[factory.step]]
  command = "pip install -e {plugin}"
[[factory]]
name = "plugin-production"
  [[factory.step]]
  command = "pip install scipion-{plugin}"

[[builder]]
name = "{plugin}-{mode}"
workers = ["linux"]
factory = "plugin-{mode}"
tags = ["{mode}"]
matrix = { plugin = ["xmipp", "relion"], mode = ["devel", "production"] }
"#;

    fn commands(config: &MasterConfig, builder: &str) -> Vec<String> {
        let builder = config.builders.iter().find(|b| b.name == builder).expect("builder exists");
        builder
            .steps
            .iter()
            .map(|step| match step {
                StepDef::Shell(shell) => format!("{:?}", shell.command),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn only_matrix_keys_are_replaced() {
        let values = vec![("mode".to_string(), "devel".to_string()), ("plugin".to_string(), "xmipp".to_string())];
        assert_eq!(replace_keys("{plugin}-{mode}", &values).as_deref(), Some("xmipp-devel"));
        assert_eq!(replace_keys("echo ${HOME} {other} {a,b}", &values), None);
        assert_eq!(replace_keys("${mode}", &values).as_deref(), Some("$devel"));
    }

    #[test]
    fn builders_share_a_factory() {
        let config = loads(
            r#"
[[factory]]
name = "unit"
  [[factory.step]]
  command = "make"
  [[factory.step]]
  command = "make check"

[[builder]]
name = "a"
workers = ["linux"]
factory = "unit"

[[builder]]
name = "b"
workers = ["linux"]
factory = "unit"
"#,
        );
        assert_eq!(commands(&config, "a"), commands(&config, "b"));
        assert_eq!(commands(&config, "a").len(), 2);
    }

    #[test]
    fn a_matrix_stamps_one_builder_per_combination() {
        let config = loads(PLUGINS);
        let mut names: Vec<&str> = config.builders.iter().map(|b| b.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["relion-devel", "relion-production", "xmipp-devel", "xmipp-production"]);
        assert_eq!(commands(&config, "xmipp-devel"), [r#"Shell("pip install -e xmipp")"#]);
        assert_eq!(commands(&config, "relion-production"), [r#"Shell("pip install scipion-relion")"#]);
        let relion = config.builders.iter().find(|b| b.name == "relion-devel").expect("built");
        assert_eq!(relion.tags, ["devel"]);
        assert_eq!(relion.properties.get("plugin"), Some(&serde_json::json!("relion")));
        assert_eq!(relion.properties.get("mode"), Some(&serde_json::json!("devel")));
        assert!(config.force_schedulers.iter().any(|s| s.name == "force-xmipp-production"));
    }

    #[test]
    fn schedulers_name_matrix_builders_by_pattern() {
        let config = loads(&format!(
            r#"{PLUGINS}
[[scheduler]]
name = "devel"
type = "nightly"
hour = 2
builders = ["xmipp-devel", "*-devel"]

[[force_scheduler]]
name = "all"
builders = ["*"]
"#
        ));
        assert_eq!(config.timed_schedulers[0].builders, ["xmipp-devel", "relion-devel"]);
        let all = config.force_schedulers.iter().find(|s| s.name == "all").expect("declared");
        assert_eq!(all.builders.len(), 4);

        let problems = load(
            r#"
[[builder]]
name = "a"
workers = ["linux"]
  [[builder.step]]
  command = "true"

[[force_scheduler]]
name = "none"
builders = ["b*", "[x"]
"#,
        )
        .expect_err("the patterns are wrong");
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].starts_with("master.toml:14: force_scheduler 'none', key 'builders': the pattern 'b*'"));
        assert!(problems[1].contains("'[x' is not a glob pattern"), "{}", problems[1]);
    }

    #[test]
    fn a_misspelt_matrix_key_is_reported_once_and_other_braces_are_left_alone() {
        let problems = load(
            r#"
[[factory]]
name = "plugin"
  [[factory.step]]
  command = "pip install scipion-em-{plugn} && awk '{print $1}' x && echo ${HOME} {}"

[[builder]]
name = "{plugin}-{mode}"
workers = ["linux"]
factory = "plugin"
matrix = { plugin = ["relion", "xmipp"], mode = ["devel", "production"] }
"#,
        )
        .expect_err("a misspelt key");
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].starts_with("master.toml:9: builder '{plugin}-{mode}', key 'command': '{plugn}'"),
            "{problems:?}"
        );
        assert!(problems[0].contains("did you mean '{plugin}'"), "{problems:?}");
        let fine = load(&format!(
            "{}\n[[builder]]\nname = \"b-{{mode}}\"\nworkers = [\"linux\"]\nmatrix = {{ mode = [\"a\"] }}\n\
             [[builder.step]]\ncommand = \"awk '{{print $1}}' f; echo ${{HOME}} {{}} {{mode}}\"\n",
            ""
        ));
        assert!(fine.is_ok(), "{fine:?}");
    }

    #[test]
    fn mistakes_name_the_line_and_key() {
        let problems = load(
            r#"
[[factory]]
name = "unit"
colour = "red"
  [[factory.step]]
  command = "make"

[[builder]]
name = "a"
workers = ["linux"]
factory = "nope"

[[builder]]
name = "b-{mode}"
workers = ["linux"]
factory = "unit"
matrix = { mode = [] }

[[builder]]
name = "c"
workers = ["linux"]
factory = "unit"
  [[builder.step]]
  command = "ls"

[[builder]]
name = "same"
workers = ["linux"]
factory = "unit"
matrix = { mode = ["x", "y"] }
"#,
        )
        .expect_err("the config has mistakes");
        let expected = [
            "master.toml:8: factory 'unit', key 'colour': unknown key 'colour'",
            "master.toml:15: builder 'a', key 'factory': unknown factory 'nope' (the factories are: unit)",
            "master.toml:21: builder 'b-{mode}', key 'matrix': matrix key 'mode' needs at least one value",
            "master.toml:26: builder 'c', key 'factory': a builder takes its steps from its factory",
            "master.toml:31: builder 'same', key 'name': another builder has this name",
        ];
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        for (problem, expected) in problems.iter().zip(expected) {
            assert!(problem.starts_with(expected), "{problem:?} should start with {expected:?}");
        }
    }
}
