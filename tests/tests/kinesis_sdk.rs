//! The AWS SDK for Rust (aws-sdk-kinesis), unmodified, against a real 3-node cluster's
//! Kinesis HTTP API: every call goes through the SDK's own serializers, signer, retry
//! and error parsing.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, ScalingType, ShardIteratorType, StreamMode, StreamModeDetails, StreamStatus,
};
use aws_sdk_kinesis::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use freshet_broker::hashkey::HashKeyRange;
use freshet_tests::{kinesis_client as sdk, kinesis_client_with as sdk_with, Cluster};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn wait_active(k: &Client, stream: &str) {
    let start = Instant::now();
    loop {
        let s = k.describe_stream_summary().stream_name(stream).send().await.unwrap();
        if s.stream_description_summary().unwrap().stream_status() == &StreamStatus::Active {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{stream} never became ACTIVE");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every record of a shard from TRIM_HORIZON to where the reader is caught up (or the
/// closed shard ends): (partition key, data).
async fn read_shard(k: &Client, stream: &str, shard: &str) -> Vec<(String, String)> {
    let mut it = k
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let mut out = Vec::new();
    loop {
        let page = k.get_records().shard_iterator(&it).limit(10_000).send().await.unwrap();
        let empty = page.records().is_empty();
        for r in page.records() {
            out.push((
                r.partition_key().unwrap_or_default().to_string(),
                String::from_utf8(r.data().as_ref().to_vec()).unwrap(),
            ));
        }
        match page.next_shard_iterator() {
            Some(next) if !(empty && page.millis_behind_latest() == Some(0)) => it = next.to_string(),
            _ => return out,
        }
    }
}

/// ListStreams over HTTP/2 with prior knowledge (cleartext h2c, as Netty-based clients
/// such as the KCL's can speak it): the answer's body.
async fn list_streams_over_h2c(addr: &str) -> String {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post(format!("http://{addr}/"))
        .header("x-amz-target", "Kinesis_20131202.ListStreams")
        .header("content-type", "application/x-amz-json-1.1")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!((resp.version(), resp.status().as_u16()), (hyper::Version::HTTP_2, 200));
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// SubscribeToShard over HTTP/2 with prior knowledge: the `initial-response` event, then
/// the data of the first `want` records the SubscribeToShardEvents carry.
async fn subscribe_over_h2c(addr: &str, body: String, want: usize) -> Vec<String> {
    use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
    use base64::Engine;
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(tcp);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post(format!("http://{addr}/"))
        .header("x-amz-target", "Kinesis_20131202.SubscribeToShard")
        .header("content-type", "application/x-amz-json-1.1")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!((resp.version(), resp.status().as_u16()), (hyper::Version::HTTP_2, 200));
    assert_eq!(resp.headers()["content-type"], "application/vnd.amazon.eventstream");
    let mut body = resp.into_body();
    let (mut buf, mut decoder) = (bytes::BytesMut::new(), MessageFrameDecoder::new());
    let (mut event_types, mut data) = (Vec::new(), Vec::new());
    while data.len() < want {
        let frame = tokio::time::timeout(Duration::from_secs(20), body.frame()).await;
        let Ok(Some(Ok(frame))) = frame else { panic!("the stream ended after {event_types:?}") };
        buf.extend_from_slice(&frame.into_data().unwrap_or_default());
        while let DecodedFrame::Complete(message) = decoder.decode_frame(&mut buf).unwrap() {
            let header = |name: &str| {
                let h = message.headers().iter().find(|h| h.name().as_str() == name).unwrap();
                h.value().as_string().unwrap().as_str().to_string()
            };
            event_types.push(header(":event-type"));
            let payload: serde_json::Value = serde_json::from_slice(message.payload()).unwrap();
            for r in payload["Records"].as_array().into_iter().flatten() {
                let bytes = base64::engine::general_purpose::STANDARD.decode(r["Data"].as_str().unwrap());
                data.push(String::from_utf8(bytes.unwrap()).unwrap());
            }
        }
    }
    assert_eq!(event_types[0], "initial-response");
    assert!(event_types[1..].iter().all(|t| t == "SubscribeToShardEvent"), "{event_types:?}");
    data.truncate(want);
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_creates_writes_reads_and_gets_typed_errors() {
    let cluster = Cluster::start(3).await;
    let k = sdk(cluster.brokers[1].kinesis_endpoint());
    k.create_stream().stream_name("sdk").shard_count(2).send().await.unwrap();
    wait_active(&k, "sdk").await;
    let listed = list_streams_over_h2c(&cluster.brokers[2].kinesis_addr).await;
    assert!(listed.contains("\"sdk\""), "{listed}");
    let limits = k.describe_limits().send().await.unwrap();
    assert_eq!((limits.open_shard_count(), limits.on_demand_stream_count()), (2, 0), "{limits:?}");

    let one = k
        .put_record()
        .stream_name("sdk")
        .partition_key("k")
        .explicit_hash_key("7")
        .data(Blob::new(b"\x00\x01binary\xff".to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(one.shard_id(), "shardId-000000000000");
    let entries: Vec<PutRecordsRequestEntry> = (0..50)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("key-{i}"))
                .explicit_hash_key("7")
                .data(Blob::new(format!("r{i}").into_bytes()))
                .build()
                .unwrap()
        })
        .collect();
    let batch = k.put_records().stream_name("sdk").set_records(Some(entries)).send().await.unwrap();
    assert_eq!(batch.failed_record_count(), Some(0));

    // Read from another node, from the first record's sequence number on.
    let other = sdk(cluster.brokers[2].kinesis_endpoint());
    let it = other
        .get_shard_iterator()
        .stream_name("sdk")
        .shard_id(one.shard_id())
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(one.sequence_number())
        .send()
        .await
        .unwrap();
    let page = other.get_records().shard_iterator(it.shard_iterator().unwrap()).send().await.unwrap();
    assert_eq!(page.records().len(), 51);
    assert_eq!(page.records()[0].data().as_ref(), b"\x00\x01binary\xff");
    assert_eq!(page.records()[50].data().as_ref(), b"r49");
    let arrived = page.records()[0].approximate_arrival_timestamp().unwrap().secs();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((arrived - now).abs() < 120, "arrival {arrived}, now {now}");
    assert_eq!(page.millis_behind_latest(), Some(0));

    let shards = k.list_shards().stream_name("sdk").send().await.unwrap();
    assert_eq!(shards.shards().len(), 2);
    assert_eq!(shards.shards()[1].hash_key_range().unwrap().ending_hash_key(), (u128::MAX).to_string());

    let missing = k.describe_stream_summary().stream_name("nope").send().await.unwrap_err();
    let missing = missing.into_service_error();
    assert!(missing.is_resource_not_found_exception(), "{missing:?}");
    let dup =
        k.create_stream().stream_name("sdk").shard_count(1).send().await.unwrap_err().into_service_error();
    assert!(dup.is_resource_in_use_exception(), "{dup:?}");
    let bad = k.get_records().shard_iterator("forged").send().await.unwrap_err().into_service_error();
    assert!(bad.is_invalid_argument_exception(), "{bad:?}");
}

/// Producers keep writing through the SDK while a split and then a merge reshape the
/// stream: every acknowledged record is read back, and each key's records come in the
/// order they were acknowledged, parents before children.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_and_a_merge_under_sdk_producers_lose_and_reorder_nothing() {
    let cluster = Cluster::start(3).await;
    let k = sdk(cluster.brokers[0].kinesis_endpoint());
    k.create_stream().stream_name("busy").shard_count(1).send().await.unwrap();
    wait_active(&k, "busy").await;
    // An enhanced fan-out reader follows the stream through both reshards meanwhile.
    let stream_arn = "arn:aws:kinesis:us-east-1:000000000000:stream/busy";
    let consumer = k.register_stream_consumer().stream_arn(stream_arn).consumer_name("follower").send();
    let consumer_arn = consumer.await.unwrap().consumer().unwrap().consumer_arn().to_string();
    let delivered: Acked = Arc::default();
    let follower = follow(k.clone(), consumer_arn, "shardId-000000000000".into(), delivered.clone());

    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..3)
        .map(|p| {
            let keys = (0..8).map(|i| (format!("p{p}-k{i}"), None)).collect();
            let k = sdk(cluster.brokers[p].kinesis_endpoint());
            produce(k, "busy", keys, String::new(), acked.clone(), stop.clone())
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let mid = (1u128 << 127).to_string();
    k.split_shard()
        .stream_name("busy")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(&mid)
        .send()
        .await
        .unwrap();
    wait_active(&k, "busy").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    k.merge_shards()
        .stream_name("busy")
        .shard_to_merge("shardId-000000000001")
        .adjacent_shard_to_merge("shardId-000000000002")
        .send()
        .await
        .unwrap();
    wait_active(&k, "busy").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.unwrap();
    }

    // Parents before children: shard ids grow with each reshard.
    let shards = k.list_shards().stream_name("busy").send().await.unwrap();
    let ids: Vec<String> = shards.shards().iter().map(|s| s.shard_id().to_string()).collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    let acked = acked.lock().unwrap().clone();
    verify_every_acked_record_in_order(&k, "busy", &ids, &acked).await;
    // The subscriber got every acknowledged record too, each key's in order, through the
    // split's children and then the merge's.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !acked.iter().all(|(key, ns)| {
        let got = delivered.lock().unwrap().get(key).cloned().unwrap_or_default();
        ns.iter().all(|n| got.contains(n))
    }) {
        assert!(Instant::now() < deadline, "the subscriber fell behind for good");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    follower.abort();
    let delivered = delivered.lock().unwrap().clone();
    for (key, ns) in &acked {
        check_in_order(key, ns, delivered.get(key).map(Vec::as_slice).unwrap_or_default());
    }
}

/// A reader as KCL's enhanced fan-out reads: one SubscribeToShard per shard from
/// TRIM_HORIZON, renewed from its ContinuationSequenceNumber when a subscription ends
/// early; a shard's last event names its ChildShards and has no continuation, and a child
/// is read only once all its parents have ended, so each key's records arrive in order.
/// Notes the `n` of every `"{key}:{n}"` record delivered, per key, in delivery order.
fn follow(k: Client, consumer_arn: String, first: String, delivered: Acked) -> tokio::task::JoinHandle<()> {
    use aws_sdk_kinesis::types::{StartingPosition, SubscribeToShardEventStream};
    use tokio::sync::mpsc;
    tokio::spawn(async move {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let ended: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let mut started = BTreeSet::new();
        let mut readers = tokio::task::JoinSet::new();
        tx.send(first).unwrap();
        while let Some(shard) = rx.recv().await {
            if !started.insert(shard.clone()) {
                continue;
            }
            let (k, arn, delivered, ended, tx) =
                (k.clone(), consumer_arn.clone(), delivered.clone(), ended.clone(), tx.clone());
            readers.spawn(async move {
                let mut position =
                    StartingPosition::builder().r#type(ShardIteratorType::TrimHorizon).build().unwrap();
                loop {
                    let call = k.subscribe_to_shard().consumer_arn(&arn).shard_id(&shard);
                    let Ok(out) = call.starting_position(position.clone()).send().await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    let mut events = out.event_stream;
                    while let Ok(Some(event)) = events.recv().await {
                        let SubscribeToShardEventStream::SubscribeToShardEvent(e) = event else { continue };
                        let mut got = delivered.lock().unwrap();
                        for r in e.records() {
                            let data = String::from_utf8(r.data().as_ref().to_vec()).unwrap();
                            let (key, n) = data.rsplit_once(':').unwrap();
                            got.entry(key.to_string()).or_default().push(n.parse().unwrap());
                        }
                        drop(got);
                        if e.continuation_sequence_number().is_empty() {
                            // The shard's end: its children, once all their parents have ended.
                            let mut ended = ended.lock().unwrap();
                            ended.insert(shard.clone());
                            for c in e.child_shards() {
                                if c.parent_shards().iter().all(|p| ended.contains(p)) {
                                    tx.send(c.shard_id().to_string()).unwrap();
                                }
                            }
                            return;
                        }
                        position = StartingPosition::builder()
                            .r#type(ShardIteratorType::AfterSequenceNumber)
                            .sequence_number(e.continuation_sequence_number())
                            .build()
                            .unwrap();
                    }
                }
            });
        }
    })
}

/// `got` (the `n`s of `key`'s records as read, repeats allowed) holds every `n` of
/// `acked`, first seen in increasing order.
fn check_in_order(key: &str, acked: &[u64], got: &[u64]) {
    let got_set: BTreeSet<u64> = got.iter().copied().collect();
    let missing: Vec<&u64> = acked.iter().filter(|n| !got_set.contains(n)).collect();
    assert!(missing.is_empty(), "{key}: acknowledged but not read: {missing:?}");
    let mut firsts = Vec::new();
    for n in got {
        if !firsts.contains(n) {
            firsts.push(*n);
        }
    }
    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{key} out of order: {got:?}");
}

/// The `n`s of the `"{key}:{n}"` records acknowledged, per key.
type Acked = Arc<Mutex<BTreeMap<String, Vec<u64>>>>;

/// A producer that, until `stop`, sends one PutRecords per round carrying record `n` of
/// each key (data `"{pad}{key}:{n}"`, routed by the key's explicit hash key when given)
/// and notes in `acked` what was acknowledged. A request whose outcome is unknown goes
/// again with the same `n`, so duplicates are allowed, reordering is not.
fn produce(
    k: Client,
    stream: &'static str,
    keys: Vec<(String, Option<String>)>,
    pad: String,
    acked: Acked,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let entries = keys
                .iter()
                .map(|(key, hash)| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(key)
                        .set_explicit_hash_key(hash.clone())
                        .data(Blob::new(format!("{pad}{key}:{n}").into_bytes()))
                        .build()
                        .unwrap()
                })
                .collect();
            let Ok(out) = k.put_records().stream_name(stream).set_records(Some(entries)).send().await else {
                continue;
            };
            let mut acked = acked.lock().unwrap();
            for ((key, _), r) in keys.iter().zip(out.records()) {
                if r.error_code().is_none() {
                    acked.entry(key.clone()).or_default().push(n);
                }
            }
            drop(acked);
            n += 1;
        }
    })
}

/// Reads `shards` in order (parents before children) and checks that every record in
/// `acked` (key -> the `n`s of `"{key}:{n}"` data acknowledged) was read, and each key's
/// in the order acknowledged. Retries may repeat a record, never reorder it.
async fn verify_every_acked_record_in_order(
    k: &Client,
    stream: &str,
    shards: &[String],
    acked: &BTreeMap<String, Vec<u64>>,
) {
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for id in shards {
        for (key, data) in read_shard(k, stream, id).await {
            let n: u64 = data.rsplit_once(':').unwrap().1.parse().unwrap();
            seen.entry(key).or_default().push(n);
        }
    }
    let total: usize = acked.values().map(Vec::len).sum();
    assert!(total > 100, "only {total} records acknowledged");
    for (key, ns) in acked.iter() {
        check_in_order(key, ns, seen.get(key).map(Vec::as_slice).unwrap_or_default());
    }
}

async fn open_shards(k: &Client, stream: &str) -> (i32, StreamStatus) {
    let s = k.describe_stream_summary().stream_name(stream).send().await.unwrap();
    let s = s.stream_description_summary().unwrap();
    (s.open_shard_count(), s.stream_status().clone())
}

/// ON_DEMAND streams scale by themselves: a shard written at more than half its capacity
/// for the configured window is split at the middle of its range while the producer keeps
/// going (nothing acknowledged lost or reordered), cool shards stay as they are, a stream
/// switched to ON_DEMAND with one shard grows to four, and none goes below four.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_streams_split_hot_shards_and_keep_four_at_least() {
    let cluster = Cluster::start_with(3, &[("FRESHET_ON_DEMAND_SPLIT_AFTER_SECS", "5")]).await;
    let k = sdk(cluster.brokers[0].kinesis_endpoint());
    let on_demand = || StreamModeDetails::builder().stream_mode(StreamMode::OnDemand).build().unwrap();
    k.create_stream().stream_name("auto").stream_mode_details(on_demand()).send().await.unwrap();
    wait_active(&k, "auto").await;
    let refused = k
        .update_shard_count()
        .stream_name("auto")
        .target_shard_count(8)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        refused.is_invalid_argument_exception()
            && refused.meta().message().unwrap_or_default().contains("PROVISIONED"),
        "{refused:?}"
    );

    // One producer keeps shard 0 (the lowest quarter of the key space) above 1 MiB/s
    // asked, 16 keys spread over its range; the limit throttles what is beyond capacity.
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let keys = (0..16u128).map(|j| (format!("k{j}"), Some((j << 122).to_string()))).collect();
    let k1 = sdk(cluster.brokers[1].kinesis_endpoint());
    let producer = produce(k1, "auto", keys, "x".repeat(6_000), acked.clone(), stop.clone());
    let start = Instant::now();
    while open_shards(&k, "auto").await != (5, StreamStatus::Active) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the hot shard was never split:\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    producer.await.unwrap();

    let shards = k.list_shards().stream_name("auto").send().await.unwrap();
    let ids: Vec<String> = shards.shards().iter().map(|s| s.shard_id().to_string()).collect();
    assert_eq!(ids.len(), 6, "the hot shard split in two, the cool ones untouched: {ids:?}");
    let quarter = HashKeyRange::split_evenly(4)[0];
    let children: Vec<(String, String, String)> = shards
        .shards()
        .iter()
        .filter(|s| s.parent_shard_id() == Some("shardId-000000000000"))
        .map(|s| {
            let r = s.hash_key_range().unwrap();
            (s.shard_id().to_string(), r.starting_hash_key().to_string(), r.ending_hash_key().to_string())
        })
        .collect();
    let mid = quarter.start + (quarter.end - quarter.start) / 2 + 1;
    assert_eq!(
        children,
        vec![
            ("shardId-000000000004".into(), quarter.start.to_string(), (mid - 1).to_string()),
            ("shardId-000000000005".into(), mid.to_string(), quarter.end.to_string()),
        ]
    );
    let acked = acked.lock().unwrap().clone();
    verify_every_acked_record_in_order(&k, "auto", &ids, &acked).await;

    // A PROVISIONED stream of one shard switched to ON_DEMAND grows to four by itself,
    // and is never merged below four.
    k.create_stream().stream_name("grow").shard_count(1).send().await.unwrap();
    wait_active(&k, "grow").await;
    let arn = k
        .describe_stream_summary()
        .stream_name("grow")
        .send()
        .await
        .unwrap()
        .stream_description_summary()
        .unwrap()
        .stream_arn()
        .to_string();
    k.update_stream_mode().stream_arn(&arn).stream_mode_details(on_demand()).send().await.unwrap();
    let start = Instant::now();
    while open_shards(&k, "grow").await != (4, StreamStatus::Active) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the ON_DEMAND stream never grew to 4 shards:\n{}",
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let open: Vec<String> = k
        .list_shards()
        .stream_name("grow")
        .send()
        .await
        .unwrap()
        .shards()
        .iter()
        .filter(|s| s.sequence_number_range().is_some_and(|r| r.ending_sequence_number().is_none()))
        .map(|s| s.shard_id().to_string())
        .collect();
    let merge = k
        .merge_shards()
        .stream_name("grow")
        .shard_to_merge(&open[0])
        .adjacent_shard_to_merge(&open[1])
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        merge.is_invalid_argument_exception()
            && merge.meta().message().unwrap_or_default().contains("keeps at least 4 open shards"),
        "{merge:?}"
    );
}

/// Enhanced fan-out: a registered consumer's SubscribeToShard pushes records as they are
/// written, framed as an AWS event stream that the SDK's own decoder reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_to_shard_pushes_records_to_a_registered_consumer() {
    use aws_sdk_kinesis::types::{StartingPosition, SubscribeToShardEventStream};
    let cluster = Cluster::start(3).await;
    let k = sdk(cluster.brokers[0].kinesis_endpoint());
    k.create_stream().stream_name("fanout").shard_count(1).send().await.unwrap();
    wait_active(&k, "fanout").await;
    k.put_record()
        .stream_name("fanout")
        .partition_key("k")
        .data(Blob::new(b"before".to_vec()))
        .send()
        .await
        .unwrap();
    let arn = k
        .describe_stream_summary()
        .stream_name("fanout")
        .send()
        .await
        .unwrap()
        .stream_description_summary()
        .unwrap()
        .stream_arn()
        .to_string();
    let consumer = k.register_stream_consumer().stream_arn(&arn).consumer_name("app").send().await.unwrap();
    let consumer_arn = consumer.consumer().unwrap().consumer_arn().to_string();

    let subscriber = sdk(cluster.brokers[2].kinesis_endpoint());
    let start = StartingPosition::builder().r#type(ShardIteratorType::TrimHorizon).build().unwrap();
    let out = subscriber
        .subscribe_to_shard()
        .consumer_arn(&consumer_arn)
        .shard_id("shardId-000000000000")
        .starting_position(start.clone())
        .send()
        .await
        .unwrap();
    let mut events = out.event_stream;
    for i in 0..5 {
        k.put_record()
            .stream_name("fanout")
            .partition_key("k")
            .data(Blob::new(format!("live-{i}").into_bytes()))
            .send()
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    let mut continuation = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 6 {
        assert!(Instant::now() < deadline, "only {got:?} arrived");
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(e)))) => {
                got.extend(
                    e.records().iter().map(|r| String::from_utf8(r.data().as_ref().to_vec()).unwrap()),
                );
                continuation = e.continuation_sequence_number().to_string();
            }
            Ok(Ok(Some(_))) => {}
            other => panic!("the subscription ended early: {other:?}"),
        }
    }
    assert_eq!(got, ["before", "live-0", "live-1", "live-2", "live-3", "live-4"]);
    assert!(!continuation.is_empty());
    // Idle, the subscription gets an event without records every few seconds, naming
    // the last record delivered as where to resume.
    match tokio::time::timeout(Duration::from_secs(15), events.recv()).await {
        Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(e)))) => {
            assert!(e.records().is_empty(), "{e:?}");
            assert_eq!(
                (e.continuation_sequence_number(), e.millis_behind_latest()),
                (continuation.as_str(), 0)
            );
        }
        other => panic!("no keep-alive event on an idle subscription: {other:?}"),
    }

    // The same subscription over HTTP/2 (cleartext, prior knowledge), decoded with the
    // event-stream framing the SDKs use.
    let body = format!(
        r#"{{"ConsumerARN":"{consumer_arn}","ShardId":"shardId-000000000000","StartingPosition":{{"Type":"TRIM_HORIZON"}}}}"#
    );
    let over_h2 = subscribe_over_h2c(&cluster.brokers[1].kinesis_addr, body, 6).await;
    assert_eq!(over_h2, ["before", "live-0", "live-1", "live-2", "live-3", "live-4"]);

    // An ARN names one registration: after a deregister and a new registration under the
    // same name, the old ARN finds nothing.
    k.deregister_stream_consumer().consumer_arn(&consumer_arn).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // a new registration second
    let again = k.register_stream_consumer().stream_arn(&arn).consumer_name("app").send().await.unwrap();
    assert_ne!(again.consumer().unwrap().consumer_arn(), consumer_arn);
    let stale = k.describe_stream_consumer().consumer_arn(&consumer_arn).send().await.unwrap_err();
    assert!(stale.into_service_error().is_resource_not_found_exception());

    let unknown = subscriber
        .subscribe_to_shard()
        .consumer_arn(format!("{arn}/consumer/nobody:1"))
        .shard_id("shardId-000000000000")
        .starting_position(start)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(unknown.is_resource_not_found_exception(), "{unknown:?}");
}

/// A subscriber on a shard that is split sees the shard end with its ChildShards, and
/// subscribing to the children continues the stream: nothing written before or after the
/// split is missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_with_the_child_shards_of_a_split() {
    use aws_sdk_kinesis::types::{StartingPosition, SubscribeToShardEventStream};
    let cluster = Cluster::start(3).await;
    let k = sdk(cluster.brokers[0].kinesis_endpoint());
    k.create_stream().stream_name("reshape").shard_count(1).send().await.unwrap();
    wait_active(&k, "reshape").await;
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/reshape".to_string();
    let c = k.register_stream_consumer().stream_arn(&arn).consumer_name("kcl").send().await.unwrap();
    let consumer_arn = c.consumer().unwrap().consumer_arn().to_string();
    let put = |i: u32| {
        let k = k.clone();
        async move {
            k.put_record()
                .stream_name("reshape")
                .partition_key("same-key")
                .data(Blob::new(format!("r{i}").into_bytes()))
                .send()
                .await
                .unwrap();
        }
    };
    for i in 0..3 {
        put(i).await;
    }
    let from_start = StartingPosition::builder().r#type(ShardIteratorType::TrimHorizon).build().unwrap();
    let out = k
        .subscribe_to_shard()
        .consumer_arn(&consumer_arn)
        .shard_id("shardId-000000000000")
        .starting_position(from_start.clone())
        .send()
        .await
        .unwrap();
    let mid = (1u128 << 127).to_string();
    k.split_shard()
        .stream_name("reshape")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(&mid)
        .send()
        .await
        .unwrap();
    wait_active(&k, "reshape").await;
    for i in 3..6 {
        put(i).await;
    }

    // The parent's events end with its children named.
    let mut events = out.event_stream;
    let mut got = Vec::new();
    let children = loop {
        match tokio::time::timeout(Duration::from_secs(20), events.recv()).await {
            Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(e)))) => {
                got.extend(
                    e.records().iter().map(|r| String::from_utf8(r.data().as_ref().to_vec()).unwrap()),
                );
                if !e.child_shards().is_empty() {
                    // The end, as KCL recognises it: no ContinuationSequenceNumber (the SDK
                    // reads the absent member as "").
                    assert_eq!(e.continuation_sequence_number(), "", "{e:?}");
                    break e.child_shards().iter().map(|c| c.shard_id().to_string()).collect::<Vec<_>>();
                }
                assert!(!e.continuation_sequence_number().is_empty(), "{e:?}");
            }
            Ok(Ok(Some(_))) => {}
            other => panic!("the parent's subscription ended without ChildShards: {other:?} after {got:?}"),
        }
    };
    assert_eq!(got, ["r0", "r1", "r2"]);
    assert_eq!(children.len(), 2, "{children:?}");
    // The key's later records are in the child whose range holds its hash, from its start.
    let hash = freshet_tests::freshet_broker::hashkey::hash_partition_key("same-key");
    let child = if hash < (1u128 << 127) { &children[0] } else { &children[1] };
    let out = k
        .subscribe_to_shard()
        .consumer_arn(&consumer_arn)
        .shard_id(child)
        .starting_position(from_start)
        .send()
        .await
        .unwrap();
    let mut events = out.event_stream;
    let mut later = Vec::new();
    while later.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(20), events.recv()).await {
            Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(e)))) => later
                .extend(e.records().iter().map(|r| String::from_utf8(r.data().as_ref().to_vec()).unwrap())),
            Ok(Ok(Some(_))) => {}
            other => panic!("the child's subscription ended early: {other:?} after {later:?}"),
        }
    }
    assert_eq!(later, ["r3", "r4", "r5"]);
}

/// With a certificate configured, the Kinesis API speaks TLS (the KPL only speaks TLS):
/// the SDK, trusting that certificate, works over https; plain http no longer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kinesis_api_serves_tls_with_a_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key_pem).unwrap();
    let cert_path = dir.path().join("cert.pem").display().to_string();
    let key_path = dir.path().join("key.pem").display().to_string();
    let cluster = Cluster::start_with(
        3,
        &[("FRESHET_KINESIS_TLS_CERT", cert_path.as_str()), ("FRESHET_KINESIS_TLS_KEY", key_path.as_str())],
    )
    .await;
    let trust = tls::TrustStore::empty().with_pem_certificate(cert_pem.into_bytes());
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls::TlsContext::builder().with_trust_store(trust).build().unwrap())
        .build_https();
    let k = sdk_with(format!("https://{}", cluster.brokers[1].kinesis_addr), http);
    k.create_stream().stream_name("secure").shard_count(1).send().await.unwrap();
    wait_active(&k, "secure").await;
    let put = k
        .put_record()
        .stream_name("secure")
        .partition_key("k")
        .data(Blob::new(b"over tls".to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        read_shard(&k, "secure", put.shard_id()).await,
        vec![("k".to_string(), "over tls".to_string())]
    );
    // The same port in plain http is refused at the handshake.
    let plain = sdk(cluster.brokers[1].kinesis_endpoint());
    assert!(plain.list_streams().send().await.is_err());
}
