//! figway: a strangler-fig edge proxy. It sits in front of a legacy monolith
//! and sends each path prefix to the monolith or to a service carved out of
//! it, as a TOML route table says.
//!
//! # Layout
//!
//! A request walks one way through the code:
//!
//! - [`server`] accepts connections (HTTP/1.1 and h2c), caps their number and
//!   drains them on shutdown; [`framing`] watches client bytes for smuggling; [`admin`] serves the admin API beside it.
//! - [`proxy`] handles one request: it loads the current [`state::Snapshot`]
//!   once, asks [`decision`] for the route (which uses [`path`] to normalise
//!   and [`router`] to match), picks a target from the [`upstream`], rewrites
//!   headers with [`headers`], forwards over a pooled connection
//!   ([`upstream::pool`]) and streams the answer back through [`body`].
//!   Failures become [`error::ErrorKind`] answers; [`access_log`] writes one
//!   line per request.
//! - [`config`] reads the file (every error at once, with file:line:col),
//!   validates it into [`config::model`] and compiles it into a snapshot;
//!   [`reload`] does the same on a file change, SIGHUP or `POST /reload`
//!   and swaps the new snapshot in.
//! - [`cli`] is the command line: run, check, explain; [`table`] renders its
//!   text output. [`net`] holds CIDRs and client-address rules, [`timefmt`]
//!   RFC 3339 timestamps.

pub mod access_log;
pub mod admin;
pub mod body;
pub mod cli;
pub mod config;
pub mod decision;
pub mod error;
pub mod framing;
pub mod hash;
pub mod headers;
pub mod keys;
pub mod metrics;
pub mod net;
pub mod path;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod server;
pub mod shadow;
pub mod state;
pub mod table;
pub mod timefmt;
pub mod upstream;
