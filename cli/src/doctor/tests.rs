use std::collections::BTreeMap;
use std::path::PathBuf;

use netclaw_pki::identity::from_unix_seconds;

use super::*;
use crate::pki_status::KeyStatus;

const HOST_A: &str = "0123456789abcdef0123456789abcdef";
const HOST_B: &str = "fedcba9876543210fedcba9876543210";
const NOW: u64 = 1_800_000_000;

fn config() -> Config {
    Config::from_json(
        Path::new("/etc/netclaw/netclaw.json"),
        r#"{"Daemon":{"Host":"192.0.2.10","ExposureMode":"reverse-proxy","TrustedProxies":["192.0.2.1"]}}"#,
        &BTreeMap::new(),
    )
    .unwrap()
}

fn cert(role: CertificateRole, identity: &[&str], not_before: u64, not_after: u64) -> CertStatus {
    CertStatus {
        role,
        path: PathBuf::from(format!("/x/{role}.crt")),
        error: None,
        subject: Some("CN=x".into()),
        identity: identity.iter().map(|s| s.to_string()).collect(),
        serial: Some("01".into()),
        not_before_unix: Some(not_before),
        not_after_unix: Some(not_after),
        days_left: Some((not_after as i64 - NOW as i64).div_euclid(86_400)),
        registry_status: Some("active".into()),
        registry_state: Some(pki_status::RegistryState::Active),
        inspectable: true,
    }
}

fn key(role: CertificateRole, mode: &str, ok: bool) -> KeyStatus {
    KeyStatus {
        role,
        path: PathBuf::from(format!("/x/{role}.key")),
        mode: Some(mode.into()),
        check: if ok {
            "ok".into()
        } else {
            format!("chmod 600 /x/{role}.key")
        },
        ok,
        inspectable: true,
    }
}

fn healthy(host: &str) -> PkiStatus {
    PkiStatus {
        certificates: vec![
            cert(
                CertificateRole::OperatorCa,
                &[],
                NOW - 100,
                NOW + 86_400 * 3650,
            ),
            cert(
                CertificateRole::OperatorListener,
                &["IP:192.0.2.10", "DNS:daemon-host"],
                NOW - 100,
                NOW + 86_400 * 365,
            ),
            cert(
                CertificateRole::OperatorAgent,
                &[&format!(
                    "URI:spiffe://netclaw.internal/host/{host}/operator-agent"
                )],
                NOW - 100,
                NOW + 86_400 * 30,
            ),
        ],
        keys: vec![
            key(CertificateRole::OperatorCa, "0600", true),
            key(CertificateRole::OperatorAgent, "0600", true),
        ],
        healthy: true,
        problems: Vec::new(),
        ca_rotation: "none".into(),
    }
}

/// `status` with its problems judged as `pki_status::status` does.
fn judged(status: &PkiStatus) -> PkiStatus {
    let mut s = status.clone();
    s.problems = pki_status::problems(&s.certificates, &s.keys, from_unix_seconds(NOW));
    s.healthy = s.problems.iter().all(|p| p.severity == Severity::Warn);
    s
}

fn run(status: &PkiStatus) -> Vec<Check> {
    let expected: HostId = HOST_A.parse().unwrap();
    pki_checks(
        &config(),
        &judged(status),
        Some(&expected),
        from_unix_seconds(NOW),
    )
}

fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks.iter().find(|c| c.name == name).unwrap()
}

#[test]
fn a_healthy_pki_passes_every_check() {
    let checks = run(&healthy(HOST_A));
    for c in &checks {
        assert_eq!(c.outcome, Outcome::Pass, "{c:?}");
    }
    let names: Vec<_> = checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "pki-files",
            "key-permissions",
            "agent-certificate",
            "certificates",
            "clock",
            "host-id",
            "listener-names"
        ]
    );
    assert!(find(&checks, "agent-certificate")
        .detail
        .contains("renewal due around"));
}

#[test]
fn host_id_mismatch_fails_naming_install_force() {
    let checks = run(&healthy(HOST_B));
    let c = find(&checks, "host-id");
    assert_eq!(c.outcome, Outcome::Fail);
    assert!(
        c.detail.contains(HOST_B) && c.detail.contains(HOST_A),
        "{}",
        c.detail
    );
    assert!(c
        .fix
        .as_deref()
        .unwrap()
        .contains("netclaw daemon install --force"));
    assert!(!Report::new(checks).ok);
}

#[test]
fn a_certificate_from_the_future_fails_the_clock_check() {
    let mut s = healthy(HOST_A);
    s.certificates[2].not_before_unix = Some(NOW + 3600);
    let checks = run(&s);
    let c = find(&checks, "clock");
    assert_eq!(c.outcome, Outcome::Fail);
    assert!(c.fix.as_deref().unwrap().contains("timedatectl"), "{c:?}");
}

#[test]
fn expired_agent_certificate_fails_with_the_offline_fix() {
    let mut s = healthy(HOST_A);
    s.certificates[2] = cert(
        CertificateRole::OperatorAgent,
        &[&format!(
            "URI:spiffe://netclaw.internal/host/{HOST_A}/operator-agent"
        )],
        NOW - 86_400 * 31,
        NOW - 86_400,
    );
    let c = find(&run(&s), "agent-certificate").clone();
    assert_eq!(c.outcome, Outcome::Fail);
    assert!(c.fix.unwrap().contains("netclaw pki rotate --offline"));
}

#[test]
fn world_readable_key_fails_and_uninspectable_key_needs_root() {
    let mut s = healthy(HOST_A);
    s.keys[1] = key(CertificateRole::OperatorAgent, "0644", false);
    let c = find(&run(&s), "key-permissions").clone();
    assert_eq!(c.outcome, Outcome::Fail);
    assert!(c.detail.contains("chmod 600"), "{}", c.detail);

    let mut s = healthy(HOST_A);
    s.keys[0].ok = false;
    s.keys[0].inspectable = false;
    s.keys[0].mode = None;
    let c = find(&run(&s), "key-permissions").clone();
    assert_eq!(c.outcome, Outcome::NeedsRoot);
    assert!(c.fix.unwrap().contains("sudo netclaw doctor"));
}

#[test]
fn listener_certificate_without_the_operator_host_fails() {
    let mut s = healthy(HOST_A);
    s.certificates[1].identity = vec!["IP:198.51.100.20".into()];
    let c = find(&run(&s), "listener-names").clone();
    assert_eq!(c.outcome, Outcome::Fail);
    assert!(c.detail.contains("192.0.2.10"));
}

#[test]
fn missing_files_fail() {
    let mut s = healthy(HOST_A);
    s.certificates[0].not_after_unix = None;
    s.certificates[0].error = Some("No such file".into());
    let c = find(&run(&s), "pki-files").clone();
    assert_eq!(c.outcome, Outcome::Fail);
}

/// A member of `netclaw-operators` cannot read the 0700 PKI directories: the PKI checks say
/// what needs root, fail nothing and never suggest the destructive `install --force`.
#[test]
fn certificates_this_user_cannot_read_need_root_and_fail_nothing() {
    let mut s = healthy(HOST_A);
    for c in &mut s.certificates {
        *c = CertStatus {
            inspectable: false,
            ..CertStatus::unread(c.role, c.path.clone(), "not readable by this user".into())
        };
    }
    for k in &mut s.keys {
        k.ok = false;
        k.inspectable = false;
    }
    let checks = run(&s);
    for c in &checks {
        assert_ne!(c.outcome, Outcome::Fail, "{c:?}");
        assert!(
            !c.fix.as_deref().unwrap_or_default().contains("--force"),
            "{c:?}"
        );
    }
    for name in ["pki-files", "key-permissions", "clock"] {
        let c = find(&checks, name);
        assert_eq!(c.outcome, Outcome::NeedsRoot, "{c:?}");
        assert!(c.fix.as_deref().unwrap().contains("sudo netclaw doctor"));
    }
    let text = render(&Report::new(checks));
    assert!(text.contains("ROOT  pki-files"), "{text}");
    assert!(
        text.ends_with("doctor: no failing check; 3 check(s) need root (`sudo netclaw doctor`)\n"),
        "{text}"
    );
}

/// `pki status` and `doctor` judge from the same problems: a revoked agent certificate fails
/// both (it was "healthy" to `pki status`), a certificate long past its renewal fails both with
/// the reason (it was a bare UNHEALTHY to `pki status` and a warning to `doctor`), an overdue
/// renewal warns in both, an expired listener certificate fails both.
#[test]
fn pki_status_and_doctor_agree() {
    fn agent(s: &mut PkiStatus) -> &mut CertStatus {
        &mut s.certificates[2]
    }

    let mut revoked = healthy(HOST_A);
    agent(&mut revoked).registry_status = Some("revoked".into());
    agent(&mut revoked).registry_state = Some(pki_status::RegistryState::Revoked);
    let s = judged(&revoked);
    assert!(!s.healthy);
    assert!(
        pki_status::render(&s).contains("problem: operator-agent: revoked"),
        "{}",
        pki_status::render(&s)
    );
    let c = find(&run(&revoked), "agent-certificate").clone();
    assert_eq!(c.outcome, Outcome::Fail, "{c:?}");
    assert!(c.fix.unwrap().contains("netclaw pki rotate --offline"));

    // 11 h left of 30 days: the renewal (due 24 h before expiry at the latest) has failed.
    let mut expiring = healthy(HOST_A);
    agent(&mut expiring).not_before_unix = Some(NOW - 29 * 86_400 + 11 * 3600);
    agent(&mut expiring).not_after_unix = Some(NOW + 11 * 3600);
    agent(&mut expiring).days_left = Some(0);
    let s = judged(&expiring);
    assert!(!s.healthy);
    let text = pki_status::render(&s);
    assert!(text.contains("status: UNHEALTHY"), "{text}");
    assert!(
        text.contains("problem: operator-agent: expires at"),
        "{text}"
    );
    assert!(text.contains("long past its renewal"), "{text}");
    assert_eq!(
        find(&run(&expiring), "agent-certificate").outcome,
        Outcome::Fail
    );

    // Past its renewal point, days left: a warning in both.
    let mut overdue = healthy(HOST_A);
    agent(&mut overdue).not_before_unix = Some(NOW - 25 * 86_400);
    agent(&mut overdue).not_after_unix = Some(NOW + 5 * 86_400);
    agent(&mut overdue).days_left = Some(5);
    let s = judged(&overdue);
    assert!(s.healthy);
    let text = pki_status::render(&s);
    assert!(text.contains("status: healthy, 1 warning(s)"), "{text}");
    assert!(
        text.contains("warning: operator-agent: renewal was due at"),
        "{text}"
    );
    assert_eq!(
        find(&run(&overdue), "agent-certificate").outcome,
        Outcome::Warn
    );

    let mut listener = healthy(HOST_A);
    listener.certificates[1].not_after_unix = Some(NOW - 10);
    let s = judged(&listener);
    assert!(!s.healthy);
    assert_eq!(find(&run(&listener), "certificates").outcome, Outcome::Fail);

    for status in [healthy(HOST_A), revoked, expiring, overdue, listener] {
        let s = judged(&status);
        let failing = run(&status).iter().any(|c| c.outcome == Outcome::Fail);
        assert_eq!(s.healthy, !failing, "{s:?}");
    }
}

#[test]
fn tunnel_process_is_checked_unless_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = |skip: bool| {
        Config::from_json(
            Path::new("/x.json"),
            &format!(r#"{{"Daemon":{{"ExposureMode":"tailscale-serve","SkipTunnelProcessCheck":{skip}}}}}"#),
            &BTreeMap::new(),
        )
        .unwrap()
    };
    let c = exposure_check(&cfg(false), tmp.path());
    assert_eq!(c.outcome, Outcome::Fail);
    assert!(c.fix.unwrap().contains("tailscaled"));
    let c = exposure_check(&cfg(true), tmp.path());
    assert_eq!(c.outcome, Outcome::Pass);
    // No TrustedProxies: the loopback tunnel's forwarded address keys the pairing limiter.
    assert!(c.detail.contains("X-Forwarded-For"), "{}", c.detail);
    std::fs::create_dir_all(tmp.path().join("7")).unwrap();
    std::fs::write(tmp.path().join("7/comm"), "tailscaled\n").unwrap();
    assert_eq!(
        exposure_check(&cfg(false), tmp.path()).outcome,
        Outcome::Pass
    );
}

#[test]
fn render_prints_fixes_and_a_summary() {
    let checks = run(&healthy(HOST_B));
    let text = render(&Report::new(checks));
    assert!(text.contains("FAIL  host-id"), "{text}");
    assert!(text.contains("      fix: re-issue"), "{text}");
    assert!(text.ends_with("doctor: 1 failing check(s)\n"), "{text}");
}

#[test]
fn file_findings_fail_with_every_fix_and_hidden_paths_need_root() {
    let key = PathBuf::from("/var/lib/netclaw/pki/ca.key");
    let bundle = PathBuf::from("/var/lib/netclaw-operator-agent/ca-bundle.crt");
    let bad = vec![
        Finding::SecretReadable {
            path: key.clone(),
            mode: 0o644,
        },
        Finding::Writable {
            path: bundle.clone(),
            kind: file_policy::FileKind::TrustAnchor,
            mode: 0o666,
        },
    ];
    let c = file_findings_check(&bad);
    assert_eq!(c.outcome, Outcome::Fail);
    let fix = c.fix.unwrap();
    assert!(
        fix.contains("chmod 600 /var/lib/netclaw/pki/ca.key"),
        "{fix}"
    );
    assert!(
        fix.contains("chmod go-w /var/lib/netclaw-operator-agent/ca-bundle.crt"),
        "{fix}"
    );
    let hidden = vec![Finding::Uninspectable {
        path: key,
        reason: "permission denied".into(),
    }];
    assert_eq!(file_findings_check(&hidden).outcome, Outcome::NeedsRoot);
    assert_eq!(file_findings_check(&[]).outcome, Outcome::Pass);
}

/// The socket's refusal is explained by the path that denies: a member of the group is never
/// told to join the group she is in.
#[test]
fn a_socket_refusal_names_the_real_cause() {
    let names = |gid: u32| match gid {
        900 => "netclaw-operators".to_owned(),
        901 => "netclaw-operator-agent".to_owned(),
        g => g.to_string(),
    };
    let never = |_: u32| false;
    let listed = |gid: u32| gid == 900;
    let allowed = ["netclaw-operators".to_owned()];
    let dir = |gid| PathAccess {
        path: "/run/netclaw".into(),
        uid: 990,
        gid,
        mode: 0o750,
        need: 0o1,
    };
    let sock = |gid, mode| PathAccess {
        path: "/run/netclaw/operator.sock".into(),
        uid: 990,
        gid,
        mode,
        need: 0o2,
    };
    fn caller<'a>(
        gids: &'a [u32],
        group_name: &'a dyn Fn(u32) -> String,
        listed_in: &'a dyn Fn(u32) -> bool,
    ) -> Caller<'a> {
        Caller {
            uid: 1000,
            gids,
            group_name,
            listed_in,
        }
    }

    // Alice is in netclaw-operators; the agent made its socket with its own group.
    let (detail, fix) = socket_access_fix(
        &[dir(900), sock(901, 0o660)],
        &caller(&[1000, 900], &names, &never),
        &allowed,
    );
    assert!(detail.contains("group netclaw-operator-agent"), "{detail}");
    assert!(!fix.contains("usermod"), "{fix}");
    assert!(
        fix.contains("systemctl restart netclaw-operator-agent.socket"),
        "{fix}"
    );

    // Alice is in the group, but the socket's group bits deny.
    let (_, fix) = socket_access_fix(
        &[dir(900), sock(900, 0o600)],
        &caller(&[1000, 900], &names, &never),
        &allowed,
    );
    assert!(fix.contains("you are in group netclaw-operators"), "{fix}");
    assert!(!fix.contains("usermod"), "{fix}");

    // Added in /etc/group, not logged in again.
    let (_, fix) = socket_access_fix(
        &[dir(900), sock(900, 0o660)],
        &caller(&[1000], &names, &listed),
        &allowed,
    );
    assert!(fix.contains("log in again"), "{fix}");
    assert!(!fix.contains("usermod"), "{fix}");

    // Not a member at all: join.
    let (_, fix) = socket_access_fix(
        &[dir(900), sock(900, 0o660)],
        &caller(&[1000], &names, &never),
        &allowed,
    );
    assert!(fix.contains("usermod -aG netclaw-operators"), "{fix}");
}
