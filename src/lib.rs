//! figway: a strangler-fig edge proxy. It sits in front of a legacy monolith
//! and sends each path prefix to the monolith or to a service carved out of
//! it, as a TOML route table says.
//!
//! # Layout
//!
//! Modules form layers: each imports only modules below it (a test,
//! `tests/layers.rs`, fails on any import cycle). From the bottom:
//!
//! - Leaves: [`clock`] (milliseconds on tokio's clock, for atomics; the
//!   wall clock ramps read, which tests move; the wall-clock time of an
//!   instant, for the access log),
//!   [`hash`] (the stable hash), [`path`] (normalisation), [`net`] (CIDRs,
//!   the client address rule), [`timefmt`] (RFC 3339), [`headers`]
//!   (hop-by-hop, `X-Forwarded-For`, `x-request-id`), [`error`] (why figway
//!   answers itself, with status and `x-figway-error` kind), [`framing`]
//!   (the smuggling guard over bytes hyper's server reads), [`codec`]
//!   (figway's own HTTP/1.1 server codec: `codec::scan` scans a head's
//!   lines by `httparse`'s rules, for requests and for the upstream
//!   client's responses; `codec::request` parses a
//!   request head, `codec::response` writes an answer's (from a map, or
//!   from `codec::lines`: an upstream's fields kept as the lines it
//!   writes), `codec::chunked` decodes a chunked request body, all with hyper's
//!   rules; `codec::socket` is the client socket the server and its
//!   request body, `codec::client_body`, share; `codec::upgraded` hands it
//!   to a tunnel after a 101), [`sticky`] (split buckets),
//!   [`trim`] (free memory back to the OS after connections leave),
//!   [`sys`] (`recv` and `send` as plain system calls, past glibc's
//!   cancellation-point wrappers),
//!   [`recycle`] (a future's box whose block the thread keeps for the
//!   next request's),
//!   [`suggest`] ("did you mean ...?" for config errors and the command
//!   line).
//! - [`config`] reads the file (every error at once, with file:line:col)
//!   and validates it into [`config::model`] types. It knows nothing of the
//!   runtime.
//! - [`tls`]: the certificates handshakes present (swapped on reload),
//!   SNI choice, the acceptor, and the client stream, plain or TLS.
//! - [`body`] (request bodies going upstream, bounded copies), [`keys`]
//!   (hash and sticky keys), [`matching`] (route match conditions on
//!   headers, cookies and query), [`rate_limit`] (the token buckets of
//!   `[routes.rate_limit]`), [`router`] (the segment trie and the match
//!   order), [`metrics`] (the registry and pre-resolved handles;
//!   `metrics::families`: every family's name, help and labels),
//!   [`access_log`] (lines formatted per worker, written by a writer thread;
//!   `access_log::format` says how a line reads),
//!   [`inventory`] (the legacy inventory: per-worker Space-Saving summaries
//!   of the path templates legacy upstreams answered, merged when read;
//!   `inventory::template` folds identifiers into `{id}`).
//! - [`upstream`]: targets (health, ejection, in-flight), balancing, the
//!   retry budget, per-worker connection pools, active health checks,
//!   `upstream::dns` (lookups of target names, and what an answer means:
//!   addresses, nothing, or a failure that keeps the last set), and
//!   `upstream::client`, which makes one attempt at one target for the
//!   proxy and the shadow alike (`upstream::connect` opens its
//!   connections, `upstream::head_timeout` times the wait for the
//!   response head for both protocols; HTTP/1.1 goes through figway's own client,
//!   `upstream::h1`: `conn` the socket and its buffer, `upload` the
//!   request body as it is written, `head` the request
//!   head written and the response head parsed, `body` the response body
//!   read as it is polled; `upstream::pool` keeps idle ones per worker;
//!   h2c goes through hyper's client, `upstream::h2pool`).
//! - [`shadow`]: mirrored requests and the compare of their answers.
//! - [`ramp`]: a ramp at run time (SPEC §11): the bucket layout of each
//!   step, the sliding window of the new side's answers and the gates that
//!   roll it back; its schedule is `config::schedule`.
//! - [`state`]: the compiled [`state::Snapshot`] (`state::compile` builds it
//!   from a config and the resolved target names, one endpoint per
//!   address) and [`state::Shared`], the process state around it;
//!   `state::resolve` resolves names before a compile and follows them in
//!   the background, recompiling when an answer changes.
//! - [`decision`]: the routing decision (route, forwarded path, split side),
//!   shared by the proxy and `figway explain`.
//! - [`proxy`]: one request, top to bottom, as phases over one context:
//!   `route` → `rewrite` → `attempt` (with `mirror`) → `respond` →
//!   `finish`; `proxy::context` holds what a connection and a request know.
//! - [`reload`] (file watch, SIGHUP, `POST /reload` → parse, compile, swap),
//!   [`admin`] (the admin API), [`server`] (listeners, connection cap,
//!   the accept loop and the drain; `server::conn`: one client
//!   connection, its first bytes, which HTTP server; `server::auto`: TLS,
//!   h2c and undecided connections under hyper-util's auto builder;
//!   `server::until_done`: the drain's graceful close and the head
//!   deadline, for either server; `server::h1`: figway's own HTTP/1.1
//!   server for plain connections), [`table`] (text
//!   renderings).
//! - [`demo`]: `figway demo`, stub services on loopback behind the real
//!   server; its `demo::stub` is the stub upstream the examples and tests
//!   share.
//! - At the top, [`cli`]: the arguments and which command they name, one
//!   file per command: `cli::serve` (`run`: bind, serve, drain; the
//!   tracing setup and the shutdown signal `demo` borrows), `cli::workers`
//!   (the worker threads, one runtime and listener each), `cli::check`,
//!   `cli::explain`; `figway demo` is [`demo`]'s. Beside it [`embed`],
//!   figway as a library: the request path as a tower `Service` for an
//!   application's own hyper server and layers (what it leaves to the
//!   application is in its docs). The two share their start-up through
//!   `reload::start` and `server::http_builder`.

pub mod access_log;
pub mod admin;
pub mod body;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod decision;
pub mod demo;
pub mod embed;
pub mod error;
pub mod framing;
pub mod hash;
pub mod headers;
pub mod inventory;
pub mod keys;
pub mod matching;
pub mod metrics;
pub mod net;
pub mod path;
pub mod proxy;
pub mod ramp;
pub mod rate_limit;
pub mod recycle;
pub mod reload;
pub mod router;
pub mod server;
pub mod shadow;
pub mod state;
pub mod sticky;
pub mod suggest;
pub mod sys;
pub mod table;
pub mod timefmt;
pub mod tls;
pub mod trim;
pub mod upstream;
