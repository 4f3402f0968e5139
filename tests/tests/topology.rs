//! The trust boundary across real network hops: three hosts as network namespaces joined by veth
//! pairs (daemon-host, proxy-host, remote-host; see `netclaw_tests::topology`), a real nginx and
//! a real Caddy as the TLS-terminating reverse proxy, and the daemon, the operator agent and the
//! CLI as real processes. Each test is one row of the threat-model table in
//! `docs/operator-guide.md`.
//!
//! Needs real root, iproute2, util-linux, openssl, curl, nginx and caddy; skipped with the reason
//! printed where anything is missing, unless `NETCLAW_REQUIRE_NAMESPACES` is set.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use netclaw_tests::topology::{
    json, namespaces_in_use, process_exists, run, run_timed, ProxyKind, Role, Topology, CADDYFILE,
    DAEMON_IP, NGINX_SITE, OPERATOR_PORT, PROXY_INNER_IP, PROXY_URL, PUBLIC_PORT, REMOTE_IP,
    REMOTE_IP_2, REVERSE_PROXY,
};
use netclaw_tests::{agent_status, wait_for};

/// A reverse-proxy deployment with `kind` started on proxy-host.
fn behind(kind: ProxyKind, test: &str) -> Option<Topology> {
    let mut t = Topology::start(test, &[kind.program()], REVERSE_PROXY)?;
    t.start_proxy(kind).unwrap();
    Some(t)
}

/// `curl … URL` on `on`, printing the status after the body: (status, body). Panics when curl
/// gets no HTTP answer.
fn http(t: &Topology, on: Role, args: &[&str], url: &str) -> (u16, String) {
    let mut all = args.to_vec();
    all.extend(["-w", "\n%{http_code}", url]);
    let (code, out, err) = t.curl(on, &all).unwrap();
    assert_eq!(code, 0, "curl {all:?} failed: {err}\n{}", t.proxy_logs());
    let (body, status) = out.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_owned())
}

fn principal(body: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    v["principal"].clone()
}

fn bearer(token: &Path) -> String {
    format!(
        "Authorization: Bearer {}",
        std::fs::read_to_string(token).unwrap().trim()
    )
}

const WRONG_CODE: &str = r#"{"code":"2222-2222","deviceName":"guess"}"#;

// --- pairing and identities across the proxy -------------------------------------------------

fn pairing_and_identities(kind: ProxyKind, test: &str) {
    let Some(t) = behind(kind, test) else {
        return;
    };

    // The operator on daemon-host reaches the daemon through the agent as LocalOperator.
    let who = json(t.operator(&["whoami", "--json"])).unwrap();
    assert_eq!(who["principal"], "LocalOperator", "{who}");
    assert_eq!(who["transport"], "operator-mtls", "{who}");

    // `netclaw pair` through the agent; remote-host exchanges the code through the proxy over
    // HTTPS (trusting the proxy's CA only) and stores its token 0600.
    let token = t.pair_remote_device("phone").unwrap();
    let mode = std::fs::metadata(&token).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "token file mode {mode:o}");
    // The daemon saw the device's own address, forwarded by the trusted proxy.
    t.wait_audit("device-paired", &format!("device phone from {REMOTE_IP}"))
        .unwrap();

    // The remote device's CLI, with its bearer token through the proxy, is Device(phone).
    let who = json(t.device(&token, &["whoami", "--json"])).unwrap();
    assert_eq!(who["principal"], "Device", "{who}");
    assert_eq!(who["name"], "phone", "{who}");
    assert_eq!(who["transport"], "bearer", "{who}");

    // A device has no host authority: refused (exit 4).
    for args in [&["pair"][..], &["devices", "list"]] {
        let (code, out, err) = run(t.device(&token, args)).unwrap();
        assert_eq!(code, 4, "device {args:?}: {out}{err}");
    }

    // The WebSocket hub through the proxy: the upgrade reaches the daemon for the device, and
    // anonymous clients are refused before it.
    let ws = [
        "--http1.1",
        "-m",
        "3",
        "-o",
        "/dev/null",
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: websocket",
        "-H",
        "Sec-WebSocket-Version: 13",
        "-H",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "-w",
        "%{http_code}",
    ];
    let url = format!("{PROXY_URL}/hub/session");
    let auth = bearer(&token);
    let mut with_token = ws.to_vec();
    with_token.extend(["-H", &auth, &url]);
    let (_, status, _) = t.curl(Role::Remote, &with_token).unwrap();
    assert_eq!(status, "101", "{}", t.proxy_logs());
    let mut anonymous = ws.to_vec();
    anonymous.push(&url);
    let (_, status, _) = t.curl(Role::Remote, &anonymous).unwrap();
    assert_eq!(status, "401");

    // netclaw's form on a second device: `netclaw pair URL` with the code from `netclaw daemon
    // pair` and the device name on standard input, trusting the proxy's CA once; afterwards the
    // device needs no flags at all: its saved context carries the endpoint, the token and the CA.
    let minted = json(t.operator(&["daemon", "pair", "--json"])).unwrap();
    let code = minted["formattedCode"].as_str().unwrap().to_owned();
    let mut pair = t.netclaw(Role::Remote);
    pair.args(["pair", &format!("{PROXY_URL}/"), "--ca-file"])
        .arg(&t.tls.ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = pair.spawn().unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        format!("{code}\nlaptop\n").as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "netclaw pair: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let who = json({
        let mut c = t.netclaw(Role::Remote);
        c.args(["whoami", "--json"]);
        c
    })
    .unwrap();
    assert_eq!(who["principal"], "Device", "{who}");
    assert_eq!(who["name"], "laptop", "{who}");

    // The operator lists and revokes the device; its token is refused from then on.
    let devices = json(t.operator(&["devices", "list", "--json"])).unwrap();
    assert!(
        devices
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "phone"),
        "{devices}"
    );
    let (code, out, err) = run(t.operator(&["devices", "revoke", "phone"])).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(t.device(&token, &["whoami"])).unwrap();
    assert_eq!(code, 4, "revoked token: {out}{err}");
}

#[test]
fn nginx_pairing_gives_the_operator_local_operator_and_the_remote_device_device() {
    pairing_and_identities(
        ProxyKind::Nginx,
        "nginx_pairing_gives_the_operator_local_operator_and_the_remote_device_device",
    );
}

#[test]
fn caddy_pairing_gives_the_operator_local_operator_and_the_remote_device_device() {
    pairing_and_identities(
        ProxyKind::Caddy,
        "caddy_pairing_gives_the_operator_local_operator_and_the_remote_device_device",
    );
}

// --- X-Forwarded-For --------------------------------------------------------------------------

fn forwarded_for_is_one_hop(kind: ProxyKind, test: &str) {
    let Some(t) = behind(kind, test) else {
        return;
    };
    // A pending code, so that guesses count as wrong codes.
    json(t.operator(&["pair", "--json"])).unwrap();
    let through_proxy = format!("{PROXY_URL}/api/pair/exchange");
    let direct = format!("http://{DAEMON_IP}:{PUBLIC_PORT}/api/pair/exchange");
    let guess = |from: &str, spoof: &str, url: &str| -> u16 {
        let xff = format!("X-Forwarded-For: {spoof}");
        let args = [
            "--interface",
            from,
            "-o",
            "/dev/null",
            "-H",
            &xff,
            "-H",
            "Content-Type: application/json",
            "--data",
            WRONG_CODE,
        ];
        http(&t, Role::Remote, &args, url).0
    };

    // Through the proxy with a spoofed X-Forwarded-For: the daemon uses the entry the proxy
    // added, the device's real address.
    assert_eq!(guess(REMOTE_IP, "127.0.0.1", &through_proxy), 401);
    t.wait_audit("pairing-failed", &format!("wrong code from {REMOTE_IP}"))
        .unwrap();

    // The limiter counts per forwarded address: 5 wrong codes from 198.51.100.20, whatever it
    // claims to be, lock that address out (429) …
    for spoof in ["198.51.100.99", "203.0.113.7", "127.0.0.1, 198.51.100.98"] {
        assert_eq!(guess(REMOTE_IP, spoof, &through_proxy), 401);
    }
    assert_eq!(guess(REMOTE_IP, PROXY_INNER_IP, &through_proxy), 401);
    assert_eq!(guess(REMOTE_IP, "198.51.100.97", &through_proxy), 429);
    // … while another client behind the same proxy is not throttled.
    assert_eq!(guess(REMOTE_IP_2, REMOTE_IP_2, &through_proxy), 401);

    // Straight to the public listener (routed through proxy-host, as on a flat network): an
    // untrusted peer's X-Forwarded-For is ignored. The throttled client stays throttled, and
    // the other one is recorded under its own address.
    assert_eq!(guess(REMOTE_IP, "198.51.100.96", &direct), 429);
    assert_eq!(guess(REMOTE_IP_2, "127.0.0.1", &direct), 401);
    t.wait_audit("pairing-failed", &format!("wrong code from {REMOTE_IP_2}"))
        .unwrap();
    let spoofed: Vec<_> = t
        .audit()
        .into_iter()
        .filter(|e| {
            let d = e["detail"].as_str().unwrap_or("");
            [
                "127.0.0.1",
                "198.51.100.99",
                "198.51.100.98",
                "198.51.100.97",
                "198.51.100.96",
                "203.0.113.7",
                PROXY_INNER_IP,
            ]
            .iter()
            .any(|a| d.contains(a))
        })
        .collect();
    assert!(
        spoofed.is_empty(),
        "spoofed addresses in audit: {spoofed:?}"
    );

    // And a loopback X-Forwarded-For earns no identity, directly or through the proxy.
    for url in [
        format!("http://{DAEMON_IP}:{PUBLIC_PORT}/api/whoami"),
        format!("{PROXY_URL}/api/whoami"),
    ] {
        let (status, body) = http(
            &t,
            Role::Remote,
            &["-H", "X-Forwarded-For: 127.0.0.1"],
            &url,
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(principal(&body), "Anonymous", "{url}: {body}");
    }
}

#[test]
fn nginx_forwarded_for_is_one_hop_and_spoofing_is_ignored() {
    forwarded_for_is_one_hop(
        ProxyKind::Nginx,
        "nginx_forwarded_for_is_one_hop_and_spoofing_is_ignored",
    );
}

#[test]
fn caddy_forwarded_for_is_one_hop_and_spoofing_is_ignored() {
    forwarded_for_is_one_hop(
        ProxyKind::Caddy,
        "caddy_forwarded_for_is_one_hop_and_spoofing_is_ignored",
    );
}

// --- Netclaw-Operator-* and client-certificate headers ----------------------------------------

fn operator_headers_change_nothing(kind: ProxyKind, test: &str) {
    let Some(t) = behind(kind, test) else {
        return;
    };
    let serial = agent_status(&t.install.socket().unwrap()).unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    let serial_header = format!("Netclaw-Operator-Serial: {serial}");
    let forged = [
        "-H",
        "Netclaw-Operator-Caller-Uid: 0",
        "-H",
        "Netclaw-Operator-Caller-User: root",
        "-H",
        "Netclaw-Operator-Caller-Pid: 1",
        "-H",
        &serial_header,
        "-H",
        "X-Forwarded-Client-Cert: Hash=00;URI=spiffe://netclaw.internal/host/x/operator-agent",
        "-H",
        "X-SSL-Client-Verify: SUCCESS",
        "-H",
        "X-Client-Cert: forged",
    ];
    let whoami = format!("{PROXY_URL}/api/whoami");
    let mint = format!("{PROXY_URL}/api/local-control/v1/pairing-code");
    let devices = format!("{PROXY_URL}/api/pair/devices");

    // Anonymous with the headers.
    let (status, body) = http(&t, Role::Remote, &forged, &whoami);
    assert_eq!(status, 200, "{body}");
    assert_eq!(principal(&body), "Anonymous", "{body}");
    let mut post = forged.to_vec();
    post.extend(["-X", "POST"]);
    assert_eq!(http(&t, Role::Remote, &post, &mint).0, 401);
    assert_eq!(http(&t, Role::Remote, &forged, &devices).0, 401);

    // A paired device with the headers is still only Device(tablet).
    let token = t.pair_remote_device("tablet").unwrap();
    let auth = bearer(&token);
    let mut device = forged.to_vec();
    device.extend(["-H", &auth]);
    let (_, body) = http(&t, Role::Remote, &device, &whoami);
    assert_eq!(principal(&body), "Device", "{body}");
    let mut device_post = device.clone();
    device_post.extend(["-X", "POST"]);
    assert_eq!(http(&t, Role::Remote, &device_post, &mint).0, 403);
    assert_eq!(http(&t, Role::Remote, &device, &devices).0, 403);

    // The headers did pass the proxy: the daemon stripped and logged them.
    let log = t.daemon_log();
    for h in [
        "netclaw-operator-caller-uid",
        "netclaw-operator-serial",
        "x-forwarded-client-cert",
        "x-ssl-client-verify",
    ] {
        assert!(
            log.contains("stripped identity headers") && log.contains(h),
            "{h} not stripped:\n{log}"
        );
    }
}

#[test]
fn nginx_operator_headers_change_nothing() {
    operator_headers_change_nothing(ProxyKind::Nginx, "nginx_operator_headers_change_nothing");
}

#[test]
fn caddy_operator_headers_change_nothing() {
    operator_headers_change_nothing(ProxyKind::Caddy, "caddy_operator_headers_change_nothing");
}

// --- a proxy on the daemon host ---------------------------------------------------------------

#[test]
fn same_host_nginx_forwarding_over_loopback_earns_nothing() {
    let test = "same_host_nginx_forwarding_over_loopback_earns_nothing";
    // Even with the same-host proxy trusted for X-Forwarded-For (its connections come from the
    // host's own address), nothing it forwards gets host authority. (Trusting 127.0.0.1 too is
    // refused at install in reverse-proxy mode; a connection from loopback is never a trusted
    // proxy there.)
    let mut install = REVERSE_PROXY.to_vec();
    install.extend(["--trusted-proxy", DAEMON_IP]);
    let Some(mut t) = Topology::start(test, &["nginx"], &install) else {
        return;
    };
    // The documented site, unchanged, on daemon-host (it connects from 192.0.2.10 over lo) …
    t.start_nginx(Role::Daemon, &t.nginx_site(), 443).unwrap();
    // … and a variant that connects from 127.0.0.1, on port 8443.
    let from_loopback = t
        .nginx_site()
        .replace("listen 443 ssl;", "listen 8443 ssl;")
        .replace(
            "proxy_pass http://192.0.2.10:5199;",
            "proxy_pass http://192.0.2.10:5199;\n        proxy_bind 127.0.0.1;",
        );
    assert_ne!(from_loopback, t.nginx_site());
    t.start_nginx(Role::Daemon, &from_loopback, 8443).unwrap();

    for endpoint in ["https://127.0.0.1", "https://127.0.0.1:8443"] {
        let cli = |args: &[&str]| {
            let mut c = t.netclaw(Role::Daemon);
            c.args(["--endpoint", endpoint, "--ca-file"])
                .arg(&t.tls.ca)
                .args(args);
            c
        };
        // A local user (root, even) going through the same-host proxy is Anonymous …
        let who = json(cli(&["whoami", "--json"])).unwrap();
        assert_eq!(who["principal"], "Anonymous", "{endpoint}: {who}");
        // … and host-authority routes are refused (401: exit 4).
        for args in [&["pair"][..], &["devices", "list"], &["events"]] {
            let (code, out, err) = run(cli(args)).unwrap();
            assert_eq!(code, 4, "{endpoint} {args:?}: {out}{err}");
        }
        // A remote request the same-host proxy forwards is Anonymous too.
        let url = format!("{}/api/whoami", endpoint.replace("127.0.0.1", DAEMON_IP));
        let (status, body) = http(&t, Role::Remote, &[], &url);
        assert_eq!(status, 200, "{body}");
        assert_eq!(principal(&body), "Anonymous", "{url}: {body}");
    }
    // Both proxies did forward (the daemon answered them): their access logs show the requests.
    let logs = t.proxy_logs();
    assert!(logs.matches("/api/whoami").count() >= 4, "{logs}");

    // The agent on the same host still works.
    let who = json(t.operator(&["whoami", "--json"])).unwrap();
    assert_eq!(who["principal"], "LocalOperator", "{who}");
}

// --- the agent's certificate on another host --------------------------------------------------

#[test]
fn agent_certificate_copied_to_remote_host_is_refused_by_source() {
    let test = "agent_certificate_copied_to_remote_host_is_refused_by_source";
    let Some(t) = Topology::start(test, &[], REVERSE_PROXY) else {
        return;
    };
    // The attacker has the agent's certificate, key and CA bundle on remote-host.
    let stolen = t.remote_dir().join("stolen");
    std::fs::create_dir_all(&stolen).unwrap();
    let (crt, key, bundle) = t.agent_credentials();
    for f in [&crt, &key, &bundle] {
        std::fs::copy(f, stolen.join(f.file_name().unwrap())).unwrap();
    }
    let operator_url = format!("https://{DAEMON_IP}:{OPERATOR_PORT}/api/whoami");
    let with_cert = |on: Role| {
        let mut c = t.host(on).command("curl");
        c.args(["-sS", "-m", "10", "--tlsv1.3", "--cacert"])
            .arg(stolen.join("ca-bundle.crt"))
            .arg("--cert")
            .arg(stolen.join("client.crt"))
            .arg("--key")
            .arg(stolen.join("client.key"))
            .arg(&operator_url);
        run(c).unwrap()
    };

    // The copies are good: used from daemon-host itself they are accepted.
    let (code, out, err) = with_cert(Role::Daemon);
    assert_eq!(code, 0, "{err}");
    assert_eq!(principal(&out), "LocalOperator", "{out}");

    // From remote-host (routed to the operator listener through proxy-host) the connection is
    // dropped before TLS: its address is not one of daemon-host's (Operator.AllowedSources).
    let (code, out, err) = with_cert(Role::Remote);
    assert_ne!(code, 0, "accepted from remote-host: {out}");
    assert!(!out.contains("LocalOperator"), "{out}");
    t.wait_audit(
        "handshake-refused",
        &format!("source-not-allowed: {REMOTE_IP}"),
    )
    .unwrap_or_else(|e| panic!("{e:#}\ncurl: {err}"));

    // The same with openssl s_client: no handshake, no response.
    let mut s_client = t.host(Role::Remote).command("timeout");
    s_client
        .args(["10", "openssl", "s_client", "-tls1_3", "-quiet", "-connect"])
        .arg(format!("{DAEMON_IP}:{OPERATOR_PORT}"))
        .arg("-cert")
        .arg(stolen.join("client.crt"))
        .arg("-key")
        .arg(stolen.join("client.key"))
        .arg("-CAfile")
        .arg(stolen.join("ca-bundle.crt"));
    s_client.stdin(std::process::Stdio::null());
    let (code, out, err) = run(s_client).unwrap();
    assert_ne!(code, 0, "s_client: {out}{err}");
    assert!(!out.contains("HTTP/1.1"), "{out}");
}

// --- tunnel modes -----------------------------------------------------------------------------

fn tunnel_mode_grants_no_loopback_trust(mode: &str, test: &str) {
    let install = [
        "--exposure",
        mode,
        "--bind",
        "127.0.0.1",
        "--skip-tunnel-process-check",
    ];
    let Some(mut t) = Topology::start(test, &["nginx"], &install) else {
        return;
    };
    assert_eq!(t.config()["Daemon"]["ExposureMode"], mode);
    // The tunnel's local forwarder (what `tailscale serve` or `cloudflared` do): the documented
    // nginx site on daemon-host, forwarding over loopback to the daemon bound to 127.0.0.1.
    let forwarder = t
        .nginx_site()
        .replace("http://192.0.2.10:5199", "http://127.0.0.1:5199");
    t.start_nginx(Role::Daemon, &forwarder, 443).unwrap();
    let tunnel_url = format!("https://{DAEMON_IP}");

    // Through the forwarder: Anonymous, and host-authority routes refused.
    let (status, body) = http(&t, Role::Remote, &[], &format!("{tunnel_url}/api/whoami"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(principal(&body), "Anonymous", "{body}");
    let mint = format!("{tunnel_url}/api/local-control/v1/pairing-code");
    assert_eq!(http(&t, Role::Remote, &["-X", "POST"], &mint).0, 401);

    // A process on the host itself, straight over loopback: Anonymous, `pair` refused (exit 4).
    let loopback = |args: &[&str]| {
        let mut c = t.netclaw(Role::Daemon);
        c.args(["--endpoint", "http://127.0.0.1:5199"]).args(args);
        c
    };
    let who = json(loopback(&["whoami", "--json"])).unwrap();
    assert_eq!(who["principal"], "Anonymous", "{who}");
    assert_eq!(who["transport"], "none", "{who}");
    let (code, out, err) = run(loopback(&["pair"])).unwrap();
    assert_eq!(code, 4, "{out}{err}");

    // Through the agent: LocalOperator, and `pair` works.
    let who = json(t.operator(&["whoami", "--json"])).unwrap();
    assert_eq!(who["principal"], "LocalOperator", "{who}");
    let minted = json(t.operator(&["pair", "--json"])).unwrap();
    assert!(minted["formattedCode"].is_string(), "{minted}");

    // Without the agent the CLI does not fall back to loopback: exit 3, naming the mode.
    t.stop_agent();
    let (code, out, err) = run(t.operator(&["pair"])).unwrap();
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains(mode), "{err}");
}

#[test]
fn tailscale_serve_grants_no_loopback_trust() {
    tunnel_mode_grants_no_loopback_trust(
        "tailscale-serve",
        "tailscale_serve_grants_no_loopback_trust",
    );
}

#[test]
fn tailscale_funnel_grants_no_loopback_trust() {
    tunnel_mode_grants_no_loopback_trust(
        "tailscale-funnel",
        "tailscale_funnel_grants_no_loopback_trust",
    );
}

#[test]
fn cloudflare_tunnel_grants_no_loopback_trust() {
    tunnel_mode_grants_no_loopback_trust(
        "cloudflare-tunnel",
        "cloudflare_tunnel_grants_no_loopback_trust",
    );
}

// --- daemon restart while the agent runs ------------------------------------------------------

#[test]
fn daemon_restart_cli_reports_unreachable_quickly_and_the_agent_reconnects() {
    let test = "daemon_restart_cli_reports_unreachable_quickly_and_the_agent_reconnects";
    let Some(mut t) = behind(ProxyKind::Nginx, test) else {
        return;
    };
    let token = t.pair_remote_device("laptop").unwrap();
    let agent_pid = t.agent().unwrap().pid();
    let whoami = ["whoami", "--json"];

    // A frozen daemon (accepts nothing, answers nothing): the CLI gives up at its 10 s deadline
    // with exit 3, on daemon-host through the agent and on remote-host through nginx.
    let daemon = t.daemon().unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGSTOP).unwrap();
    let frozen = [
        run_timed(t.operator(&whoami)).unwrap(),
        run_timed(t.device(&token, &whoami)).unwrap(),
    ];
    t.daemon()
        .unwrap()
        .signal(nix::sys::signal::Signal::SIGCONT)
        .unwrap();
    for (code, out, err, took) in frozen {
        assert_eq!(code, 3, "frozen daemon: {out}{err}");
        assert!(took < Duration::from_secs(15), "took {took:?}: {err}");
    }

    // The daemon stopped: exit 3 at once, naming the unreachable daemon.
    t.stop_daemon();
    let (code, out, err, took) = run_timed(t.operator(&whoami)).unwrap();
    assert_eq!(code, 3, "{out}{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(err.contains("unreachable"), "{err}");
    let (code, out, err, took) = run_timed(t.operator(&["pair"])).unwrap();
    assert_eq!(code, 3, "{out}{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let (code, out, err, took) = run_timed(t.device(&token, &whoami)).unwrap();
    assert_eq!(code, 3, "through nginx: {out}{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The agent itself stays up and says so.
    let status = agent_status(&t.install.socket().unwrap()).unwrap();
    assert_eq!(status["daemonReachable"], false, "{status}");

    // The daemon is back: the same agent process reconnects by itself, on the first request.
    t.start_daemon().unwrap();
    let who = json(t.operator(&whoami)).unwrap_or_else(|e| {
        panic!(
            "first request after the restart: {e:#}\nagent log:\n{}",
            t.agent_log()
        )
    });
    assert_eq!(who["principal"], "LocalOperator", "{who}");
    assert_eq!(t.agent().unwrap().pid(), agent_pid);
    let who = json(t.device(&token, &whoami)).unwrap();
    assert_eq!(who["principal"], "Device", "{who}");
    wait_for(
        "the agent to report the daemon",
        Duration::from_secs(10),
        || {
            let s = agent_status(&t.install.socket().unwrap()).ok()?;
            (s["daemonReachable"] == true).then_some(())
        },
    )
    .unwrap();
}

// --- teardown ---------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Left {
    pids: Vec<u32>,
    namespaces: Vec<std::path::PathBuf>,
    dirs: Vec<std::path::PathBuf>,
}

#[test]
fn a_failing_test_still_tears_down_processes_namespaces_and_files() {
    let test = "a_failing_test_still_tears_down_processes_namespaces_and_files";
    let left = Mutex::new(None::<Left>);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Some(mut t) = Topology::start(test, &["nginx", "caddy"], REVERSE_PROXY) else {
            return;
        };
        t.start_proxy(ProxyKind::Nginx).unwrap();
        t.start_caddy(Role::Daemon, &t.caddyfile(), 443).unwrap();
        *left.lock().unwrap() = Some(Left {
            pids: t.pids(),
            namespaces: t.namespace_ids(),
            dirs: vec![t.dir().to_owned(), t.install.root.path().to_owned()],
        });
        panic!("deliberate failure: the topology must still be torn down");
    }));
    let Some(left) = left.into_inner().unwrap() else {
        return; // skipped
    };
    assert!(outcome.is_err());
    // 3 holders, daemon, agent, nginx master and worker, caddy.
    assert!(left.pids.len() >= 8, "{left:?}");
    assert_eq!(left.namespaces.len(), 3, "{left:?}");
    let alive: Vec<_> = left.pids.iter().filter(|p| process_exists(**p)).collect();
    assert!(alive.is_empty(), "still running: {alive:?}");
    assert!(
        namespaces_in_use(&left.namespaces).is_empty(),
        "processes left in the test's namespaces"
    );
    for d in &left.dirs {
        assert!(!d.exists(), "{} not removed", d.display());
    }
    // No interface of the test network ever appears in this (the caller's) namespace.
    let links = std::process::Command::new("ip")
        .args(["-br", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains("to-proxy") && !links.contains("to-daemon") && !links.contains("to-remote"),
        "{links}"
    );
}

// --- the documentation shows what the tests run -----------------------------------------------

#[test]
fn the_operator_guide_quotes_the_proxy_configurations_the_tests_run() {
    let guide =
        std::fs::read_to_string(netclaw_tests::workspace_root().join("docs/operator-guide.md"))
            .unwrap();
    assert!(
        guide.contains(NGINX_SITE),
        "docs/operator-guide.md must quote netclaw_tests::topology::NGINX_SITE verbatim"
    );
    assert!(
        guide.contains(CADDYFILE),
        "docs/operator-guide.md must quote netclaw_tests::topology::CADDYFILE verbatim"
    );
}
