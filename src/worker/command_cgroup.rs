//! cgroup v2 memory limits for command tasks. RLIMIT_AS limits each process's address space,
//! which a program that maps much and touches little trips early and a task of many processes
//! escapes; a cgroup's `memory.max` limits what the whole task actually uses, and the kernel
//! says in `memory.events` when it killed the task for it. It needs a cgroup v2 hierarchy
//! delegated to the worker's user with the memory controller: the worker's own cgroup (it moves
//! itself into a leaf of it, since a cgroup that holds processes cannot enable controllers for
//! children) or a directory given with `--cgroup-dir`. Each task gets a cgroup of its own, which
//! its limited-run step joins before the program starts, and which is removed afterwards.
//! Without such a hierarchy, or when a task's cgroup cannot be made, RLIMIT_AS applies.

use std::io;
use std::path::{Path, PathBuf};

/// Where the unified (v2) hierarchy is mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How a task's memory was limited, as its result says.
pub const LIMIT_CGROUP: &str = "cgroup";
/// How a task's memory was limited when no cgroup could be used.
pub const LIMIT_ADDRESS_SPACE: &str = "rlimit_as";

/// A delegated cgroup v2 directory with the memory controller enabled for its children: task
/// cgroups are made in it.
#[derive(Clone, Debug)]
pub struct CgroupParent {
    dir: PathBuf,
}

impl CgroupParent {
    /// The parent for task cgroups: `dir` when given, else one under the worker's own cgroup.
    /// `Err` says why none can be used (the worker then limits memory with RLIMIT_AS).
    pub fn find(dir: Option<&Path>, worker: &str) -> Result<CgroupParent, String> {
        match dir {
            Some(dir) => Self::prepare(dir.to_path_buf()),
            None => Self::prepare(own_cgroup()?.join(format!("gridwatch-{worker}"))),
        }
    }

    /// Makes `dir` a parent of task cgroups: made if missing, holding no process itself, the
    /// memory controller enabled for its children.
    fn prepare(dir: PathBuf) -> Result<CgroupParent, String> {
        let shown = dir.display().to_string();
        let parent = dir.parent().ok_or("a cgroup directory has a parent")?;
        if !has_controller(parent, "cgroup.controllers", "memory")
            && !has_controller(&dir, "cgroup.controllers", "memory")
        {
            return Err(format!(
                "{shown}: no cgroup v2 memory controller is delegated there"
            ));
        }
        // The worker's own cgroup holds the worker: it moves into a leaf, so that the cgroup
        // above may enable controllers for its children.
        if !dir.exists() {
            let own = own_cgroup()?;
            if parent == own {
                enable_memory(&own).or_else(|_| {
                    let leaf = own.join("gridwatch-leaf");
                    make_dir(&leaf)?;
                    std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
                        .map_err(|e| format!("{}: cannot move the worker: {e}", leaf.display()))?;
                    enable_memory(&own)
                })?;
            }
            make_dir(&dir)?;
        }
        enable_memory(&dir)?;
        Ok(CgroupParent { dir })
    }

    /// A fresh cgroup for one task, its memory limited to `memory_bytes` (swap included, so the
    /// limit is not met by swapping).
    pub fn task(&self, memory_bytes: u64) -> io::Result<TaskCgroup> {
        let dir = self
            .dir
            .join(format!("task-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir)?;
        let cgroup = TaskCgroup { dir };
        std::fs::write(cgroup.dir.join("memory.max"), memory_bytes.to_string())?;
        // Absent when the kernel has no swap accounting: nothing to limit then.
        let swap = cgroup.dir.join("memory.swap.max");
        if swap.exists() {
            std::fs::write(swap, "0")?;
        }
        Ok(cgroup)
    }
}

/// One task's cgroup; removed when dropped (its processes are killed first).
#[derive(Debug)]
pub struct TaskCgroup {
    dir: PathBuf,
}

impl TaskCgroup {
    /// The file the task's first process writes its pid to, to join the cgroup.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// How many times the kernel killed a process of the task for exceeding the limit.
    pub fn oom_kills(&self) -> u64 {
        let events = std::fs::read_to_string(self.dir.join("memory.events")).unwrap_or_default();
        oom_kills(&events)
    }

    /// The task's peak memory use in KiB, where the kernel records it (`memory.peak`).
    pub fn peak_kib(&self) -> Option<u64> {
        let peak = std::fs::read_to_string(self.dir.join("memory.peak")).ok()?;
        Some(peak.trim().parse::<u64>().ok()? / 1024)
    }
}

impl Drop for TaskCgroup {
    fn drop(&mut self) {
        // A process that left the task's process group is still in its cgroup: end it too.
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
        for _ in 0..50 {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return,
                // The killed processes leave the cgroup as the kernel reaps them.
                Err(err) if err.raw_os_error() == Some(nix::libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(_) => break,
            }
        }
        tracing::warn!(component = "worker", cgroup = %self.dir.display(), "a task's cgroup could not be removed");
    }
}

/// The `oom_kill` count of a `memory.events` file.
pub fn oom_kills(events: &str) -> u64 {
    events
        .lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

/// The directory of this process's cgroup in the unified hierarchy.
fn own_cgroup() -> Result<PathBuf, String> {
    let root = Path::new(CGROUP_ROOT);
    if !root.join("cgroup.controllers").exists() {
        return Err(format!("{CGROUP_ROOT} is not a cgroup v2 hierarchy"));
    }
    let table = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let path = table
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or("this process is in no cgroup v2")?;
    Ok(root.join(path.trim_start_matches('/')))
}

/// Whether the cgroup file `file` of `dir` lists `controller`.
fn has_controller(dir: &Path, file: &str, controller: &str) -> bool {
    std::fs::read_to_string(dir.join(file))
        .is_ok_and(|text| text.split_whitespace().any(|name| name == controller))
}

/// Enables the memory controller for `dir`'s children.
fn enable_memory(dir: &Path) -> Result<(), String> {
    if has_controller(dir, "cgroup.subtree_control", "memory") {
        return Ok(());
    }
    std::fs::write(dir.join("cgroup.subtree_control"), "+memory").map_err(|e| {
        format!(
            "{}: cannot enable the memory controller: {e}",
            dir.display()
        )
    })
}

fn make_dir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(format!("{}: {err}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oom_kill_count_is_read_from_memory_events() {
        let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kills(events), 1);
        assert_eq!(oom_kills("low 0\n"), 0);
    }
}
