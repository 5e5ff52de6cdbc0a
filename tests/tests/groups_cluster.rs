//! A consumer group on a cluster (etcd + S3-compatible store, three `floe` processes):
//! its coordinator and then the sequencer leader are killed with SIGKILL while a member
//! consumes; the member goes on through another broker, nothing is skipped, and committed
//! offsets never move back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use floe_tests::cluster::FloeCluster;
use reqwest::StatusCode;
use serde_json::{Value, json};

const FLAGS: &[&str] = &["--linger", "20ms", "--lease-ttl", "3s"];
const TOPIC: &str = "orders";
const PARTITIONS: u32 = 6;

/// (partition, offset) of every record the member was given.
type Delivered = Arc<std::sync::Mutex<BTreeSet<(u32, u64)>>>;

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value), String> {
    let mut request = http.request(method, url).timeout(Duration::from_secs(10));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A member that consumes through `entry` (a broker that is neither killed nor, at first,
/// the coordinator), heartbeating, reading with auto-commit, and rejoining under its id
/// when told to.
fn run_member(
    entry: String,
    delivered: Delivered,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let group = format!("{entry}/v1/groups/billing");
        let mut member: Option<(String, u64, Vec<Value>)> = None;
        let mut rejoins = 0;
        let mut id: Option<String> = None;
        while !stop.load(Ordering::SeqCst) {
            let Some((member_id, epoch, owned)) = member.clone() else {
                let mut body = json!({"topics": [TOPIC], "session_timeout_ms": 8000, "auto_offset_reset": "earliest"});
                if let Some(id) = &id {
                    body["member_id"] = json!(id);
                    rejoins += 1;
                }
                match call(
                    &http,
                    reqwest::Method::POST,
                    &format!("{group}/members"),
                    Some(body),
                )
                .await
                {
                    Ok((StatusCode::CREATED, joined)) => {
                        let member_id = joined["member_id"].as_str().expect("id").to_owned();
                        id = Some(member_id.clone());
                        member = Some((
                            member_id,
                            joined["member_epoch"].as_u64().expect("epoch"),
                            assignment(&joined),
                        ));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
                continue;
            };
            let heartbeat = json!({"member_epoch": epoch, "owned": owned});
            match call(
                &http,
                reqwest::Method::POST,
                &format!("{group}/members/{member_id}/heartbeat"),
                Some(heartbeat),
            )
            .await
            {
                Ok((StatusCode::OK, answer)) => {
                    member = Some((
                        member_id.clone(),
                        answer["member_epoch"].as_u64().expect("epoch"),
                        assignment(&answer),
                    ));
                }
                Ok((StatusCode::CONFLICT | StatusCode::NOT_FOUND, _)) => {
                    member = None;
                    continue;
                }
                _ => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            let url = format!(
                "{group}/members/{member_id}/records?commit=auto&wait_ms=300&max_records=1000"
            );
            match call(&http, reqwest::Method::GET, &url, None).await {
                Ok((StatusCode::OK, answer)) => {
                    let mut seen = delivered.lock().expect("delivered");
                    for record in answer["records"].as_array().expect("records") {
                        seen.insert((
                            record["partition"].as_u64().expect("partition") as u32,
                            record["offset"].as_u64().expect("offset"),
                        ));
                    }
                }
                Ok((StatusCode::CONFLICT | StatusCode::NOT_FOUND, _)) => member = None,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        rejoins
    })
}

fn assignment(answer: &Value) -> Vec<Value> {
    answer["assignment"]
        .as_array()
        .expect("assignment")
        .iter()
        .map(|a| json!({"topic": a["topic"], "partition": a["partition"]}))
        .collect()
}

async fn produce(http: &reqwest::Client, entry: &str, round: usize) -> BTreeMap<u32, u64> {
    let mut ends = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let records: Vec<Value> = (0..50)
            .map(|i| json!({"value": format!("r{round}-{i}")}))
            .collect();
        let url = format!("{entry}/v1/topics/{TOPIC}/partitions/{partition}/records");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match call(
                http,
                reqwest::Method::POST,
                &url,
                Some(json!({"records": records})),
            )
            .await
            {
                Ok((StatusCode::OK, answer)) => {
                    let last = answer["offsets"]
                        .as_array()
                        .and_then(|o| o.last())
                        .expect("acks");
                    ends.insert(partition, last["offset"].as_u64().expect("offset") + 1);
                    break;
                }
                other => {
                    assert!(Instant::now() < deadline, "produce kept failing: {other:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    ends
}

/// Waits until the member has been given every offset below `ends`.
async fn wait_delivered(delivered: &Delivered, ends: &BTreeMap<u32, u64>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing: Vec<(u32, u64)> = {
            let seen = delivered.lock().expect("delivered");
            ends.iter()
                .flat_map(|(partition, end)| (0..*end).map(move |offset| (*partition, offset)))
                .filter(|key| !seen.contains(key))
                .take(5)
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never delivered, e.g. {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn committed(http: &reqwest::Client, entry: &str) -> BTreeMap<u32, u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((StatusCode::OK, answer)) = call(
            http,
            reqwest::Method::GET,
            &format!("{entry}/v1/groups/billing/offsets"),
            None,
        )
        .await
        {
            return answer["offsets"]
                .as_array()
                .expect("offsets")
                .iter()
                .filter_map(|p| {
                    Some((
                        p["partition"].as_u64()? as u32,
                        p["committed_offset"].as_u64()?,
                    ))
                })
                .collect();
        }
        assert!(Instant::now() < deadline, "offsets unreadable");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn no_step_back(before: &BTreeMap<u32, u64>, after: &BTreeMap<u32, u64>) {
    for (partition, offset) in before {
        let now = after.get(partition).copied().unwrap_or(0);
        assert!(
            now >= *offset,
            "partition {partition}'s committed offset went back: {offset} → {now}"
        );
    }
}

fn index_of(broker: &str) -> usize {
    broker
        .trim_start_matches('b')
        .parse()
        .expect("broker ids are b<index>")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_survives_its_coordinator_and_the_sequencer_leader_being_killed() {
    let mut cluster = FloeCluster::start(3, 1, FLAGS);
    let leader = cluster.wait_settled(3, Duration::from_secs(30)).await;
    floe_tests::create_topic(&cluster.client(leader), TOPIC, PARTITIONS).await;
    let http = reqwest::Client::new();

    // Learn the group's coordinator from a first member, which leaves again.
    let url0 = cluster.broker(0).url.clone();
    let (status, probe) = call(
        &http,
        reqwest::Method::POST,
        &format!("{url0}/v1/groups/billing/members"),
        Some(json!({"topics": [TOPIC]})),
    )
    .await
    .expect("join");
    assert_eq!(status, StatusCode::CREATED, "{probe}");
    let (_, described) = call(
        &http,
        reqwest::Method::GET,
        &format!("{url0}/v1/groups/billing"),
        None,
    )
    .await
    .expect("describe");
    let coordinator = index_of(described["coordinator"].as_str().expect("coordinator"));
    let probe_id = probe["member_id"].as_str().expect("id");
    call(
        &http,
        reqwest::Method::DELETE,
        &format!("{url0}/v1/groups/billing/members/{probe_id}"),
        None,
    )
    .await
    .expect("leave");
    // Consume through a broker that is not the coordinator, and preferably not the leader.
    let entry_index = (0..3)
        .filter(|index| *index != coordinator)
        .min_by_key(|index| usize::from(*index == leader))
        .expect("another broker");
    let entry = cluster.broker(entry_index).url.clone();
    eprintln!("coordinator b{coordinator}, leader b{leader}, member through b{entry_index}");

    // An error the coordinator answers through another broker: counted on the coordinator
    // under its code, and on the broker that passed it on as `forwarded`.
    let (status, refused) = call(
        &http,
        reqwest::Method::DELETE,
        &format!("{entry}/v1/groups/billing/members/no-such-member"),
        None,
    )
    .await
    .expect("leave of an unknown member");
    assert!(status.is_client_error(), "{status} {refused}");
    let code = refused["error_code"].as_str().expect("error_code");
    let answers = |code: &str| {
        format!(
            "floe_http_responses_total{{route=\"/v1/groups/{{group}}/members/{{member}}\",\
             method=\"DELETE\",status=\"{}\",error_code=\"{code}\"}}",
            status.as_u16()
        )
    };
    let coordinator_url = cluster.broker(coordinator).url.clone();
    assert_eq!(
        floe_tests::metric_at(&coordinator_url, &answers(code)).await,
        Some(1.0),
        "{}",
        answers(code)
    );
    assert_eq!(
        floe_tests::metric_at(&entry, &answers("forwarded")).await,
        Some(1.0),
        "{}",
        answers("forwarded")
    );

    let delivered: Delivered = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let member = run_member(entry.clone(), Arc::clone(&delivered), Arc::clone(&stop));
    let ends = produce(&http, &entry, 0).await;
    wait_delivered(&delivered, &ends, "before any kill").await;

    // SIGKILL the coordinator: a broker that survives takes the group over.
    let before = committed(&http, &entry).await;
    cluster.kill(coordinator);
    let ends = produce(&http, &entry, 1).await;
    wait_delivered(&delivered, &ends, "after the coordinator was killed").await;
    let after_coordinator = committed(&http, &entry).await;
    no_step_back(&before, &after_coordinator);

    // SIGKILL the sequencer leader too, if it is still up and is not the member's broker.
    let leader_now = cluster.wait_settled(2, Duration::from_secs(30)).await;
    if leader_now != entry_index {
        cluster.kill(leader_now);
        let ends = produce(&http, &entry, 2).await;
        wait_delivered(&delivered, &ends, "after the leader was killed").await;
        let after_leader = committed(&http, &entry).await;
        no_step_back(&after_coordinator, &after_leader);
    }

    // Auto-commit catches up with everything delivered.
    let hwm: BTreeMap<u32, u64> = {
        let seen = delivered.lock().expect("delivered");
        let partitions: BTreeSet<u32> = seen.iter().map(|(p, _)| *p).collect();
        partitions
            .into_iter()
            .map(|p| (p, seen.iter().filter(|(q, _)| *q == p).count() as u64))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = committed(&http, &entry).await;
        if hwm.iter().all(|(p, end)| now.get(p) == Some(end)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "commits did not catch up: {now:?} vs {hwm:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let rejoins = member.await.expect("member task");
    eprintln!("the member rejoined {rejoins} times");
}
