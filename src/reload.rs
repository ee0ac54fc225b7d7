//! Hot reload (SPEC §6). Three triggers (a change to the config file, SIGHUP,
//! `POST /reload`) lead to one function, [`reload`]: read the file, parse,
//! validate and compile it whole off the hot path, then swap the new
//! snapshot in with one atomic store. Requests in flight keep the snapshot
//! they loaded; connections are never touched; targets that survive keep
//! their pooled connections through the registry.
//!
//! A file that fails validation changes nothing but `last_error`. Reloads are
//! serialised by a lock only reloads take; the hot path never sees it.
//!
//! The watcher watches the file's directory, not its inode: editors that
//! save by rename and Kubernetes' `..data` symlink swap replace the inode,
//! and only the directory sees that. Bursts of events coalesce into one
//! reload, and a file-change reload is skipped when the content hash is the
//! one already in service.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::config::{self, Loaded};
use crate::state::{Shared, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    FileChange,
    Signal,
    Admin,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::FileChange => "file",
            Trigger::Signal => "sighup",
            Trigger::Admin => "admin",
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
    if trigger == Trigger::FileChange {
        // Unchanged since the last attempt, accepted or rejected: a rejected
        // file is reported once, not on every event around it.
        let mut last = shared
            .last_file_hash
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.as_deref() == Some(hash.as_str()) {
            return Outcome::Unchanged {
                version: shared.snapshot.load().version.clone(),
            };
        }
        *last = Some(hash.clone());
    } else {
        *shared
            .last_file_hash
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(hash.clone());
    }
    // Parsing and compiling 10,000 routes is milliseconds of CPU: keep it off
    // the runtime's workers, which are serving requests.
    let worker = shared.clone();
    let built = tokio::task::spawn_blocking(move || build(&worker, &path, bytes, hash)).await;
    let (snapshot, warnings) = match built {
        Ok(Ok(b)) => b,
        Ok(Err(errors)) => return reject(shared, trigger, errors),
        Err(e) => return reject(shared, trigger, vec![format!("reload failed: {e}")]),
    };
    let snapshot = Arc::new(snapshot);
    // Checkers first: targets new in this snapshot are checked from the
    // moment they can be picked; those that stay keep theirs.
    crate::upstream::health::sync(&snapshot.upstreams);
    let old = shared.snapshot.swap(snapshot.clone());
    let took_ms = started.elapsed().as_secs_f64() * 1000.0;
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

/// Parse, validate and compile. Sections that need a restart keep the values
/// the process started with; changing them only earns a warning.
fn build(
    shared: &Shared,
    path: &Path,
    bytes: Vec<u8>,
    version: String,
) -> Result<(Snapshot, Vec<String>), Vec<String>> {
    let text = String::from_utf8(bytes)
        .map_err(|_| vec![format!("{}: config is not valid UTF-8", path.display())])?;
    let mut loaded: Loaded =
        config::load_versioned(&text, path, version).map_err(|e| e.messages)?;
    let mut warnings = Vec::new();
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
    let previous = shared.snapshot.load_full();
    let snapshot = crate::state::compile::compile_after(&loaded, &shared.registry, Some(&previous));
    Ok((snapshot, warnings))
}

/// One line for the log that lets an operator read a migration's history:
/// `routes +[search] -[old] ~[orders]; upstreams +[search]; weights orders/127.0.0.1:9001 3->5`.
/// Long lists are cut after [`LISTED`] names. Linear in the table size.
pub fn describe_changes(old: &Snapshot, new: &Snapshot) -> String {
    let before: HashMap<&str, String> = old
        .routes
        .iter()
        .map(|r| (&*r.name, route_desc(old, r)))
        .collect();
    let (mut added, mut changed) = (Vec::new(), Vec::new());
    for r in new.routes.iter() {
        match before.get(&*r.name) {
            None => added.push(&*r.name),
            Some(desc) if *desc != route_desc(new, r) => changed.push(&*r.name),
            Some(_) => {}
        }
    }
    let now: HashSet<&str> = new.routes.iter().map(|r| &*r.name).collect();
    let removed: Vec<&str> = old
        .routes
        .iter()
        .map(|r| &*r.name)
        .filter(|n| !now.contains(n))
        .collect();
    let mut parts = Vec::new();
    let routes: Vec<String> = [list("+", &added), list("-", &removed), list("~", &changed)]
        .into_iter()
        .flatten()
        .collect();
    if !routes.is_empty() {
        parts.push(format!("routes {}", routes.join(" ")));
    }
    let old_upstreams: HashMap<&str, &crate::upstream::Upstream> =
        old.upstreams.iter().map(|u| (&*u.name, u)).collect();
    let (mut up_added, mut weights, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    for u in new.upstreams.iter() {
        let Some(before) = old_upstreams.get(&*u.name) else {
            up_added.push(&*u.name);
            continue;
        };
        for (t, w) in u.targets.iter().zip(u.weights.iter()) {
            match before
                .targets
                .iter()
                .position(|o| o.authority == t.authority)
            {
                None => targets.push(format!("{}+{}", u.name, t.authority)),
                Some(i) if before.weights[i] != *w => weights.push(format!(
                    "{}/{} {}->{}",
                    u.name, t.authority, before.weights[i], w
                )),
                Some(_) => {}
            }
        }
        for t in before.targets.iter() {
            if !u.targets.iter().any(|n| n.authority == t.authority) {
                targets.push(format!("{}-{}", u.name, t.authority));
            }
        }
    }
    let kept: HashSet<&str> = new.upstreams.iter().map(|u| &*u.name).collect();
    let up_removed: Vec<&str> = old
        .upstreams
        .iter()
        .map(|u| &*u.name)
        .filter(|n| !kept.contains(n))
        .collect();
    let ups: Vec<String> = [list("+", &up_added), list("-", &up_removed)]
        .into_iter()
        .flatten()
        .collect();
    if !ups.is_empty() {
        parts.push(format!("upstreams {}", ups.join(" ")));
    }
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    if let Some(t) = list("", &targets) {
        parts.push(format!("targets {t}"));
    }
    let weights: Vec<&str> = weights.iter().map(String::as_str).collect();
    if let Some(w) = list("", &weights) {
        parts.push(format!("weights {w}"));
    }
    if parts.is_empty() {
        "no routing change".to_string()
    } else {
        parts.join("; ")
    }
}

/// Names listed per kind of change before the rest is summed up.
const LISTED: usize = 20;

fn list(sign: &str, names: &[&str]) -> Option<String> {
    match names.len() {
        0 => None,
        n if n <= LISTED => Some(format!("{sign}[{}]", names.join(", "))),
        n => Some(format!(
            "{sign}[{}, and {} more]",
            names[..LISTED].join(", "),
            n - LISTED
        )),
    }
}

/// Everything about a route that a reload can change, as one comparable
/// string (upstreams by name, since indices move between configs).
fn route_desc(s: &Snapshot, r: &crate::state::Route) -> String {
    let name = |i: usize| &*s.upstreams[i].name;
    format!(
        "{} {:?} {:?} {} {} {:?} sticky={:?} fallback={:?} shadow={:?}",
        r.prefix,
        r.host,
        r.methods,
        r.sides
            .iter()
            .map(|side| format!("{}:{}", name(side.upstream), side.weight))
            .collect::<Vec<_>>()
            .join(","),
        r.strip_prefix,
        r.rewrite_prefix,
        r.sticky.as_ref().map(|k| k.to_string()),
        r.fallback.map(name),
        r.shadow.as_ref().map(|sh| {
            let mut spec = sh.spec.clone();
            spec.upstream = usize::MAX;
            (name(sh.spec.upstream), format!("{spec:?}"))
        }),
    )
}

/// Quiet time that ends a burst of file events that did not end with a
/// close or a rename, and the longest a burst may delay its reload.
const SETTLE: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_millis(250);

/// Watches the config file's directory (and, when the path is a symlink
/// into another directory, that one too) and reloads on changes. The
/// returned watcher must be kept alive.
pub fn watch(shared: Arc<Shared>) -> notify::Result<notify::RecommendedWatcher> {
    let path = shared.config_path();
    // `true` marks an event that ends a save: nothing more is coming.
    let (tx, mut rx) = mpsc::channel::<bool>(64);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Our own reads of the file show up as open and metadata (atime)
        // events; only writes, creations, renames and removals can change
        // what the file says.
        if let Ok(e) = event {
            let signal = match e.kind {
                // The writer closed the file, or a rename put a new file (or
                // Kubernetes' new `..data` link) in place: the save is done.
                EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => {
                    Some(true)
                }
                EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => None,
                _ => Some(false),
            };
            if let Some(done) = signal {
                let _ = tx.try_send(done);
            }
        }
    })?;
    for dir in watch_dirs(&path) {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    }
    tokio::spawn(async move {
        while let Some(mut done) = rx.recv().await {
            // A write in progress (truncate, then writes) is waited out until
            // the events stop; an event that ends a save reloads at once.
            let burst = Instant::now();
            while !done && burst.elapsed() < MAX_DELAY {
                match tokio::time::timeout(SETTLE, rx.recv()).await {
                    Ok(Some(d)) => done = d,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            reload(&shared, Trigger::FileChange).await;
        }
    });
    Ok(watcher)
}

fn watch_dirs(path: &Path) -> Vec<PathBuf> {
    let parent = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dirs = vec![parent(path)];
    if let Ok(link) = std::fs::read_link(path) {
        let target = if link.is_absolute() {
            link
        } else {
            parent(path).join(link)
        };
        let dir = parent(&target);
        // A non-recursive watch on the config's directory does not see
        // writes inside a subdirectory the link points into (a hand-made
        // `figway.toml -> conf/current.toml`), so that directory is watched
        // too. For Kubernetes' `..data/figway.toml` this watches the current
        // `..2026_...` directory, which the swap, seen in the first
        // directory, retires.
        if dir != dirs[0] && dir.is_dir() {
            dirs.push(dir);
        }
    }
    dirs
}

/// Reloads on every SIGHUP until the process ends.
pub fn on_sighup(shared: Arc<Shared>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload by file change or POST /reload");
            return;
        };
        while hup.recv().await.is_some() {
            reload(&shared, Trigger::Signal).await;
        }
    });
}
