//! System metrics for reports: host CPU, memory and disk use, and the worker process's own CPU and
//! resident memory, sampled with `sysinfo`. CPU percentages are averages since the previous sample.
//!
//! The worker's CPU share is read from `/proc/PID/stat` (user and system time) rather than from
//! sysinfo, which on Linux computes a process's share only while refreshing every process on the
//! host, and otherwise reports 0.
//!
//! The CPU of every grid worker on the host (this binary run as `worker`) is measured too, so CPU
//! pressure can be judged without the grid's own work: a grid must not pause itself for working.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use std::os::unix::ffi::OsStrExt;

use sysinfo::{Disks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

const MIB: f64 = 1024.0 * 1024.0;

/// One sample of host and worker-process metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Host CPU use, percent of all cores.
    pub cpu_percent: f64,
    /// Host memory in use (total minus available), MiB.
    pub memory_mb: f64,
    /// Host memory in use, percent of total.
    pub memory_percent: f64,
    /// Use of the disk holding `disk_path`, percent.
    pub disk_percent: f64,
    /// The process's CPU use, percent of one core (None without a pid, or once it is gone).
    pub process_cpu_percent: Option<f64>,
    /// The process's resident memory, MiB.
    pub process_rss_mb: Option<f64>,
    /// CPU use of every grid worker process on the host, percent of all cores (None on the
    /// first sample, which has nothing to compare with).
    pub grid_cpu_percent: Option<f64>,
}

/// Keeps the `sysinfo` state between samples (CPU use is a difference of two readings).
pub struct Sampler {
    system: System,
    disks: Disks,
    disk_path: PathBuf,
    /// The worker's CPU time at the previous sample: (pid, seconds, when read).
    last_cpu: Option<(u32, f64, Instant)>,
    /// The grid's worker processes on this host and their CPU time at the previous sample.
    grid: GridCpu,
}

impl Sampler {
    /// A sampler reporting the disk that holds `disk_path`.
    pub fn new(disk_path: &Path) -> Sampler {
        let mut system = System::new();
        system.refresh_cpu_usage();
        system.refresh_memory();
        Sampler {
            system,
            disks: Disks::new_with_refreshed_list(),
            disk_path: disk_path.to_path_buf(),
            last_cpu: None,
            grid: GridCpu::default(),
        }
    }

    /// Samples now; `pid` is the worker process, if known.
    pub fn sample(&mut self, pid: Option<u32>) -> Sample {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let total = self.system.total_memory() as f64;
        let used = total - self.system.available_memory() as f64;
        let process = pid.and_then(|pid| self.process(pid));
        Sample {
            cpu_percent: f64::from(self.system.global_cpu_usage()),
            memory_mb: used / MIB,
            memory_percent: if total > 0.0 {
                100.0 * used / total
            } else {
                0.0
            },
            disk_percent: self.disk_percent(),
            process_cpu_percent: process.map(|(cpu, _)| cpu),
            process_rss_mb: process.map(|(_, rss)| rss),
            grid_cpu_percent: self.grid.sample(self.system.cpus().len().max(1)),
        }
    }

    fn process(&mut self, pid: u32) -> Option<(f64, f64)> {
        let handle = Pid::from_u32(pid);
        let kind = ProcessRefreshKind::new().with_memory();
        self.system
            .refresh_processes_specifics(ProcessesToUpdate::Some(&[handle]), true, kind);
        let rss = self.system.process(handle)?.memory() as f64 / MIB;
        let (seconds, now) = (process_cpu_seconds(pid)?, Instant::now());
        let share = match self.last_cpu {
            Some((last_pid, last_seconds, at)) if last_pid == pid => {
                let elapsed = now.duration_since(at).as_secs_f64();
                if elapsed > 0.0 {
                    100.0 * (seconds - last_seconds).max(0.0) / elapsed
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        self.last_cpu = Some((pid, seconds, now));
        Some((share, rss))
    }

    /// Percent used of the disk whose mount point is the longest prefix of the disk path.
    fn disk_percent(&mut self) -> f64 {
        self.disks.refresh();
        let path =
            std::fs::canonicalize(&self.disk_path).unwrap_or_else(|_| self.disk_path.clone());
        self.disks
            .list()
            .iter()
            .filter(|disk| path.starts_with(disk.mount_point()))
            .max_by_key(|disk| disk.mount_point().as_os_str().len())
            .filter(|disk| disk.total_space() > 0)
            .map(|disk| {
                let total = disk.total_space() as f64;
                100.0 * (total - disk.available_space() as f64) / total
            })
            .unwrap_or(0.0)
    }
}

/// CPU time of the grid's worker processes on this host, between two samples.
#[derive(Debug, Default)]
struct GridCpu {
    /// Each worker pid's CPU seconds at the previous sample, and when that sample was.
    last: Option<(HashMap<u32, f64>, Instant)>,
}

impl GridCpu {
    /// Percent of all `cores` the grid's workers used since the previous call.
    fn sample(&mut self, cores: usize) -> Option<f64> {
        let now = Instant::now();
        let seconds: HashMap<u32, f64> = grid_worker_pids()
            .into_iter()
            .filter_map(|pid| Some((pid, process_cpu_seconds(pid)?)))
            .collect();
        let share = self.last.as_ref().and_then(|(before, at)| {
            let elapsed = now.duration_since(*at).as_secs_f64();
            // A worker that started since the last sample counts from zero: its whole CPU time
            // fell inside the interval, or close enough for a pressure judgement.
            let used: f64 = seconds
                .iter()
                .map(|(pid, now)| (now - before.get(pid).copied().unwrap_or(0.0)).max(0.0))
                .sum();
            (elapsed > 0.0).then(|| (100.0 * used / elapsed / cores as f64).min(100.0))
        });
        self.last = Some((seconds, now));
        share
    }
}

/// Pids of the processes on this host that run this program as `worker`.
fn grid_worker_pids() -> Vec<u32> {
    let Some(program) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_name().map(|name| name.to_owned()))
    else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // argv is NUL-separated; a worker is `PROGRAM worker …`.
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let mut argv = cmdline.split(|b| *b == 0);
            let name_matches = argv.next().is_some_and(|arg0| {
                Path::new(std::ffi::OsStr::from_bytes(arg0)).file_name()
                    == Some(program.as_os_str())
            });
            name_matches && argv.next() == Some(b"worker".as_slice())
        })
        .collect()
}

/// User plus system CPU time of `pid` so far, in seconds; `None` once the process is gone.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    crate::procfs::stat(Some(pid)).map(|stat| stat.cpu_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::scheduler_cpu_seconds;

    /// Resident memory of this process from /proc, MiB: the reference the sampler must agree with.
    fn proc_rss_mb() -> f64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS line");
        let kib: f64 = line
            .split_whitespace()
            .nth(1)
            .expect("value")
            .parse()
            .expect("number");
        kib / 1024.0
    }

    #[test]
    fn sample_agrees_with_procfs_for_this_process() {
        let mut sampler = Sampler::new(Path::new("."));
        let sample = sampler.sample(Some(std::process::id()));
        assert!(
            sample.memory_percent > 0.0 && sample.memory_percent <= 100.0,
            "{sample:?}"
        );
        assert!(sample.memory_mb > 0.0);
        assert!(
            sample.disk_percent > 0.0 && sample.disk_percent <= 100.0,
            "{sample:?}"
        );
        let rss = sample.process_rss_mb.expect("this process exists");
        let reference = proc_rss_mb();
        assert!(
            rss > reference * 0.5 && rss < reference * 2.0,
            "rss {rss} vs procfs {reference}"
        );
    }

    #[test]
    fn a_missing_process_has_no_process_metrics() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("reap");
        let sample = Sampler::new(Path::new(".")).sample(Some(pid));
        assert_eq!(
            (sample.process_cpu_percent, sample.process_rss_mb),
            (None, None)
        );
    }

    #[test]
    fn a_busy_process_shows_the_cpu_share_the_scheduler_counts() {
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("spawn a busy loop");
        let pid = busy.id();
        let mut sampler = Sampler::new(Path::new("."));
        sampler.sample(Some(pid));
        let (cpu_before, started) = (scheduler_cpu_seconds(pid), std::time::Instant::now());
        // CPU use is a rate: it takes two readings some time apart, here and in the agent.
        std::thread::sleep(std::time::Duration::from_millis(600));
        let sample = sampler.sample(Some(pid));
        let reference =
            100.0 * (scheduler_cpu_seconds(pid) - cpu_before) / started.elapsed().as_secs_f64();
        let _ = busy.kill();
        let _ = busy.wait();
        let cpu = sample.process_cpu_percent.expect("the loop runs");
        assert!(reference > 5.0, "the loop got {reference:.1} % of a core");
        assert!(
            cpu > reference / 3.0 && cpu < reference * 3.0 + 10.0,
            "sampler {cpu:.1} % against the scheduler's {reference:.1} %"
        );
    }
}
