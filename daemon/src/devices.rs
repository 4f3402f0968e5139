//! Paired devices: names and salted SHA-256 token hashes, persisted atomically (0600).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ring::digest;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::pairing::constant_time_eq;

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
        Ok(true)
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
            if constant_time_eq(&hash(&salt, &token), &expected) && found.is_none() {
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

/// Device names: 1–64 characters of letters, digits, space, `.`, `_`, `-`, not starting with a space.
pub fn valid_device_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(' ')
        && !name.ends_with(' ')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::pairing::rng;

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
        assert!(valid_device_name("Ana's phone".replace('\'', "").as_str()));
        assert!(!valid_device_name(""));
        assert!(!valid_device_name(" x"));
        assert!(!valid_device_name("a/b"));
        assert!(!valid_device_name(&"x".repeat(65)));
    }
}
