"""Real backing services on loopback for the tests and the benchmarks: a throw-away PostgreSQL server
(Debian's initdb + pg_ctl) and an S3-protocol server (moto in server mode, a subprocess).

    with postgres_server() as pg, moto_server() as s3:
        url = pg.create_database("t1")          # postgresql+psycopg://postgres@127.0.0.1:PORT/t1
        s3.create_bucket("blobs")               # then s3.environment() for boto3 (endpoint, keys)
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

START_TIMEOUT_S = 30.0


class ServiceUnavailable(RuntimeError):
    """The service's programs are not installed here."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # bounded: a server that never listens fails the caller
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class PostgresServer:
    root: Path
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        admin = sqlalchemy.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url(name)


def postgres_programs() -> tuple[str, str]:
    """initdb and pg_ctl: on PATH, or where Debian's postgresql package puts them."""
    debian_bins = ":".join(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
    search = f"{os.environ.get('PATH', '')}:{debian_bins}"
    initdb, pg_ctl = shutil.which("initdb", path=search), shutil.which("pg_ctl", path=search)
    if initdb is None or pg_ctl is None:
        raise ServiceUnavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    return initdb, pg_ctl


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on a free loopback port, in a temporary folder, removed afterwards."""
    initdb, pg_ctl = postgres_programs()
    root = Path(tempfile.mkdtemp(prefix="demotrace-pg-"))
    # initdb refuses to run as root: run the server as nobody, in a folder nobody owns.
    as_user: list[str] = []
    if os.geteuid() == 0:
        nobody = 65534
        os.chown(root, nobody, nobody)
        as_user = ["runuser", "-u", "nobody", "--"]
    data, port = root / "data", free_port()
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {root} -F -c max_connections=200"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield PostgresServer(root, port)
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class MotoServer:
    endpoint: str

    def environment(self) -> dict[str, str]:
        """The AWS settings that point boto3 (and so the collector) at this server."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self) -> S3Client:
        import boto3

        env = self.environment()
        client: S3Client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )
        return client

    def create_bucket(self, name: str) -> str:
        """A new bucket; returns its s3:// URL."""
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    """moto's S3-protocol server on a free loopback port, as a subprocess, stopped afterwards."""
    try:
        import moto.server  # noqa: F401
    except ImportError as error:
        raise ServiceUnavailable("moto[server] is not installed") from error
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield MotoServer(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
