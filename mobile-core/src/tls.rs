//! How the phone talks TLS to the server.
//!
//! rustls on ring with Mozilla's root certificates compiled in: the same trust on Android
//! and iOS, and no Java-side initialisation the way the platform verifier needs it on
//! Android. A network that runs its server under a certificate of its own CA passes that
//! CA in [`crate::Config::trusted_certificates_pem`]; it is trusted in addition to the
//! built-in roots, never instead of them.
//!
//! Plain `http://` is used only for a server on the phone itself (loopback: a developer's
//! server reached through `adb reverse`, a test). A private address is no safer: a
//! café's or a shelter's Wi-Fi is a local network too, and anyone on it would read the
//! device token and case notes in clear text. Such an address, like an
//! unreadable CA list, still opens the store: only the calls that need the server fail,
//! with `InvalidInput` naming the setting (see `Shared::transport`).

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::{Error, Result};

pub(crate) const FIELD: &str = "trusted_certificates_pem";
/// A few CA certificates are a few kilobytes; more than this is not a trust list.
const MAX_PEM: usize = 256 * 1024;
const MAX_CERTIFICATES: usize = 32;

/// The client configuration both the HTTP client and the WebSocket use.
pub(crate) fn client_config(extra_pem: Option<&str>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_pem.filter(|pem| !pem.trim().is_empty()) {
        if pem.len() > MAX_PEM {
            return Err(Error::invalid(
                FIELD,
                "too long for a list of CA certificates",
            ));
        }
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert =
                cert.map_err(|e| Error::invalid(FIELD, format!("not readable as PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| Error::invalid(FIELD, format!("not a usable certificate: {e}")))?;
            added += 1;
            if added > MAX_CERTIFICATES {
                return Err(Error::invalid(
                    FIELD,
                    format!("more than {MAX_CERTIFICATES} certificates"),
                ));
            }
        }
        if added == 0 {
            return Err(Error::invalid(
                FIELD,
                "holds no -----BEGIN CERTIFICATE----- block",
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Whether a server at this address may be spoken to without TLS.
pub(crate) fn plain_http_allowed(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// A TLS failure somewhere in an error's chain, worded for the app's logs. A certificate
/// the phone does not trust is not a network hiccup: retrying does not help.
pub(crate) fn failure_in(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // An io::Error's `source` skips the error it wraps (which may be another io::Error
        // around the rustls one): step into it instead.
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(url: &str) -> bool {
        plain_http_allowed(&reqwest::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}")))
    }

    #[test]
    fn plain_http_only_on_this_device() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.3.2.1",
            "http://localhost:8080",
            "http://[::1]:8080",
        ] {
            assert!(allowed(url), "{url}");
        }
        for url in [
            "http://10.0.2.2:8080",
            "http://192.168.178.20",
            "http://172.20.1.1",
            "http://169.254.1.1",
            "http://[fd12:3456::1]",
            "http://[fe80::1]",
            "http://lotse.example.org",
            "http://8.8.8.8",
            "http://172.32.0.1",
            "http://[2001:db8::1]",
            "http://localhost.example.org",
        ] {
            assert!(!allowed(url), "{url}");
        }
    }

    #[test]
    fn extra_certificates_are_checked() {
        assert!(client_config(None).is_ok());
        assert!(client_config(Some("  \n")).is_ok());
        for bad in [
            "no certificate here",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            match client_config(Some(bad)) {
                Err(Error::InvalidInput { field, .. }) => assert_eq!(field, FIELD, "{bad}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        let huge = "x".repeat(MAX_PEM + 1);
        assert!(matches!(
            client_config(Some(&huge)),
            Err(Error::InvalidInput { .. })
        ));
    }
}
