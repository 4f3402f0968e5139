use super::*;

#[test]
fn the_current_context_yields_to_explicit_choices_and_to_daemon_host_commands() {
    // Any command, nothing explicit: the current context.
    assert!(uses_current_context(false, true, false));
    // --endpoint / NETCLAW_ENDPOINT / NETCLAW_DAEMON_ENDPOINT.
    assert!(!uses_current_context(true, true, false));
    // `pair`, `daemon pair`, `pki rotate`: this host's daemon.
    assert!(!uses_current_context(false, false, false));
    // --config / NETCLAW_CONFIG.
    assert!(!uses_current_context(false, true, true));
}

fn ctx_for(args: &[&str], env: &std::collections::BTreeMap<String, String>) -> Context<'static> {
    use clap::Parser;
    let cli = Cli::parse_from(args);
    let env: &'static std::collections::BTreeMap<String, String> = Box::leak(Box::new(env.clone()));
    Context::new(&cli, env, std::time::SystemTime::UNIX_EPOCH)
}

fn missing(path: &str) -> CliError {
    CliError::Config(ConfigError::Read {
        path: path.into(),
        source: std::io::ErrorKind::NotFound.into(),
        fix: "run `netclaw daemon install`".into(),
    })
}

/// A missing default configuration is a device that has not paired; a named one keeps the
/// configuration error.
#[test]
fn a_missing_default_configuration_names_pair_join() {
    let none = std::collections::BTreeMap::new();
    let e = ctx_for(&["netclaw", "whoami"], &none).not_set_up(missing("/etc/netclaw/netclaw.json"));
    assert_eq!(e.exit_code(), crate::exit::ExitCode::Unreachable);
    insta::assert_snapshot!(e.to_string());

    let e = ctx_for(&["netclaw", "--config", "/x.json", "whoami"], &none)
        .not_set_up(missing("/x.json"));
    assert_eq!(e.exit_code(), crate::exit::ExitCode::Config);
    let mut env = std::collections::BTreeMap::new();
    env.insert(CONFIG_ENV.to_owned(), "/y.json".to_owned());
    let e = ctx_for(&["netclaw", "whoami"], &env).not_set_up(missing("/y.json"));
    assert_eq!(e.exit_code(), crate::exit::ExitCode::Config);
}

#[test]
fn endpoint_variables_in_order_and_the_context_variable() {
    let mut env = std::collections::BTreeMap::new();
    env.insert(
        "NETCLAW_DAEMON_ENDPOINT".to_owned(),
        "http://127.0.0.1:3".to_owned(),
    );
    assert_eq!(
        ctx_for(&["netclaw", "whoami"], &env)
            .explicit_endpoint
            .as_deref(),
        Some("http://127.0.0.1:3")
    );
    env.insert(
        "NETCLAW_ENDPOINT".to_owned(),
        "http://127.0.0.1:2".to_owned(),
    );
    assert_eq!(
        ctx_for(&["netclaw", "whoami"], &env)
            .explicit_endpoint
            .as_deref(),
        Some("http://127.0.0.1:2")
    );
    let flag = ctx_for(
        &["netclaw", "--endpoint", "http://127.0.0.1:1", "whoami"],
        &env,
    );
    assert_eq!(
        flag.explicit_endpoint.as_deref(),
        Some("http://127.0.0.1:1")
    );
    // Empty variables count as unset.
    let mut empty = std::collections::BTreeMap::new();
    empty.insert("NETCLAW_ENDPOINT".to_owned(), String::new());
    empty.insert("NETCLAW_CONTEXT".to_owned(), String::new());
    let c = ctx_for(&["netclaw", "whoami"], &empty);
    assert!(c.explicit_endpoint.is_none() && c.context_name.is_none());
    let mut named = std::collections::BTreeMap::new();
    named.insert("NETCLAW_CONTEXT".to_owned(), "home".to_owned());
    assert_eq!(
        ctx_for(&["netclaw", "whoami"], &named)
            .context_name
            .as_deref(),
        Some("home")
    );
    assert_eq!(
        ctx_for(&["netclaw", "--context", "work", "whoami"], &named)
            .context_name
            .as_deref(),
        Some("work")
    );
}
