from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.services import MotoServer, PostgresServer, ServiceUnavailable, moto_server, postgres_server
from demotrace.collector.store import default_database_url
from demotrace.demo.desktop import VirtualDesktop, missing_programs

# The portal's fixtures: a collector with an account of each role, and real Chromium pages.
pytest_plugins = ["tests.portal_support"]


@pytest.fixture(scope="session")
def desktop() -> Iterator[VirtualDesktop]:
    """One real Xvfb + openbox for the whole test session (1920x1080)."""
    missing = missing_programs()
    if missing:
        pytest.fail(f"X tests need {missing}: run scripts/setup.sh")
    with VirtualDesktop() as running:
        yield running


@pytest.fixture()
def bare_desktop() -> Iterator[VirtualDesktop]:
    """A fresh Xvfb with no window manager (for the pointer-window fallback)."""
    with VirtualDesktop(window_manager=False, width=1280, height=800) as running:
        yield running


# --- real storage backends: PostgreSQL and an S3-protocol server (moto), on loopback ---------------


@dataclass(frozen=True)
class Backend:
    """Where a collector under test keeps its data: ``database_url`` None means SQLite in the data
    folder, ``blobs_url`` None the blob folder in it."""

    name: str
    database_url: str | None
    blobs_url: str | None


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        with postgres_server() as server:
            yield server
    except ServiceUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    try:
        with moto_server() as server:
            yield server
    except ServiceUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture
def s3_bucket(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket on the moto server, with the AWS environment pointing at it; its s3:// URL."""
    for name, value in moto.environment().items():
        monkeypatch.setenv(name, value)
    return moto.create_bucket(f"t-{uuid.uuid4().hex[:20]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return default_database_url(tmp_path)
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"t_{uuid.uuid4().hex}")


@pytest.fixture(params=["sqlite+folder", "postgresql+s3"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The collector's two setups: the default (SQLite + blob folder) and a fleet's (PostgreSQL + S3)."""
    if request.param == "sqlite+folder":
        return Backend(request.param, None, None)
    server: PostgresServer = request.getfixturevalue("postgres")
    bucket: str = request.getfixturevalue("s3_bucket")
    return Backend(request.param, server.create_database(f"t_{uuid.uuid4().hex}"), f"{bucket}/blobs")


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB filesystem (tmpfs), so 'disk full' is the kernel's ENOSPC, not a simulation."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
