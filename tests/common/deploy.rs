//! Several nodes sharing a Redis (standalone or cluster), a fresh PostgreSQL database and one
//! fcm-mock.

use std::time::Duration;

use super::services::TestDb;
use super::{Mock, Options, TestApp};

/// `broker.presence_ttl_secs` in these tests.
pub const PRESENCE_TTL: Duration = Duration::from_secs(3);

/// Nodes sharing a broker, a database (fresh for the test) and an fcm-mock.
pub struct Deployment {
    pub nodes: Vec<TestApp>,
    pub mock: Mock,
    pub _db: TestDb,
    pub _dir: tempfile::TempDir,
}

pub async fn deploy(n: usize, redis_url: &str) -> Deployment {
    deploy_with(n, redis_url, &[]).await
}

/// As [`deploy`], with extra `SWITCHBOARD__*` settings on every node.
pub async fn deploy_with(n: usize, redis_url: &str, env: &[(&str, &str)]) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock::start(dir.path()).await;
    let db = TestDb::create().await;
    let namespace = format!("t{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let mut nodes = Vec::new();
    for i in 0..n {
        let opts = Options {
            shared_fcm: Some((mock.url.clone(), mock.key_path.clone())),
            ..Options::default()
        }
        .env("SWITCHBOARD__BROKER__KIND", "redis")
        .env("SWITCHBOARD__BROKER__REDIS_URL", redis_url)
        .env("SWITCHBOARD__BROKER__NAMESPACE", &namespace)
        .env(
            "SWITCHBOARD__BROKER__PRESENCE_TTL_SECS",
            &PRESENCE_TTL.as_secs().to_string(),
        )
        .env("SWITCHBOARD__STORE__URL", &db.url)
        .env("SWITCHBOARD__SERVER__NODE_ID", &format!("node-{i}"));
        let opts = env.iter().fold(opts, |o, (k, v)| o.env(k, v));
        nodes.push(TestApp::spawn_with(opts).await);
    }
    Deployment {
        nodes,
        mock,
        _db: db,
        _dir: dir,
    }
}
