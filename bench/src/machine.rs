//! What the machine itself did during a scenario: the share of time some task was stalled on I/O
//! (`/proc/pressure/io`) and the share of CPU time the hypervisor stole (`/proc/stat`), so that
//! an outlier on a shared host can be told from a change in the code.

use std::time::Instant;

pub struct Machine {
    at: Instant,
    /// Microseconds some task was stalled on I/O, since boot.
    io_stall_us: Option<u64>,
    /// CPU ticks: (stolen, all).
    ticks: Option<(u64, u64)>,
}

impl Machine {
    pub fn now() -> Self {
        Self {
            at: Instant::now(),
            io_stall_us: io_stall_us(),
            ticks: cpu_ticks(),
        }
    }

    /// ", I/O stalled x %, CPU stolen y %" since `self` (what /proc tells of it).
    pub fn since(&self) -> String {
        let mut out = String::new();
        let elapsed_us = self.at.elapsed().as_micros() as f64;
        if let (Some(before), Some(after)) = (self.io_stall_us, io_stall_us()) {
            if elapsed_us > 0.0 {
                let share = after.saturating_sub(before) as f64 / elapsed_us * 100.0;
                out.push_str(&format!("; I/O stalled {share:.1} %"));
            }
        }
        if let (Some((s0, t0)), Some((s1, t1))) = (self.ticks, cpu_ticks()) {
            if t1 > t0 {
                let share = s1.saturating_sub(s0) as f64 / (t1 - t0) as f64 * 100.0;
                out.push_str(&format!(", CPU stolen {share:.0} %"));
            }
        }
        out
    }
}

/// `total=` of the `some` line of `/proc/pressure/io` (Linux 4.20 and later, with PSI on).
fn io_stall_us() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/pressure/io").ok()?;
    let some = text.lines().find(|l| l.starts_with("some"))?;
    some.split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

/// (steal, all) of the `cpu` line of `/proc/stat`: user, nice, system, idle, iowait, irq,
/// softirq, steal (guest time is counted in user already).
fn cpu_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    (v.len() == 8).then(|| (v[7], v.iter().sum()))
}
