//! The `netclaw` command-line interface.
//!
//! What it does: `netclaw daemon install` (configuration, operator PKI and agent credentials),
//! `netclaw pki status|rotate|revoke` (`rotate --offline` and `revoke` work on the PKI files
//! directly, see [`pki_offline`]), `doctor`, and the commands that talk to the daemon — `status`,
//! `health`, `whoami`, `pair`, `pair join`, `devices list|revoke`, `events`. Each of those
//! resolves its endpoint as DESIGN.md and the OpenSpec change `local-operator-mtls-agent` say
//! ([`endpoint`]): explicit `--endpoint`/`NETCLAW_ENDPOINT`, else the operator agent's socket
//! when a connection to it opens (that connection carries the request), else loopback in `local`
//! mode only, else exit 3 naming the fix.
//!
//! Shape: [`args`] holds the clap types ([`args::command`] is the whole command, for manual
//! pages); [`cmd::run`] dispatches to one module per command, whose `exec` returns a report that
//! [`output`] renders as text or JSON; every failure is an [`exit::CliError`], whose
//! `exit_code()` is the one mapping to the documented exit codes.
//!
//! What it does not: hold the operator certificate (the agent does), follow redirects, or send a
//! credential anywhere but an explicit `http(s)` endpoint given in the same invocation.
//!
//! # Security
//!
//! * No credentials travel over the agent socket; the agent authorizes the caller by its kernel
//!   peer credentials.
//! * A 3xx answer is an error; no second request is made.
//! * `pair join` sends a code only over HTTPS (or plain HTTP to loopback), checked before any
//!   connection; the device token is stored 0600, atomically, and never printed.
//! * Install writes keys 0600 in 0700 directories, atomically, and never replaces an existing CA.
//!   Status output never contains key material.
//! * Text received from the network is stripped of control characters before it is printed.

pub mod address;
pub mod api;
pub mod args;
pub mod ca_rotation;
pub mod cmd;
pub mod context;
pub mod contexts;
pub mod device_token;
pub mod doctor;
pub mod endpoint;
pub mod events;
pub mod exit;
pub mod install;
pub mod output;
pub mod pki_offline;
pub mod pki_status;
pub mod tls;
pub mod transport;
