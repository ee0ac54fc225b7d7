//! TLS termination over real sockets (SPEC §2 `listen.tls`, §4): HTTPS with
//! certificates made at test time by rcgen (ECDSA, and RSA from a fixture
//! key), chains, HTTP/1.1 and h2 by ALPN, SNI choice with a default,
//! `X-Forwarded-Proto: https`, rotation on disk with no failed request, bad
//! PEM files on start and on reload, and a silent client cut off.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use support::{tempdir, Backend, Figway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A test CA that issues leaf certificates into PEM files.
struct Pki {
    issuer: Issuer<'static, KeyPair>,
    root: CertificateDer<'static>,
    root_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "figway test CA");
        let key = KeyPair::generate().unwrap();
        let root = params.self_signed(&key).unwrap();
        Pki {
            root: root.der().clone(),
            root_pem: root.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes `NAME.pem` (leaf, then the CA: a chain) and `NAME.key` into
    /// `dir`; returns the leaf.
    fn issue(
        &self,
        dir: &Path,
        name: &str,
        sans: &[&str],
        key: KeyPair,
    ) -> CertificateDer<'static> {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let leaf = CertificateParams::new(sans)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        replace(
            &dir.join(format!("{name}.pem")),
            &format!("{}{}", leaf.pem(), self.root_pem),
        );
        replace(&dir.join(format!("{name}.key")), &key.serialize_pem());
        leaf.der().clone()
    }
}

/// Writes by rename, as cert-manager and editors do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn ecdsa() -> KeyPair {
    KeyPair::generate().unwrap()
}

fn rsa() -> KeyPair {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rsa2048.key"
    ))
    .unwrap();
    KeyPair::from_pem(&pem).unwrap()
}

fn tls_config(dir: &Path, names: &[&str], upstream: &str) -> String {
    let tables: Vec<String> = names
        .iter()
        .map(|n| {
            format!(
                "{{ cert = \"{}\", key = \"{}\" }}",
                dir.join(format!("{n}.pem")).display(),
                dir.join(format!("{n}.key")).display()
            )
        })
        .collect();
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\nheader_read_timeout = \"500ms\"\ntls = [{}]\n\
         [admin]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = false\n\
         [upstreams.app]\ntargets = [\"{upstream}\"]\n[[routes]]\nprefix = \"/\"\nto = \"app\"\n",
        tables.join(", ")
    )
}

/// A TLS client connection trusting `root`; `sni: None` sends no SNI (and
/// verifies the answer against `verify_as`).
async fn connect(
    addr: std::net::SocketAddr,
    root: &CertificateDer<'static>,
    sni: Option<&str>,
    verify_as: &str,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.enable_sni = sni.is_some();
    let name = ServerName::try_from(sni.unwrap_or(verify_as).to_string()).unwrap();
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

fn presented(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// GET `path` over HTTP/1.1 on `tls`; status and body.
async fn get_h1(tls: TlsStream<TcpStream>, path: &str) -> (StatusCode, Bytes) {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "shop.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    let status = res.status();
    (status, res.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn https_http1_with_an_ecdsa_chain_and_forwarded_proto() {
    let dir = tempdir::Dir::new();
    let pki = Pki::new();
    pki.issue(dir.path(), "shop", &["shop.test"], ecdsa());
    let b = Backend::start("app").await;
    let f = Figway::start(&tls_config(dir.path(), &["shop"], &b.url())).await;

    let tls = connect(
        f.addr,
        &pki.root,
        Some("shop.test"),
        "shop.test",
        &[b"http/1.1"],
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (status, body) = get_h1(tls, "/x").await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"app");
    let seen = b.last();
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["host"], "shop.test");
}

#[tokio::test]
async fn https_h2_by_alpn_with_an_rsa_key() {
    let dir = tempdir::Dir::new();
    let pki = Pki::new();
    pki.issue(dir.path(), "shop", &["shop.test"], rsa());
    let b = Backend::start("app").await;
    let f = Figway::start(&tls_config(dir.path(), &["shop"], &b.url())).await;

    let tls = connect(
        f.addr,
        &pki.root,
        Some("shop.test"),
        "shop.test",
        &[b"h2", b"http/1.1"],
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for i in 0..3 {
        let req = Request::get(format!("https://shop.test/h2/{i}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = send.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.version(), http::Version::HTTP_2);
        assert_eq!(
            &res.into_body().collect().await.unwrap().to_bytes()[..],
            b"app"
        );
    }
    let seen = b.last();
    assert_eq!(seen.uri.path(), "/h2/2");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn sni_picks_the_certificate_and_the_first_is_the_default() {
    let dir = tempdir::Dir::new();
    let pki = Pki::new();
    let first = pki.issue(dir.path(), "first", &["shop.test"], ecdsa());
    let wild = pki.issue(dir.path(), "wild", &["*.api.test"], ecdsa());
    let b = Backend::start("app").await;
    let f = Figway::start(&tls_config(dir.path(), &["first", "wild"], &b.url())).await;

    let by_name = |sni: &'static str, verify: &'static str| {
        let root = pki.root.clone();
        let addr = f.addr;
        async move {
            let tls = connect(
                addr,
                &root,
                Some(sni).filter(|s| !s.is_empty()),
                verify,
                &[b"http/1.1"],
            )
            .await
            .unwrap_or_else(|e| panic!("handshake for {sni:?}: {e}"));
            presented(&tls)
        }
    };
    assert_eq!(by_name("orders.api.test", "orders.api.test").await, wild);
    assert_eq!(by_name("shop.test", "shop.test").await, first);
    // A name no certificate has, and no SNI at all: the first certificate.
    let unknown = connect(f.addr, &pki.root, Some("other.test"), "other.test", &[]).await;
    assert!(
        unknown.is_err(),
        "the default certificate does not name other.test"
    );
    assert_eq!(by_name("", "shop.test").await, first);
    // One label only: a.b.api.test is not covered by *.api.test.
    let deep = connect(f.addr, &pki.root, Some("a.b.api.test"), "shop.test", &[]).await;
    assert!(deep.is_err(), "*.api.test must not cover a.b.api.test");
}

#[tokio::test]
async fn bad_pem_files_are_config_errors_naming_the_file() {
    let dir = tempdir::Dir::new();
    let pki = Pki::new();
    pki.issue(dir.path(), "good", &["shop.test"], ecdsa());
    pki.issue(dir.path(), "other", &["shop.test"], ecdsa());
    std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").unwrap();
    let cases: [(&str, &str, &str); 4] = [
        ("missing.pem", "good.key", "cannot read"),
        ("junk.pem", "good.key", "no CERTIFICATE block"),
        ("good.pem", "junk.pem", "no usable PRIVATE KEY"),
        (
            "good.pem",
            "other.key",
            "does not belong to the certificate",
        ),
    ];
    for (cert, key, want) in cases {
        let toml = format!(
            "[listen]\naddress = \"127.0.0.1:0\"\ntls = {{ cert = \"{cert}\", key = \"{key}\" }}\n\
             [upstreams.app]\ntargets = [\"http://127.0.0.1:1\"]\n[[routes]]\nprefix = \"/\"\nto = \"app\"\n"
        );
        // Relative paths resolve against the config file's directory.
        let path = dir.path().join("figway.toml");
        std::fs::write(&path, &toml).unwrap();
        let err = figway::config::load(&path).expect_err(want).to_string();
        assert!(err.contains(want), "{cert}/{key}: {err}");
        assert!(
            err.starts_with(&format!("{}:3:", path.display())),
            "no file:line:col: {err}"
        );
        assert!(err.contains("listen.tls."), "no key path: {err}");
    }
}

/// Serves HTTPS GETs on fresh connections until `stop`; counts answers and
/// failures.
fn load(
    addr: std::net::SocketAddr,
    root: CertificateDer<'static>,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let answered =
                match connect(addr, &root, Some("shop.test"), "shop.test", &[b"http/1.1"]).await {
                    Ok(tls) => get_h1(tls, "/load").await.0 == 200,
                    Err(_) => false,
                };
            let counter = if answered { &ok } else { &failed };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotated_on_disk_are_served_with_no_failed_request() {
    let dir = tempdir::Dir::new();
    let pki = Pki::new();
    let old = pki.issue(dir.path(), "shop", &["shop.test"], ecdsa());
    let b = Backend::start("app").await;
    let f = Figway::start_file(&tls_config(dir.path(), &["shop"], &b.url())).await;
    let _watcher = figway::reload::watch(f.shared.clone()).unwrap();

    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            load(
                f.addr,
                pki.root.clone(),
                stop.clone(),
                ok.clone(),
                failed.clone(),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A renewal: same names, new key, written by rename (cert then key).
    let new = pki.issue(dir.path(), "shop", &["shop.test"], ecdsa());
    assert_ne!(old, new);
    let start = Instant::now();
    loop {
        let tls = connect(f.addr, &pki.root, Some("shop.test"), "shop.test", &[])
            .await
            .unwrap();
        if presented(&tls) == new {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed across the rotation"
    );
    assert!(ok.load(Ordering::Relaxed) > 10, "the load hardly ran");

    // A bad renewal keeps the certificate in service.
    std::fs::write(dir.path().join("shop.key"), "garbage").unwrap();
    let outcome = figway::reload::reload(&f.shared, figway::reload::Trigger::Admin).await;
    match outcome {
        figway::reload::Outcome::Rejected { errors } => {
            assert!(errors.iter().any(|e| e.contains("shop.key")), "{errors:?}")
        }
        other => panic!("a bad key was accepted: {other:?}"),
    }
    let tls = connect(f.addr, &pki.root, Some("shop.test"), "shop.test", &[])
        .await
        .unwrap();
    assert_eq!(presented(&tls), new);
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_cut_off_after_header_read_timeout() {
    let dir = tempdir::Dir::new();
    let pki = Pki::new();
    pki.issue(dir.path(), "shop", &["shop.test"], ecdsa());
    let b = Backend::start("app").await;
    let f = Figway::start(&tls_config(dir.path(), &["shop"], &b.url())).await;

    // No ClientHello at all.
    let mut silent = TcpStream::connect(f.addr).await.unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("figway kept a silent TLS client past header_read_timeout");
    assert!(matches!(n, Ok(0) | Err(_)), "expected a close, got {n:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "cut too early"
    );

    // Plain HTTP on the TLS port is not served.
    let mut plain = TcpStream::connect(f.addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut got)).await;
    assert!(
        !got.starts_with(b"HTTP/1.1 200"),
        "plain HTTP served on the TLS listener"
    );
    assert_eq!(b.count(), 0);
}

/// Every worker has its own acceptor; the session-ticket keys are the
/// process's, so a client that comes back to another worker resumes.
#[tokio::test]
async fn a_session_ticket_from_one_worker_resumes_on_another() {
    let dir = tempdir::Dir::new();
    let pki = Pki::new();
    pki.issue(dir.path(), "shop", &["shop.test"], ecdsa());
    let loaded = figway::config::load_str(
        &tls_config(dir.path(), &["shop"], "http://127.0.0.1:1"),
        Path::new("t.toml"),
    )
    .unwrap();
    let certs = figway::tls::Certs::new(loaded.config.tls.clone());
    let workers = [
        figway::tls::acceptor(certs.clone()).unwrap(),
        figway::tls::acceptor(certs).unwrap(),
    ];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let mut kinds = Vec::new();
    for worker in &workers {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let server = worker.clone();
        let served = tokio::spawn(async move {
            let mut tls = server.accept(far).await.unwrap();
            // TLS 1.3 tickets go out after the handshake: a write sends them.
            tls.write_all(b"x").await.unwrap();
            tls.flush().await.unwrap();
        });
        let connector = tokio_rustls::TlsConnector::from(client.clone());
        let name = ServerName::try_from("shop.test").unwrap();
        let mut tls = connector.connect(name, near).await.unwrap();
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.unwrap();
        kinds.push(tls.get_ref().1.handshake_kind());
        served.await.unwrap();
    }
    assert_eq!(
        kinds,
        [
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed)
        ],
        "a ticket from the first worker must resume on the second"
    );
}
