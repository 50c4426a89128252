//! What Linux's `/proc` says about a process: its state, process group, CPU time, start and
//! resident memory, and the same summed over a process group. One parser for `/proc/PID/stat`,
//! whose command name (in parentheses) may hold spaces and parentheses: its fields are counted
//! after the last `)`. Off Linux every reading is `None`.

/// Units of the times in `/proc/PID/stat`: the kernel reports them in USER_HZ, which Linux fixes
/// at 100 for user space on every architecture it supports.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// A process's line of `/proc/PID/stat`, the fields gridwatch reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcStat {
    /// The state letter: `R`, `S`, `D`, `T`, `Z` (exited, not yet reaped), `X` (dead), ...
    pub state: char,
    /// The process group it belongs to.
    pub process_group: u32,
    /// User plus system CPU time so far, in seconds.
    pub cpu_seconds: f64,
    /// When the process started, in seconds after the host booted.
    pub started_after_boot_secs: f64,
}

impl ProcStat {
    /// Parses one `/proc/PID/stat` line.
    pub fn parse(line: &str) -> Option<Self> {
        let after_name = line.get(line.rfind(')')? + 1..)?;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Numbered from the state (field 3 of the whole line): pgrp is field 5, utime 14, stime
        // 15 and starttime 22.
        let field = |number: usize| fields.get(number - 3).copied();
        let ticks = |number: usize| field(number)?.parse::<u64>().ok();
        Some(Self {
            state: field(3)?.chars().next()?,
            process_group: field(5)?.parse().ok()?,
            cpu_seconds: (ticks(14)? + ticks(15)?) as f64 / CLOCK_TICKS_PER_SECOND,
            started_after_boot_secs: ticks(22)? as f64 / CLOCK_TICKS_PER_SECOND,
        })
    }

    /// Whether the process has exited (a zombie waiting to be reaped, or dead).
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// The `/proc` directory of `pid`, or of this process.
fn dir(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_string(),
    }
}

/// The stat line of `pid` (this process when `None`); `None` once the process is gone.
pub fn stat(pid: Option<u32>) -> Option<ProcStat> {
    ProcStat::parse(&std::fs::read_to_string(format!("{}/stat", dir(pid))).ok()?)
}

/// Resident memory of `pid` (this process when `None`), bytes.
pub fn resident_bytes(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("{}/status", dir(pid))).ok()?;
    kib_field(&status, "VmRSS:").map(|kib| kib * 1024)
}

/// The value of a `NAME: N kB` line of a `/proc/PID/status` text, KiB.
fn kib_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What a process group uses now, summed over its live members.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GroupUsage {
    /// Live (not exited) members found.
    pub processes: u32,
    /// User plus system CPU time of those members so far, seconds. A member that exited is no
    /// longer counted; its time is in its parent's children times, not here.
    pub cpu_seconds: f64,
    /// Their resident memory, bytes (pages shared between members count once per member, as
    /// `ps` and `top` count them).
    pub resident_bytes: u64,
    /// When the group's leader started, seconds after boot, if the leader still runs.
    pub leader_started_after_boot_secs: Option<f64>,
}

/// Usage of every live process in process group `group`; `None` when none is left (or off
/// Linux).
pub fn group_usage(group: u32) -> Option<GroupUsage> {
    group_usages(&[group]).remove(&group)
}

/// Usage of each of `groups` that still has a live process, read in one pass over the host's
/// processes, so measuring many groups costs one reading of `/proc`.
pub fn group_usages(groups: &[u32]) -> std::collections::HashMap<u32, GroupUsage> {
    let mut usages = std::collections::HashMap::new();
    if groups.is_empty() {
        return usages;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return usages;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(stat) = stat(Some(pid)) else {
            continue;
        };
        if !groups.contains(&stat.process_group) || stat.has_exited() {
            continue;
        }
        let usage: &mut GroupUsage = usages.entry(stat.process_group).or_default();
        usage.processes += 1;
        usage.cpu_seconds += stat.cpu_seconds;
        usage.resident_bytes += resident_bytes(Some(pid)).unwrap_or(0);
        if pid == stat.process_group {
            usage.leader_started_after_boot_secs = Some(stat.started_after_boot_secs);
        }
    }
    usages
}

/// Seconds since the host booted.
pub fn uptime_secs() -> Option<f64> {
    std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time of `pid` in seconds as the scheduler counts it (`/proc/PID/schedstat`, in
/// nanoseconds): another account than the tick-based times of `stat`, so tests check the
/// samplers against it.
#[cfg(test)]
pub(crate) fn scheduler_cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).expect("schedstat");
    let nanos: f64 = text
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .expect("run time");
    nanos / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        // Fields 3.. of a real line, with a name of spaces and a ')'; utime 250, stime 50,
        // starttime 12345 ticks.
        let line = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 \
                    3 0 12345 10000000 300 18446744073709551615";
        let stat = ProcStat::parse(line).expect("parses");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.process_group, 4242);
        assert_eq!(stat.cpu_seconds, 3.0);
        assert_eq!(stat.started_after_boot_secs, 123.45);
        assert!(!stat.has_exited());
        let zombie = line.replace(") S ", ") Z ");
        assert!(ProcStat::parse(&zombie).expect("parses").has_exited());
        assert_eq!(ProcStat::parse("4242 (cut"), None);
        assert_eq!(ProcStat::parse("4242 (x) S 1 2"), None);
    }

    #[test]
    fn this_process_is_read_and_agrees_with_its_status_file() {
        let own = stat(None).expect("linux /proc");
        assert!("RSD".contains(own.state), "a live process: {}", own.state);
        let rss = resident_bytes(None).expect("VmRSS");
        assert!(rss > 1024 * 1024, "{rss}");
        let pid = std::process::id();
        let by_pid = stat(Some(pid)).expect("by pid");
        assert_eq!(by_pid.started_after_boot_secs, own.started_after_boot_secs);
        assert!(own.started_after_boot_secs <= uptime_secs().expect("uptime"));
    }

    #[test]
    fn a_group_sums_its_members_memory_and_cpu() {
        use std::os::unix::process::CommandExt;
        // A shell leading its own group, with two children holding memory of their own.
        let mut leader = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .expect("spawn a group");
        let group = leader.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let usage = loop {
            let usage = group_usage(group).expect("the group runs");
            if usage.processes == 3 || std::time::Instant::now() > deadline {
                break usage;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        // The reference: each member's own status file, summed by hand.
        let by_hand: u64 = [group]
            .into_iter()
            .chain(children_of(group))
            .map(|pid| resident_bytes(Some(pid)).expect("member runs"))
            .sum();
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(group as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = leader.wait();
        assert_eq!(usage.processes, 3, "{usage:?}");
        assert!(usage.resident_bytes > 0 && usage.cpu_seconds >= 0.0);
        let (low, high) = (by_hand / 2, by_hand * 2);
        assert!(
            (low..=high).contains(&usage.resident_bytes),
            "{usage:?} against {by_hand} summed by hand"
        );
        assert!(usage.leader_started_after_boot_secs.is_some());
        // The killed children die a moment after the leader is reaped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while group_usage(group).is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "a group with no one left"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Children of `pid`, from `/proc/PID/task/PID/children`.
    fn children_of(pid: u32) -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}
