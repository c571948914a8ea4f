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

mod fanout;
mod support;

use fanout::follow;
use support::*;

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
    let within = Duration::from_secs(120);
    wait_for_open_shards(&k, "auto", 5, within, "the hot shard was never split", &cluster).await;
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
    let arn = stream_arn(&k, "grow").await;
    k.update_stream_mode().stream_arn(&arn).stream_mode_details(on_demand()).send().await.unwrap();
    let within = Duration::from_secs(60);
    wait_for_open_shards(&k, "grow", 4, within, "the ON_DEMAND stream never grew to 4 shards", &cluster)
        .await;
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
