//! Who gets a connection slot, on every TCP server of the grid (the master and the collector). A
//! connection is served while it holds two permits: one of the server's `max_connections` slots
//! and one of its address's `per_address` slots, so one address (a flood of idle or trickling
//! sockets) can hold at most its own share. Connections beyond either limit wait, without a read
//! buffer, in a bounded queue, first come first served, for at most `queue_timeout`; when the
//! queue is full, or the wait runs out, they are refused at once with `busy`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The admission limits.
#[derive(Clone, Copy, Debug)]
pub struct AdmissionLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one address.
    pub per_address: usize,
    /// Connections waiting for a slot.
    pub queue: usize,
    /// Longest wait for a slot.
    pub queue_timeout: Duration,
}

/// Why a connection was not admitted; the message is for the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused(pub String);

/// Hands out connection slots.
pub struct Admission {
    limits: AdmissionLimits,
    slots: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    /// Each address's slots, and how many connections of that address hold or wait for one.
    addresses: Mutex<HashMap<IpAddr, (Arc<Semaphore>, usize)>>,
}

/// A connection's right to be served; dropping it frees the slot for the next in the queue.
pub struct Slot<'a> {
    _global: OwnedSemaphorePermit,
    _address: OwnedSemaphorePermit,
    _user: AddressUser<'a>,
}

/// Counts one connection of an address, so the address's entry goes when its last one does.
struct AddressUser<'a> {
    admission: &'a Admission,
    address: IpAddr,
}

impl Drop for AddressUser<'_> {
    fn drop(&mut self) {
        let mut addresses = self
            .admission
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = addresses.get_mut(&self.address) {
            entry.1 -= 1;
            if entry.1 == 0 {
                addresses.remove(&self.address);
            }
        }
    }
}

impl Admission {
    /// Admission with `limits` (each at least 1, the queue may be 0).
    pub fn new(limits: AdmissionLimits) -> Self {
        let limits = AdmissionLimits {
            max_connections: limits.max_connections.max(1),
            per_address: limits.per_address.max(1),
            ..limits
        };
        Self {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            waiting: Arc::new(Semaphore::new(limits.queue)),
            addresses: Mutex::new(HashMap::new()),
            limits,
        }
    }

    /// Waits for a slot for a connection from `address`: at once if one is free, else in the
    /// queue; refused when the queue is full or the wait exceeds the queue timeout.
    pub async fn admit(&self, address: IpAddr) -> Result<Slot<'_>, Refused> {
        let (per_address, user) = self.join(address);
        let limits = self.limits;
        if let (Ok(address), Ok(global)) = (
            per_address.clone().try_acquire_owned(),
            self.slots.clone().try_acquire_owned(),
        ) {
            return Ok(Slot {
                _global: global,
                _address: address,
                _user: user,
            });
        }
        let Ok(_ticket) = self.waiting.clone().try_acquire_owned() else {
            return Err(Refused(format!(
                "server busy: {} connections are served and {} more wait (the limits: \
                 --max-connections, --max-connections-per-address, --connection-queue); retry shortly",
                limits.max_connections, limits.queue
            )));
        };
        let acquire = async {
            let address = per_address.acquire_owned().await.ok()?;
            let global = self.slots.clone().acquire_owned().await.ok()?;
            Some((address, global))
        };
        match tokio::time::timeout(limits.queue_timeout, acquire).await {
            Ok(Some((address, global))) => Ok(Slot {
                _global: global,
                _address: address,
                _user: user,
            }),
            _ => Err(Refused(format!(
                "server busy: no connection slot came free within {:?} ({} served at once, {} per \
                 address); retry shortly",
                limits.queue_timeout, limits.max_connections, limits.per_address
            ))),
        }
    }

    /// The address's slots, counting this connection as one of its users.
    fn join(&self, address: IpAddr) -> (Arc<Semaphore>, AddressUser<'_>) {
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        let entry = addresses
            .entry(address)
            .or_insert_with(|| (Arc::new(Semaphore::new(self.limits.per_address)), 0));
        entry.1 += 1;
        let slots = entry.0.clone();
        (
            slots,
            AddressUser {
                admission: self,
                address,
            },
        )
    }

    /// Addresses with a connection served or waiting (for tests).
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.addresses.lock().map(|a| a.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max: usize, per_address: usize, queue: usize) -> Admission {
        Admission::new(AdmissionLimits {
            max_connections: max,
            per_address,
            queue,
            queue_timeout: Duration::from_secs(30),
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[tokio::test]
    async fn one_address_cannot_take_every_slot() {
        let admission = admission(10, 2, 0);
        let _a = admission.admit(ip(2)).await.expect("first");
        let _b = admission.admit(ip(2)).await.expect("second");
        let third = admission.admit(ip(2)).await.err().expect("over its share");
        assert!(
            third.0.contains("--max-connections-per-address"),
            "{third:?}"
        );
        assert!(admission.admit(ip(1)).await.is_ok(), "another address");
    }

    #[tokio::test(start_paused = true)]
    async fn extra_connections_wait_for_a_slot_then_time_out() {
        let admission = Arc::new(admission(1, 1, 1));
        let first = admission.admit(ip(1)).await.expect("first");
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit(ip(1)).await.is_ok() })
        };
        tokio::task::yield_now().await;
        let refused = admission.admit(ip(3)).await.err().expect("queue full");
        assert!(refused.0.contains("--connection-queue"), "{refused:?}");
        drop(first);
        assert!(
            waiter.await.expect("join"),
            "the waiter gets the freed slot"
        );

        let _held = admission.admit(ip(1)).await.expect("free again");
        let timed_out = admission.admit(ip(4)).await.err().expect("no slot in time");
        assert!(timed_out.0.contains("within"), "{timed_out:?}");
    }

    #[tokio::test]
    async fn an_address_is_forgotten_with_its_last_connection() {
        let admission = admission(4, 4, 0);
        let a = admission.admit(ip(1)).await.expect("a");
        let b = admission.admit(ip(1)).await.expect("b");
        drop(a);
        assert_eq!(admission.addresses(), 1);
        drop(b);
        assert_eq!(admission.addresses(), 0);
    }
}
