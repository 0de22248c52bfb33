//! TLS client settings for the service's own connections (Postgres, Redis): which roots are
//! trusted. Certificates are always verified, host name included; there is no "accept any
//! certificate" switch.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// Every regional RDS CA plus Amazon's public roots (for RDS Proxy), from
/// `scripts/update-rds-ca.sh`.
pub const RDS_CA_BUNDLE: &str = include_str!("../certs/rds-ca-bundle.pem");

/// The certificates of a PEM text, in order; an empty or unreadable text is an error.
pub fn certificates(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("reading PEM certificates")?;
    if certificates.is_empty() {
        bail!("no certificate in the PEM text");
    }
    Ok(certificates)
}

/// The PEM text of `file` if given, else `default`.
pub fn roots_pem(file: Option<&Path>, default: &str) -> anyhow::Result<Vec<u8>> {
    match file {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display())),
        None => Ok(default.as_bytes().to_vec()),
    }
}

/// A rustls client configuration trusting exactly the certificates in `roots_pem`.
pub fn client_config(roots_pem: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(roots_pem)? {
        roots.add(certificate).context("adding a trust anchor")?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_rds_roots_load() {
        let certificates = certificates(RDS_CA_BUNDLE.as_bytes()).expect("bundle");
        assert!(certificates.len() > 100, "{} roots", certificates.len());
        client_config(RDS_CA_BUNDLE.as_bytes()).expect("a client configuration");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        assert!(client_config(b"not a certificate").is_err());
    }
}
