//! Enhanced fan-out: SubscribeToShard through the SDK and over raw HTTP/2, and a reader
//! that follows a stream through reshards as KCL does.

use super::*;

/// SubscribeToShard over HTTP/2 with prior knowledge: the `initial-response` event, then
/// the data of the first `want` records the SubscribeToShardEvents carry.
pub(crate) async fn subscribe_over_h2c(addr: &str, body: String, want: usize) -> Vec<String> {
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

/// A reader as KCL's enhanced fan-out reads: one SubscribeToShard per shard from
/// TRIM_HORIZON, renewed from its ContinuationSequenceNumber when a subscription ends
/// early; a shard's last event names its ChildShards and has no continuation, and a child
/// is read only once all its parents have ended, so each key's records arrive in order.
/// Notes the `n` of every `"{key}:{n}"` record delivered, per key, in delivery order.
pub(crate) fn follow(
    k: Client,
    consumer_arn: String,
    first: String,
    delivered: Acked,
) -> tokio::task::JoinHandle<()> {
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
    let arn = stream_arn(&k, "fanout").await;
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
