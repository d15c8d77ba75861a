//! `[[force_scheduler.parameter]]`: the typed fields of a force scheduler's form (Buildbot's `StringParameter`,
//! `TextParameter`, `IntParameter`, `BooleanParameter`, `ChoiceStringParameter`), each one a build property.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::error::Problems;

/// The names a parameter cannot take: the form's built-in fields and what the force call itself uses.
pub const RESERVED_NAMES: [&str; 10] = [
    "reason",
    "owner",
    "username",
    "builderid",
    "builderNames",
    "priority",
    "branch",
    "revision",
    "repository",
    "project",
];

/// The type of a force parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterType {
    /// One line of text (Buildbot's `text` field).
    String,
    /// Several lines of text (`textarea`).
    Text,
    /// An integer, stored as a JSON number.
    Int,
    /// A boolean, stored as a JSON boolean.
    Bool,
    /// One of `choices` (`list`).
    Choice,
}

impl ParameterType {
    fn parse(text: &str) -> Option<ParameterType> {
        Some(match text {
            "string" => ParameterType::String,
            "text" => ParameterType::Text,
            "int" => ParameterType::Int,
            "bool" => ParameterType::Bool,
            "choice" => ParameterType::Choice,
            _ => return None,
        })
    }
}

/// One typed field of a force scheduler's form; its value becomes the build property `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForceParameter {
    pub name: String,
    pub kind: ParameterType,
    /// What the form shows; default: the name.
    pub label: String,
    /// The value when none is given: as configured, else `""`, `0`, `false` or the first choice.
    pub default: Value,
    /// A value must be given (an empty one does not count).
    pub required: bool,
    /// The allowed values of a `choice` parameter.
    pub choices: Vec<String>,
    /// A `string`/`text` value must match this (from its start, as in Buildbot).
    pub regex: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawParameter {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    label: Option<String>,
    default: Option<Spanned<toml::Value>>,
    #[serde(default)]
    required: bool,
    choices: Option<Spanned<Vec<String>>>,
    regex: Option<Spanned<String>>,
}

/// Checks the parameters of one force scheduler (`context` names it); `None` if one is invalid.
pub(super) fn check_parameters(
    raw: Vec<RawParameter>,
    context: &str,
    problems: &mut Problems<'_>,
) -> Option<Vec<ForceParameter>> {
    let mut names = BTreeSet::new();
    let mut valid = true;
    let mut parameters = Vec::new();
    for raw in raw {
        let context = format!("{context}, parameter '{}'", raw.name.get_ref());
        match check_parameter(raw, &mut names, &context, problems) {
            Some(parameter) => parameters.push(parameter),
            None => valid = false,
        }
    }
    valid.then_some(parameters)
}

fn check_parameter(
    raw: RawParameter,
    names: &mut BTreeSet<String>,
    context: &str,
    problems: &mut Problems<'_>,
) -> Option<ForceParameter> {
    let name = raw.name.get_ref();
    let mut valid = true;
    if name.is_empty() || RESERVED_NAMES.contains(&name.as_str()) {
        let message = format!("'{name}' is empty or reserved (reserved: {})", RESERVED_NAMES.join(", "));
        problems.add(raw.name.span(), Some(context), "name", message);
        valid = false;
    } else if !names.insert(name.clone()) {
        problems.add(raw.name.span(), Some(context), "name", "another parameter has this name");
        valid = false;
    }
    let Some(kind) = ParameterType::parse(raw.kind.get_ref()) else {
        let message =
            format!("unknown parameter type '{}' (known: string, text, int, bool, choice)", raw.kind.get_ref());
        problems.add(raw.kind.span(), Some(context), "type", message);
        return None;
    };
    let choices = raw.choices.as_ref().map(|c| c.get_ref().clone()).unwrap_or_default();
    match (&raw.choices, kind) {
        (None, ParameterType::Choice) => {
            problems.add(raw.kind.span(), Some(context), "choices", "a choice parameter needs choices");
            valid = false;
        }
        (Some(list), ParameterType::Choice) if list.get_ref().is_empty() => {
            problems.add(list.span(), Some(context), "choices", "needs at least one choice");
            valid = false;
        }
        (Some(list), kind) if kind != ParameterType::Choice => {
            problems.add(list.span(), Some(context), "choices", "only a choice parameter has choices");
            valid = false;
        }
        _ => {}
    }
    if let Some(regex) = &raw.regex {
        if !matches!(kind, ParameterType::String | ParameterType::Text) {
            problems.add(regex.span(), Some(context), "regex", "only string and text parameters have a regex");
            valid = false;
        } else if let Err(e) = regex::Regex::new(regex.get_ref()) {
            problems.add(regex.span(), Some(context), "regex", format!("not a regular expression: {e}"));
            valid = false;
        }
    }
    let default = match &raw.default {
        None => match kind {
            ParameterType::String | ParameterType::Text => Value::from(""),
            ParameterType::Int => Value::from(0),
            ParameterType::Bool => Value::from(false),
            ParameterType::Choice => choices.first().map_or(Value::from(""), |c| Value::from(c.as_str())),
        },
        Some(default) => {
            let fits = match (kind, default.get_ref()) {
                (ParameterType::String | ParameterType::Text, toml::Value::String(_)) => true,
                (ParameterType::Int, toml::Value::Integer(_)) => true,
                (ParameterType::Bool, toml::Value::Boolean(_)) => true,
                (ParameterType::Choice, toml::Value::String(s)) => choices.contains(s),
                _ => false,
            };
            if !fits {
                let message = format!("the default must be a value of the parameter's type ({})", raw.kind.get_ref());
                problems.add(default.span(), Some(context), "default", message);
                valid = false;
            }
            serde_json::to_value(default.get_ref()).unwrap_or(Value::Null)
        }
    };
    valid.then(|| ForceParameter {
        label: raw.label.unwrap_or_else(|| raw.name.get_ref().clone()),
        name: raw.name.into_inner(),
        kind,
        default,
        required: raw.required,
        choices,
        regex: raw.regex.map(Spanned::into_inner),
    })
}
