//! TLS material and configurations for the control API: PEM loading, the mutual-TLS server
//! config, the client config `topoctl` uses, and the identity (subject common name) of a
//! verified client certificate.
//!
//! Owns: reading certificate and key files, building `rustls` configs on the `ring` provider
//! (passed explicitly; the process-wide default provider is never installed or relied upon).
//!
//! Must not touch: sockets and HTTP (see the daemon's `control.rs` and topoctl's `control_client.rs`), roles (the control
//! server maps identities to roles).
//!
//! Identity: the subject CN of the client certificate. `rustls-webpki` (already in the tree
//! through rustls) parses the certificate and hands out the raw subject `Name`; the few lines
//! below walk that `Name` (RFC 5280 §4.1.2.6: SEQUENCE OF SET OF {OID, value}) to find the CN,
//! which is lighter than pulling in a general X.509 parser. It only ever runs on a certificate
//! rustls has already verified against the client CA — except in [`RecordingVerifier`], which
//! reads the *claimed* identity of a certificate the handshake refuses, only for the audit log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

tokio::task_local! {
    /// Where [`RecordingVerifier`] leaves the identity a refused client certificate claims,
    /// for the connection whose handshake runs inside [`record_refused_identity`].
    static REFUSED_IDENTITY: Arc<Mutex<Option<String>>>;
}

/// Runs a server handshake and returns its result with the identity (subject CN) of the client
/// certificate, if one was presented and the verifier refused it. The identity is unverified:
/// it is what the refused certificate says, for the audit log only.
pub async fn record_refused_identity<T>(
    handshake: impl std::future::Future<Output = T>,
) -> (T, Option<String>) {
    let slot = Arc::new(Mutex::new(None));
    let result = REFUSED_IDENTITY.scope(Arc::clone(&slot), handshake).await;
    let identity = slot.lock().map_or(None, |mut identity| identity.take());
    (result, identity)
}

/// The client verifier: webpki's, plus a note of the claimed identity of a refused certificate
/// (see [`record_refused_identity`]). The refusal itself, and its alert, are webpki's.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for RecordingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        if verified.is_err()
            && let Ok(identity) = certificate_identity(end_entity)
        {
            let _ = REFUSED_IDENTITY.try_with(|slot| {
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(identity);
                }
            });
        }
        verified
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// ALPN protocol spoken on the control API.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A failure to load TLS material or build a config; names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("TLS: cannot read {what} from {}: {source}", path.display())]
    Pem {
        /// What was expected (`certificates`, `private key`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The PEM error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A PEM file held no certificate.
    #[error("TLS: {} holds no certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the material (bad key, CA not usable as a trust anchor, …).
    #[error("TLS: {context}: {source}")]
    Rustls {
        /// What was being built.
        context: String,
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// The client verifier could not be built from the client CA.
    #[error("TLS: client CA {}: {source}", path.display())]
    ClientVerifier {
        /// The client CA file.
        path: PathBuf,
        /// The verifier error.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// A verified client certificate carries no usable identity.
    #[error("TLS: client certificate has no usable identity: {reason}")]
    Identity {
        /// Why.
        reason: String,
    },
}

/// Paths of the PEM files a TLS endpoint needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This endpoint's certificate chain (leaf first).
    pub certificate: PathBuf,
    /// This endpoint's private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// The CA that signs the other side's certificates.
    pub ca: PathBuf,
}

/// Reads every certificate in a PEM file; at least one is required.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |source| TlsError::Pem {
        what: "certificates",
        path: path.to_path_buf(),
        source,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

/// Reads the first private key in a PEM file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem {
        what: "private key",
        path: path.to_path_buf(),
        source,
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(
    certificates: Vec<CertificateDer<'static>>,
    path: &Path,
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots.add(certificate).map_err(|source| TlsError::Rustls {
            context: format!("trust anchor from {}", path.display()),
            source,
        })?;
    }
    Ok(roots)
}

/// The control server's config from files: its chain and key, and the client CA that every
/// client certificate must chain to. A client without such a certificate fails the handshake.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certificates(&files.certificate)?;
    let key = load_private_key(&files.private_key)?;
    let client_ca = load_certificates(&files.ca)?;
    server_config_from(chain, key, client_ca, &files.ca)
}

/// [`server_config`] from material already in memory; `ca_origin` names it in errors.
pub fn server_config_from(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Vec<CertificateDer<'static>>,
    ca_origin: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let roots = Arc::new(root_store(client_ca, ca_origin)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|source| TlsError::ClientVerifier {
            path: ca_origin.to_path_buf(),
            source,
        })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            context: "server protocol versions".to_owned(),
            source,
        })?
        .with_client_cert_verifier(Arc::new(RecordingVerifier { inner: verifier }))
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rustls {
            context: "server certificate and key".to_owned(),
            source,
        })?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// `topoctl`'s config from files: its client chain and key, and the CA of the server.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let chain = load_certificates(&files.certificate)?;
    let key = load_private_key(&files.private_key)?;
    let server_ca = load_certificates(&files.ca)?;
    client_config_from(Some((chain, key)), server_ca, &files.ca)
}

/// [`client_config`] from material in memory; `identity: None` presents no client certificate.
pub fn client_config_from(
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    server_ca: Vec<CertificateDer<'static>>,
    ca_origin: &Path,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = root_store(server_ca, ca_origin)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            context: "client protocol versions".to_owned(),
            source,
        })?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|source| TlsError::Rustls {
                context: "client certificate and key".to_owned(),
                source,
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// The identity of a verified client certificate: its subject common name (exactly one CN,
/// a UTF8String, PrintableString or IA5String, non-empty).
pub fn certificate_identity(certificate: &CertificateDer<'_>) -> Result<String, TlsError> {
    let parsed =
        webpki::EndEntityCert::try_from(certificate).map_err(|error| TlsError::Identity {
            reason: format!("cannot parse certificate: {error}"),
        })?;
    subject_common_name(parsed.subject())
}

/// DER OID 2.5.4.3 (id-at-commonName).
const COMMON_NAME_OID: &[u8] = &[0x55, 0x04, 0x03];
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_PRINTABLE_STRING: u8 = 0x13;
const TAG_IA5_STRING: u8 = 0x16;

/// Finds the CN in the contents of a DER `Name` (the RDN sequence without its outer header).
fn subject_common_name(name: &[u8]) -> Result<String, TlsError> {
    let malformed = || TlsError::Identity {
        reason: "malformed subject name".to_owned(),
    };
    let mut found: Option<String> = None;
    let mut rdns = name;
    while !rdns.is_empty() {
        let (rdn, rest) = der_element(rdns, TAG_SET).ok_or_else(malformed)?;
        rdns = rest;
        let mut attributes = rdn;
        while !attributes.is_empty() {
            let (attribute, rest) = der_element(attributes, TAG_SEQUENCE).ok_or_else(malformed)?;
            attributes = rest;
            let (oid, value) = der_element(attribute, TAG_OID).ok_or_else(malformed)?;
            if oid != COMMON_NAME_OID {
                continue;
            }
            let (&tag, _) = value.split_first().ok_or_else(malformed)?;
            let (text, trailing) = der_element(value, tag).ok_or_else(malformed)?;
            if !trailing.is_empty() {
                return Err(malformed());
            }
            let text = match tag {
                TAG_UTF8_STRING | TAG_PRINTABLE_STRING | TAG_IA5_STRING => {
                    std::str::from_utf8(text).map_err(|_| malformed())?
                }
                other => {
                    return Err(TlsError::Identity {
                        reason: format!("common name has unsupported string type 0x{other:02x}"),
                    });
                }
            };
            if found.is_some() {
                return Err(TlsError::Identity {
                    reason: "subject has more than one common name".to_owned(),
                });
            }
            found = Some(text.to_owned());
        }
    }
    match found {
        Some(name) if !name.is_empty() => Ok(name),
        Some(_) => Err(TlsError::Identity {
            reason: "subject common name is empty".to_owned(),
        }),
        None => Err(TlsError::Identity {
            reason: "subject has no common name".to_owned(),
        }),
    }
}

/// Splits one DER element with the expected tag off the front of `input`: its contents and
/// what follows. Only definite lengths (as DER requires) up to four length bytes.
fn der_element(input: &[u8], expected_tag: u8) -> Option<(&[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag != expected_tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |length, &byte| (length << 8) | usize::from(byte))
    };
    if rest.len() < length {
        return None;
    }
    Some(rest.split_at(length))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn certificate_with(distinguished_name: rcgen::DistinguishedName) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = distinguished_name;
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn identity_is_the_subject_common_name() {
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::OrganizationName, "Example Ops");
        name.push(rcgen::DnType::CommonName, "alice@ops");
        name.push(rcgen::DnType::CountryName, "DE");
        assert_eq!(
            certificate_identity(&certificate_with(name)).unwrap(),
            "alice@ops"
        );
    }

    #[test]
    fn identity_requires_a_common_name() {
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::OrganizationName, "Example Ops");
        let error = certificate_identity(&certificate_with(name)).unwrap_err();
        assert!(error.to_string().contains("no common name"), "{error}");
    }

    #[test]
    fn der_walker_rejects_truncated_and_long_form_lengths() {
        // SET { SEQUENCE { OID 2.5.4.3, UTF8String "ab" } }
        let good = [
            0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x02, b'a', b'b',
        ];
        assert_eq!(subject_common_name(&good).unwrap(), "ab");
        for cut in 1..good.len() {
            assert!(subject_common_name(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(der_element(&[0x31, 0x85, 1, 0, 0, 0, 0], TAG_SET).is_none());
        assert_eq!(
            der_element(&[0x31, 0x81, 0x01, 0xaa, 0xbb], TAG_SET),
            Some((&[0xaa][..], &[0xbb][..]))
        );
    }
}
