//! The native gRPC API against a real 3-node cluster: lifecycle, iterators, push
//! subscriptions, limits, retention, and every class of bad input.

use freshet_tests::freshet_broker::hashkey::HashKeyRange;
use freshet_tests::freshet_broker::pb::{self, IteratorType};
use freshet_tests::{put_request, read_all, unlimited, Cluster};
use std::time::Duration;
use tonic::Code;

fn entry(key: &str, data: Vec<u8>) -> pb::PutRecordsEntry {
    pb::PutRecordsEntry { partition_key: key.into(), data: data.into(), explicit_hash_key: None }
}

fn error_type(s: &tonic::Status) -> &str {
    s.metadata().get("x-freshet-error-type").and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_lifecycle_and_kinesis_hash_ranges() {
    let cluster = Cluster::start(3).await;
    let mut api = cluster.client(2).api.clone();
    api.create_stream(pb::CreateStreamRequest {
        stream_name: "clicks".into(),
        shard_count: 3,
        retention_hours: Some(48),
        replication_factor: Some(3),
        limits: None,
        ..Default::default()
    })
    .await
    .unwrap();
    let d = cluster.client(3).describe("clicks").await.unwrap();
    assert!(d.status == "CREATING" || d.status == "ACTIVE", "{}", d.status);
    cluster.create_stream("other", 1, None).await; // waits for ACTIVE
    let start = std::time::Instant::now();
    while cluster.client(1).describe("clicks").await.unwrap().status != "ACTIVE" {
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = cluster.client(1).describe("clicks").await.unwrap();
    assert_eq!((d.retention_hours, d.replication_factor), (48, 3));
    let expected = HashKeyRange::split_evenly(3);
    for (i, s) in d.shards.iter().enumerate() {
        assert_eq!(s.shard_id, format!("shardId-{i:012}"));
        assert_eq!(s.starting_hash_key, expected[i].start.to_string());
        assert_eq!(s.ending_hash_key, expected[i].end.to_string());
        assert_eq!(s.starting_sequence_number.len(), 56);
        assert_eq!(s.replicas.len(), 3);
        assert!(s.ending_sequence_number.is_none());
    }
    let names = api.list_streams(pb::ListStreamsRequest {}).await.unwrap().into_inner().stream_names;
    assert_eq!(names, vec!["clicks".to_string(), "other".to_string()]);

    // Writes and reads through different nodes.
    let r = api.put_record(put_request("clicks", "user-1", b"hello")).await.unwrap().into_inner();
    let read = read_all(&cluster.client(3), "clicks").await;
    assert_eq!(read[&r.shard_id].len(), 1);
    assert_eq!(read[&r.shard_id][0].sequence_number, r.sequence_number);
    assert_eq!(read[&r.shard_id][0].data, &b"hello"[..]);

    api.delete_stream(pb::DeleteStreamRequest { stream_name: "clicks".into() }).await.unwrap();
    let e = cluster.client(1).describe("clicks").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), "Stream clicks under account 000000000000 not found.");
    // A new stream of the same name starts empty.
    cluster.create_stream("clicks", 1, None).await;
    let read = read_all(&cluster.client(1), "clicks").await;
    assert!(read.values().all(|v| v.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_stream_reclaims_its_storage() {
    let mut cluster = Cluster::start(3).await;
    cluster.create_stream("keep", 1, unlimited()).await;
    cluster.create_stream("drop", 2, unlimited()).await;
    let mut api = cluster.client(1).api.clone();
    for i in 0..200 {
        api.put_record(put_request("drop", &format!("k{i}"), [7u8; 1000])).await.unwrap();
    }
    let status = api.cluster_status(pb::ClusterStatusRequest {}).await.unwrap().into_inner();
    let dropped: Vec<u64> =
        status.groups.iter().filter(|g| g.stream_name == "drop").map(|g| g.group_id).collect();
    assert_eq!(dropped.len(), 2);
    api.delete_stream(pb::DeleteStreamRequest { stream_name: "drop".into() }).await.unwrap();
    // Wait until no node runs a replica of the deleted stream any more.
    let start = std::time::Instant::now();
    loop {
        let s = api.cluster_status(pb::ClusterStatusRequest {}).await.unwrap().into_inner();
        if s.groups.iter().all(|g| g.stream_name != "drop") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "replicas of a deleted stream still running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Inspect node 2's RocksDB directly: nothing of the deleted shards is left.
    cluster.stop(2);
    let store = freshet_tests::freshet_broker::storage::Store::open(&cluster.brokers[1].data.join("rocksdb"))
        .unwrap();
    let groups = store.groups_on_disk().unwrap();
    for g in &dropped {
        assert!(!groups.contains(g), "group {g} of the deleted stream still on disk: {groups:?}");
    }
    let (from, to) = freshet_tests::freshet_broker::storage::keys::log_range(dropped[0], 0, u64::MAX);
    assert_eq!(store.scan("log", from, to).count(), 0, "log entries of a deleted shard remain");
    assert!(groups.len() >= 2, "the metadata group and the kept stream remain: {groups:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_iterator_type_starts_where_kinesis_says() {
    let cluster = Cluster::start(3).await;
    cluster.create_stream("s", 1, unlimited()).await;
    let client = cluster.client(2);
    let mut api = client.api.clone();
    let mut seqs = Vec::new();
    let mut midpoint_ms = 0;
    for i in 0..10 {
        if i == 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            midpoint_ms = freshet_tests::freshet_broker::now_ms();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = api.put_record(put_request("s", "k", format!("r{i}").as_bytes())).await.unwrap().into_inner();
        seqs.push(r.sequence_number);
    }
    let shard = "shardId-000000000000";
    let read = |kind, seq: Option<String>, ts: Option<i64>| {
        let client = client.clone();
        async move {
            let it = client.shard_iterator("s", shard, kind, seq, ts).await.unwrap();
            client
                .read_to_end(it)
                .await
                .unwrap()
                .into_iter()
                .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let all: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    assert_eq!(read(IteratorType::TrimHorizon, None, None).await, all);
    assert_eq!(read(IteratorType::AtSequenceNumber, Some(seqs[3].clone()), None).await, all[3..]);
    assert_eq!(read(IteratorType::AfterSequenceNumber, Some(seqs[3].clone()), None).await, all[4..]);
    assert_eq!(
        read(IteratorType::AfterSequenceNumber, Some(seqs[9].clone()), None).await,
        Vec::<String>::new()
    );
    assert_eq!(read(IteratorType::AtTimestamp, None, Some(midpoint_ms)).await, all[5..]);
    assert_eq!(read(IteratorType::AtTimestamp, None, Some(0)).await, all);

    // LATEST sees only what comes after it; the page says when it is caught up.
    let latest = client.shard_iterator("s", shard, IteratorType::Latest, None, None).await.unwrap();
    let page = api
        .get_records(pb::GetRecordsRequest { shard_iterator: latest.clone(), limit: None })
        .await
        .unwrap()
        .into_inner();
    assert!(page.records.is_empty());
    assert_eq!(page.millis_behind_latest, 0);
    api.put_record(put_request("s", "k", b"after-latest")).await.unwrap();
    let page = api
        .get_records(pb::GetRecordsRequest { shard_iterator: latest, limit: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.records[0].data, &b"after-latest"[..]);
    assert!(page.records[0].approximate_arrival_timestamp_ms >= midpoint_ms);

    // Limit pages through the shard without skipping or repeating.
    let it = client.shard_iterator("s", shard, IteratorType::TrimHorizon, None, None).await.unwrap();
    let page = api
        .get_records(pb::GetRecordsRequest { shard_iterator: it, limit: Some(4) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.records.len(), 4);
    // Records 0-3 arrived at least 40 ms before the newest one.
    assert!(page.millis_behind_latest >= 40, "{}", page.millis_behind_latest);
    assert_eq!(page.records[3].sequence_number, seqs[3]);
    let rest = client.read_to_end(page.next_shard_iterator.unwrap()).await.unwrap();
    assert_eq!(rest.len(), 7);
    assert_eq!(rest[0].sequence_number, seqs[4]);
}

/// GetRecords returns at most 10 MiB; the next page starts at the first record left out
/// (records just under 1 MiB, so the limit falls inside a PutRecords' entry with room
/// left in the page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_cut_at_ten_mib_continues_where_it_stopped() {
    let cluster = Cluster::start(3).await;
    cluster.create_stream("big", 1, unlimited()).await;
    let client = cluster.client(1);
    let mut api = client.api.clone();
    let mib = |i: u8| vec![i; (1 << 20) - 1000];
    for batch in [0..6u8, 6..12] {
        let records = batch.map(|i| entry("k", mib(i))).collect();
        let out = api
            .put_records(pb::PutRecordsRequest { stream_name: "big".into(), records })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(out.failed_record_count, 0);
    }
    let it = client
        .shard_iterator("big", "shardId-000000000000", IteratorType::TrimHorizon, None, None)
        .await
        .unwrap();
    let first = api
        .get_records(pb::GetRecordsRequest { shard_iterator: it, limit: None })
        .await
        .unwrap()
        .into_inner();
    let firsts: Vec<u8> = first.records.iter().map(|r| r.data[0]).collect();
    assert_eq!(firsts, (0..10).collect::<Vec<u8>>(), "10 MiB fit in one page");
    let second = api
        .get_records(pb::GetRecordsRequest {
            shard_iterator: first.next_shard_iterator.unwrap(),
            limit: None,
        })
        .await
        .unwrap()
        .into_inner();
    let seconds: Vec<u8> = second.records.iter().map(|r| r.data[0]).collect();
    assert_eq!(seconds, vec![10, 11], "the next page starts at the first record left out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_pushes_records_as_they_commit() {
    let cluster = Cluster::start(3).await;
    cluster.create_stream("s", 2, unlimited()).await;
    let client = cluster.client(1);
    let mut events = client
        .api
        .clone()
        .subscribe(pb::SubscribeRequest {
            stream_name: "s".into(),
            shard_id: "shardId-000000000000".into(),
            iterator_type: IteratorType::Latest as i32,
            starting_sequence_number: None,
            timestamp_ms: None,
            keep_alive_ms: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut api = cluster.client(3).api.clone();
    let mut sent = Vec::new();
    for i in 0..50 {
        let r = api
            .put_record(pb::PutRecordRequest {
                stream_name: "s".into(),
                partition_key: format!("k{i}"),
                data: format!("d{i}").into_bytes(),
                explicit_hash_key: Some("0".into()),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.shard_id, "shardId-000000000000");
        sent.push(r.sequence_number);
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("pushed in time")
            .unwrap()
            .unwrap();
        assert_eq!(
            event.continuation_sequence_number.as_deref(),
            Some(event.records.last().unwrap().sequence_number.as_str())
        );
        got.extend(event.records.into_iter().map(|r| r.sequence_number));
    }
    assert_eq!(got, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_write_limits_throttle_per_record() {
    let cluster = Cluster::start(3).await;
    cluster.create_stream("limited", 1, None).await;
    let api = cluster.client(1).api.clone();
    let mut ok = 0;
    let mut throttled = 0;
    // Four requests at once: 2,000 records within one refill period of a 1,000 records/s shard.
    let requests = (0..4).map(|_| {
        let mut api = api.clone();
        let records = (0..500).map(|i| entry(&format!("k{i}"), vec![1u8; 10])).collect();
        async move { api.put_records(pb::PutRecordsRequest { stream_name: "limited".into(), records }).await }
    });
    for resp in futures::future::join_all(requests).await {
        let resp = resp.unwrap().into_inner();
        for r in &resp.records {
            if r.error_code.is_empty() {
                ok += 1;
            } else {
                assert_eq!(r.error_code, "ProvisionedThroughputExceededException");
                assert_eq!(
                    r.error_message,
                    "Rate exceeded for shard shardId-000000000000 in stream limited under account 000000000000."
                );
                throttled += 1;
            }
        }
        assert_eq!(
            resp.failed_record_count as usize,
            resp.records.iter().filter(|r| !r.error_code.is_empty()).count()
        );
    }
    assert!(
        throttled >= 500,
        "2,000 records in well under 2 s must exceed 1,000 records/s (throttled {throttled})"
    );
    assert!(ok >= 1000, "a full second of capacity is admitted ({ok})");
    let read = read_all(&cluster.client(2), "limited").await;
    assert_eq!(read["shardId-000000000000"].len(), ok, "exactly the admitted records were written");

    // The limits of an existing stream change, and every later write meets the new ones.
    let mut admin = cluster.client(3).api.clone();
    let settings = |retention_hours: Option<u32>, limits: Option<pb::ShardLimits>| {
        pb::UpdateStreamSettingsRequest { stream_name: "limited".into(), retention_hours, limits }
    };
    let limits = |enforce: bool, records: u64| pb::ShardLimits {
        enforce,
        write_bytes_per_second: 1 << 20,
        write_records_per_second: records,
    };
    let burst = || async {
        let records = (0..500).map(|i| entry(&format!("k{i}"), vec![1u8; 10])).collect();
        let req = pb::PutRecordsRequest { stream_name: "limited".into(), records };
        api.clone().put_records(req).await.unwrap().into_inner().failed_record_count
    };
    admin.update_stream_settings(settings(None, Some(limits(true, 50)))).await.unwrap();
    let d = cluster.client(1).describe("limited").await.unwrap();
    assert_eq!(d.limits.unwrap().write_records_per_second, 50);
    // The shard's writer takes new limits at its next request, once its node has applied
    // the change (a moment after the metadata leader has).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let failed = loop {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let failed = burst().await;
        if failed >= 400 || std::time::Instant::now() > deadline {
            break failed;
        }
    };
    assert!(failed >= 400, "at most ~50 of 500 records admitted under 50 records/s (failed {failed})");
    admin.update_stream_settings(settings(Some(48), Some(limits(false, 1)))).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while burst().await > 0 {
        assert!(std::time::Instant::now() < deadline, "limits switched off, yet writes are throttled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let d = cluster.client(2).describe("limited").await.unwrap();
    assert_eq!((d.retention_hours, d.limits.unwrap().enforce), (48, false));
    for bad in [settings(Some(23), None), settings(None, Some(limits(true, 0)))] {
        let e = admin.update_stream_settings(bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    }
    let d = cluster.client(2).describe("limited").await.unwrap();
    assert_eq!((d.retention_hours, d.limits.unwrap().enforce), (48, false), "refused changes change nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_past_retention_disappear() {
    // One retention hour lasts 100 ms here, so the minimum 24 h retention is 2.4 s.
    let cluster = Cluster::start_with(
        3,
        &[("FRESHET_RETENTION_HOUR_MS", "100"), ("FRESHET_RETENTION_CHECK_SECS", "1")],
    )
    .await;
    cluster.create_stream("short", 1, unlimited()).await;
    let client = cluster.client(1);
    let mut api = client.api.clone();
    for i in 0..100 {
        api.put_record(put_request("short", &format!("k{i}"), b"old")).await.unwrap();
    }
    let early = client
        .shard_iterator("short", "shardId-000000000000", IteratorType::TrimHorizon, None, None)
        .await
        .unwrap();
    assert_eq!(read_all(&client, "short").await["shardId-000000000000"].len(), 100);
    tokio::time::sleep(Duration::from_millis(4000)).await;
    api.put_record(put_request("short", "k", b"new")).await.unwrap();
    let after = read_all(&client, "short").await;
    let data: Vec<&[u8]> = after["shardId-000000000000"].iter().map(|r| &r.data[..]).collect();
    assert_eq!(data, vec![b"new".as_slice()], "only the record within retention is readable");
    // An iterator taken before expiry does not bring expired records back either.
    let page = client.read_to_end(early).await.unwrap();
    assert_eq!(page.len(), 1);
    // The leader also trims the log itself (in the background, within a few checks).
    let start = std::time::Instant::now();
    while !(1..=3).any(|n| cluster.log(n).contains("retention: trimming")) {
        assert!(start.elapsed() < Duration::from_secs(20), "no retention trim\n{}", cluster.log_tails());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_kinesis_errors_and_changes_nothing() {
    let cluster = Cluster::start(3).await;
    cluster.create_stream("good", 2, unlimited()).await;
    let client = cluster.client(1);
    let mut api = client.api.clone();
    for i in 0..20 {
        api.put_record(put_request("good", &format!("k{i}"), b"x")).await.unwrap();
    }

    let create = |name: &str, shards: u32, retention: Option<u32>, rf: Option<u32>| pb::CreateStreamRequest {
        stream_name: name.into(),
        shard_count: shards,
        retention_hours: retention,
        replication_factor: rf,
        limits: None,
        ..Default::default()
    };
    let cases: Vec<(pb::CreateStreamRequest, Code, &str, &str)> = vec![
        (create("bad name", 1, None, None), Code::InvalidArgument, "ValidationException", "[a-zA-Z0-9_.-]+"),
        (
            create(&"a".repeat(129), 1, None, None),
            Code::InvalidArgument,
            "ValidationException",
            "length between 1 and 128",
        ),
        (create("", 1, None, None), Code::InvalidArgument, "ValidationException", "streamName"),
        (create("s", 0, None, None), Code::InvalidArgument, "ValidationException", "shardCount"),
        (
            create("s", 1_000_000, None, None),
            Code::ResourceExhausted,
            "LimitExceededException",
            "shard limit",
        ),
        (create("s", 1, Some(23), None), Code::InvalidArgument, "InvalidArgumentException", "24 hours"),
        (create("s", 1, Some(8761), None), Code::InvalidArgument, "InvalidArgumentException", "8760 hours"),
        (create("s", 1, None, Some(0)), Code::InvalidArgument, "ValidationException", "replicationFactor"),
        (create("s", 1, None, Some(4)), Code::InvalidArgument, "InvalidArgumentException", "add nodes"),
        (
            create("good", 1, None, None),
            Code::AlreadyExists,
            "ResourceInUseException",
            "Stream good under account 000000000000 already exists.",
        ),
    ];
    for (req, code, kind, text) in cases {
        let e = api.create_stream(req.clone()).await.unwrap_err();
        assert_eq!((e.code(), error_type(&e)), (code, kind), "{req:?}: {}", e.message());
        assert!(e.message().contains(text), "{req:?}: {}", e.message());
    }

    let e = api.put_record(put_request("missing", "k", b"x")).await.unwrap_err();
    assert_eq!((e.code(), error_type(&e)), (Code::NotFound, "ResourceNotFoundException"));
    assert_eq!(e.message(), "Stream missing under account 000000000000 not found.");
    let e = api.put_record(put_request("good", "", b"x")).await.unwrap_err();
    assert!(
        e.message().contains("partitionKey") && e.message().contains("between 1 and 256"),
        "{}",
        e.message()
    );
    let e = api.put_record(put_request("good", &"k".repeat(257), b"x")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = api.put_record(put_request("good", "k", vec![0u8; 1024 * 1024 + 1])).await.unwrap_err();
    assert!(e.message().contains("1048576"), "{}", e.message());
    let mut bad_hash = put_request("good", "k", b"x");
    bad_hash.explicit_hash_key = Some("340282366920938463463374607431768211456".into());
    let e = api.put_record(bad_hash).await.unwrap_err();
    assert_eq!(error_type(&e), "InvalidArgumentException");
    assert!(e.message().contains("ExplicitHashKey"), "{}", e.message());

    let batch =
        |records: Vec<pb::PutRecordsEntry>| pb::PutRecordsRequest { stream_name: "good".into(), records };
    let e = api.put_records(batch(vec![])).await.unwrap_err();
    assert!(e.message().contains("500"), "{}", e.message());
    let e = api
        .put_records(batch((0..501).map(|i| entry(&format!("k{i}"), vec![1])).collect()))
        .await
        .unwrap_err();
    assert!(e.message().contains("500"), "{}", e.message());
    let e = api
        .put_records(batch((0..11).map(|i| entry(&format!("k{i}"), vec![1; 1024 * 1024])).collect()))
        .await
        .unwrap_err();
    assert!(e.message().contains("10 MB"), "{}", e.message());
    // One bad record: the whole batch is rejected.
    let mut mixed: Vec<_> = (0..10).map(|i| entry(&format!("k{i}"), vec![1])).collect();
    mixed.push(entry("", vec![1]));
    let e = api.put_records(batch(mixed)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("records.11.member.partitionKey"), "{}", e.message());
    for name in ["missing", "bad name"] {
        let e =
            api.describe_stream(pb::DescribeStreamRequest { stream_name: name.into() }).await.unwrap_err();
        let e2 = api.delete_stream(pb::DeleteStreamRequest { stream_name: name.into() }).await.unwrap_err();
        for e in [e, e2] {
            let expected = if name == "missing" { Code::NotFound } else { Code::InvalidArgument };
            assert_eq!(e.code(), expected, "{name}: {}", e.message());
        }
    }

    let iterator = |shard: &str, kind: i32, seq: Option<&str>, ts: Option<i64>| pb::GetShardIteratorRequest {
        stream_name: "good".into(),
        shard_id: shard.into(),
        iterator_type: kind,
        starting_sequence_number: seq.map(String::from),
        timestamp_ms: ts,
    };
    let s0 = "shardId-000000000000";
    let e = api.get_shard_iterator(iterator("shard-x", 0, None, None)).await.unwrap_err();
    assert_eq!(error_type(&e), "ValidationException");
    let e = api.get_shard_iterator(iterator("shardId-000000000009", 0, None, None)).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::NotFound,
            "Shard shardId-000000000009 in stream good under account 000000000000 does not exist"
        )
    );
    let e = api.get_shard_iterator(iterator(s0, 2, None, None)).await.unwrap_err();
    assert!(e.message().contains("StartingSequenceNumber"), "{}", e.message());
    let e = api.get_shard_iterator(iterator(s0, 2, Some("12345"), None)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Another shard's sequence number names that shard, and is refused here in Kinesis' words.
    let mut on_shard1 = put_request("good", "k", b"on shard 1");
    on_shard1.explicit_hash_key = Some((1u128 << 127).to_string());
    let written = api.put_record(on_shard1).await.unwrap().into_inner();
    assert_eq!(written.shard_id, "shardId-000000000001");
    for kind in [IteratorType::AtSequenceNumber, IteratorType::AfterSequenceNumber] {
        let e = api
            .get_shard_iterator(iterator(s0, kind as i32, Some(&written.sequence_number), None))
            .await
            .unwrap_err();
        assert_eq!((e.code(), error_type(&e)), (Code::InvalidArgument, "InvalidArgumentException"));
        assert_eq!(
            e.message(),
            "Invalid StartingSequenceNumber. It encodes shardId-000000000001, while it was used in a call to a shard with shardId-000000000000"
        );
    }
    let on_its_shard = iterator("shardId-000000000001", 0, Some(&written.sequence_number), None);
    assert!(api.get_shard_iterator(on_its_shard).await.is_ok());
    let before = read_all(&client, "good").await;
    let e = api.get_shard_iterator(iterator(s0, 4, None, None)).await.unwrap_err();
    assert!(e.message().contains("timestamp"), "{}", e.message());
    let tomorrow = Some(freshet_tests::freshet_broker::now_ms() + 86_400_000);
    let e = api.get_shard_iterator(iterator(s0, 4, None, tomorrow)).await.unwrap_err();
    assert!(e.message().contains("cannot be greater than the currentTimestampInMillis"), "{}", e.message());
    let e = api.get_shard_iterator(iterator(s0, 99, None, None)).await.unwrap_err();
    assert!(e.message().contains("shardIteratorType"), "{}", e.message());

    let good_it = client.shard_iterator("good", s0, IteratorType::TrimHorizon, None, None).await.unwrap();
    let mut tampered = good_it.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    for token in [String::from_utf8(tampered).unwrap(), "garbage".into(), "x".repeat(600)] {
        let e =
            api.get_records(pb::GetRecordsRequest { shard_iterator: token, limit: None }).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    }
    for limit in [0, 10_001] {
        let e = api
            .get_records(pb::GetRecordsRequest { shard_iterator: good_it.clone(), limit: Some(limit) })
            .await
            .unwrap_err();
        assert!(e.message().contains("limit"), "{}", e.message());
    }

    // Nothing changed: same streams, same records, and the stream still takes writes.
    let names = api.list_streams(pb::ListStreamsRequest {}).await.unwrap().into_inner().stream_names;
    assert_eq!(names, vec!["good".to_string()]);
    assert_eq!(read_all(&cluster.client(3), "good").await, before);
    api.put_record(put_request("good", "k", b"still-works")).await.unwrap();
    for b in &cluster.brokers {
        assert!(!cluster.log(b.id).contains("panicked"), "node {} panicked", b.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_a_replica_forward_every_call() {
    // Replication 1 over 3 nodes: each shard lives on one node only, so most calls must
    // be forwarded by a node that holds no replica of the shard.
    let cluster = Cluster::start(3).await;
    cluster
        .any_client()
        .api
        .clone()
        .create_stream(pb::CreateStreamRequest {
            stream_name: "thin".into(),
            shard_count: 3,
            retention_hours: None,
            replication_factor: Some(1),
            limits: unlimited(),
            ..Default::default()
        })
        .await
        .unwrap();
    cluster.wait_leaders("thin").await;
    let d = cluster.client(1).describe("thin").await.unwrap();
    assert!(d.shards.iter().all(|s| s.replicas.len() == 1));
    let shard0_home = d.shards[0].replicas[0];
    let elsewhere = (1..=3).find(|n| *n != shard0_home).unwrap();
    // Every node names each shard's leader, those without a replica of it too (asked of
    // the replica's node, so a busy moment may leave one out: it is there on a retry).
    for node in 1..=3 {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let d = cluster.client(node).describe("thin").await.unwrap();
            let leaders: Vec<Option<u64>> = d.shards.iter().map(|s| s.leader).collect();
            let homes: Vec<Option<u64>> = d.shards.iter().map(|s| Some(s.replicas[0])).collect();
            if leaders == homes {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "described by node {node}: {leaders:?}, not {homes:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // A subscriber on a node without the shard gets the records pushed through it.
    let mut events = cluster
        .client(elsewhere)
        .api
        .clone()
        .subscribe(pb::SubscribeRequest {
            stream_name: "thin".into(),
            shard_id: "shardId-000000000000".into(),
            iterator_type: IteratorType::TrimHorizon as i32,
            starting_sequence_number: None,
            timestamp_ms: None,
            keep_alive_ms: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut written = 0;
    for node in 1..=3 {
        let mut api = cluster.client(node).api.clone();
        let records =
            (0..60).map(|i| entry(&format!("n{node}-k{i}"), format!("n{node}-{i}").into_bytes())).collect();
        let resp = api
            .put_records(pb::PutRecordsRequest { stream_name: "thin".into(), records })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.failed_record_count, 0);
        written += resp.records.len();
    }
    for node in 1..=3 {
        let read = read_all(&cluster.client(node), "thin").await;
        assert_eq!(read.values().map(|v| v.len()).sum::<usize>(), written, "read through node {node}");
    }
    let on_shard0 = read_all(&cluster.client(1), "thin").await["shardId-000000000000"].len();
    let mut pushed = 0;
    while pushed < on_shard0 {
        let e = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("pushed")
            .unwrap()
            .unwrap();
        pushed += e.records.len();
    }
    assert_eq!(pushed, on_shard0);
}
