//! Who may report: every connection presents the cluster token (when there is one), an agent's
//! hello names the one worker it watches, and only one live agent speaks for a worker at a
//! time. A report for another worker is refused, so a stray or hostile agent cannot flap a
//! worker it does not watch and have its tasks re-queued.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::protocol::ErrorCode;

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
    /// Most distinct worker ids one address may introduce.
    max_ids_per_address: usize,
    /// The worker ids each address introduced (first claimed), kept while the collector runs:
    /// every id costs the collector state it keeps, so one address cannot invent ids without end.
    introduced: Mutex<HashMap<IpAddr, HashSet<String>>>,
    next_connection: std::sync::atomic::AtomicU64,
}

impl Gate {
    /// A gate checking `token`, where an agent silent for `stale_after` (or, once it sends
    /// heartbeats, for `heartbeat_misses` of them) yields its worker id.
    /// One address may introduce at most `max_ids_per_address` worker ids.
    pub fn new(
        token: Option<String>,
        stale_after: Duration,
        heartbeat_misses: u32,
        max_ids_per_address: usize,
    ) -> Gate {
        Gate {
            token,
            stale_after,
            heartbeat_misses: heartbeat_misses.max(1),
            holders: Mutex::new(HashMap::new()),
            max_ids_per_address: max_ids_per_address.max(1),
            introduced: Mutex::new(HashMap::new()),
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

    /// Claims `worker` for an agent connecting from `peer` (at `address`); refused (with the
    /// reason) while another agent's connection for it is live, or when `worker` would be one
    /// id more than `address` may introduce.
    pub fn claim(
        &self,
        worker: &str,
        peer: &str,
        address: IpAddr,
        now: Instant,
    ) -> Result<Claim, (ErrorCode, String)> {
        self.introduce(worker, address)
            .map_err(|message| (ErrorCode::RateLimited, message))?;
        let mut holders = self.holders();
        if let Some(holder) = holders.get(worker) {
            if now.saturating_duration_since(holder.last_seen) < holder.stale_after {
                return Err((
                    ErrorCode::IdInUse,
                    format!(
                    "worker {worker:?} already has a live agent (connected from {}); each worker \
                     has one agent, and worker ids must be unique",
                    holder.peer
                ),
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

    /// Records that `address` introduced `worker`, unless the address has introduced its
    /// share of ids already (an id it introduced before is always welcome back).
    fn introduce(&self, worker: &str, address: IpAddr) -> Result<(), String> {
        let mut introduced = self
            .introduced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let ids = introduced.entry(address).or_default();
        if ids.contains(worker) {
            return Ok(());
        }
        if ids.len() >= self.max_ids_per_address {
            return Err(format!(
                "address {address} already introduced {} worker ids, the most one address may \
                 (--max-workers-per-address); reuse a worker id or raise the limit",
                ids.len()
            ));
        }
        ids.insert(worker.to_string());
        Ok(())
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

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn one_live_agent_per_worker_until_it_leaves_or_goes_silent() {
        let gate = Gate::new(None, Duration::from_secs(10), 3, 64);
        let start = Instant::now();
        let first = gate.claim("w1", "a:1", HERE, start).expect("free");
        let err = gate
            .claim("w1", "b:2", HERE, start + Duration::from_secs(1))
            .expect_err("a live agent holds w1");
        assert!(err.1.contains("a:1"), "{err:?}");
        assert!(
            gate.claim("w2", "b:2", HERE, start).is_ok(),
            "another worker"
        );
        assert!(gate.refresh("w1", first, start + Duration::from_secs(5), None));
        gate.release("w1", first);
        let second = gate.claim("w1", "b:2", HERE, start).expect("released");
        assert!(
            !gate.refresh("w1", first, start, None),
            "the old claim is gone"
        );
        let late = start + Duration::from_secs(30);
        let third = gate
            .claim("w1", "c:3", HERE, late)
            .expect("the holder went silent");
        assert!(!gate.refresh("w1", second, late, None));
        gate.release("w1", second);
        assert!(
            gate.refresh("w1", third, late, None),
            "a stale release is ignored"
        );
    }

    #[test]
    fn one_address_introduces_at_most_its_share_of_ids() {
        let gate = Gate::new(None, Duration::from_secs(10), 3, 3);
        let now = Instant::now();
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
        let mut claims = Vec::new();
        for id in ["a", "b", "c"] {
            claims.push((id, gate.claim(id, "h:1", HERE, now).expect("under the cap")));
        }
        let (code, refused) = gate.claim("d", "h:1", HERE, now).expect_err("a fourth id");
        assert_eq!(code, ErrorCode::RateLimited);
        assert!(refused.contains("--max-workers-per-address"), "{refused}");
        assert!(
            gate.claim("d", "o:1", other, now).is_ok(),
            "another address"
        );
        for (id, claim) in claims {
            gate.release(id, claim);
        }
        assert!(
            gate.claim("a", "h:2", HERE, now).is_ok(),
            "an id it introduced"
        );
        assert!(
            gate.claim("e", "h:2", HERE, now).is_err(),
            "still its three"
        );
    }

    #[test]
    fn a_heartbeating_agent_that_went_quiet_yields_its_worker_within_a_few_beats() {
        let gate = Gate::new(None, Duration::from_secs(15), 3, 64);
        let start = Instant::now();
        let first = gate.claim("w1", "a:1", HERE, start).expect("free");
        assert!(gate.refresh("w1", first, start, Some(Duration::from_secs(1))));
        let soon = start + Duration::from_secs(2);
        assert!(gate.claim("w1", "a:2", HERE, soon).is_err(), "still live");
        let later = start + Duration::from_secs(4);
        assert!(
            gate.claim("w1", "a:2", HERE, later).is_ok(),
            "three beats missed"
        );
    }
}
