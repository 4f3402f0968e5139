//! `netclaw pair join`: where a paired device may send its pairing code, and the token file of
//! `pair join --token-file` (by default the token is kept in a saved context,
//! `contexts`).
//!
//! # Security
//!
//! The code and the token travel only over HTTPS, or plain HTTP to a loopback address; the check
//! happens before any connection. The token is written 0600 atomically (temporary file,
//! `fsync`, rename) in a 0700 directory, and an existing token file is not replaced without
//! `--force`. Token values are never printed or logged.

use std::path::Path;

use netclaw_pki::secure_fs;
use zeroize::Zeroizing;

use crate::address::Endpoint;
use crate::exit::CliError;

/// The endpoint a device may join, or a usage error naming why not.
pub fn join_endpoint(url: &str) -> Result<Endpoint, CliError> {
    let endpoint = Endpoint::parse(url).map_err(|e| CliError::Usage(e.to_string()))?;
    match &endpoint {
        Endpoint::Https(_) => Ok(endpoint),
        Endpoint::Http(t) if t.is_loopback() => Ok(endpoint),
        Endpoint::Http(t) => Err(CliError::Usage(format!(
                "refusing to send a pairing code over plain HTTP to {}: use the daemon's https:// URL (plain http:// is accepted only for loopback addresses)",
                t.host
            ),
        )),
        Endpoint::Unix(_) => Err(CliError::Usage("pair join needs the daemon's public https:// URL, not a socket; on the daemon host itself no pairing is needed".into(),
        )),
    }
}

/// Refuses to overwrite an existing token unless `force` (checked before the code is spent).
pub fn check_writable(path: &Path, force: bool) -> Result<(), CliError> {
    if path.exists() && !force {
        return Err(CliError::Failed(format!(
                "{} already holds a device token; pass --force to replace it, or --token-file to keep both",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Writes `token` to `path`, mode 0600, atomically; a missing parent is created 0700.
pub fn store(path: &Path, token: &str) -> Result<(), CliError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !dir.exists() {
            secure_fs::ensure_private_dir(dir)?;
        }
    }
    let mut data = Zeroizing::new(Vec::with_capacity(token.len() + 1));
    data.extend_from_slice(token.as_bytes());
    data.push(b'\n');
    secure_fs::write_atomic(path, &data, secure_fs::KEY_MODE)?;
    Ok(())
}

/// Reads a token written by [`store`], refusing a file others can read.
pub fn load(path: &Path) -> Result<Zeroizing<String>, CliError> {
    let bytes = secure_fs::read_secret(path, "device token", "run `netclaw pair join`")?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| CliError::Credentials(format!("{} is not a device token", path.display())))?;
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CliError::Credentials(format!(
            "{} is not a device token",
            path.display()
        )));
    }
    Ok(Zeroizing::new(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::exit::ExitCode;

    #[test]
    fn join_accepts_https_and_loopback_http_only() {
        assert!(join_endpoint("https://daemon.example").is_ok());
        assert!(join_endpoint("http://127.0.0.1:5199").is_ok());
        assert!(join_endpoint("http://[::1]:5199").is_ok());
        assert!(join_endpoint("http://localhost:5199").is_ok());
        let e = join_endpoint("http://daemon.example.invalid").unwrap_err();
        assert_eq!(e.exit_code(), ExitCode::Usage);
        assert!(e.to_string().contains("https://"), "{}", e.to_string());
        assert!(join_endpoint("http://127.0.0.1.example:80").is_err());
        assert!(join_endpoint("unix:/run/x.sock").is_err());
        assert!(join_endpoint("ftp://x").is_err());
    }

    #[test]
    fn token_file_is_0600_in_a_0700_dir_and_not_replaced_silently() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("tokens/a.token");
        check_writable(&path, false).unwrap();
        store(&path, "tok").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(load(&path).unwrap().as_str(), "tok");
        assert!(check_writable(&path, false).is_err());
        check_writable(&path, true).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load(&path).unwrap_err().exit_code(), ExitCode::Credentials);
    }
}
