//! `fcm-mock`: serve the mock, or `fcm-mock gen-key` to write a service-account key for it.
#![forbid(unsafe_code)]

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// A real HTTP server speaking Google's OAuth2 token endpoint and FCM HTTP v1 messages:send.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Address to listen on (HTTP/1.1 and h2c on the same port).
    #[arg(long, default_value = "127.0.0.1:4000")]
    listen: SocketAddr,
    /// Google service-account key JSON whose private key signs the token assertions.
    #[arg(long, value_name = "KEY_JSON")]
    service_account: Option<PathBuf>,
    /// How many sent messages GET /_mock/messages keeps (oldest dropped first).
    #[arg(long, default_value_t = fcm_mock::Config::default().max_recorded)]
    max_recorded: usize,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Write a fresh service-account key whose token_uri is <MOCK_URL>/token.
    GenKey {
        /// Where to write the key (mode 0600); printed to stdout when left out.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Base URL the mock will be reachable at, e.g. http://127.0.0.1:4000.
        #[arg(long)]
        mock_url: String,
        /// project_id of the key; sends to other projects are denied.
        #[arg(long, default_value = "demo-project")]
        project_id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fcm-mock: cannot start the Tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Operator-facing: the error chain on one line, without anyhow's backtrace.
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fcm-mock: {error:#}");
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
        Some(Command::GenKey {
            out,
            mock_url,
            project_id,
        }) => gen_key(out.as_deref(), &mock_url, &project_id),
        None => serve(cli.listen, cli.service_account.as_deref(), cli.max_recorded).await,
    }
}

async fn serve(
    listen: SocketAddr,
    key_path: Option<&Path>,
    max_recorded: usize,
) -> anyhow::Result<()> {
    let key_path = key_path.context(
        "--service-account <KEY_JSON> is required; create one with \
         `fcm-mock gen-key --out key.json --mock-url http://127.0.0.1:4000`",
    )?;
    let key = std::fs::read_to_string(key_path)
        .with_context(|| format!("cannot read service-account key {}", key_path.display()))?;
    fcm_mock::key::ServiceAccount::from_json(&key)
        .with_context(|| format!("{} is not a usable service-account key", key_path.display()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let config = fcm_mock::Config { max_recorded };
    let mock = fcm_mock::spawn_with(listener, &key, config).await?;
    tracing::info!("fcm-mock listening on {}", mock.url());
    shutdown_signal().await;
    tracing::info!("fcm-mock stopping");
    mock.shutdown().await;
    Ok(())
}

fn gen_key(out: Option<&Path>, mock_url: &str, project_id: &str) -> anyhow::Result<()> {
    let key = fcm_mock::generate_service_account(mock_url, project_id)?;
    let Some(out) = out else {
        println!("{key}");
        return Ok(());
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    writeln!(file, "{key}").with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "wrote {} (token_uri {}/token, project_id {project_id})",
        out.display(),
        mock_url.trim_end_matches('/')
    );
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
