//! JSON bodies exchanged between the daemon, the agent and the CLI.

use serde::{Deserialize, Serialize};

/// `GET /api/whoami`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    /// `LocalProcess`, `LocalOperator`, `Device` or `Anonymous`.
    pub principal: String,
    /// Device name, or the certificate's SPIFFE id for LocalOperator.
    pub name: Option<String>,
    /// `loopback`, `operator-mtls`, `bearer`, `none`.
    pub transport: String,
    /// The local caller the agent forwarded (LocalOperator only).
    pub caller: Option<Caller>,
}

/// The local caller behind a LocalOperator request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Caller {
    /// Kernel-reported uid.
    pub uid: u32,
    /// User name for the uid.
    pub user: Option<String>,
    /// Kernel-reported pid.
    pub pid: Option<i32>,
}

/// An error body (netclaw's `{"error": …}`): a fixed message, never internal detail, and for the failures a client acts
/// on, a stable [`ErrorCode`] (clients decide by the code, never by the message).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Human-readable message.
    pub error: String,
    /// What failed, for clients to act on. An unknown code (from a newer peer) reads as `None`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_code"
    )]
    pub code: Option<ErrorCode>,
}

impl ErrorBody {
    /// A body with a message and no code.
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            code: None,
        }
    }

    /// A body with a message and a code.
    pub fn with_code(error: impl Into<String>, code: ErrorCode) -> Self {
        Self {
            error: error.into(),
            code: Some(code),
        }
    }
}

fn lenient_code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ErrorCode>, D::Error> {
    let raw = Option::<String>::deserialize(d)?;
    Ok(raw.and_then(|c| ErrorCode::parse(&c)))
}

/// The stable codes of [`ErrorBody`], as the operator agent and the daemon send them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The agent accepts only origin-form request targets.
    RequestTargetForm,
    /// The agent does not forward this route.
    RouteNotForwarded,
    /// The agent forwards this route with another method.
    MethodNotForwarded,
    /// The caller's own share of the agent's upstream slots stayed busy.
    CallerSaturated,
    /// All the agent's upstream slots stayed busy.
    AgentSaturated,
    /// The caller already holds its share of the agent's open streams (event streams, WebSocket
    /// sessions).
    CallerStreamLimit,
    /// All the agent's open streams are in use.
    AgentStreamLimit,
    /// The request body did not arrive in time.
    BodyTimeout,
    /// The request body is larger than the agent forwards.
    BodyTooLarge,
    /// The agent's own certificate has expired; it forwards nothing.
    CredentialExpired,
    /// The daemon refused the agent's certificate in the handshake as revoked (revoked,
    /// superseded or unknown serial).
    CertificateRevoked,
    /// The daemon refused the agent's certificate in the handshake as expired.
    CertificateExpired,
    /// The daemon refused the agent's certificate in the handshake: not issued by its CA.
    CertificateUnknownCa,
    /// The daemon refused the agent's certificate in the handshake for another reason.
    CertificateRefused,
    /// The agent could not reach the daemon (the message names the fix).
    DaemonUnreachable,
    /// The daemon did not answer the agent in time.
    DaemonTimeout,
    /// The daemon does not accept netclaw's local-control proof (`{"proof": …}`) as host
    /// authority; mint codes with `netclaw pair` on the daemon host (through the agent).
    LocalControlProofUnsupported,
    /// The route needs host authority (LocalOperator, or LocalProcess in `local` mode).
    HostAuthorityRequired,
}

impl ErrorCode {
    const ALL: [Self; 18] = [
        Self::RequestTargetForm,
        Self::RouteNotForwarded,
        Self::MethodNotForwarded,
        Self::CallerSaturated,
        Self::AgentSaturated,
        Self::CallerStreamLimit,
        Self::AgentStreamLimit,
        Self::BodyTimeout,
        Self::BodyTooLarge,
        Self::CredentialExpired,
        Self::CertificateRevoked,
        Self::CertificateExpired,
        Self::CertificateUnknownCa,
        Self::CertificateRefused,
        Self::DaemonUnreachable,
        Self::DaemonTimeout,
        Self::LocalControlProofUnsupported,
        Self::HostAuthorityRequired,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestTargetForm => "request-target-form",
            Self::RouteNotForwarded => "route-not-forwarded",
            Self::MethodNotForwarded => "method-not-forwarded",
            Self::CallerSaturated => "caller-saturated",
            Self::AgentSaturated => "agent-saturated",
            Self::CallerStreamLimit => "caller-stream-limit",
            Self::AgentStreamLimit => "agent-stream-limit",
            Self::BodyTimeout => "body-timeout",
            Self::BodyTooLarge => "body-too-large",
            Self::CredentialExpired => "credential-expired",
            Self::CertificateRevoked => "certificate-revoked",
            Self::CertificateExpired => "certificate-expired",
            Self::CertificateUnknownCa => "certificate-unknown-ca",
            Self::CertificateRefused => "certificate-refused",
            Self::DaemonUnreachable => "daemon-unreachable",
            Self::DaemonTimeout => "daemon-timeout",
            Self::LocalControlProofUnsupported => "local-control-proof-unsupported",
            Self::HostAuthorityRequired => "host-authority-required",
        }
    }

    /// The code spelled `s` on the wire, if known.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the daemon refused the agent's certificate in the TLS handshake.
    pub fn is_certificate_refusal(self) -> bool {
        matches!(
            self,
            Self::CertificateRevoked
                | Self::CertificateExpired
                | Self::CertificateUnknownCa
                | Self::CertificateRefused
        )
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last second RFC 3339 can write (`9999-12-31T23:59:59Z`).
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC, whole seconds) from Unix seconds. Seconds past the
/// year 9999, which no X.509 time can hold, print as its last second.
pub fn format_unix(secs: u64) -> String {
    let secs = secs.min(LAST_RFC3339_SECOND) as i64;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| String::from("9999-12-31T23:59:59Z"))
}

/// [`format_unix`] with netclaw's spelling of UTC, `+00:00` (.NET's `DateTimeOffset`), for
/// the fields netclaw's clients read.
pub fn format_unix_offset(secs: u64) -> String {
    let mut s = format_unix(secs);
    if s.ends_with('Z') {
        s.pop();
        s.push_str("+00:00");
    }
    s
}

/// Unix seconds from an RFC 3339 / ISO 8601 time with an offset (`Z`, `+00:00`, fractional
/// seconds allowed, as .NET writes `DateTimeOffset`); `None` for anything else or before 1970.
pub fn parse_iso8601(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exchange_takes_netclaws_key_spellings() {
        let want = ExchangeRequest {
            code: "ABCD-EFGH".into(),
            device_name: "phone".into(),
        };
        for body in [
            r#"{"code":"ABCD-EFGH","deviceName":"phone"}"#,
            r#"{"Code":"ABCD-EFGH","DeviceName":"phone"}"#,
        ] {
            assert_eq!(serde_json::from_str::<ExchangeRequest>(body).unwrap(), want);
        }
        assert!(serde_json::from_str::<ExchangeRequest>(
            r#"{"code":"ABCD-EFGH","deviceName":"phone","extra":1}"#
        )
        .is_err());
    }

    #[test]
    fn netclaw_times() {
        assert_eq!(format_unix_offset(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(
            parse_iso8601("2026-01-02T03:04:05.1234567+00:00"),
            Some(1_767_323_045)
        );
        assert_eq!(
            parse_iso8601("2026-01-02T04:04:05+01:00"),
            Some(1_767_323_045)
        );
        assert_eq!(parse_iso8601("2026-01-02T03:04:05Z"), Some(1_767_323_045));
        assert_eq!(parse_iso8601("1969-12-31T23:59:59Z"), None);
        assert_eq!(parse_iso8601("2026-01-02"), None);
    }

    #[test]
    fn error_codes_round_trip_and_unknown_codes_read_as_none() {
        for code in ErrorCode::ALL {
            let body = ErrorBody::with_code("m", code);
            let text = serde_json::to_string(&body).unwrap();
            assert_eq!(text, format!(r#"{{"error":"m","code":"{code}"}}"#));
            assert_eq!(serde_json::from_str::<ErrorBody>(&text).unwrap(), body);
        }
        assert_eq!(
            serde_json::to_string(&ErrorBody::new("m")).unwrap(),
            r#"{"error":"m"}"#
        );
        let newer: ErrorBody =
            serde_json::from_str(r#"{"error":"m","code":"from-the-future"}"#).unwrap();
        assert_eq!(newer, ErrorBody::new("m"));
        let null: ErrorBody = serde_json::from_str(r#"{"error":"m","code":null}"#).unwrap();
        assert_eq!(null.code, None);
    }

    #[test]
    fn formats_dates() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(1_793_491_200), "2026-11-01T00:00:00Z");
        assert_eq!(format_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_unix(1_700_000_001), "2023-11-14T22:13:21Z");
        assert_eq!(format_unix(LAST_RFC3339_SECOND), "9999-12-31T23:59:59Z");
        assert_eq!(format_unix(u64::MAX), "9999-12-31T23:59:59Z");
    }
}

/// `POST /api/pair/exchange` request. netclaw's clients send camelCase keys; its ASP.NET
/// binder also takes PascalCase (`Code`, `DeviceName`), so this does too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExchangeRequest {
    /// The pairing code, `XXXX-XXXX`.
    #[serde(alias = "Code")]
    pub code: String,
    /// The new device's name.
    #[serde(alias = "DeviceName")]
    pub device_name: String,
}

/// `POST /api/pair/exchange` response. The token is shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeResponse {
    /// Bearer token.
    pub token: String,
}

/// `POST /api/local-control/v1/pairing-code` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingCode {
    /// `XXXX-XXXX`.
    pub formatted_code: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// `GET /api/pair/devices` element: netclaw's `PairedDeviceInfoDto` (`name`, `createdAt`,
/// `lastUsedAt`), times as ISO 8601 with an explicit `+00:00` offset as netclaw writes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Name.
    pub name: String,
    /// When it was paired (ISO 8601).
    pub created_at: String,
    /// When its token last authenticated (ISO 8601); the pairing time until then.
    pub last_used_at: String,
}

/// `GET /api/health/status`: netclaw's `DaemonRuntimeStatus.Response` (whose client DTO marks
/// `build`, `process`, `connectors`, `persistence` and `telemetry` required), with this
/// daemon's operator fields alongside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    /// `healthy`, `degraded` or `unknown` (netclaw's values).
    pub overall: String,
    /// What runs.
    pub build: Build,
    /// The daemon process.
    pub process: ProcessStatus,
    /// Chat connectors: always empty here (netclaw-rs has none).
    pub connectors: Vec<Connector>,
    /// Where state is kept.
    pub persistence: Persistence,
    /// Telemetry export.
    pub telemetry: Telemetry,
    /// Exposure mode (netclaw-rs).
    pub mode: String,
    /// Listener addresses (host authority only: a device needs neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listeners: Option<Listeners>,
    /// Operator certificate expiry and agent serials (host authority only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_certificates: Option<OperatorCertificates>,
    /// The pairing limiter's state (host authority only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing: Option<PairingHealth>,
}

/// `build` of [`HealthStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Build {
    /// Daemon version.
    pub version: String,
    /// Source commit, when the build recorded one (else `unknown`).
    pub commit_hash: String,
    /// Build time, when the build recorded one (else `unknown`).
    pub build_timestamp: String,
}

/// `process` of [`HealthStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessStatus {
    /// Process id.
    pub pid: u32,
    /// Start time (ISO 8601, `+00:00`).
    pub started_at_utc: String,
    /// Seconds since start.
    pub uptime_seconds: u64,
}

/// An element of `connectors` of [`HealthStatus`] (netclaw's shape; this daemon lists none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connector {
    /// Key.
    pub key: String,
    /// Display name.
    pub display_name: String,
    /// Whether enabled.
    pub enabled: bool,
    /// `healthy`, `degraded`, `disconnected`, `disabled`, `unknown`.
    pub status: String,
    /// Detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `persistence` of [`HealthStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Persistence {
    /// `files`: the state directory's JSON files.
    pub provider: String,
}

/// `telemetry` of [`HealthStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Telemetry {
    /// Whether telemetry is exported (never, here: metrics are pulled from `/metrics`).
    pub enabled: bool,
    /// OTLP endpoint, when exporting.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

/// Largest request body the daemon accepts (413 beyond).
pub const MAX_REQUEST_BODY: usize = 16 * 1024;

/// `POST /api/local-control/v1/devices/import` (host authority): devices paired with netclaw,
/// read by the CLI from netclaw's `config/devices.json`, to keep their tokens working.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportDevicesRequest {
    /// The devices; all are imported or none.
    pub devices: Vec<ImportedDevice>,
}

/// One device of [`ImportDevicesRequest`]: netclaw's token verifier, never a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportedDevice {
    /// Name.
    pub name: String,
    /// Lowercase hex SHA-256(base64url-decoded token || salt), netclaw's `TokenHash`.
    pub token_hash: String,
    /// Hex salt, netclaw's `Salt`.
    pub salt: String,
    /// Unix seconds, netclaw's `CreatedAt`.
    pub created_at: u64,
    /// Unix seconds, netclaw's `LastUsedAt`.
    pub last_used_at: u64,
}

/// Answer to [`ImportDevicesRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportDevicesResponse {
    /// Names imported.
    pub imported: Vec<String>,
}

/// The pairing limiter as `/api/health/status` shows it to host authority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingHealth {
    /// When the pending code expires (RFC 3339), if one is pending.
    pub code_expires_at: Option<String>,
    /// Wrong codes tried against the pending code.
    pub wrong_guesses: u32,
    /// Wrong codes the pending code takes from any source before only sources without a
    /// failure may try it.
    pub guess_budget: u32,
    /// Whether that budget is spent.
    pub budget_spent: bool,
    /// How many sources are locked out.
    pub locked_out_sources: usize,
    /// The locked-out sources with the longest lockouts (at most [`PairingHealth::LISTED`]).
    pub locked_out: Vec<LockedOutSource>,
}

impl PairingHealth {
    /// Most locked-out sources listed by name.
    pub const LISTED: usize = 10;
}

/// A source locked out of pairing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockedOutSource {
    /// An IPv4 address or an IPv6 `/64`.
    pub source: String,
    /// End of the lockout (RFC 3339).
    pub until: String,
}

/// Listener addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listeners {
    /// Public listener.
    pub public: String,
    /// Operator listener, when running.
    pub operator: Option<String>,
}

/// Operator certificate expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorCertificates {
    /// Operator listener certificate not-after (RFC 3339).
    pub server_not_after: String,
    /// Active agent certificates: serial and not-after (RFC 3339).
    pub agents: Vec<AgentCertificate>,
}

/// An active agent certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCertificate {
    /// Serial.
    pub serial: String,
    /// RFC 3339.
    pub not_after: String,
}

/// A message on the `/hub/session` WebSocket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum HubMessage {
    /// Client → daemon: mint a pairing code (host authority).
    GeneratePairingCode,
    /// Client → daemon: stream audit events (host authority).
    Subscribe,
    /// Daemon → client: a pairing code.
    #[serde(rename_all = "camelCase")]
    PairingCode {
        /// `XXXX-XXXX`.
        formatted_code: String,
        /// RFC 3339.
        expires_at: String,
    },
    /// Daemon → client: an audit event (JSON).
    Event {
        /// The event.
        event: serde_json::Value,
    },
    /// Daemon → client: subscription confirmed.
    Subscribed,
    /// Daemon → client: a refusal or error.
    Error {
        /// Message.
        error: String,
    },
}

/// Path prefix of the agent's own endpoints on its Unix socket; everything else is proxied.
pub const AGENT_PREFIX: &str = "/agent/v1/";

/// `GET /agent/v1/status` on the agent's socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// `true` when the certificate is valid, not within 24 h of expiry without a renewal, and
    /// the daemon answered the last probe.
    pub healthy: bool,
    /// One line per problem, each naming its fix; empty when healthy.
    pub problems: Vec<String>,
    /// The agent certificate's SPIFFE id.
    pub identity: String,
    /// Certificate serial (hex).
    pub serial: String,
    /// RFC 3339.
    pub not_before: String,
    /// RFC 3339.
    pub not_after: String,
    /// Whole days until `not_after` (negative once expired).
    pub days_left: i64,
    /// The daemon's operator listener, `host:port`.
    pub daemon_endpoint: String,
    /// Whether the daemon answered the status probe made for this request.
    pub daemon_reachable: bool,
    /// RFC 3339 time of the last successful credential load or renewal.
    pub last_reload: String,
    /// The last reload failure, if the most recent reload failed.
    pub last_reload_error: Option<String>,
    /// RFC 3339 time of the last successful renewal since start.
    pub last_renewal: Option<String>,
    /// The last renewal failure, if the most recent renewal failed.
    pub last_renewal_error: Option<String>,
    /// Upstream pool state.
    pub pool: PoolStatus,
    /// How far the daemon's clock is ahead of this host's, in seconds (negative: behind), read
    /// from the `Date` of the daemon's answer to the status probe; absent when it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_clock_offset_secs: Option<i64>,
}

/// The agent's upstream connection pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// Upstream TLS connections currently open (pooled or in use).
    pub open: usize,
    /// Upper bound on idle pooled connections.
    pub max_idle: usize,
    /// Forwarded requests in flight at once; more wait for a slot.
    #[serde(default)]
    pub max_in_flight: usize,
    /// TLS handshakes completed since start.
    pub handshakes: u64,
    /// Requests proxied since start.
    pub requests: u64,
}

/// `POST /api/local-control/v1/pki/certificate` (LocalOperator only): renew the caller's agent
/// certificate for the key in `csr`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenewRequest {
    /// PEM certificate signing request (ECDSA P-256).
    pub csr: String,
}

/// Answer to [`RenewRequest`] and to the agent's `POST /agent/v1/rotate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewResponse {
    /// PEM certificate.
    pub certificate: String,
    /// PEM trust bundle (operator CA certificates).
    pub bundle: String,
    /// New serial.
    pub serial: String,
    /// The serial it supersedes (valid for a short grace period).
    pub previous_serial: String,
    /// RFC 3339.
    pub not_after: String,
}
