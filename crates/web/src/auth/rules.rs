//! Who may do what: pure decisions from the config's rules, the user's roles and the action's target.
//!
//! `admin` may do everything. Without `[[rule]]` tables, `developer` may force, stop, rebuild and cancel on every
//! builder and pause and unpause workers; no other role may do anything. With rules, the first rule that
//! matches the action decides: it matches when it lists the action, when its `builders` (names or globs) or
//! `tags` take the target's builder (a rule with neither takes every target, workers too), and, with
//! `owner = true`, only when the target is the user's own build or request. It allows the action if the user
//! holds one of its `roles` (any authenticated user when it lists none). No matching rule: refused.

use crate::config::{Action, RuleDef, ADMIN_ROLE};

/// An authenticated user: a name and roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub roles: Vec<String>,
}

impl User {
    /// Whether the user holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// What an action is done on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Target<'a> {
    /// The builder of the build or request (none for a worker).
    pub builder: Option<&'a str>,
    /// That builder's tags.
    pub tags: &'a [String],
    /// Who owns the build or request (its `owner` property), if anyone.
    pub owner: Option<&'a str>,
}

/// The actions `developer` may take without rules.
const DEVELOPER: [Action; 6] =
    [Action::Force, Action::Stop, Action::Rebuild, Action::Cancel, Action::Pause, Action::Unpause];

/// Whether `user` may do `action` on `target` under `rules`; the error says why not.
pub fn decide(rules: &[RuleDef], user: &User, action: Action, target: &Target<'_>) -> Result<(), String> {
    if user.has_role(ADMIN_ROLE) {
        return Ok(());
    }
    let refused = || {
        let on = target.builder.map(|b| format!(" on builder '{b}'")).unwrap_or_default();
        let roles = if user.roles.is_empty() { "none".to_string() } else { user.roles.join(", ") };
        format!("user '{}' (roles: {roles}) may not {}{on}", user.name, action.name())
    };
    if rules.is_empty() {
        return if user.has_role("developer") && DEVELOPER.contains(&action) { Ok(()) } else { Err(refused()) };
    }
    let rule = rules.iter().find(|rule| matches(rule, user, action, target));
    match rule {
        Some(rule) if rule.roles.is_empty() || rule.roles.iter().any(|r| user.has_role(r)) => Ok(()),
        _ => Err(refused()),
    }
}

fn matches(rule: &RuleDef, user: &User, action: Action, target: &Target<'_>) -> bool {
    if !rule.actions.contains(&action) {
        return false;
    }
    let scoped = !rule.builders.is_empty() || !rule.tags.is_empty();
    if scoped {
        let Some(builder) = target.builder else { return false };
        let by_name = rule.builders.iter().any(|glob| glob::Pattern::new(glob).is_ok_and(|p| p.matches(builder)));
        let by_tag = rule.tags.iter().any(|tag| target.tags.contains(tag));
        if !(by_name || by_tag) {
            return false;
        }
    }
    !rule.owner || (action.has_owner() && target.owner == Some(user.name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, roles: &[&str]) -> User {
        User { name: name.into(), roles: roles.iter().map(|r| r.to_string()).collect() }
    }

    fn rule(actions: &[Action], builders: &[&str], tags: &[&str], roles: &[&str], owner: bool) -> RuleDef {
        RuleDef {
            actions: actions.to_vec(),
            builders: builders.iter().map(|s| s.to_string()).collect(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            owner,
        }
    }

    fn on<'a>(builder: &'a str, tags: &'a [String], owner: Option<&'a str>) -> Target<'a> {
        Target { builder: Some(builder), tags, owner }
    }

    #[test]
    fn built_in_roles() {
        let anywhere = on("b", &[], None);
        for action in Action::ALL {
            assert!(decide(&[], &user("a", &["admin"]), action, &anywhere).is_ok());
            assert!(decide(&[], &user("v", &["viewer"]), action, &anywhere).is_err());
            assert!(decide(&[], &user("n", &[]), action, &anywhere).is_err());
        }
        let dev = user("d", &["developer"]);
        assert!(decide(&[], &dev, Action::Force, &anywhere).is_ok());
        assert!(decide(&[], &dev, Action::Pause, &Target::default()).is_ok());
        let why = decide(&[], &dev, Action::Reconfig, &Target::default()).expect_err("not a developer's");
        assert_eq!(why, "user 'd' (roles: developer) may not reconfig");
    }

    #[test]
    fn rules_by_tag_glob_and_owner() {
        let tagged = &["plugins".to_string()];
        let rules = [
            rule(&[Action::Force], &[], &["plugins"], &["developer"], false),
            rule(&[Action::Force], &["release-*"], &[], &["release"], false),
            rule(&[Action::Stop, Action::Cancel], &[], &[], &["developer"], true),
            rule(&[Action::Stop], &[], &[], &["ops"], false),
        ];
        let dev = user("dora", &["developer"]);
        assert!(decide(&rules, &dev, Action::Force, &on("plug", tagged, None)).is_ok(), "tagged");
        assert!(decide(&rules, &dev, Action::Force, &on("core", &[], None)).is_err(), "untagged: no rule");
        assert!(decide(&rules, &dev, Action::Force, &on("release-1", &[], None)).is_err(), "not release");
        let rel = user("rex", &["release"]);
        assert!(decide(&rules, &rel, Action::Force, &on("release-1", &[], None)).is_ok());
        assert!(decide(&rules, &dev, Action::Stop, &on("core", &[], Some("dora"))).is_ok(), "her own");
        assert!(decide(&rules, &dev, Action::Stop, &on("core", &[], Some("rex"))).is_err(), "another's");
        assert!(decide(&rules, &dev, Action::Stop, &on("core", &[], None)).is_err(), "nobody's");
        let ops = user("otto", &["ops"]);
        assert!(decide(&rules, &ops, Action::Stop, &on("core", &[], Some("rex"))).is_ok());
        assert!(decide(&rules, &dev, Action::Rebuild, &on("core", &[], Some("dora"))).is_err(), "not listed");
        assert!(decide(&rules, &dev, Action::Pause, &Target::default()).is_err(), "no rule for workers");
    }

    #[test]
    fn a_rule_without_roles_takes_any_user() {
        let rules = [rule(&[Action::Cancel], &[], &[], &[], true)];
        assert!(decide(&rules, &user("x", &[]), Action::Cancel, &on("b", &[], Some("x"))).is_ok());
        assert!(decide(&rules, &user("y", &[]), Action::Cancel, &on("b", &[], Some("x"))).is_err());
    }
}
