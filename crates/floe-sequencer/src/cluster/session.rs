//! Leases, registration, election and the membership view.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use tokio::time::Instant;

use super::{ClusterHandle, Keys, SessionState, etcd};
use crate::error::LogError;
use crate::log::Fence;
use crate::membership::{LeaderInfo, Member};

/// Grants a lease and registers the broker under it. Waits while another live process
/// holds the same broker id (for example this broker's previous incarnation, until its
/// lease lapses), up to `patience`.
pub(crate) async fn register(
    client: &Client,
    keys: &Keys,
    handle: &ClusterHandle,
    patience: Duration,
) -> Result<SessionState, LogError> {
    let options = &handle.options;
    let identity = &handle.identity;
    let deadline = Instant::now() + patience;
    loop {
        let lease = etcd(
            "lease grant",
            client
                .clone()
                .lease_grant(options.lease_ttl.as_secs().max(1) as i64, None),
        )
        .await?
        .id();
        let member = Member {
            broker: identity.broker.clone(),
            advertise: identity.advertise.clone(),
            started_ms: handle.clock.now_ms(),
            session: 0,
            features: crate::membership::FEATURES
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
        };
        let value = serde_json::to_vec(&member)
            .map_err(|e| LogError::Corrupt(format!("encode member: {e}")))?;
        let key = keys.broker(&identity.broker);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let confirmed = Instant::now();
        let response = etcd("register", client.clone().txn(txn)).await?;
        if response.succeeded() {
            let revision = response.header().map_or(0, |h| h.revision());
            tracing::info!(
                broker = identity.broker,
                session = revision,
                lease,
                "registered"
            );
            return Ok(SessionState {
                fence: Fence {
                    broker: identity.broker.clone(),
                    session: revision,
                },
                lease,
                confirmed,
            });
        }
        let _ = etcd("lease revoke", client.clone().lease_revoke(lease)).await;
        if Instant::now() >= deadline {
            return Err(LogError::Etcd(format!(
                "broker id {:?} is registered by another live process; give each broker its \
                 own --broker-id",
                identity.broker
            )));
        }
        tracing::warn!(
            broker = identity.broker,
            "broker id is still registered (a previous run's lease?); waiting for it to lapse"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Keeps the session's lease alive, recording each confirmation. Returns when the lease is
/// lost: etcd says it expired, or no confirmation came for a whole TTL.
pub(crate) async fn keep_alive(client: &Client, handle: &ClusterHandle, lease: i64) {
    let ttl = handle.options.lease_ttl;
    let mut last_confirmed = Instant::now();
    'stream: while last_confirmed.elapsed() < ttl {
        let Ok((mut keeper, mut responses)) =
            etcd("keep alive", client.clone().lease_keep_alive(lease)).await
        else {
            tokio::time::sleep(ttl / 10).await;
            continue;
        };
        loop {
            let sent = Instant::now();
            if keeper.keep_alive().await.is_err() {
                continue 'stream;
            }
            let answer = tokio::time::timeout(ttl / 3, responses.message()).await;
            match answer {
                Ok(Ok(Some(response))) if response.ttl() > 0 => {
                    last_confirmed = sent;
                    if let Some(session) = handle.session.lock().as_mut()
                        && session.lease == lease
                    {
                        session.confirmed = sent;
                    }
                }
                Ok(Ok(Some(_))) => {
                    tracing::warn!(lease, "etcd says the lease expired");
                    return;
                }
                _ => {
                    if last_confirmed.elapsed() >= ttl {
                        break 'stream;
                    }
                    continue 'stream;
                }
            }
            tokio::time::sleep(ttl / 4).await;
            if last_confirmed.elapsed() >= ttl {
                break 'stream;
            }
        }
    }
    tracing::warn!(
        lease,
        "lease not confirmed within its TTL; the session is over"
    );
}

/// Registers, keeps the session alive, and registers anew whenever it is lost, publishing
/// each session on the handle.
pub(crate) async fn maintain(client: Client, keys: Keys, handle: Arc<ClusterHandle>) {
    loop {
        let lease = match handle.session.lock().as_ref() {
            Some(session) => session.lease,
            None => 0,
        };
        if lease != 0 {
            keep_alive(&client, &handle, lease).await;
            handle.set_session(None);
            let _ = etcd("lease revoke", client.clone().lease_revoke(lease)).await;
        }
        let patience = handle.options.lease_ttl * 3;
        match register(&client, &keys, &handle, patience).await {
            Ok(session) => handle.set_session(Some(session)),
            Err(error) => {
                tracing::warn!(%error, "registration failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The result of one attempt to become leader.
#[derive(Debug)]
pub(crate) enum Campaign {
    Won { term: i64 },
    Lost { leader: LeaderInfo },
}

/// Tries once to take the election key under `lease`. Holding it already (a restarted
/// term of the same session) counts as winning.
pub(crate) async fn campaign(
    client: &Client,
    keys: &Keys,
    lease: i64,
    info: &LeaderInfo,
) -> Result<Campaign, LogError> {
    let value =
        serde_json::to_vec(info).map_err(|e| LogError::Corrupt(format!("encode leader: {e}")))?;
    let txn = Txn::new()
        .when([Compare::create_revision(keys.leader(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            keys.leader(),
            value,
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(keys.leader(), None)]);
    let response = etcd("campaign", client.clone().txn(txn)).await?;
    let revision = response.header().map_or(0, |h| h.revision());
    if response.succeeded() {
        return Ok(Campaign::Won { term: revision });
    }
    let holder = response
        .op_responses()
        .into_iter()
        .find_map(|answer| match answer {
            TxnOpResponse::Get(get) => get.kvs().first().cloned(),
            _ => None,
        });
    let Some(holder) = holder else {
        // Deleted between the compare and the read: try again.
        return Ok(Campaign::Lost {
            leader: LeaderInfo {
                broker: String::new(),
                advertise: String::new(),
                internal: None,
                term: 0,
            },
        });
    };
    if holder.lease() == lease {
        return Ok(Campaign::Won {
            term: holder.create_revision(),
        });
    }
    let mut leader: LeaderInfo = serde_json::from_slice(holder.value())
        .map_err(|e| LogError::Corrupt(format!("leader key: {e}")))?;
    leader.term = holder.create_revision();
    Ok(Campaign::Lost { leader })
}

/// Who holds the election key now, if anyone.
pub(crate) async fn current_leader(
    client: &Client,
    keys: &Keys,
) -> Result<Option<(LeaderInfo, i64)>, LogError> {
    let response = etcd("read leader", client.clone().get(keys.leader(), None)).await?;
    let Some(holder) = response.kvs().first() else {
        return Ok(None);
    };
    let mut leader: LeaderInfo = serde_json::from_slice(holder.value())
        .map_err(|e| LogError::Corrupt(format!("leader key: {e}")))?;
    leader.term = holder.create_revision();
    Ok(Some((leader, holder.lease())))
}

/// Returns once the election key no longer holds term `term` (deleted or replaced).
pub(crate) async fn wait_term_over(client: &Client, keys: &Keys, term: i64) {
    loop {
        let current = etcd("read leader", client.clone().get(keys.leader(), None)).await;
        let revision = match current {
            Ok(response) if response.kvs().first().map(|kv| kv.create_revision()) != Some(term) => {
                return;
            }
            Ok(response) => response.header().map_or(0, |h| h.revision()),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // From just after the read: nothing between them is missed, and the start revision
        // is never one a compaction has already removed.
        let options = WatchOptions::new().with_start_revision(revision + 1);
        let Ok(mut stream) = etcd(
            "watch leader",
            client.clone().watch(keys.leader(), Some(options)),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while let Ok(Some(response)) = stream.message().await {
            if response.canceled() || response.compact_revision() > 0 {
                break;
            }
            let over = response
                .events()
                .iter()
                .any(|event| match event.event_type() {
                    EventType::Delete => true,
                    EventType::Put => event.kv().is_some_and(|kv| kv.create_revision() != term),
                });
            if over {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Keeps the handle's membership view current: a listing, then a watch from there,
/// listing again whenever the watch breaks.
pub(crate) async fn watch_members(client: Client, keys: Keys, handle: Arc<ClusterHandle>) {
    loop {
        let listing = etcd(
            "list brokers",
            client
                .clone()
                .get(keys.brokers_prefix(), Some(GetOptions::new().with_prefix())),
        )
        .await;
        let Ok(listing) = listing else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mut members = BTreeMap::new();
        for kv in listing.kvs() {
            if let Ok(mut member) = serde_json::from_slice::<Member>(kv.value()) {
                member.session = kv.create_revision();
                members.insert(member.broker.clone(), member);
            }
        }
        handle.members.send_replace(members.clone());
        let revision = listing.header().map_or(0, |h| h.revision());
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let Ok(mut stream) = etcd(
            "watch brokers",
            client.clone().watch(keys.brokers_prefix(), Some(options)),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        while let Ok(Some(response)) = stream.message().await {
            if response.canceled() || response.compact_revision() > 0 {
                break;
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let id = kv
                    .key_str()
                    .ok()
                    .and_then(|key| key.strip_prefix(&keys.brokers_prefix()))
                    .map(str::to_owned);
                let Some(id) = id else { continue };
                match event.event_type() {
                    EventType::Delete => {
                        members.remove(&id);
                    }
                    EventType::Put => {
                        if let Ok(mut member) = serde_json::from_slice::<Member>(kv.value()) {
                            member.session = kv.create_revision();
                            members.insert(id, member);
                        }
                    }
                }
            }
            handle.members.send_replace(members.clone());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
