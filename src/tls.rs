//! TLS termination (SPEC §2 `listen.tls`): the handshake's certificate
//! choice and the client stream, plain or TLS, that the rest of the server
//! reads without caring which.
//!
//! The certificates live behind one atomic pointer in [`Certs`], which a
//! reload swaps (the config step already read and checked the PEM files):
//! handshakes after the swap present the new certificates, connections
//! already up keep the session they have. A handshake picks the first
//! certificate with a name matching the client's SNI (a `*.` name matches
//! one label), else the first certificate. ALPN offers `h2` then
//! `http/1.1`; hyper-util's auto builder then tells them apart by the
//! client's first bytes, as on plain TCP.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::tls::Certificate;

/// The certificates in service.
#[derive(Debug)]
pub struct Certs {
    current: ArcSwap<Vec<Certificate>>,
    /// One session-ticket key set for the process: every worker's acceptor
    /// shares it, so a returning client resumes whichever worker's
    /// listener the kernel hands it to. `None` when ring could not make
    /// one (then full handshakes only).
    tickets: Option<Arc<dyn rustls::server::ProducesTickets>>,
}

impl Certs {
    pub fn new(certs: Vec<Certificate>) -> Arc<Certs> {
        let tickets = match rustls::crypto::ring::Ticketer::new() {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "no TLS session tickets; every handshake is a full one");
                None
            }
        };
        Arc::new(Certs {
            current: ArcSwap::from_pointee(certs),
            tickets,
        })
    }

    /// Puts a reloaded set in service for the handshakes that follow.
    pub fn replace(&self, certs: Vec<Certificate>) {
        self.current.store(Arc::new(certs));
    }

    /// The PEM files in service, for the reloader to watch.
    pub fn files(&self) -> Vec<PathBuf> {
        self.current
            .load()
            .iter()
            .flat_map(|c| [c.cert_file.clone(), c.key_file.clone()])
            .collect()
    }

    /// The certificate for a handshake that asked for `sni`.
    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let certs = self.current.load();
        let chosen = sni
            .and_then(|name| {
                certs
                    .iter()
                    .find(|c| c.names.iter().any(|n| name_matches(n, name)))
            })
            .or_else(|| certs.first());
        chosen.map(|c| c.key.clone())
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

/// What a file-change reload compares to tell whether anything changed:
/// the config's version, then a digest of the PEM files' bytes as they are
/// on disk now (a renewal rewrites them and leaves the config alone).
pub fn fingerprint(version: &str, certs: &[Certificate]) -> String {
    let files: Vec<PathBuf> = certs
        .iter()
        .flat_map(|c| [c.cert_file.clone(), c.key_file.clone()])
        .collect();
    fingerprint_files(version, &files)
}

/// [`fingerprint`] over the files themselves.
pub fn fingerprint_files(version: &str, files: &[PathBuf]) -> String {
    use sha2::{Digest, Sha256};
    if files.is_empty() {
        return version.to_string();
    }
    let mut digest = Sha256::new();
    for file in files {
        // An unreadable file digests as empty: the reload it causes
        // reports the error.
        digest.update(std::fs::read(file).unwrap_or_default());
        digest.update([0]);
    }
    format!("{version}/{}", crate::config::hex(&digest.finalize()))
}

/// Whether a certificate name (`shop.example`, `*.example`) covers `host`.
fn name_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// A worker's acceptor: TLS 1.2 and 1.3 (rustls' safe defaults, ring),
/// ALPN h2 and http/1.1, stateless session tickets (the process's one key
/// set) so returning clients skip the full handshake.
pub fn acceptor(certs: Arc<Certs>) -> io::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tickets = certs.tickets.clone();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if let Some(tickets) = tickets {
        config.ticketer = tickets;
    }
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A client connection, plain or TLS.
pub enum ClientStream {
    Plain(TcpStream),
    /// Boxed: a TLS session is a few KiB, and plain connections should not
    /// pay for its size.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_matches("shop.example", "SHOP.example"));
        assert!(name_matches("*.example", "api.example"));
        assert!(!name_matches("*.example", "example"));
        assert!(!name_matches("*.example", "a.b.example"));
        assert!(!name_matches("*.example", ".example"));
        assert!(!name_matches("shop.example", "api.example"));
    }
}
