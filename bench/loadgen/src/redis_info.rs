//! Redis's own account of the work: `INFO commandstats` (calls per command) and `INFO cpu`,
//! read over a bare RESP connection at the start and end of a window.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Calls per command, and Redis's CPU seconds (user + sys, main thread and children).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub calls: BTreeMap<String, u64>,
    pub cpu_secs: f64,
}

pub async fn snapshot(addr: &str) -> anyhow::Result<Snapshot> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("redis {addr}"))?;
    let mut conn = BufReader::new(tcp);
    let stats = info(&mut conn, "commandstats").await?;
    let cpu = info(&mut conn, "cpu").await?;
    Ok(Snapshot {
        calls: parse_commandstats(&stats),
        cpu_secs: ["used_cpu_sys", "used_cpu_user"]
            .iter()
            .filter_map(|k| field(&cpu, k))
            .sum(),
    })
}

async fn info(conn: &mut BufReader<TcpStream>, section: &str) -> anyhow::Result<String> {
    conn.get_mut()
        .write_all(format!("INFO {section}\r\n").as_bytes())
        .await?;
    let mut head = String::new();
    conn.read_line(&mut head).await?;
    let len: usize = match head.trim_end().strip_prefix('$') {
        Some(n) => n.parse().context("INFO reply length")?,
        None => bail!("unexpected INFO reply: {head:?}"),
    };
    let mut body = vec![0u8; len + 2];
    conn.read_exact(&mut body).await?;
    body.truncate(len);
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `cmdstat_spublish:calls=12,usec=…` lines → {"spublish": 12}.
fn parse_commandstats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

fn field(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .trim()
        .parse()
        .ok()
}

/// What happened between two snapshots, per notification when `notifications` > 0.
pub fn delta(before: &Snapshot, after: &Snapshot, notifications: u64) -> serde_json::Value {
    let mut calls = BTreeMap::new();
    // Our own two INFO calls are not the server's work.
    for (cmd, &n) in after.calls.iter().filter(|(c, _)| c.as_str() != "info") {
        let d = n.saturating_sub(before.calls.get(cmd).copied().unwrap_or(0));
        if d > 0 {
            calls.insert(cmd.clone(), d);
        }
    }
    let total: u64 = calls.values().sum();
    let per = |d: u64| {
        if notifications > 0 {
            d as f64 / notifications as f64
        } else {
            0.0
        }
    };
    serde_json::json!({
        "calls": calls,
        "calls_total": total,
        "per_notification": calls.iter().map(|(k, &v)| (k.clone(), per(v))).collect::<BTreeMap<_, _>>(),
        "calls_per_notification": per(total),
        "redis_cpu_secs": after.cpu_secs - before.cpu_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_sections() {
        let text = "# Commandstats\r\ncmdstat_spublish:calls=10,usec=5,usec_per_call=0.5\r\n\
                    cmdstat_info:calls=2,usec=1\r\n";
        let m = parse_commandstats(text);
        assert_eq!(m["spublish"], 10);
        assert_eq!(m["info"], 2);
        assert_eq!(
            field("# CPU\r\nused_cpu_sys:1.50\r\n", "used_cpu_sys"),
            Some(1.5)
        );
        let before = Snapshot {
            calls: m.clone(),
            cpu_secs: 1.0,
        };
        let mut after = before.clone();
        after.calls.insert("spublish".into(), 30);
        after.calls.insert("info".into(), 4);
        after.cpu_secs = 3.0;
        let d = delta(&before, &after, 10);
        assert_eq!(d["calls"]["spublish"], 20);
        assert_eq!(d["per_notification"]["spublish"], 2.0);
        assert!(d["calls"].get("info").is_none());
    }
}
