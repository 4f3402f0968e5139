use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::exit::ExitCode;

fn ctx(name: &str, endpoint: &str, token: &str) -> SavedContext {
    SavedContext::new(
        name.into(),
        endpoint.into(),
        "laptop".into(),
        Zeroizing::new(token.into()),
        Some("-----BEGIN CERTIFICATE-----\n".into()),
    )
    .unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn saved_contexts_round_trip_0600_in_a_0700_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("netclaw/contexts.json");
    assert!(
        Contexts::load(&path).unwrap().list.is_empty(),
        "missing file"
    );
    let mut all = Contexts::default();
    all.upsert(ctx("a", "https://a.example", "token-a"));
    all.upsert(ctx("b", "http://127.0.0.1:5199", "token-b"));
    all.current = Some("b".into());
    all.store(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);

    let back = Contexts::load(&path).unwrap();
    assert_eq!(back.current().unwrap().name, "b");
    assert_eq!(back.current().unwrap().token(), "token-b");
    assert_eq!(back.named("a").unwrap().endpoint, "https://a.example");
    assert!(back.named("a").unwrap().ca_pem.is_some());

    // Replacing keeps the order; removing the current one leaves none current.
    let mut back = back;
    back.upsert(ctx("a", "https://a2.example", "token-a2"));
    assert_eq!(back.list[0].endpoint, "https://a2.example");
    back.remove("b").unwrap();
    assert!(back.current.is_none());
    assert_eq!(back.remove("zzz").unwrap_err().exit_code(), ExitCode::Usage);
}

#[test]
fn a_contexts_file_others_can_read_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("contexts.json");
    let mut all = Contexts::default();
    all.upsert(ctx("a", "https://a.example", "token-a"));
    all.store(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        Contexts::load(&path).unwrap_err().exit_code(),
        ExitCode::Credentials
    );
    // The implicit choice of the current context refuses it too: only a file this user cannot
    // open at all is someone else's (tests/tests/system_install.rs runs that case as a user).
    assert_eq!(
        Contexts::load_own(&path).unwrap_err().exit_code(),
        ExitCode::Credentials
    );
}

#[test]
fn debug_never_shows_the_token() {
    let c = ctx("a", "https://a.example", "very-secret-token");
    let mut all = Contexts::default();
    all.upsert(c);
    let text = format!("{all:?}");
    assert!(!text.contains("very-secret-token"), "{text}");
    assert!(text.contains("[secret elided]"), "{text}");
}

#[test]
fn a_context_endpoint_follows_the_pair_join_rules() {
    let plain = SavedContext::new(
        "x".into(),
        "http://daemon.example".into(),
        "d".into(),
        Zeroizing::new("t".into()),
        None,
    );
    assert_eq!(plain.unwrap_err().exit_code(), ExitCode::Usage);
    let spaced = SavedContext::new(
        "two words".into(),
        "https://daemon.example".into(),
        "d".into(),
        Zeroizing::new("t".into()),
        None,
    );
    assert_eq!(spaced.unwrap_err().exit_code(), ExitCode::Usage);
}

#[test]
fn an_edited_file_with_a_plain_http_remote_endpoint_is_refused_when_used() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("contexts.json");
    let text = r#"{"current":"x","contexts":[{"name":"x","endpoint":"http://daemon.example","device":"d","token":"t"}]}"#;
    secure_fs::write_atomic(&path, text.as_bytes(), 0o600).unwrap();
    let all = Contexts::load(&path).unwrap();
    let e = all.current().unwrap().parsed_endpoint().unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Config);
}

#[test]
fn default_names() {
    let name = |u: &str| default_name(&Endpoint::parse(u).unwrap());
    assert_eq!(name("https://netclaw.example.com"), "netclaw.example.com");
    assert_eq!(
        name("https://netclaw.example.com:8443/"),
        "netclaw.example.com:8443"
    );
    assert_eq!(
        name("https://proxy.example/netclaw"),
        "proxy.example/netclaw"
    );
    assert_eq!(name("http://127.0.0.1:5199"), "127.0.0.1:5199");
    assert_eq!(name("http://[::1]:5199"), "[::1]:5199");
}
