//! Slots for fetches that wait at the tail (long-polls and event streams): each holds a
//! task and a connection for up to a minute, so their number is bounded per broker and per
//! client (its principal when requests authenticate, its address otherwise), and a client
//! over either limit gets `429 busy` at once.

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
    per_client: Mutex<HashMap<Client, usize>>,
}

/// Who a limit per client counts: an authenticated principal wherever it connects from,
/// or an address (anonymous clients, who may share one behind a NAT, share its limit).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    Principal(Arc<str>),
    Address(IpAddr),
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Principal(name) => write!(f, "principal {name:?}"),
            Self::Address(address) => address.fmt(f),
        }
    }
}

/// One waiting fetch's place; freed on drop.
#[derive(Debug)]
pub struct WaitSlot {
    _permit: OwnedSemaphorePermit,
    slots: Arc<WaitSlots>,
    client: Client,
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

    /// Who `principal` (when requests authenticate) or else `address` is, for the limit
    /// per client.
    pub fn client(
        authenticated: bool,
        principal: Option<&crate::auth::Principal>,
        address: Option<SocketAddr>,
    ) -> Client {
        match principal {
            Some(principal) if authenticated => Client::Principal(Arc::clone(&principal.0)),
            _ => Client::Address(address.map_or(IpAddr::from([0, 0, 0, 0]), |peer| peer.ip())),
        }
    }

    /// Takes a slot for a fetch from `client`, or refuses with `429 busy`.
    pub fn try_take(self: &Arc<Self>, client: Client) -> Result<WaitSlot, ApiError> {
        let busy = |why: String| {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", why)
                .with_retry_after(Duration::from_secs(1))
        };
        let permit = Arc::clone(&self.total).try_acquire_owned().map_err(|_| {
            busy("this broker has as many waiting fetches and streams as it serves".into())
        })?;
        let mut per_client = self.per_client.lock();
        let count = per_client.entry(client.clone()).or_insert(0);
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
        let a = Client::Address([10, 0, 0, 1].into());
        let b = Client::Principal("bob".into());
        let first = slots.try_take(a.clone()).expect("a, 1");
        let _second = slots.try_take(a.clone()).expect("a, 2");
        let refused = slots
            .try_take(a.clone())
            .expect_err("a is at its own limit");
        assert!(format!("{refused:?}").contains("10.0.0.1"), "{refused:?}");
        let _third = slots.try_take(b.clone()).expect("b, 1");
        assert!(slots.try_take(b).is_err(), "the broker is full");
        drop(first);
        assert!(slots.try_take(a).is_ok(), "a slot came back");
        let slots = WaitSlots::new(10, 1);
        let _alice = slots
            .try_take(Client::Principal("alice".into()))
            .expect("alice");
        let refused = slots
            .try_take(Client::Principal("alice".into()))
            .expect_err("alice is at her limit from any address");
        assert!(format!("{refused:?}").contains("alice"), "{refused:?}");
    }
}
