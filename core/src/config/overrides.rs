//! `NETCLAW_<Section>__<Key>` environment overrides, netclaw's convention: the prefix is
//! stripped, `__` separates section and key, and names match case-insensitively.
//!
//! - A variable of an owned section must name one of its keys (the keys come from the raw
//!   types, see [`Section::keys`], so the table cannot miss one); any other key is an error, so
//!   a typo cannot silently do nothing.
//! - List keys take a comma-separated value, or netclaw's per-index form
//!   `NETCLAW_Daemon__TrustedProxies__0`, merged with the file's list by index as netclaw's
//!   configuration does (a variable replaces the entry at its index; entries are then taken in
//!   index order).
//! - A variable of a section this layer does not own is set aside and named in the load's info
//!   line, unless its section is one or two edits away from an owned one (an error).
//! - A value that parses as non-string JSON is used as such (`6000`, `true`); anything else is a
//!   string.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::raw::{misspelled_section, Section};
use super::{ConfigError, OVERRIDE_PREFIX};
use crate::env::Env;

/// Applies the overrides in `env` to the owned part of the file (`value`, canonical spelling).
/// Returns the names of the variables set aside.
pub(super) fn apply(value: &mut Value, env: &dyn Env) -> Result<Vec<String>, ConfigError> {
    let mut vars = env.vars();
    vars.sort();
    let mut foreign = Vec::new();
    // (section, key) → index → value, applied after the whole-key overrides.
    let mut indexed: BTreeMap<(&'static str, &'static str), BTreeMap<u32, Value>> = BTreeMap::new();
    for (var, raw) in vars {
        let Some(rest) = var.strip_prefix(OVERRIDE_PREFIX) else {
            continue;
        };
        let Some((section_name, path)) = rest.split_once("__") else {
            continue;
        };
        let err = |reason: String| ConfigError::Override {
            var: var.clone(),
            reason,
        };
        let Some(section) = Section::named(section_name) else {
            if let Some(owned) = misspelled_section(section_name) {
                return Err(err(format!(
                    "section {section_name:?} looks like a misspelling of {owned}; a misspelled variable would otherwise be ignored"
                )));
            }
            foreign.push(var);
            continue;
        };
        let (key_name, index) = match path.split_once("__") {
            Some((k, i)) => (k, Some(i)),
            None => (path, None),
        };
        let Some(key) = section.key(key_name) else {
            return Err(err(format!(
                "{} has no key {:?}; its keys are {}",
                section.name,
                key_name.chars().take(100).collect::<String>(),
                section.keys().join(", ")
            )));
        };
        let section_map = section_mut(value, section.name).ok_or_else(|| {
            err("the configuration file is not a JSON object with object sections".into())
        })?;
        match index {
            None => {
                let parsed = match serde_json::from_str::<Value>(&raw) {
                    Ok(v) if !v.is_string() => v,
                    _ => Value::String(raw.clone()),
                };
                let parsed = match parsed {
                    Value::String(s) if section.is_list(key) => Value::Array(split(&s)),
                    v => v,
                };
                section_map.insert(key.to_owned(), parsed);
            }
            Some(index) => {
                if !section.is_list(key) {
                    return Err(err(format!(
                        "{}.{key} is not a list; drop the __{index} suffix",
                        section.name
                    )));
                }
                let n = index
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| index.parse::<u32>().ok())
                    .flatten()
                    .ok_or_else(|| {
                        err(format!(
                            "{:?} is not a list index (0, 1, 2, …)",
                            index.chars().take(20).collect::<String>()
                        ))
                    })?;
                indexed
                    .entry((section.name, key))
                    .or_default()
                    .insert(n, Value::String(raw.clone()));
            }
        }
    }
    for ((section, key), entries) in indexed {
        let Some(section_map) = section_mut(value, section) else {
            continue;
        };
        let mut by_index: BTreeMap<u32, Value> = match section_map.get(key) {
            Some(Value::Array(list)) => (0..).zip(list.iter().cloned()).collect(),
            Some(Value::String(s)) => (0..).zip(split(s)).collect(),
            _ => BTreeMap::new(),
        };
        by_index.extend(entries);
        section_map.insert(
            key.to_owned(),
            Value::Array(by_index.into_values().collect()),
        );
    }
    Ok(foreign)
}

fn section_mut<'a>(value: &'a mut Value, name: &str) -> Option<&'a mut Map<String, Value>> {
    value
        .as_object_mut()?
        .entry(name.to_owned())
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

fn split(s: &str) -> Vec<Value> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Value::String(p.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests;
