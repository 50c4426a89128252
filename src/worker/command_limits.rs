//! Kernel limits on a command task's processes (address space, open files, processes). The
//! limits must hold from the program's first instruction, and setting them on another process
//! after it starts leaves a window; so the task is started as the worker's own binary with a
//! hidden first argument, which sets the limits on itself and then executes the program in its
//! place: the same process (pid, process group, environment, directory), limits already set, and
//! every process the program starts inherits them. The same step asks the kernel to SIGKILL the
//! program when the worker dies (`PR_SET_PDEATHSIG`), so a worker killed with SIGKILL leaves no
//! task behind running unwatched (processes the program started itself are its own to end).
//! Where the worker limits memory with a cgroup, the same step joins the task's cgroup.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

use nix::sys::resource::{setrlimit, Resource};

use crate::jobs::command::TaskLimits;

/// The hidden first argument that makes the binary set limits and execute a program.
pub const LIMITED_RUN: &str = "__gridwatch-run-limited";

/// Exit code when the limits cannot be set or the program cannot be executed, as a shell
/// reports a command it cannot run.
const CANNOT_RUN: u8 = 126;

/// The command that runs `program args` under `limits`: this binary in its limited-run mode,
/// which also ties the program's life to the worker's.
///
/// With `cgroup` (a task cgroup's `cgroup.procs`), the program joins that cgroup, whose memory
/// limit replaces the address-space limit.
pub fn command(
    program: &Path,
    args: &[String],
    limits: &TaskLimits,
    cgroup: Option<&Path>,
) -> std::io::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg(LIMITED_RUN);
    // The kernel signals the child when the thread that started it ends; the worker starts tasks
    // from its runtime's threads, which live as long as the worker.
    command.arg(format!("parent={}", std::process::id()));
    if let Some(procs) = cgroup {
        let mut figure = std::ffi::OsString::from("cgroup=");
        figure.push(procs);
        command.arg(figure);
    }
    let address_space = limits.memory_bytes.filter(|_| cgroup.is_none());
    let figures = [
        ("as", address_space),
        ("nofile", limits.open_files),
        ("nproc", limits.processes),
    ];
    for (name, value) in figures {
        if let Some(value) = value {
            command.arg(format!("{name}={value}"));
        }
    }
    command.arg("--").arg(program).args(args);
    Ok(command)
}

/// In the limited-run mode (the first argument is [`LIMITED_RUN`]): sets the limits, then
/// executes the program, and returns only when that failed. `None` in every other case.
pub fn exec_if_asked() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != LIMITED_RUN {
        return None;
    }
    let rest: Vec<OsString> = args.collect();
    let error = match limit_then_exec(&rest) {
        Ok(never) => match never {},
        Err(error) => error,
    };
    eprintln!("gridwatch: {error}");
    Some(ExitCode::from(CANNOT_RUN))
}

fn limit_then_exec(args: &[OsString]) -> Result<std::convert::Infallible, String> {
    let split = args
        .iter()
        .position(|arg| arg == "--")
        .ok_or("limited run: no `--` before the program")?;
    for figure in &args[..split] {
        if let Some(procs) = figure.as_encoded_bytes().strip_prefix(b"cgroup=") {
            join_cgroup(&figure.to_string_lossy()["cgroup=".len()..], procs.len())?;
            continue;
        }
        let figure = figure.to_string_lossy();
        let (name, value) = figure
            .split_once('=')
            .ok_or_else(|| format!("limited run: bad limit {figure:?}"))?;
        let value: u64 = value
            .parse()
            .map_err(|_| format!("limited run: bad limit {figure:?}"))?;
        if name == "parent" {
            die_with_parent(value)?;
            continue;
        }
        let (resource, what) = match name {
            "as" => (Resource::RLIMIT_AS, "the memory limit"),
            "nofile" => (Resource::RLIMIT_NOFILE, "the open-file limit"),
            "nproc" => (Resource::RLIMIT_NPROC, "the process limit"),
            _ => return Err(format!("limited run: unknown limit {name:?}")),
        };
        setrlimit(resource, value, value)
            .map_err(|e| format!("cannot set {what} to {value}: {e}"))?;
    }
    let program = args
        .get(split + 1)
        .ok_or("limited run: no program after `--`")?;
    let error = Command::new(program).args(&args[split + 2..]).exec();
    Err(format!("{}: {error}", Path::new(program).display()))
}

/// Moves this process into the cgroup whose `cgroup.procs` is `procs` (its memory limit then
/// holds from the program's first instruction, and for every process it starts).
fn join_cgroup(procs: &str, len: usize) -> Result<(), String> {
    if procs.len() != len {
        return Err("limited run: a cgroup path that is not UTF-8".into());
    }
    std::fs::write(procs, std::process::id().to_string())
        .map_err(|e| format!("cannot join the task's cgroup ({procs}): {e}"))
}

/// Asks the kernel to SIGKILL this process when its parent dies, then checks that the parent is
/// still `parent`: one that died before the request was made would never send the signal.
fn die_with_parent(parent: u64) -> Result<(), String> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("cannot tie the task to the worker's life: {e}"))?;
    if u64::try_from(nix::unistd::getppid().as_raw()).ok() != Some(parent) {
        return Err("the worker that started the task is gone".into());
    }
    Ok(())
}

/// Whether a failed run under a memory limit reported an allocation failure, in the words the
/// common runtimes use (Python, C's strerror, glibc, C++, Rust, the JVM).
pub fn reported_out_of_memory(stderr: &[u8]) -> bool {
    const MARKERS: &[&[u8]] = &[
        b"MemoryError",
        b"Cannot allocate memory",
        b"out of memory",
        b"Out of memory",
        b"std::bad_alloc",
        b"memory allocation of",
        b"OutOfMemoryError",
    ];
    MARKERS
        .iter()
        .any(|marker| stderr.windows(marker.len()).any(|window| window == *marker))
}
