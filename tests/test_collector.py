"""The collector: real uvicorn on 127.0.0.1, real httpx, real SQLite (and PostgreSQL when it can run)."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import resource
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import sqlalchemy
import zstandard
from conftest import Backend
from test_uploader import HeldBlobStore

from demotrace.collector.app import create_app
from demotrace.collector.errors import BadRequest, Conflict, PayloadTooLarge, Unauthorized
from demotrace.collector.ingest import IngestService, decompress_bounded
from demotrace.collector.limits import CollectorLimits
from demotrace.collector.reader import CollectorReader, iter_batches, load_frame
from demotrace.collector.server import ServerThread
from demotrace.collector.store import (
    BlobKeyError,
    BlobStore,
    CollectorLocation,
    LocalBlobStore,
    MetadataStore,
    S3BlobStore,
)
from demotrace.model import (
    Batch,
    Button,
    Event,
    Frame,
    FrameTaken,
    Key,
    Marker,
    Monitor,
    MovePath,
    Record,
    SessionHeader,
    Window,
    encode_record,
)
from demotrace.protocol import RECORD_MEDIA_TYPE, record_id_of

MiB = 1024 * 1024
SQLITE_FOLDER = Backend("sqlite+folder", None, None)


# --- records ---------------------------------------------------------------------------------------


def make_batch(session_id: str, seq: int, device_id: str = "claimed-by-client") -> Batch:
    t = 100.0 + seq
    header = None
    if seq == 0:
        header = SessionHeader(
            session_id=session_id,
            device_id=device_id,
            platform="x11",
            screen_width=1920,
            screen_height=1080,
            monitors=[Monitor(0, 0, 1920, 1080)],
            double_click_ms=400,
            double_click_px=4,
            t=t,
            wall=1_700_000_000.0 + t,
        )
    events: list[Event] = [
        Window(t=t, wall=1e9 + t, app="XTerm", title="bash", pid=42, x=0, y=0, width=800, height=600),
        FrameTaken(
            t=t + 0.1,
            wall=1e9 + t,
            frame_id=f"{session_id}-f{seq}",
            left=0,
            top=0,
            width=64,
            height=48,
            trigger="click",
        ),
        MovePath(t=t + 0.05, wall=1e9 + t, points=[(1, 2, 0.0), (30, 40, 0.05)]),
        Button(t=t + 0.1, wall=1e9 + t, down=True, button="left", x=30, y=40),
        Button(t=t + 0.2, wall=1e9 + t, down=False, button="left", x=30, y=40),
        Key(t=t + 0.3, wall=1e9 + t, down=True, key="a", keysym=97, char="a"),
        Marker(t=t + 0.4, wall=1e9 + t, kind="task_end", text="done"),
    ]
    return Batch(
        batch_id=f"{session_id}-b{seq}",
        session_id=session_id,
        device_id=device_id,
        seq=seq,
        events=events,
        header=header,
    )


def make_frame(session_id: str, index: int, size: int = 4096, device_id: str = "claimed-by-client") -> Frame:
    return Frame(
        frame_id=f"{session_id}-f{index}",
        session_id=session_id,
        device_id=device_id,
        t=100.0 + index,
        wall=1e9 + index,
        left=0,
        top=0,
        width=64,
        height=48,
        media_type="image/webp",
        data=os.urandom(size),
    )


def packed(record: Record) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(encode_record(record))


def owned(record: Record, device_id: str) -> Record:
    """What the collector should store: the record with the authenticated device's id."""
    if isinstance(record, Batch) and record.header is not None:
        header = msgspec.structs.replace(record.header, device_id=device_id)
        return msgspec.structs.replace(record, device_id=device_id, header=header)
    return msgspec.structs.replace(record, device_id=device_id)


# --- a live collector ------------------------------------------------------------------------------


@dataclass
class Live:
    url: str
    data_dir: Path
    client: httpx.Client
    backend: Backend = SQLITE_FOLDER

    @property
    def location(self) -> CollectorLocation:
        return CollectorLocation(self.data_dir, self.backend.database_url, self.backend.blobs_url)

    def reader(self) -> CollectorReader:
        return CollectorReader(location=self.location)

    def enroll(self, name: str = "laptop-1") -> tuple[str, str]:
        response = self.client.post(f"{self.url}/v1/enroll", json={"device_name": name})
        assert response.status_code == 201, response.text
        body = response.json()
        return body["device_id"], body["token"]

    def put(
        self, token: str | None, rid: str, body: bytes, content_type: str = RECORD_MEDIA_TYPE
    ) -> httpx.Response:
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.put(f"{self.url}/v1/records/{rid}", content=body, headers=headers)

    def record_count(self) -> int:
        store = MetadataStore.from_url(self.location.database(), migrate=False)
        try:
            return store.record_count()
        finally:
            store.close()

    def blob_files(self) -> list[str]:
        return list(self.location.blobs().keys())


def start_collector(data_dir: Path, backend: Backend, **settings: Any) -> ServerThread:
    app = create_app(data_dir, database_url=backend.database_url, blobs_url=backend.blobs_url, **settings)
    return ServerThread(app)


@pytest.fixture
def live(tmp_path: Path, backend: Backend) -> Iterator[Live]:
    """A live collector on each backend: SQLite + blob folder, and PostgreSQL + S3 (moto)."""
    data_dir = tmp_path / "data"
    with start_collector(data_dir, backend) as server, httpx.Client(timeout=30) as client:
        yield Live(server.url, data_dir, client, backend)


@pytest.fixture
def small_limits(tmp_path: Path) -> Iterator[Live]:
    data_dir = tmp_path / "small"
    app = create_app(data_dir, max_body_bytes=1 * MiB, max_record_bytes=2 * MiB)
    with ServerThread(app) as server, httpx.Client(timeout=30) as client:
        yield Live(server.url, data_dir, client)


# --- HTTP ------------------------------------------------------------------------------------------


def test_health(live: Live) -> None:
    response = live.client.get(f"{live.url}/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_enroll_gives_device_and_token_and_stores_only_its_hash(live: Live) -> None:
    device_id, token = live.enroll()
    other_id, other_token = live.enroll("laptop-2")
    assert device_id != other_id and token != other_token
    assert len(token) >= 40  # token_urlsafe(32)
    engine = sqlalchemy.create_engine(live.location.database())
    with engine.connect() as connection:
        rows = connection.execute(sqlalchemy.text("SELECT device_id, name, token_sha256 FROM devices")).all()
    engine.dispose()
    assert {row.device_id: row.name for row in rows} == {device_id: "laptop-1", other_id: "laptop-2"}
    stored = {row.token_sha256 for row in rows}
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert token not in stored
    if live.backend.database_url is None:
        assert token.encode() not in (live.data_dir / "collector.db").read_bytes()


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[]", b'{"name": "x"}', b'{"device_name": ""}', b'{"device_name": 3}']
)
def test_enroll_with_a_bad_body_is_400(live: Live, body: bytes) -> None:
    response = live.client.post(
        f"{live.url}/v1/enroll", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request"


def test_enroll_with_a_secret(tmp_path: Path) -> None:
    with ServerThread(create_app(tmp_path / "data", enrollment_secret="s3cret")) as server:
        url = f"{server.url}/v1/enroll"
        body = {"device_name": "laptop"}
        missing = httpx.post(url, json=body)
        wrong = httpx.post(url, json=body, headers={"X-Enrollment-Secret": "guess"})
        right = httpx.post(url, json=body, headers={"X-Enrollment-Secret": "s3cret"})
    assert missing.status_code == 401 and "secret" in missing.json()["detail"]
    assert wrong.status_code == 401
    assert right.status_code == 201 and set(right.json()) == {"device_id", "token", "person_id"}


def test_upload_round_trip_gives_back_the_records(live: Live) -> None:
    device_id, token = live.enroll()
    records: list[Record] = []
    for session in ("s-a", "s-b"):
        for seq in range(3):
            records += [make_batch(session, seq), make_frame(session, seq)]
    for record in reversed(records):  # arrival order must not matter to the reader
        response = live.put(token, record_id_of(record), packed(record))
        assert response.status_code == 201, response.text
        assert response.json() == {"record_id": record_id_of(record), "status": "created"}

    with live.reader() as reader:
        batches = list(reader.iter_batches())
        frames = list(reader.iter_frames())
        assert reader.load_frame("s-b-f1") == owned(records[9], device_id)
        assert reader.load_frame("nope") is None
        assert reader.load_frame("s-a-b0") is None  # a batch id is not a frame
        rows = {row.record_id: row for row in reader.rows()}
    expected = [owned(r, device_id) for r in records]
    assert batches == [r for r in expected if isinstance(r, Batch)]
    assert frames == [r for r in expected if isinstance(r, Frame)]
    if live.backend.database_url is None:  # the folder shortcuts
        assert list(iter_batches(live.data_dir)) == batches
        assert load_frame(live.data_dir)("s-a-f2") == expected[5]

    row = rows["s-a-b1"]
    assert (row.kind, row.device_id, row.session_id, row.seq, row.t) == ("batch", device_id, "s-a", 1, 101.0)
    assert row.size == len(encode_record(expected[2]))
    assert rows["s-a-f1"].seq is None and rows["s-a-f1"].wall == 1e9 + 1


def test_resending_stores_once(live: Live) -> None:
    _, token = live.enroll()
    record = make_batch("s", 0)
    first = live.put(token, record_id_of(record), packed(record))
    second = live.put(
        token, record_id_of(record), zstandard.ZstdCompressor(level=19).compress(encode_record(record))
    )
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["status"] == "already_stored"
    assert live.record_count() == 1
    assert len(live.blob_files()) == 1


def test_concurrent_duplicates_store_once_and_never_fail(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    app = create_app(data_dir, limits=CollectorLimits(max_uploads_per_device=8))
    with ServerThread(app) as server, httpx.Client(timeout=30) as client:
        _concurrent_duplicates(Live(server.url, data_dir, client))


def _concurrent_duplicates(live: Live) -> None:
    _, token = live.enroll()
    record = make_frame("s", 0, size=256 * 1024)
    body = packed(record)
    start = threading.Barrier(8)

    def send(_: int) -> int:
        start.wait()
        return live.put(token, record_id_of(record), body).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(send, range(8)))
    assert statuses == [200] * 7 + [201]
    assert live.record_count() == 1
    assert len(live.blob_files()) == 1


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token", "Basic abc", "Bearer", "Bearer " + "x" * 5000]
)
def test_wrong_or_missing_token_is_401_and_nothing_is_stored(live: Live, authorization: str | None) -> None:
    live.enroll()
    record = make_batch("s", 0)
    headers = {"Content-Type": RECORD_MEDIA_TYPE}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = live.client.put(
        f"{live.url}/v1/records/{record_id_of(record)}", content=packed(record), headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert live.record_count() == 0
    assert live.blob_files() == []


def _bad_bodies() -> dict[str, bytes]:
    compress = zstandard.ZstdCompressor().compress
    good = packed(make_batch("s", 0))
    return {
        "empty": b"",
        "not zstd": b"hello, this is not zstd at all",
        "zstd of garbage": compress(b"\xc1\xc1\xc1 garbage"),
        "zstd of the wrong type": compress(msgspec.msgpack.encode({"type": "nope", "x": 1})),
        "zstd of a bare list": compress(msgspec.msgpack.encode([1, 2, 3])),
        "missing fields": compress(msgspec.msgpack.encode({"type": "batch", "batch_id": "s-b0"})),
        "truncated zstd": good[: len(good) // 2],
        "trailing junk": good + b"junk",
        "negative seq": compress(encode_record(msgspec.structs.replace(make_batch("s", 0), seq=-1))),
        "NUL in session": compress(
            encode_record(msgspec.structs.replace(make_batch("s", 0), session_id="a\0b"))
        ),
    }


@pytest.mark.parametrize("name", list(_bad_bodies()))
def test_malformed_body_is_400_and_the_server_keeps_working(live: Live, name: str) -> None:
    _, token = live.enroll()
    response = live.put(token, "s-b0", _bad_bodies()[name])
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request"
    assert response.json()["detail"]
    assert live.record_count() == 0

    record = make_batch("s", 0)
    assert live.put(token, record_id_of(record), packed(record)).status_code == 201


def test_record_id_mismatch_is_400(live: Live) -> None:
    _, token = live.enroll()
    record = make_batch("s", 0)
    response = live.put(token, "some-other-id", packed(record))
    assert response.status_code == 400
    assert "differs" in response.json()["detail"]
    assert live.record_count() == 0


@pytest.mark.parametrize("bad_id", [".hidden", "a b", "x" * 129, "a%2Fb", "%2E%2E"])
def test_unsafe_record_ids_are_400(live: Live, bad_id: str) -> None:
    _, token = live.enroll()
    response = live.put(token, bad_id, packed(make_batch("s", 0)))
    assert response.status_code in (400, 404), response.text
    assert live.blob_files() == []


def test_wrong_content_type_is_415(live: Live) -> None:
    _, token = live.enroll()
    record = make_batch("s", 0)
    response = live.put(token, record_id_of(record), packed(record), content_type="application/octet-stream")
    assert response.status_code == 415
    assert live.record_count() == 0


def test_a_method_a_path_does_not_take_is_405_with_every_method_it_takes(live: Live) -> None:
    schema = live.client.get(f"{live.url}/openapi.json").json()
    checked = 0
    for template, operations in schema["paths"].items():
        path = re.sub(r"\{[^}]+\}", "x1", template)
        served = {method.upper() for method in operations}
        for method in ("OPTIONS", "DELETE", "PATCH"):
            if method in served:
                continue
            response = live.client.request(method, f"{live.url}{path}")
            assert response.status_code == 405, (method, path, response.text)
            assert set(response.headers["allow"].split(", ")) == served, (method, path)
            assert response.json()["error"] == "method_not_allowed"
            checked += 1
    assert checked >= 3 * 15  # every API path
    # Two routes on one path: both methods are named (Starlette named only the first route's).
    allow = live.client.options(f"{live.url}/v1/admin/policy").headers["allow"]
    assert allow == "GET, PUT"


def test_device_id_claimed_by_the_client_is_overwritten(live: Live) -> None:
    device_id, token = live.enroll()
    victim_id, _ = live.enroll("victim")
    batch = make_batch("s", 0, device_id=victim_id)
    frame = make_frame("s", 0, device_id=victim_id)
    for record in (batch, frame):
        assert live.put(token, record_id_of(record), packed(record)).status_code == 201
    with live.reader() as reader:
        (stored_batch,) = reader.iter_batches()
        stored_frame = reader.load_frame(frame.frame_id)
        rows = list(reader.rows())
    assert stored_batch.device_id == device_id
    assert stored_batch.header is not None and stored_batch.header.device_id == device_id
    assert stored_frame is not None and stored_frame.device_id == device_id
    assert {row.device_id for row in rows} == {device_id}


def test_a_record_id_cannot_be_taken_over(live: Live) -> None:
    _, token = live.enroll()
    _, other_token = live.enroll("other")
    record = make_batch("s", 0)
    assert live.put(token, record_id_of(record), packed(record)).status_code == 201
    # Another device reusing the id, and the same device sending different content under it.
    assert live.put(other_token, record_id_of(record), packed(record)).status_code == 409
    changed = msgspec.structs.replace(record, events=[])
    response = live.put(token, record_id_of(record), packed(changed))
    assert response.status_code == 409 and response.json()["error"] == "conflict"
    assert live.record_count() == 1
    assert len(live.blob_files()) == 1
    with live.reader() as reader:
        (stored,) = reader.iter_batches()
    assert stored.events == record.events


def test_oversize_body_is_413(small_limits: Live) -> None:
    _, token = small_limits.enroll()
    big = make_frame("s", 0, size=int(1.5 * MiB))  # random bytes: zstd cannot shrink them under 1 MiB
    body = packed(big)
    assert len(body) > MiB
    response = small_limits.put(token, big.frame_id, body)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while streaming too
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    streamed = small_limits.client.put(
        f"{small_limits.url}/v1/records/{big.frame_id}",
        content=chunks(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": RECORD_MEDIA_TYPE},
    )
    assert streamed.status_code == 413
    assert small_limits.record_count() == 0
    small = make_frame("s", 1)
    assert small_limits.put(token, small.frame_id, packed(small)).status_code == 201


def test_body_over_default_limit_is_413(live: Live) -> None:
    _, token = live.enroll()
    response = live.put(token, "s-f0", os.urandom(33 * MiB))
    assert response.status_code == 413
    assert live.record_count() == 0


def _zstd_bomb(size: int, declare_size: bool) -> bytes:
    """``size`` zero bytes compressed, built in 1 MiB steps so the test itself stays small."""
    compressor = zstandard.ZstdCompressor(level=1)
    chunk = bytes(MiB)
    if declare_size:
        compressed = compressor.compressobj(size=size)
        parts = [compressed.compress(chunk) for _ in range(size // MiB)]
        return b"".join([*parts, compressed.flush()])
    compressed = compressor.compressobj()
    parts = [compressed.compress(chunk) for _ in range(size // MiB)]
    return b"".join([*parts, compressed.flush()])


@pytest.mark.parametrize("declare_size", [True, False])
def test_zstd_bomb_is_413_without_using_the_memory(live: Live, declare_size: bool) -> None:
    _, token = live.enroll()
    bomb = _zstd_bomb(1024 * MiB, declare_size)
    assert len(bomb) < MiB
    peak_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    response = live.put(token, "s-b0", bomb)
    peak_after_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    # The server runs in this process: its peak memory grew by far less than the 1 GiB the bomb holds.
    assert (peak_after_kib - peak_before_kib) * 1024 < 200 * MiB
    assert live.record_count() == 0
    record = make_batch("s", 0)
    assert live.put(token, record_id_of(record), packed(record)).status_code == 201


def test_decompress_bounded_streams_past_the_declared_size() -> None:
    assert decompress_bounded(zstandard.ZstdCompressor().compress(b"abc" * 1000), 3000) == b"abc" * 1000
    with pytest.raises(PayloadTooLarge):
        decompress_bounded(zstandard.ZstdCompressor().compress(b"abc" * 1000), 2999)
    with pytest.raises(PayloadTooLarge):
        decompress_bounded(_zstd_bomb(64 * MiB, declare_size=False), 8 * MiB)
    with pytest.raises(BadRequest):
        decompress_bounded(b"\x28\xb5\x2f\xfd" + b"\xff" * 20, 1000)  # zstd magic, nonsense header


@pytest.fixture(params=["folder", "s3"])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "folder":
        return LocalBlobStore(tmp_path / "blobs")
    bucket: str = request.getfixturevalue("s3_bucket")
    return S3BlobStore.from_url(f"{bucket}/some/prefix")


def test_blob_store_keys_cannot_escape_its_root(blob_store: BlobStore, tmp_path: Path) -> None:
    for bad in ("../x", "/etc/passwd", "a//b", "a/./b", "", "a/..", "a\\..\\b"):
        with pytest.raises(BlobKeyError):
            blob_store.put(bad, b"x")
    blob_store.put("a/b/c.bin", b"data")
    assert blob_store.get("a/b/c.bin") == b"data" and blob_store.exists("a/b/c.bin")
    blob_store.put("a/b/c.bin", b"new")  # overwrite is atomic replace
    assert blob_store.get("a/b/c.bin") == b"new"
    blob_store.put("a/d.bin", b"other")
    assert list(blob_store.keys()) == ["a/b/c.bin", "a/d.bin"]  # no temp file left, nothing else
    assert list(blob_store.keys("a/b/")) == ["a/b/c.bin"]
    if isinstance(blob_store, LocalBlobStore):
        assert [p.name for p in (tmp_path / "blobs" / "a" / "b").iterdir()] == ["c.bin"]
    blob_store.delete("a/b/c.bin")
    blob_store.delete("a/b/c.bin")  # deleting what is not there is no error
    assert blob_store.get("a/b/c.bin") is None and not blob_store.exists("a/b/c.bin")
    assert list(blob_store.keys()) == ["a/d.bin"]


def test_s3_store_keeps_its_objects_under_its_prefix_and_pickles(s3_bucket: str, moto: Any) -> None:
    store = S3BlobStore.from_url(f"{s3_bucket}/fleet/blobs")
    store.put("batch/d/r.zst", b"payload")
    listed = moto.client().list_objects_v2(Bucket=store.bucket)["Contents"]
    assert [item["Key"] for item in listed] == ["fleet/blobs/batch/d/r.zst"]
    copy = pickle.loads(pickle.dumps(store))  # what a worker process gets: the URL, not a client
    assert copy.url == f"{s3_bucket}/fleet/blobs" and copy.get("batch/d/r.zst") == b"payload"


def test_reader_refuses_a_folder_that_is_not_a_collector(tmp_path: Path) -> None:
    from demotrace.collector.reader import ReaderError

    with pytest.raises(ReaderError):
        CollectorReader(tmp_path)


# --- the store and service against each SQL backend -------------------------------------------------


@pytest.fixture
def ingest(database_url: str, tmp_path: Path) -> Iterator[IngestService]:
    metadata = MetadataStore.from_url(database_url)
    yield IngestService(metadata, LocalBlobStore(tmp_path / "blobs"))
    metadata.close()


def test_store_enrols_and_authenticates(ingest: IngestService) -> None:
    enrollment = ingest.enroll("laptop")
    assert ingest.authenticate(f"Bearer {enrollment.token}") == enrollment.device_id
    assert ingest.authenticate(f"bearer   {enrollment.token} ") == enrollment.device_id
    for bad in (None, "", "Bearer", f"Token {enrollment.token}", "Bearer nope"):
        with pytest.raises(Unauthorized):
            ingest.authenticate(bad)
    assert ingest.metadata.device_count() == 1


def test_store_round_trip_idempotence_and_conflicts(
    ingest: IngestService, database_url: str, tmp_path: Path
) -> None:
    device = ingest.enroll("laptop").device_id
    other = ingest.enroll("other").device_id
    records: list[Record] = [make_batch("s", 1), make_frame("s", 0), make_batch("s", 0), make_batch("t", 0)]
    for record in records:
        assert ingest.store_record(device, record_id_of(record), packed(record)).created
    assert not ingest.store_record(device, "s-b1", packed(records[0])).created
    with pytest.raises(Conflict):
        ingest.store_record(other, "s-b1", packed(records[0]))
    with pytest.raises(BadRequest):
        ingest.store_record(device, "s-b1", packed(records[2]))
    assert ingest.metadata.record_count() == 4
    assert ingest.metadata.record_count(kind="frame") == 1

    reader = CollectorReader(tmp_path, database_url=database_url, blob_store=ingest.blobs)
    try:
        assert list(reader.iter_batches()) == [owned(records[i], device) for i in (2, 0, 3)]
        assert list(reader.iter_batches(session_id="t")) == [owned(records[3], device)]
        assert reader.load_frame("s-f0") == owned(records[1], device)
    finally:
        reader.close()


def test_store_concurrent_duplicates(ingest: IngestService) -> None:
    device = ingest.enroll("laptop").device_id
    record = make_frame("s", 0, size=64 * 1024)
    body = packed(record)
    start = threading.Barrier(6)

    def store(_: int) -> bool:
        start.wait()
        return ingest.store_record(device, record.frame_id, body).created

    with ThreadPoolExecutor(6) as pool:
        created = list(pool.map(store, range(6)))
    assert created.count(True) == 1
    assert ingest.metadata.record_count() == 1


# --- at most so many uploads stored at once ---------------------------------------------------------


def test_uploads_past_the_concurrency_limit_are_told_to_come_back(database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    blobs = HeldBlobStore(data_dir / "blobs")
    app = create_app(
        data_dir,
        database_url=database_url,
        blob_store=blobs,
        max_concurrent_ingests=2,
        limits=CollectorLimits(max_uploads_per_device=4),
    )
    with ServerThread(app) as server, httpx.Client(timeout=60) as client:
        live = Live(server.url, data_dir, client)
        _, token = live.enroll()
        held = [make_frame("held", index, size=256 * 1024) for index in range(2)]
        answers: list[int] = []

        def put(record: Record) -> None:
            with httpx.Client(timeout=60) as own:
                answers.append(
                    Live(server.url, data_dir, own)
                    .put(token, record_id_of(record), packed(record))
                    .status_code
                )

        threads = [threading.Thread(target=put, args=(record,), daemon=True) for record in held]
        for thread in threads:
            thread.start()
        try:
            assert blobs.wait_for_writers(2)  # both slots are taken, mid-store
            late = make_frame("late", 0, size=512 * 1024)
            busy = live.put(token, record_id_of(late), packed(late))
            assert busy.status_code == 503, busy.text
            assert busy.json()["error"] == "busy"
            assert busy.headers["Retry-After"] == "5"
            # A chunk of a resumable upload counts as an upload body too.
            body = packed(late)
            opened = client.post(
                f"{server.url}/v1/uploads",
                json={"record_id": "late-f0", "size": len(body), "sha256": hashlib.sha256(body).hexdigest()},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert opened.status_code == 201, opened.text
            chunk = client.put(
                f"{server.url}/v1/uploads/{opened.json()['upload_id']}",
                content=body[:1000],
                headers={"Authorization": f"Bearer {token}", "Content-Range": f"bytes 0-999/{len(body)}"},
            )
            assert chunk.status_code == 503 and "Retry-After" in chunk.headers
            # Requests without an upload body are not limited.
            assert client.get(f"{server.url}/v1/health").status_code == 200
        finally:
            blobs.released.set()
            for thread in threads:
                thread.join(30)
        assert answers == [201, 201]
        assert live.put(token, record_id_of(late), packed(late)).status_code == 201  # a slot is free again
        assert app.state.ingest_slots.in_use == 0
        reader = CollectorReader(data_dir, database_url=database_url)
        try:
            rows = list(reader.rows())
            assert len(rows) == 3
            assert reader.load_frame("late-f0") == owned(late, rows[0].device_id)
        finally:
            reader.close()
