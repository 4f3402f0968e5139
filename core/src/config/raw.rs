//! The raw serde types of the sections this layer owns, and the step that picks them out of
//! netclaw's whole file.
//!
//! netclaw's `netclaw.json` has `configVersion` and many sections this layer does not implement.
//! [`owned_sections`] keeps `configVersion` (which must be 1) and the owned sections, matching
//! section names and keys case-insensitively as netclaw's .NET configuration does and renaming
//! them to their canonical spelling; it sets every other section aside. Inside an owned section
//! an unknown key is an error naming it; a top-level name one or two edits away from an owned
//! section (`Deamon`, `Operater`) is refused as a typo rather than set aside, unless it is a
//! section netclaw itself documents.
//!
//! The keys of each section are read from its serde type ([`field_names`]), so the override
//! table and the key matching cannot miss a field.

use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::{ConfigError, CONFIG_VERSION, CONFIG_VERSION_KEY};

/// The sections this layer owns, validated strictly.
pub const OWNED_SECTIONS: [&str; 2] = ["Daemon", "Operator"];

/// Top-level sections of netclaw's `netclaw.json` (schema v1 and the documented channel and
/// retention sections) that this layer does not read. They are set aside without a near-miss
/// check. Any other unknown section is set aside too (netclaw's root allows additional
/// properties) unless its name is one or two edits away from an owned section.
pub const NETCLAW_SECTIONS: &[&str] = &[
    "Slack",
    "Discord",
    "Logging",
    "Telemetry",
    "Persistence",
    "Session",
    "Security",
    "Tools",
    "Providers",
    "Models",
    "Memory",
    "Search",
    "SkillSync",
    "ExternalSkills",
    "SkillFeeds",
    "SubAgents",
    "Notifications",
    "Webhooks",
    "Scheduling",
    "Workspaces",
    "McpServers",
    "Retention",
    "Mattermost",
    "Telegram",
    "Teams",
    "DeviceToken",
];

/// The owned part of the file: every key optional, unknown keys rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RawConfig {
    /// netclaw's `configVersion` (only 1 is accepted).
    #[serde(
        rename = "configVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub config_version: Option<u64>,
    /// `Daemon` section.
    #[serde(default)]
    pub daemon: RawDaemon,
    /// `Operator` section.
    #[serde(default)]
    pub operator: RawOperator,
}

/// `Daemon` section: netclaw's keys (same names, same meanings) plus `StateDirectory`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RawDaemon {
    /// Public listener address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Public listener port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Exposure mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposure_mode: Option<String>,
    /// Proxies whose forwarded headers are honoured.
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Option::is_none"
    )]
    pub trusted_proxies: Option<Vec<String>>,
    /// Skip the tunnel process check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_tunnel_process_check: Option<bool>,
    /// Device registry, audit log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_directory: Option<PathBuf>,
    /// netclaw's self-update switch. Read and type-checked, not used by this layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_self_update: Option<bool>,
    /// netclaw's update channel, `stable` or `beta`. Read and checked, not used by this layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_channel: Option<String>,
    /// netclaw's legacy CLI endpoint key. Read and type-checked, not used by this layer (the CLI
    /// resolves its endpoint from `--endpoint`/`NETCLAW_ENDPOINT`, the agent socket and the mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// `Operator` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RawOperator {
    /// Operator listener address (default: `Daemon.Host`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Operator listener port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The agent's Unix socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// Source addresses allowed on the operator listener (default: this host's addresses).
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_sources: Option<Vec<String>>,
    /// Users allowed on the agent socket besides root and the agent's own user.
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_users: Option<Vec<String>>,
    /// Groups whose members are allowed on the agent socket.
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_groups: Option<Vec<String>>,
    /// SPIFFE trust domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
    /// Agent certificate lifetime, e.g. `30d`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_lifetime: Option<String>,
    /// How long a superseded agent serial stays usable after a rotation, e.g. `60s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_grace: Option<String>,
    /// Revoke every agent serial when a superseded one is used after its successor (a
    /// possible key clone), until an operator re-issues with `netclaw pki rotate --offline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_on_suspected_clone: Option<bool>,
    /// How long the operator agent keeps polling its sockets after it forwards a request,
    /// before it sleeps, in microseconds (0 to 1000; 0 turns it off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy_poll_micros: Option<u32>,
    /// Daemon PKI directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pki_directory: Option<PathBuf>,
    /// Agent credential directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_directory: Option<PathBuf>,
    /// The daemon's public URL as remote devices reach it (`https://…`), for the join command
    /// `netclaw pair` prints. Only the CLI reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

/// Accepts a JSON list or, from an environment override, a comma-separated string.
fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::Many(v)) => Some(v),
        Some(OneOrMany::One(s)) => Some(
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
    })
}

/// The keys of a struct as its serde derive names them (after `rename_all`), in declaration
/// order: the derive hands them to `deserialize_struct`, where this probe records them.
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // The probe always ends deserialization with an error, once it has the names.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// One owned section: its name and what its serde type says about its keys.
#[derive(Debug)]
pub struct Section {
    /// Canonical name, e.g. `Daemon`.
    pub name: &'static str,
    keys: fn() -> &'static [&'static str],
    accepts: fn(Value) -> bool,
}

fn accepts<T: DeserializeOwned>(v: Value) -> bool {
    serde_json::from_value::<T>(v).is_ok()
}

/// The owned sections with their raw types. `sections_are_the_raw_configs_fields` checks this
/// against [`RawConfig`].
pub static SECTIONS: [Section; 2] = [
    Section {
        name: "Daemon",
        keys: field_names::<RawDaemon>,
        accepts: accepts::<RawDaemon>,
    },
    Section {
        name: "Operator",
        keys: field_names::<RawOperator>,
        accepts: accepts::<RawOperator>,
    },
];

impl Section {
    /// The owned section called `name` (case-insensitive).
    pub fn named(name: &str) -> Option<&'static Section> {
        SECTIONS.iter().find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// Every key, canonical spelling, from the raw type.
    pub fn keys(&self) -> &'static [&'static str] {
        (self.keys)()
    }

    /// The canonical spelling of `key` (case-insensitive), if it is a key of this section.
    pub fn key(&self, key: &str) -> Option<&'static str> {
        self.keys()
            .iter()
            .copied()
            .find(|k| k.eq_ignore_ascii_case(key))
    }

    /// Whether `key` holds a list (its raw type accepts a JSON array there).
    pub fn is_list(&self, key: &'static str) -> bool {
        let mut m = Map::new();
        m.insert(
            key.to_owned(),
            Value::Array(vec![Value::String("x".into())]),
        );
        (self.accepts)(Value::Object(m))
    }

    fn suggest(&self, key: &str) -> Option<&'static str> {
        closest(key, self.keys())
    }
}

/// The nearest name within two edits (case-insensitive), if any.
fn closest(name: &str, candidates: &[&'static str]) -> Option<&'static str> {
    candidates
        .iter()
        .map(|c| {
            (
                osa_distance(&name.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                *c,
            )
        })
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The owned section that `name` (not itself owned) looks like a misspelling of, unless netclaw
/// documents a section by that name.
pub fn misspelled_section(name: &str) -> Option<&'static str> {
    if NETCLAW_SECTIONS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
    {
        return None;
    }
    closest(name, &OWNED_SECTIONS)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and adjacent
/// transpositions (`Deamon` is one edit from `Daemon`).
fn osa_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The owned part of a file and the names of the sections set aside.
#[derive(Debug)]
pub(crate) struct Owned {
    /// `configVersion` and the owned sections, canonical spelling.
    pub(crate) value: Value,
    /// Top-level names set aside, as spelled in the file.
    pub(crate) foreign: Vec<String>,
}

/// Checks `configVersion`: an integer 1.
pub(crate) fn check_version(v: &Value) -> Result<(), ConfigError> {
    if v.as_u64() == Some(CONFIG_VERSION) {
        Ok(())
    } else {
        Err(ConfigError::Version {
            found: v.to_string().chars().take(40).collect(),
        })
    }
}

/// Splits the file's root object into the owned part and the names set aside (see the module
/// doc).
pub(crate) fn owned_sections(path: &Path, value: Value) -> Result<Owned, ConfigError> {
    let Value::Object(root) = value else {
        return Err(ConfigError::Parse {
            path: path.to_owned(),
            reason: "the file must hold one JSON object (netclaw.json's root, with Daemon and Operator sections)".into(),
        });
    };
    let mut owned = Map::new();
    let mut spelled: Vec<(&'static str, String)> = Vec::new();
    let mut foreign = Vec::new();
    let mut once =
        |canonical: &'static str, name: &str| match spelled.iter().find(|(c, _)| *c == canonical) {
            Some((_, first)) => Err(ConfigError::DuplicateKey {
                first: first.clone(),
                second: name.to_owned(),
            }),
            None => {
                spelled.push((canonical, name.to_owned()));
                Ok(())
            }
        };
    for (name, v) in root {
        if name.eq_ignore_ascii_case(CONFIG_VERSION_KEY) {
            once(CONFIG_VERSION_KEY, &name)?;
            check_version(&v)?;
            owned.insert(CONFIG_VERSION_KEY.to_owned(), v);
        } else if let Some(section) = Section::named(&name) {
            once(section.name, &name)?;
            let Value::Object(keys) = v else {
                return Err(ConfigError::Parse {
                    path: path.to_owned(),
                    reason: format!("{} must be a JSON object", section.name),
                });
            };
            owned.insert(
                section.name.to_owned(),
                Value::Object(canonical_keys(section, keys)?),
            );
        } else if let Some(section) = misspelled_section(&name) {
            return Err(ConfigError::MisspelledSection {
                found: name,
                section,
            });
        } else {
            foreign.push(name);
        }
    }
    Ok(Owned {
        value: Value::Object(owned),
        foreign,
    })
}

/// Renames the keys of an owned section to their canonical spelling; an unknown key, or one key
/// spelled twice, is an error.
fn canonical_keys(
    section: &'static Section,
    keys: Map<String, Value>,
) -> Result<Map<String, Value>, ConfigError> {
    let mut out = Map::new();
    let mut spelled: Vec<(&'static str, String)> = Vec::new();
    for (key, v) in keys {
        let Some(canonical) = section.key(&key) else {
            return Err(ConfigError::UnknownKey {
                section: section.name,
                suggestion: section.suggest(&key),
                expected: section.keys(),
                key: key.chars().take(100).collect(),
            });
        };
        if let Some((_, first)) = spelled.iter().find(|(c, _)| *c == canonical) {
            return Err(ConfigError::DuplicateKey {
                first: format!("{}.{first}", section.name),
                second: format!("{}.{key}", section.name),
            });
        }
        spelled.push((canonical, key));
        out.insert(canonical.to_owned(), v);
    }
    Ok(out)
}

impl RawConfig {
    /// The owned sections of `text` (the contents of `path`) as written: keys in their canonical
    /// spelling, no environment overrides, nothing validated beyond the types. `netclaw daemon
    /// install --force` starts from this so that a re-install keeps what it is not told to change.
    pub fn read(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::from_owned(path, owned_sections(path, value)?.value)
    }

    /// Deserializes the owned part (after overrides). A value of the wrong type is reported with
    /// its key.
    pub(crate) fn from_owned(path: &Path, value: Value) -> Result<Self, ConfigError> {
        serde_json::from_value::<RawConfig>(value.clone()).map_err(|e| {
            let culprit = SECTIONS.iter().find_map(|s| {
                value.get(s.name)?.as_object()?.iter().find_map(|(k, v)| {
                    let mut one = Map::new();
                    one.insert(k.clone(), v.clone());
                    (!(s.accepts)(Value::Object(one))).then(|| format!("{}.{k}", s.name))
                })
            });
            ConfigError::Parse {
                path: path.to_owned(),
                reason: match culprit {
                    Some(key) => format!("{key}: {e}"),
                    None => e.to_string(),
                },
            }
        })
    }
}

#[cfg(test)]
mod tests;
