//! TLS for every listener and client: a consortium CA made on this machine (so a demo needs
//! no manual steps), node certificates signed by it, and rustls configurations (ring provider).

use anyhow::{anyhow, Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// A certificate and its private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    /// Secret; written with owner-only permissions.
    pub key_pem: zeroize::Zeroizing<String>,
}

/// A consortium CA, kept in memory only while certificates are issued.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    /// A fresh CA named after the consortium.
    ///
    /// # Errors
    /// Key generation or signing failures.
    pub fn generate(consortium: &str) -> Result<Ca> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Larder CA for {consortium}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `name`, valid for the given DNS names and IP addresses.
    ///
    /// # Errors
    /// Key generation or signing failures.
    pub fn issue(&self, name: &str, hosts: &[&str]) -> Result<Issued> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        for h in hosts {
            params
                .subject_alt_names
                .push(match h.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName((*h).try_into()?),
                });
        }
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: zeroize::Zeroizing::new(key.serialize_pem()),
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificates from PEM text.
///
/// # Errors
/// Unparseable PEM or no certificate in it.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("reading PEM certificates")?;
    if certs.is_empty() {
        return Err(anyhow!("no certificate in PEM"));
    }
    Ok(certs)
}

/// A TLS server configuration (HTTP/1.1) from a certificate chain and key in PEM.
///
/// # Errors
/// Unparseable PEM, or a key that does not fit the certificate.
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>> {
    let certs = certs_from_pem(cert_pem)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .context("reading PEM private key")?
        .ok_or_else(|| anyhow!("no private key in PEM"))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// An HTTPS client that trusts only the consortium CA.
///
/// # Errors
/// An unparseable CA certificate.
pub fn client(ca_pem: &str, timeout: std::time::Duration) -> Result<reqwest::Client> {
    // A file with no certificate in it would otherwise trust nothing and fail every call
    // with a misleading `UnknownIssuer`.
    certs_from_pem(ca_pem).context("the CA file holds no certificate")?;
    let ca =
        reqwest::Certificate::from_pem(ca_pem.as_bytes()).context("reading the CA certificate")?;
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .connect_timeout(std::time::Duration::from_secs(3))
        // Pooled connections to a peer that vanished without closing them (a power cut, a
        // network partition) are found dead rather than waited on.
        .tcp_keepalive(std::time::Duration::from_secs(15))
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .timeout(timeout)
        .http1_only()
        .build()
        .context("building the HTTPS client")
}

/// A TLS client configuration (HTTP/1.1) that trusts only the certificates in `ca_pem`, for
/// clients that speak raw TLS (tests of the node's limits).
///
/// # Errors
/// Unparseable PEM or no certificate in it.
pub fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs_from_pem(ca_pem)? {
        roots.add(cert).context("adding a CA certificate")?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_ca_file_without_a_certificate_says_so() {
        let key_only = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        for pem in ["", "not pem at all", key_only] {
            let e = super::client(pem, std::time::Duration::from_secs(1)).unwrap_err();
            assert!(
                format!("{e:#}").contains("holds no certificate"),
                "{pem:?}: {e:#}"
            );
        }
    }
}
