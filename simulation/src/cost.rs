//! What a run costs: network counters from `SimNetwork`, CPU time and
//! resident memory of the whole process from /proc (all nodes share the
//! process, so CPU and memory are divided by the node count).

use crate::report::{Cost, NodeCost};
use crate::stats::HostStats;

/// Process CPU and memory at one instant (`None` where /proc is missing).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    pub cpu_secs: Option<f64>,
    pub rss_mib: Option<f64>,
    pub peak_rss_mib: Option<f64>,
}

impl ProcSample {
    pub fn now() -> ProcSample {
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let kib = |key: &str| status.as_deref().and_then(|s| status_kib(s, key));
        ProcSample {
            cpu_secs: std::fs::read_to_string("/proc/self/stat")
                .ok()
                .and_then(|s| stat_cpu_ticks(&s))
                .map(|ticks| ticks as f64 / clock_ticks_per_sec()),
            rss_mib: kib("VmRSS:").map(|k| k / 1024.0),
            peak_rss_mib: kib("VmHWM:").map(|k| k / 1024.0),
        }
    }
}

/// utime + stime (fields 14 and 15) of /proc/self/stat, in clock ticks.
/// Fields are counted after the last ')': the command name may contain
/// spaces and parentheses.
pub(crate) fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field k is at index k - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `Key:   1234 kB` line of /proc/self/status, in KiB.
pub(crate) fn status_kib(status: &str, key: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf reads a constant of the running system; no pointers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // USER_HZ is 100 on every Linux we know of; sysconf only fails on
    // systems without it.
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// Cost over a window of `secs` from counter snapshots taken at its start
/// and end (the first `nodes` hosts).
pub(crate) fn cost(
    start: &[HostStats],
    end: &[HostStats],
    secs: f64,
    proc_start: ProcSample,
    proc_end: ProcSample,
    nodes: usize,
) -> Cost {
    let secs_div = secs.max(1e-9);
    let per_node: Vec<NodeCost> = end
        .iter()
        .zip(start)
        .take(nodes)
        .enumerate()
        .map(|(node, (e, s))| {
            let d = e.since(s);
            NodeCost {
                node,
                bytes_sent_per_sec: d.bytes_sent as f64 / secs_div,
                bytes_received_per_sec: d.bytes_received as f64 / secs_div,
                chunks_sent_per_sec: d.chunks_sent as f64 / secs_div,
                chunks_received_per_sec: d.chunks_received as f64 / secs_div,
                connections_opened: d.connections_opened,
            }
        })
        .collect();
    let k = per_node.len().max(1) as f64;
    let mean = NodeCost {
        node: 0,
        bytes_sent_per_sec: per_node.iter().map(|c| c.bytes_sent_per_sec).sum::<f64>() / k,
        bytes_received_per_sec: per_node
            .iter()
            .map(|c| c.bytes_received_per_sec)
            .sum::<f64>()
            / k,
        chunks_sent_per_sec: per_node.iter().map(|c| c.chunks_sent_per_sec).sum::<f64>() / k,
        chunks_received_per_sec: per_node
            .iter()
            .map(|c| c.chunks_received_per_sec)
            .sum::<f64>()
            / k,
        connections_opened: per_node.iter().map(|c| c.connections_opened).sum::<u64>() / k as u64,
    };
    let n = nodes.max(1) as f64;
    let cpu = proc_end
        .cpu_secs
        .zip(proc_start.cpu_secs)
        .map(|(e, s)| (e - s).max(0.0));
    Cost {
        window_secs: secs,
        max_bytes_sent_per_sec: per_node
            .iter()
            .map(|c| c.bytes_sent_per_sec)
            .fold(0.0, f64::max),
        per_node,
        mean,
        cpu_secs: cpu,
        cpu_secs_per_node: cpu.map(|c| c / n),
        cpu_cores: cpu.map(|c| c / secs_div),
        rss_start_mib: proc_start.rss_mib,
        rss_end_mib: proc_end.rss_mib,
        rss_peak_mib: proc_end.peak_rss_mib,
        rss_per_node_mib: proc_end
            .rss_mib
            .zip(proc_start.rss_mib)
            .map(|(e, s)| (e - s) / n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        let stat = "1234 (tokio (rt) x) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 8 0";
        assert_eq!(stat_cpu_ticks(stat), Some(300));
        assert_eq!(stat_cpu_ticks("garbage"), None);
        let status = "Name:\tx\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10240.0));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        let now = ProcSample::now();
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(now.cpu_secs.is_some() && now.rss_mib.is_some());
        }
    }
}
