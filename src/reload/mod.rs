//! Hot reload (SPEC §6). Three triggers (a change to the config file, SIGHUP,
//! `POST /reload`) lead to one function, [`reload`]: read the file, parse,
//! validate, resolve the target names it adds (bounded, see
//! `state::resolve`), compile it whole off the hot path, then swap the new
//! snapshot in with one atomic store. Requests in flight keep the snapshot
//! they loaded; connections are never touched; targets that survive keep
//! their pooled connections through the registry.
//!
//! A file that fails validation changes nothing but `last_error`. Reloads are
//! serialised by a lock only reloads take; the hot path never sees it.
//!
//! A file-change reload is skipped when the content hash (and, with TLS,
//! the certificate files' digest) is the one already in service. `watch`
//! holds the file watcher, `describe` the log line of what changed.

mod describe;
mod watch;

pub use describe::describe_changes;

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::config::tls::Certificate;
use crate::config::{self, Loaded};
use crate::state::Shared;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    FileChange,
    Signal,
    Admin,
    /// An embedding application's call (`embed::Figway::reload`).
    Api,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::FileChange => "file",
            Trigger::Signal => "sighup",
            Trigger::Admin => "admin",
            Trigger::Api => "api",
        }
    }
}

/// The outcome of one reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new version is in service.
    Applied { version: String },
    /// A file-change event, but the content is the version already serving.
    Unchanged { version: String },
    /// Invalid: the old config keeps serving. Each error `file:line:col: ...`.
    Rejected { errors: Vec<String> },
}

/// Reloads the config file now. Explicit triggers always reload; a file
/// change whose content hash is the version in service does nothing.
pub async fn reload(shared: &Arc<Shared>, trigger: Trigger) -> Outcome {
    let _serial = shared.reload_lock.lock().await;
    let started = Instant::now();
    let path = shared.config_path();
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        // Mid-rename the file can be briefly missing; the event that puts
        // the new one in place follows. Not an error worth reporting.
        Err(e) if trigger == Trigger::FileChange && e.kind() == std::io::ErrorKind::NotFound => {
            return Outcome::Unchanged {
                version: shared.snapshot.load().version.clone(),
            };
        }
        Err(e) => {
            return reject(
                shared,
                trigger,
                vec![format!("{}: cannot read config: {e}", path.display())],
            );
        }
    };
    let hash = config::hex(&Sha256::digest(&bytes));
    let fingerprint = match &shared.tls {
        Some(certs) => crate::tls::fingerprint_files(&hash, &certs.files()),
        None => hash.clone(),
    };
    if trigger == Trigger::FileChange {
        // Unchanged since the last attempt, accepted or rejected: a rejected
        // file is reported once, not on every event around it.
        let mut last = shared
            .last_file_hash
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.as_deref() == Some(fingerprint.as_str()) {
            return Outcome::Unchanged {
                version: shared.snapshot.load().version.clone(),
            };
        }
        *last = Some(fingerprint);
    } else {
        *shared
            .last_file_hash
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(fingerprint);
    }
    apply(shared, trigger, path, bytes, hash, started).await
}

/// Reloads from `text`, a whole config, instead of the file: for an
/// embedding application that keeps its config in memory. As an explicit
/// trigger it always reloads; the path the config was loaded with still
/// names it in messages.
pub async fn reload_text(shared: &Arc<Shared>, text: String) -> Outcome {
    let _serial = shared.reload_lock.lock().await;
    let started = Instant::now();
    let path = shared.config_path();
    let bytes = text.into_bytes();
    let hash = config::hex(&Sha256::digest(&bytes));
    let fingerprint = match &shared.tls {
        Some(certs) => crate::tls::fingerprint_files(&hash, &certs.files()),
        None => hash.clone(),
    };
    *shared
        .last_file_hash
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(fingerprint);
    apply(shared, Trigger::Api, path, bytes, hash, started).await
}

/// The part of a reload after the bytes are read: build off the workers,
/// swap, report. The caller holds `reload_lock`.
async fn apply(
    shared: &Arc<Shared>,
    trigger: Trigger,
    path: std::path::PathBuf,
    bytes: Vec<u8>,
    hash: String,
    started: Instant,
) -> Outcome {
    // Parsing and compiling 10,000 routes is milliseconds of CPU: keep it off
    // the runtime's workers, which are serving requests.
    let worker = shared.clone();
    let parsed = tokio::task::spawn_blocking(move || parse(&worker, &path, bytes, hash)).await;
    let Parsed {
        loaded,
        warnings,
        certs,
    } = match parsed {
        Ok(Ok(p)) => p,
        Ok(Err(errors)) => return reject(shared, trigger, errors),
        Err(e) => return reject(shared, trigger, vec![format!("reload failed: {e}")]),
    };
    // Names this config adds are looked up now (names it keeps serve on
    // their sets and are looked up again once it is in service): a failing
    // lookup leaves a target without endpoints, never the reload undone.
    let sets = crate::state::resolve::warm_up(
        &shared.resolver,
        &shared.registry.metrics,
        &loaded.config,
        &shared.dns_sets(),
    )
    .await;
    let (worker, loaded) = (shared.clone(), Arc::new(loaded));
    let compiling = (loaded.clone(), sets.clone());
    let compiled = tokio::task::spawn_blocking(move || {
        let previous = worker.snapshot.load_full();
        let (loaded, sets) = compiling;
        crate::state::compile::compile_with(&loaded, &worker.registry, Some(&previous), &sets)
    })
    .await;
    let snapshot = match compiled {
        Ok(s) => Arc::new(s),
        Err(e) => return reject(shared, trigger, vec![format!("reload failed: {e}")]),
    };
    shared.set_loaded(loaded);
    let old = shared.install(snapshot.clone(), sets);
    // The names it kept are looked up again too, in the background: a
    // reload is how an operator says "look again", and it must not wait
    // on DNS for names it already serves.
    shared.resolve_names_now();
    if let (Some(serving), Some(certs)) = (&shared.tls, certs) {
        serving.replace(certs);
    }
    // A tenth of a millisecond is all a reader of the log needs; the float's
    // full digits (2.3617529999999998) only get in the way.
    let took_ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    shared.registry.metrics.reloaded(true);
    // In service now; what is left is bookkeeping, linear in the table
    // size but still milliseconds for 10,000 routes: off the workers.
    let (worker, new) = (shared.clone(), snapshot.clone());
    let describe = tracing::enabled!(tracing::Level::INFO);
    let changes = tokio::task::spawn_blocking(move || {
        crate::state::compile::forget(&worker.registry.metrics, &old, &new);
        describe.then(|| describe_changes(&old, &new))
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default();
    let version = snapshot.version.clone();
    {
        let mut status = shared.status.lock().unwrap_or_else(|e| e.into_inner());
        status.version = version.clone();
        status.loaded_at = SystemTime::now();
        status.last_error = None;
    }
    for w in warnings {
        tracing::warn!(trigger = trigger.as_str(), "{w}");
    }
    tracing::info!(
        trigger = trigger.as_str(),
        version = %version,
        changes = %changes,
        took_ms,
        "config reloaded"
    );
    Outcome::Applied { version }
}

fn reject(shared: &Shared, trigger: Trigger, errors: Vec<String>) -> Outcome {
    shared.registry.metrics.reloaded(false);
    for e in &errors {
        tracing::error!(
            trigger = trigger.as_str(),
            "config rejected, previous config keeps serving: {e}"
        );
    }
    let mut status = shared.status.lock().unwrap_or_else(|e| e.into_inner());
    status.last_error = Some(errors.join("\n"));
    Outcome::Rejected { errors }
}

/// Parse and validate. Sections that need a restart keep the values the
/// process started with; changing them only earns a warning.
fn parse(
    shared: &Shared,
    path: &Path,
    bytes: Vec<u8>,
    version: String,
) -> Result<Parsed, Vec<String>> {
    let text = String::from_utf8(bytes)
        .map_err(|_| vec![format!("{}: config is not valid UTF-8", path.display())])?;
    let mut loaded: Loaded =
        config::load_versioned(&text, path, version).map_err(|e| e.messages)?;
    // The file's own warnings (`figway check` prints the same) first.
    let mut warnings = std::mem::take(&mut loaded.warnings);
    let c = &mut loaded.config;
    if c.listen != shared.listen {
        warnings
            .push("[listen] changed: it needs a restart; the running values are kept".to_string());
        c.listen = shared.listen.clone();
    }
    if c.admin.address != shared.admin_address {
        warnings
            .push("[admin] changed: it needs a restart; the running values are kept".to_string());
    }
    if c.runtime != shared.runtime {
        warnings
            .push("[runtime] changed: it needs a restart; the running values are kept".to_string());
    }
    if c.log.format != shared.log.format {
        warnings
            .push("log.format changed: it needs a restart; the running format is kept".to_string());
    }
    // The certificates are re-read on every reload; whether the listener
    // speaks TLS at all is fixed with it.
    let certs = std::mem::take(&mut c.tls);
    let certs = match (shared.tls.is_some(), certs.is_empty()) {
        (true, false) => Some(certs),
        (false, true) => None,
        (true, true) => {
            warnings.push(
                "listen.tls removed: it needs a restart; the running certificates are kept"
                    .to_string(),
            );
            None
        }
        (false, false) => {
            warnings
                .push("listen.tls added: it needs a restart; the listener stays plain".to_string());
            None
        }
    };
    Ok(Parsed {
        loaded,
        warnings,
        certs,
    })
}

/// A config that passed validation, ready to compile.
struct Parsed {
    loaded: Loaded,
    warnings: Vec<String>,
    /// The certificates to serve from now on; `None` keeps those in service.
    certs: Option<Vec<Certificate>>,
}

/// The reload triggers a process keeps besides `POST /reload`: the file
/// watch and the SIGHUP handler. Dropping it stops both.
pub struct Triggers {
    /// Kept alive for as long as the watch should run.
    watcher: Option<Arc<std::sync::Mutex<notify::RecommendedWatcher>>>,
    sighup: Option<tokio::task::AbortHandle>,
}

impl Triggers {
    /// Whether the config file is being watched (a directory that cannot be
    /// watched is logged, and leaves SIGHUP and `POST /reload`).
    pub fn watching(&self) -> bool {
        self.watcher.is_some()
    }
}

impl Drop for Triggers {
    fn drop(&mut self) {
        if let Some(task) = self.sighup.take() {
            task.abort();
        }
    }
}

/// Starts the reload triggers asked for: a watch on the config file
/// (`file`) and a SIGHUP handler (`sighup`). One home for the start-up the
/// binary (`cli::run`, both on) and an embedding application (`embed`,
/// its choice) share. Needs a tokio runtime.
pub fn start(shared: &Arc<Shared>, file: bool, sighup: bool) -> Triggers {
    let sighup = if sighup {
        on_sighup(shared.clone())
    } else {
        None
    };
    let watcher = if file {
        match watch(shared.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP or POST /reload");
                None
            }
        }
    } else {
        None
    };
    Triggers { watcher, sighup }
}

/// Reloads when the config file or a certificate file in service changes
/// (see `watch`). The returned watcher must be kept alive.
pub fn watch(
    shared: Arc<Shared>,
) -> notify::Result<Arc<std::sync::Mutex<notify::RecommendedWatcher>>> {
    watch::watch(shared, |shared| async move {
        reload(&shared, Trigger::FileChange).await;
    })
}

/// Reloads on every SIGHUP until the process ends (or the returned
/// task is aborted).
pub fn on_sighup(shared: Arc<Shared>) -> Option<tokio::task::AbortHandle> {
    #[cfg(unix)]
    let task = tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload by file change or POST /reload");
            return;
        };
        while hup.recv().await.is_some() {
            reload(&shared, Trigger::Signal).await;
        }
    });
    #[cfg(unix)]
    return Some(task.abort_handle());
    #[cfg(not(unix))]
    {
        drop(shared);
        None
    }
}
