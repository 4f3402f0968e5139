//! `netclaw.json` as a document, for `netclaw daemon install`: the sections this layer owns are
//! written into netclaw's file and everything else is kept.
//!
//! The root object is read as an ordered list of entries whose values are kept as the exact
//! text of the file ([`RawValue`]), so every foreign section (`Providers`, `Slack`, …) and
//! `configVersion` come out byte for byte and in their place; only the root's own whitespace is
//! rewritten. (`serde_json::Value` would sort the keys of every nested object unless the
//! workspace-wide `preserve_order` feature were switched on, and would reformat them.)
//!
//! Writing the owned sections: the `Operator` section is this layer's alone and is replaced
//! whole. The `Daemon` section is shared with netclaw, so only the keys being set are replaced
//! (case-insensitively, in place); its other keys (`DisableSelfUpdate`, `UpdateChannel`, or a
//! `Host` the command did not set) are kept.

use std::fmt;
use std::path::Path;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::raw::RawConfig;
use super::{ConfigError, CONFIG_VERSION, CONFIG_VERSION_KEY};

/// The file's root object: entries in file order, values as written.
#[derive(Debug)]
pub struct ConfigDocument {
    /// Key and the value's JSON text.
    entries: Vec<(String, String)>,
}

/// A JSON object read as ordered entries with the values' text.
struct Entries(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, v.get().to_owned()));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Default for ConfigDocument {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigDocument {
    /// A new file: `{"configVersion": 1}`, as netclaw writes new files.
    pub fn new() -> Self {
        Self {
            entries: vec![(CONFIG_VERSION_KEY.to_owned(), CONFIG_VERSION.to_string())],
        }
    }

    /// Reads the file's text (`path` is for messages).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let Entries(entries) = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: format!("{e}; fix the file (or move it away) before installing"),
        })?;
        Ok(Self { entries })
    }

    /// Whether the root has `name` (case-insensitive).
    pub fn has_section(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// The root's keys, in file order.
    pub fn section_names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// The text of the value of `name` (case-insensitive) as it will be written.
    pub fn section_text(&self, name: &str) -> Option<&str> {
        self.position(name).map(|i| self.entries[i].1.as_str())
    }

    /// Writes the owned sections of `owned`: `Operator` replaced whole, the `Daemon` keys that
    /// `owned` sets replaced in place, everything else kept. `owned.config_version` is not
    /// written (an existing `configVersion` stays as it is).
    pub fn set_owned(&mut self, path: &Path, owned: &RawConfig) -> Result<(), ConfigError> {
        let daemon = match self.position("Daemon") {
            Some(i) => {
                let Entries(existing) =
                    serde_json::from_str(&self.entries[i].1).map_err(|e| ConfigError::Parse {
                        path: path.to_owned(),
                        reason: format!("Daemon must be a JSON object ({e})"),
                    })?;
                existing
            }
            None => Vec::new(),
        };
        let Entries(set) = serde_json::from_str(&to_json(&owned.daemon)?).map_err(internal)?;
        let mut merged = daemon;
        for (key, value) in set {
            match merged
                .iter()
                .position(|(k, _)| k.eq_ignore_ascii_case(&key))
            {
                Some(i) => {
                    merged[i] = (key.clone(), value);
                    let mut n = 0;
                    merged.retain(|(k, _)| {
                        n += 1;
                        n - 1 <= i || !k.eq_ignore_ascii_case(&key)
                    });
                }
                None => merged.push((key, value)),
            }
        }
        self.put("Daemon", render_object(&merged, 1));
        self.put("Operator", indent(&to_json_pretty(&owned.operator)?, 1));
        Ok(())
    }

    /// The file's new text: two-space indentation at the root, values as they were.
    pub fn to_json(&self) -> String {
        let mut s = render_object(&self.entries, 0);
        s.push('\n');
        s
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    /// Replaces the entry `name` (case-insensitive) in place under its canonical spelling, or
    /// appends it; other spellings of the same name are dropped.
    fn put(&mut self, name: &str, value: String) {
        match self.position(name) {
            Some(i) => {
                self.entries[i] = (name.to_owned(), value);
                let mut n = 0;
                self.entries.retain(|(k, _)| {
                    n += 1;
                    n - 1 <= i || !k.eq_ignore_ascii_case(name)
                });
            }
            None => self.entries.push((name.to_owned(), value)),
        }
    }
}

fn internal(e: serde_json::Error) -> ConfigError {
    ConfigError::Parse {
        path: Default::default(),
        reason: format!("cannot render the configuration: {e}"),
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<String, ConfigError> {
    serde_json::to_string(v).map_err(internal)
}

fn to_json_pretty<T: Serialize>(v: &T) -> Result<String, ConfigError> {
    serde_json::to_string_pretty(v).map_err(internal)
}

/// An object at nesting `depth`, two spaces per level; values as given.
fn render_object(entries: &[(String, String)], depth: usize) -> String {
    if entries.is_empty() {
        return "{}".into();
    }
    let pad = "  ".repeat(depth + 1);
    let body: Vec<String> = entries
        .iter()
        .map(|(k, v)| {
            let key = serde_json::to_string(k).unwrap_or_else(|_| format!("{k:?}"));
            format!("{pad}{key}: {v}")
        })
        .collect();
    format!("{{\n{}\n{}}}", body.join(",\n"), "  ".repeat(depth))
}

/// Indents every line but the first by `depth` levels (JSON strings hold no raw newlines).
fn indent(text: &str, depth: usize) -> String {
    text.replace('\n', &format!("\n{}", "  ".repeat(depth)))
}

#[cfg(test)]
mod tests;
