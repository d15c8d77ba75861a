//! The force scheduler's form: checking a force call's values against the scheduler's typed parameters, and the
//! form's description (Buildbot's `getSpec`) for `/api/v2/forceschedulers`.
//!
//! A call's values are Buildbot's: the field's `fullName` → its value (`reason`, `owner` or `username`,
//! `priority`, `branch`, `revision`, `repository`, `project`, and each declared parameter). Any other name is
//! refused, as Buildbot takes only its form's fields: a property nobody declared would otherwise reach every
//! `%(prop:…)s` of the builder's commands (shell injection by whoever may force a build).

use serde_json::{json, Map, Value};

use crate::config::{ForceParameter, ForceSchedulerDef, ParameterType, RESERVED_NAMES};
use crate::store::{Property, SourceStamp};

/// Where the properties of a forced build come from (Buildbot's source name).
pub const SOURCE: &str = "Force Build Form";

/// A force call's value that the form refuses, with the parameter it is for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter '{name}': {message}")]
pub struct ParameterError {
    pub name: String,
    pub message: String,
}

fn refuse(name: &str, message: impl Into<String>) -> ParameterError {
    ParameterError { name: name.to_string(), message: message.into() }
}

/// What a valid force call asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ForceRequest {
    pub reason: String,
    pub owner: Option<String>,
    pub priority: Option<i32>,
    /// The source stamp given by the codebase fields, if any is set.
    pub sourcestamp: Option<SourceStamp>,
    /// The parameters' typed values (and the owner), each from [`SOURCE`].
    pub properties: Vec<Property>,
}

/// Checks a force call's `values` (without `builderid`) against `def`'s form.
pub fn collect(def: &ForceSchedulerDef, values: &Map<String, Value>) -> Result<ForceRequest, ParameterError> {
    let text = |name: &str| -> Result<Option<String>, ParameterError> {
        match values.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(refuse(name, "must be a string")),
        }
    };
    let mut request = ForceRequest {
        reason: text("reason")?.unwrap_or_else(|| def.reason.clone()),
        owner: text("owner")?.or(text("username")?),
        ..ForceRequest::default()
    };
    if let Some(priority) = values.get("priority").filter(|v| !is_empty(v)) {
        let priority = integer("priority", priority)?;
        request.priority = Some(i32::try_from(priority).map_err(|_| refuse("priority", "out of range"))?);
    }
    let (branch, revision) = (text("branch")?, text("revision")?);
    let (repository, project) = (text("repository")?, text("project")?);
    if branch.is_some() || revision.is_some() || repository.is_some() || project.is_some() {
        request.sourcestamp = Some(SourceStamp {
            branch,
            revision,
            repository: repository.unwrap_or_default(),
            project: project.unwrap_or_default(),
            codebase: String::new(),
        });
    }
    let property = |name: &str, value: Value| Property { name: name.to_string(), value, source: SOURCE.to_string() };
    for parameter in &def.parameters {
        let value = parameter_value(parameter, values.get(&parameter.name))?;
        request.properties.push(property(&parameter.name, value));
    }
    let undeclared: Vec<&str> = values
        .iter()
        .filter(|(name, value)| {
            !value.is_null()
                && !RESERVED_NAMES.contains(&name.as_str())
                && !def.parameters.iter().any(|p| &p.name == *name)
        })
        .map(|(name, _)| name.as_str())
        .collect();
    if !undeclared.is_empty() {
        let declared: Vec<&str> = def.parameters.iter().map(|p| p.name.as_str()).collect();
        let message = format!(
            "not a parameter of force scheduler '{}' (declared: {}); declare it as a [[force_scheduler.parameter]]",
            def.name,
            if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
        );
        return Err(refuse(&undeclared.join(", "), message));
    }
    if let Some(owner) = &request.owner {
        request.properties.push(property("owner", Value::String(owner.clone())));
    }
    Ok(request)
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// An integer given as a number or as text.
fn integer(name: &str, value: &Value) -> Result<i64, ParameterError> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| refuse(name, format!("{value} is not an integer")))
}

/// The typed value of one parameter: the given one checked, or its default.
fn parameter_value(parameter: &ForceParameter, given: Option<&Value>) -> Result<Value, ParameterError> {
    let name = parameter.name.as_str();
    let Some(given) = given.filter(|v| !is_empty(v)) else {
        if parameter.required {
            return Err(refuse(name, format!("'{}' needs to be specified", parameter.label)));
        }
        return Ok(parameter.default.clone());
    };
    match parameter.kind {
        ParameterType::String | ParameterType::Text => {
            let Value::String(s) = given else { return Err(refuse(name, "must be a string")) };
            if let Some(pattern) = &parameter.regex {
                // Anchored at the start, as Python's `re.match` in Buildbot.
                let regex = regex::Regex::new(&format!("^(?:{pattern})"))
                    .map_err(|e| refuse(name, format!("the configured regex is invalid: {e}")))?;
                if !regex.is_match(s) {
                    return Err(refuse(name, format!("'{s}' does not match pattern '{pattern}'")));
                }
            }
            Ok(given.clone())
        }
        ParameterType::Int => integer(name, given).map(Value::from),
        ParameterType::Bool => match given {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            Value::String(s) if s == "true" || s == "false" => Ok(Value::Bool(s == "true")),
            _ => Err(refuse(name, format!("{given} is not a boolean"))),
        },
        ParameterType::Choice => match given {
            Value::String(s) if parameter.choices.contains(s) => Ok(given.clone()),
            _ => Err(refuse(name, format!("{given} is not one of the choices {:?}", parameter.choices))),
        },
    }
}

/// One field of the form as Buildbot describes it.
fn field(name: &str, label: &str, kind: &str, default: Value, required: bool) -> Value {
    json!({
        "name": name,
        "fullName": name,
        "label": label,
        "tablabel": label,
        "type": kind,
        "default": default,
        "required": required,
        "multiple": false,
        "regex": null,
        "hide": false,
        "maxsize": null,
        "autopopulate": null,
        "tooltip": "",
    })
}

/// A group of fields (Buildbot's anonymous `NestedParameter`).
fn nested(fields: Vec<Value>, columns: usize) -> Value {
    let mut group = field("", "", "nested", json!(""), false);
    group["layout"] = json!("vertical");
    group["columns"] = json!(columns);
    group["fields"] = Value::Array(fields);
    group
}

/// The form's fields as Buildbot's `all_fields`: the owner, reason and priority; the codebase's source stamp
/// fields; then the declared parameters.
pub fn spec(def: &ForceSchedulerDef) -> Value {
    let mut username = field("username", "Your name:", "username", json!(""), false);
    username["need_email"] = json!(false);
    username["size"] = json!(30);
    let mut reason = field("reason", "reason", "text", json!(def.reason), false);
    reason["size"] = json!(20);
    let mut priority = field("priority", "priority", "int", json!(0), false);
    priority["size"] = json!(10);
    let sources: Vec<Value> = ["branch", "revision", "repository", "project"]
        .iter()
        .map(|name| {
            let mut f = field(name, name, "text", json!(""), false);
            f["size"] = json!(10);
            f
        })
        .collect();
    let mut fields = vec![nested(vec![username, reason, priority], 1), nested(sources, 2)];
    for parameter in &def.parameters {
        let kind = match parameter.kind {
            ParameterType::String => "text",
            ParameterType::Text => "textarea",
            ParameterType::Int => "int",
            ParameterType::Bool => "bool",
            ParameterType::Choice => "list",
        };
        let mut f = field(&parameter.name, &parameter.label, kind, parameter.default.clone(), parameter.required);
        f["regex"] = json!(parameter.regex);
        match parameter.kind {
            ParameterType::Choice => {
                f["choices"] = json!(parameter.choices);
                f["strict"] = json!(true);
            }
            ParameterType::Text => {
                f["cols"] = json!(80);
                f["rows"] = json!(20);
            }
            ParameterType::String | ParameterType::Int => f["size"] = json!(10),
            ParameterType::Bool => {}
        }
        fields.push(f);
    }
    Value::Array(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameter(name: &str, kind: ParameterType) -> ForceParameter {
        let default = match kind {
            ParameterType::Int => json!(0),
            ParameterType::Bool => json!(false),
            ParameterType::Choice => json!("debug"),
            _ => json!(""),
        };
        ForceParameter {
            name: name.into(),
            kind,
            label: format!("{name}:"),
            default,
            required: false,
            choices: if kind == ParameterType::Choice { vec!["debug".into(), "release".into()] } else { vec![] },
            regex: None,
        }
    }

    fn scheduler() -> ForceSchedulerDef {
        let mut version = parameter("version", ParameterType::String);
        version.regex = Some(r"\d+\.\d+".into());
        let mut jobs = parameter("jobs", ParameterType::Int);
        jobs.required = true;
        ForceSchedulerDef {
            name: "release".into(),
            builders: vec!["b".into()],
            label: "Release".into(),
            reason: "a release".into(),
            parameters: vec![
                version,
                jobs,
                parameter("clean", ParameterType::Bool),
                parameter("mode", ParameterType::Choice),
                parameter("notes", ParameterType::Text),
            ],
            priority: None,
        }
    }

    fn values(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("an object")
    }

    fn props(request: &ForceRequest) -> Vec<(String, Value)> {
        request.properties.iter().map(|p| (p.name.clone(), p.value.clone())).collect()
    }

    #[test]
    fn typed_values_become_typed_properties_and_defaults_fill_the_rest() {
        let given = values(json!({
            "jobs": "4", "clean": true, "version": "2.1-rc", "owner": "ann", "priority": 5,
            "branch": "main", "revision": "abc", "ignored": null,
        }));
        let request = collect(&scheduler(), &given).expect("valid");
        assert_eq!(request.reason, "a release");
        assert_eq!(request.priority, Some(5));
        let ss = request.sourcestamp.clone().expect("a source stamp");
        assert_eq!((ss.branch.as_deref(), ss.revision.as_deref()), (Some("main"), Some("abc")));
        let want = [
            ("version", json!("2.1-rc")),
            ("jobs", json!(4)),
            ("clean", json!(true)),
            ("mode", json!("debug")),
            ("notes", json!("")),
            ("owner", json!("ann")),
        ];
        let want: Vec<(String, Value)> = want.into_iter().map(|(n, v)| (n.to_string(), v)).collect();
        assert_eq!(props(&request), want);
        assert!(request.properties.iter().all(|p| p.source == SOURCE));
    }

    #[test]
    fn a_wrong_value_names_its_parameter() {
        let cases = [
            (json!({"jobs": "four"}), "jobs"),
            (json!({}), "jobs"),
            (json!({"jobs": ""}), "jobs"),
            (json!({"jobs": 1, "clean": "yes"}), "clean"),
            (json!({"jobs": 1, "mode": "fast"}), "mode"),
            (json!({"jobs": 1, "version": "v2"}), "version"),
            (json!({"jobs": 1, "version": 2}), "version"),
            (json!({"jobs": 1, "priority": "high"}), "priority"),
            (json!({"jobs": 1, "reason": ["a"]}), "reason"),
            (json!({"jobs": 1, "other": {"a": 1}}), "other"),
            (json!({"jobs": 1, "version": "1.0", "evil": "1; echo INJECTED", "more": 2}), "evil, more"),
        ];
        for (given, name) in cases {
            let error = collect(&scheduler(), &values(given.clone())).expect_err("invalid");
            assert_eq!(error.name, name, "{given}: {error}");
        }
        let error = collect(&scheduler(), &values(json!({}))).expect_err("invalid");
        assert_eq!(error.to_string(), "parameter 'jobs': 'jobs:' needs to be specified");
        let error = collect(&scheduler(), &values(json!({"jobs": 1, "evil": "x"}))).expect_err("undeclared");
        assert!(error.to_string().contains("not a parameter of force scheduler"), "{error}");
    }

    #[test]
    fn the_spec_has_buildbots_shape() {
        let spec = spec(&scheduler());
        assert_eq!(spec[0]["type"], "nested");
        assert_eq!(spec[0]["fields"][1]["name"], "reason");
        assert_eq!(spec[0]["fields"][1]["default"], "a release");
        assert_eq!(spec[1]["fields"][0]["fullName"], "branch");
        let mode = &spec[5];
        assert_eq!((mode["name"].as_str(), mode["type"].as_str()), (Some("mode"), Some("list")));
        assert_eq!(mode["choices"], json!(["debug", "release"]));
        assert_eq!(spec[3]["required"], true);
        assert_eq!(spec[3]["type"], "int");
        assert_eq!(spec[2]["regex"], r"\d+\.\d+");
    }
}
