//! `loadgen`: the benchmark load generator for Switchboard (and Nchan beside it).
//!
//! # Layout
//! - `cli`: options; `target`: the two servers' request shapes (JWT, JSON, channels).
//! - `net`: server address and loopback source addresses; `streams`: raw-TCP SSE receivers;
//!   `sse`: chunked + SSE decoding; `publish`: hyper keep-alive publisher connections.
//! - `stats`: latency histograms and counters; `procfs`: server CPU/RSS; `redis_info`: Redis
//!   INFO deltas; `report`: JSON out.
//! - workloads: `live` (shared + `idle`), `unicast`, `broadcast`, `fcm`, `poll`, `w7` (inbox
//!   polling against streams); and the edge's:
//!   `storm` (reconnecting clients in `client`), `flood`, `noisy`, with `phase` (fixed-size
//!   publish phases).
#![forbid(unsafe_code)]

mod broadcast;
mod cli;
mod client;
mod fcm;
mod flood;
mod live;
mod net;
mod noisy;
mod phase;
mod poll;
mod pollers;
mod procfs;
mod publish;
mod redis_info;
mod report;
mod sse;
mod stats;
mod storm;
mod streams;
mod target;
mod unicast;
mod w7;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Mode};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.mode {
            Mode::Idle(a) => live::idle(a).await,
            Mode::Unicast(a) => unicast::unicast(a).await,
            Mode::Broadcast(a) => broadcast::broadcast(a).await,
            Mode::Fcm(a) => fcm::fcm(a).await,
            Mode::Poll(a) => poll::poll(a).await,
            Mode::Storm(a) => storm::storm(a).await,
            Mode::Flood(a) => flood::flood(a).await,
            Mode::Noisy(a) => noisy::noisy(a).await,
            Mode::W7(a) => w7::w7(a).await,
        }
    });
    // Thousands of stream tasks are still reading: leave without waiting for them.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
