"""`build --engine ray`: the Ray Data engine writes the same dataset as the local one, byte for byte.

One local Ray (2 CPUs) serves the whole module: it takes 15-20 s to start here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from demotrace.collector.ingest import IngestService
from demotrace.collector.reader import CollectorReader, CollectorSource
from demotrace.collector.store import CollectorLocation, KeyRing, MetadataStore, default_database_url
from demotrace.dataset.build import build_dataset
from demotrace.dataset.distributed import FrameMap, SpoolFrames, build_dataset_ray
from demotrace.dataset.options import ShardLimits, prepare_build
from demotrace.dataset.parallel import map_sessions_in_pool
from demotrace.dataset.ray_stores import build_dataset_from_store
from demotrace.dataset.record_sources import SpoolRecords
from demotrace.dataset.sessions import SessionEvents, collect_sessions
from demotrace.dataset.store_build import build_dataset_from_source
from demotrace.device.spool import Spool, load_or_create_key
from demotrace.model import Batch, Marker, encode_record
from demotrace.protocol import record_id_of
from tests.dataset_samples import WALL0, Recording, recording

ray = pytest.importorskip("ray")

KEY = bytes(range(32))
# matplotlib names the SVG elements of report.html with random ids (its svg.hashsalt is unset), so two
# local builds differ there too: the report is compared with its ids renumbered in order.
_SVG_ID = re.compile(rb'(?:id="|href="#|url\(#)([A-Za-z0-9_-]+)')


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def fleet() -> Recording:
    """Four devices' sessions, out of start-time order, with what makes a build non-trivial: a marked
    task, typed secrets to redact, a session id in a title, a retried batch, a session without
    header, a step whose frame is missing, and an idle gap that splits an episode."""
    sessions = [
        recording("sess-c", "dev-3", start=300.0, text="pay 4111 1111 1111 1111 now"),
        recording("sess-a", "dev-1", start=0.0, task="Save the weekly report"),
        recording(
            "sess-b",
            "dev-2",
            start=100.0,
            title="Inbox sess-a - Mail",
            text="mail ann@example.com",
            extra_events=[Marker(t=200.0, wall=WALL0 + 200.0, kind="task_start", text="Late task")],
        ),
        recording("sess-d", "dev-1", start=100.0, image_format="WEBP", text="x"),
    ]
    data = Recording()
    for session in sessions:
        data = data.add(session)
    del data.frames["sess-d-dev-1-frame-2"]  # a step without its frame
    retried = data.batches[0]
    orphan = Batch(batch_id="orphan-b0", session_id="orphan", device_id="dev-9", seq=0, events=[])
    return Recording([*data.batches, retried, orphan], data.frames)


def report_without_ids(report: bytes) -> bytes:
    numbers: dict[bytes, bytes] = {}

    def renumber(match: re.Match[bytes]) -> bytes:
        name = numbers.setdefault(match.group(1), b"id%d" % len(numbers))
        return match.group(0).replace(match.group(1), name)

    return _SVG_ID.sub(renumber, report)


def dataset_files(out: Path) -> dict[str, bytes]:
    files = {str(path.relative_to(out)): path.read_bytes() for path in out.rglob("*") if path.is_file()}
    files["report.html"] = report_without_ids(files["report.html"])
    manifest = json.loads(files["manifest.json"])  # the same sessions; only the times of the builds differ
    files["manifest.json"] = json.dumps(manifest["sessions"], sort_keys=True).encode()
    return files


def assert_same_dataset(local: Path, distributed: Path) -> None:
    local_files, distributed_files = dataset_files(local), dataset_files(distributed)
    assert sorted(distributed_files) == sorted(local_files)
    different = [name for name in local_files if local_files[name] != distributed_files[name]]
    assert different == []


def test_ray_build_of_a_spool_is_byte_identical_to_the_local_build(ray_cluster: None, tmp_path: Path) -> None:
    key_path = tmp_path / "spool.key"
    spool = Spool(tmp_path / "spool", load_or_create_key(key_path))
    data = fleet()
    spool.append(list(data.frames.values()))
    spool.append(data.batches)  # the spool keeps one copy of the retried batch
    limits = ShardLimits(max_steps=4)  # several Parquet and WebDataset shards, so their order counts

    local = build_dataset(
        spool.batches(), spool.load_frame, tmp_path / "local" / "out", pseudonym_key=KEY, shard_limits=limits
    )
    distributed = build_dataset_ray(
        spool.batches(),
        SpoolFrames(tmp_path / "spool", key_path),
        tmp_path / "ray" / "out",
        pseudonym_key=KEY,
        shard_limits=limits,
    )
    spool.close()

    assert_same_dataset(tmp_path / "local" / "out", tmp_path / "ray" / "out")
    # The comparison covers a real build, not two empty folders.
    assert (distributed.sessions, distributed.sessions_without_header) == (4, 1)
    assert (distributed.episodes, distributed.steps) == (4, 16)
    assert distributed.episodes_dropped["empty"] == 1  # the late task, in which nothing was done
    assert distributed.frames_written == 15 and distributed.steps_without_frame == 1
    assert distributed.parquet_shards > 1 and distributed.webdataset_shards > 1
    assert distributed.redactions_by_kind and distributed.redactions_by_kind == local.redactions_by_kind
    assert b"sess-a" not in (tmp_path / "ray" / "out" / "trajectories.jsonl").read_bytes()


def test_ray_build_of_a_spool_by_id_matches_the_local_build(ray_cluster: None, tmp_path: Path) -> None:
    """Plain Ray tasks get session keys and record ids; each reads its sessions from the spool itself."""
    key_path = tmp_path / "spool.key"
    spool = Spool(tmp_path / "spool", load_or_create_key(key_path))
    data = fleet()
    spool.append(list(data.frames.values()))
    spool.append(data.batches)
    limits = ShardLimits(max_steps=4)
    local = build_dataset(
        spool.batches(), spool.load_frame, tmp_path / "local", pseudonym_key=KEY, shard_limits=limits
    )
    spool.close()
    distributed = build_dataset_from_store(
        SpoolRecords(tmp_path / "spool", key_path), tmp_path / "ray", pseudonym_key=KEY, shard_limits=limits
    )
    assert_same_dataset(tmp_path / "local", tmp_path / "ray")
    assert (distributed.sessions, distributed.sessions_without_header) == (4, 1)
    assert distributed.steps == local.steps == 16 and distributed.frames_written == 15
    assert distributed.parquet_shards > 1 and distributed.webdataset_shards > 1
    assert not (tmp_path / "ray" / ".pieces").exists()  # the workers' export pieces, assembled and gone


def test_ray_build_takes_the_same_options_as_the_local_build(ray_cluster: None, tmp_path: Path) -> None:
    data = fleet()
    options = {"idle_gap": 2.0, "formats": ["agentnet", "adp"], "pseudonym_key": KEY}
    build_dataset(data.batches, data.load_frame, tmp_path / "local", **options)  # type: ignore[arg-type]
    summary = build_dataset_ray(data.batches, FrameMap(data.frames), tmp_path / "ray", **options)  # type: ignore[arg-type]

    assert_same_dataset(tmp_path / "local", tmp_path / "ray")
    assert summary.formats == ["agentnet", "adp"]
    assert not (tmp_path / "ray" / "parquet").exists()
    assert ray.is_initialized()  # a Ray the caller started is left running


def test_ray_build_of_nothing_writes_an_empty_dataset_like_the_local_build(
    ray_cluster: None, tmp_path: Path
) -> None:
    orphan = Batch(batch_id="b0", session_id="orphan", device_id="dev", seq=0, events=[])
    for batches, name in [([], "empty"), ([orphan], "headerless")]:
        build_dataset(batches, lambda _: None, tmp_path / name / "local", pseudonym_key=KEY)
        summary = build_dataset_ray(batches, FrameMap({}), tmp_path / name / "ray", pseudonym_key=KEY)
        assert_same_dataset(tmp_path / name / "local", tmp_path / name / "ray")
        assert summary.steps == 0 and summary.sessions_without_header == len(batches)


def test_the_local_engine_on_a_process_pool_writes_what_one_process_writes(tmp_path: Path) -> None:
    key_path = tmp_path / "spool.key"
    spool = Spool(tmp_path / "spool", load_or_create_key(key_path))
    data = fleet()
    spool.append(list(data.frames.values()))
    spool.append(data.batches)
    limits = ShardLimits(max_steps=4)
    one = build_dataset(
        spool.batches(), spool.load_frame, tmp_path / "one", pseudonym_key=KEY, shard_limits=limits
    )
    frames = SpoolFrames(tmp_path / "spool", key_path)
    pooled = build_dataset(
        spool.batches(), frames, tmp_path / "pool", pseudonym_key=KEY, shard_limits=limits, workers=2
    )
    spool.close()
    assert_same_dataset(tmp_path / "one", tmp_path / "pool")
    assert (
        (pooled.sessions, pooled.steps, pooled.frames_written) == (4, 16, 15) == (one.sessions, one.steps, 15)
    )


def test_the_local_engine_reading_a_spool_by_session_writes_what_the_records_build_writes(
    tmp_path: Path,
) -> None:
    key_path = tmp_path / "spool.key"
    spool = Spool(tmp_path / "spool", load_or_create_key(key_path))
    data = fleet()
    spool.append(list(data.frames.values()))
    spool.append(data.batches)
    limits = ShardLimits(max_steps=4)
    build_dataset(
        spool.batches(), spool.load_frame, tmp_path / "records", pseudonym_key=KEY, shard_limits=limits
    )
    spool.close()
    source = SpoolRecords(tmp_path / "spool", key_path)
    for workers in (1, 2):
        out = tmp_path / f"by-session-{workers}"
        summary = build_dataset_from_source(
            source, out, pseudonym_key=KEY, shard_limits=limits, workers=workers
        )
        assert_same_dataset(tmp_path / "records", out)
        assert (summary.sessions, summary.sessions_without_header, summary.steps) == (4, 1, 16)


def test_the_pool_maps_sessions_in_worker_processes_and_keeps_their_order(tmp_path: Path) -> None:
    sessions, _ = collect_sessions(fleet().batches)
    options = prepare_build(tmp_path, pseudonym_key=KEY)

    def where(session: SessionEvents, *_: object) -> tuple[str, int]:
        return session.session_id, os.getpid()

    mapped = list(map_sessions_in_pool(where, sessions, options, None, FrameMap({}), 2))  # type: ignore[arg-type]
    assert [session_id for session_id, _ in mapped] == [session.session_id for session in sessions]
    assert os.getpid() not in {pid for _, pid in mapped}


def test_ray_build_from_a_collector_reads_by_id_and_matches_the_local_build(
    ray_cluster: None, tmp_path: Path
) -> None:
    """The driver hands out record ids; workers read the collector's stores themselves."""
    data_dir = tmp_path / "collector"
    data_dir.mkdir()
    metadata = MetadataStore.from_url(default_database_url(data_dir))
    location = CollectorLocation(data_dir)
    blobs = location.blobs()
    keyring = KeyRing(metadata.engine, location.master_key())
    ingest = IngestService(metadata, blobs, keyring=keyring)
    devices: dict[str, str] = {}
    data = fleet()
    for record in [*data.frames.values(), *data.batches]:
        if record.device_id not in devices:
            devices[record.device_id] = ingest.enroll(record.device_id).device_id
        body = zstandard.ZstdCompressor().compress(encode_record(record))
        ingest.store_record(devices[record.device_id], record_id_of(record), body)
    metadata.close()
    limits = ShardLimits(max_steps=4)

    with CollectorReader(location=location) as reader:
        local = build_dataset(
            reader.iter_batches(),
            reader.load_frame,
            tmp_path / "local",
            pseudonym_key=KEY,
            shard_limits=limits,
        )
    distributed = build_dataset_from_store(
        CollectorSource(location), tmp_path / "ray", pseudonym_key=KEY, shard_limits=limits
    )
    assert_same_dataset(tmp_path / "local", tmp_path / "ray")
    assert (distributed.sessions, distributed.sessions_without_header) == (4, 1)
    assert distributed.steps == local.steps == 16 and distributed.frames_written == 15
