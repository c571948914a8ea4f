//! What the SDK tests share: waiting for a stream, reading shards back, producers that
//! note what was acknowledged, and the checks that nothing acknowledged was lost or
//! reordered.

use super::*;

pub(crate) async fn wait_active(k: &Client, stream: &str) {
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
pub(crate) async fn read_shard(k: &Client, stream: &str, shard: &str) -> Vec<(String, String)> {
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
pub(crate) async fn list_streams_over_h2c(addr: &str) -> String {
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

/// `got` (the `n`s of `key`'s records as read, repeats allowed) holds every `n` of
/// `acked`, first seen in increasing order.
pub(crate) fn check_in_order(key: &str, acked: &[u64], got: &[u64]) {
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
pub(crate) type Acked = Arc<Mutex<BTreeMap<String, Vec<u64>>>>;

/// A producer that, until `stop`, sends one PutRecords per round carrying record `n` of
/// each key (data `"{pad}{key}:{n}"`, routed by the key's explicit hash key when given)
/// and notes in `acked` what was acknowledged. A request whose outcome is unknown goes
/// again with the same `n`, so duplicates are allowed, reordering is not.
pub(crate) fn produce(
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
pub(crate) async fn verify_every_acked_record_in_order(
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

pub(crate) async fn open_shards(k: &Client, stream: &str) -> (i32, StreamStatus) {
    let s = k.describe_stream_summary().stream_name(stream).send().await.unwrap();
    let s = s.stream_description_summary().unwrap();
    (s.open_shard_count(), s.stream_status().clone())
}

/// Polls until `stream` has `open` open shards and is ACTIVE; fails naming `what` after
/// `within`.
pub(crate) async fn wait_for_open_shards(
    k: &Client,
    stream: &str,
    open: i32,
    within: Duration,
    what: &str,
    cluster: &Cluster,
) {
    let start = Instant::now();
    while open_shards(k, stream).await != (open, StreamStatus::Active) {
        assert!(start.elapsed() < within, "{what}:\n{}", cluster.log_tails());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The stream's ARN, as DescribeStreamSummary gives it.
pub(crate) async fn stream_arn(k: &Client, stream: &str) -> String {
    let s = k.describe_stream_summary().stream_name(stream).send().await.unwrap();
    s.stream_description_summary().unwrap().stream_arn().to_string()
}
