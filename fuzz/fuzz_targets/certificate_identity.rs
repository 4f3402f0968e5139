//! Identity extraction from certificates: what the daemon's verifier and the agent's loader read
//! from a presented or stored certificate (DER, PEM and PEM bundles).
//!
//! Checked: no panic; a certificate accepted as an agent certificate for this host names this
//! host's SPIFFE id, and `inspect` agrees with the verifier on serial and validity.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netclaw_fuzz::{agent_id, expected, now, CA};
use netclaw_pki::verify::{
    inspect, parse_bundle_pem, parse_certificate_pem, public_key_bits, verify_agent_certificate,
};
use rustls_pki_types::CertificateDer;

fn check(der: &CertificateDer<'_>) {
    let info = inspect(der);
    let _ = public_key_bits(der);
    let bundle = [CA.certificate().der.clone()];
    if let Ok(id) = verify_agent_certificate(der, &bundle, &expected(), now()) {
        assert_eq!(id.spiffe_id, agent_id());
        let info = info.expect("a verified certificate can be inspected");
        assert_eq!(info.serial, id.serial);
        assert_eq!(info.not_after, id.not_after);
        assert!(!info.is_ca);
        assert_eq!(info.sans, vec![format!("URI:{}", agent_id())]);
    }
}

fuzz_target!(|data: &[u8]| {
    check(&CertificateDer::from(data));
    if let Ok(der) = parse_certificate_pem(data) {
        check(&der);
    }
    if let Ok(certs) = parse_bundle_pem(data) {
        assert!(!certs.is_empty());
        for der in &certs {
            check(der);
        }
    }
});
