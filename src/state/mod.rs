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

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use tokio::time::Instant;

use arc_swap::ArcSwap;

use crate::config::{Listen, Loaded, Log, Runtime};
use crate::upstream::dns::{self, Answer, Key, Sets};
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
    /// Woken by every reload that applies: the background task then looks
    /// every name up again at once (SPEC §10: names are resolved on every
    /// reload), while the reload itself waits only for the names it adds.
    resolve_now: Arc<tokio::sync::Notify>,
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
            resolve_now: Arc::default(),
        });
        follow_names(&shared);
        judge_ramps(&shared);
        shared
    }

    /// The wall clock ramps read; tests move it (see `clock::Wall`).
    pub fn wall(&self) -> &crate::clock::Wall {
        &self.registry.wall
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

    /// Has the background task look every target name up again now, not at
    /// its next `resolve_interval` (after a reload). A wake-up while a round
    /// runs is kept for the next.
    pub fn resolve_names_now(&self) {
        self.resolve_now.notify_one();
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

// === the ramps' gates (SPEC §11; see `ramp`) ===

/// Starts the task that judges the gates of every ramp in progress once a
/// second, on the snapshot in service. It holds `shared` weakly and ends
/// when `shared` is dropped. Beside the lookups' task, for the same reason:
/// the state owns what runs in the background over the table.
fn judge_ramps(shared: &Arc<Shared>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let shared = Arc::downgrade(shared);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(strong) = shared.upgrade() else {
                return;
            };
            let snapshot = strong.snapshot.load();
            for route in snapshot.routes.iter() {
                if let Some(ramp) = &route.ramp {
                    let to = &snapshot.upstreams[route.sides[ramp.spec.to].upstream].name;
                    ramp.judge(&route.name, to);
                }
            }
        }
    });
}

// === the background lookups (SPEC §10; see `resolve`) ===

/// Starts the background task that follows the names of the config in
/// service. It holds `shared` weakly and ends when `shared` is dropped.
fn follow_names(shared: &Arc<Shared>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no runtime: target names are not looked up again");
        return;
    };
    runtime.spawn(follow(Arc::downgrade(shared), shared.resolve_now.clone()));
}

async fn follow(shared: Weak<Shared>, resolve_now: Arc<tokio::sync::Notify>) {
    // When each name is next due.
    let mut due: HashMap<Key, Instant> = HashMap::new();
    // Names whose last lookup failed: warned once when they start failing,
    // not every `resolve_interval` while they go on.
    let mut failing: HashSet<Key> = HashSet::new();
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let keys = dns::keys(&strong.loaded().config);
        let now = Instant::now();
        let wanted: HashSet<&Key> = keys.iter().map(|(k, _)| k).collect();
        due.retain(|k, _| wanted.contains(k));
        failing.retain(|k| wanted.contains(k));
        // A name new to the schedule was just resolved by the start or the
        // reload that brought it, which also said so if it has no address.
        let sets = strong.dns_sets();
        for (key, interval) in &keys {
            if !due.contains_key(key) && sets.get(key).is_none_or(|s| s.is_empty()) {
                failing.insert(key.clone());
            }
            due.entry(key.clone()).or_insert(now + *interval);
        }
        let ready: Vec<Key> = keys
            .iter()
            .filter(|(k, _)| due.get(k).is_some_and(|at| *at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        if !ready.is_empty() {
            let answers = dns::resolve_all(&strong.resolver, &ready, resolve::ROUND_BUDGET).await;
            let after = Instant::now();
            for (key, interval) in &keys {
                if due.get(key).is_some_and(|at| *at <= now) {
                    due.insert(key.clone(), after + *interval);
                }
            }
            resolve::report_failures(&ready, &answers, &mut failing);
            refresh(&strong, &ready, &answers).await;
        }
        let next = due.values().min().copied();
        drop(strong);
        let nap = next.map_or(resolve::MAX_NAP, |at| {
            at.saturating_duration_since(Instant::now())
                .min(resolve::MAX_NAP)
        });
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = resolve_now.notified() => {
                let now = Instant::now();
                due.values_mut().for_each(|at| *at = now);
            }
        }
    }
}

/// Applies one round of answers; when a set changed, recompiles the config
/// in service with the new sets and swaps it in.
async fn refresh(shared: &Arc<Shared>, keys: &[Key], answers: &[Answer]) {
    let _serial = shared.reload_lock.lock().await;
    let loaded = shared.loaded();
    // A reload may have replaced the config while the lookups ran: only
    // the names it still has count.
    let (mut sets, _) = resolve::split(&loaded.config, &shared.dns_sets());
    let wanted: Vec<(Key, Answer)> = keys
        .iter()
        .zip(answers)
        .filter(|(k, _)| sets.contains_key(*k))
        .map(|(k, a)| (k.clone(), a.clone()))
        .collect();
    let (keys, answers): (Vec<Key>, Vec<Answer>) = wanted.into_iter().unzip();
    if !resolve::merge(&mut sets, &shared.registry.metrics, &keys, &answers) {
        return;
    }
    let previous = shared.snapshot.load_full();
    let worker = shared.clone();
    let compiled = {
        let (sets, previous) = (sets.clone(), previous.clone());
        tokio::task::spawn_blocking(move || {
            compile::compile_with(&loaded, &worker.registry, Some(&previous), &sets)
        })
        .await
    };
    let Ok(snapshot) = compiled else {
        tracing::error!("recompiling after a change of addresses failed; the old endpoints stay");
        return;
    };
    let snapshot = Arc::new(snapshot);
    let old = shared.install(snapshot.clone(), sets);
    compile::forget(&shared.registry.metrics, &old, &snapshot);
    for line in resolve::endpoint_changes(&old, &snapshot) {
        tracing::info!("{line}");
    }
}
