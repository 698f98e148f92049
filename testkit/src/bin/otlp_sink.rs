//! `otlp-sink`: an OTLP/gRPC trace collector that takes every span (held in memory: a
//! benchmark's worth), for benchmarks that measure what exporting spans costs. On SIGTERM or ctrl-c it prints
//! `otlp-sink: received <spans> spans in <requests> export requests` and exits.
//!
//! Usage: `otlp-sink [--listen 127.0.0.1:4317]`
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen = match args.as_slice() {
        [] => "127.0.0.1:4317".to_string(),
        [flag, addr] if flag == "--listen" => addr.clone(),
        _ => {
            eprintln!("usage: otlp-sink [--listen HOST:PORT]");
            return ExitCode::from(2);
        }
    };
    let addr: SocketAddr = match listen.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("otlp-sink: --listen {listen:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let collector = match testkit::otlp::Collector::start_on(addr).await {
        Ok(collector) => collector,
        Err(e) => {
            eprintln!("otlp-sink: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!("otlp-sink: listening on {}", collector.endpoint());
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                eprintln!("otlp-sink: cannot listen for SIGTERM: {e}");
                return ExitCode::from(1);
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    let (spans, requests) = collector.counts();
    println!("otlp-sink: received {spans} spans in {requests} export requests");
    ExitCode::SUCCESS
}
