"""A real S3 endpoint for tests: moto's standalone server (`moto_server`), a separate process on a free
loopback port. Nothing is patched in-process: boto3, pyarrow and MLflow talk to it over HTTP.

The server checks credentials as S3 does (moto's IAM access control): its first requests create a user with
an access key allowed to use S3, and from then on a request signed with another key, or with a wrong secret,
is refused. ``S3Server.env`` holds the standard variables a client needs (endpoint, region, that key).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hosts import BIN, free_port, wait_for

from roomclf.tracking.ui import stop_group

REGION = "us-east-1"
# The requests served before access control starts: create the user, its policy and its key (see start()).
BOOTSTRAP_REQUESTS = 3
S3_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class S3Server:
    """`moto_server` on 127.0.0.1, in its own process group."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}

    def start(self) -> S3Server:
        self.root.mkdir(parents=True, exist_ok=True)
        log = self.root / "moto.log"
        keep = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env = {**keep, "INITIAL_NO_AUTH_ACTION_COUNT": str(BOOTSTRAP_REQUESTS), "MOTO_DISABLE_TELEMETRY": "true"}
        self.proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
                                     env=env, cwd=self.root)
        try:
            # a TCP probe, not an HTTP request: every request before the bootstrap's would use one of its turns
            wait_for(lambda: _port_open(self.port), 60, "moto_server", self.proc, log)
            iam = self._client("iam", "bootstrap", "bootstrap")
            iam.create_user(UserName="roomclf-tests")
            iam.put_user_policy(UserName="roomclf-tests", PolicyName="s3", PolicyDocument=json.dumps(S3_POLICY))
            key = iam.create_access_key(UserName="roomclf-tests")["AccessKey"]
        except BaseException:
            self.stop()
            raise
        self.env = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
                    "AWS_ENDPOINT_URL": self.url, "AWS_ENDPOINT_URL_S3": self.url,
                    "MLFLOW_S3_ENDPOINT_URL": self.url, "AWS_DEFAULT_REGION": REGION,
                    "AWS_EC2_METADATA_DISABLED": "true"}
        return self

    def _client(self, service: str, key_id: str | None = None, secret: str | None = None):
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=key_id or self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=secret or self.env["AWS_SECRET_ACCESS_KEY"])

    def client(self):
        """A boto3 S3 client with the server's key."""
        return self._client("s3")

    def create_bucket(self, bucket: str) -> None:
        self.client().create_bucket(Bucket=bucket)

    def upload_tree(self, folder: Path, bucket: str, prefix: str) -> list[str]:
        """Every file under ``folder`` (dot files too), as ``prefix/<path relative to folder>``; returns the keys."""
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        keys = [f"{prefix.strip('/')}/{p.relative_to(folder).as_posix()}" for p in files]
        s3 = self.client()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda fk: s3.put_object(Bucket=bucket, Key=fk[1], Body=fk[0].read_bytes()),
                          zip(files, keys)))
        return keys

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=body)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None
