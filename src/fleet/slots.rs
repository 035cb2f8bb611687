//! Run slots (`--max-running`): at most N agents run a command at once; the others
//! wait, status `queued`, and are let in first come, first served — by the ticket their
//! command got when it was queued, not by which worker woke first.
//!
//! A slot is a [`SlotGuard`]: dropping it frees the slot and lets the next waiter in.
//! A waiter that gives up (its command is cancelled) leaves the queue without ever
//! holding a slot, and a slot granted to a waiter that has just gone is passed on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::provider::BoxFuture;
use crate::sync::lock;

pub struct RunSlots {
    /// 0: no limit.
    max: usize,
    next_ticket: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    running: usize,
    waiters: BTreeMap<u64, oneshot::Sender<()>>,
}

/// A held run slot; freed on drop (with the fleet-wide slot it carries, if any).
pub struct SlotGuard {
    slots: Option<Arc<RunSlots>>,
    /// A slot of the whole fleet's `[cluster] max_running`, freed on drop.
    fleet: Option<FleetSlot>,
}

/// A held slot of a fleet of several nodes; frees itself on drop.
pub type FleetSlot = Box<dyn Send + Sync>;

/// `[cluster] max_running`: run slots counted across every node of the fleet (the
/// shared store keeps them). Taken after the node's own slot.
pub trait FleetSlots: Send + Sync {
    /// The fleet's cap.
    fn max(&self) -> usize;
    /// A slot at once, or `None` when all are taken.
    fn try_take<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, Option<FleetSlot>>;
    /// Wait for a slot (cancel-safe).
    fn take<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, FleetSlot>;
}

impl SlotGuard {
    /// Carry a fleet-wide slot too: both are freed together.
    pub fn with_fleet_slot(mut self, slot: FleetSlot) -> Self {
        self.fleet = Some(slot);
        self
    }

    /// Whether it carries a fleet-wide slot.
    pub fn has_fleet_slot(&self) -> bool {
        self.fleet.is_some()
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.release();
        }
    }
}

impl RunSlots {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            next_ticket: AtomicU64::new(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Agents holding a slot now.
    pub fn running(&self) -> usize {
        lock(&self.inner).running
    }

    /// A place in line, taken when a command is queued.
    pub fn ticket(&self) -> u64 {
        self.next_ticket.fetch_add(1, Ordering::Relaxed)
    }

    /// A slot at once, if one is free and nobody earlier is waiting.
    pub fn try_acquire(self: &Arc<Self>) -> Option<SlotGuard> {
        if self.max == 0 {
            return Some(SlotGuard {
                slots: None,
                fleet: None,
            });
        }
        let mut inner = lock(&self.inner);
        (inner.running < self.max && inner.waiters.is_empty()).then(|| {
            inner.running += 1;
            SlotGuard {
                slots: Some(self.clone()),
                fleet: None,
            }
        })
    }

    /// Wait for a slot, in ticket order. Cancel-safe: dropping the future leaves the
    /// line (and passes on a slot granted in the meantime).
    pub async fn acquire(self: &Arc<Self>, ticket: u64) -> SlotGuard {
        if let Some(guard) = self.try_acquire() {
            return guard;
        }
        let rx = {
            let (tx, rx) = oneshot::channel();
            let mut inner = lock(&self.inner);
            inner.waiters.insert(ticket, tx);
            self.grant(&mut inner);
            rx
        };
        let mut waiter = Waiter {
            slots: self,
            ticket,
            rx: Some(rx),
        };
        if let Some(rx) = waiter.rx.as_mut() {
            // The sender lives in `waiters` until granted; it is only dropped unsent
            // when the line is cleared, which never happens while we wait.
            let _ = rx.await;
        }
        waiter.rx = None;
        SlotGuard {
            slots: Some(self.clone()),
            fleet: None,
        }
    }

    fn release(&self) {
        let mut inner = lock(&self.inner);
        inner.running = inner.running.saturating_sub(1);
        self.grant(&mut inner);
    }

    /// Let waiters in, earliest ticket first, while slots are free.
    fn grant(&self, inner: &mut Inner) {
        while inner.running < self.max {
            let Some((_, tx)) = inner.waiters.pop_first() else {
                return;
            };
            if tx.send(()).is_ok() {
                inner.running += 1;
            }
        }
    }
}

/// A place in line; leaving it (drop before the grant is taken) cleans up.
struct Waiter<'a> {
    slots: &'a Arc<RunSlots>,
    ticket: u64,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        let mut inner = lock(&self.slots.inner);
        if inner.waiters.remove(&self.ticket).is_none() && rx.try_recv().is_ok() {
            // Granted while we were leaving: pass the slot on.
            inner.running = inner.running.saturating_sub(1);
            self.slots.grant(&mut inner);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waiters_enter_in_ticket_order_as_slots_free() {
        let slots = Arc::new(RunSlots::new(1));
        let first = slots.acquire(slots.ticket()).await;
        let (t2, t3) = (slots.ticket(), slots.ticket());
        let order = Arc::new(Mutex::new(Vec::new()));
        // The later ticket starts waiting first: it must still go second.
        let spawn = |t: u64| {
            let (slots, order) = (slots.clone(), order.clone());
            tokio::spawn(async move {
                let g = slots.acquire(t).await;
                order.lock().unwrap().push(t);
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(g);
            })
        };
        let h3 = spawn(t3);
        tokio::task::yield_now().await;
        let h2 = spawn(t2);
        tokio::task::yield_now().await;
        assert_eq!(slots.running(), 1);
        drop(first);
        h2.await.unwrap();
        h3.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec![t2, t3]);
        assert_eq!(slots.running(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_no_slot_behind() {
        let slots = Arc::new(RunSlots::new(1));
        let held = slots.acquire(slots.ticket()).await;
        let t = slots.ticket();
        let wait = tokio::time::timeout(Duration::from_millis(10), slots.acquire(t)).await;
        assert!(wait.is_err());
        drop(held);
        assert_eq!(slots.running(), 0);
        let again = slots.try_acquire();
        assert!(again.is_some());
    }

    #[tokio::test]
    async fn zero_means_no_limit() {
        let slots = Arc::new(RunSlots::new(0));
        let guards: Vec<_> = (0..100).map(|_| slots.try_acquire().unwrap()).collect();
        assert_eq!(guards.len(), 100);
    }
}
