//! The workers of `figway run`. Each worker is a current-thread runtime on
//! a thread of its own with a listener of its own (SO_REUSEPORT: the
//! kernel spreads connections over them), measured ~25% cheaper per
//! request than tokio's work-stealing runtime (docs/benchmarks.md). The
//! first worker is the thread `run` started on, which also runs the admin
//! API, reloads, health checks and signals (`serve`); the others, started
//! here, only serve the proxy's listener, until the first tells them to
//! stop, and are joined once they have drained.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::config;
use crate::state::Shared;

/// How many workers `[runtime] workers` asks for: 0 is one per core.
pub(super) fn count(runtime: &config::Runtime) -> usize {
    match runtime.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// The runtime every worker runs on.
pub(super) fn current_thread_runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Starts workers 1 to `workers - 1` on the address `proxy` is bound to,
/// each serving until `stopped` turns true. A thread that cannot be
/// started is logged and left out (the start-up line counts the others);
/// a worker that starts but cannot build its runtime or bind logs why and
/// ends.
pub(super) fn spawn_others(
    proxy: &TcpListener,
    workers: usize,
    shared: &Arc<Shared>,
    stopped: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    match proxy.local_addr() {
        Ok(address) => (1..workers)
            .filter_map(|i| spawn_worker(i, address, shared.clone(), stopped.clone()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits for the workers [`spawn_others`] started to end, off the runtime's
/// thread (joining a thread blocks).
pub(super) async fn join(others: Vec<JoinHandle<()>>) {
    for worker in others {
        let _ = tokio::task::spawn_blocking(move || worker.join()).await;
    }
}

/// Starts worker `index`: its own current-thread runtime and its own
/// listener on `address`, serving until `stopped` turns true.
fn spawn_worker(
    index: usize,
    address: SocketAddr,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name(format!("figway-worker-{index}"))
        .spawn(move || {
            let runtime = match current_thread_runtime() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, worker = index, "cannot start a worker runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match crate::server::bind(address) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, worker = index, "worker cannot bind the listen address");
                        return;
                    }
                };
                let shutdown = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                crate::server::serve(listener, shared, shutdown).await;
            });
        });
    match spawned {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::error!(error = %e, worker = index, "cannot start a worker thread");
            None
        }
    }
}
