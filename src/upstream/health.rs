//! Active health checks (SPEC §5): one task per target (per endpoint, for a
//! target given by name) of an upstream with a `[health]` table, GET `path`
//! to the endpoint's address with `Host` the configured `host:port` and
//! `user-agent: figway-health` every `interval`. A target starts healthy,
//! turns unhealthy after `unhealthy_after` failed checks in a row and back
//! after `healthy_after` good ones ([`observe`], a pure function).
//!
//! Tasks hold their target weakly and stop when it is dropped (no snapshot
//! uses it any more) or when a reload changes or removes its `[health]`;
//! [`sync`] starts and stops them after each compile. The `healthy` flag
//! lives on the target, so it survives reloads and restarts of its task.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::target::{Checker, Target};
use super::Upstream;
use crate::config::{HealthSpec, Protocol};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCounter {
    pub healthy: bool,
    successes: u32,
    failures: u32,
}

impl HealthCounter {
    pub fn new(healthy: bool) -> Self {
        HealthCounter {
            healthy,
            successes: 0,
            failures: 0,
        }
    }
}

/// One check's result applied to the counter.
pub fn observe(c: HealthCounter, ok: bool, spec: &HealthSpec) -> HealthCounter {
    let (successes, failures) = if ok {
        (c.successes + 1, 0)
    } else {
        (0, c.failures + 1)
    };
    let healthy = if c.healthy {
        failures < spec.unhealthy_after
    } else {
        successes >= spec.healthy_after
    };
    HealthCounter {
        healthy,
        successes: if healthy != c.healthy { 0 } else { successes },
        failures: if healthy != c.healthy { 0 } else { failures },
    }
}

/// Starts, restarts or stops the checkers of every target of `upstreams`
/// (one compiled snapshot's) to match their `[health]` tables.
pub fn sync(upstreams: &[Upstream]) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no runtime: health checks not started");
        return;
    };
    for upstream in upstreams {
        for target in upstream.targets.iter() {
            let mut checker = target.checker.lock().unwrap_or_else(|e| e.into_inner());
            let current = checker.as_ref().map(|c| (&c.spec, c.protocol));
            if current == upstream.health.as_ref().map(|h| (h, upstream.protocol)) {
                continue;
            }
            if let Some(old) = checker.take() {
                old.task.abort();
            }
            // An aborted checker may be between its check and its write;
            // the new generation makes that write a no-op.
            let generation = target.health_generation.fetch_add(1, Ordering::SeqCst) + 1;
            match &upstream.health {
                Some(spec) => {
                    let task = runtime.spawn(run(
                        Arc::downgrade(target),
                        spec.clone(),
                        upstream.protocol,
                        generation,
                    ));
                    *checker = Some(Checker {
                        spec: spec.clone(),
                        protocol: upstream.protocol,
                        task: task.abort_handle(),
                    });
                }
                // No checks: nothing can call the target unhealthy.
                None => target.healthy.store(true, Ordering::Relaxed),
            }
        }
    }
}

async fn run(target: Weak<Target>, spec: HealthSpec, protocol: Protocol, generation: u64) {
    let mut tick = tokio::time::interval(spec.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut counter = match target.upgrade() {
        Some(t) => HealthCounter::new(t.healthy.load(Ordering::Relaxed)),
        None => return,
    };
    loop {
        tick.tick().await;
        let Some(t) = target.upgrade() else { return };
        let (authority, host) = (t.authority.clone(), t.host());
        drop(t);
        // Why the check failed, kept for the line that turns the target
        // unhealthy: a status, a refused connect and a timeout call for
        // different fixes.
        let failed = match tokio::time::timeout(
            spec.timeout,
            check(&authority, &host, &spec.path, protocol),
        )
        .await
        {
            Ok(Ok(status)) if (spec.expect.0..=spec.expect.1).contains(&status.as_u16()) => None,
            Ok(Ok(status)) => Some(format!("status {}", status.as_u16())),
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within timeout ({:?})", spec.timeout)),
        };
        let next = observe(counter, failed.is_none(), &spec);
        let Some(t) = target.upgrade() else { return };
        // `upstream_target`, not `target`: the JSON log already has a
        // `target` key (tracing's, the module), and log tools keep only one
        // of two equal keys.
        if next.healthy != counter.healthy {
            if next.healthy {
                tracing::info!(
                    upstream = %t.upstream,
                    upstream_target = %authority,
                    "target healthy again: passed {}",
                    checks_in_a_row(spec.healthy_after)
                );
            } else {
                tracing::warn!(
                    upstream = %t.upstream,
                    upstream_target = %authority,
                    path = %spec.path,
                    last_error = %failed.as_deref().unwrap_or("-"),
                    "target unhealthy: failed {}",
                    checks_in_a_row(spec.unhealthy_after)
                );
            }
        }
        // Under the checker lock, so that `sync` cannot switch generations
        // between the check and the write.
        let current = t.checker.lock().unwrap_or_else(|e| e.into_inner());
        if t.health_generation.load(Ordering::SeqCst) != generation {
            return;
        }
        t.healthy.store(next.healthy, Ordering::Relaxed);
        drop(current);
        counter = next;
    }
}

/// "1 check" or "3 checks in a row", for the lines above.
fn checks_in_a_row(n: u32) -> String {
    match n {
        1 => "1 check".to_string(),
        n => format!("{n} checks in a row"),
    }
}

/// One check on a fresh connection, so that a target that stopped accepting
/// connections fails it even while pooled connections still answer. In the
/// upstream's protocol: an h2c service may not speak HTTP/1.1 at all.
/// `authority` is dialled (an address); `host`, the configured `host:port`,
/// is what the request names, as SPEC §10 asks.
async fn check(
    authority: &str,
    host: &str,
    path: &str,
    protocol: Protocol,
) -> Result<StatusCode, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(authority).await?;
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    let request = Request::get(format!("http://{host}{path}"))
        .header(http::header::USER_AGENT, "figway-health");
    let response = match protocol {
        Protocol::Http1 => {
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(io).await?;
            tokio::spawn(conn);
            // Origin form, with Host, as a browser would send it.
            let request = request
                .uri(path)
                .header(http::header::HOST, host)
                .body(Empty::new())?;
            sender.send_request(request).await?
        }
        Protocol::H2c => {
            let (mut sender, conn) = hyper::client::conn::http2::handshake::<
                _,
                _,
                Empty<bytes::Bytes>,
            >(TokioExecutor::new(), io)
            .await?;
            tokio::spawn(conn);
            sender.send_request(request.body(Empty::new())?).await?
        }
    };
    Ok(response.status())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec() -> HealthSpec {
        HealthSpec {
            path: "/health".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            unhealthy_after: 3,
            healthy_after: 2,
            expect: (200, 399),
        }
    }

    #[test]
    fn turns_unhealthy_after_n_failures_and_back_after_m_successes() {
        let s = spec();
        let mut c = HealthCounter::new(true);
        for _ in 0..2 {
            c = observe(c, false, &s);
            assert!(c.healthy);
        }
        c = observe(c, false, &s);
        assert!(!c.healthy);
        c = observe(c, true, &s);
        assert!(!c.healthy);
        c = observe(c, true, &s);
        assert!(c.healthy);
    }

    #[test]
    fn a_success_breaks_a_failure_streak() {
        let s = spec();
        let mut c = HealthCounter::new(true);
        c = observe(c, false, &s);
        c = observe(c, false, &s);
        c = observe(c, true, &s);
        c = observe(c, false, &s);
        c = observe(c, false, &s);
        assert!(c.healthy);
    }
}
