//! Who is told: the people whose changes may have broken a build — the authors and committers of its changes and
//! of the failed builds since the last build that did not fail on its branch — and the owner of a forced or
//! rebuilt build; then mail addresses for them.

use crate::config::{valid_address, PreviousRule};
use crate::model::BuildFacts;

use super::previous::failing_since_last_good;

/// The blamelist, in the order people were found, each once.
pub fn blamelist(rule: PreviousRule, facts: &BuildFacts) -> Vec<String> {
    let mut people = Vec::new();
    let mut add = |person: &str| {
        let person = person.trim();
        if !person.is_empty() && !people.iter().any(|p: &String| p == person) {
            people.push(person.to_owned());
        }
    };
    for change in &facts.changes {
        add(&change.author);
        if let Some(committer) = &change.committer {
            add(committer);
        }
    }
    for key in ["owner", "owners"] {
        match facts.properties.get(key) {
            Some(serde_json::Value::String(owner)) => add(owner),
            Some(serde_json::Value::Array(owners)) => owners.iter().filter_map(|o| o.as_str()).for_each(&mut add),
            _ => {}
        }
    }
    if facts.build.results.is_some_and(|r| r != crate::results::SUCCESS && r != crate::results::WARNINGS) {
        for past in failing_since_last_good(rule, facts) {
            past.people.iter().for_each(|person| add(person));
        }
    }
    people
}

/// The first `limit` people of a blamelist: those mailed and named; the rest are counted ("and 3 more").
pub fn shown(people: &[String], limit: usize) -> &[String] {
    &people[..people.len().min(limit)]
}

/// A person's mail address: as written if valid (`Name <a@b>` too), `name@lookup` for a bare name; `None`
/// (dropped) when it is not a valid address. `a@b@c` is cut to `a@b`, as Buildbot does.
pub fn address(person: &str, lookup: Option<&str>) -> Option<String> {
    let person = person.trim();
    let candidate = if person.contains('@') {
        let (mailbox, rest) = match (person.find('<'), person.rfind('>')) {
            (Some(open), Some(close)) if open < close => (&person[open + 1..close], Some(&person[..open])),
            _ => (person, None),
        };
        let mut parts = mailbox.splitn(3, '@');
        let (local, domain) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let cut = format!("{local}@{domain}");
        match rest.map(str::trim).filter(|name| !name.is_empty()) {
            Some(name) => format!("{name} <{cut}>"),
            None => cut,
        }
    } else {
        let domain = lookup?;
        let name = person.split_whitespace().next()?;
        format!("{name}@{domain}")
    };
    valid_address(&candidate).then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Build, Change, NewChange, PastBuild};
    use crate::results::{FAILURE, SUCCESS};

    fn change(author: &str, committer: Option<&str>) -> Change {
        let reported =
            NewChange { author: author.into(), committer: committer.map(str::to_owned), ..NewChange::default() };
        Change { id: 1, sourcestampid: 1, reported, parent_changeids: Vec::new() }
    }

    #[test]
    fn authors_committers_and_the_failing_streak() {
        let facts = BuildFacts {
            build: Build { results: Some(FAILURE), number: 3, ..Build::default() },
            changes: vec![
                change("Carol <carol@x.org>", Some("Dave <dave@x.org>")),
                change("Carol <carol@x.org>", None),
            ],
            history: vec![
                PastBuild { id: 2, number: 2, results: Some(FAILURE), branch: None, people: vec!["bob".into()] },
                PastBuild { id: 1, number: 1, results: Some(SUCCESS), branch: None, people: vec!["alice".into()] },
            ],
            ..BuildFacts::default()
        };
        assert_eq!(blamelist(PreviousRule::Branch, &facts), ["Carol <carol@x.org>", "Dave <dave@x.org>", "bob"]);
        // A passing build blames only its own changes.
        let passing = BuildFacts { build: Build { results: Some(SUCCESS), ..facts.build.clone() }, ..facts.clone() };
        assert_eq!(blamelist(PreviousRule::Branch, &passing).len(), 2);
    }

    #[test]
    fn the_owner_of_a_forced_build() {
        let mut facts = BuildFacts::default();
        facts.properties.insert("owner".into(), serde_json::json!("Forcer <forcer@example.org>"));
        facts.properties.insert("owners".into(), serde_json::json!(["ops"]));
        assert_eq!(blamelist(PreviousRule::Branch, &facts), ["Forcer <forcer@example.org>", "ops"]);
    }

    #[test]
    fn addresses_from_names() {
        assert_eq!(address("bob", Some("example.org")).as_deref(), Some("bob@example.org"));
        assert_eq!(address("bob", None), None);
        assert_eq!(address("Bob <bob@x.org>", None).as_deref(), Some("Bob <bob@x.org>"));
        assert_eq!(address("a@b@c", None).as_deref(), Some("a@b"));
        assert_eq!(address("not an address@", None), None);
        assert_eq!(address("", Some("x.org")), None);
    }
}
