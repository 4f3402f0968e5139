//! A real system install (`/etc/netclaw`, `/var/lib/netclaw`, `/var/lib/netclaw-operator-agent`,
//! `/run/netclaw`, service users and the `netclaw-operators` group), run as root inside private
//! mount and network namespaces so the host's own `/etc`, `/var/lib` and `/run` are untouched:
//! `/etc` is a copy, `/var/lib` and `/run` are empty tmpfs mounts.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;

/// Whether this runs as root; otherwise `test` is skipped with the reason printed, unless
/// namespaces are required (CI), where it fails.
fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os(netclaw_tests::ns::REQUIRE_ENV).is_some() {
        panic!(
            "the system-install test needs root ({} is set)",
            netclaw_tests::ns::REQUIRE_ENV
        );
    }
    eprintln!("SKIPPED {test}: needs root");
    false
}

#[test]
fn system_install_creates_users_owners_and_modes_then_serves() {
    if !root_or_skip("system_install_creates_users_owners_and_modes_then_serves") {
        return;
    }
    let bins = netclaw_tests::build_binaries().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let script = r#"
set -eu
S="$1"; NETCLAW="$2"; DAEMON="$3"; AGENT="$4"
# Whatever happens, stop the services this script starts.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
mount --make-rprivate /
cp -a /etc "$S/etc"
mount --bind "$S/etc" /etc
mount -t tmpfs tmpfs /var/lib
mount -t tmpfs tmpfs /run
ip link set lo up
ip addr add 192.0.2.10/24 dev lo
"$NETCLAW" daemon install --exposure reverse-proxy --bind 192.0.2.10 --trusted-proxy 192.0.2.1 >/dev/null
echo "== users"
id -un netclaw; id -un netclaw-operator-agent; getent group netclaw-operators | cut -d: -f1
echo "== modes"
stat -c '%n %a %U:%G' /etc/netclaw/netclaw.json /var/lib/netclaw/pki /var/lib/netclaw/pki/ca.key \
  /var/lib/netclaw/pki/server.key /var/lib/netclaw-operator-agent /var/lib/netclaw-operator-agent/client.key /run/netclaw
echo "== config"
cat /etc/netclaw/netclaw.json
echo "== pki status"
"$NETCLAW" pki status >/dev/null && echo healthy
echo "== serve"
setpriv --reuid netclaw --regid netclaw --clear-groups "$DAEMON" --config /etc/netclaw/netclaw.json >"$S/daemon.log" 2>&1 &
DP=$!
sleep 1
setpriv --reuid netclaw-operator-agent --regid netclaw-operator-agent --clear-groups "$AGENT" --config /etc/netclaw/netclaw.json >"$S/agent.log" 2>&1 &
AP=$!
for i in $(seq 1 100); do [ -S /run/netclaw/operator.sock ] && break; sleep 0.1; done
stat -c '%n %a %U:%G' /run/netclaw/operator.sock
"$NETCLAW" whoami --json
echo
echo "== operator alice"
useradd -M -G netclaw-operators alice
useradd -M bob
# root's saved contexts, seen through a configuration directory kept across the change of user
# (as `su` without `-` or `setpriv` keep it): alice cannot open them, so they are not hers, and
# her CLI goes on to the host's agent instead of failing or using root's context.
mkdir -m 700 "$S/root-config" "$S/root-config/netclaw"
printf '{"current":"root","contexts":[{"name":"root","endpoint":"https://192.0.2.10:1","device":"d","token":"t"}]}' \
  >"$S/root-config/netclaw/contexts.json"
chmod 600 "$S/root-config/netclaw/contexts.json"
XDG_CONFIG_HOME="$S/root-config" setpriv --reuid alice --regid alice --init-groups "$NETCLAW" whoami --json
echo
echo "== bob"
set +e
setpriv --reuid bob --regid bob --init-groups "$NETCLAW" --endpoint unix:/run/netclaw/operator.sock whoami --json
echo "bob exit $?"
set -e
kill $AP $DP; wait || true
"#;
    let out = Command::new("unshare")
        .args(["--mount", "--net", "--", "sh", "-c", script, "sh"])
        .arg(scratch.path())
        .arg(&bins.netclaw)
        .arg(&bins.daemon)
        .arg(&bins.agent)
        .output()
        .unwrap();
    let (code, stdout, stderr) = netclaw_tests::text(&out);
    let logs = format!(
        "{stdout}\n{stderr}\ndaemon: {}\nagent: {}",
        std::fs::read_to_string(scratch.path().join("daemon.log")).unwrap_or_default(),
        std::fs::read_to_string(scratch.path().join("agent.log")).unwrap_or_default()
    );
    assert_eq!(code, 0, "{logs}");
    for line in [
        "netclaw\n",
        "netclaw-operator-agent\n",
        "netclaw-operators\n",
        "/var/lib/netclaw/pki 700 netclaw:",
        "/var/lib/netclaw/pki/ca.key 600 netclaw:",
        "/var/lib/netclaw/pki/server.key 600 netclaw:",
        "/var/lib/netclaw-operator-agent 700 netclaw-operator-agent:",
        "/var/lib/netclaw-operator-agent/client.key 600 netclaw-operator-agent:",
        "/run/netclaw 2750 netclaw-operator-agent:netclaw-operators",
        // Started without its socket unit, as its own user and group: the setgid directory
        // gives the socket the operators' group, so alice can open it.
        "/run/netclaw/operator.sock 660 netclaw-operator-agent:netclaw-operators",
        "\"netclaw-operators\"",
        "healthy",
        "\"principal\":\"LocalOperator\"",
        "\"user\":\"alice\"",
        "bob exit 3",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{logs}");
    }
}

/// A whole operator CA rotation and both re-issues run by root (`netclaw pki rotate --ca
/// prepare|activate|retire`, `--offline`, then a renewal through the agent) while the daemon runs
/// as `netclaw` and the agent as `netclaw-operator-agent`: after every step each file under the
/// state, PKI and agent directories still belongs to its service user, keys stay 0600,
/// `netclaw doctor` finds no unsafe file, the daemon never fails to reload, and an operator
/// still reaches it.
#[test]
fn root_run_ca_rotation_keeps_service_owners_and_the_daemon_serving() {
    if !root_or_skip("root_run_ca_rotation_keeps_service_owners_and_the_daemon_serving") {
        return;
    }
    let bins = netclaw_tests::build_binaries().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let script = r#"
set -eu
S="$1"; NETCLAW="$2"; DAEMON="$3"; AGENT="$4"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
mount --make-rprivate /
cp -a /etc "$S/etc"
mount --bind "$S/etc" /etc
mount -t tmpfs tmpfs /var/lib
mount -t tmpfs tmpfs /run
ip link set lo up
ip addr add 192.0.2.10/24 dev lo
"$NETCLAW" daemon install --exposure reverse-proxy --bind 192.0.2.10 --trusted-proxy 192.0.2.1 >/dev/null
useradd -M -G netclaw-operators alice
setpriv --reuid netclaw --regid netclaw --clear-groups "$DAEMON" --config /etc/netclaw/netclaw.json >"$S/daemon.log" 2>&1 &
DP=$!
setpriv --reuid netclaw-operator-agent --regid netclaw-operator-agent --clear-groups "$AGENT" --config /etc/netclaw/netclaw.json >"$S/agent.log" 2>&1 &
AP=$!
for i in $(seq 1 100); do [ -S /run/netclaw/operator.sock ] && break; sleep 0.1; done
after() {
  # Every file where the services keep theirs belongs to them, and keys are owner-only.
  bad="$(find /var/lib/netclaw ! -user netclaw; find /var/lib/netclaw-operator-agent ! -user netclaw-operator-agent)"
  if [ -n "$bad" ]; then
    echo "OWNERS after $1:"; stat -c '%n %U:%G %a' $bad
  fi
  loose="$(find /var/lib/netclaw /var/lib/netclaw-operator-agent -name '*.key' ! -perm 600)"
  [ -z "$loose" ] || { echo "MODES after $1:"; stat -c '%n %a' $loose; }
  "$NETCLAW" doctor --json >"$S/doctor-$1.json" || true
  kill -0 $DP && kill -0 $AP || echo "SERVICE DIED after $1"
  if setpriv --reuid alice --regid alice --init-groups "$NETCLAW" whoami --json | grep -q '"principal":"LocalOperator"'; then
    echo "serving after $1"
  else
    echo "NOT SERVING after $1"
  fi
}
after install
"$NETCLAW" pki rotate --ca prepare >/dev/null; sleep 2; after prepare
"$NETCLAW" pki rotate --ca activate >/dev/null; after activate
"$NETCLAW" pki rotate --ca retire >/dev/null; sleep 2; after retire
"$NETCLAW" pki rotate --offline >/dev/null; sleep 3; after offline
"$NETCLAW" pki rotate --json >"$S/renewal.json"; after renewal
kill $AP $DP; wait || true
"#;
    let out = Command::new("unshare")
        .args(["--mount", "--net", "--", "sh", "-c", script, "sh"])
        .arg(scratch.path())
        .arg(&bins.netclaw)
        .arg(&bins.daemon)
        .arg(&bins.agent)
        .output()
        .unwrap();
    let (code, stdout, stderr) = netclaw_tests::text(&out);
    let daemon_log = std::fs::read_to_string(scratch.path().join("daemon.log")).unwrap_or_default();
    let logs = format!(
        "{stdout}\n{stderr}\ndaemon: {daemon_log}\nagent: {}",
        std::fs::read_to_string(scratch.path().join("agent.log")).unwrap_or_default()
    );
    assert_eq!(code, 0, "{logs}");
    for bad in ["OWNERS", "MODES", "SERVICE DIED", "NOT SERVING"] {
        assert!(!stdout.contains(bad), "{bad} in:\n{logs}");
    }
    for step in [
        "install", "prepare", "activate", "retire", "offline", "renewal",
    ] {
        assert!(
            stdout.contains(&format!("serving after {step}\n")),
            "{step}:\n{logs}"
        );
        let doctor: serde_json::Value = serde_json::from_slice(
            &std::fs::read(scratch.path().join(format!("doctor-{step}.json"))).unwrap(),
        )
        .unwrap();
        let files = doctor["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "file-permissions")
            .cloned()
            .unwrap_or_default();
        assert_eq!(files["outcome"], "pass", "after {step}: {files:#}\n{logs}");
    }
    assert!(
        !daemon_log.contains("failed"),
        "the daemon failed to follow a root-run step:\n{logs}"
    );
    let renewal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scratch.path().join("renewal.json")).unwrap())
            .unwrap();
    assert!(renewal["serial"].is_string(), "{renewal:#}\n{logs}");
}

/// The adversary: the daemon's own user (a compromised daemon can write its state directory)
/// replaces `/var/lib/netclaw/pki` with a link to `/etc`, breaking the daemon so that its
/// messages send root to `netclaw daemon install --force`. Root's re-install and PKI commands
/// must refuse the link: no system file changes owner or mode, nothing is written into `/etc`.
#[test]
fn a_service_users_link_never_makes_root_give_away_a_system_directory() {
    if !root_or_skip("a_service_users_link_never_makes_root_give_away_a_system_directory") {
        return;
    }
    let bins = netclaw_tests::build_binaries().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let script = r#"
set -eu
S="$1"; NETCLAW="$2"
mount --make-rprivate /
cp -a /etc "$S/etc"
mount --bind "$S/etc" /etc
mount -t tmpfs tmpfs /var/lib
mount -t tmpfs tmpfs /run
ip link set lo up
ip addr add 192.0.2.10/24 dev lo
"$NETCLAW" daemon install --exposure reverse-proxy --bind 192.0.2.10 --trusted-proxy 192.0.2.1 >/dev/null
echo "== before"
stat -c '%n %U:%G %a' /etc /etc/passwd /etc/shadow
setpriv --reuid netclaw --regid netclaw --clear-groups \
  sh -c 'mv /var/lib/netclaw/pki /var/lib/netclaw/pki.away && ln -s /etc /var/lib/netclaw/pki'
set +e
"$NETCLAW" daemon install --force --exposure reverse-proxy --bind 192.0.2.10 --trusted-proxy 192.0.2.1 >/dev/null 2>"$S/install.err"
echo "install exit $?"
"$NETCLAW" pki rotate --offline >/dev/null 2>"$S/offline.err"
echo "offline exit $?"
"$NETCLAW" pki revoke 01 >/dev/null 2>"$S/revoke.err"
echo "revoke exit $?"
set -e
echo "== after"
stat -c '%n %U:%G %a' /etc /etc/passwd /etc/shadow
ls /etc/ca.key /etc/registry.json /etc/registry.lock /etc/host-id 2>&1 | sed 's/^/planted: /'
"#;
    let out = Command::new("unshare")
        .args(["--mount", "--net", "--", "sh", "-c", script, "sh"])
        .arg(scratch.path())
        .arg(&bins.netclaw)
        .output()
        .unwrap();
    let (code, stdout, stderr) = netclaw_tests::text(&out);
    let err = |name: &str| std::fs::read_to_string(scratch.path().join(name)).unwrap_or_default();
    let logs = format!(
        "{stdout}\n{stderr}\ninstall: {}\noffline: {}\nrevoke: {}",
        err("install.err"),
        err("offline.err"),
        err("revoke.err")
    );
    assert_eq!(code, 0, "{logs}");
    let section = |name: &str| {
        let start = stdout.find(&format!("== {name}\n")).unwrap();
        stdout[start..]
            .lines()
            .skip(1)
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(section("before"), section("after"), "{logs}");
    assert!(
        stdout.contains("/etc root:root 755"),
        "/etc is not root's: {logs}"
    );
    for command in ["install", "offline", "revoke"] {
        assert!(
            !stdout.contains(&format!("{command} exit 0")),
            "{command} went through the link:\n{logs}"
        );
    }
    assert!(
        err("install.err").contains("/var/lib/netclaw/pki")
            && err("install.err").contains("symbolic link"),
        "{logs}"
    );
    assert!(!stdout.contains("planted: /etc/"), "{logs}");
    for name in ["ca.key", "registry.json", "registry.lock", "host-id"] {
        assert!(
            stdout.contains(&format!("planted: ls: cannot access '/etc/{name}'")),
            "{name}:\n{logs}"
        );
    }
}
