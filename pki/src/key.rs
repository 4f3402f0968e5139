use std::fmt;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use crate::PkiError;

/// An ECDSA P-256 private key in PKCS#8 DER form.
///
/// The bytes are zeroized on drop. There is deliberately no `Clone`, `Serialize` or derived
/// `Debug`: the key can only be written to a 0600 file or handed to rcgen/rustls.
pub struct PrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey([secret elided])")
    }
}

impl PrivateKey {
    /// Generates a new ECDSA P-256 key.
    pub fn generate() -> Result<Self, PkiError> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        Ok(Self {
            pkcs8: Zeroizing::new(pair.serialize_der()),
        })
    }

    /// Parses a PEM `PRIVATE KEY` (PKCS#8) block and checks that it is an ECDSA P-256 key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, PkiError> {
        let der =
            PrivateKeyDer::from_pem_slice(pem).map_err(|e| PkiError::BadKey(e.to_string()))?;
        let PrivateKeyDer::Pkcs8(pkcs8) = der else {
            return Err(PkiError::BadKey(
                "expected a PKCS#8 \"PRIVATE KEY\" block".into(),
            ));
        };
        let key = Self {
            pkcs8: Zeroizing::new(pkcs8.secret_pkcs8_der().to_vec()),
        };
        key.key_pair()?;
        Ok(key)
    }

    /// PEM encoding of the key, zeroized on drop.
    pub fn to_pem(&self) -> Zeroizing<String> {
        let body = base64_lines(&self.pkcs8);
        Zeroizing::new(format!(
            "-----BEGIN PRIVATE KEY-----\n{}-----END PRIVATE KEY-----\n",
            body.as_str()
        ))
    }

    /// The key as rustls wants it.
    pub fn to_rustls(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.to_vec()))
    }

    /// SubjectPublicKeyInfo DER of the key's public half.
    pub fn public_key_der(&self) -> Result<Vec<u8>, PkiError> {
        use rcgen::PublicKeyData;
        Ok(self.key_pair()?.subject_public_key_info())
    }

    pub(crate) fn key_pair(&self) -> Result<rcgen::KeyPair, PkiError> {
        let der = PrivatePkcs8KeyDer::from(self.pkcs8.as_slice());
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| PkiError::BadKey(format!("not an ECDSA P-256 PKCS#8 key ({e})")))
    }

    /// Creates a certificate signing request for this key. The CA decides the identity, so the
    /// request carries no names.
    pub fn certificate_signing_request(&self) -> Result<Vec<u8>, PkiError> {
        Ok(self.csr()?.der().to_vec())
    }

    /// [`Self::certificate_signing_request`] as PEM.
    pub fn certificate_signing_request_pem(&self) -> Result<String, PkiError> {
        Ok(self.csr()?.pem()?)
    }

    fn csr(&self) -> Result<rcgen::CertificateSigningRequest, PkiError> {
        let pair = self.key_pair()?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "netclaw operator agent");
        Ok(params.serialize_request(&pair)?)
    }
}

/// Base64 with 64-column lines, as PEM wants; written here so the key never passes through a
/// non-zeroizing buffer of another crate.
pub(crate) fn base64_lines(data: &[u8]) -> Zeroizing<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Zeroizing::new(String::with_capacity(
        data.len() * 4 / 3 + data.len() / 48 + 4,
    ));
    let mut col = 0;
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = [
            ALPHABET[(n >> 18) as usize & 63],
            ALPHABET[(n >> 12) as usize & 63],
            if chunk.len() > 1 {
                ALPHABET[(n >> 6) as usize & 63]
            } else {
                b'='
            },
            if chunk.len() > 2 {
                ALPHABET[n as usize & 63]
            } else {
                b'='
            },
        ];
        for c in chars {
            out.push(char::from(c));
            col += 1;
            if col == 64 {
                out.push('\n');
                col = 0;
            }
        }
    }
    if col != 0 {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_and_debug_is_redacted() {
        let key = PrivateKey::generate().unwrap();
        let pem = key.to_pem();
        let again = PrivateKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(
            key.public_key_der().unwrap(),
            again.public_key_der().unwrap()
        );
        assert_eq!(format!("{key:?}"), "PrivateKey([secret elided])");
        assert!(pem.lines().all(|l| l.len() <= 64));
    }

    #[test]
    fn rejects_garbage() {
        assert!(PrivateKey::from_pem(b"not a key").is_err());
    }
}
