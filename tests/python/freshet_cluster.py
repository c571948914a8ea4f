"""A real 3-node Freshet cluster for the Python tests: separate `freshet-broker` processes
on 127.0.0.1 with their own RocksDB, built by `make test` (FRESHET_BIN)."""

import os
import pathlib
import random
import shutil
import socket
import subprocess
import tempfile
import time

import boto3
import botocore.config

ROOT = pathlib.Path(__file__).resolve().parents[2]


def bin_dir():
    d = os.environ.get("FRESHET_BIN")
    if not d:
        raise RuntimeError("set FRESHET_BIN to the directory holding freshet-broker (make test does)")
    return pathlib.Path(d)


_next_port = None


def free_port():
    """A free port below the kernel's ephemeral range, which outgoing connections draw
    from (a restarted node must get its port back)."""
    global _next_port
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    span = max(low - 10_000, 1000)
    if _next_port is None:
        _next_port = random.randrange(span)
    while True:
        port = 10_000 + _next_port % span
        _next_port += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


class Cluster:
    def __init__(self, nodes=3, credentials=None, args=()):
        """credentials: {access_key_id: secret}; the Kinesis API then checks SigV4.
        args: more freshet-broker flags for every node."""
        self.dir = tempfile.mkdtemp(prefix="freshet-py-")
        extra = list(args)
        if credentials:
            path = os.path.join(self.dir, "credentials")
            with open(path, "w") as f:
                f.write("# access key id, secret access key\n")
                f.writelines(f"{k} {v}\n" for k, v in credentials.items())
            extra += ["--credentials-file", path]
        self.grpc = {i: free_port() for i in range(1, nodes + 1)}
        self.http = {i: free_port() for i in range(1, nodes + 1)}
        peers = ",".join(f"{i}=127.0.0.1:{p}" for i, p in self.grpc.items())
        self.procs = {}
        for i in self.grpc:
            log = open(os.path.join(self.dir, f"node{i}.log"), "ab")
            self.procs[i] = subprocess.Popen(
                [
                    str(bin_dir() / "freshet-broker"),
                    "--id", str(i),
                    "--listen", f"127.0.0.1:{self.grpc[i]}",
                    "--kinesis-listen", f"127.0.0.1:{self.http[i]}",
                    "--peers", peers,
                    "--data-dir", os.path.join(self.dir, f"node{i}"),
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        subprocess.run(
            [str(bin_dir() / "freshet"), "cluster", "wait", "--timeout-secs", "60"],
            env={**os.environ, "FRESHET_ENDPOINT": f"http://127.0.0.1:{self.grpc[1]}"},
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def endpoint(self, node=1):
        return f"http://127.0.0.1:{self.http[node]}"

    def client(self, node=1, validate=True, key=("AKIDEXAMPLE", "secret")):
        """A boto3 Kinesis client for one node. validate=False turns off botocore's own
        parameter checks so that bad input reaches the server."""
        return boto3.client(
            "kinesis",
            endpoint_url=self.endpoint(node),
            region_name="us-east-1",
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            config=botocore.config.Config(
                parameter_validation=validate, retries={"max_attempts": 2, "mode": "standard"}
            ),
        )

    def logs(self):
        out = []
        for i in self.procs:
            with open(os.path.join(self.dir, f"node{i}.log"), errors="replace") as f:
                out.append(f"--- node {i}\n" + "".join(f.readlines()[-20:]))
        return "\n".join(out)

    def stop(self):
        for p in self.procs.values():
            p.kill()
            p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_active(client, name, timeout=30):
    deadline = time.time() + timeout
    while True:
        status = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        if status == "ACTIVE":
            return
        assert time.time() < deadline, f"{name} still {status}"
        time.sleep(0.1)
