//! What a request reads: the [`Snapshot`] (route table and upstreams compiled
//! from one config file), and [`Shared`], the process-wide state around it.
//! The snapshot sits behind one `ArcSwap`: a request loads it once and keeps
//! that `Arc` to the end, so a reload that swaps in a new table never changes
//! the rules under a request already in flight.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use http::Method;

use crate::config::{HostPattern, KeySource, Listen, Loaded, Log, Runtime, Side};
use crate::metrics::RouteMetrics;
use crate::net::Cidr;
use crate::router::Router;
use crate::shadow::Shadow;
use crate::upstream::{Registry, Upstream};

/// The immutable runtime form of one config file.
pub struct Snapshot {
    pub router: Router,
    /// In config order; the router's indices point here.
    pub routes: Box<[Route]>,
    pub upstreams: Box<[Upstream]>,
    pub trusted_proxies: Box<[Cidr]>,
    pub access_log: bool,
    pub version: String,
    /// Requests that match no route count as route="", upstream="".
    pub no_route: Arc<RouteMetrics>,
}

pub struct Route {
    pub name: Box<str>,
    pub prefix: Box<str>,
    pub host: Option<HostPattern>,
    pub methods: Option<Box<[Method]>>,
    /// `to` as a single side, or the `split` sides in config order.
    pub sides: Box<[Side]>,
    /// Whether the config said `split` rather than `to`.
    pub split: bool,
    /// End of each side's range in the sticky bucket space (see
    /// `decision::BUCKETS`); a side of weight 0 has an empty range.
    pub bucket_ends: Box<[u64]>,
    pub total_weight: u64,
    pub sticky: Option<KeySource>,
    pub shadow: Option<Shadow>,
    /// Index into `Snapshot::upstreams`; serves when the chosen side cannot.
    pub fallback: Option<usize>,
    /// Metric handles for each upstream the route can send to (its sides
    /// and fallback), by index into `Snapshot::upstreams`.
    pub metrics: Box<[(usize, Arc<RouteMetrics>)]>,
    pub strip_prefix: bool,
    pub rewrite_prefix: Option<Box<str>>,
}

impl Route {
    /// The handles for requests of this route that go to `upstream`.
    pub fn metrics_for(&self, upstream: usize) -> &Arc<RouteMetrics> {
        self.metrics
            .iter()
            .find(|(u, _)| *u == upstream)
            .map_or(&self.metrics[0].1, |(_, m)| m)
    }
}

/// What `GET /config` reports.
#[derive(Debug, Clone)]
pub struct ConfigStatus {
    pub version: String,
    pub loaded_at: SystemTime,
    pub path: PathBuf,
    pub last_error: Option<String>,
}

/// State shared by the proxy listener, the admin server and (later) the
/// reloader. Only `snapshot` is read per request.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub registry: Registry,
    pub status: Mutex<ConfigStatus>,
    /// Set on SIGTERM/SIGINT; `/readyz` answers 503 from then on.
    pub draining: AtomicBool,
    /// Fixed at start: `[listen]` and `[log]` need a restart to change.
    pub listen: Listen,
    pub log: Log,
    pub admin_address: SocketAddr,
    pub runtime: Runtime,
    /// Serialises reloads; only reloads take it.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// sha256 of the file as last read by a reload, accepted or not.
    pub last_file_hash: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(loaded: &Loaded) -> Arc<Shared> {
        let registry = Registry::default();
        let snapshot = crate::config::compile::compile(loaded, &registry);
        crate::upstream::health::sync(&snapshot);
        registry.metrics.loaded_at_start();
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            registry,
            status: Mutex::new(ConfigStatus {
                version: loaded.version.clone(),
                loaded_at: SystemTime::now(),
                path: loaded.path.clone(),
                last_error: None,
            }),
            draining: AtomicBool::new(false),
            listen: loaded.config.listen.clone(),
            log: loaded.config.log.clone(),
            admin_address: loaded.config.admin.address,
            runtime: loaded.config.runtime.clone(),
            reload_lock: tokio::sync::Mutex::new(()),
            last_file_hash: Mutex::new(Some(loaded.version.clone())),
        })
    }

    pub fn config_path(&self) -> PathBuf {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .path
            .clone()
    }
}
