//! Where connections go and where they come from: the server address parsed from `--url`, and
//! the round-robin of loopback source addresses (each gives ~28K ephemeral ports).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context};
use tokio::net::{TcpSocket, TcpStream};

/// An `http://host:port` server.
#[derive(Debug, Clone)]
pub struct Server {
    pub addr: SocketAddr,
    /// The `Host` header value.
    pub host: String,
}

impl Server {
    pub async fn parse(url: &str) -> anyhow::Result<Server> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url}: only http:// URLs are supported"))?;
        let host = rest.split('/').next().unwrap_or_default().to_string();
        if host.is_empty() {
            bail!("{url}: no host");
        }
        let with_port = if host.contains(':') {
            host.clone()
        } else {
            format!("{host}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .with_context(|| format!("cannot resolve {with_port}"))?
            .next()
            .with_context(|| format!("{with_port} resolves to nothing"))?;
        Ok(Server { addr, host })
    }
}

/// Source addresses handed out in turn.
#[derive(Debug)]
pub struct Sources {
    ips: Vec<IpAddr>,
    next: AtomicUsize,
}

impl Sources {
    /// `127.0.0.2-127.0.0.20`, a comma list, or empty (let the kernel choose).
    pub fn parse(spec: &str) -> anyhow::Result<Sources> {
        let mut ips = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => {
                    let a: Ipv4Addr = a.parse().with_context(|| format!("bad address {a}"))?;
                    let b: Ipv4Addr = b.parse().with_context(|| format!("bad address {b}"))?;
                    if u32::from(a) > u32::from(b) {
                        bail!("empty address range {part}");
                    }
                    ips.extend((u32::from(a)..=u32::from(b)).map(|v| IpAddr::V4(v.into())));
                }
                None => ips.push(
                    part.parse()
                        .with_context(|| format!("bad address {part}"))?,
                ),
            }
        }
        Ok(Sources {
            ips,
            next: AtomicUsize::new(0),
        })
    }

    pub fn next(&self) -> Option<IpAddr> {
        if self.ips.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        Some(self.ips[i % self.ips.len()])
    }
}

/// Connects to `to` from `from` (port chosen by the kernel), with Nagle off.
pub async fn connect(to: SocketAddr, from: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_source_ranges() {
        let s = Sources::parse("127.0.0.2-127.0.0.4, 127.0.0.9").unwrap();
        assert_eq!(s.ips.len(), 4);
        let got: Vec<_> = (0..5).map(|_| s.next().unwrap().to_string()).collect();
        assert_eq!(
            got,
            [
                "127.0.0.2",
                "127.0.0.3",
                "127.0.0.4",
                "127.0.0.9",
                "127.0.0.2"
            ]
        );
        assert!(Sources::parse("").unwrap().next().is_none());
        assert!(Sources::parse("127.0.0.5-127.0.0.1").is_err());
    }
}
