//! What the server process costs, read from /proc: CPU seconds (utime + stime) and memory
//! (VmRSS, and Pss, which splits shared pages fairly between nginx's master and workers).
//! A given pid counts together with its direct children, so nginx's master pid covers its workers.

use std::fs;

use serde::Serialize;

/// One reading of the server's processes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Usage {
    pub cpu_secs: f64,
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub processes: usize,
}

/// The server's pids as given on the command line; empty = not measured.
#[derive(Debug, Clone, Default)]
pub struct ServerProcs {
    pids: Vec<u32>,
    ticks_per_sec: f64,
}

impl ServerProcs {
    pub fn new(pids: Vec<u32>) -> ServerProcs {
        ServerProcs {
            pids,
            ticks_per_sec: rustix::param::clock_ticks_per_second() as f64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }

    /// Sums over the given pids and their children alive now; `None` when not measured.
    pub fn read(&self) -> Option<Usage> {
        if self.pids.is_empty() {
            return None;
        }
        let mut all = self.pids.clone();
        all.extend(children_of(&self.pids));
        let mut usage = Usage::default();
        for pid in all {
            if let Some(ticks) = cpu_ticks(pid) {
                usage.cpu_secs += ticks as f64 / self.ticks_per_sec;
                usage.processes += 1;
            }
            usage.rss_kib += status_kib(pid, "VmRSS:").unwrap_or(0);
            usage.pss_kib += rollup_kib(pid, "Pss:").unwrap_or(0);
        }
        Some(usage)
    }
}

/// This process's own CPU seconds, to tell when the load generator itself was the bottleneck.
pub fn self_cpu_secs() -> f64 {
    let ticks = cpu_ticks(std::process::id()).unwrap_or(0);
    ticks as f64 / rustix::param::clock_ticks_per_second() as f64
}

/// Raises the open-file soft limit to the hard limit (streams are one file each).
pub fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// The kernel's count of connections dropped because a listen queue was full (all sockets of
/// this machine: on the benchmark box, the server under test). A burst of connects beyond the
/// server's accept backlog shows here, and costs each dropped client a 1 s SYN retransmit.
pub fn listen_overflows() -> Option<u64> {
    let text = fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let at = names
            .split_whitespace()
            .position(|n| n == "ListenOverflows")?;
        return values.split_whitespace().nth(at)?.parse().ok();
    }
    None
}

/// `/proc/PID/stat` fields after the command name: state is field 3, utime 14, stime 15.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    // after ")": index 0 is field 3 (state), so field N is index N - 3.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn children_of(parents: &[u32]) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            stat_fields(pid)
                .and_then(|f| f.get(1)?.parse::<u32>().ok())
                .is_some_and(|ppid| parents.contains(&ppid) && !parents.contains(&pid))
        })
        .collect()
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    kib_line(
        &fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        key,
    )
}

fn rollup_kib(pid: u32, key: &str) -> Option<u64> {
    kib_line(
        &fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?,
        key,
    )
}

fn kib_line(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let procs = ServerProcs::new(vec![std::process::id()]);
        let u = procs.read().unwrap();
        assert!(u.rss_kib > 0);
        assert!(u.processes >= 1);
        assert!(ServerProcs::new(Vec::new()).read().is_none());
    }

    #[test]
    fn reads_listen_overflows() {
        assert!(listen_overflows().is_some());
    }

    #[test]
    fn finds_kib_lines() {
        assert_eq!(
            kib_line("Name:\tx\nVmRSS:\t  1234 kB\n", "VmRSS:"),
            Some(1234)
        );
        assert_eq!(kib_line("Name:\tx\n", "VmRSS:"), None);
    }
}
