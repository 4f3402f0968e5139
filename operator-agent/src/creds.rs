//! The agent's credentials: loading, checking and the rustls client configuration built from
//! them.
//!
//! A credential set is swapped in only after its key was shown to match its certificate and the
//! certificate verified against the CA bundle (chain, EKU clientAuth, SPIFFE URI in the configured
//! trust domain). An expired certificate loads — so that status and the CLI can say what is wrong —
//! but is marked expired and never offered to the daemon.

use std::sync::Arc;
use std::time::SystemTime;

use netclaw_pki::file_policy::{self, Findings};
use netclaw_pki::identity::OperatorIdentity;
use netclaw_pki::spiffe::{SpiffeId, TrustDomain};
use netclaw_pki::store::{self, AgentPaths};
use netclaw_pki::verify::{self, ExpectedAgent};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConfig;

/// Why a credential set could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Files missing, unreadable, with loose permissions, or key and certificate mismatched.
    #[error(transparent)]
    Pki(#[from] netclaw_pki::PkiError),
    /// The directory, key, certificate or bundle has a mode, owner or link that lets another
    /// user read the key or replace what the agent trusts (each finding names its fix).
    #[error("refusing the credentials: {0}")]
    Files(Findings),
    /// The certificate does not verify against the bundle or carries the wrong identity.
    #[error("{path}: {reason}; re-issue it with `netclaw pki rotate --offline` (as root)")]
    Invalid {
        /// The certificate file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The certificate starts later than this host's clock allows (see
    /// [`verify::CLOCK_SKEW_TOLERANCE`]): the clocks disagree, the certificate is fine.
    #[error("{path}: {reason}")]
    Clock {
        /// The certificate file.
        path: String,
        /// Both clock readings and the fix.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS client configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// A loaded, checked credential set.
#[derive(Debug)]
pub struct Credentials {
    /// The certificate's identity.
    pub identity: OperatorIdentity,
    /// The client TLS configuration (TLS 1.3 only, server verified against the bundle only).
    pub tls: Arc<ClientConfig>,
    /// Certificate DER, to detect an unchanged file on reload.
    pub cert_der: CertificateDer<'static>,
    /// The trust bundle, likewise (it changes alone during a CA rotation).
    pub bundle: Vec<CertificateDer<'static>>,
}

/// Checks the modes, owners and links of the agent's files for this process's user (see
/// [`netclaw_pki::file_policy`]).
pub fn check_files(paths: &AgentPaths) -> Result<(), CredentialError> {
    let findings = file_policy::check_all(
        &file_policy::agent_files(paths),
        nix::unistd::geteuid().as_raw(),
    );
    if findings.is_empty() {
        Ok(())
    } else {
        Err(CredentialError::Files(Findings(findings)))
    }
}

impl Credentials {
    /// Checks the files ([`check_files`]), loads the credentials at `paths` and checks them at
    /// `now`.
    pub fn load(
        paths: &AgentPaths,
        trust_domain: &TrustDomain,
        now: SystemTime,
    ) -> Result<Self, CredentialError> {
        check_files(paths)?;
        let creds = store::load_agent(paths)?;
        let cert_path = paths.client_cert().display().to_string();
        let invalid = |reason: String| CredentialError::Invalid {
            path: cert_path.clone(),
            reason,
        };
        let info = verify::inspect(&creds.cert.der).map_err(|e| invalid(e.to_string()))?;
        let uri = info
            .sans
            .iter()
            .find_map(|s| s.strip_prefix("URI:"))
            .ok_or_else(|| invalid("no SPIFFE URI in the certificate".into()))?;
        let spiffe: SpiffeId = uri.parse().map_err(|e| invalid(format!("{e}")))?;
        if spiffe.trust_domain() != trust_domain {
            return Err(invalid(format!(
                "trust domain {} is not the configured Operator.TrustDomain {trust_domain}",
                spiffe.trust_domain()
            )));
        }
        let expected = ExpectedAgent {
            trust_domain: trust_domain.clone(),
            host_id: spiffe.host_id().clone(),
        };
        // Verify at a time inside the validity window when the certificate has expired, so that
        // everything except expiry is still checked; expiry itself is reported by `expired`.
        // A NotBefore slightly ahead of this host's clock (the daemon's clock runs ahead) is
        // checked at NotBefore, within `CLOCK_SKEW_TOLERANCE`.
        let check_at = if now > info.not_after {
            info.not_after
        } else {
            verify::skew_tolerant_time(now, info.not_before)
        };
        let identity =
            verify::verify_agent_certificate(&creds.cert.der, &creds.bundle, &expected, check_at)
                .map_err(|e| match e {
                netclaw_pki::PkiError::Verify(
                    v @ netclaw_pki::VerifyError::Chain(webpki::Error::CertNotValidYet { .. }),
                ) => CredentialError::Clock {
                    path: cert_path.clone(),
                    reason: v.to_string(),
                },
                e => invalid(e.to_string()),
            })?;

        let tls =
            crate::tls::client_config(&creds.bundle, &creds.cert.der, &creds.key).map_err(|e| {
                match e {
                    crate::tls::ConfigError::Bundle(m) => invalid(format!("CA bundle: {m}")),
                    crate::tls::ConfigError::Tls(e) => CredentialError::Tls(e),
                }
            })?;
        Ok(Self {
            identity,
            tls: Arc::new(tls),
            cert_der: creds.cert.der,
            bundle: creds.bundle,
        })
    }

    /// Whether the certificate has expired at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        now > self.identity.not_after
    }
}

/// The name the daemon's server certificate must carry: the operator listener's IP, or loopback
/// when it binds a wildcard address.
pub fn server_name(host: std::net::IpAddr) -> ServerName<'static> {
    ServerName::IpAddress(netclaw_core::net::dial_ip(host).into())
}

#[cfg(test)]
mod tests {
    //! The clock-skew tolerance, with real TLS handshakes on loopback against a server whose
    //! certificate starts in this host's future (its issuer's clock runs ahead).
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use netclaw_pki::hostid;
    use netclaw_pki::issue::ListenerNames;
    use netclaw_pki::{CertificateLifetime, OperatorCa};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn td() -> TrustDomain {
        TrustDomain::DEFAULT.parse().unwrap()
    }

    fn ca(now: SystemTime) -> OperatorCa {
        let names = ListenerNames {
            ips: vec![LOOPBACK],
            dns: vec![],
        };
        OperatorCa::generate("test", &names, now - Duration::from_secs(3600)).unwrap()
    }

    /// Writes an agent certificate issued at `issued` and loads it at `now`.
    fn agent(
        ca: &OperatorCa,
        dir: &std::path::Path,
        issued: SystemTime,
        now: SystemTime,
    ) -> Result<Credentials, CredentialError> {
        let host = hostid::from_machine_id(b"0123456789abcdef0123456789abcdef").unwrap();
        let id = SpiffeId::operator_agent(td(), host);
        let cert = ca
            .issue_agent(&id, issued, CertificateLifetime::default())
            .unwrap();
        let paths = AgentPaths::new(dir.to_path_buf());
        store::save_agent(&paths, &cert.key, &cert.cert.pem, &ca.certificate().pem).unwrap();
        Credentials::load(&paths, &td(), now)
    }

    /// One TLS 1.3 handshake and a byte each way between `creds` and a server presenting a
    /// certificate `ca` issued at `issued`; the client's error, if any.
    async fn handshake(ca: &OperatorCa, creds: &Credentials, issued: SystemTime) -> Option<String> {
        let acceptor = crate::testing::loopback_acceptor(ca, issued);
        let listener = tokio::net::TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serve = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let mut b = [0u8; 1];
                if tls.read_exact(&mut b).await.is_ok() {
                    let _ = tls.write_all(&b).await;
                    let _ = tls.shutdown().await;
                }
            }
        });
        let connector = tokio_rustls::TlsConnector::from(creds.tls.clone());
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let result = async {
            let mut tls = connector.connect(server_name(LOOPBACK), tcp).await?;
            tls.write_all(b"x").await?;
            let mut b = [0u8; 1];
            tls.read_exact(&mut b).await?;
            Ok::<_, std::io::Error>(())
        }
        .await;
        serve.await.unwrap();
        result.err().map(|e| e.to_string())
    }

    #[tokio::test]
    async fn a_daemon_clock_up_to_five_minutes_ahead_is_tolerated_and_more_is_named() {
        let now = SystemTime::now();
        let ca = ca(now);
        let dir = tempfile::tempdir().unwrap();
        let creds = agent(&ca, dir.path(), now, now).unwrap();

        // The daemon's clock 5 minutes ahead: its certificate starts 4 minutes from now.
        let ahead = now + Duration::from_secs(5 * 60);
        assert_eq!(handshake(&ca, &creds, ahead).await, None);
        // And in step.
        assert_eq!(handshake(&ca, &creds, now).await, None);

        // 20 minutes ahead: refused, with both clock readings and the fix.
        let err = handshake(&ca, &creds, now + Duration::from_secs(20 * 60))
            .await
            .expect("refused");
        assert!(err.contains("not valid yet"), "{err}");
        assert!(err.contains("this host's clock"), "{err}");
        assert!(err.contains("timedatectl"), "{err}");
    }

    #[test]
    fn an_agent_certificate_from_a_daemon_clock_ahead_loads_within_the_tolerance() {
        let now = SystemTime::now();
        let ca = ca(now);
        let dir = tempfile::tempdir().unwrap();
        agent(&ca, dir.path(), now + Duration::from_secs(5 * 60), now).unwrap();
        let err = agent(&ca, dir.path(), now + Duration::from_secs(20 * 60), now)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid yet"), "{err}");
        assert!(err.contains("clock"), "{err}");
        assert!(!err.contains("re-issue"), "the certificate is fine: {err}");
    }
}
