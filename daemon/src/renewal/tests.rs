//! What the service decides before the issuer is asked; the issuer's own decisions (the
//! registry's, the write, the audit of a refused or lost-answer renewal) are exercised end to
//! end in `daemon/tests/operator_listener.rs`.

use netclaw_pki::{PrivateKey, Serial};

use super::*;

fn operator() -> Principal {
    Principal::LocalOperator {
        spiffe_id: "spiffe://netclaw/host/h/operator-agent".into(),
        serial: "01".parse::<Serial>().unwrap(),
        caller: None,
    }
}

fn service(audit: &Arc<Audit>) -> Service {
    Service::new(
        None,
        audit.clone(),
        CertificateLifetime::default(),
        Duration::ZERO,
    )
}

fn request(by: &Principal, forwarded: bool) -> Request<'_> {
    Request {
        by,
        presented_key: None,
        forwarded,
        csr_pem: String::new(),
    }
}

#[tokio::test]
async fn only_the_agents_own_request_renews_and_a_forwarded_one_is_audited() {
    let audit = Arc::new(Audit::new(None).unwrap());
    let renewal = service(&audit);
    let mut events = audit.subscribe();
    let now = SystemTime::now();

    // An adversary without the agent's certificate: anonymous, a paired device, a local process.
    let anonymous = Principal::Anonymous;
    assert!(matches!(
        renewal.renew(request(&anonymous, false), now).await,
        Err(RenewError::Unauthenticated)
    ));
    for by in [
        Principal::Device {
            name: "phone".into(),
        },
        Principal::LocalProcess,
    ] {
        assert!(matches!(
            renewal.renew(request(&by, false), now).await,
            Err(RenewError::NotTheAgent)
        ));
    }
    assert!(events.try_recv().is_err(), "nothing to audit yet");

    // A local caller of the agent who got a renewal forwarded (the caller headers show it).
    let agent = operator();
    assert!(matches!(
        renewal.renew(request(&agent, true), now).await,
        Err(RenewError::Forwarded)
    ));
    let e = events.try_recv().unwrap();
    assert_eq!(e.kind, "renewal-refused");
    assert!(e.detail.starts_with("forwarded-caller:"), "{}", e.detail);
}

#[tokio::test]
async fn a_renewal_for_the_key_already_held_or_an_unreadable_csr_is_refused() {
    let audit = Arc::new(Audit::new(None).unwrap());
    let renewal = service(&audit);
    let agent = operator();
    let key = PrivateKey::generate().unwrap();
    let csr = key.certificate_signing_request_pem().unwrap();
    let held = netclaw_pki::issue::csr_public_key_bits(
        &netclaw_pki::issue::csr_from_pem(csr.as_bytes()).unwrap(),
    )
    .unwrap();
    let same_key = Request {
        by: &agent,
        presented_key: Some(&held),
        forwarded: false,
        csr_pem: csr.clone(),
    };
    assert!(matches!(
        renewal.renew(same_key, SystemTime::now()).await,
        Err(RenewError::KeyReused)
    ));
    let garbage = Request {
        by: &agent,
        presented_key: Some(&held),
        forwarded: false,
        csr_pem: "not a CSR".into(),
    };
    assert!(matches!(
        renewal.renew(garbage, SystemTime::now()).await,
        Err(RenewError::BadCsr)
    ));
    // A new key gets as far as the issuer, which this daemon does not have.
    let other = PrivateKey::generate().unwrap();
    let new_key = Request {
        by: &agent,
        presented_key: Some(&held),
        forwarded: false,
        csr_pem: other.certificate_signing_request_pem().unwrap(),
    };
    assert!(matches!(
        renewal.renew(new_key, SystemTime::now()).await,
        Err(RenewError::NoPki)
    ));
}
