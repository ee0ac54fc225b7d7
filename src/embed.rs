//! figway as a library: the proxy as a `tower::Service`, for an application
//! that serves it with its own hyper server and wraps it in its own tower
//! layers (an auth check, say). `examples/embed.rs` is a whole application.
//!
//! ```no_run
//! # async fn app() -> Result<(), Box<dyn std::error::Error>> {
//! use figway::embed::Figway;
//! use hyper_util::{rt::TokioIo, service::TowerToHyperService};
//!
//! let figway = Figway::load("figway.toml")?.watch_file(true).start()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let http = figway.http_builder();
//! loop {
//!     let (stream, peer) = listener.accept().await?;
//!     // One service per client connection: it carries the peer address
//!     // (X-Forwarded-For, client_ip keys, the access log).
//!     let service = figway.service(peer); // wrap it in layers here
//!     let http = http.clone();
//!     tokio::spawn(async move {
//!         let io = TokioIo::new(stream);
//!         let _ = http
//!             .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
//!             .await;
//!     });
//! }
//! # }
//! ```
//!
//! A request that reaches [`FigwayService`] takes the binary's request path
//! unchanged (`proxy::handle`: routing, splits, retries, shadows, metrics,
//! the access log, WebSocket upgrades when served with
//! `serve_connection_with_upgrades`). What the binary's server does around
//! that path (`server/`) is the application's here, with helpers where a
//! piece stands alone:
//!
//! - Accepting, binding, TLS, worker threads: the application's. `[listen]
//!   address`, `[listen] tls` and `[runtime] workers` are not acted on
//!   (read them with [`Builder::config`]). An application that terminates
//!   TLS itself uses [`Figway::tls_service`] so that upstreams see
//!   `X-Forwarded-Proto: https`.
//! - HTTP settings: [`Figway::http_builder`] is the binary's hyper builder
//!   (`header_read_timeout`, `max_header_bytes`, h2 stream and window
//!   limits, the rapid-reset guard). Not included: the binary's deadline
//!   for a connection's first bytes and first request, which also bounds
//!   the wait before hyper knows the protocol (slowloris before the head).
//! - The smuggling guard (a request with both `Content-Length` and
//!   `Transfer-Encoding` is 400 `bad_framing`): optional, by wrapping the
//!   connection's IO with [`FigwayService::guard`]. It pairs the heads it
//!   reads with the requests figway's service sees, in order, so it is
//!   exact when every request on the connection reaches figway. A layer
//!   that answers some requests itself (the 401s of an auth check) shifts
//!   the count on that connection; the guard then misses a later
//!   conflicting request, which goes on as hyper framed it (chunked wins,
//!   the connection closes after it): hyper's own handling, never a wrong
//!   400. Without the guard, the same.
//! - `max_connections`: optional, [`Figway::connection_slot`] before each
//!   accept; it also counts `figway_connections_active`, which otherwise
//!   stays 0.
//! - Drain: the application drains its connections (hyper-util's
//!   `GracefulShutdown`); [`Figway::start_draining`] turns `/readyz` to
//!   503, and [`Figway::shutdown`] waits for upgraded connections (which
//!   have left hyper) up to a timeout, then cuts them. `drain_delay` and
//!   `drain_timeout` are in [`Figway::listen`] for the application to use.
//! - Reloads: by file watch and SIGHUP if the application asks
//!   ([`Builder::watch_file`], [`Builder::reload_on_sighup`]), and always
//!   by [`Figway::reload`] / [`Figway::reload_str`] and by the admin API's
//!   `POST /reload` when [`Builder::admin`] serves it. As in the binary,
//!   `[listen]`, `[admin]`, `[runtime]` and `log.format` keep their start
//!   values.
//! - Health checks start with [`Builder::start`], as in the binary. Not
//!   run: returning freed memory to the OS after crowds (`trim`).
//! - Idle upstream connections are pooled per thread, as in the binary
//!   (where a worker is one thread and its connections' tasks never leave
//!   it). Under a multi-thread runtime a connection's task may run on
//!   another thread from one request to the next and takes that thread's
//!   pool: each runtime thread keeps idle connections of its own, and a
//!   request may open a connection while an idle one waits in another
//!   thread's pool (tests over such a runtime see it: two upstream
//!   connections for sequential requests on one client connection).
//! - Answers a layer gives without calling figway (the 401s) are not in
//!   figway's metrics or access log; [`ResponseBody::full`] builds them in
//!   the service's body type.
//! - The access log's writer is a thread of figway's that keeps a
//!   descriptor table of its own with stdin, stdout and stderr alone, and
//!   blocks every signal (`access_log`): it writes to stdout as it was when
//!   it started, so an application that later puts another file on
//!   descriptor 1 (`dup2`) does not move the access log with it.
//!
//! Cost over the binary: one allocation per request (the tower `Future`
//! must be a nameable type, so `proxy::handle`'s future is boxed; the
//! binary's `service_fn` keeps it unboxed). examples/embed.rs, with two
//! layers, costs about 3% more user-space instructions per request than
//! the binary on the same load (docs/benchmarks.md, "Embedding"). The
//! binary's path has no code added.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::AbortHandle;

use crate::config::{self, Config, ConfigError, Loaded};
use crate::framing::{ConnFlags, Guarded};
use crate::proxy::ConnCtx;
pub use crate::proxy::ResponseBody;
pub use crate::reload::Outcome;
use crate::server::ActiveConnection;
use crate::state::Shared;

// === impl Builder ===

/// A validated config and the choices of what to start with it.
pub struct Builder {
    loaded: Loaded,
    /// Loaded from a file (rather than a string): only then can a watch or
    /// SIGHUP re-read it.
    from_file: bool,
    watch_file: bool,
    sighup: bool,
    admin: Option<TcpListener>,
}

impl Builder {
    /// The config as validated: `listen.address`, `admin.address`,
    /// `listen.drain_timeout` and the rest, for the application to use.
    pub fn config(&self) -> &Config {
        &self.loaded.config
    }

    /// Reload when the config file changes (as the binary does). Off by
    /// default. Only for a config loaded from a file.
    pub fn watch_file(mut self, on: bool) -> Builder {
        self.watch_file = on;
        self
    }

    /// Reload on SIGHUP (as the binary does). Off by default: the signal
    /// may mean something else to the application. Only for a config
    /// loaded from a file.
    pub fn reload_on_sighup(mut self, on: bool) -> Builder {
        self.sighup = on;
        self
    }

    /// Serve figway's admin API (`/metrics`, `/readyz`, `POST /reload`, ...)
    /// on `listener`, e.g. one bound to `config().admin.address`.
    pub fn admin(mut self, listener: TcpListener) -> Builder {
        self.admin = Some(listener);
        self
    }

    /// Builds figway's state and starts what runs beside the requests:
    /// health checks, the reload triggers asked for, the admin API if
    /// given. Call it inside a tokio runtime; without one, or with a
    /// reload trigger on a config that has no file, it is an error. With
    /// targets given by DNS name it waits for their first lookups, at most
    /// about 2 seconds in all (on a thread of its own, so any runtime will
    /// do), as `figway run` does.
    pub fn start(self) -> io::Result<Figway> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "figway::embed: start() must be called inside a tokio runtime",
            ));
        }
        if !self.from_file && (self.watch_file || self.sighup) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "figway::embed: a config given as text has no file to watch or re-read on \
                 SIGHUP; reload it with Figway::reload_str",
            ));
        }
        let shared = Shared::new(&self.loaded);
        let triggers = crate::reload::start(&shared, self.watch_file, self.sighup);
        let admin = self.admin.map(|listener| {
            let local = listener.local_addr().ok();
            let task = tokio::spawn(crate::admin::serve(listener, shared.clone()));
            (task.abort_handle(), local)
        });
        Ok(Figway {
            shared,
            _triggers: triggers,
            admin,
        })
    }
}

// === impl Figway ===

/// A running figway without its server: make a [`FigwayService`] per
/// client connection with [`Figway::service`]. Dropping it stops the admin
/// API and the reload triggers; services already made keep working.
pub struct Figway {
    shared: Arc<Shared>,
    /// Dropped with `Figway`: stops the file watch and the SIGHUP task.
    _triggers: crate::reload::Triggers,
    /// The admin API's task and where it listens.
    admin: Option<(AbortHandle, Option<SocketAddr>)>,
}

impl Figway {
    /// Reads and validates the config file at `path` (every error at once,
    /// `file:line:col`, as `figway check` shows them).
    pub fn load(path: impl AsRef<Path>) -> Result<Builder, ConfigError> {
        Ok(Figway::builder(config::load(path.as_ref())?, true))
    }

    /// Validates `text`, a whole config; `name` names it in messages.
    /// Reload it with [`Figway::reload_str`].
    pub fn load_str(text: &str, name: impl AsRef<Path>) -> Result<Builder, ConfigError> {
        Ok(Figway::builder(
            config::load_str(text, name.as_ref())?,
            false,
        ))
    }

    fn builder(loaded: Loaded, from_file: bool) -> Builder {
        Builder {
            loaded,
            from_file,
            watch_file: false,
            sighup: false,
            admin: None,
        }
    }

    /// figway's service for one client connection from `peer` (the socket
    /// peer: `X-Forwarded-For`, `trusted_proxies`, `client_ip` keys and the
    /// access log use it).
    pub fn service(&self, peer: SocketAddr) -> FigwayService {
        self.service_as(peer, false)
    }

    /// As [`Figway::service`], for a connection whose TLS the application
    /// terminated: upstreams get `X-Forwarded-Proto: https`.
    pub fn tls_service(&self, peer: SocketAddr) -> FigwayService {
        self.service_as(peer, true)
    }

    fn service_as(&self, peer: SocketAddr, tls: bool) -> FigwayService {
        let conn = ConnCtx::new(self.shared.clone(), peer, ConnFlags::new(), tls);
        FigwayService {
            conn: Arc::new(conn),
        }
    }

    /// The binary's hyper server settings (see the module docs).
    pub fn http_builder(&self) -> auto::Builder<TokioExecutor> {
        crate::server::http_builder(&self.shared)
    }

    /// Waits for a place under `[listen] max_connections` (shared with
    /// nobody else); hold it for the connection's life. `None` once
    /// [`Figway::shutdown`] has begun: stop accepting.
    pub async fn connection_slot(&self) -> Option<ConnectionSlot> {
        let permit = self
            .shared
            .connection_slots
            .clone()
            .acquire_owned()
            .await
            .ok()?;
        Some(ConnectionSlot {
            _permit: permit,
            _active: ActiveConnection::new(&self.shared.registry.metrics.connections),
        })
    }

    /// `[listen]` as loaded at start (reloads change routes and upstreams,
    /// not `[listen]`): `drain_delay`, `drain_timeout`, `max_connections`.
    pub fn listen(&self) -> &crate::config::Listen {
        &self.shared.listen
    }

    /// Where the admin API listens, when [`Builder::admin`] gave it a
    /// listener.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(_, a)| *a)
    }

    /// Re-reads the config file and swaps the new route table in (requests
    /// in flight finish on the old one). An invalid file changes nothing.
    pub async fn reload(&self) -> Outcome {
        crate::reload::reload(&self.shared, crate::reload::Trigger::Api).await
    }

    /// Swaps in the route table of `text`, a whole config, as a reload of
    /// the file would.
    pub async fn reload_str(&self, text: impl Into<String>) -> Outcome {
        crate::reload::reload_text(&self.shared, text.into()).await
    }

    /// figway's process state: the snapshot, the metrics registry, ...
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// `/readyz` answers 503 from now on, so load balancers stop sending
    /// traffic (the application keeps serving for its `drain_delay`).
    pub fn start_draining(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
    }

    /// The end of a drain: no new [`ConnectionSlot`]s, `/readyz` 503,
    /// upgraded connections (WebSockets) waited for up to `timeout`, then
    /// cut (their requests logged as drain cuts), and the access log
    /// flushed. The application drains its HTTP connections beside this.
    pub async fn shutdown(self, timeout: Duration) {
        self.start_draining();
        self.shared.connection_slots.close();
        let tunnels = self.shared.tunnels.clone();
        if tokio::time::timeout(timeout, tunnels.drained())
            .await
            .is_err()
        {
            self.shared.cutting.store(true, Ordering::SeqCst);
            tunnels.cut_all();
            // Cut tunnels end on their own tasks, logging as they go.
            let _ = tokio::time::timeout(Duration::from_secs(1), tunnels.drained()).await;
        }
        drop(self);
        crate::access_log::flush();
    }
}

impl Drop for Figway {
    fn drop(&mut self) {
        if let Some((task, _)) = &self.admin {
            task.abort();
        }
    }
}

/// A place under `max_connections`, counted in
/// `figway_connections_active`, until dropped.
pub struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    _active: ActiveConnection,
}

// === impl FigwayService ===

/// figway's request path for one client connection, as a tower `Service`
/// (and a hyper one). Never fails: errors are figway's own answers (502
/// with `x-figway-error`, ...). Cheap to clone.
#[derive(Clone)]
pub struct FigwayService {
    conn: Arc<ConnCtx>,
}

/// The future of [`FigwayService`]: boxed, being `proxy::handle`'s
/// unnameable future.
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

impl FigwayService {
    /// Wraps the connection's IO in figway's smuggling guard, tied to this
    /// service (see the module docs for when it is exact). Serve `io`
    /// with this service, or layers around it.
    pub fn guard<IO>(&self, io: IO) -> Guarded<IO> {
        Guarded::new(
            io,
            self.conn.framing.clone(),
            self.conn.shared.listen.max_header_bytes,
        )
    }

    /// The connection's peer address, as figway uses it.
    pub fn peer(&self) -> IpAddr {
        self.conn.peer
    }
}

impl tower_service::Service<Request<Incoming>> for FigwayService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // No back-pressure here: limits (max_in_flight, breakers, rate
        // limits) answer per request, as in the binary.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> ResponseFuture {
        Box::pin(crate::proxy::handle(
            req.map(crate::body::ClientBody::Hyper),
            self.conn.clone(),
            crate::proxy::Writer::Hyper,
        ))
    }
}

impl hyper::service::Service<Request<Incoming>> for FigwayService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: Request<Incoming>) -> ResponseFuture {
        Box::pin(crate::proxy::handle(
            req.map(crate::body::ClientBody::Hyper),
            self.conn.clone(),
            crate::proxy::Writer::Hyper,
        ))
    }
}
