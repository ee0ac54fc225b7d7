//! A stub upstream to point figway at: it answers every request with JSON
//! naming itself (`{"service":"monolith","method":"GET","path":...}`) and an
//! `x-served-by` header, and `GET /health` with 200, so a split, a fallback
//! or a hot reload shows in every answer. The same stub `figway demo` runs
//! (`figway::demo::stub`).
//!
//! ```text
//! cargo run --example stub_upstream -- 127.0.0.1:8000 monolith
//! cargo run --example stub_upstream -- 127.0.0.1:9001 orders version=2.0
//! ```
//!
//! `KEY=VALUE` arguments add a constant field to every answer (the value
//! as JSON when it parses as JSON, else as a string), so that two stubs can
//! answer slightly differently for a shadow compare. Ctrl-C stops it.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use figway::demo::stub::Stub;

#[derive(Parser)]
#[command(about = "A stub upstream that says who answered")]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8000.
    address: SocketAddr,
    /// The name it answers with (JSON `service` and `x-served-by`).
    #[arg(default_value = "stub")]
    name: String,
    /// Constant fields added to every answer, KEY=VALUE.
    fields: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut stub = Stub::new(&args.name);
    for field in &args.fields {
        let Some((key, value)) = field.split_once('=') else {
            eprintln!("error: {field:?} is not KEY=VALUE");
            return ExitCode::from(2);
        };
        let value: serde_json::Value = serde_json::from_str(value).unwrap_or_else(|_| value.into());
        stub = stub.with_field(key, value);
    }
    let listener = match tokio::net::TcpListener::bind(args.address).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.address);
            return ExitCode::from(1);
        }
    };
    println!(
        "stub {:?} answering on http://{} (GET /health for health checks); Ctrl-C stops it",
        args.name, args.address
    );
    stub.serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    ExitCode::SUCCESS
}
