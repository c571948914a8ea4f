//! Disk space follows retention: once records pass their stream's retention, the space
//! they took in RocksDB's table and blob files is given back by every replica, also when a
//! stream with a longer retention wrote into the same table files meanwhile, whose records
//! stay. (Blob files shared by streams of different retention are left to RocksDB's blob
//! GC, which only acts on the oldest quarter of many files: `storage/reclaim.rs`.)

use freshet_tests::freshet_broker::pb;
use freshet_tests::{put_request, read_all, unlimited, Cluster};
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// Records of 16 KiB, 500 to a request (8 MiB, under the 10 MiB request limit).
const RECORD: usize = 16 << 10;
const PER_CALL: usize = 500;
const LONG_PER_ROUND: usize = 10;

/// A node's table (`.sst`) and blob (`.blob`) files with their sizes: what retention must
/// bound. (The WAL's files are recycled at a fixed size and hold only what is not flushed.)
fn table_and_blob_files(dir: &Path) -> Vec<(String, u64)> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "sst" || x == "blob") {
                let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
                files.push((name, e.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
    }
    files.sort();
    files
}

fn table_and_blob_bytes(dir: &Path) -> u64 {
    table_and_blob_files(dir).iter().map(|(_, len)| len).sum()
}

async fn create(cluster: &Cluster, name: &str, retention_hours: u32) {
    let mut api = cluster.client(1).api.clone();
    api.create_stream(pb::CreateStreamRequest {
        stream_name: name.into(),
        shard_count: 1,
        retention_hours: Some(retention_hours),
        replication_factor: Some(3),
        limits: unlimited(),
        ..Default::default()
    })
    .await
    .unwrap();
    cluster.wait_leaders(name).await;
}

/// `RECORD` pseudo-random bytes: LZ4 must not shrink them, or the files would stay too
/// small to tell anything.
fn incompressible(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(RECORD);
    while data.len() < RECORD {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(RECORD);
    data
}

async fn put_many(cluster: &Cluster, stream: &str, count: usize) {
    let mut api = cluster.client(1).api.clone();
    let records = (0..count)
        .map(|i| pb::PutRecordsEntry {
            partition_key: format!("k{i}"),
            data: incompressible(i as u64).into(),
            explicit_hash_key: None,
        })
        .collect();
    let reply = api
        .put_records(pb::PutRecordsRequest { stream_name: stream.into(), records })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.failed_record_count, 0, "every record of {stream} written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_of_expired_records_is_given_back() {
    // One retention hour lasts 100 ms here: "short" keeps records 2.4 s, "long" 876 s.
    let cluster = Cluster::start_with(
        3,
        &[("FRESHET_RETENTION_HOUR_MS", "100"), ("FRESHET_RETENTION_CHECK_SECS", "1")],
    )
    .await;
    create(&cluster, "short", 24).await;
    create(&cluster, "long", 8_760).await;

    // 160 MiB for "short", and small single records for "long" written in between: their
    // entries stay in the table files, beside the keys of "short".
    let rounds = 20;
    let mut api = cluster.client(1).api.clone();
    for round in 0..rounds {
        put_many(&cluster, "short", PER_CALL).await;
        for i in 0..LONG_PER_ROUND {
            let record = put_request("long", &format!("k{round}-{i}"), format!("long {round} {i}"));
            api.put_record(record).await.unwrap();
        }
    }
    let peak: Vec<u64> = cluster.brokers.iter().map(|b| table_and_blob_bytes(&b.data)).collect();
    eprintln!("table and blob bytes per node after writing: {peak:?}");
    assert!(
        peak.iter().all(|p| *p >= 64 * MIB),
        "the writes should have reached table and blob files on every node: {peak:?}"
    );

    // "short" passes its retention: its records go for readers first...
    let client = cluster.client(2);
    let start = Instant::now();
    while !read_all(&client, "short").await.values().all(|v| v.is_empty()) {
        assert!(start.elapsed() < Duration::from_secs(30), "records of \"short\" outlived its retention");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // ...and then from the disk, on every node, with nothing of "long" in blob files.
    let bound = 2 * MIB;
    let start = Instant::now();
    loop {
        let now: Vec<u64> = cluster.brokers.iter().map(|b| table_and_blob_bytes(&b.data)).collect();
        if now.iter().all(|n| *n <= bound) {
            eprintln!("{:?} after \"short\" expired: {now:?} (bound {bound})", start.elapsed());
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "expired records still take {now:?} bytes per node, more than {bound}: {:?}\n{}",
            cluster.brokers.iter().map(|b| table_and_blob_files(&b.data)).collect::<Vec<_>>(),
            cluster.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // What "long" retains is whole, in order.
    let long = read_all(&client, "long").await;
    let data: Vec<String> =
        long.values().flatten().map(|r| String::from_utf8_lossy(&r.data).into_owned()).collect();
    let written: Vec<String> =
        (0..rounds).flat_map(|r| (0..LONG_PER_ROUND).map(move |i| format!("long {r} {i}"))).collect();
    assert_eq!(data, written);
}
