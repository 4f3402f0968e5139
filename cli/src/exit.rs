//! Documented exit codes of `netclaw`.

use std::fmt;

use hyper::StatusCode;
use netclaw_core::config::ConfigError;
use netclaw_pki::PkiError;

use crate::address::EndpointParseError;
use crate::transport::TransportError;

/// Exit codes. Stable: scripts depend on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// Any other failure.
    Failure = 1,
    /// Bad command line (clap's own code).
    Usage = 2,
    /// No endpoint could be resolved, or the agent or daemon could not be reached.
    Unreachable = 3,
    /// The daemon refused the request (401/403).
    Refused = 4,
    /// A credential problem: missing, expired, mismatched or badly protected certificate or key.
    Credentials = 5,
    /// The configuration is invalid (as `EX_USAGE` in linkerd).
    Config = 64,
}

impl ExitCode {
    /// The text `--help` prints.
    pub const HELP: &'static str = "Exit codes:\n  0   success\n  1   other failure (including a redirect, which is never followed, a failing doctor check,\n      and an unknown serial for pki revoke)\n  2   bad command line\n  3   agent or daemon unreachable (no endpoint resolved, connect failed, timeout, 502)\n  4   refused by the daemon (401/403) or by the agent's allowlist\n  5   credential problem (missing, expired, mismatched or world-readable certificate or key;\n      the agent's certificate expired or refused; no access to the PKI directory)\n  64  invalid configuration (including an invalid --endpoint / NETCLAW_ENDPOINT)";

    /// As a process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// Every way a `netclaw` command fails, with the one mapping to its exit code,
/// [`CliError::exit_code`]. The message (`Display`) names the fix; it is what `netclaw` prints
/// after `netclaw: ` on stderr.
///
/// Failures that come from another crate keep their type ([`ConfigError`], [`PkiError`],
/// [`EndpointParseError`], [`TransportError`]) so that their exit code is decided by type; the
/// others are classified where they happen, by the variant that is built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A command line that clap accepts but the command cannot use (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The configuration file does not load or validate (exit 64).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configuration (or a flag that stands for it) cannot serve this command (exit 64).
    #[error("{0}")]
    InvalidConfig(String),
    /// `--endpoint` / `NETCLAW_ENDPOINT` does not parse (exit 64, as the spec says).
    #[error(transparent)]
    Endpoint(#[from] EndpointParseError),
    /// A PKI operation failed; the exit code is [`pki_exit_code`]'s. `hint` is appended to the
    /// message (empty for none).
    #[error("{source}{hint}")]
    Pki {
        /// The failure.
        #[source]
        source: PkiError,
        /// Context that names the fix, e.g. " (… run it as root)".
        hint: &'static str,
    },
    /// Nothing usable came back from the endpoint (exit 3); `hint` names the likely fix.
    #[error("{source}{hint}")]
    Transport {
        /// The failure.
        #[source]
        source: TransportError,
        /// The likely fix, appended to the message (may be empty).
        hint: String,
    },
    /// No endpoint resolved, or the agent or daemon unreachable, or a stream that broke (exit 3).
    #[error("{0}")]
    Unreachable(String),
    /// The daemon or the agent refused the request (exit 4).
    #[error("{0}")]
    Refused(String),
    /// A credential problem: missing, expired, mismatched, revoked or badly protected
    /// certificate, key or token; no access to the PKI directory (exit 5).
    #[error("{0}")]
    Credentials(String),
    /// An answer with a redirect, which is never followed (exit 1).
    #[error("{endpoint} answered {status} redirecting to {location}; netclaw never follows redirects: point --endpoint at the daemon itself")]
    Redirect {
        /// The endpoint that answered.
        endpoint: String,
        /// Its status.
        status: StatusCode,
        /// Its `Location`, printable, or "nowhere".
        location: String,
    },
    /// Checks ran and some failed; they were printed with their fixes (`doctor` exit 1,
    /// `pki status` exit 5).
    #[error("{what} (see above); each names its fix")]
    ChecksFailed {
        /// What found the failures, e.g. "doctor found failing checks".
        what: &'static str,
        /// Exit code: [`ExitCode::Failure`] or [`ExitCode::Credentials`].
        code: ExitCode,
    },
    /// Writing the output failed for another reason than a closed pipe (exit 1).
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    /// Any other failure (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// The one mapping of a failure to the documented exit code.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(_) => ExitCode::Usage,
            Self::Config(_) | Self::InvalidConfig(_) | Self::Endpoint(_) => ExitCode::Config,
            Self::Pki { source, .. } => pki_exit_code(source),
            Self::Transport { .. } | Self::Unreachable(_) => ExitCode::Unreachable,
            Self::Refused(_) => ExitCode::Refused,
            Self::Credentials(_) => ExitCode::Credentials,
            Self::ChecksFailed { code, .. } => *code,
            Self::Redirect { .. } | Self::Output(_) | Self::Failed(_) => ExitCode::Failure,
        }
    }

    /// A PKI failure with context appended to its message.
    pub fn pki(source: PkiError, hint: &'static str) -> Self {
        Self::Pki { source, hint }
    }
}

impl From<PkiError> for CliError {
    fn from(source: PkiError) -> Self {
        Self::Pki { source, hint: "" }
    }
}

/// The one mapping of PKI failures to exit codes, by type: no access to a PKI file is a
/// credential problem (5, "no access to the PKI directory"); a CA rotation step out of order, or
/// a retirement whose certificates still chain to the old CA, is refused (4); other I/O, the
/// random number generator and internal failures are 1; everything else about certificates and
/// keys is a credential problem (5).
pub fn pki_exit_code(e: &netclaw_pki::PkiError) -> ExitCode {
    use netclaw_pki::{PkiError as P, VerifyError as V};
    match e {
        P::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            ExitCode::Credentials
        }
        P::RotationOutOfOrder { .. }
        | P::Verify(V::AgentOnOldCa { .. } | V::ListenerOnOldCa { .. }) => ExitCode::Refused,
        P::Io { .. } | P::Random | P::Generate(_) | P::LockPoisoned { .. } => ExitCode::Failure,
        _ => ExitCode::Credentials,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netclaw_pki::PkiError;

    #[test]
    fn pki_failures_have_one_exit_code_each() {
        let io = |kind| PkiError::io("reading", "/x", std::io::Error::from(kind));
        assert_eq!(
            pki_exit_code(&io(std::io::ErrorKind::PermissionDenied)),
            ExitCode::Credentials
        );
        assert_eq!(
            pki_exit_code(&io(std::io::ErrorKind::Other)),
            ExitCode::Failure
        );
        assert_eq!(
            pki_exit_code(&PkiError::RotationOutOfOrder {
                what: "retire",
                phase: "none",
                fix: "run `netclaw pki rotate --ca activate` first",
            }),
            ExitCode::Refused
        );
        assert_eq!(pki_exit_code(&PkiError::KeyMismatch), ExitCode::Credentials);
        assert_eq!(pki_exit_code(&PkiError::Random), ExitCode::Failure);
    }

    #[test]
    fn every_failure_has_its_documented_exit_code() {
        let s = || "x".to_owned();
        let cases = [
            (CliError::Usage(s()), 2),
            (CliError::InvalidConfig(s()), 64),
            (
                CliError::Endpoint(crate::address::Endpoint::parse("ftp://x").unwrap_err()),
                64,
            ),
            (CliError::from(PkiError::KeyMismatch), 5),
            (
                CliError::pki(
                    PkiError::io("reading", "/x", std::io::ErrorKind::Other.into()),
                    "",
                ),
                1,
            ),
            (
                CliError::Transport {
                    source: TransportError::Timeout {
                        endpoint: s(),
                        after: std::time::Duration::from_secs(1),
                    },
                    hint: String::new(),
                },
                3,
            ),
            (CliError::Unreachable(s()), 3),
            (CliError::Refused(s()), 4),
            (CliError::Credentials(s()), 5),
            (
                CliError::Redirect {
                    endpoint: s(),
                    status: StatusCode::FOUND,
                    location: s(),
                },
                1,
            ),
            (
                CliError::ChecksFailed {
                    what: "doctor found failing checks",
                    code: ExitCode::Failure,
                },
                1,
            ),
            (CliError::Output(std::io::ErrorKind::StorageFull.into()), 1),
            (CliError::Failed(s()), 1),
        ];
        for (e, code) in cases {
            assert_eq!(e.exit_code().code(), code, "{e:?}");
        }
        // The hint is part of the message, after the PKI failure's own text.
        let e = CliError::pki(PkiError::KeyMismatch, " (run it as root)");
        assert!(e.to_string().ends_with(" (run it as root)"), "{e}");
    }
}
