//! Readings taken over a run (server CPU and memory at named moments) and the output: one JSON
//! object on stdout, a few human lines on stderr.

use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::procfs::{self_cpu_secs, ServerProcs, Usage};

/// The server's usage at named moments.
pub struct Watch {
    procs: ServerProcs,
    marks: Vec<(&'static str, Usage, Instant)>,
}

impl Watch {
    pub fn new(pids: Vec<u32>) -> Watch {
        Watch {
            procs: ServerProcs::new(pids),
            marks: Vec::new(),
        }
    }

    pub fn mark(&mut self, name: &'static str) -> Option<Usage> {
        let u = self.procs.read()?;
        self.marks.push((name, u, Instant::now()));
        Some(u)
    }

    pub fn get(&self, name: &str) -> Option<(Usage, Instant)> {
        self.marks
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, u, t)| (*u, *t))
    }

    /// CPU seconds the server used between two marks, and that per minute of wall time.
    pub fn cpu_between(&self, from: &str, to: &str) -> Option<(f64, f64)> {
        let (a, ta) = self.get(from)?;
        let (b, tb) = self.get(to)?;
        let secs = b.cpu_secs - a.cpu_secs;
        let wall = tb.duration_since(ta).as_secs_f64().max(1e-9);
        Some((secs, secs / wall * 60.0))
    }

    pub fn json(&self) -> Value {
        if self.procs.is_empty() {
            return Value::Null;
        }
        let marks: Map<String, Value> = self
            .marks
            .iter()
            .map(|(n, u, _)| (n.to_string(), json!(u)))
            .collect();
        json!({ "marks": marks })
    }
}

/// Prints the report: JSON on stdout (with the load generator's own CPU), `summary` on stderr.
pub fn emit(mut report: Value, summary: &str) {
    if let Some(obj) = report.as_object_mut() {
        obj.insert("loadgen_cpu_secs".into(), json!(round3(self_cpu_secs())));
    }
    println!("{report}");
    eprintln!("{summary}");
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

pub fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        round3(n as f64 / secs)
    } else {
        0.0
    }
}
