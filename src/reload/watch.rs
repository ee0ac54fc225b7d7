//! File watching for reloads: the config file's directory (and a symlink's
//! target directory), and the directories of the TLS certificate files in
//! service. Directories, not inodes: editors that save by rename and
//! Kubernetes' `..data` symlink swap replace the inode, and only the
//! directory sees that. Bursts of events coalesce into one reload.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::state::Shared;

/// Quiet time that ends a burst of file events that did not end with a
/// close or a rename, and the longest a burst may delay its reload.
const SETTLE: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_millis(250);

/// Watches the config file's directory (and, when the path is a symlink
/// into another directory, that one too), and the directories of the TLS
/// certificate files in service, and calls `reload` after each burst of
/// changes. The returned watcher must be kept alive.
pub fn watch<F, Fut>(
    shared: Arc<Shared>,
    reload: F,
) -> notify::Result<Arc<Mutex<notify::RecommendedWatcher>>>
where
    F: Fn(Arc<Shared>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    // `true` marks an event that ends a save: nothing more is coming.
    let (tx, mut rx) = mpsc::channel::<bool>(64);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
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
    let watcher = Arc::new(Mutex::new(watcher));
    let mut watched = HashSet::new();
    // The config's own directory must be watchable; certificate
    // directories are best effort (a reload reports unreadable files).
    for dir in watch_dirs(&shared.config_path()) {
        lock(&watcher).watch(&dir, RecursiveMode::NonRecursive)?;
        watched.insert(dir);
    }
    watch_cert_dirs(&shared, &watcher, &mut watched);
    let kept = watcher.clone();
    tokio::spawn(async move {
        // A reload (by any trigger) may name certificates in other
        // directories; they are picked up on this tick.
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            let mut done = tokio::select! {
                event = rx.recv() => match event {
                    Some(done) => done,
                    None => return,
                },
                _ = tick.tick() => {
                    watch_cert_dirs(&shared, &kept, &mut watched);
                    continue;
                }
            };
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
            reload(shared.clone()).await;
        }
    });
    Ok(watcher)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds watches for the directories of the certificate files in service
/// that are not watched yet (cert-manager and Kubernetes Secret volumes
/// swap a `..data` link, which only the directory sees).
fn watch_cert_dirs(
    shared: &Shared,
    watcher: &Mutex<notify::RecommendedWatcher>,
    watched: &mut HashSet<PathBuf>,
) {
    let Some(certs) = &shared.tls else { return };
    for file in certs.files() {
        for dir in watch_dirs(&file) {
            if watched.contains(&dir) {
                continue;
            }
            match lock(watcher).watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    watched.insert(dir);
                }
                Err(e) => {
                    // Warned once: the directory is not retried.
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a certificate directory; reload by SIGHUP or POST /reload after renewals");
                    watched.insert(dir);
                }
            }
        }
    }
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
