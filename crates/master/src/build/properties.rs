//! A build's properties, Buildbot-style: each a value with the name of what set it. A build starts with its
//! buildset's properties (scheduler, force form, owner…), the builder's static ones (source `Builder`), its own
//! (`buildnumber`, and `branch`, `revision`, `repository`, `project`, `codebase` from its first source stamp:
//! source `Build`) and its worker's (`workername`, `builddir`: source `Worker`), later ones replacing earlier
//! ones of the same name; steps add more (`got_revision`). Every change is stored before it is used.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::config::BuilderDef;
use crate::interpolate::Lookup;
use crate::secrets::{Fetched, Redactor};
use crate::store::{Property, SourceStamp, Store, StoreError};

/// The properties and source stamps of a running build: what its steps' templates are rendered from.
#[derive(Debug, Clone, Default)]
pub struct BuildProperties {
    /// name → (value, source)
    properties: BTreeMap<String, (Value, String)>,
    sourcestamps: Vec<SourceStamp>,
    /// The worker's information (`os`, `numcpus`…), for `%(worker:KEY)s`.
    worker: BTreeMap<String, Value>,
    /// The secrets the build fetched: rendered only through [`BuildProperties::with_secrets`], censored from
    /// whatever is stored ([`BuildProperties::to_vec`], [`BuildProperties::redactor`]).
    secrets: Arc<Fetched>,
}

/// A build's properties with its secrets: the lookup of templates whose text goes to the worker (commands,
/// environments, paths), never of text that is stored or shown.
pub struct WithSecrets<'a>(&'a BuildProperties);

impl Lookup for WithSecrets<'_> {
    fn property(&self, name: &str) -> Option<&Value> {
        self.0.property(name)
    }
    fn source(&self, codebase: &str, attr: &str) -> Option<Value> {
        self.0.source(codebase, attr)
    }
    fn worker(&self, key: &str) -> Option<Value> {
        self.0.worker(key)
    }
    fn secret(&self, name: &str) -> Option<&str> {
        self.0.secrets.value(name).map(crate::secrets::Secret::expose)
    }
}

/// What a build's starting properties are computed from.
pub struct BuildStart<'a> {
    pub builder: &'a BuilderDef,
    pub number: i64,
    pub worker: &'a str,
    /// The builder's directory on the worker (absolute).
    pub builddir: String,
    pub worker_info: BTreeMap<String, Value>,
    pub buildset_properties: Vec<Property>,
    pub sourcestamps: Vec<SourceStamp>,
}

impl BuildProperties {
    /// The properties a build starts with.
    pub fn starting(start: BuildStart<'_>) -> BuildProperties {
        let mut props =
            BuildProperties { sourcestamps: start.sourcestamps, worker: start.worker_info, ..Default::default() };
        for p in start.buildset_properties {
            props.set(&p.name, p.value, &p.source);
        }
        for (name, value) in &start.builder.properties {
            props.set(name, value.clone(), "Builder");
        }
        props.set("buildername", Value::from(start.builder.name.as_str()), "Builder");
        props.set("buildnumber", Value::from(start.number), "Build");
        if let Some(ss) = props.sourcestamps.first().cloned() {
            props.set("branch", ss.branch.map_or(Value::Null, Value::from), "Build");
            props.set("revision", ss.revision.map_or(Value::Null, Value::from), "Build");
            props.set("repository", Value::from(ss.repository), "Build");
            props.set("project", Value::from(ss.project), "Build");
            props.set("codebase", Value::from(ss.codebase), "Build");
        }
        props.set("workername", Value::from(start.worker), "Worker");
        props.set("builddir", Value::from(start.builddir), "Worker");
        props
    }

    /// Keeps the build's fetched secrets; string properties of the builder that name secrets
    /// (`token = "%(secret:deploy)s"`) get their values, in memory only.
    pub fn set_secrets(&mut self, fetched: Fetched, builder: &BuilderDef) {
        self.secrets = Arc::new(fetched);
        for (name, value) in &builder.properties {
            let Value::String(template) = value else { continue };
            if crate::interpolate::secret_names(template).is_empty() {
                continue;
            }
            let rendered = crate::interpolate::render(template, &self.with_secrets());
            self.set(name, Value::String(rendered), "Builder");
        }
    }

    /// The lookup for text sent to the worker, with the build's secrets.
    pub fn with_secrets(&self) -> WithSecrets<'_> {
        WithSecrets(self)
    }

    /// The build's secrets.
    pub fn secrets(&self) -> &Fetched {
        &self.secrets
    }

    /// What censors the build's secrets from what it stores and shows.
    pub fn redactor(&self) -> &Redactor {
        self.secrets.redactor()
    }

    /// Sets a property (in memory; see [`BuildProperties::set_stored`]).
    pub fn set(&mut self, name: &str, value: Value, source: &str) {
        self.properties.insert(name.to_owned(), (value, source.to_owned()));
    }

    /// Stores a property of build `buildid`, then sets it.
    pub async fn set_stored(
        &mut self,
        store: &Store,
        buildid: i64,
        name: &str,
        value: Value,
        source: &str,
    ) -> Result<(), StoreError> {
        let stored =
            Property { name: name.to_owned(), value: self.redactor().redact_json(&value), source: source.to_owned() };
        store.set_build_properties(buildid, std::slice::from_ref(&stored)).await?;
        self.set(name, value, source);
        Ok(())
    }

    /// Replaces the build's source stamps.
    pub fn set_sourcestamps(&mut self, sourcestamps: Vec<SourceStamp>) {
        self.sourcestamps = sourcestamps;
    }

    /// Every property, by name, as stored and shown: secret values censored.
    pub fn to_vec(&self) -> Vec<Property> {
        let redactor = self.redactor();
        self.properties
            .iter()
            .map(|(name, (value, source))| Property {
                name: name.clone(),
                value: redactor.redact_json(value),
                source: source.clone(),
            })
            .collect()
    }

    /// The build's source stamps.
    pub fn sourcestamps(&self) -> &[SourceStamp] {
        &self.sourcestamps
    }

    /// The source stamp of `codebase`.
    pub fn sourcestamp(&self, codebase: &str) -> Option<&SourceStamp> {
        self.sourcestamps.iter().find(|ss| ss.codebase == codebase)
    }
}

impl Lookup for BuildProperties {
    fn property(&self, name: &str) -> Option<&Value> {
        self.properties.get(name).map(|(value, _)| value)
    }

    fn source(&self, codebase: &str, attr: &str) -> Option<Value> {
        let ss = self.sourcestamp(codebase)?;
        let optional = |v: &Option<String>| v.as_deref().map_or(Value::Null, Value::from);
        Some(match attr {
            "branch" => optional(&ss.branch),
            "revision" => optional(&ss.revision),
            "repository" => Value::from(ss.repository.as_str()),
            "project" => Value::from(ss.project.as_str()),
            "codebase" => Value::from(ss.codebase.as_str()),
            _ => Value::Null,
        })
    }

    fn worker(&self, key: &str) -> Option<Value> {
        self.worker.get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::MasterConfig;

    #[test]
    fn later_sources_win_and_the_first_source_stamp_gives_branch_and_revision() {
        let config = MasterConfig::from_str(crate::config::SAMPLE, "master.toml").expect("sample");
        let mut builder = config.builders[0].clone();
        builder.properties = BTreeMap::from([("flavour".into(), json!("debug")), ("owner".into(), json!(3))]);
        let ss = SourceStamp {
            branch: Some("main".into()),
            revision: None,
            repository: "https://x/r.git".into(),
            project: "p".into(),
            codebase: String::new(),
        };
        let props = BuildProperties::starting(BuildStart {
            builder: &builder,
            number: 7,
            worker: "w1",
            builddir: "/work/test".into(),
            worker_info: BTreeMap::new(),
            buildset_properties: vec![
                Property { name: "owner".into(), value: json!("alice"), source: "Force Build Form".into() },
                Property { name: "buildnumber".into(), value: json!(99), source: "Force Build Form".into() },
                Property { name: "foo".into(), value: json!("bar"), source: "Force Build Form".into() },
            ],
            sourcestamps: vec![ss],
        });
        let got: BTreeMap<String, (Value, String)> =
            props.to_vec().into_iter().map(|p| (p.name, (p.value, p.source))).collect();
        let expect = |v: Value, s: &str| (v, s.to_owned());
        assert_eq!(got["foo"], expect(json!("bar"), "Force Build Form"));
        assert_eq!(got["owner"], expect(json!(3), "Builder"));
        assert_eq!(got["flavour"], expect(json!("debug"), "Builder"));
        assert_eq!(got["buildername"], expect(json!(builder.name), "Builder"));
        assert_eq!(got["buildnumber"], expect(json!(7), "Build"));
        assert_eq!(got["branch"], expect(json!("main"), "Build"));
        assert_eq!(got["revision"], expect(Value::Null, "Build"));
        assert_eq!(got["repository"], expect(json!("https://x/r.git"), "Build"));
        assert_eq!(got["workername"], expect(json!("w1"), "Worker"));
        assert_eq!(got["builddir"], expect(json!("/work/test"), "Worker"));
        assert_eq!(props.source("", "branch"), Some(json!("main")));
        assert_eq!(props.source("other", "branch"), None);
    }
}
