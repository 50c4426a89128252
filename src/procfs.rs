//! What Linux's `/proc` says about a process: its state, CPU time, start and resident memory.
//! One parser for `/proc/PID/stat`, whose command name (in parentheses) may hold spaces and
//! parentheses: its fields are counted after the last `)`. Off Linux every reading is `None`.

/// Units of the times in `/proc/PID/stat`: the kernel reports them in USER_HZ, which Linux fixes
/// at 100 for user space on every architecture it supports.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// A process's line of `/proc/PID/stat`, the fields gridwatch reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcStat {
    /// The state letter: `R`, `S`, `D`, `T`, `Z` (exited, not yet reaped), `X` (dead), ...
    pub state: char,
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
        // Numbered from the state (field 3 of the whole line): utime is field 14, stime 15 and
        // starttime 22.
        let field = |number: usize| fields.get(number - 3).copied();
        let ticks = |number: usize| field(number)?.parse::<u64>().ok();
        Some(Self {
            state: field(3)?.chars().next()?,
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

/// Seconds since the host booted.
pub fn uptime_secs() -> Option<f64> {
    std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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
}
