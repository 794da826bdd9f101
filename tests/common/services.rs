//! Real services for multi-node tests: a fresh PostgreSQL database per test, a private
//! redis-server a test may kill and restart, and a three-master Redis Cluster on loopback ports
//! (started here when it is not already running).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";
const CLUSTER_PORTS: [u16; 3] = [7101, 7102, 7103];

fn fail_start(what: &str, how: &str) -> ! {
    panic!("{what} is not available. Start it with: {how} (or run .ci/run, which installs and starts everything the tests need)")
}

/// A database of its own, dropped at the end of the test.
pub struct TestDb {
    pub url: String,
    name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        use sqlx::Connection;
        let mut admin = match sqlx::PgConnection::connect(PG_ADMIN).await {
            Ok(c) => c,
            Err(e) => fail_start(
                &format!("PostgreSQL at 127.0.0.1:5432 ({e})"),
                "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            ),
        };
        let name = format!("sbtest_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        TestDb {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "test",
                "-c",
            ])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn redis_server_binary() -> &'static str {
    if Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        fail_start("redis-server", "apt-get install redis-server");
    }
    "redis-server"
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

fn wait_until(within: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A redis-server of this test's own, on a free port.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut s = RedisServer {
            port: free_port(),
            child: None,
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it abruptly (SIGKILL): connections drop, nothing is kept.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it (again) on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(redis_server_binary())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        assert!(
            wait_until(Duration::from_secs(5), || redis_cli(self.port, &["ping"])
                .is_some_and(|o| o.contains("PONG"))),
            "redis-server on port {} did not start",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

static CLUSTER: Mutex<bool> = Mutex::new(false);

/// The `redis-cluster://` URL of a three-master cluster on ports 7101-7103, created (daemonized,
/// nothing on disk but its node files) if it is not already up.
pub fn redis_cluster_url() -> String {
    let mut ready = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    if !*ready {
        ensure_cluster();
        *ready = true;
    }
    let [a, b, c] = CLUSTER_PORTS;
    format!("redis-cluster://127.0.0.1:{a}?node=127.0.0.1:{b}&node=127.0.0.1:{c}")
}

fn cluster_ok() -> bool {
    CLUSTER_PORTS.iter().all(|p| {
        redis_cli(*p, &["cluster", "info"])
            .is_some_and(|i| i.contains("cluster_state:ok") && i.contains("cluster_known_nodes:3"))
    })
}

fn ensure_cluster() {
    if cluster_ok() {
        return;
    }
    let dir = std::env::temp_dir().join("switchboard-test-cluster");
    for port in CLUSTER_PORTS {
        if redis_cli(port, &["ping"]).is_some() {
            // A stale node: empty it so it can join a new cluster.
            let _ = redis_cli(port, &["flushall"]);
            let _ = redis_cli(port, &["cluster", "reset", "hard"]);
            continue;
        }
        let node_dir = dir.join(port.to_string());
        std::fs::create_dir_all(&node_dir).unwrap();
        let _ = std::fs::remove_file(node_dir.join("nodes.conf"));
        let status = Command::new(redis_server_binary())
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
            ])
            .args([
                "--cluster-config-file",
                "nodes.conf",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
            ])
            .arg("--dir")
            .arg(&node_dir)
            .status()
            .expect("start a cluster node");
        assert!(status.success());
        assert!(wait_until(Duration::from_secs(5), || redis_cli(
            port,
            &["ping"]
        )
        .is_some()));
    }
    let nodes: Vec<String> = CLUSTER_PORTS
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&nodes)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli --cluster create");
    assert!(
        out.status.success(),
        "cluster create failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        wait_until(Duration::from_secs(20), cluster_ok),
        "the Redis Cluster did not become ready"
    );
}
