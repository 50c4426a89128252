//! What each task the worker runs uses: for a command task, the CPU and resident memory of its
//! whole process group (the child leads a group of its own, so whatever the program starts is
//! counted with it), read from `/proc`. A task that runs inside the worker process (search,
//! Julia, particles) is listed without figures: its use is the worker process's own.
//!
//! CPU is a rate, so each group's CPU time is kept from one report to the next; on a group's
//! first report it is the average since its leader started, so a task shows its use at once.

use std::collections::HashMap;
use std::time::Instant;

use crate::procfs::{self, GroupUsage};
use crate::protocol::{RunningTask, TaskUsage};

const MIB: f64 = 1024.0 * 1024.0;

/// Each measured group's CPU seconds at the previous report, and when it was read.
#[derive(Debug, Default)]
pub struct TaskSampler {
    last: HashMap<u32, (f64, Instant)>,
}

impl TaskSampler {
    /// Measures every task in `running`; groups no longer running are forgotten.
    pub fn sample(&mut self, running: &[RunningTask]) -> Vec<TaskUsage> {
        let now = Instant::now();
        let groups: Vec<u32> = running.iter().filter_map(|task| task.pid).collect();
        let measured = procfs::group_usages(&groups);
        let mut seen = HashMap::new();
        let usages = running
            .iter()
            .map(|task| {
                let usage = task.pid.and_then(|group| measured.get(&group).copied());
                let cpu_percent = match (task.pid, usage) {
                    (Some(group), Some(usage)) => {
                        let share = self.cpu_share(group, &usage, now);
                        seen.insert(group, (usage.cpu_seconds, now));
                        share
                    }
                    _ => None,
                };
                TaskUsage {
                    task: task.task.clone(),
                    pid: task.pid,
                    cpu_percent,
                    rss_mb: usage.map(|u| u.resident_bytes as f64 / MIB),
                    processes: usage.map(|u| u.processes),
                }
            })
            .collect();
        self.last = seen;
        usages
    }

    /// Percent of one core the group used since the previous report, or since its leader
    /// started when this is its first.
    fn cpu_share(&self, group: u32, usage: &GroupUsage, now: Instant) -> Option<f64> {
        let (used, elapsed) = match self.last.get(&group) {
            Some((seconds, at)) => (
                // A member that exited takes its time with it: never a negative share.
                (usage.cpu_seconds - seconds).max(0.0),
                now.duration_since(*at).as_secs_f64(),
            ),
            None => (
                usage.cpu_seconds,
                procfs::uptime_secs()? - usage.leader_started_after_boot_secs?,
            ),
        };
        (elapsed > 0.0).then(|| 100.0 * used / elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::scheduler_cpu_seconds;
    use std::os::unix::process::CommandExt;
    use std::time::Duration;

    #[test]
    fn a_busy_group_shows_the_cpu_its_processes_use_and_an_inside_task_no_figures() {
        // The busy loop is a child of the group's leader, not the leader itself.
        let mut leader = std::process::Command::new("sh")
            .args(["-c", "sh -c 'while :; do :; done' & wait"])
            .process_group(0)
            .spawn()
            .expect("spawn a busy group");
        let group = leader.id();
        let running = [
            RunningTask {
                task: "j/0".into(),
                pid: Some(group),
            },
            RunningTask {
                task: "j/1".into(),
                pid: None,
            },
        ];
        let mut sampler = TaskSampler::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        let busy = loop {
            let children = std::fs::read_to_string(format!("/proc/{group}/task/{group}/children"))
                .unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                break pid.parse::<u32>().expect("a pid");
            }
            assert!(Instant::now() < deadline, "the loop never started");
            std::thread::sleep(Duration::from_millis(10));
        };
        sampler.sample(&running);
        let (before, started) = (scheduler_cpu_seconds(busy), Instant::now());
        std::thread::sleep(Duration::from_millis(600));
        let usages = sampler.sample(&running);
        let reference =
            100.0 * (scheduler_cpu_seconds(busy) - before) / started.elapsed().as_secs_f64();
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(group as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = leader.wait();
        assert_eq!(usages.len(), 2);
        let cpu = usages[0].cpu_percent.expect("the group runs");
        assert!(reference > 5.0, "the loop got {reference:.1} % of a core");
        assert!(
            cpu > reference / 3.0 && cpu < reference * 3.0 + 10.0,
            "sampler {cpu:.1} % against the scheduler's {reference:.1} %"
        );
        assert_eq!(usages[0].processes, Some(2), "{usages:?}");
        assert!(usages[0].rss_mb.is_some_and(|mb| mb > 0.0));
        assert_eq!(
            (
                usages[1].task.as_str(),
                usages[1].cpu_percent,
                usages[1].rss_mb
            ),
            ("j/1", None, None)
        );
    }
}
