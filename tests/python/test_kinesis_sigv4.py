"""With credentials configured, the Kinesis API accepts only requests signed (SigV4) by
one of them: boto3's own signer is the reference."""

import json
import urllib.error
import urllib.request

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions
import pytest

from freshet_cluster import Cluster, wait_active

KEY, SECRET = "AKIDFRESHETTEST", "s3cr3t/with+chars"


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(3, credentials={KEY: SECRET, "AKIDOTHER": "other"})
    yield c
    c.stop()


def code_of(call, **kw):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(**kw)
    return e.value.response["Error"]["Code"]


def send(cluster, body, headers):
    req = urllib.request.Request(cluster.endpoint(2) + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def signed(cluster, action, payload, secret=SECRET):
    """A request signed by botocore's SigV4 signer: (body, headers)."""
    body = json.dumps(payload).encode()
    req = botocore.awsrequest.AWSRequest(
        method="POST",
        url=cluster.endpoint(2) + "/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"Kinesis_20131202.{action}"},
    )
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(KEY, secret), "kinesis", "us-east-1").add_auth(req)
    return body, dict(req.headers.items())


def test_signed_requests_pass_and_everything_else_is_refused(cluster):
    good = cluster.client(1, key=(KEY, SECRET))
    good.create_stream(StreamName="signed", ShardCount=1)
    wait_active(good, "signed")
    put = good.put_record(StreamName="signed", Data=b"by the book", PartitionKey="k")
    # Another key of the file works on any node.
    other = cluster.client(3, key=("AKIDOTHER", "other"))
    it = other.get_shard_iterator(StreamName="signed", ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON")
    assert [r["Data"] for r in other.get_records(ShardIterator=it["ShardIterator"])["Records"]] == [b"by the book"]

    assert code_of(cluster.client(1, key=(KEY, "wrong-secret")).list_streams) == "InvalidSignatureException"
    assert code_of(cluster.client(2, key=("AKIDUNKNOWN", SECRET)).list_streams) == "UnrecognizedClientException"
    status, err = send(cluster, b"{}", {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Kinesis_20131202.ListStreams"})
    assert (status, err["__type"]) == (400, "MissingAuthenticationTokenException")
    # Who calls is checked first: an unsigned call of no action is refused as unsigned.
    status, err = send(cluster, b"{}", {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Nothing.At.All"})
    assert (status, err["__type"]) == (400, "MissingAuthenticationTokenException")
    body, headers = signed(cluster, "ListStreams", {})
    del headers["X-Amz-Date"]
    status, err = send(cluster, body, headers)
    assert (status, err["__type"]) == (400, "IncompleteSignatureException"), err
    assert "X-Amz-Date" in err["message"]

    # A signed request is accepted as signed, and refused once its body is altered.
    body, headers = signed(cluster, "PutRecord", {"StreamName": "signed", "Data": "YQ==", "PartitionKey": "k"})
    assert send(cluster, body, headers)[0] == 200
    body, headers = signed(cluster, "PutRecord", {"StreamName": "signed", "Data": "YQ==", "PartitionKey": "k"})
    tampered = body.replace(b'"k"', b'"x"')
    status, err = send(cluster, tampered, headers)
    assert (status, err["__type"]) == (400, "InvalidSignatureException")
    headers["X-Amz-Target"] = "Kinesis_20131202.DeleteStream"
    status, err = send(cluster, body, headers)
    assert (status, err["__type"]) == (400, "InvalidSignatureException")

    # Nothing refused was written: the stream holds the two accepted records.
    it = good.get_shard_iterator(StreamName="signed", ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON")
    assert len(good.get_records(ShardIterator=it["ShardIterator"])["Records"]) == 2
