//! Who may report: every connection presents the cluster token (when there is one), an agent's
//! hello names the one worker it watches, and only one live agent speaks for a worker at a
//! time. A report for another worker is refused, so a stray or hostile agent cannot flap a
//! worker it does not watch and have its tasks re-queued.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One agent connection's claim on a worker id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    connection: u64,
}

#[derive(Debug)]
struct Holder {
    connection: u64,
    peer: String,
    last_seen: Instant,
    /// How long this holder's silence is tolerated: shorter once it sends heartbeats.
    stale_after: Duration,
}

/// The cluster token and the live agent of each worker.
#[derive(Debug)]
pub struct Gate {
    token: Option<String>,
    /// A holder silent this long no longer counts as live (its link may be half-open), so a
    /// reconnecting agent can take over.
    stale_after: Duration,
    /// Heartbeats a holder may miss before it no longer counts as live.
    heartbeat_misses: u32,
    holders: Mutex<HashMap<String, Holder>>,
    next_connection: std::sync::atomic::AtomicU64,
}

impl Gate {
    /// A gate checking `token`, where an agent silent for `stale_after` (or, once it sends
    /// heartbeats, for `heartbeat_misses` of them) yields its worker id.
    pub fn new(token: Option<String>, stale_after: Duration, heartbeat_misses: u32) -> Gate {
        Gate {
            token,
            stale_after,
            heartbeat_misses: heartbeat_misses.max(1),
            holders: Mutex::new(HashMap::new()),
            next_connection: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// The token hellos must carry.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn holders(&self) -> std::sync::MutexGuard<'_, HashMap<String, Holder>> {
        self.holders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Claims `worker` for an agent connecting from `peer`; refused (with the reason) while
    /// another agent's connection for it is live.
    pub fn claim(&self, worker: &str, peer: &str, now: Instant) -> Result<Claim, String> {
        let mut holders = self.holders();
        if let Some(holder) = holders.get(worker) {
            if now.saturating_duration_since(holder.last_seen) < holder.stale_after {
                return Err(format!(
                    "worker {worker:?} already has a live agent (connected from {}); each worker \
                     has one agent, and worker ids must be unique",
                    holder.peer
                ));
            }
        }
        let connection = self
            .next_connection
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        holders.insert(
            worker.to_string(),
            Holder {
                connection,
                peer: peer.to_string(),
                last_seen: now,
                stale_after: self.stale_after,
            },
        );
        Ok(Claim { connection })
    }

    /// Whether `claim` still holds `worker` (marking it live); false once another agent took
    /// over after this one went silent. `beat` is the interval of a heartbeat being taken.
    pub fn refresh(
        &self,
        worker: &str,
        claim: Claim,
        now: Instant,
        beat: Option<Duration>,
    ) -> bool {
        match self.holders().get_mut(worker) {
            Some(holder) if holder.connection == claim.connection => {
                holder.last_seen = now;
                if let Some(interval) = beat {
                    holder.stale_after = self.stale_after.min(interval * self.heartbeat_misses);
                }
                true
            }
            _ => false,
        }
    }

    /// Releases `worker` when its agent's connection ends (unless another holds it by now).
    pub fn release(&self, worker: &str, claim: Claim) {
        let mut holders = self.holders();
        if holders
            .get(worker)
            .is_some_and(|holder| holder.connection == claim.connection)
        {
            holders.remove(worker);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_live_agent_per_worker_until_it_leaves_or_goes_silent() {
        let gate = Gate::new(None, Duration::from_secs(10), 3);
        let start = Instant::now();
        let first = gate.claim("w1", "a:1", start).expect("free");
        let err = gate
            .claim("w1", "b:2", start + Duration::from_secs(1))
            .expect_err("a live agent holds w1");
        assert!(err.contains("a:1"), "{err}");
        assert!(gate.claim("w2", "b:2", start).is_ok(), "another worker");
        assert!(gate.refresh("w1", first, start + Duration::from_secs(5), None));
        gate.release("w1", first);
        let second = gate.claim("w1", "b:2", start).expect("released");
        assert!(
            !gate.refresh("w1", first, start, None),
            "the old claim is gone"
        );
        let late = start + Duration::from_secs(30);
        let third = gate
            .claim("w1", "c:3", late)
            .expect("the holder went silent");
        assert!(!gate.refresh("w1", second, late, None));
        gate.release("w1", second);
        assert!(
            gate.refresh("w1", third, late, None),
            "a stale release is ignored"
        );
    }

    #[test]
    fn a_heartbeating_agent_that_went_quiet_yields_its_worker_within_a_few_beats() {
        let gate = Gate::new(None, Duration::from_secs(15), 3);
        let start = Instant::now();
        let first = gate.claim("w1", "a:1", start).expect("free");
        assert!(gate.refresh("w1", first, start, Some(Duration::from_secs(1))));
        let soon = start + Duration::from_secs(2);
        assert!(gate.claim("w1", "a:2", soon).is_err(), "still live");
        let later = start + Duration::from_secs(4);
        assert!(gate.claim("w1", "a:2", later).is_ok(), "three beats missed");
    }
}
