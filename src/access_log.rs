//! The end of an exchange: [`Completion`] records the request's metrics and,
//! when access logging is on, carries its [`AccessRecord`].
//!
//! One line per request (SPEC §2 `[log] access_log`). The record is created
//! when the request arrives and written when it is dropped, which is when the
//! response body has been sent, or when the client went away first (status
//! 499, as nginx logs it). Lines go to stdout, diagnostics to stderr, so the
//! access log can be shipped on its own.
//!
//! The line is emitted at INFO under target `figway::access`, so `RUST_LOG`
//! can silence it (`figway::access=off`).

use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{HeaderValue, Method, Uri};
use serde::Serialize;

use crate::config::LogFormat;
use crate::error::ErrorKind;
use crate::metrics::RouteMetrics;
use crate::state::Snapshot;
use crate::upstream::Target;

/// Travels with the response body; dropped when the exchange is over (the
/// body was sent, or the client left), it counts the request in the metrics
/// and lets the access-log record write its line.
pub struct Completion {
    pub metrics: Arc<RouteMetrics>,
    pub start: Instant,
    /// 499 until a response is produced.
    pub status: u16,
    pub record: Option<Box<AccessRecord>>,
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.metrics
            .observe(self.status, self.start.elapsed().as_secs_f64());
        if let Some(r) = self.record.as_mut() {
            r.status = self.status;
        }
    }
}

pub struct AccessRecord {
    pub format: LogFormat,
    pub start: Instant,
    pub ts: SystemTime,
    pub request_id: HeaderValue,
    pub client: IpAddr,
    pub method: Method,
    pub uri: Uri,
    pub host: Option<HeaderValue>,
    /// Names are read from the snapshot at write time, not copied per request.
    pub snapshot: Arc<Snapshot>,
    pub route: Option<usize>,
    pub upstream: Option<usize>,
    pub target: Option<Arc<Target>>,
    /// 499 until a response is produced.
    pub status: u16,
    pub bytes_in: Arc<AtomicU64>,
    pub bytes_out: u64,
    pub retries: u32,
    pub error: Option<ErrorKind>,
}

/// Whether access lines would be written at all (config and `RUST_LOG`).
pub fn enabled(snapshot: &Snapshot) -> bool {
    snapshot.access_log && tracing::enabled!(target: "figway::access", tracing::Level::INFO)
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    request_id: &'a str,
    client: String,
    method: &'a str,
    path: &'a str,
    host: Option<&'a str>,
    route: Option<&'a str>,
    upstream: Option<&'a str>,
    target: Option<&'a str>,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
    retries: u32,
    error: Option<&'static str>,
}

impl Drop for AccessRecord {
    fn drop(&mut self) {
        let duration_ms = (self.start.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
        let route = self.route.map(|r| &*self.snapshot.routes[r].name);
        let upstream = self.upstream.map(|u| &*self.snapshot.upstreams[u].name);
        let host = self
            .host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .or_else(|| self.uri.authority().map(|a| a.as_str()));
        let line = Line {
            ts: crate::timefmt::rfc3339_millis(self.ts),
            request_id: self.request_id.to_str().unwrap_or("-"),
            client: self.client.to_string(),
            method: self.method.as_str(),
            path: self.uri.path(),
            host,
            route,
            upstream,
            target: self.target.as_deref().map(|t| &*t.authority),
            status: self.status,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out,
            duration_ms,
            retries: self.retries,
            error: self.error.map(ErrorKind::as_str),
        };
        let mut out = match self.format {
            LogFormat::Json => match serde_json::to_vec(&line) {
                Ok(v) => v,
                Err(_) => return,
            },
            LogFormat::Pretty => format!(
                "{} {} {} {}{} -> {} {}/{} {} {:.3}ms in={} out={} client={} id={}{}",
                line.ts,
                line.status,
                line.method,
                line.host.unwrap_or(""),
                line.path,
                line.route.unwrap_or("-"),
                line.upstream.unwrap_or("-"),
                line.target.unwrap_or("-"),
                if line.retries > 0 {
                    format!("retries={}", line.retries)
                } else {
                    String::new()
                },
                line.duration_ms,
                line.bytes_in,
                line.bytes_out,
                line.client,
                line.request_id,
                line.error
                    .map(|e| format!(" error={e}"))
                    .unwrap_or_default(),
            )
            .into_bytes(),
        };
        out.push(b'\n');
        // One write per line under stdout's lock, so lines never interleave.
        let _ = std::io::stdout().lock().write_all(&out);
    }
}
