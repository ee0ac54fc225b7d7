//! `listen.tls` (SPEC §2): one `{ cert, key }` table or an array of them,
//! the first the default. The PEM files are read and checked here, while
//! the config is validated, so that a missing file, a key that does not
//! match its certificate or a PEM without a certificate is a config error
//! with the file and the key's `file:line:col`, on start, in `figway check`
//! and on reload alike (a reload that fails keeps the certificates in
//! service). Paths are relative to the config file's directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use toml::de::DeValue;

use super::doc::{as_string, as_table, Problems, Table, Value};

/// One certificate chain with its key, ready for the TLS handshake.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The leaf certificate's DNS names (subject alternative names),
    /// lower case; a wildcard name keeps its `*.`.
    pub names: Vec<String>,
    pub key: Arc<CertifiedKey>,
}

impl PartialEq for Certificate {
    /// Same files, same bytes: a reload that re-read unchanged files
    /// changed nothing.
    fn eq(&self, other: &Certificate) -> bool {
        self.cert_file == other.cert_file
            && self.key_file == other.key_file
            && self.key.cert == other.key.cert
    }
}

/// Reads `listen.tls` from the `[listen]` table; empty when absent.
pub fn read_tls(
    listen: &mut Table<'_, '_>,
    base: &Path,
    problems: &mut Problems,
) -> Vec<Certificate> {
    let Some(value) = listen.get("tls") else {
        return Vec::new();
    };
    let path = listen.key_path("tls");
    match value.get_ref() {
        DeValue::Array(items) => {
            if items.is_empty() {
                problems.add(
                    value.span(),
                    path.clone(),
                    "needs at least one { cert, key } table",
                );
            }
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| one(item, format!("{path}[{i}]"), base, problems))
                .collect()
        }
        _ => one(value, path, base, problems).into_iter().collect(),
    }
}

fn one(
    value: &Value<'_>,
    path: String,
    base: &Path,
    problems: &mut Problems,
) -> Option<Certificate> {
    let mut t = as_table(value, path, problems)?;
    let cert = t
        .required("cert", problems)
        .and_then(|v| as_string(v, &t.key_path("cert"), problems));
    let key = t
        .required("key", problems)
        .and_then(|v| as_string(v, &t.key_path("key"), problems));
    let (cert_key, key_key) = (t.key_path("cert"), t.key_path("key"));
    t.finish(problems);
    let (cert, key) = (cert?, key?);
    let cert_file = base.join(&cert.value);
    let key_file = base.join(&key.value);
    let chain = match read_chain(&cert_file) {
        Ok(chain) => chain,
        Err(e) => {
            problems.add(cert.span, cert_key, e);
            return None;
        }
    };
    let private = match read_key(&key_file) {
        Ok(k) => k,
        Err(e) => {
            problems.add(key.span, key_key, e);
            return None;
        }
    };
    let names = match dns_names(&chain[0]) {
        Ok(names) => names,
        Err(e) => {
            problems.add(cert.span, cert_key, format!("{}: {e}", cert_file.display()));
            return None;
        }
    };
    let provider = rustls::crypto::ring::default_provider();
    let certified = match CertifiedKey::from_der(chain, private, &provider) {
        Ok(c) => c,
        Err(e) => {
            let message = match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "{} does not belong to the certificate in {}",
                    key_file.display(),
                    cert_file.display()
                ),
                other => format!("{}: unusable private key: {other}", key_file.display()),
            };
            problems.add(key.span, key_key, message);
            return None;
        }
    };
    Some(Certificate {
        cert_file,
        key_file,
        names,
        key: Arc::new(certified),
    })
}

/// The certificates of a PEM file, leaf first.
fn read_chain(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", file.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no CERTIFICATE block in it", file.display()));
    }
    Ok(chain)
}

/// The first private key of a PEM file (PKCS#8, RSA or SEC1/EC).
fn read_key(file: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("{}: no usable PRIVATE KEY block in it: {e}", file.display()))
}

fn dns_names(leaf: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let parsed = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("the first certificate cannot be parsed: {e}"))?;
    Ok(parsed
        .valid_dns_names()
        .map(str::to_ascii_lowercase)
        .collect())
}
