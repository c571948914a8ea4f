"""The Kinesis HTTP API with boto3, unmodified, against a real 3-node cluster: lifecycle,
put/get with every iterator type, pagination, and the error for each class of bad input.
CBOR requests go out as raw HTTP with a CBOR encoder, as the Java SDK and KCL send them."""

import base64
import datetime
import hashlib
import json
import time
import urllib.error
import urllib.request

import botocore.exceptions
import cbor2
import pytest

from freshet_cluster import Cluster, wait_active

ACCOUNT = "000000000000"


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(3)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def kinesis(cluster):
    return cluster.client(1)


def error_of(call, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(**kwargs)
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"], e.value.response


def post(cluster, action, body, content_type="application/x-amz-json-1.1", node=1, raw=False):
    """One raw Kinesis call: (HTTP status, headers, decoded body)."""
    data = body if raw else (json.dumps(body).encode() if "json" in content_type else cbor2.dumps(body))
    req = urllib.request.Request(
        cluster.endpoint(node) + "/",
        data=data,
        headers={"Content-Type": content_type, "X-Amz-Target": f"Kinesis_20131202.{action}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, headers, payload = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, headers, payload = e.code, e.headers, e.read()
    decoded = json.loads(payload) if "json" in headers["Content-Type"] else cbor2.loads(payload)
    return status, headers, decoded


def kinesis_ranges(n):
    """Kinesis' split of the 128-bit hash-key space into n shards."""
    h = 2**128 // n
    return [(i * h, (i + 1) * h - 1 if i < n - 1 else 2**128 - 1) for i in range(n)]


def test_stream_lifecycle_create_describe_list_delete(kinesis):
    kinesis.create_stream(StreamName="life", ShardCount=3)
    wait_active(kinesis, "life")
    d = kinesis.describe_stream(StreamName="life")["StreamDescription"]
    assert d["StreamStatus"] == "ACTIVE"
    assert d["StreamARN"] == f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/life"
    assert d["RetentionPeriodHours"] == 24
    assert d["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert [s["ShardId"] for s in d["Shards"]] == [f"shardId-00000000000{i}" for i in range(3)]
    got = [(int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])) for s in d["Shards"]]
    assert got == kinesis_ranges(3)
    assert all("EndingSequenceNumber" not in s["SequenceNumberRange"] for s in d["Shards"])
    assert isinstance(d["StreamCreationTimestamp"], datetime.datetime)
    created = d["StreamCreationTimestamp"].timestamp()
    assert abs(created - time.time()) < 120

    summary = kinesis.describe_stream_summary(StreamName="life")["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 3 and summary["ConsumerCount"] == 0
    listed = kinesis.list_streams()
    assert "life" in listed["StreamNames"]
    assert any(s["StreamName"] == "life" and s["StreamStatus"] == "ACTIVE" for s in listed["StreamSummaries"])
    limits = kinesis.describe_limits()
    assert limits["OpenShardCount"] >= 3 and limits["ShardLimit"] == 500

    code, msg, _ = error_of(kinesis.create_stream, StreamName="life", ShardCount=1)
    assert code == "ResourceInUseException", msg
    kinesis.delete_stream(StreamName="life")
    kinesis.get_waiter("stream_not_exists").wait(StreamName="life", WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    code, msg, resp = error_of(kinesis.describe_stream, StreamName="life")
    assert code == "ResourceNotFoundException"
    assert msg == f"Stream life under account {ACCOUNT} not found."
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_put_and_get_with_every_iterator_type_on_any_node(cluster, kinesis):
    kinesis.create_stream(StreamName="rw", ShardCount=2)
    wait_active(kinesis, "rw")
    shard0 = "shardId-000000000000"
    # An explicit hash key pins records to shard 0 (its range starts at 0).
    first = kinesis.put_record(StreamName="rw", Data=b"\x00first\xff", PartitionKey="k", ExplicitHashKey="1")
    assert first["ShardId"] == shard0 and first["EncryptionType"] == "NONE"
    before_batch = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    batch = kinesis.put_records(
        StreamName="rw",
        Records=[{"Data": f"r{i}".encode(), "PartitionKey": f"key-{i}", "ExplicitHashKey": str(10 + i)} for i in range(20)],
    )
    assert batch["FailedRecordCount"] == 0
    seqs = [r["SequenceNumber"] for r in batch["Records"]]
    assert all(r["ShardId"] == shard0 for r in batch["Records"])
    assert [int(s) for s in seqs] == sorted(int(s) for s in seqs) and len(set(seqs)) == 20

    def read(node, **kw):
        client = cluster.client(node)
        it = client.get_shard_iterator(StreamName="rw", ShardId=shard0, **kw)["ShardIterator"]
        out = client.get_records(ShardIterator=it, Limit=1000)
        return out

    # Every node answers, whichever leads the shard.
    for node in (1, 2, 3):
        out = read(node, ShardIteratorType="TRIM_HORIZON")
        assert [r["Data"] for r in out["Records"]] == [b"\x00first\xff"] + [f"r{i}".encode() for i in range(20)]
        assert out["MillisBehindLatest"] == 0 and out["NextShardIterator"]
    r0 = read(1, ShardIteratorType="TRIM_HORIZON")["Records"]
    assert r0[1]["PartitionKey"] == "key-0"
    assert isinstance(r0[0]["ApproximateArrivalTimestamp"], datetime.datetime)
    assert abs(r0[0]["ApproximateArrivalTimestamp"].timestamp() - time.time()) < 120

    at = read(2, ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[5])["Records"]
    assert [r["SequenceNumber"] for r in at] == seqs[5:]
    after = read(3, ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[5])["Records"]
    assert [r["SequenceNumber"] for r in after] == seqs[6:]
    ts = read(1, ShardIteratorType="AT_TIMESTAMP", Timestamp=before_batch)["Records"]
    assert [r["Data"] for r in ts][-20:] == [f"r{i}".encode() for i in range(20)]

    latest = kinesis.get_shard_iterator(StreamName="rw", ShardId=shard0, ShardIteratorType="LATEST")["ShardIterator"]
    assert kinesis.get_records(ShardIterator=latest)["Records"] == []
    kinesis.put_record(StreamName="rw", Data=b"after-latest", PartitionKey="k", ExplicitHashKey="5")
    page = kinesis.get_records(ShardIterator=latest)
    assert [r["Data"] for r in page["Records"]] == [b"after-latest"]
    # The next iterator continues where the page ended.
    assert kinesis.get_records(ShardIterator=page["NextShardIterator"])["Records"] == []

    # Partition keys route by MD5 as Kinesis does.
    key = "route-me"
    h = int.from_bytes(hashlib.md5(key.encode()).digest(), "big")
    expect = next(i for i, (lo, hi) in enumerate(kinesis_ranges(2)) if lo <= h <= hi)
    assert kinesis.put_record(StreamName="rw", Data=b"x", PartitionKey=key)["ShardId"] == f"shardId-00000000000{expect}"


def test_stream_arn_works_wherever_a_stream_name_does(kinesis):
    kinesis.create_stream(StreamName="arned", ShardCount=1)
    wait_active(kinesis, "arned")
    arn = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/arned"
    put = kinesis.put_record(StreamARN=arn, Data=b"via-arn", PartitionKey="p")
    assert kinesis.describe_stream_summary(StreamARN=arn)["StreamDescriptionSummary"]["StreamName"] == "arned"
    it = kinesis.get_shard_iterator(StreamARN=arn, ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON")
    recs = kinesis.get_records(StreamARN=arn, ShardIterator=it["ShardIterator"])["Records"]
    assert [r["Data"] for r in recs] == [b"via-arn"]
    assert [s["ShardId"] for s in kinesis.list_shards(StreamARN=arn)["Shards"]] == ["shardId-000000000000"]


def test_pagination_of_streams_and_shards(kinesis):
    names = [f"page-{i}" for i in range(5)]
    for n in names:
        kinesis.create_stream(StreamName=n, ShardCount=1 if n != "page-0" else 7)
    wait_active(kinesis, "page-0")

    seen, token = [], None
    while True:
        kw = {"Limit": 2} | ({"NextToken": token} if token else {"ExclusiveStartStreamName": "page-"})
        out = kinesis.list_streams(**kw)
        assert len(out["StreamNames"]) <= 2
        seen += out["StreamNames"]
        if not out["HasMoreStreams"]:
            assert "NextToken" not in out
            break
        token = out["NextToken"]
    assert [n for n in seen if n.startswith("page-")] == names

    shards, token = [], None
    while True:
        out = kinesis.list_shards(NextToken=token, MaxResults=3) if token else kinesis.list_shards(StreamName="page-0", MaxResults=3)
        shards += [s["ShardId"] for s in out["Shards"]]
        token = out.get("NextToken")
        if not token:
            break
    assert shards == [f"shardId-{i:012d}" for i in range(7)]
    paged = [s["ShardId"] for p in kinesis.get_paginator("list_shards").paginate(StreamName="page-0", PaginationConfig={"PageSize": 2}) for s in p["Shards"]]
    assert paged == shards
    after = kinesis.list_shards(StreamName="page-0", ShardFilter={"Type": "AFTER_SHARD_ID", "ShardId": "shardId-000000000004"})
    assert [s["ShardId"] for s in after["Shards"]] == ["shardId-000000000005", "shardId-000000000006"]
    d = kinesis.describe_stream(StreamName="page-0", Limit=4)["StreamDescription"]
    assert len(d["Shards"]) == 4 and d["HasMoreShards"]
    rest = kinesis.describe_stream(StreamName="page-0", ExclusiveStartShardId="shardId-000000000003")["StreamDescription"]
    assert [s["ShardId"] for s in rest["Shards"]] == [f"shardId-{i:012d}" for i in range(4, 7)] and not rest["HasMoreShards"]
    # The boto3 paginator of DescribeStream follows HasMoreShards.
    all_shards = [s["ShardId"] for p in kinesis.get_paginator("describe_stream").paginate(StreamName="page-0", PaginationConfig={"PageSize": 3}) for s in p["StreamDescription"]["Shards"]]
    assert all_shards == shards

    code, msg, _ = error_of(kinesis.list_shards, NextToken="not-a-token")
    assert code == "InvalidArgumentException", msg
    first = kinesis.list_shards(StreamName="page-0", MaxResults=2)
    code, msg, _ = error_of(kinesis.list_shards, NextToken=first["NextToken"], StreamName="page-1")
    assert (code, msg) == ("InvalidArgumentException", "NextToken and StreamName cannot be provided together.")


def test_bad_input_gets_the_kinesis_error_and_writes_nothing(cluster):
    kinesis = cluster.client(1, validate=False)
    kinesis.create_stream(StreamName="strict", ShardCount=1)
    wait_active(kinesis, "strict")

    code, msg, _ = error_of(kinesis.create_stream, StreamName="bad name!", ShardCount=0)
    assert code == "ValidationException"
    assert msg.startswith("2 validation errors detected: ")
    assert "Value 'bad name!' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+" in msg
    assert "Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1" in msg
    code, msg, _ = error_of(kinesis.create_stream, StreamName="x" * 129, ShardCount=1)
    assert code == "ValidationException" and "Member must have length less than or equal to 128" in msg
    code, msg, _ = error_of(kinesis.describe_stream, StreamName="nope")
    assert code == "ResourceNotFoundException" and msg == f"Stream nope under account {ACCOUNT} not found."
    code, msg, _ = error_of(kinesis.get_records, ShardIterator="AAAA" * 10)
    assert code == "InvalidArgumentException" and msg == "Invalid ShardIterator."
    code, msg, _ = error_of(kinesis.get_shard_iterator, StreamName="strict", ShardId="shardId-000000000000", ShardIteratorType="SIDEWAYS")
    assert code == "ValidationException" and "Member must satisfy enum value set" in msg
    code, msg, _ = error_of(kinesis.get_shard_iterator, StreamName="strict", ShardId="shardId-000000000009", ShardIteratorType="LATEST")
    assert code == "ResourceNotFoundException", msg
    code, msg, _ = error_of(kinesis.get_records, ShardIterator="x", Limit=10001)
    assert code == "ValidationException" and "'limit'" in msg

    # A batch with one bad record is refused whole, naming the record.
    good = {"Data": b"ok", "PartitionKey": "k"}
    code, msg, _ = error_of(kinesis.put_records, StreamName="strict", Records=[good, {"Data": b"x" * (1024 * 1024 + 1), "PartitionKey": "k"}, good])
    assert code == "ValidationException" and "records.2.member.data" in msg, msg
    code, msg, _ = error_of(kinesis.put_records, StreamName="strict", Records=[good, {"Data": b"x", "PartitionKey": ""}])
    assert code == "ValidationException" and "records.2.member.partitionKey" in msg, msg
    code, msg, _ = error_of(kinesis.put_records, StreamName="strict", Records=[good] * 501)
    assert code == "ValidationException" and "'records'" in msg
    code, msg, _ = error_of(kinesis.put_record, StreamName="strict", Data=b"x", PartitionKey="k", ExplicitHashKey="-1")
    assert code == "ValidationException" and "explicitHashKey" in msg
    code, msg, _ = error_of(kinesis.put_record, StreamName="strict", Data=b"x", PartitionKey="k", ExplicitHashKey=str(2**128))
    assert code == "InvalidArgumentException", msg

    # Raw HTTP: broken bodies, wrong types, bad base64, unknown and unimplemented actions.
    status, headers, body = post(cluster, "PutRecord", b'{"StreamName": "strict",', raw=True)
    assert (status, body["__type"]) == (400, "SerializationException")
    assert headers["x-amzn-RequestId"]
    status, _, body = post(cluster, "PutRecord", {"StreamName": "strict", "Data": 5, "PartitionKey": "k"})
    assert (status, body["__type"]) == (400, "SerializationException")
    status, _, body = post(cluster, "PutRecord", {"StreamName": "strict", "Data": "%%%notbase64", "PartitionKey": "k"})
    assert (status, body["__type"]) == (400, "SerializationException")
    status, _, body = post(cluster, "CreateStream", {"StreamName": "strict2", "ShardCount": "1"})
    assert (status, body["__type"]) == (400, "SerializationException")
    status, _, body = post(cluster, "Frobnicate", {})
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, _, body = post(cluster, "StartStreamEncryption", {"StreamName": "strict"})
    assert status == 400 and body["__type"] == "UnknownOperationException"
    assert status == 400 and "StartStreamEncryption" in body["message"]
    status, _, body = post(cluster, "PutRecords", b"[" + b" " * (16 << 20) + b"]", raw=True)
    assert (status, body["__type"]) == (413, "ValidationException")

    # None of it wrote anything; the stream still takes writes.
    it = kinesis.get_shard_iterator(StreamName="strict", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")
    assert kinesis.get_records(ShardIterator=it["ShardIterator"])["Records"] == []
    kinesis.put_records(StreamName="strict", Records=[good])
    assert len(kinesis.get_records(ShardIterator=it["ShardIterator"])["Records"]) == 1


def test_cbor_requests_round_trip_data_and_timestamps(cluster, kinesis):
    kinesis.create_stream(StreamName="cbor", ShardCount=1)
    wait_active(kinesis, "cbor")
    ct = "application/x-amz-cbor-1.1"
    blob = bytes(range(256))
    status, headers, out = post(cluster, "PutRecord", {"StreamName": "cbor", "Data": blob, "PartitionKey": "k"}, ct)
    assert status == 200 and headers["Content-Type"] == ct, out
    status, _, batch = post(
        cluster, "PutRecords", {"StreamName": "cbor", "Records": [{"Data": b"b%d" % i, "PartitionKey": "k"} for i in range(3)]}, ct, node=2
    )
    assert status == 200 and batch["FailedRecordCount"] == 0
    status, _, it = post(cluster, "GetShardIterator", {"StreamName": "cbor", "ShardId": out["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}, ct)
    status, _, page = post(cluster, "GetRecords", {"ShardIterator": it["ShardIterator"]}, ct, node=3)
    assert status == 200
    assert [r["Data"] for r in page["Records"]] == [blob, b"b0", b"b1", b"b2"]
    assert page["Records"][0]["SequenceNumber"] == out["SequenceNumber"]
    # CBOR timestamps are integer epoch milliseconds, the JSON ones fractional seconds: the same instant.
    ms = page["Records"][0]["ApproximateArrivalTimestamp"]
    assert isinstance(ms, int) and abs(ms / 1000 - time.time()) < 120
    json_it = kinesis.get_shard_iterator(StreamName="cbor", ShardId=out["ShardId"], ShardIteratorType="TRIM_HORIZON")
    via_json = kinesis.get_records(ShardIterator=json_it["ShardIterator"])["Records"][0]
    assert via_json["ApproximateArrivalTimestamp"].timestamp() == pytest.approx(ms / 1000, abs=0.0005)
    status, _, summary = post(cluster, "DescribeStreamSummary", {"StreamName": "cbor"}, ct)
    assert status == 200
    s = summary["StreamDescriptionSummary"]
    assert s["StreamName"] == "cbor" and s["OpenShardCount"] == 1 and isinstance(s["StreamCreationTimestamp"], int)
    status, _, err = post(cluster, "DescribeStreamSummary", {"StreamName": "missing"}, ct)
    assert (status, err["__type"]) == (400, "ResourceNotFoundException")
    # AT_TIMESTAMP with a CBOR millisecond timestamp.
    status, _, it = post(cluster, "GetShardIterator", {"StreamName": "cbor", "ShardId": out["ShardId"], "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": ms + 3_600_000}, ct)
    assert status == 400  # an hour ahead: Kinesis refuses timestamps in the future
    status, _, it = post(cluster, "GetShardIterator", {"StreamName": "cbor", "ShardId": out["ShardId"], "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": ms}, ct)
    status, _, page = post(cluster, "GetRecords", {"ShardIterator": it["ShardIterator"]}, ct)
    assert page["Records"][0]["Data"] == blob


def test_split_merge_and_update_shard_count(kinesis):
    kinesis.create_stream(StreamName="reshape", ShardCount=2)
    wait_active(kinesis, "reshape")
    mid = str(2**126)
    kinesis.split_shard(StreamName="reshape", ShardToSplit="shardId-000000000000", NewStartingHashKey=mid)
    wait_active(kinesis, "reshape")
    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName="reshape")["Shards"]}
    assert "EndingSequenceNumber" in shards["shardId-000000000000"]["SequenceNumberRange"]
    assert shards["shardId-000000000002"]["ParentShardId"] == "shardId-000000000000"
    assert shards["shardId-000000000003"]["HashKeyRange"]["StartingHashKey"] == mid
    open_now = kinesis.list_shards(StreamName="reshape", ShardFilter={"Type": "AT_LATEST"})["Shards"]
    assert sorted(s["ShardId"] for s in open_now) == ["shardId-000000000001", "shardId-000000000002", "shardId-000000000003"]
    # Shards carry when they opened and closed: the filters of KCL and Flink see the history.
    split_at = datetime.datetime.now(datetime.timezone.utc)
    at_horizon = kinesis.list_shards(StreamName="reshape", ShardFilter={"Type": "AT_TRIM_HORIZON"})["Shards"]
    assert sorted(s["ShardId"] for s in at_horizon) == ["shardId-000000000000", "shardId-000000000001"]
    before = kinesis.list_shards(StreamName="reshape", ShardFilter={"Type": "AT_TIMESTAMP", "Timestamp": split_at - datetime.timedelta(seconds=30)})
    assert before["Shards"] == [] or sorted(s["ShardId"] for s in before["Shards"]) == ["shardId-000000000000", "shardId-000000000001"]
    now_open = kinesis.list_shards(StreamName="reshape", ShardFilter={"Type": "AT_TIMESTAMP", "Timestamp": split_at})["Shards"]
    assert sorted(s["ShardId"] for s in now_open) == ["shardId-000000000001", "shardId-000000000002", "shardId-000000000003"]
    from_ts = kinesis.list_shards(StreamName="reshape", ShardFilter={"Type": "FROM_TIMESTAMP", "Timestamp": split_at})["Shards"]
    assert sorted(s["ShardId"] for s in from_ts) == ["shardId-000000000001", "shardId-000000000002", "shardId-000000000003"]
    code, msg, _ = error_of(kinesis.list_shards, StreamName="reshape", ShardFilter={"Type": "AT_TIMESTAMP"})
    assert code == "InvalidArgumentException" and "Timestamp" in msg
    code, msg, _ = error_of(kinesis.split_shard, StreamName="reshape", ShardToSplit="shardId-000000000000", NewStartingHashKey=mid)
    assert code in ("ResourceInUseException", "InvalidArgumentException"), msg

    kinesis.merge_shards(StreamName="reshape", ShardToMerge="shardId-000000000002", AdjacentShardToMerge="shardId-000000000003")
    wait_active(kinesis, "reshape")
    merged = {s["ShardId"]: s for s in kinesis.list_shards(StreamName="reshape")["Shards"]}["shardId-000000000004"]
    assert merged["ParentShardId"] == "shardId-000000000002" and merged["AdjacentParentShardId"] == "shardId-000000000003"

    out = kinesis.update_shard_count(StreamName="reshape", TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    assert (out["CurrentShardCount"], out["TargetShardCount"]) == (2, 4)
    deadline = time.time() + 60
    while kinesis.describe_stream_summary(StreamName="reshape")["StreamDescriptionSummary"]["OpenShardCount"] != 4:
        assert time.time() < deadline
        time.sleep(0.2)
    wait_active(kinesis, "reshape", timeout=60)
    code, msg, _ = error_of(kinesis.update_shard_count, StreamName="reshape", TargetShardCount=9, ScalingType="UNIFORM_SCALING")
    assert code == "LimitExceededException", msg


def test_the_readmes_aws_cli_tour(cluster):
    """The AWS CLI commands of the README's tour, as a user types them."""
    import base64 as b64
    import os
    import subprocess
    import sys

    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}

    def run(*args):
        out = subprocess.run([aws, "--endpoint-url", cluster.endpoint(2), *args], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    run("kinesis", "create-stream", "--stream-name", "clicks", "--shard-count", "2")
    run("kinesis", "wait", "stream-exists", "--stream-name", "clicks")
    put = json.loads(run("kinesis", "put-record", "--stream-name", "clicks", "--partition-key", "user-1", "--data", "first click"))
    assert put["ShardId"] == "shardId-000000000001"  # the shard the README reads
    shards = json.loads(run("kinesis", "list-shards", "--stream-name", "clicks"))["Shards"]
    assert [s["ShardId"] for s in shards] == ["shardId-000000000000", "shardId-000000000001"]
    it = run("kinesis", "get-shard-iterator", "--stream-name", "clicks", "--shard-id", put["ShardId"],
             "--shard-iterator-type", "TRIM_HORIZON", "--query", "ShardIterator", "--output", "text").strip()
    records = json.loads(run("kinesis", "get-records", "--shard-iterator", it))["Records"]
    assert [b64.b64decode(r["Data"]) for r in records] == [b"first click"]
    assert records[0]["SequenceNumber"] == put["SequenceNumber"]
    run("kinesis", "delete-stream", "--stream-name", "clicks")


def test_on_demand_retention_tags_mode_and_consumers(kinesis):
    kinesis.create_stream(StreamName="settings", StreamModeDetails={"StreamMode": "ON_DEMAND"}, Tags={"team": "data"})
    wait_active(kinesis, "settings")
    arn = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/settings"
    summary = kinesis.describe_stream_summary(StreamName="settings")["StreamDescriptionSummary"]
    assert summary["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"} and summary["OpenShardCount"] == 4
    code, msg, _ = error_of(kinesis.create_stream, StreamName="od2", ShardCount=2, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert code == "InvalidArgumentException" and "ShardCount" in msg

    # Retention moves only in the direction asked, and within 24-8,760 hours.
    kinesis.increase_stream_retention_period(StreamName="settings", RetentionPeriodHours=72)
    assert kinesis.describe_stream_summary(StreamName="settings")["StreamDescriptionSummary"]["RetentionPeriodHours"] == 72
    code, msg, _ = error_of(kinesis.increase_stream_retention_period, StreamName="settings", RetentionPeriodHours=48)
    assert code == "InvalidArgumentException" and "can not be shorter" in msg
    code, msg, _ = error_of(kinesis.decrease_stream_retention_period, StreamName="settings", RetentionPeriodHours=100)
    assert code == "InvalidArgumentException" and "can not be longer" in msg
    code, msg, _ = error_of(kinesis.increase_stream_retention_period, StreamName="settings", RetentionPeriodHours=9000)
    assert code == "InvalidArgumentException" and "8760" in msg
    kinesis.decrease_stream_retention_period(StreamARN=arn, RetentionPeriodHours=24)
    assert kinesis.describe_stream(StreamName="settings")["StreamDescription"]["RetentionPeriodHours"] == 24

    # Tags: set at creation, added, listed in pages, removed; at most 10 per call.
    kinesis.add_tags_to_stream(StreamName="settings", Tags={"env": "dev", "cost": "42"})
    tags = kinesis.list_tags_for_stream(StreamName="settings")
    assert tags["Tags"] == [{"Key": "cost", "Value": "42"}, {"Key": "env", "Value": "dev"}, {"Key": "team", "Value": "data"}]
    assert not tags["HasMoreTags"]
    first = kinesis.list_tags_for_stream(StreamName="settings", Limit=1)
    assert first["HasMoreTags"] and first["Tags"] == [{"Key": "cost", "Value": "42"}]
    rest = kinesis.list_tags_for_stream(StreamName="settings", ExclusiveStartTagKey="cost")
    assert [t["Key"] for t in rest["Tags"]] == ["env", "team"]
    kinesis.remove_tags_from_stream(StreamName="settings", TagKeys=["cost", "env"])
    assert kinesis.list_tags_for_stream(StreamARN=arn)["Tags"] == [{"Key": "team", "Value": "data"}]
    code, msg, _ = error_of(kinesis.add_tags_to_stream, StreamName="settings", Tags={f"k{i}": "v" for i in range(11)})
    assert code == "InvalidArgumentException", msg
    code, _, _ = error_of(kinesis.list_tags_for_stream, StreamName="no-such-stream")
    assert code == "ResourceNotFoundException"

    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
    assert kinesis.describe_stream_summary(StreamName="settings")["StreamDescriptionSummary"]["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}

    # Consumers: registered, described by name or ARN, listed, unique, and they guard deletion.
    c = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="billing")["Consumer"]
    assert c["ConsumerName"] == "billing" and c["ConsumerStatus"] == "ACTIVE"
    assert c["ConsumerARN"].startswith(arn + "/consumer/billing:")
    by_arn = kinesis.describe_stream_consumer(ConsumerARN=c["ConsumerARN"])["ConsumerDescription"]
    by_name = kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="billing")["ConsumerDescription"]
    assert by_arn == by_name and by_arn["StreamARN"] == arn
    kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="audit")
    assert [x["ConsumerName"] for x in kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]] == ["audit", "billing"]
    page = kinesis.list_stream_consumers(StreamARN=arn, MaxResults=1)
    assert len(page["Consumers"]) == 1 and page["NextToken"]
    assert [x["ConsumerName"] for x in kinesis.list_stream_consumers(StreamARN=arn, NextToken=page["NextToken"])["Consumers"]] == ["billing"]
    assert kinesis.describe_stream_summary(StreamName="settings")["StreamDescriptionSummary"]["ConsumerCount"] == 2
    code, _, _ = error_of(kinesis.register_stream_consumer, StreamARN=arn, ConsumerName="billing")
    assert code == "ResourceInUseException"
    code, msg, _ = error_of(kinesis.delete_stream, StreamName="settings")
    assert code == "ResourceInUseException" and "EnforceConsumerDeletion" in msg
    kinesis.deregister_stream_consumer(ConsumerARN=c["ConsumerARN"])
    code, _, _ = error_of(kinesis.describe_stream_consumer, StreamARN=arn, ConsumerName="billing")
    assert code == "ResourceNotFoundException"
    kinesis.delete_stream(StreamName="settings", EnforceConsumerDeletion=True)
    kinesis.get_waiter("stream_not_exists").wait(StreamName="settings", WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def test_huge_headers_and_stalled_clients_harm_no_one(cluster, kinesis):
    import socket

    port = int(cluster.endpoint(1).rsplit(":", 1)[1])
    # A stalled client: headers begun, never finished, connection held open.
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\n")
    # A client whose headers are far over the limit gets an error and its connection closed.
    huge = socket.create_connection(("127.0.0.1", port), timeout=10)
    huge.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * (256 << 10) + b"\r\n\r\n")
    reply = b""
    try:
        while chunk := huge.recv(65536):
            reply += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    assert reply == b"" or reply.split(b" ")[1] in (b"400", b"413", b"431"), reply[:100]
    # Meanwhile everyone else is served as usual.
    assert "StreamNames" in kinesis.list_streams()
    stalled.close()
    huge.close()


def test_slow_clients_are_cut_off_and_write_nothing():
    import socket

    c = Cluster(3, args=["--kinesis-read-timeout-secs", "1"])
    try:
        kinesis = c.client(1)
        kinesis.create_stream(StreamName="slow", ShardCount=1)
        wait_active(kinesis, "slow")
        port = c.http[1]
        body = json.dumps({"StreamName": "slow", "Data": "aGk=", "PartitionKey": "k"}).encode()
        head = (
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.PutRecord\r\n"
            b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: %d\r\n\r\n" % len(body)
        )

        def reply_to(data):
            """What the server answers to `data` sent and then nothing, until it closes
            the connection (None if it keeps it open for 15 s)."""
            s = socket.create_connection(("127.0.0.1", port), timeout=15)
            s.sendall(data)
            reply = b""
            try:
                while chunk := s.recv(65536):
                    reply += chunk
            except ConnectionResetError:
                pass
            except socket.timeout:
                reply = None
            s.close()
            return reply

        # A body that stops short: RequestTimeoutException once the second has passed.
        started = time.monotonic()
        reply = reply_to(head + body[:-5])
        assert reply is not None and reply.split(b" ")[1] == b"408", reply
        assert b"RequestTimeoutException" in reply, reply
        assert time.monotonic() - started < 10, "cut off after the configured second, not the default 30"
        # Headers that never end: the connection is closed (with a 408 or without a word).
        reply = reply_to(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kin")
        assert reply is not None, "a client stalled in its headers kept its connection"
        # A client that connects and never says a word is closed too.
        assert reply_to(b"") == b"", "a silent client kept its connection"
        assert reply == b"" or reply.split(b" ")[1] == b"408", reply
        # Nothing was written, and a client that keeps pace is served.
        it = kinesis.get_shard_iterator(StreamName="slow", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        assert kinesis.get_records(ShardIterator=it)["Records"] == []
        kinesis.put_record(StreamName="slow", Data=b"ok", PartitionKey="k")
    finally:
        c.stop()
