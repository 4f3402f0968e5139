use super::*;
use crate::exit::{CliError, ExitCode};

#[test]
fn parses_the_three_forms() {
    assert_eq!(
        Endpoint::parse("http://127.0.0.1:6000")
            .unwrap()
            .to_string(),
        "http://127.0.0.1:6000"
    );
    assert_eq!(
        Endpoint::parse("https://daemon.example/netclaw/")
            .unwrap()
            .to_string(),
        "https://daemon.example:443/netclaw"
    );
    assert_eq!(
        Endpoint::parse("http://[::1]:5199").unwrap(),
        Endpoint::Http(HttpTarget {
            host: "::1".into(),
            port: 5199,
            base_path: String::new()
        })
    );
    assert_eq!(
        Endpoint::parse("unix:/run/netclaw/operator.sock").unwrap(),
        Endpoint::Unix("/run/netclaw/operator.sock".into())
    );
}

#[test]
fn rejects_other_forms_with_exit_64_naming_the_accepted_ones() {
    for bad in [
        "ftp://host",
        "unix:relative.sock",
        "http://user:pw@host",
        "http://host/?x=1",
        "host:5199",
        "",
    ] {
        let e = CliError::from(Endpoint::parse(bad).unwrap_err());
        assert_eq!(e.exit_code(), ExitCode::Config, "{bad}");
        assert!(
            e.to_string().contains("http://HOST[:PORT]") && e.to_string().contains("unix:/PATH"),
            "{}",
            e.to_string()
        );
    }
}

#[test]
fn wildcards_map_to_loopback() {
    assert_eq!(
        Endpoint::loopback("0.0.0.0".parse().unwrap(), 5199).to_string(),
        "http://127.0.0.1:5199"
    );
    assert_eq!(
        Endpoint::loopback("::".parse().unwrap(), 5199).to_string(),
        "http://[::1]:5199"
    );
    assert_eq!(
        Endpoint::loopback("127.0.0.2".parse().unwrap(), 1).to_string(),
        "http://127.0.0.2:1"
    );
}
