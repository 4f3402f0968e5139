//! CSRs received for renewal: the `POST /api/local-control/v1/pki/certificate` body
//! (`{"csr": "<PEM>"}`), the PEM, and the DER inside it, each as the daemon reads them.
//!
//! The input is tried as all three. Checked: no panic; a CSR that parses holds a valid P-256 key
//! in its own SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, a 65-byte uncompressed point that
//! ring accepts as a P-256 public key), whatever its signature algorithm says; the certificate
//! issued for it holds that same SubjectPublicKeyInfo, carries the daemon's identity for this host
//! (never a name from the request) and verifies as an agent certificate.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netclaw_core::wire::RenewRequest;
use netclaw_fuzz::{agent_id, expected, lifetime, now, CA};
use netclaw_pki::issue::{check_csr_key, csr_from_pem, parse_csr};
use netclaw_pki::verify::verify_agent_certificate;

/// The DER SubjectPublicKeyInfo of a P-256 key up to its point: SEQUENCE { SEQUENCE {
/// id-ecPublicKey, prime256v1 }, BIT STRING (66 bytes, no unused bits) }.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Whether `der` holds a P-256 SubjectPublicKeyInfo for `point`.
fn holds_p256_spki(der: &[u8], point: &[u8]) -> bool {
    let spki = [P256_SPKI_PREFIX, point].concat();
    der.windows(spki.len()).any(|w| w == spki.as_slice())
}

/// Whether ring takes `point` as a P-256 public key (uncompressed, on the curve).
fn is_p256_point(point: &[u8]) -> bool {
    use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
    let mine = EphemeralPrivateKey::generate(&ECDH_P256, &ring::rand::SystemRandom::new())
        .expect("random key");
    agree_ephemeral(mine, &UnparsedPublicKey::new(&ECDH_P256, point), |_| ()).is_ok()
}

fn issue(der: &[u8]) {
    if parse_csr(der).is_err() {
        return;
    }
    let point = check_csr_key(der).expect("a CSR that parses passes the key check");
    assert_eq!(point.len(), 65, "an uncompressed point");
    assert!(is_p256_point(&point), "an accepted key is on P-256");
    assert!(
        holds_p256_spki(der, &point),
        "the CSR's own SubjectPublicKeyInfo is P-256"
    );
    let cert = CA
        .issue_agent_from_csr(der, &agent_id(), now(), lifetime())
        .expect("a CSR that parses can be issued");
    assert!(
        holds_p256_spki(&cert.der, &point),
        "the certificate holds the requested P-256 key"
    );
    let bundle = [CA.certificate().der.clone()];
    let id = verify_agent_certificate(&cert.der, &bundle, &expected(), now())
        .expect("an issued certificate verifies");
    assert_eq!(id.spiffe_id, agent_id());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<RenewRequest>(data) {
        if let Ok(der) = csr_from_pem(req.csr.as_bytes()) {
            issue(&der);
        }
    }
    if let Ok(der) = csr_from_pem(data) {
        issue(&der);
    }
    issue(data);
});
