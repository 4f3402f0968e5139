//! CSRs received for renewal: the `POST /api/local-control/v1/pki/certificate` body
//! (`{"csr": "<PEM>"}`), the PEM, and the DER inside it, each as the daemon reads them.
//!
//! The input is tried as all three. Checked: no panic; a CSR that parses is for an ECDSA P-256
//! key, and the certificate issued for it carries the daemon's identity for this host (never a
//! name from the request) and verifies as an agent certificate.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netclaw_core::wire::RenewRequest;
use netclaw_fuzz::{agent_id, expected, lifetime, now, CA};
use netclaw_pki::issue::{csr_from_pem, parse_csr};
use netclaw_pki::verify::verify_agent_certificate;

fn issue(der: &[u8]) {
    if parse_csr(der).is_err() {
        return;
    }
    let cert = CA
        .issue_agent_from_csr(der, &agent_id(), now(), lifetime())
        .expect("a CSR that parses can be issued");
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
