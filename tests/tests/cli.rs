//! The `freshet` CLI as a user runs it.

use freshet_tests::{bin, put_request, Cluster};
use std::io::Write;
use std::process::{Command, Stdio};

fn freshet(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(bin("freshet"))
        .args(args)
        .env("FRESHET_ENDPOINT", cluster.brokers[0].endpoint())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_lines_then_read_them_back() {
    let cluster = Cluster::start(3).await;
    let (ok, _, err) =
        freshet(&cluster, &["stream", "create", "cli", "--shards", "2", "--no-limits", "--wait"], None);
    assert!(ok, "{err}");
    let lines: String = (0..3000).map(|i| format!("line {i}\n")).collect();
    let (ok, _, err) = freshet(&cluster, &["put", "cli"], Some(&lines));
    assert!(ok, "{err}");
    assert!(err.contains("wrote 3000 records"), "{err}");
    assert!(err.contains("records/s"), "{err}");
    let (ok, out, err) = freshet(&cluster, &["read", "cli", "--from", "trim-horizon"], None);
    assert!(ok, "{err}");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    let mut want: Vec<String> = (0..3000).map(|i| format!("line {i}")).collect();
    want.sort();
    assert_eq!(got, want);

    let (ok, out, _) = freshet(&cluster, &["put", "cli", "--partition-key", "user-1", "one record"], None);
    assert!(ok);
    let seq = out.split_whitespace().nth(1).unwrap().to_string();
    let shard = out.split_whitespace().next().unwrap().to_string();
    let (ok, out, _) =
        freshet(&cluster, &["read", "cli", "--shard", &shard, "--from", &format!("at:{seq}")], None);
    assert!(ok);
    assert_eq!(out, "one record\n");

    let (ok, out, _) = freshet(&cluster, &["cluster", "status"], None);
    assert!(ok);
    assert!(out.contains("cli/shardId-000000000001"), "{out}");
    let (ok, out, _) = freshet(&cluster, &["stream", "describe", "cli"], None);
    assert!(ok && out.contains("ACTIVE"), "{out}");

    // Follow the first shard, then split it: the follower goes on into its children.
    let mut follow = Command::new(bin("freshet"))
        .args(["read", "cli", "--shard", "shardId-000000000000", "--from", "latest", "--follow"])
        .env("FRESHET_ENDPOINT", cluster.brokers[0].endpoint())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Split a shard at its middle; once the children lead, the parent shows CLOSED.
    let (ok, _, err) = freshet(&cluster, &["stream", "split", "cli", "shardId-000000000000"], None);
    assert!(ok, "{err}");
    assert!(err.contains("splitting shardId-000000000000"), "{err}");
    let start = std::time::Instant::now();
    loop {
        let (ok, out, _) = freshet(&cluster, &["stream", "describe", "cli"], None);
        assert!(ok);
        let closed = out.lines().any(|l| l.starts_with("shardId-000000000000") && l.contains("CLOSED"));
        if closed && out.contains("ACTIVE") {
            assert!(out.lines().filter(|l| l.contains(" shardId-000000000000 ")).count() == 2, "{out}");
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "split never completed:\n{out}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let lines: String = (0..40).map(|i| format!("after-split-{i}\n")).collect();
    let (ok, _, err) = freshet(&cluster, &["put", "cli"], Some(&lines));
    assert!(ok, "{err}");
    let client = cluster.any_client();
    let read = freshet_tests::read_all(&client, "cli").await;
    let in_children: Vec<String> = ["shardId-000000000002", "shardId-000000000003"]
        .iter()
        .flat_map(|s| read[*s].iter().map(|r| String::from_utf8_lossy(&r.data).to_string()))
        .collect();
    assert!(!in_children.is_empty());
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut followed = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while followed.len() < in_children.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => followed.push(line),
            Err(_) => break,
        }
    }
    // Nothing more (no record twice).
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(300)) {
        followed.push(line);
    }
    follow.kill().unwrap();
    follow.wait().unwrap();
    let mut expected = in_children.clone();
    followed.sort();
    expected.sort();
    assert_eq!(followed, expected, "--follow goes on into the children");

    // Three uneven open shards (1/4, 1/4, 1/2) to two even ones; scale waits and says so.
    let (ok, _, err) = freshet(&cluster, &["stream", "scale", "cli", "2"], None);
    assert!(ok, "{err}");
    assert!(err.contains("scaling cli from 3 to 2 open shards"), "{err}");
    assert!(err.contains("cli is ACTIVE with 2 open shards"), "{err}");
    let (ok, _, err) = freshet(&cluster, &["stream", "scale", "cli", "5"], None);
    assert!(!ok);
    assert!(err.contains("cannot scale up over double your current open shard count"), "{err}");
    let (ok, out, _) = freshet(&cluster, &["read", "cli", "--from", "trim-horizon"], None);
    assert!(ok);
    assert_eq!(out.lines().count(), 3000 + 1 + 40, "every record is still readable after scaling");

    // Settings of an existing stream.
    let args = ["stream", "update", "cli", "--retention-hours", "48", "--write-records-per-second", "500"];
    let (ok, _, err) = freshet(&cluster, &args, None);
    assert!(ok, "{err}");
    assert!(
        err.contains("retention 48 h, write limits 1048576 bytes/s and 500 records/s per shard"),
        "{err}"
    );
    let (ok, _, err) = freshet(&cluster, &["stream", "update", "cli"], None);
    assert!(!ok && err.contains("nothing to change"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_went_wrong() {
    let cluster = Cluster::start(1).await;
    let (ok, _, err) = freshet(&cluster, &["stream", "describe", "nope"], None);
    assert!(!ok);
    assert!(
        err.contains("ResourceNotFoundException: Stream nope under account 000000000000 not found."),
        "{err}"
    );
    let (ok, _, err) = freshet(&cluster, &["stream", "create", "bad name"], None);
    assert!(!ok);
    assert!(err.contains("[a-zA-Z0-9_.-]+"), "{err}");
    let (ok, _, err) = freshet(&cluster, &["read", "x", "--from", "yesterday"], None);
    assert!(!ok);
    assert!(err.contains("trim-horizon, latest"), "{err}");
    let stopped = Command::new(bin("freshet"))
        .args(["--endpoint", "http://127.0.0.1:1", "stream", "list"])
        .output()
        .unwrap();
    assert!(!stopped.status.success());
    assert!(String::from_utf8_lossy(&stopped.stderr).contains("make run"));
}

/// `freshet put` rides out a restart of the node it talks to: the batches it could not
/// send are sent again once the node is back, and every line is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_retries_while_its_node_restarts() {
    let mut cluster = Cluster::start(3).await;
    cluster.create_stream("restarts", 2, freshet_tests::unlimited()).await;
    let mut child = Command::new(bin("freshet"))
        .args(["put", "restarts"])
        .env("FRESHET_ENDPOINT", cluster.brokers[0].endpoint())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Lines arrive over 3 s, as from a live source; node 1 is down for part of it.
    let mut input = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for chunk in 0..60 {
            let lines: String = (0..100).map(|i| format!("line-{}\n", chunk * 100 + i)).collect();
            if input.write_all(lines.as_bytes()).is_err() {
                return; // the CLI gave up: its exit status and message tell why
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    cluster.kill(1);
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    cluster.start_node(1);
    feeder.join().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    cluster.wait_ready().await;
    let read = freshet_tests::read_all(&cluster.client(2), "restarts").await;
    let lines: std::collections::BTreeSet<String> =
        read.values().flatten().map(|r| String::from_utf8_lossy(&r.data).into_owned()).collect();
    let missing: Vec<usize> = (0..6000).filter(|i| !lines.contains(&format!("line-{i}"))).collect();
    assert!(missing.is_empty(), "lines never written: {missing:?}\n{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_unpacks_kpl_aggregated_records() {
    use freshet_tests::freshet_broker::{kpl, pb};
    let cluster = Cluster::start(3).await;
    cluster.create_stream("kpl", 1, freshet_tests::unlimited()).await;
    // One Kinesis record holding three user records, stored untouched...
    let packed = kpl::aggregate(&[("user-1", b"first"), ("user-2", b"second"), ("user-1", b"third")]);
    let mut api = cluster.client(1).api;
    let put = put_request("kpl", "agg", packed.clone());
    api.put_record(put.clone()).await.unwrap();
    api.put_record(pb::PutRecordRequest { data: b"plain".to_vec(), ..put }).await.unwrap();
    let stored = freshet_tests::read_all(&cluster.client(2), "kpl").await;
    assert_eq!(stored["shardId-000000000000"][0].data, packed);
    // ...and unpacked by the reader, each with its own key and subsequence number.
    let (ok, out, err) = freshet(&cluster, &["read", "kpl", "--from", "trim-horizon"], None);
    assert!(ok, "{err}");
    assert_eq!(out, "first\nsecond\nthird\nplain\n");
    let (ok, out, _) = freshet(&cluster, &["read", "kpl", "-v", "--from", "trim-horizon"], None);
    assert!(ok);
    let fields: Vec<Vec<&str>> = out.lines().map(|l| l.split(' ').collect()).collect();
    assert!(fields[0][1].ends_with(".0") && fields[2][1].ends_with(".2"), "{out}");
    assert_eq!((fields[1][3], fields[1][4]), ("user-2", "second"));
    assert!(!fields[3][1].contains('.'), "a plain record has no subsequence: {out}");
}
