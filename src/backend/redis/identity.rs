//! Worker ids are unique among live workers: a worker holds `worker:{id}:owner` with its process
//! nonce and a short TTL that it keeps renewing while it lives, so a second process with the same
//! id is refused, and the id is free again soon after its holder dies. The claim also records
//! where its holder runs ([`ProcessMark`]): a claimant on the same machine that finds the holder's
//! process gone (a worker killed with kill -9 and restarted by its supervisor) takes the id at
//! once instead of waiting for the TTL.

use ::redis::Script;
use std::sync::{Arc, OnceLock, Weak};

use super::{keys, RedisBackend};
pub use crate::backend::WORKER_ID_TTL;
use crate::backend::{BackendError, BackendResult};

fn hold_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/hold_worker_id.lua")))
}

fn release_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("lua/release_worker_id.lua")))
}

/// What a claim attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The id is ours (taken or renewed).
    Held,
    /// Another process holds it; its claim value.
    HeldBy(String),
}

/// Where a process runs, precisely enough to tell from the same machine whether it still
/// lives: the kernel's boot id, the pid namespace, the pid, and the process' start time (clock
/// ticks after boot), so a pid reused by another process does not pass for the old one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessMark {
    boot_id: String,
    pid_namespace: String,
    pid: u32,
    start_ticks: u64,
}

impl ProcessMark {
    /// This process' mark; `None` where `/proc` does not tell (then claims only lapse).
    pub fn current() -> Option<ProcessMark> {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let pid_namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
        let pid = std::process::id();
        Some(ProcessMark {
            boot_id: boot_id.trim().to_string(),
            pid_namespace: pid_namespace.to_string_lossy().into_owned(),
            pid,
            start_ticks: start_ticks(pid)?,
        })
    }

    /// The mark as a claim records it: one word, `/`-separated.
    pub fn word(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.boot_id, self.pid_namespace, self.pid, self.start_ticks
        )
    }

    /// Reads a mark back from [`ProcessMark::word`]; `None` for anything else.
    pub fn parse(word: &str) -> Option<ProcessMark> {
        let mut fields = word.split('/');
        let mark = ProcessMark {
            boot_id: fields.next()?.to_string(),
            pid_namespace: fields.next()?.to_string(),
            pid: fields.next()?.parse().ok()?,
            start_ticks: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(mark)
    }

    /// Whether the process this mark names is known to be gone: it ran on this machine since its
    /// last boot, in the pid namespace `here` is in, and no live process has its pid with its
    /// start time. Anything less certain (another machine, another namespace) is not proof.
    pub fn is_gone_seen_from(&self, here: &ProcessMark) -> bool {
        if self.boot_id != here.boot_id || self.pid_namespace != here.pid_namespace {
            return false;
        }
        if self.pid == here.pid {
            // Our own pid: the old holder cannot be running under it.
            return self.start_ticks != here.start_ticks;
        }
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Err(err) => err.kind() == std::io::ErrorKind::NotFound,
            Ok(stat) => match parse_stat(&stat) {
                // A zombie has exited already; only its parent has not reaped it yet.
                Some((state, ticks)) => state == 'Z' || ticks != self.start_ticks,
                None => false,
            },
        }
    }
}

/// The start time of process `pid`, in clock ticks after boot.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, ticks)| ticks)
}

/// The state letter and the start time (field 22) of a `/proc/PID/stat` line. The command name
/// (field 2) is in parentheses and may hold spaces or parentheses itself, so fields are counted
/// from the last ')'.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the name: state is field 3, so start time (field 22) is 19 fields further on.
    let ticks = fields.nth(18)?.parse().ok()?;
    Some((state, ticks))
}

/// The claim value of this worker process, nonce `instance`: what it holds its id with, and
/// what it gives the id up with on a clean exit.
pub fn own_claim_value(instance: &str) -> String {
    claim_value(instance, ProcessMark::current().as_ref())
}

/// The value a worker process' claim holds: its nonce, then its mark when it has one.
pub fn claim_value(instance: &str, mark: Option<&ProcessMark>) -> String {
    match mark {
        Some(mark) => format!("{instance} {}", mark.word()),
        None => instance.to_string(),
    }
}

impl RedisBackend {
    /// Takes or renews `worker` for the claim value `holder`; when `replacing` is given, also
    /// takes it from that exact holder (one found dead).
    pub async fn try_hold_worker_id(
        &self,
        worker: &str,
        holder: &str,
        replacing: Option<&str>,
    ) -> BackendResult<Hold> {
        let mut invocation = hold_script().prepare_invoke();
        invocation
            .key(keys::worker_owner(worker))
            .key(keys::WORKERS_SEEN)
            .arg(holder)
            .arg(WORKER_ID_TTL.as_millis() as u64)
            .arg(worker)
            .arg(replacing.unwrap_or(""));
        let held: Option<String> = self.invoke(&invocation).await?;
        Ok(match held {
            None => Hold::Held,
            Some(other) => Hold::HeldBy(other),
        })
    }

    /// Gives `worker` up, if `holder` still holds it (a clean exit, a master's last connection
    /// of that worker closed), so the next claimant need not wait for the TTL. A renewal of
    /// that claim by this process stops, so it does not take the id back.
    pub async fn give_up_worker_id(&self, worker: &str, holder: &str) -> BackendResult<()> {
        self.given_up_claims
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((worker.to_string(), holder.to_string()));
        let mut invocation = release_script().prepare_invoke();
        invocation.key(keys::worker_owner(worker)).arg(holder);
        let _released: i64 = self.invoke(&invocation).await?;
        Ok(())
    }
}

/// Claims `worker` for this process (nonce `instance`), refusing with a clear error while
/// another live process holds it, then keeps renewing the claim for as long as `backend` lives.
/// A holder on this machine whose process is gone is replaced at once.
pub async fn claim_worker_id(
    backend: &Arc<RedisBackend>,
    worker: &str,
    instance: &str,
) -> BackendResult<()> {
    let mark = ProcessMark::current();
    let holder = own_claim_value(instance);
    let mut outcome = backend.try_hold_worker_id(worker, &holder, None).await?;
    if let (Hold::HeldBy(other), Some(here)) = (&outcome, &mark) {
        let gone = other
            .split_once(' ')
            .and_then(|(_, word)| ProcessMark::parse(word))
            .filter(|old| old.is_gone_seen_from(here));
        if let Some(old) = gone {
            outcome = backend
                .try_hold_worker_id(worker, &holder, Some(other))
                .await?;
            if outcome == Hold::Held {
                tracing::info!(component = "worker", worker = %worker, old_pid = old.pid,
                    "took the worker id over from a process of this machine that is gone");
            }
        }
    }
    if outcome != Hold::Held {
        return Err(BackendError::Other(format!(
            "worker id {worker:?} is in use by a live worker (its claim lapses {} s after that \
             worker stops); give each worker its own --id, or leave it out for the default HOST-PID",
            WORKER_ID_TTL.as_secs()
        )));
    }
    tokio::spawn(renew(Arc::downgrade(backend), worker.to_string(), holder));
    Ok(())
}

/// Renews the claim every third of its TTL until the backend is dropped.
async fn renew(backend: Weak<RedisBackend>, worker: String, holder: String) {
    let mut ticker = tokio::time::interval(WORKER_ID_TTL / 3);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(backend) = backend.upgrade() else {
            return;
        };
        let claim = (worker.clone(), holder.clone());
        let given_up = backend
            .given_up_claims
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&claim);
        if given_up {
            return;
        }
        match backend.try_hold_worker_id(&worker, &holder, None).await {
            Ok(Hold::Held) => {}
            Ok(Hold::HeldBy(_)) => tracing::error!(component = "worker", worker = %worker,
                "another process took this worker id while Redis could not be reached"),
            Err(err) => tracing::warn!(component = "worker", worker = %worker, error = %err,
                "renewing the worker id claim failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_a_name_with_spaces_and_parentheses() {
        // Fields 3.. of a real line, start time (field 22) = 98765.
        let rest = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 98765 20 21";
        assert_eq!(
            parse_stat(&format!("42 (a b) c) {rest}")),
            Some(('S', 98765))
        );
        assert_eq!(parse_stat("42 (x) Z 1 2"), None);
    }

    #[test]
    fn a_mark_round_trips_and_a_gone_process_is_told_from_a_live_one() {
        let here = ProcessMark::current().expect("Linux has /proc");
        assert_eq!(ProcessMark::parse(&here.word()), Some(here.clone()));
        assert_eq!(ProcessMark::parse("a/b/1"), None);
        assert_eq!(ProcessMark::parse("a/b/1/2/3"), None);
        assert!(!here.is_gone_seen_from(&here), "we live");
        let parent = std::os::unix::process::parent_id();
        let parent_mark = ProcessMark {
            pid: parent,
            start_ticks: start_ticks(parent).expect("the parent's stat"),
            ..here.clone()
        };
        assert!(!parent_mark.is_gone_seen_from(&here), "the parent lives");
        let reused = ProcessMark {
            start_ticks: parent_mark.start_ticks + 1,
            ..parent_mark.clone()
        };
        assert!(reused.is_gone_seen_from(&here), "same pid, another start");
        let elsewhere = ProcessMark {
            boot_id: "another-machine".into(),
            pid: u32::MAX - 1,
            ..here.clone()
        };
        assert!(!elsewhere.is_gone_seen_from(&here), "no proof from afar");
    }

    #[test]
    fn a_killed_process_is_gone_once_killed() {
        let here = ProcessMark::current().expect("Linux has /proc");
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("starting sleep");
        let mark = ProcessMark {
            pid: child.id(),
            start_ticks: start_ticks(child.id()).expect("the child's stat"),
            ..here.clone()
        };
        assert!(!mark.is_gone_seen_from(&here), "running");
        child.kill().expect("kill -9");
        let _ = child.wait();
        assert!(mark.is_gone_seen_from(&here), "killed and reaped");
    }
}
