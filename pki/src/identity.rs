//! Identities extracted from verified certificates.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::{HostId, PkiError, SpiffeId, TrustDomain};

/// A certificate serial number as lowercase hex of its DER bytes (without a leading zero byte).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Serial(String);

impl Serial {
    /// From the raw serial bytes of a certificate.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let trimmed = match bytes {
            [0, rest @ ..] if !rest.is_empty() => rest,
            _ => bytes,
        };
        Self(hex::encode(trimmed))
    }

    /// The serial as hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Serial {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, PkiError> {
        let norm: String = s
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if norm.is_empty() || norm.len() > 64 || norm.len() % 2 != 0 || hex::decode(&norm).is_err()
        {
            return Err(PkiError::BadCertificate(format!(
                "{:?} is not a certificate serial (even number of hex digits)",
                s.chars().take(80).collect::<String>()
            )));
        }
        Ok(Self::from_bytes(&hex::decode(&norm).unwrap_or_default()))
    }
}

impl TryFrom<String> for Serial {
    type Error = PkiError;
    fn try_from(s: String) -> Result<Self, PkiError> {
        s.parse()
    }
}

impl From<Serial> for String {
    fn from(s: Serial) -> String {
        s.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity of a verified operator-agent certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorIdentity {
    /// The certificate's SPIFFE id.
    pub spiffe_id: SpiffeId,
    /// The certificate's serial.
    pub serial: Serial,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl OperatorIdentity {
    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.spiffe_id.trust_domain()
    }

    /// The host-id the certificate is scoped to.
    pub fn host_id(&self) -> &HostId {
        self.spiffe_id.host_id()
    }
}

/// Seconds since the Unix epoch, saturating at zero for earlier times.
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The inverse of [`unix_seconds`].
pub fn from_unix_seconds(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_normalises() {
        let a: Serial = "00:AB:cd".parse().unwrap();
        assert_eq!(a.as_str(), "abcd");
        assert!("abc".parse::<Serial>().is_err());
        assert!("zz".parse::<Serial>().is_err());
        assert!("".parse::<Serial>().is_err());
    }
}
