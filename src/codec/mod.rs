//! figway's own HTTP/1.1 server codec, the client-facing half of
//! `docs/http1-codec.md`: pure functions over bytes, no I/O, so that unit
//! tests and fuzz targets drive them directly and the connection loop
//! that will use them stays small. It sits below `body`, `proxy` and
//! `server` (the request body type the proxy forwards will live here), and
//! imports none of them.
//!
//! Built so far: [`request`], the request head parser with every refusal
//! and framing rule hyper's server applies today, and [`response`], the
//! answer's head written as hyper's server writes it (status line, joined
//! special lines, the body's framing, `Date`, keep-alive), and [`chunked`],
//! a chunked request body decoded with hyper's server's strict rules;
//! `tests/codec_differential.rs` holds all three to hyper over loopback, case
//! by case and byte for byte. Not yet on the request
//! path: client connections are still served by hyper until the
//! connection loop (the next step, listed in `docs/http1-codec.md`, "The
//! server") passes every test in `tests/`.

pub mod chunked;
pub mod request;
pub mod response;
