//! Paired devices: names and salted SHA-256 token hashes, persisted atomically (0600)
//! ([`DeviceStore`]), and the [`Service`] every caller goes through.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ring::digest;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use zeroize::Zeroizing;

mod service;
pub use service::{RevokeError, Service, Session};

/// Token length in bytes (64 hex characters on the wire).
pub const TOKEN_BYTES: usize = 32;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeviceRecord {
    name: String,
    salt: String,
    token_hash: String,
    paired_at: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeviceFile {
    version: u32,
    devices: Vec<DeviceRecord>,
}

/// A paired device as listed.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    /// Name.
    pub name: String,
    /// Unix seconds.
    pub paired_at: u64,
}

/// Errors of the device store.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The name is taken.
    #[error("a device with that name is already paired")]
    Exists,
    /// Saving failed; nothing changed.
    #[error("saving the device registry failed: {0}")]
    Save(String),
    /// The RNG failed.
    #[error("random number generator failed")]
    Random,
}

/// The device registry.
#[derive(Debug)]
pub struct DeviceStore {
    path: PathBuf,
    devices: Vec<DeviceRecord>,
    /// Bumped on every revocation: open sessions re-check their device when it changes.
    revocations: watch::Sender<u64>,
}

/// Which pairing a session belongs to: the device's name and its record's salt, so that a
/// device revoked and paired again under the same name does not revive old sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairingId {
    name: String,
    salt: String,
}

impl DeviceStore {
    /// Loads `path`; a missing file is an empty registry, a corrupt one is an error.
    pub fn load(path: &Path) -> Result<Self, String> {
        let devices = match std::fs::read(path) {
            Ok(data) => {
                let file: DeviceFile = serde_json::from_slice(&data).map_err(|e| {
                    format!(
                        "{}: {e}; restore it from backup or remove it to unpair every device",
                        path.display()
                    )
                })?;
                if file.version != 1 {
                    return Err(format!(
                        "{}: unsupported version {}",
                        path.display(),
                        file.version
                    ));
                }
                file.devices
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(Self {
            path: path.to_owned(),
            devices,
            revocations: watch::Sender::new(0),
        })
    }

    /// Paired devices.
    pub fn list(&self) -> Vec<DeviceInfo> {
        self.devices
            .iter()
            .map(|d| DeviceInfo {
                name: d.name.clone(),
                paired_at: d.paired_at,
            })
            .collect()
    }

    /// Whether `name` is paired.
    pub fn contains(&self, name: &str) -> bool {
        self.devices.iter().any(|d| d.name == name)
    }

    /// Pairs `name`, persisting before it takes effect. Returns the token (hex), shown once.
    pub fn add(
        &mut self,
        name: &str,
        rng: &dyn SecureRandom,
        now: SystemTime,
    ) -> Result<Zeroizing<String>, DeviceError> {
        if self.contains(name) {
            return Err(DeviceError::Exists);
        }
        let mut token = Zeroizing::new([0u8; TOKEN_BYTES]);
        let mut salt = [0u8; 16];
        rng.fill(token.as_mut()).map_err(|_| DeviceError::Random)?;
        rng.fill(&mut salt).map_err(|_| DeviceError::Random)?;
        let record = DeviceRecord {
            name: name.to_owned(),
            salt: hex::encode(salt),
            token_hash: hex::encode(hash(&salt, token.as_ref())),
            paired_at: netclaw_pki::identity::unix_seconds(now),
        };
        let mut next = self.devices.clone();
        next.push(record);
        self.save(&next)?;
        self.devices = next;
        Ok(Zeroizing::new(hex::encode(token.as_ref())))
    }

    /// Unpairs `name`, persisting first. Returns false when it was not paired.
    pub fn remove(&mut self, name: &str) -> Result<bool, DeviceError> {
        if !self.contains(name) {
            return Ok(false);
        }
        let next: Vec<_> = self
            .devices
            .iter()
            .filter(|d| d.name != name)
            .cloned()
            .collect();
        self.save(&next)?;
        self.devices = next;
        self.revocations.send_modify(|g| *g = g.wrapping_add(1));
        Ok(true)
    }

    /// The current pairing of `name`, if paired.
    pub fn pairing_id(&self, name: &str) -> Option<PairingId> {
        self.devices
            .iter()
            .find(|d| d.name == name)
            .map(|d| PairingId {
                name: d.name.clone(),
                salt: d.salt.clone(),
            })
    }

    /// Whether `id` is still the current pairing of its device.
    pub fn is_current(&self, id: &PairingId) -> bool {
        self.devices
            .iter()
            .any(|d| d.name == id.name && d.salt == id.salt)
    }

    /// A receiver that changes on every revocation.
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// The device a bearer token belongs to. Every record is compared in constant time.
    pub fn authenticate(&self, token_hex: &str) -> Option<String> {
        let token = Zeroizing::new(hex::decode(token_hex).ok()?);
        if token.len() != TOKEN_BYTES {
            return None;
        }
        let mut found = None;
        for d in &self.devices {
            let (Ok(salt), Ok(expected)) = (hex::decode(&d.salt), hex::decode(&d.token_hash))
            else {
                continue;
            };
            if bool::from(hash(&salt, &token).ct_eq(&expected)) && found.is_none() {
                found = Some(d.name.clone());
            }
        }
        found
    }

    fn save(&self, devices: &[DeviceRecord]) -> Result<(), DeviceError> {
        let file = DeviceFile {
            version: 1,
            devices: devices.to_vec(),
        };
        let mut json =
            serde_json::to_vec_pretty(&file).map_err(|e| DeviceError::Save(e.to_string()))?;
        json.push(b'\n');
        netclaw_pki::secure_fs::write_atomic(&self.path, &json, netclaw_pki::secure_fs::KEY_MODE)
            .map_err(|e| DeviceError::Save(e.to_string()))
    }
}

fn hash(salt: &[u8], token: &[u8]) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(salt);
    ctx.update(token);
    ctx.finish().as_ref().to_vec()
}

/// Longest device name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest device name, in UTF-8 bytes (64 four-byte characters).
pub const MAX_NAME_BYTES: usize = 256;

/// Why a device name was refused. Each has a fixed message for the 400 answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// Empty or only whitespace.
    Blank,
    /// A control character (or a line separator or a bidirectional override).
    Control,
    /// Longer than [`MAX_NAME_CHARS`] characters or [`MAX_NAME_BYTES`] bytes.
    TooLong,
}

impl NameError {
    /// The fixed message.
    pub fn message(self) -> &'static str {
        match self {
            Self::Blank => "deviceName must not be blank",
            Self::Control => "deviceName must not contain control characters",
            Self::TooLong => "deviceName must be at most 64 characters",
        }
    }
}

/// Characters a name may not hold besides the C0/C1 controls: line and paragraph separators,
/// and the bidirectional embeddings, overrides and isolates (they reorder what a terminal
/// shows). Joiners and variation selectors stay allowed: emoji need them.
fn forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// A device name as phones call themselves: surrounding whitespace trimmed, then non-blank,
/// without control characters, at most [`MAX_NAME_CHARS`] characters. Returns the name to
/// store.
pub fn device_name(raw: &str) -> Result<&str, NameError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(NameError::Blank);
    }
    if name.chars().any(forbidden) {
        return Err(NameError::Control);
    }
    if name.chars().count() > MAX_NAME_CHARS || name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn rng() -> ring::rand::SystemRandom {
        ring::rand::SystemRandom::new()
    }

    #[test]
    fn add_authenticate_remove_persist() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("devices.json");
        let mut s = DeviceStore::load(&path).unwrap();
        let token = s.add("phone", &rng(), SystemTime::now()).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!std::fs::read_to_string(&path)
            .unwrap()
            .contains(token.as_str()));
        assert!(matches!(
            s.add("phone", &rng(), SystemTime::now()),
            Err(DeviceError::Exists)
        ));
        let again = DeviceStore::load(&path).unwrap();
        assert_eq!(again.authenticate(&token).as_deref(), Some("phone"));
        assert_eq!(again.authenticate(&"00".repeat(32)), None);
        assert_eq!(again.authenticate("zz"), None);
        assert!(s.remove("phone").unwrap());
        assert!(!s.remove("phone").unwrap());
        assert_eq!(DeviceStore::load(&path).unwrap().authenticate(&token), None);
    }

    #[test]
    fn failed_save_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("missing-dir/devices.json");
        let mut s = DeviceStore::load(&path).unwrap();
        assert!(matches!(
            s.add("phone", &rng(), SystemTime::now()),
            Err(DeviceError::Save(_))
        ));
        assert!(s.list().is_empty());
    }

    #[test]
    fn corrupt_registry_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("devices.json");
        std::fs::write(&path, b"{\"version\":1,\"devices\":[{").unwrap();
        assert!(DeviceStore::load(&path).is_err());
    }

    #[test]
    fn names() {
        for good in [
            "Aaron\u{2019}s iPhone",
            "Ana's phone",
            "a/b",
            "\u{1F4F1} Pixel",
            "\u{1F469}\u{200D}\u{1F4BB} laptop",
            "\u{5C0F}\u{660E}\u{7684} iPad",
            "\u{0645}\u{0647}\u{0627}",
            &"\u{1F600}".repeat(64),
        ] {
            assert_eq!(device_name(good), Ok(good), "{good:?}");
        }
        assert_eq!(device_name("  Pixel 8\t"), Ok("Pixel 8"));
        for (bad, why) in [
            ("", NameError::Blank),
            (" \t\u{3000}", NameError::Blank),
            ("a\u{7}b", NameError::Control),
            ("a\nb", NameError::Control),
            ("a\u{85}b", NameError::Control),
            ("a\u{2028}b", NameError::Control),
            ("a\u{202E}b", NameError::Control),
            (&"x".repeat(65), NameError::TooLong),
            (&"\u{1F600}".repeat(65), NameError::TooLong),
        ] {
            assert_eq!(device_name(bad), Err(why), "{bad:?}");
        }
    }
}
