//! `webpush-mock`: serve the mock, or `webpush-mock gen-key` to write a VAPID key pair.
#![forbid(unsafe_code)]

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// A real Web Push service (RFC 8030) that verifies VAPID and decrypts messages for tests.
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
    /// Address to listen on (HTTP/1.1 and h2c on the same port).
    #[arg(long, default_value = "127.0.0.1:4002")]
    listen: SocketAddr,
    /// The application server's VAPID public key (base64url, as `applicationServerKey`);
    /// pushes signed with any other key are refused. Any key is accepted when left out.
    #[arg(long, value_name = "BASE64URL")]
    vapid_public_key: Option<String>,
    /// Base URL the subscription endpoints use, and whose origin `aud` must name
    /// (default: http://<listen address>).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// How many messages GET /_mock/messages keeps (oldest dropped first).
    #[arg(long, default_value_t = 100_000)]
    max_recorded: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Write a fresh VAPID key pair: the private key as PKCS#8 PEM; prints the public key.
    GenKey {
        /// Where to write the private key (mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("webpush-mock: cannot start the Tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("webpush-mock: {error:#}");
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
        Some(Command::GenKey { out }) => gen_key(&out),
        None => serve(cli.serve).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let vapid_public_key = args
        .vapid_public_key
        .as_deref()
        .map(webpush_mock::parse_public_key)
        .transpose()
        .context("--vapid-public-key")?;
    if let Some(url) = &args.public_url {
        anyhow::ensure!(
            url.starts_with("http://") || url.starts_with("https://"),
            "--public-url must be an http:// or https:// URL, got {url:?}"
        );
    }
    let config = webpush_mock::Config {
        vapid_public_key,
        public_url: args.public_url,
        max_recorded: args.max_recorded,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mock = webpush_mock::spawn_with(listener, config).await?;
    tracing::info!("webpush-mock listening on {}", mock.url());
    shutdown_signal().await;
    tracing::info!("webpush-mock stopping");
    mock.shutdown().await;
    Ok(())
}

fn gen_key(out: &Path) -> anyhow::Result<()> {
    let key = webpush_mock::generate_vapid_key()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    file.write_all(key.private_pem.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("wrote {} (VAPID private key)", out.display());
    // The public key alone on stdout, so scripts can capture it.
    println!("{}", key.public_key);
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
