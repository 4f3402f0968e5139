//! Every issued certificate is verified with webpki at fixed times, with the wrong-CA,
//! wrong-EKU, expired, not-yet-valid, wrong host-id and out-of-constraint cases rejected.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, SanType};

use super::*;
use crate::issue::{CertificateLifetime, ListenerNames};
use crate::{hostid, OperatorCa};

const DAY: Duration = Duration::from_secs(86_400);

fn now() -> SystemTime {
    // 2026-11-01T00:00:00Z, fixed.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_491_200)
}

fn names() -> ListenerNames {
    ListenerNames {
        ips: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))],
        dns: vec!["daemon-host".into()],
    }
}

fn host() -> HostId {
    hostid::from_machine_id(b"0123456789abcdef0123456789abcdef").unwrap()
}

fn td() -> TrustDomain {
    TrustDomain::DEFAULT.parse().unwrap()
}

fn expected() -> ExpectedAgent {
    ExpectedAgent {
        trust_domain: td(),
        host_id: host(),
    }
}

fn agent_id() -> SpiffeId {
    SpiffeId::operator_agent(td(), host())
}

fn ca() -> OperatorCa {
    OperatorCa::generate("test", &names(), now()).unwrap()
}

fn bundle(ca: &OperatorCa) -> Vec<CertificateDer<'static>> {
    vec![ca.certificate().der.clone()]
}

#[test]
fn agent_certificate_verifies_and_identity_is_extracted() {
    let ca = ca();
    let agent = ca
        .issue_agent(&agent_id(), now(), CertificateLifetime::default())
        .unwrap();
    let id = verify_agent_certificate(&agent.cert.der, &bundle(&ca), &expected(), now()).unwrap();
    assert_eq!(id.spiffe_id, agent_id());
    assert_eq!(id.serial, agent.cert.serial);
    assert_eq!(id.host_id(), &host());
    assert_eq!(id.not_after, now() + 30 * DAY);
    assert_eq!(id.not_before, now() - Duration::from_secs(60));
    check_key_matches(&agent.cert.der, &agent.key).unwrap();
}

#[test]
fn backdated_not_before_absorbs_small_skew() {
    let ca = ca();
    let agent = ca
        .issue_agent(&agent_id(), now(), CertificateLifetime::default())
        .unwrap();
    let early = now() - Duration::from_secs(59);
    verify_agent_certificate(&agent.cert.der, &bundle(&ca), &expected(), early).unwrap();
}

#[test]
fn skew_tolerance_moves_the_check_to_not_before_only_within_five_minutes() {
    let ca = ca();
    let agent = ca
        .issue_agent(&agent_id(), now(), CertificateLifetime::default())
        .unwrap();
    let nb = now() - Duration::from_secs(60);
    // On time, or behind by less than the tolerance: checked at NotBefore, accepted.
    assert_eq!(skew_tolerant_time(now(), nb), now());
    for behind in [
        Duration::from_secs(5 * 60),
        CLOCK_SKEW_TOLERANCE + Duration::from_secs(60),
    ] {
        let agent_clock = now() - behind;
        let at = skew_tolerant_time(agent_clock, nb);
        assert_eq!(at, nb, "{behind:?}");
        verify_agent_certificate(&agent.cert.der, &bundle(&ca), &expected(), at).unwrap();
    }
    // Further behind: the check stays at the host's clock and names both readings.
    let agent_clock = nb - CLOCK_SKEW_TOLERANCE - Duration::from_secs(1);
    let at = skew_tolerant_time(agent_clock, nb);
    assert_eq!(at, agent_clock);
    let err = verify_agent_certificate(&agent.cert.der, &bundle(&ca), &expected(), at)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not valid yet") && err.contains("clock"),
        "{err}"
    );
    assert!(err.contains("301 s earlier"), "{err}");
}

#[test]
fn csr_issuance_keeps_the_key_with_the_requester() {
    let ca = ca();
    let key = PrivateKey::generate().unwrap();
    let csr = key.certificate_signing_request().unwrap();
    let lifetime: CertificateLifetime = "2m".parse().unwrap();
    let cert = ca
        .issue_agent_from_csr(&csr, &agent_id(), now(), lifetime)
        .unwrap();
    check_key_matches(&cert.der, &key).unwrap();
    let id = verify_agent_certificate(&cert.der, &bundle(&ca), &expected(), now()).unwrap();
    assert_eq!(id.not_after, now() + Duration::from_secs(120));
}

#[test]
fn csr_with_bad_signature_or_garbage_is_rejected() {
    let ca = ca();
    let key = PrivateKey::generate().unwrap();
    let mut csr = key.certificate_signing_request().unwrap();
    let last = csr.len() - 1;
    csr[last] ^= 0x01;
    assert!(matches!(
        ca.issue_agent_from_csr(&csr, &agent_id(), now(), CertificateLifetime::default()),
        Err(PkiError::BadCsr(_))
    ));
    assert!(ca
        .issue_agent_from_csr(
            b"\x30\x03\x02\x01\x00",
            &agent_id(),
            now(),
            CertificateLifetime::default()
        )
        .is_err());
}

#[test]
fn server_certificate_verifies_for_its_names_only() {
    let ca = ca();
    let server = ca.issue_server(&names(), now()).unwrap();
    let b = bundle(&ca);
    let ip = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)).into());
    verify_server_certificate(&server.cert.der, &b, &ip, now()).unwrap();
    let dns = ServerName::try_from("daemon-host").unwrap();
    verify_server_certificate(&server.cert.der, &b, &dns, now()).unwrap();
    let other = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)).into());
    assert!(verify_server_certificate(&server.cert.der, &b, &other, now()).is_err());
}

#[test]
fn wrong_ca_is_rejected() {
    let ca = ca();
    let other = OperatorCa::generate("other", &names(), now()).unwrap();
    let agent = other
        .issue_agent(&agent_id(), now(), CertificateLifetime::default())
        .unwrap();
    let err =
        verify_agent_certificate(&agent.cert.der, &bundle(&ca), &expected(), now()).unwrap_err();
    assert!(matches!(err, PkiError::Verify(_)), "{err}");
}

#[test]
fn wrong_eku_is_rejected() {
    let ca = ca();
    // The server certificate (serverAuth) presented as a client certificate.
    let server = ca.issue_server(&names(), now()).unwrap();
    assert!(verify_agent_certificate(&server.cert.der, &bundle(&ca), &expected(), now()).is_err());
    // An agent-shaped certificate carrying serverAuth as well as clientAuth.
    let cert = custom_leaf(&ca, |p| {
        p.subject_alt_names = vec![SanType::URI(agent_id().to_string().try_into().unwrap())];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
    });
    let err = verify_agent_certificate(&cert, &bundle(&ca), &expected(), now()).unwrap_err();
    assert!(matches!(err, PkiError::WrongIdentity(_)), "{err}");
    // clientAuth with any other purpose besides: codeSigning, emailProtection, an unknown OID.
    for extra in [
        ExtendedKeyUsagePurpose::CodeSigning,
        ExtendedKeyUsagePurpose::EmailProtection,
        ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 4, 1, 99999, 1]),
    ] {
        let cert = custom_leaf(&ca, |p| {
            p.subject_alt_names = vec![SanType::URI(agent_id().to_string().try_into().unwrap())];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth, extra.clone()];
        });
        let err = verify_agent_certificate(&cert, &bundle(&ca), &expected(), now()).unwrap_err();
        assert!(
            err.to_string().contains("EKU clientAuth only"),
            "{extra:?}: {err}"
        );
    }
    // No EKU at all.
    let cert = custom_leaf(&ca, |p| {
        p.subject_alt_names = vec![SanType::URI(agent_id().to_string().try_into().unwrap())];
    });
    assert!(verify_agent_certificate(&cert, &bundle(&ca), &expected(), now()).is_err());
    // The agent certificate presented as a server certificate.
    let agent = ca
        .issue_agent(&agent_id(), now(), CertificateLifetime::default())
        .unwrap();
    let ip = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)).into());
    assert!(verify_server_certificate(&agent.cert.der, &bundle(&ca), &ip, now()).is_err());
}

#[test]
fn expired_and_not_yet_valid_are_rejected() {
    let ca = ca();
    let agent = ca
        .issue_agent(&agent_id(), now(), CertificateLifetime::default())
        .unwrap();
    let b = bundle(&ca);
    let after = now() + 30 * DAY + Duration::from_secs(1);
    let err = verify_agent_certificate(&agent.cert.der, &b, &expected(), after).unwrap_err();
    assert!(err.to_string().contains("Expired"), "{err}");
    let before = now() - Duration::from_secs(61);
    let err = verify_agent_certificate(&agent.cert.der, &b, &expected(), before).unwrap_err();
    assert!(err.to_string().contains("NotValidYet"), "{err}");
}

#[test]
fn wrong_host_id_and_trust_domain_are_rejected() {
    let ca = ca();
    let other_host = hostid::from_machine_id(b"ffffffffffffffffffffffffffffffff").unwrap();
    let id = SpiffeId::operator_agent(td(), other_host);
    let agent = ca
        .issue_agent(&id, now(), CertificateLifetime::default())
        .unwrap();
    let err =
        verify_agent_certificate(&agent.cert.der, &bundle(&ca), &expected(), now()).unwrap_err();
    assert!(err.to_string().contains("host-id"), "{err}");

    let id = SpiffeId::operator_agent("other.example".parse().unwrap(), host());
    let agent = ca
        .issue_agent(&id, now(), CertificateLifetime::default())
        .unwrap();
    let err =
        verify_agent_certificate(&agent.cert.der, &bundle(&ca), &expected(), now()).unwrap_err();
    assert!(err.to_string().contains("trust domain"), "{err}");
}

#[test]
fn out_of_constraint_names_are_rejected() {
    let ca = ca();
    let b = bundle(&ca);
    // A server certificate for an address outside the CA's constraints.
    let outside = custom_leaf(&ca, |p| {
        p.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(
            198, 51, 100, 7,
        )))];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)).into());
    let err = verify_server_certificate(&outside, &b, &name, now()).unwrap_err();
    assert!(err.to_string().contains("NameConstraint"), "{err}");
    // An agent certificate that also claims a DNS name outside the constraints.
    let dns = custom_leaf(&ca, |p| {
        p.subject_alt_names = vec![
            SanType::URI(agent_id().to_string().try_into().unwrap()),
            SanType::DnsName("evil.example".try_into().unwrap()),
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });
    let err = verify_agent_certificate(&dns, &b, &expected(), now()).unwrap_err();
    assert!(err.to_string().contains("NameConstraint"), "{err}");
    // Inside the constraints but with a second SAN: still not an agent identity.
    let two = custom_leaf(&ca, |p| {
        p.subject_alt_names = vec![
            SanType::URI(agent_id().to_string().try_into().unwrap()),
            SanType::DnsName("daemon-host".try_into().unwrap()),
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });
    let err = verify_agent_certificate(&two, &b, &expected(), now()).unwrap_err();
    assert!(matches!(err, PkiError::WrongIdentity(_)), "{err}");
}

#[test]
fn malformed_spiffe_uri_is_rejected() {
    let ca = ca();
    let cert = custom_leaf(&ca, |p| {
        p.subject_alt_names = vec![SanType::URI(
            format!(
                "spiffe://{}/host/{}/operator-agent/extra",
                TrustDomain::DEFAULT,
                host()
            )
            .try_into()
            .unwrap(),
        )];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });
    let err = verify_agent_certificate(&cert, &bundle(&ca), &expected(), now()).unwrap_err();
    assert!(matches!(err, PkiError::InvalidSpiffeId(_)), "{err}");
}

#[test]
fn mismatched_key_is_detected() {
    let ca = ca();
    let agent = ca
        .issue_agent(&agent_id(), now(), CertificateLifetime::default())
        .unwrap();
    let other = PrivateKey::generate().unwrap();
    assert!(matches!(
        check_key_matches(&agent.cert.der, &other),
        Err(PkiError::KeyMismatch)
    ));
}

#[test]
fn lifetimes_parse() {
    assert_eq!(
        "30d".parse::<CertificateLifetime>().unwrap().duration(),
        30 * DAY
    );
    assert_eq!(
        "2m".parse::<CertificateLifetime>().unwrap().duration(),
        Duration::from_secs(120)
    );
    assert_eq!(
        "2m".parse::<CertificateLifetime>().unwrap().to_string(),
        "2m"
    );
    for bad in [
        "",
        "d",
        "30",
        "30w",
        "-1d",
        "1s",
        "400d",
        "1.5d",
        "99999999999d",
        " 1d",
    ] {
        assert!(bad.parse::<CertificateLifetime>().is_err(), "{bad:?}");
    }
}

/// A leaf signed by `ca` with parameters the issuing API would never produce.
fn custom_leaf(
    ca: &OperatorCa,
    tweak: impl FnOnce(&mut CertificateParams),
) -> CertificateDer<'static> {
    let key = PrivateKey::generate().unwrap();
    let mut p = CertificateParams::default();
    p.not_before = time::OffsetDateTime::from(now() - DAY);
    p.not_after = time::OffsetDateTime::from(now() + DAY);
    tweak(&mut p);
    let issuer =
        Issuer::from_ca_cert_der(&ca.certificate().der, ca.key().key_pair().unwrap()).unwrap();
    p.signed_by(&key.key_pair().unwrap(), &issuer)
        .unwrap()
        .der()
        .clone()
}
