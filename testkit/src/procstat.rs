//! CPU time and resident memory of a process, from /proc.

pub struct Sample {
    pub cpu_seconds: f64,
    pub rss_mb: f64,
    pub peak_rss_mb: f64,
}

/// The process and all its descendants, summed (`spin up` serves from a
/// child process).
pub fn sample_tree(pid: u32) -> Sample {
    let mut total = sample(pid);
    for child in children(pid) {
        let s = sample_tree(child);
        total.cpu_seconds += s.cpu_seconds;
        total.rss_mb += s.rss_mb;
        total.peak_rss_mb += s.peak_rss_mb;
    }
    total
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

pub fn sample(pid: u32) -> Sample {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at ")".
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based), 11 and 12 after ")".
    let cpu_seconds = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Sample { cpu_seconds, rss_mb: kb("VmRSS:") / 1024.0, peak_rss_mb: kb("VmHWM:") / 1024.0 }
}

/// A process's memory as the kernel accounts it (`/proc/PID/smaps_rollup`),
/// in MB. `rss` counts a page once per mapping, so pages that many wasm
/// instances map from one memory image count many times; `pss` divides
/// each page among its mappings (what the process really costs); `private`
/// is what only this process holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_mb: f64,
    pub pss_mb: f64,
    pub private_mb: f64,
}

pub fn memory(pid: u32) -> Memory {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let kb = |key: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(key))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .sum()
    };
    Memory {
        rss_mb: kb("Rss:") / 1024.0,
        pss_mb: kb("Pss:") / 1024.0,
        private_mb: (kb("Private_Clean:") + kb("Private_Dirty:")) / 1024.0,
    }
}
