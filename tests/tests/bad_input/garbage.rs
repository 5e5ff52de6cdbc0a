//! Random garbage bodies, mutated from valid ones: the server stays up, and what it
//! accepts is stored exactly as given.

use super::*;

/// Up to `max` printable ASCII characters, none that JSON escapes.
fn random_text(rng: &mut impl rand::Rng, max: usize) -> String {
    let length = rng.random_range(0..max);
    (0..length)
        .map(|_| char::from(rng.random_range(b' '..=b'~')))
        .filter(|c| *c != '"' && *c != '\\')
        .collect()
}

/// A produce body of 1–3 random, valid records, as JSON (text encoding) or in the binary
/// framing.
fn valid_body(rng: &mut impl rand::Rng, json: bool) -> Vec<u8> {
    let now = floe_core::SystemClock.now_ms();
    let records: Vec<BinaryRecord> = (0..rng.random_range(1..=3))
        .map(|_| BinaryRecord {
            partition: rng.random_bool(0.5).then(|| rng.random_range(0..2)),
            timestamp: rng
                .random_bool(0.5)
                .then(|| now + rng.random_range(-3_600_000..3_600_000)),
            key: rng
                .random_bool(0.5)
                .then(|| Bytes::from(random_text(rng, 12))),
            value: rng
                .random_bool(0.9)
                .then(|| Bytes::from(random_text(rng, 40))),
            headers: (0..rng.random_range(0..3))
                .map(|_| {
                    let name = format!("h{}", random_text(rng, 5));
                    (
                        name,
                        rng.random_bool(0.8)
                            .then(|| Bytes::from(random_text(rng, 10))),
                    )
                })
                .collect(),
            ..BinaryRecord::default()
        })
        .collect();
    if !json {
        return floe_client::binary::encode_produce(&records).to_vec();
    }
    let as_text = |bytes: &Bytes| Value::from(String::from_utf8_lossy(bytes).into_owned());
    let records: Vec<ProduceRecordJson> = records
        .iter()
        .map(|record| ProduceRecordJson {
            key: record.key.as_ref().map(as_text),
            value: record.value.as_ref().map(as_text),
            headers: record
                .headers
                .iter()
                .map(|(name, value)| HeaderJson {
                    name: name.clone(),
                    value: value.as_ref().map(as_text),
                })
                .collect(),
            partition: record.partition,
            timestamp: record.timestamp,
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "records": records })).expect("encode")
}

/// `body` with 1–3 random bytes changed, inserted or removed, or cut short.
fn mutate(rng: &mut impl rand::Rng, mut body: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.random_range(1..=3) {
        if body.is_empty() {
            break;
        }
        let at = rng.random_range(0..body.len());
        match rng.random_range(0..10) {
            0..=5 => body[at] = rng.random(),
            6 => body.insert(at, rng.random()),
            7 | 8 => {
                body.remove(at);
            }
            _ => body.truncate(at),
        }
    }
    body
}

/// The records an accepted body gave, as the framing or the JSON API decodes it.
fn given_records(body: &[u8], json: bool) -> Result<Vec<BinaryRecord>, String> {
    if !json {
        return floe_client::binary::decode_produce(Bytes::copy_from_slice(body), usize::MAX)
            .map_err(|error| error.to_string());
    }
    let request: floe_client::api::ProduceRequest =
        serde_json::from_slice(body).map_err(|error| error.to_string())?;
    let as_bytes = |value: &Option<Value>| -> Result<Option<Bytes>, String> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(Bytes::from(text.clone()))),
            Some(other) => Err(format!("a text-encoded field holds {other}")),
        }
    };
    request
        .records
        .iter()
        .map(|record| {
            Ok(BinaryRecord {
                partition: record.partition,
                timestamp: record.timestamp,
                key: as_bytes(&record.key)?,
                value: as_bytes(&record.value)?,
                headers: record
                    .headers
                    .iter()
                    .map(|header| Ok((header.name.clone(), as_bytes(&header.value)?)))
                    .collect::<Result<_, String>>()?,
                ..BinaryRecord::default()
            })
        })
        .collect()
}

/// Random bytes and mutated valid bodies, as JSON and in the binary framing: every one is
/// refused with a 4xx in the error shape or accepted, and what was accepted is stored as
/// given, where its answer said, and nothing else is.
#[tokio::test]
async fn random_garbage_bodies_never_break_the_server() {
    use rand::{Rng, SeedableRng};
    let seed = floe_tests::seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FloeProcess::start(dir.path(), &[]);
    let client = server.client();
    floe_tests::create_topic(&client, "t", 2).await;
    // (partition, offset) → the record an accepted body put there.
    let mut expected: BTreeMap<(u32, u64), BinaryRecord> = BTreeMap::new();
    let mut accepted = 0;
    let mut failures = Vec::new();
    for round in 0..400 {
        let json = rng.random_bool(0.5);
        let body: Vec<u8> = if rng.random_bool(0.25) {
            let length = rng.random_range(0..512);
            (0..length).map(|_| rng.random()).collect()
        } else {
            let valid = valid_body(&mut rng, json);
            mutate(&mut rng, valid)
        };
        let content_type = if json {
            "application/json"
        } else {
            floe_client::binary::CONTENT_TYPE
        };
        let (status, answer) = client
            .raw(
                Method::POST,
                "/v1/topics/t/records",
                content_type,
                body.clone(),
            )
            .await
            .expect("request");
        let shown = String::from_utf8_lossy(&body);
        if !status.is_success() {
            let error: Result<ErrorBody, _> = serde_json::from_slice(&answer);
            if !status.is_client_error() || error.is_err() {
                failures.push(format!(
                    "round {round}: {status} {} for {shown:?}",
                    String::from_utf8_lossy(&answer)
                ));
            }
            continue;
        }
        accepted += 1;
        let given = match given_records(&body, json) {
            Ok(given) => given,
            Err(why) => {
                failures.push(format!(
                    "round {round}: accepted a body the API refuses ({why}): {shown:?}"
                ));
                continue;
            }
        };
        let answer: floe_client::api::ProduceResponse =
            serde_json::from_slice(&answer).expect("a produce answer");
        if answer.offsets.len() != given.len() {
            failures.push(format!(
                "round {round}: {} records given, {} offsets answered",
                given.len(),
                answer.offsets.len()
            ));
            continue;
        }
        for (record, place) in given.into_iter().zip(&answer.offsets) {
            if record.partition.is_some_and(|p| p != place.partition)
                || record.timestamp.is_some_and(|t| t != place.timestamp)
            {
                failures.push(format!("round {round}: {record:?} answered with {place:?}"));
            }
            let stored = BinaryRecord {
                partition: None,
                offset: place.offset,
                timestamp: Some(place.timestamp),
                ..record
            };
            expected.insert((place.partition, place.offset), stored);
        }
    }
    // Read back: exactly the accepted records, each where its answer put it, as given.
    let mut stored = BTreeMap::new();
    for partition in 0..2 {
        let described = client.describe_topic("t").await.expect("describe");
        let high_watermark = described.partitions[partition as usize].high_watermark;
        for record in read_records(&client, "t", partition, 0, high_watermark).await {
            stored.insert((partition, record.offset), record);
        }
    }
    for (place, record) in &expected {
        if stored.get(place) != Some(record) {
            failures.push(format!(
                "{place:?} holds {:?}, not the accepted {record:?}",
                stored.get(place)
            ));
        }
    }
    for place in stored.keys().filter(|place| !expected.contains_key(place)) {
        failures.push(format!("{place:?} holds a record no accepted body gave"));
    }
    eprintln!(
        "{accepted} of 400 garbage bodies accepted, {} records stored and read back",
        stored.len()
    );
    assert!(failures.is_empty(), "seed {seed}:\n{}", failures.join("\n"));
    assert!(
        accepted > 0,
        "seed {seed}: some garbage is well-formed and its storage was checked"
    );
    let (status, _) = client
        .raw(Method::GET, "/healthz", "text/plain", "")
        .await
        .expect("health");
    assert_eq!(status.as_u16(), 200);
}
