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
