//! Slots for fetches that wait at the tail (long-polls and event streams): each holds a
//! task and a connection for up to a minute, so their number is bounded per broker and per
//! client address, and a client over either limit gets `429 busy` at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// The peer address of a request's connection, set by the listener.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The waiting fetches of one broker.
#[derive(Debug)]
pub struct WaitSlots {
    total: Arc<Semaphore>,
    /// Slots held now, for `/metrics`.
    held: Gauge,
    per_client_limit: usize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// One waiting fetch's place; freed on drop.
#[derive(Debug)]
pub struct WaitSlot {
    _permit: OwnedSemaphorePermit,
    slots: Arc<WaitSlots>,
    client: IpAddr,
}

impl WaitSlots {
    pub fn new(total: usize, per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(total)),
            held: Gauge::default(),
            per_client_limit: per_client,
            per_client: Mutex::new(HashMap::new()),
        })
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "floe_waiting_fetches",
            "Fetches waiting at the tail (long-polls and event streams) now",
            self.held.clone(),
        );
    }

    /// Takes a slot for a fetch from `client`, or refuses with `429 busy`.
    pub fn try_take(self: &Arc<Self>, client: IpAddr) -> Result<WaitSlot, ApiError> {
        let busy = |why: String| {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", why)
                .with_retry_after(Duration::from_secs(1))
        };
        let permit = Arc::clone(&self.total).try_acquire_owned().map_err(|_| {
            busy("this broker has as many waiting fetches and streams as it serves".into())
        })?;
        let mut per_client = self.per_client.lock();
        let count = per_client.entry(client).or_insert(0);
        if *count >= self.per_client_limit {
            return Err(busy(format!(
                "{client} has {} waiting fetches and streams open, the most one client may",
                self.per_client_limit
            )));
        }
        *count += 1;
        self.held.inc();
        Ok(WaitSlot {
            _permit: permit,
            slots: Arc::clone(self),
            client,
        })
    }
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        self.slots.held.dec();
        let mut per_client = self.slots.per_client.lock();
        if let Some(count) = per_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                per_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_broker_and_per_client() {
        let slots = WaitSlots::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = slots.try_take(a).expect("a, 1");
        let _second = slots.try_take(a).expect("a, 2");
        assert!(slots.try_take(a).is_err(), "a is at its own limit");
        let _third = slots.try_take(b).expect("b, 1");
        assert!(slots.try_take(b).is_err(), "the broker is full");
        drop(first);
        assert!(slots.try_take(a).is_ok(), "a slot came back");
    }
}
