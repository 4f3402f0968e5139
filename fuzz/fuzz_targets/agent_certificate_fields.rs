//! Identity extraction from *signed* certificates: the input describes a leaf (subject
//! alternative names, extended key usages, CA flag, validity, issuer), the fixture CA signs it,
//! and the verifier's verdict is compared with the rule it implements. (Mutating a certificate's
//! bytes directly only ever tests the signature check; `certificate_identity` does that.)
//!
//! Input, one item per line (unknown lines are ignored):
//! `uri <text>`, `dns <name>`, `ip <addr>`, `email <addr>` (SANs, in order, at most 4);
//! `eku client|server|any|codesign`; `ca yes|no|absent` (default `no`);
//! `nb <minutes>` / `na <minutes>` (NotBefore `now + 60·nb − 30 s`, NotAfter `now + 60·na + 30 s`;
//! defaults −1 and 60); `issuer other` (a second CA).
//!
//! The rule: accepted exactly when the issuer is this host's operator CA, the validity window
//! contains now, the leaf is not a CA, its EKUs are clientAuth and nothing else (no serverAuth,
//! anyExtendedKeyUsage or codeSigning), and it carries exactly one SAN: the URI of this host's
//! operator-agent SPIFFE id, byte for byte.

#![no_main]

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use netclaw_fuzz::{agent_id, expected, host_id, now, CA};
use netclaw_pki::issue::ListenerNames;
use netclaw_pki::verify::verify_agent_certificate;
use netclaw_pki::OperatorCa;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

static OTHER_CA: LazyLock<OperatorCa> = LazyLock::new(|| {
    let names = ListenerNames {
        ips: vec![IpAddr::from([192, 0, 2, 10])],
        dns: Vec::new(),
    };
    OperatorCa::generate("other", &names, now()).expect("CA generation")
});

static LEAF_KEY: LazyLock<KeyPair> =
    LazyLock::new(|| KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("leaf key"));

static ISSUERS: LazyLock<[Issuer<'static, KeyPair>; 2]> = LazyLock::new(|| {
    let issuer = |ca: &OperatorCa| {
        let key = KeyPair::from_pem(ca.key().to_pem().as_str()).expect("CA key");
        Issuer::from_ca_cert_der(&ca.certificate().der, key).expect("issuer")
    };
    [issuer(&CA), issuer(&OTHER_CA)]
});

#[derive(Debug, Default)]
struct Leaf {
    sans: Vec<SanType>,
    client: bool,
    server: bool,
    any: bool,
    codesign: bool,
    ca: Option<bool>,
    nb: i64,
    na: i64,
    other_issuer: bool,
}

fn parse(data: &[u8]) -> Option<Leaf> {
    let text = std::str::from_utf8(data).ok()?;
    let mut leaf = Leaf {
        ca: Some(false),
        nb: -1,
        na: 60,
        ..Leaf::default()
    };
    for line in text.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "uri" => leaf
                .sans
                .push(SanType::URI(value.to_owned().try_into().ok()?)),
            "dns" => leaf
                .sans
                .push(SanType::DnsName(value.to_owned().try_into().ok()?)),
            "ip" => leaf.sans.push(SanType::IpAddress(value.parse().ok()?)),
            "email" => leaf
                .sans
                .push(SanType::Rfc822Name(value.to_owned().try_into().ok()?)),
            "eku" => match value {
                "client" => leaf.client = true,
                "server" => leaf.server = true,
                "any" => leaf.any = true,
                "codesign" => leaf.codesign = true,
                _ => {}
            },
            "ca" => {
                leaf.ca = match value {
                    "yes" => Some(true),
                    "absent" => None,
                    _ => Some(false),
                }
            }
            // Bounded to ±1000 minutes so that the windows stay far from time's limits.
            "nb" => leaf.nb = value.parse::<i64>().ok()?.clamp(-1000, 1000),
            "na" => leaf.na = value.parse::<i64>().ok()?.clamp(-1000, 1000),
            "issuer" => leaf.other_issuer = value == "other",
            _ => {}
        }
    }
    (leaf.sans.len() <= 4).then_some(leaf)
}

fn at(secs: i64) -> time::OffsetDateTime {
    let t = if secs >= 0 {
        now() + Duration::from_secs(secs as u64)
    } else {
        now() - Duration::from_secs(secs.unsigned_abs())
    };
    let unix = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fuzz_target!(|data: &[u8]| {
    let Some(leaf) = parse(data) else {
        return;
    };
    let mut params = CertificateParams::default();
    params.subject_alt_names = leaf.sans.clone();
    params.is_ca = match leaf.ca {
        Some(false) => IsCa::ExplicitNoCa,
        None => IsCa::NoCa,
        Some(true) => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    for (on, eku) in [
        (leaf.client, ExtendedKeyUsagePurpose::ClientAuth),
        (leaf.server, ExtendedKeyUsagePurpose::ServerAuth),
        (leaf.any, ExtendedKeyUsagePurpose::Any),
        (leaf.codesign, ExtendedKeyUsagePurpose::CodeSigning),
    ] {
        if on {
            params.extended_key_usages.push(eku);
        }
    }
    params.not_before = at(leaf.nb * 60 - 30);
    params.not_after = at(leaf.na * 60 + 30);
    params.use_authority_key_identifier_extension = true;
    let issuer = &ISSUERS[usize::from(leaf.other_issuer)];
    let Ok(cert) = params.signed_by(&*LEAF_KEY, issuer) else {
        return;
    };
    let bundle = [CA.certificate().der.clone()];
    let verdict = verify_agent_certificate(cert.der(), &bundle, &expected(), now());

    let want_uri = agent_id().to_string();
    let one_agent_uri = matches!(leaf.sans.as_slice(), [SanType::URI(u)] if u.as_str() == want_uri);
    let should_accept = !leaf.other_issuer
        && leaf.nb <= 0
        && leaf.na >= 0
        && leaf.ca != Some(true)
        && leaf.client
        && !leaf.server
        && !leaf.any
        && !leaf.codesign
        && one_agent_uri;
    match verdict {
        Ok(id) => {
            assert!(should_accept, "accepted {leaf:?}");
            assert_eq!(id.spiffe_id, agent_id());
            assert_eq!(id.host_id(), &host_id());
        }
        Err(e) => assert!(!should_accept, "refused {leaf:?}: {e}"),
    }
});
