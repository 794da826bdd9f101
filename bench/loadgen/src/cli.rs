//! Command-line options: one subcommand per workload, each with the common options.

use clap::{Args, Parser, Subcommand};

use crate::target::Kind;

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for Switchboard and Nchan: prints one JSON object on stdout, a summary on stderr"
)]
pub struct Cli {
    #[command(subcommand)]
    pub mode: Mode,
}

#[derive(Subcommand)]
pub enum Mode {
    /// Open N idle streams and measure the server's memory per stream.
    Idle(IdleArgs),
    /// One stream per user; publish notifications round-robin over the users.
    Unicast(UnicastArgs),
    /// Every stream on one topic; publish broadcasts to it.
    Broadcast(BroadcastArgs),
    /// Switchboard with FCM to fcm-mock: register a device per user, then notify offline users.
    Fcm(FcmArgs),
    /// N clients polling a path on keep-alive connections, spread evenly over the interval.
    Poll(PollArgs),
    /// Reconnect storm: N reconnecting (acking) clients, the server restarted under them.
    Storm(StormArgs),
    /// Anonymous connections held open (nothing, one byte, HTTP/2 preface) while streams get notifications.
    Flood(FloodArgs),
    /// A producer under its rate limit beside one far over it.
    Noisy(NoisyArgs),
    /// W7: each user gets one notification a minute at a random moment; clients poll
    /// `GET /v1/inbox` with `If-None-Match`, or hold streams, or (mixed) some hold streams and
    /// every user has a device.
    W7(W7Args),
}

#[derive(Args, Clone)]
pub struct Common {
    /// Which server this is.
    #[arg(long, value_enum, default_value = "switchboard")]
    pub target: Kind,
    /// The server streams connect to (and publishers too, unless --pub-url).
    #[arg(long, default_value = "http://127.0.0.1:18080")]
    pub url: String,
    /// Where publishers send (another node of the same cluster).
    #[arg(long)]
    pub pub_url: Option<String>,
    /// Source addresses for connections, round-robin: a range a-b and/or a comma list.
    #[arg(long, default_value = "127.0.0.2-127.0.0.20")]
    pub source_ips: String,
    /// This process's share of the users: K/N takes users i with i % N == K.
    #[arg(long, default_value = "0/1")]
    pub shard: String,
    /// The server's pids (comma list); children count too (nginx workers). Reports CPU and memory.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// HS256 secret of client tokens (Switchboard's auth.jwt_secret).
    #[arg(long, env = "SB_JWT_SECRET", default_value = "dev-only-change-me")]
    pub jwt_secret: String,
    /// Producer key (Switchboard's auth.producer_keys).
    #[arg(long, env = "SB_PRODUCER_KEY", default_value = "dev-producer-key")]
    pub producer_key: String,
    /// User ids are this prefix and a number.
    #[arg(long, default_value = "u-")]
    pub user_prefix: String,
    /// Publisher connections.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// After the last send, wait this long at most for deliveries still on their way.
    #[arg(long, default_value_t = 5.0)]
    pub drain_secs: f64,
    /// Give up waiting for streams to open after this long.
    #[arg(long, default_value_t = 180.0)]
    pub open_timeout_secs: f64,
    /// Pause between the streams being open and the first publish.
    #[arg(long, default_value_t = 1.0)]
    pub settle_secs: f64,
    /// A Redis (host:port) whose INFO commandstats and cpu deltas to report over the window.
    #[arg(long)]
    pub redis_addr: Option<String>,
}

#[derive(Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub streams: usize,
    /// How long to hold the streams open before reading memory (lets the server settle).
    #[arg(long, default_value_t = 10.0)]
    pub hold_secs: f64,
}

#[derive(Args)]
pub struct UnicastArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub streams: usize,
    /// Publish window, seconds.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Total notifications per second; omitted = as fast as the server answers.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Notifications per /v1/notify/batch request (Switchboard); 1 = POST /v1/notify.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

#[derive(Args)]
pub struct BroadcastArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub streams: usize,
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Broadcasts per second; omitted = as fast as the server answers.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, default_value = "bench")]
    pub topic: String,
}

#[derive(Args)]
pub struct FcmArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub users: usize,
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// fcm-mock's base URL (for /_mock/stats).
    #[arg(long)]
    pub mock_url: String,
    /// Notifications per second, or `max`.
    #[arg(long, default_value = "max")]
    pub rate: String,
    /// After the window, wait this long at most for the FCM queue to drain.
    #[arg(long, default_value_t = 60.0)]
    pub fcm_drain_secs: f64,
    /// The push provider the devices register with: `fcm` (sends counted by fcm-mock's
    /// stats), `apns` (HTTP/2-only apns-mock: counted by the router's
    /// `switchboard_apns_requests_total{result="ok"}`) or `webpush` (--mock-url is a
    /// webpush-mock; each user registers one browser subscription created there).
    #[arg(long, value_enum, default_value = "fcm")]
    pub provider: PushProvider,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PushProvider {
    Fcm,
    Apns,
    Webpush,
}

#[derive(Args)]
pub struct PollArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub clients: usize,
    #[arg(long, default_value_t = 3.0)]
    pub interval_secs: f64,
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    #[arg(long, default_value = "/healthz")]
    pub url_path: String,
}

/// How W7's clients learn of their notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum W7How {
    /// `GET /v1/inbox?after=<last>` with `If-None-Match` every interval, on keep-alive.
    Poll,
    /// One stream per user.
    Push,
    /// `--online` of the users on streams, every user with one device (FCM to fcm-mock).
    Mixed,
    /// No client at all: the same notifications, to measure the producer's side alone (the
    /// notify requests and their inbox writes), which the other ways include.
    Quiet,
}

#[derive(Args)]
pub struct W7Args {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, value_enum)]
    pub how: W7How,
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Window, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Poll: seconds between two polls of one client.
    #[arg(long, default_value_t = 3.0)]
    pub interval_secs: f64,
    /// Mixed: the share of users on a stream.
    #[arg(long, default_value_t = 0.6)]
    pub online: f64,
    /// Mixed: fcm-mock's base URL (for /_mock/stats).
    #[arg(long)]
    pub mock_url: Option<String>,
}

#[derive(Args)]
pub struct StormArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub streams: usize,
    /// Notifications per user before the restart, and again after it.
    #[arg(long, default_value_t = 1)]
    pub per_user: u64,
    /// Created when the clients are ready for the restart; the restarter then writes
    /// `<file>.restarted` with `<new pid> <SIGTERM unix µs> <listening again unix µs>`.
    #[arg(long)]
    pub signal_file: String,
    /// The reconnection time of a client whose server sent no `retry:` (an EventSource's default).
    #[arg(long, default_value_t = 3000)]
    pub default_retry_ms: u64,
    /// Give up waiting for every client to be back after this long.
    #[arg(long, default_value_t = 120.0)]
    pub reconnect_timeout_secs: f64,
    /// Switchboard: open streams without ack=true (no acks sent).
    #[arg(long)]
    pub no_ack: bool,
}

#[derive(Args)]
pub struct FloodArgs {
    #[command(flatten)]
    pub common: Common,
    /// Real streams.
    #[arg(long, default_value_t = 1000)]
    pub streams: usize,
    /// Notifications per phase.
    #[arg(long, default_value_t = 10_000)]
    pub notifications: u64,
    /// Notifications per second.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Anonymous connections of the flood.
    #[arg(long, default_value_t = 10_000)]
    pub flood: usize,
    /// Source addresses of the flood.
    #[arg(long, default_value = "127.0.1.2-127.0.1.20")]
    pub flood_source_ips: String,
    /// How long a flood connection waits before reopening one the server closed.
    #[arg(long, default_value_t = 100)]
    pub flood_reconnect_ms: u64,
    /// The flood's first connects spread over this long (a short ramp lines up their deadlines).
    #[arg(long, default_value_t = 0.5)]
    pub flood_ramp_secs: f64,
    /// Pairs of phases (without the flood, then with it).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
}

#[derive(Args)]
pub struct NoisyArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 1000)]
    pub streams: usize,
    /// The well-behaved producer's notifications per second.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// The noisy producer's key (one of the server's auth.producer_keys).
    #[arg(long, default_value = "noisy-producer-key")]
    pub noisy_key: String,
    /// The noisy producer's users (no streams).
    #[arg(long, default_value = "noisy-")]
    pub noisy_user_prefix: String,
    /// The noisy producer's connections.
    #[arg(long, default_value_t = 8)]
    pub noisy_connections: usize,
    /// The noisy producer's requests per second, or `max` (each connection back to back).
    #[arg(long, default_value = "max")]
    pub noisy_rate: String,
    /// Pairs of phases (without the noisy producer, then with it).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
}

/// `K/N` → (K, N).
pub fn parse_shard(s: &str) -> anyhow::Result<(usize, usize)> {
    let (k, n) = s
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("--shard {s}: expected K/N"))?;
    let (k, n): (usize, usize) = (k.trim().parse()?, n.trim().parse()?);
    if n == 0 || k >= n {
        anyhow::bail!("--shard {s}: need 0 <= K < N");
    }
    Ok((k, n))
}

/// `max` → None, else a positive number.
pub fn parse_rate(s: &str) -> anyhow::Result<Option<f64>> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(None);
    }
    let r: f64 = s.parse()?;
    if r <= 0.0 || !r.is_finite() {
        anyhow::bail!("--rate {s}: must be positive or max");
    }
    Ok(Some(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_and_rates() {
        assert_eq!(parse_shard("1/3").unwrap(), (1, 3));
        assert!(parse_shard("3/3").is_err());
        assert!(parse_shard("x").is_err());
        assert_eq!(parse_rate("max").unwrap(), None);
        assert_eq!(parse_rate("250").unwrap(), Some(250.0));
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
