//! Who gets a connection slot, on every TCP server of the grid (the master and the collector).
//! A connection first holds one of its address's `per_address` slots and a place among the
//! connections that have not yet greeted. That pool is small and never blocks a newcomer: when
//! it is full, the oldest member of the address holding most places is closed to make room, so
//! a flood of strangers that never greet cannot keep an honest client (which greets at once,
//! usually from an address of its own) from greeting. Once its hello is
//! welcomed, a connection leaves the pool for one of the `max_connections` slots of greeted
//! connections. Connections beyond the per-address or the greeted limit wait, without a read
//! buffer, in a bounded queue, first come first served, for at most `queue_timeout`; when the
//! queue is full, or the wait runs out, they are refused at once with `busy`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The admission limits.
#[derive(Clone, Copy, Debug)]
pub struct AdmissionLimits {
    /// Greeted connections served at once.
    pub max_connections: usize,
    /// Connections that have not greeted yet, at once; a newcomer closes the oldest of them.
    pub max_unauthenticated: usize,
    /// Connections served at once from one address.
    pub per_address: usize,
    /// Connections waiting for a slot.
    pub queue: usize,
    /// Longest wait for a slot.
    pub queue_timeout: Duration,
    /// What the server's flags for these limits start with after `--` (`http-` for the HTTP
    /// port), so a refusal names the flag that raises the limit.
    pub flag_prefix: &'static str,
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
    /// Connections that have not greeted yet, oldest first.
    ungreeted: Mutex<Ungreeted>,
}

/// The pool of connections that have not greeted, each with the signal that closes it.
#[derive(Default)]
struct Ungreeted {
    next_id: u64,
    oldest_first: VecDeque<(u64, IpAddr, Arc<Notify>)>,
}

impl Ungreeted {
    /// Closes the oldest connection of the address that holds most places.
    fn evict_one(&mut self) {
        let mut held: HashMap<IpAddr, usize> = HashMap::new();
        for (_, address, _) in &self.oldest_first {
            *held.entry(*address).or_default() += 1;
        }
        let Some(most) = held.values().copied().max() else {
            return;
        };
        let at = self
            .oldest_first
            .iter()
            .position(|(_, address, _)| held.get(address) == Some(&most));
        if let Some((_, _, evict)) = at.and_then(|at| self.oldest_first.remove(at)) {
            evict.notify_one();
        }
    }
}

/// A connection's right to be served; dropping it frees its slots for the next in the queue.
pub struct Slot<'a> {
    admission: &'a Admission,
    /// Its place in the pool of connections that have not greeted, until it greets.
    ungreeted: Option<u64>,
    evict: Arc<Notify>,
    _global: Option<OwnedSemaphorePermit>,
    _address: OwnedSemaphorePermit,
    _user: AddressUser<'a>,
}

impl Slot<'_> {
    /// Completes when a newer connection has taken this one's place among those that have not
    /// greeted: the connection is then to be closed. Never completes once greeted.
    pub async fn evicted(&self) {
        if self.ungreeted.is_some() {
            self.evict.notified().await;
        } else {
            std::future::pending::<()>().await;
        }
    }

    /// What an evicted connection is told before it is closed.
    pub fn evicted_message(&self) -> String {
        format!(
            "server busy: {} connections were waiting to greet and this one was the oldest \
             (the limit: --{}max-unauthenticated-connections); retry shortly",
            self.admission.limits.max_unauthenticated, self.admission.limits.flag_prefix
        )
    }

    /// Moves a connection whose hello was welcomed to the slots of greeted connections, waiting
    /// in the queue when they are all taken.
    pub async fn greeted(&mut self) -> Result<(), Refused> {
        let Some(id) = self.ungreeted.take() else {
            return Ok(());
        };
        self.admission.leave_ungreeted(id);
        let slots = self.admission.slots.clone();
        self._global = Some(self.admission.wait_for(slots).await?);
        Ok(())
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.ungreeted.take() {
            self.admission.leave_ungreeted(id);
        }
    }
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
            max_unauthenticated: limits.max_unauthenticated.max(1),
            per_address: limits.per_address.max(1),
            ..limits
        };
        Self {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            waiting: Arc::new(Semaphore::new(limits.queue)),
            addresses: Mutex::new(HashMap::new()),
            ungreeted: Mutex::new(Ungreeted::default()),
            limits,
        }
    }

    /// Waits for a slot of `address` for a connection that has yet to greet: at once if one is
    /// free, else in the queue; refused when the queue is full or the wait exceeds the queue
    /// timeout. The connection then joins those that have not greeted, closing the oldest of
    /// them when they are as many as allowed.
    pub async fn admit(&self, address: IpAddr) -> Result<Slot<'_>, Refused> {
        let (per_address, user) = self.join(address);
        let address_permit = self.wait_for(per_address).await?;
        let (id, evict) = self.join_ungreeted(address);
        Ok(Slot {
            admission: self,
            ungreeted: Some(id),
            evict,
            _global: None,
            _address: address_permit,
            _user: user,
        })
    }

    /// A permit of `slots`: at once if one is free, else after a wait in the queue.
    async fn wait_for(&self, slots: Arc<Semaphore>) -> Result<OwnedSemaphorePermit, Refused> {
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let limits = self.limits;
        let Ok(_ticket) = self.waiting.clone().try_acquire_owned() else {
            return Err(Refused(format!(
                "server busy: {} connections are served and {} more wait (the limits: \
                 --{p}max-connections, --{p}max-connections-per-address, --{p}connection-queue); \
                 retry shortly",
                limits.max_connections,
                limits.queue,
                p = limits.flag_prefix
            )));
        };
        match tokio::time::timeout(limits.queue_timeout, slots.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Refused(format!(
                "server busy: no connection slot came free within {:?} ({} served at once, {} per \
                 address); retry shortly",
                limits.queue_timeout, limits.max_connections, limits.per_address
            ))),
        }
    }

    /// Adds a connection from `address` to those that have not greeted, closing one when full.
    fn join_ungreeted(&self, address: IpAddr) -> (u64, Arc<Notify>) {
        let mut pool = self.ungreeted.lock().unwrap_or_else(|e| e.into_inner());
        while !pool.oldest_first.is_empty()
            && pool.oldest_first.len() >= self.limits.max_unauthenticated
        {
            pool.evict_one();
        }
        let id = pool.next_id;
        pool.next_id += 1;
        let evict = Arc::new(Notify::new());
        pool.oldest_first.push_back((id, address, evict.clone()));
        (id, evict)
    }

    /// Removes a connection from those that have not greeted (if still there).
    fn leave_ungreeted(&self, id: u64) {
        let mut pool = self.ungreeted.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = pool.oldest_first.iter().position(|(each, ..)| *each == id) {
            pool.oldest_first.remove(at);
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
            max_unauthenticated: 100,
            per_address,
            queue,
            queue_timeout: Duration::from_secs(30),
            flag_prefix: "",
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    /// Whether `slot` has been told to close.
    async fn closed(slot: &Slot<'_>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), slot.evicted())
            .await
            .is_ok()
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
        let admission = Arc::new(admission(1, 10, 1));
        let mut first = admission.admit(ip(1)).await.expect("first");
        first.greeted().await.expect("the one greeted slot");
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move {
                let mut slot = admission.admit(ip(1)).await.expect("admitted");
                slot.greeted().await.is_ok()
            })
        };
        tokio::task::yield_now().await;
        let mut third = admission
            .admit(ip(3))
            .await
            .expect("admitted before greeting");
        let refused = third.greeted().await.expect_err("queue full");
        assert!(refused.0.contains("--connection-queue"), "{refused:?}");
        drop(first);
        assert!(
            waiter.await.expect("join"),
            "the waiter gets the freed slot"
        );

        let mut held = admission.admit(ip(1)).await.expect("admitted");
        held.greeted().await.expect("free again");
        let mut late = admission.admit(ip(4)).await.expect("admitted");
        let timed_out = late.greeted().await.expect_err("no slot in time");
        assert!(timed_out.0.contains("within"), "{timed_out:?}");
    }

    #[tokio::test]
    async fn a_newcomer_closes_the_oldest_connection_of_the_busiest_address_that_has_not_greeted() {
        let admission = Admission::new(AdmissionLimits {
            max_connections: 10,
            max_unauthenticated: 3,
            per_address: 10,
            queue: 0,
            queue_timeout: Duration::from_secs(30),
            flag_prefix: "",
        });
        let honest = admission.admit(ip(1)).await.expect("an early client");
        let mut greets = admission.admit(ip(2)).await.expect("greets");
        greets.greeted().await.expect("greets, leaving the pool");
        let flood_a = admission.admit(ip(2)).await.expect("flood a");
        let flood_b = admission.admit(ip(2)).await.expect("flood b");
        // The pool holds `honest`, `flood_a`, `flood_b`: a newcomer closes `flood_a`, the oldest
        // of the address holding most places, not the older client of another address.
        let newcomer = admission.admit(ip(3)).await.expect("never refused");
        assert!(closed(&flood_a).await, "the busiest address's oldest goes");
        assert!(!closed(&flood_b).await);
        assert!(!closed(&honest).await, "a lone client stays");
        assert!(!closed(&newcomer).await);
        assert!(
            !closed(&greets).await,
            "a greeted connection is never closed"
        );
        assert!(flood_a
            .evicted_message()
            .contains("--max-unauthenticated-connections"));
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
