//! Documented exit codes of `netclaw`.

use std::fmt;

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

/// An error with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    /// Exit code.
    pub code: ExitCode,
    /// Message for stderr; names the fix.
    pub message: String,
}

impl CliError {
    /// A new error.
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<netclaw_core::config::ConfigError> for CliError {
    fn from(e: netclaw_core::config::ConfigError) -> Self {
        Self::new(ExitCode::Config, e.to_string())
    }
}

impl From<netclaw_pki::PkiError> for CliError {
    fn from(e: netclaw_pki::PkiError) -> Self {
        Self::new(pki_exit_code(&e), e.to_string())
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
}
