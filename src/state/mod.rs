//! What a request reads: the [`Snapshot`] (route table and upstreams compiled
//! from one config file, by [`compile`]), and [`Shared`], the process-wide
//! state around it. The snapshot sits behind one `ArcSwap`: a request loads
//! it once and keeps that `Arc` to the end, so a reload that swaps in a new
//! table never changes the rules under a request already in flight.
//!
//! [`Shared`] also keeps what a recompile needs without a reload: the
//! config in service and the resolved sets of its target names, which
//! `resolve` refreshes in the background (SPEC §10); [`Shared::install`] is
//! the one way a compiled snapshot goes into service.

pub mod compile;
pub mod resolve;
pub mod snapshot;
pub mod tunnels;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::config::{Listen, Loaded, Log, Runtime};
use crate::upstream::dns::{self, Sets};
use crate::upstream::Registry;
pub use snapshot::{Route, Snapshot};

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
    /// Set when the drain ran out of `drain_timeout`: requests still open
    /// are being cut, and are logged as such rather than as 499.
    pub cutting: AtomicBool,
    /// Fixed at start: `[listen]` and `[log]` need a restart to change.
    pub listen: Listen,
    pub log: Log,
    pub admin_address: SocketAddr,
    pub runtime: Runtime,
    /// Places under `[listen] max_connections`, shared by every worker's
    /// listener.
    pub connection_slots: Arc<tokio::sync::Semaphore>,
    /// Serialises reloads; only reloads take it.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// sha256 of the file as last read by a reload, accepted or not (with
    /// the certificate files' own digest after it when TLS is on, so that a
    /// renewed certificate is not taken for an unchanged config).
    pub last_file_hash: Mutex<Option<String>>,
    /// The certificates handshakes present, when `listen.tls` is set;
    /// whether TLS is on at all is fixed at start.
    pub tls: Option<Arc<crate::tls::Certs>>,
    /// Upgraded connections, which the drain waits for and cuts.
    pub tunnels: Arc<tunnels::Tunnels>,
    /// The config in service, as compiled (restart-only sections as the
    /// process runs them): what a change of addresses recompiles.
    loaded: Mutex<Arc<Loaded>>,
    /// The last good addresses of the target names of `loaded`. Written
    /// only under `reload_lock`.
    dns: Mutex<Sets>,
    /// Looks target names up (`[runtime] resolver` is fixed at start).
    pub resolver: dns::Resolver,
}

impl Shared {
    pub fn new(loaded: &Loaded) -> Arc<Shared> {
        let registry = Registry::default();
        // Names first, so that the first table already has their endpoints
        // (bounded: a name that does not answer starts with none).
        let sets = resolve::warm_up_blocking(&loaded.config, &registry.metrics);
        let snapshot = compile::compile_with(loaded, &registry, None, &sets);
        crate::upstream::health::sync(&snapshot.upstreams);
        registry.metrics.loaded_at_start();
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            registry,
            status: Mutex::new(ConfigStatus {
                version: loaded.version.clone(),
                loaded_at: SystemTime::now(),
                path: loaded.path.clone(),
                last_error: None,
            }),
            draining: AtomicBool::new(false),
            cutting: AtomicBool::new(false),
            listen: loaded.config.listen.clone(),
            log: loaded.config.log.clone(),
            admin_address: loaded.config.admin.address,
            runtime: loaded.config.runtime.clone(),
            connection_slots: Arc::new(tokio::sync::Semaphore::new(
                loaded.config.listen.max_connections,
            )),
            reload_lock: tokio::sync::Mutex::new(()),
            last_file_hash: Mutex::new(Some(crate::tls::fingerprint(
                &loaded.version,
                &loaded.config.tls,
            ))),
            tls: (!loaded.config.tls.is_empty())
                .then(|| crate::tls::Certs::new(loaded.config.tls.clone())),
            tunnels: Arc::default(),
            loaded: Mutex::new(Arc::new(loaded.clone())),
            dns: Mutex::new(sets),
            resolver: dns::Resolver::new(loaded.config.runtime.resolver),
        });
        resolve::start(&shared);
        shared
    }

    /// Puts `snapshot`, compiled from the config [`Shared::set_loaded`]
    /// holds with `sets`, into service: health checkers first (endpoints
    /// new in it are checked from the moment they can be picked; those
    /// that stay keep theirs), then the swap. Returns the snapshot it
    /// replaces, for `compile::forget`. The caller holds `reload_lock`.
    pub fn install(&self, snapshot: Arc<Snapshot>, sets: Sets) -> Arc<Snapshot> {
        crate::upstream::health::sync(&snapshot.upstreams);
        let old = self.snapshot.swap(snapshot);
        *self.dns.lock().unwrap_or_else(|e| e.into_inner()) = sets;
        old
    }

    /// The config in service, as compiled.
    pub fn loaded(&self) -> Arc<Loaded> {
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the config a reload put in service. The caller holds
    /// `reload_lock`.
    pub fn set_loaded(&self, loaded: Arc<Loaded>) {
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = loaded;
    }

    /// The last good addresses of the config's target names.
    pub fn dns_sets(&self) -> Sets {
        self.dns.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn config_path(&self) -> PathBuf {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .path
            .clone()
    }
}
