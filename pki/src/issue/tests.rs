//! Renewal CSRs are judged by their SubjectPublicKeyInfo: anything but an uncompressed P-256
//! point on the curve, signed with ECDSA with SHA-256, is refused with a typed error and no
//! certificate is issued. The fixtures in `testdata/` were made with the OpenSSL command line
//! (`openssl req -new -key <key> -sha256`): ring cannot sign with a P-384 key and SHA-256.

use std::time::{Duration, SystemTime};

use super::*;
use crate::{hostid, TrustDomain};

fn now() -> SystemTime {
    // 2026-11-01T00:00:00Z, fixed.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_491_200)
}

fn ca() -> OperatorCa {
    let names = ListenerNames {
        ips: vec![IpAddr::from([192, 0, 2, 10])],
        dns: Vec::new(),
    };
    OperatorCa::generate("test", &names, now()).unwrap()
}

fn agent_id() -> SpiffeId {
    let host = hostid::from_machine_id(b"0123456789abcdef0123456789abcdef").unwrap();
    SpiffeId::operator_agent(TrustDomain::DEFAULT.parse().unwrap(), host)
}

fn der(pem: &str) -> Vec<u8> {
    csr_from_pem(pem.as_bytes()).unwrap()
}

/// Both the check and issuance refuse `csr` with `want`.
fn assert_refused(csr: &[u8], want: CsrKeyError) {
    assert_eq!(check_csr_key(csr), Err(want));
    match parse_csr(csr) {
        Err(PkiError::CsrKey(got)) => assert_eq!(got, want),
        other => panic!("expected CsrKey({want:?}), got {other:?}"),
    }
    match ca().issue_agent_from_csr(csr, &agent_id(), now(), CertificateLifetime::default()) {
        Err(PkiError::CsrKey(got)) => assert_eq!(got, want),
        Err(other) => panic!("expected CsrKey({want:?}), got {other:?}"),
        Ok(cert) => panic!("issued {} for a refused key", cert.serial),
    }
}

#[test]
fn a_p256_csr_is_accepted_and_the_certificate_holds_its_point() {
    let key = PrivateKey::generate().unwrap();
    let csr = key.certificate_signing_request().unwrap();
    let point = check_csr_key(&csr).unwrap();
    assert_eq!(point.len(), 65);
    assert!(key.public_key_der().unwrap().ends_with(&point));
    let cert = ca()
        .issue_agent_from_csr(&csr, &agent_id(), now(), CertificateLifetime::default())
        .unwrap();
    assert_eq!(verify::public_key_bits(&cert.der).unwrap(), point);
}

#[test]
fn a_p384_key_in_a_csr_signed_with_sha256_is_refused() {
    // The signature verifies (OpenSSL signed it with the P-384 key); only the SPKI tells.
    assert_refused(
        &der(include_str!("testdata/p384-key-sha256-signature.csr.pem")),
        CsrKeyError::NotP256,
    );
}

#[test]
fn rsa_and_ed25519_keys_are_refused() {
    assert_refused(
        &der(include_str!("testdata/rsa-key.csr.pem")),
        CsrKeyError::NotEcKey,
    );
    assert_refused(
        &der(include_str!("testdata/ed25519-key.csr.pem")),
        CsrKeyError::NotEcKey,
    );
}

#[test]
fn a_compressed_point_is_refused() {
    assert_refused(
        &der(include_str!("testdata/p256-compressed-point.csr.pem")),
        CsrKeyError::CompressedPoint,
    );
}

#[test]
fn a_p256_key_signed_with_sha384_is_refused() {
    assert_refused(
        &der(include_str!("testdata/p256-key-sha384-signature.csr.pem")),
        CsrKeyError::SignatureAlgorithm,
    );
}

#[test]
fn a_point_off_the_curve_is_refused() {
    let key = PrivateKey::generate().unwrap();
    let mut csr = key.certificate_signing_request().unwrap();
    let point = check_csr_key(&csr).unwrap();
    let at = csr
        .windows(point.len())
        .position(|w| w == point.as_slice())
        .unwrap();
    // Change the last byte of Y: (x, y') is not on the curve.
    csr[at + 64] ^= 0x01;
    assert_refused(&csr, CsrKeyError::PointNotOnCurve);
    // The point at infinity's coordinates (all zero) neither.
    csr[at + 1..at + 65].fill(0);
    assert_refused(&csr, CsrKeyError::PointNotOnCurve);
    // A truncated encoding.
    csr[at] = 0x05;
    assert_refused(&csr, CsrKeyError::BadPointEncoding);
}

#[test]
fn garbage_is_unparsable() {
    assert_eq!(check_csr_key(b"not a csr"), Err(CsrKeyError::Unparsable));
}
