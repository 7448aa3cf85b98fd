"""Running the collector: in the foreground (``demotrace server``, one process or several workers
behind one address) or on a background thread (tests, demos, embedding), and the checks that refuse an
unsafe exposure before anything is opened.

Several workers (``workers > 1``) are processes that share the listening socket; they share state only
through the database and the blob store (and, on one host, the folder of unfinished resumable uploads).
The starting process migrates the database and settles the master key first, so no worker races
another over either.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import ssl
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from demotrace.collector.app import create_app
from demotrace.collector.ingest import DEFAULT_MAX_CONCURRENT_INGESTS
from demotrace.collector.limits import CollectorLimits
from demotrace.collector.retention import DEFAULT_SWEEP_INTERVAL_S
from demotrace.collector.store import MetadataStore, default_database_url, load_master_key
from demotrace.collector.store.migrate import MigrationResult
from demotrace.collector.tls import CertificateReloader, TlsConfigError, server_context
from demotrace.memory import keep_heap_flat

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765

log = logging.getLogger(__name__)


class ServerConfigError(ValueError):
    """The collector would start in an unsafe or contradictory setup; the message says what to give."""


def is_loopback_host(host: str) -> bool:
    """True only for addresses nobody else can reach: ``localhost`` and loopback IPs (127/8, ::1).
    Anything else, ``0.0.0.0`` and host names included, may be reachable from the network."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_enrollment_exposure(host: str, enrollment_secret: str | None, open_enrollment: bool) -> None:
    """Refuse (ServerConfigError) to serve enrolment to the network without a secret, unless open
    enrolment was asked for by name; a loopback collector (a researcher's own, the demo) needs neither."""
    if enrollment_secret and open_enrollment:
        raise ServerConfigError(
            "--open-enrollment and --enrollment-secret contradict each other: give one of them"
        )
    if enrollment_secret or is_loopback_host(host):
        return
    if not open_enrollment:
        raise ServerConfigError(
            f"refusing to listen on {host} without an enrollment secret: anyone who can reach it could "
            "enrol a device and upload. Give --enrollment-secret (or DEMOTRACE_ENROLLMENT_SECRET), or "
            "--open-enrollment if every device that reaches it may enrol (behind a VPN, say)"
        )
    log.warning("enrolment is open to anyone who can reach %s (--open-enrollment)", host)


def check_transport_exposure(
    host: str, certfile: Path | None, keyfile: Path | None, allow_plain_http: bool
) -> None:
    """Refuse (ServerConfigError) to serve plain HTTP to the network unless asked for by name: device
    tokens, the enrolment secret, keystrokes and frames would cross it readable. Loopback needs no TLS."""
    if (certfile is None) != (keyfile is None):
        raise ServerConfigError("give both --certfile and --keyfile, or neither")
    if certfile is not None or is_loopback_host(host):
        return
    if not allow_plain_http:
        raise ServerConfigError(
            f"refusing to serve plain HTTP on {host}: tokens and recordings would cross the network "
            "readable. Give --certfile and --keyfile (PEM), or --allow-plain-http if a TLS proxy in "
            "front of the collector terminates HTTPS"
        )
    log.warning("serving plain HTTP on %s (--allow-plain-http): only behind a TLS-terminating proxy", host)


@dataclass(frozen=True)
class CollectorSettings:
    """Everything a collector process needs to build its app: handed to worker processes as JSON."""

    data_dir: str
    database_url: str | None = None
    blobs_url: str | None = None
    master_key_path: str | None = None
    enrollment_secret: str | None = None
    admin_token: str | None = None
    admin_token_file: str | None = None
    max_concurrent_ingests: int = DEFAULT_MAX_CONCURRENT_INGESTS
    retention_interval_s: float | None = DEFAULT_SWEEP_INTERVAL_S
    limits: dict[str, Any] | None = None  # CollectorLimits' fields (None: its defaults)

    def create_app(self, migrate: bool = True) -> FastAPI:
        data_dir = Path(self.data_dir)
        key_path = Path(self.master_key_path) if self.master_key_path else None
        return create_app(
            data_dir,
            database_url=self.database_url,
            enrollment_secret=self.enrollment_secret,
            blobs_url=self.blobs_url,
            master_key=load_master_key(key_path, data_dir),
            migrate=migrate,
            retention_interval_s=self.retention_interval_s,
            admin_token=self.admin_token,
            admin_token_file=Path(self.admin_token_file) if self.admin_token_file else None,
            max_concurrent_ingests=self.max_concurrent_ingests,
            limits=CollectorLimits(**self.limits) if self.limits is not None else None,
        )


_SETTINGS_ENV = "DEMOTRACE_COLLECTOR_WORKER_SETTINGS"


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn's factory): settings from the starter, no migration."""
    settings = CollectorSettings(**json.loads(os.environ[_SETTINGS_ENV]))
    keep_heap_flat()
    return settings.create_app(migrate=False)


def migrate_database(data_dir: Path, database_url: str | None = None) -> MigrationResult:
    """Bring the collector's database to this code's schema (``demotrace server migrate``)."""
    from demotrace.collector.store.migrate import upgrade_database

    data_dir.mkdir(parents=True, exist_ok=True)
    store = MetadataStore.from_url(database_url or default_database_url(data_dir), migrate=False)
    try:
        return upgrade_database(store.engine)
    finally:
        store.close()


def serve(
    data_dir: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    database_url: str | None = None,
    blobs_url: str | None = None,
    master_key_path: Path | None = None,
    enrollment_secret: str | None = None,
    open_enrollment: bool = False,
    log_level: str = "info",
    admin_token: str | None = None,
    admin_token_file: Path | None = None,
    max_concurrent_ingests: int = DEFAULT_MAX_CONCURRENT_INGESTS,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    allow_plain_http: bool = False,
    limits: CollectorLimits | None = None,
    workers: int = 1,
    retention_interval_s: float | None = DEFAULT_SWEEP_INTERVAL_S,
) -> None:
    """Run the collector in the foreground until interrupted (``demotrace server --data DIR``).

    Raises ServerConfigError, before anything is opened, when ``host`` is reachable from the network and
    enrolment would be open without ``open_enrollment`` saying so (see check_enrollment_exposure), or
    it would be plain HTTP without ``allow_plain_http`` (see check_transport_exposure). With a
    certificate it serves HTTPS, and SIGHUP reloads the certificate and key from their files (with one
    worker; several workers each load them once at their start). ``workers`` > 1 runs that many
    processes on one address (the database is migrated first, here); the per-client limits are then
    per worker.
    """
    check_enrollment_exposure(host, enrollment_secret, open_enrollment)
    check_transport_exposure(host, certfile, keyfile, allow_plain_http)
    keep_heap_flat()  # large bodies are mapped and given back when freed, not kept in the heap
    context = None
    if certfile is not None and keyfile is not None:
        try:
            context = server_context(certfile, keyfile)
        except TlsConfigError as error:
            raise ServerConfigError(str(error)) from error
    settings = CollectorSettings(
        data_dir=str(data_dir.resolve()),
        database_url=database_url,
        blobs_url=blobs_url,
        master_key_path=str(master_key_path) if master_key_path else None,
        enrollment_secret=enrollment_secret,
        admin_token=admin_token,
        max_concurrent_ingests=max_concurrent_ingests,
        retention_interval_s=retention_interval_s,
        admin_token_file=str(admin_token_file) if admin_token_file else None,
        limits=asdict(limits) if limits is not None else None,
    )
    if workers <= 1:
        if context is not None and certfile is not None and keyfile is not None:
            CertificateReloader(context, certfile, keyfile).install()
        app = settings.create_app()
        uvicorn.Server(_server_config(app, context, host=host, port=port, log_level=log_level)).run()
        return
    migrate_database(data_dir, database_url)
    load_master_key(master_key_path, data_dir)  # made once here, not raced by the workers
    os.environ[_SETTINGS_ENV] = json.dumps(asdict(settings))
    tls: dict[str, Any] = {}
    if certfile is not None and keyfile is not None:
        tls = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}
    uvicorn.run(
        f"{__name__}:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        timeout_keep_alive=5,
        **tls,
    )


def _server_config(app: FastAPI, context: ssl.SSLContext | None, **options: Any) -> uvicorn.Config:
    """uvicorn's settings for the collector, serving TLS from ``context`` (kept live for reloads)."""
    factory = None if context is None else (lambda _config, _default: context)
    return uvicorn.Config(
        app,
        ssl_context_factory=factory,
        # An idle kept-alive connection costs a socket: closed after 5 s, as uvicorn's default.
        timeout_keep_alive=5,
        **options,
    )


def reserve_port(host: str = DEFAULT_HOST) -> socket.socket:
    """A socket bound to a free port but not yet listening: connections to it are refused until a
    ServerThread serves on it, which lets tests know a server's address before it is up."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


class _SignallingServer(uvicorn.Server):
    """A uvicorn server that says when it listens, so starters wait on an Event instead of polling."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


class ServerThread:
    """A collector app served by uvicorn on a background thread: for tests, demos and embedding."""

    def __init__(
        self, app: FastAPI, sock: socket.socket | None = None, *, tls: ssl.SSLContext | None = None
    ) -> None:
        self.sock = sock if sock is not None else reserve_port()
        host, port = self.sock.getsockname()[:2]
        self.url = f"{'https' if tls is not None else 'http'}://{host}:{port}"
        self._server = _SignallingServer(_server_config(app, tls, log_level="warning", lifespan="on"))
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread = threading.Thread(target=self._run, name="collector-server", daemon=True)
        self._thread.start()
        if not self._server.ready.wait(timeout) or not self._server.started:
            self.stop()
            raise RuntimeError(f"collector did not start on {self.url}")
        return self

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self.sock])
        finally:
            self._server.ready.set()  # a failed start must not leave start() waiting

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
