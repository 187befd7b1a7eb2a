//! The standard `process_*` series, from prometheus' own collector except
//! `process_cpu_seconds_total`: that one truncates to whole seconds, so a dashboard's
//! `rate()` of an idle or lightly loaded process steps between 0 and 1 core. Here it counts
//! clock ticks (10 ms on Linux).

use prometheus::core::{Collector, Desc};
use prometheus::process_collector::ProcessCollector;
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Opts};

const CPU_SECONDS: &str = "process_cpu_seconds_total";

pub(super) struct ProcessMetrics {
    standard: ProcessCollector,
    cpu: Counter,
}

impl ProcessMetrics {
    pub(super) fn for_self() -> Result<Self, prometheus::Error> {
        let cpu = Counter::with_opts(Opts::new(
            CPU_SECONDS,
            "Total user and system CPU time spent in seconds.",
        ))?;
        Ok(Self {
            standard: ProcessCollector::for_self(),
            cpu,
        })
    }
}

impl Collector for ProcessMetrics {
    /// The standard collector's descriptions already name `process_cpu_seconds_total`.
    fn desc(&self) -> Vec<&Desc> {
        self.standard.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.standard.collect();
        families.retain(|f| f.name() != CPU_SECONDS);
        if let Some(seconds) = cpu_seconds() {
            // Two scrapes at once may both see the new total: add only what is missing.
            let missing = seconds - self.cpu.get();
            if missing > 0.0 {
                self.cpu.inc_by(missing);
            }
            families.extend(self.cpu.collect());
        }
        families
    }
}

/// User and system CPU time of this process so far, to the clock tick.
fn cpu_seconds() -> Option<f64> {
    let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
    let ticks = procfs::ticks_per_second();
    (ticks > 0).then(|| (stat.utime + stat.stime) as f64 / ticks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_are_not_whole_seconds() {
        // Burn a little CPU (on a busy machine wall time says little about CPU time).
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while cpu_seconds().unwrap_or_default() < 0.2
            && started.elapsed() < std::time::Duration::from_secs(20)
        {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let metrics = ProcessMetrics::for_self().unwrap_or_else(|_| unreachable!());
        let families = metrics.collect();
        let cpu = families
            .iter()
            .find(|f| f.name() == CPU_SECONDS)
            .and_then(|f| f.get_metric().first())
            .map(|m| m.get_counter().get_value());
        let seconds = cpu.unwrap_or_default();
        assert!(seconds >= 0.2, "{seconds}");
        // What the kernel says, in ticks (USER_HZ is 100 on Linux), read just after.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        let kernel = (ticks(11).unwrap_or_default() + ticks(12).unwrap_or_default()) / 100.0;
        assert!(
            (kernel - seconds).abs() < 0.05,
            "counted {seconds}, the kernel says {kernel}"
        );
        assert_eq!(
            families.iter().filter(|f| f.name() == CPU_SECONDS).count(),
            1
        );
        assert!(families
            .iter()
            .any(|f| f.name() == "process_resident_memory_bytes"));
    }
}
