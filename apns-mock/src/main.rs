//! `apns-mock`: serve the mock, or `apns-mock gen-key` to write an APNs `.p8` signing key.
#![forbid(unsafe_code)]

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// A real HTTP/2 (h2c) server speaking Apple's APNs provider API with token authentication.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (HTTP/2 with prior knowledge only, APIs and controls alike).
    #[arg(long, default_value = "127.0.0.1:4001")]
    listen: SocketAddr,
    /// The 10-character Key ID provider tokens must name in `kid`.
    #[arg(long)]
    key_id: Option<String>,
    /// The 10-character Team ID provider tokens must name in `iss`.
    #[arg(long)]
    team_id: Option<String>,
    /// The APNs signing key (`AuthKey_<KEYID>.p8`); the mock derives the public key from it.
    #[arg(long, value_name = "P8", conflicts_with = "public_key")]
    auth_key: Option<PathBuf>,
    /// The public key (PEM, `-----BEGIN PUBLIC KEY-----`) instead of the `.p8`.
    #[arg(long, value_name = "PEM")]
    public_key: Option<PathBuf>,
    /// A bundle id `apns-topic` may name (repeat for several apps).
    #[arg(long = "topic", value_name = "BUNDLE_ID")]
    topics: Vec<String>,
    /// Least time between two provider tokens on one connection, between their `iat`s.
    #[arg(long, default_value_t = 1200)]
    token_update_interval_secs: u64,
    /// How many notifications GET /_mock/messages keeps (oldest dropped first).
    #[arg(long, default_value_t = 100_000)]
    max_recorded: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Write a fresh P-256 signing key as Apple issues it (PKCS#8 `.p8`); prints its key id.
    GenKey {
        /// Where to write the key (mode 0600); `AuthKey_<KEYID>.p8` when left out.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("apns-mock: cannot start the Tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("apns-mock: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Some(Command::GenKey { out }) => gen_key(out.as_deref()),
        None => serve(cli.serve).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    const HINT: &str = "create a key with `apns-mock gen-key --out key.p8` (it prints the key id)";
    let key_id = args.key_id.context("--key-id is required")?;
    let team_id = args.team_id.context("--team-id is required")?;
    let key_path = args
        .auth_key
        .or(args.public_key)
        .with_context(|| format!("--auth-key <P8> or --public-key <PEM> is required; {HINT}"))?;
    anyhow::ensure!(
        !args.topics.is_empty(),
        "--topic <BUNDLE_ID> is required (the app's bundle id; repeat for several apps)"
    );
    let pem = std::fs::read_to_string(&key_path)
        .with_context(|| format!("cannot read key {}", key_path.display()))?;
    let key = apns_mock::ProviderKey::from_pem(&pem, &key_id, &team_id)
        .with_context(|| format!("{} is not a usable APNs key", key_path.display()))?;
    let mut config = apns_mock::Config::new(key, args.topics);
    config.token_update_interval = Duration::from_secs(args.token_update_interval_secs);
    config.max_recorded = args.max_recorded;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mock = apns_mock::spawn(listener, config).await?;
    tracing::info!("apns-mock listening on {} (HTTP/2 only)", mock.url());
    shutdown_signal().await;
    tracing::info!("apns-mock stopping");
    mock.shutdown().await;
    Ok(())
}

fn gen_key(out: Option<&Path>) -> anyhow::Result<()> {
    let key = apns_mock::generate_auth_key()?;
    let out = out.map_or_else(
        || PathBuf::from(format!("AuthKey_{}.p8", key.key_id)),
        Path::to_path_buf,
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    file.write_all(key.p8_pem.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("wrote {} (key id {})", out.display(), key.key_id);
    // The key id alone on stdout, so scripts can capture it.
    println!("{}", key.key_id);
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
