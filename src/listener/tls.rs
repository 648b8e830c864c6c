//! The TLS front door: rustls with the aws-lc-rs provider passed explicitly, TLS 1.2 and 1.3,
//! ALPN `h2` and `http/1.1`, and certificates chosen by SNI from the DNS names each
//! certificate carries (the first configured certificate is the default). QUIC listeners get
//! the same certificates with TLS 1.3 only and ALPN `h3`.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::CertificateFiles;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("no [[tls.certificates]] configured for the https listeners")]
    NoCertificates,
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

pub(crate) fn server_config(
    files: &[CertificateFiles],
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let resolver = SniResolver::load(files, &provider)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The same certificates for QUIC: TLS 1.3 only (RFC 9001 §4.2), ALPN `h3`.
pub(crate) fn quic_server_config(
    files: &[CertificateFiles],
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let resolver = SniResolver::load(files, &provider)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h3".to_vec()];
    // No 0-RTT: replayed early data would let a request run twice.
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` certificates under ".example.com".
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn load(files: &[CertificateFiles], provider: &CryptoProvider) -> Result<Self, TlsSetupError> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for file in files {
            let (key, names) = load_pair(file, provider)?;
            for name in names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix('*') {
                    Some(suffix) => wildcard
                        .entry(suffix.to_owned())
                        .or_insert_with(|| key.clone()),
                    None => exact.entry(name).or_insert_with(|| key.clone()),
                };
            }
            default.get_or_insert(key);
        }
        let default = default.ok_or(TlsSetupError::NoCertificates)?;
        Ok(Self {
            exact,
            wildcard,
            default,
        })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.to_ascii_lowercase();
        let wildcard = name
            .find('.')
            .and_then(|dot| self.wildcard.get(&name[dot..]));
        Some(
            self.exact
                .get(&name)
                .or(wildcard)
                .unwrap_or(&self.default)
                .clone(),
        )
    }
}

/// Read one certificate chain and its key; the names are the certificate's DNS SANs.
fn load_pair(
    file: &CertificateFiles,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, Vec<String>), TlsSetupError> {
    let cert_err = |message: String| TlsSetupError::File {
        path: file.cert.display().to_string(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&file.cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| cert_err("no certificate in file".into()))?;
    let names: Vec<String> = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| cert_err(format!("unreadable certificate: {e}")))?
        .valid_dns_names()
        .map(str::to_owned)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&file.key).map_err(|e| TlsSetupError::File {
        path: file.key.display().to_string(),
        message: e.to_string(),
    })?;
    let certified =
        CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsSetupError::File {
            path: file.key.display().to_string(),
            message: format!("key does not fit the certificate: {e}"),
        })?;
    Ok((Arc::new(certified), names))
}
