//! Paired devices: names and salted SHA-256 token hashes, persisted atomically (0600)
//! ([`DeviceStore`]), and the [`Service`] every caller goes through.
//!
//! Two token schemes are verified: this daemon's own (64 hex characters, SHA-256(salt ||
//! token)), and netclaw's for devices imported from its `config/devices.json` (43 base64url
//! characters, SHA-256(token || salt), see `ComputeTokenHash` in netclaw's `PairedDevice`), so
//! that devices paired with netclaw keep their tokens. Each record says which scheme it uses.
//!
//! When a token last authenticated (`lastUsedAt`, which netclaw's clients list) is kept in
//! memory and written with the next save, or by [`Service::flush`] (every
//! [`LAST_USED_FLUSH`] and at shutdown): no write, let alone an fsync, per request. A crash
//! loses at most that window of last-used times, never a pairing or a revocation (those are
//! saved before they take effect).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine as _;
use netclaw_core::wire::ImportedDevice;
use ring::digest;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use zeroize::Zeroizing;

mod service;
pub use service::{ImportRefused, RevokeError, Service, Session};

/// Token length in bytes (64 hex characters on the wire; 43 base64url characters for tokens
/// netclaw issued).
pub const TOKEN_BYTES: usize = 32;

/// Salt length of imported netclaw devices, in bytes (netclaw's `PairingCoordinator` draws 16).
pub const NETCLAW_SALT_BYTES: usize = 16;

/// How often last-used times are written (at most this much of them is lost in a crash).
pub const LAST_USED_FLUSH: std::time::Duration = std::time::Duration::from_secs(30);

/// How a record's token is verified.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum TokenScheme {
    /// Paired here: 32 bytes shown as 64 hex characters, SHA-256(salt || token).
    #[default]
    NetclawRs,
    /// Imported from netclaw: 32 bytes shown as 43 base64url characters, SHA-256(token ||
    /// salt).
    Netclaw,
}

impl TokenScheme {
    fn is_native(&self) -> bool {
        *self == Self::NetclawRs
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeviceRecord {
    name: String,
    salt: String,
    token_hash: String,
    paired_at: u64,
    /// Unix seconds of the last authentication; absent until the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_used_at: Option<u64>,
    #[serde(default, skip_serializing_if = "TokenScheme::is_native")]
    scheme: TokenScheme,
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
    /// Unix seconds of the last authentication (the pairing time until then).
    pub last_used_at: u64,
}

/// Why an import was refused. Nothing was imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A name is not a valid device name, or not as netclaw stores names (trimmed).
    #[error("a device name is blank, has control characters, is too long or is not trimmed")]
    Name,
    /// A token hash or salt is not lowercase-or-uppercase hex of the expected length.
    #[error("a device's TokenHash is not 64 hex characters or its Salt not 32")]
    Verifier,
    /// A name is already paired here, or appears twice (compared without case, as netclaw does).
    #[error("a device with that name is already paired")]
    Exists,
    /// Nothing to import.
    #[error("no devices to import")]
    Empty,
    /// Saving failed; nothing changed.
    #[error(transparent)]
    Store(DeviceError),
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
    /// Last-used times changed since the last save.
    dirty: bool,
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
            dirty: false,
        })
    }

    /// Paired devices.
    pub fn list(&self) -> Vec<DeviceInfo> {
        self.devices
            .iter()
            .map(|d| DeviceInfo {
                name: d.name.clone(),
                paired_at: d.paired_at,
                last_used_at: d.last_used_at.unwrap_or(d.paired_at),
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
            last_used_at: None,
            scheme: TokenScheme::NetclawRs,
        };
        let mut next = self.devices.clone();
        next.push(record);
        self.save(&next)?;
        self.devices = next;
        self.dirty = false;
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
        self.dirty = false;
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

    /// The device a bearer token belongs to. Every record is compared in constant time, each
    /// by its own scheme; a token that is neither 64 hex nor 43 base64url characters matches
    /// nothing.
    pub fn authenticate(&self, token: &str) -> Option<String> {
        self.find(token).map(|i| self.devices[i].name.clone())
    }

    /// [`DeviceStore::authenticate`], recording `now` as the device's last use (in memory until
    /// the next save or [`DeviceStore::flush`]).
    pub fn authenticate_at(&mut self, token: &str, now: SystemTime) -> Option<String> {
        let i = self.find(token)?;
        let now = netclaw_pki::identity::unix_seconds(now);
        let d = &mut self.devices[i];
        if d.last_used_at != Some(now) {
            d.last_used_at = Some(now);
            self.dirty = true;
        }
        Some(d.name.clone())
    }

    fn find(&self, token: &str) -> Option<usize> {
        let native = (token.len() == 2 * TOKEN_BYTES)
            .then(|| hex::decode(token).ok().map(Zeroizing::new))
            .flatten();
        let netclaw = (token.len() == 43)
            .then(|| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(token)
                    .ok()
                    .map(Zeroizing::new)
            })
            .flatten()
            .filter(|t| t.len() == TOKEN_BYTES);
        if native.is_none() && netclaw.is_none() {
            return None;
        }
        let mut found = None;
        for (i, d) in self.devices.iter().enumerate() {
            let (Ok(salt), Ok(expected)) = (hex::decode(&d.salt), hex::decode(&d.token_hash))
            else {
                continue;
            };
            let computed = match d.scheme {
                TokenScheme::NetclawRs => native.as_ref().map(|t| hash(&salt, t)),
                TokenScheme::Netclaw => netclaw.as_ref().map(|t| hash(t, &salt)),
            };
            let Some(computed) = computed else {
                continue;
            };
            if bool::from(computed.ct_eq(&expected)) && found.is_none() {
                found = Some(i);
            }
        }
        found
    }

    /// Writes last-used times changed since the last save, if any. Returns whether it wrote.
    pub fn flush(&mut self) -> Result<bool, DeviceError> {
        if !self.dirty {
            return Ok(false);
        }
        self.save(&self.devices)?;
        self.dirty = false;
        Ok(true)
    }

    /// Adds devices paired with netclaw (their token verifiers, from its `devices.json`),
    /// persisting before they take effect: all of them, or none when any is invalid or its name
    /// is taken (compared without case, as netclaw compares names). Returns their names.
    pub fn import(&mut self, devices: &[ImportedDevice]) -> Result<Vec<String>, ImportError> {
        if devices.is_empty() {
            return Err(ImportError::Empty);
        }
        let mut next = self.devices.clone();
        let mut names = Vec::with_capacity(devices.len());
        for d in devices {
            if device_name(&d.name) != Ok(d.name.as_str()) {
                return Err(ImportError::Name);
            }
            let hash_ok = hex::decode(&d.token_hash).is_ok_and(|h| h.len() == 32);
            let salt_ok = hex::decode(&d.salt).is_ok_and(|s| s.len() == NETCLAW_SALT_BYTES);
            if !hash_ok || !salt_ok {
                return Err(ImportError::Verifier);
            }
            let lower = d.name.to_lowercase();
            if next.iter().any(|e| e.name.to_lowercase() == lower) {
                return Err(ImportError::Exists);
            }
            next.push(DeviceRecord {
                name: d.name.clone(),
                salt: d.salt.to_ascii_lowercase(),
                token_hash: d.token_hash.to_ascii_lowercase(),
                paired_at: d.created_at,
                last_used_at: Some(d.last_used_at.max(d.created_at)),
                scheme: TokenScheme::Netclaw,
            });
            names.push(d.name.clone());
        }
        self.save(&next).map_err(ImportError::Store)?;
        self.devices = next;
        self.dirty = false;
        Ok(names)
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

/// SHA-256(first || second): (salt, token) for this daemon's tokens, (token, salt) for
/// netclaw's.
fn hash(first: &[u8], second: &[u8]) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(first);
    ctx.update(second);
    ctx.finish().as_ref().to_vec()
}

/// Writes last-used times every [`LAST_USED_FLUSH`] until `stop` resolves (the daemon's drain
/// begins; the daemon flushes once more after the drain).
pub async fn flush_last_used(
    devices: std::sync::Arc<Service>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(LAST_USED_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            biased;
            () = &mut stop => return,
            _ = tick.tick() => {
                if let Err(e) = devices.flush().await {
                    tracing::warn!(error = %e, "last-used times of paired devices not saved; retrying later");
                }
            }
        }
    }
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

    /// A device as netclaw's `PairingCoordinator` pairs it: its base64url token and the record
    /// its `DeviceRegistry` keeps (SHA-256(token || salt)).
    fn netclaw_device(name: &str) -> (String, ImportedDevice) {
        let mut token = [0u8; 32];
        let mut salt = [0u8; 16];
        rng().fill(&mut token).unwrap();
        rng().fill(&mut salt).unwrap();
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&token);
        ctx.update(&salt);
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
        (
            raw,
            ImportedDevice {
                name: name.into(),
                token_hash: hex::encode(ctx.finish()),
                salt: hex::encode(salt),
                created_at: 1_767_323_045,
                last_used_at: 1_767_409_445,
            },
        )
    }

    #[test]
    fn imported_netclaw_tokens_authenticate_and_others_do_not() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("devices.json");
        let mut s = DeviceStore::load(&path).unwrap();
        let own = s.add("phone", &rng(), SystemTime::now()).unwrap();
        let (token, laptop) = netclaw_device("aaron-laptop");
        assert_eq!(s.import(&[laptop]).unwrap(), ["aaron-laptop"]);
        let again = DeviceStore::load(&path).unwrap();
        assert_eq!(again.authenticate(&token).as_deref(), Some("aaron-laptop"));
        assert_eq!(again.authenticate(&own).as_deref(), Some("phone"));
        // The same 32 bytes in the other scheme's spelling, a wrong token, a padded one.
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token)
            .unwrap();
        assert_eq!(again.authenticate(&hex::encode(bytes)), None);
        let (other, _) = netclaw_device("x");
        assert_eq!(again.authenticate(&other), None);
        assert_eq!(again.authenticate(&format!("{token}=")), None);
        let listed = again.list();
        assert_eq!(listed[1].paired_at, 1_767_323_045);
        assert_eq!(listed[1].last_used_at, 1_767_409_445);
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("\"scheme\": \"netclaw\""));
    }

    #[test]
    fn an_import_is_all_or_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("devices.json");
        let mut s = DeviceStore::load(&path).unwrap();
        s.add("Phone", &rng(), SystemTime::now()).unwrap();
        let before = std::fs::read(&path).unwrap();
        let (_, good) = netclaw_device("laptop");
        let taken = ImportedDevice {
            name: "phone".into(),
            ..good.clone()
        };
        let short_salt = ImportedDevice {
            salt: "00".into(),
            ..good.clone()
        };
        let untrimmed = ImportedDevice {
            name: " laptop".into(),
            ..good.clone()
        };
        assert!(matches!(
            s.import(&[good.clone(), taken]),
            Err(ImportError::Exists)
        ));
        assert!(matches!(
            s.import(&[good.clone(), good.clone()]),
            Err(ImportError::Exists)
        ));
        assert!(matches!(
            s.import(&[good.clone(), short_salt]),
            Err(ImportError::Verifier)
        ));
        assert!(matches!(s.import(&[untrimmed]), Err(ImportError::Name)));
        assert!(matches!(s.import(&[]), Err(ImportError::Empty)));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(s.list().len(), 1);
    }

    #[test]
    fn last_use_is_kept_in_memory_until_a_flush() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("devices.json");
        let mut s = DeviceStore::load(&path).unwrap();
        let paired = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let token = s.add("phone", &rng(), paired).unwrap();
        assert_eq!(s.list()[0].last_used_at, 1_000);
        assert!(!s.flush().unwrap(), "nothing to write");
        let before = std::fs::read(&path).unwrap();

        let used = paired + std::time::Duration::from_secs(500);
        assert_eq!(s.authenticate_at(&token, used).as_deref(), Some("phone"));
        assert_eq!(s.authenticate_at(&"00".repeat(32), used), None);
        // Listed at once, written only by the flush.
        assert_eq!(s.list()[0].last_used_at, 1_500);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(s.flush().unwrap());
        assert!(!s.flush().unwrap());
        assert_eq!(
            DeviceStore::load(&path).unwrap().list()[0].last_used_at,
            1_500
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
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
