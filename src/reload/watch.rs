//! File watching for reloads: the config file's directory (and a symlink's
//! target directory), and the directories of the TLS certificate files in
//! service. Directories, not inodes: editors that save by rename and
//! Kubernetes' `..data` symlink swap replace the inode, and only the
//! directory sees that. Only events on the files a reload reads count
//! ([`Names`]): a log written beside the config would otherwise reread
//! and hash it after every write. Bursts of events coalesce into one
//! reload.

use std::collections::HashSet;
use std::ffi::OsString;
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
    let names = Arc::new(Mutex::new(Names::default()));
    lock(&names).add(&shared.config_path());
    let seen = names.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Our own reads of the file show up as open and metadata (atime)
        // events; only writes, creations, renames and removals can change
        // what the file says.
        if let Ok(e) = event {
            if !lock(&seen).concern(&e.paths) {
                return;
            }
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
    watch_cert_dirs(&shared, &watcher, &mut watched, &names);
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
                    watch_cert_dirs(&shared, &kept, &mut watched, &names);
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
    names: &Mutex<Names>,
) {
    let Some(certs) = &shared.tls else { return };
    for file in certs.files() {
        lock(names).add(&file);
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

/// The names, in the watched directories, of the files a reload reads:
/// the config file and the certificate files in service, and what their
/// symlinks point at. An event on another file there (a log written beside
/// the config, an editor's swap file) cannot change what a reload reads;
/// a save that ends by renaming a temporary file into place shows up as an
/// event on the file's own name.
#[derive(Default)]
struct Names(HashSet<OsString>);

impl Names {
    fn add(&mut self, path: &Path) {
        if let Some(name) = path.file_name() {
            self.0.insert(name.to_owned());
        }
        if let Some(name) = std::fs::read_link(path)
            .ok()
            .as_deref()
            .and_then(Path::file_name)
        {
            self.0.insert(name.to_owned());
        }
    }

    /// Whether an event on `paths` may change what a reload reads. An
    /// event with no path (the watcher's queue overflowed) may, and so may
    /// one on a name starting with `..`: Kubernetes' `..data` link and the
    /// timestamped directories it points at, which its volume updates swap.
    fn concern(&self, paths: &[PathBuf]) -> bool {
        paths.is_empty()
            || paths.iter().any(|p| {
                p.file_name()
                    .is_some_and(|n| self.0.contains(n) || n.as_encoded_bytes().starts_with(b".."))
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_events_on_what_a_reload_reads_concern_it() {
        let dir = std::env::temp_dir().join(format!("figway-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("figway.toml");
        std::fs::write(&config, "").unwrap();
        let mut names = Names::default();
        names.add(&config);
        names.add(&dir.join("tls").join("cert.pem"));
        let concern = |name: &str| names.concern(&[dir.join(name)]);
        assert!(concern("figway.toml"));
        assert!(concern("cert.pem"));
        assert!(concern("..data"));
        assert!(concern("..2026_12_01_16_00_00.123"));
        assert!(!concern("figway.log"), "a log beside the config");
        assert!(!concern(".figway.toml.swp"), "an editor's swap file");
        assert!(names.concern(&[]), "an overflow names no path");
        // A rename into place names both files.
        assert!(names.concern(&[dir.join("sed1234"), config.clone()]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlinked_configs_target_concerns_it() {
        let dir = std::env::temp_dir().join(format!("figway-link-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf")).unwrap();
        std::fs::write(dir.join("conf").join("current.toml"), "").unwrap();
        let link = dir.join("figway.toml");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("conf/current.toml", &link).unwrap();
        let mut names = Names::default();
        names.add(&link);
        assert!(names.concern(&[dir.join("conf").join("current.toml")]));
        assert!(!names.concern(&[dir.join("conf").join("other.toml")]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
