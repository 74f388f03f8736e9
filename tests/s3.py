"""An S3-compatible server for tests: moto's standalone server on loopback, a fresh bucket per test."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import boto3
import pytest

ACCESS_KEY_ID = "testing-key"
SECRET_ACCESS_KEY = "testing-secret"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint_url: str

    def client(self):
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=REGION, aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY)

    def new_bucket(self) -> str:
        name = f"imagemesh-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.fixture(scope="session")
def s3_server():
    """moto's server on 127.0.0.1, a free port; it answers only this process's tests."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield S3Server(f"http://{host}:{port}")
    server.stop()
