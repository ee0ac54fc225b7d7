//! A steady stream of requests to one figway URL, and once a second the
//! share of answers per upstream (by the `x-served-by` header the stubs of
//! `figway demo` and `examples/stub_upstream.rs` set), plus errors: run it
//! while editing the route table to watch traffic move.
//!
//! ```text
//! cargo run --example load_driver -- http://127.0.0.1:8080/api/users/7
//! cargo run --example load_driver -- http://127.0.0.1:8080/api/users/7 --rate 200 -H 'x-user-id: alice'
//! ```
//!
//! Requests go out on a few keep-alive HTTP/1.1 connections (hyper's
//! client connection, no pool), each at its share of `--rate`; a failed
//! connection is opened again on its next tick. An answer without
//! `x-served-by` (figway's own 502, 503 or 404, say) counts as an error, by
//! its status and `x-figway-error` kind. Ctrl-C stops it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[derive(Parser)]
#[command(about = "Send steady traffic to a URL and print the share each upstream answers")]
struct Args {
    /// The URL to request, e.g. http://127.0.0.1:8080/api/users/7.
    url: Uri,
    /// Requests per second, over all connections.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Keep-alive connections the requests are spread over.
    #[arg(long, default_value_t = 4)]
    connections: u32,
    /// A request header, `Name: value`; repeatable.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
}

/// What one request came to.
enum Outcome {
    /// The upstream named by `x-served-by`.
    Served(String),
    /// An answer without it (`502 upstream_connect`) or no answer at all.
    Failed(String),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let (Some(authority), Some("http")) = (args.url.authority().cloned(), args.url.scheme_str())
    else {
        eprintln!("error: {} is not an http://host:port/path URL", args.url);
        return ExitCode::from(2);
    };
    let mut headers = Vec::new();
    for h in &args.headers {
        let parsed = h.split_once(':').and_then(|(n, v)| {
            Some((
                HeaderName::from_bytes(n.trim().as_bytes()).ok()?,
                HeaderValue::from_str(v.trim()).ok()?,
            ))
        });
        match parsed {
            Some(pair) => headers.push(pair),
            None => {
                eprintln!("error: invalid header {h:?}: expected 'Name: value'");
                return ExitCode::from(2);
            }
        }
    }
    let path = args
        .url
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let connections = args.connections.max(1);
    let every = Duration::from_secs_f64(f64::from(connections) / f64::from(args.rate.max(1)));
    let (tx, mut outcomes) = mpsc::unbounded_channel();
    for _ in 0..connections {
        let worker = Worker {
            authority: authority.to_string(),
            path: path.clone(),
            headers: headers.clone(),
            sender: None,
        };
        tokio::spawn(worker.run(every, tx.clone()));
    }
    println!(
        "sending {} requests/s to {} over {connections} connections; Ctrl-C stops",
        args.rate, args.url
    );
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut second = Second::default();
    loop {
        tokio::select! {
            Some(outcome) = outcomes.recv() => second.count(outcome),
            _ = tick.tick() => {
                println!("{:>4}s  {}", start.elapsed().as_secs(), second.render());
                second = Second::default();
            }
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
        }
    }
}

/// One keep-alive connection and the requests it sends.
struct Worker {
    authority: String,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Worker {
    async fn run(mut self, every: Duration, outcomes: mpsc::UnboundedSender<Outcome>) {
        let mut tick = tokio::time::interval(every);
        // Behind (a slow answer): carry on at the rate, do not burst.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let outcome = match self.send().await {
                Ok(o) => o,
                Err(e) => {
                    self.sender = None;
                    Outcome::Failed(e)
                }
            };
            if outcomes.send(outcome).is_err() {
                return;
            }
        }
    }

    async fn send(&mut self) -> Result<Outcome, String> {
        let sender = match &mut self.sender {
            Some(s) if !s.is_closed() => s,
            _ => self.sender.insert(self.connect().await?),
        };
        let mut request = Request::get(self.path.as_str())
            .header(http::header::HOST, self.authority.as_str())
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        request.headers_mut().extend(self.headers.iter().cloned());
        let response = sender.send_request(request).await.map_err(|e| {
            if e.is_closed() || e.is_incomplete_message() {
                "connection closed".to_string()
            } else {
                e.to_string()
            }
        })?;
        let (parts, body) = response.into_parts();
        // Read to the end so the connection can carry the next request.
        body.collect().await.map_err(|e| e.to_string())?;
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        Ok(match header("x-served-by") {
            Some(name) => Outcome::Served(name.to_string()),
            None => Outcome::Failed(match header("x-figway-error") {
                Some(kind) => format!("{} {kind}", parts.status.as_u16()),
                None => parts.status.as_u16().to_string(),
            }),
        })
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, String> {
        let stream = TcpStream::connect(self.authority.as_str())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok(sender)
    }
}

/// One second's outcomes.
#[derive(Default)]
struct Second {
    served: BTreeMap<String, u32>,
    failed: BTreeMap<String, u32>,
}

impl Second {
    fn count(&mut self, outcome: Outcome) {
        let (map, key) = match outcome {
            Outcome::Served(name) => (&mut self.served, name),
            Outcome::Failed(why) => (&mut self.failed, why),
        };
        *map.entry(key).or_default() += 1;
    }

    /// `50 req  monolith  90.0%  users  10.0%  errors 0`.
    fn render(&self) -> String {
        let errors: u32 = self.failed.values().sum();
        let total = self.served.values().sum::<u32>() + errors;
        let mut line = format!("{total:>5} req");
        for (name, n) in &self.served {
            let share = 100.0 * f64::from(*n) / f64::from(total.max(1));
            line.push_str(&format!("  {name} {share:5.1}%"));
        }
        line.push_str(&format!("  errors {errors}"));
        if !self.failed.is_empty() {
            let kinds: Vec<String> = self
                .failed
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            line.push_str(&format!(" ({})", kinds.join(", ")));
        }
        line
    }
}
