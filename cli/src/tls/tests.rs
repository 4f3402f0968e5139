use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

use netclaw_pki::issue::ListenerNames;
use netclaw_pki::OperatorCa;

use super::*;

fn ca_pem() -> String {
    let names = ListenerNames {
        ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        dns: Vec::new(),
    };
    OperatorCa::generate("test", &names, SystemTime::now())
        .unwrap()
        .certificate()
        .pem
        .clone()
}

fn env_with_cert_file(path: &Path) -> BTreeMap<String, String> {
    BTreeMap::from([(String::from("SSL_CERT_FILE"), path.display().to_string())])
}

#[test]
fn ssl_cert_file_from_the_env_is_the_system_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle.pem");
    std::fs::write(&bundle, format!("{}{}", ca_pem(), ca_pem())).unwrap();
    let store = roots(None, &env_with_cert_file(&bundle)).unwrap();
    assert_eq!(store.len(), 2);
}

#[test]
fn an_empty_or_missing_ssl_cert_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    assert!(roots(None, &env_with_cert_file(&empty)).is_err());
    let missing = tmp.path().join("missing.pem");
    assert!(roots(None, &env_with_cert_file(&missing)).is_err());
}

#[test]
fn the_ca_file_replaces_the_system_roots_and_must_parse_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, ca_pem()).unwrap();
    let empty = tmp.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    // The env's bundle is ignored when --ca-file is given.
    let store = roots(Some(&ca), &env_with_cert_file(&empty)).unwrap();
    assert_eq!(store.len(), 1);
    let bad = tmp.path().join("bad.pem");
    std::fs::write(
        &bad,
        format!(
            "{}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ca_pem()
        ),
    )
    .unwrap();
    assert!(roots(Some(&bad), &BTreeMap::new()).is_err());
}
