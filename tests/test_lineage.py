"""Deletion reaches datasets: every build writes a manifest of the sessions it read; `demotrace datasets
check` says when any was deleted at the collector since, and a rebuild leaves them out. On SQLite + blob
folder and on PostgreSQL + S3 (moto)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import zstandard
from conftest import Backend
from typer.testing import CliRunner

from demotrace.cli.main import app as cli_app
from demotrace.collector.app import create_app
from demotrace.collector.server import ServerThread
from demotrace.dataset.lineage import (
    BuildSource,
    LineageRecorder,
    ManifestSession,
    SourceSession,
    check_lineage,
    read_manifest,
)
from demotrace.dataset.privacy import Pseudonyms
from demotrace.device.spool import Spool, load_or_create_key
from demotrace.model import Record, encode_record
from demotrace.protocol import RECORD_MEDIA_TYPE, record_id_of
from tests.dataset_samples import recording

ADMIN = "admin-token-for-lineage-tests"
SESSIONS = {"alice-laptop": "s-alice-1", "alice-desktop": "s-alice-2", "bob-laptop": "s-bob-1"}


def upload(client: httpx.Client, token: str, record: Record) -> None:
    body = zstandard.ZstdCompressor().compress(encode_record(record))
    answer = client.put(
        f"/v1/records/{record_id_of(record)}",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": RECORD_MEDIA_TYPE},
    )
    assert answer.status_code == 201, answer.text


def source_options(data_dir: Path, backend: Backend) -> list[str]:
    if backend.database_url is None:
        return ["--from-server", str(data_dir)]
    assert backend.blobs_url is not None
    return [
        "--database-url",
        backend.database_url,
        "--blobs",
        backend.blobs_url,
        "--master-key",
        str(data_dir / "master.key"),
    ]


def session_ids_in(dataset: Path) -> set[str]:
    lines = (dataset / "trajectories.jsonl").read_text().splitlines()
    return {json.loads(line)["session_id"] for line in lines}


def test_build_delete_a_person_check_says_stale_and_a_rebuild_leaves_them_out(
    tmp_path: Path, backend: Backend
) -> None:
    data_dir, dataset = tmp_path / "collector", tmp_path / "datasets" / "march"
    app = create_app(
        data_dir,
        database_url=backend.database_url,
        blobs_url=backend.blobs_url,
        admin_token=ADMIN,
        retention_interval_s=None,
    )
    runner = CliRunner()
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for index, (device, session_id) in enumerate(SESSIONS.items()):
            person = device.split("-")[0]
            enrolled = client.post("/v1/enroll", json={"device_name": device, "person_id": person}).json()
            sample = recording(session_id, enrolled["device_id"], start=100.0 * index, text=f"{person} notes")
            for record in [*sample.frames.values(), *sample.batches]:
                upload(client, enrolled["token"], record)

        built = runner.invoke(cli_app, ["build", *source_options(data_dir, backend), "--out", str(dataset)])
        assert built.exit_code == 0, built.output
        manifest = read_manifest(dataset)
        assert manifest.source["kind"] == "collector" and len(manifest.sessions) == 3
        assert "s-alice-1" not in (dataset / "manifest.json").read_text()  # pseudonyms only
        assert len(session_ids_in(dataset)) == 3
        images_before = sorted(path.name for path in (dataset / "images").iterdir())
        assert len(images_before) == 12

        check = ["datasets", "check", str(dataset)]
        if backend.database_url is not None:
            check += ["--database-url", backend.database_url]
        current = runner.invoke(cli_app, check)
        assert current.exit_code == 0, current.output
        assert "current (3 sessions" in current.output

        deleted = client.post("/v1/admin/people/alice/delete", headers={"Authorization": f"Bearer {ADMIN}"})
        assert deleted.status_code == 200 and deleted.json()["deleted_records"] == 12

        stale = runner.invoke(cli_app, check)
        assert stale.exit_code == 1, stale.output
        text = " ".join(stale.output.split())
        assert "STALE" in text and "2 were deleted at the source" in text
        assert text.count("deleted session") == 2

        rebuild = ["build", *source_options(data_dir, backend), "--out", str(dataset), "--overwrite"]
        rebuilt = runner.invoke(cli_app, rebuild)
        assert rebuilt.exit_code == 0, rebuilt.output
    pseudonyms = Pseudonyms(bytes.fromhex((dataset.parent / ".march.pseudonym-key").read_text().strip()))
    assert session_ids_in(dataset) == {pseudonyms.session("s-bob-1")}  # alice's steps are gone
    images_after = sorted(path.name for path in (dataset / "images").iterdir())
    assert len(images_after) == 4 and set(images_after) <= set(images_before)  # hers removed too
    assert pseudonyms.session("s-alice-1") not in (dataset / "adp" / "trajectories.jsonl").read_text()
    again = runner.invoke(cli_app, check)
    assert again.exit_code == 0 and "current (1 session," in again.output


def test_check_tells_deleted_from_reduced_and_ignores_what_arrived_after_the_build() -> None:
    pseudonyms = Pseudonyms(bytes(range(32)))
    recorder = LineageRecorder()
    recorder.add("dev-1", "kept", ["b0", "b1"])
    recorder.add("dev-1", "gone", ["b0"])
    recorder.add("dev-2", "trimmed", ["b0", "b1", "b2"])
    manifest = recorder.manifest(BuildSource({"kind": "collector"}, as_of=1000.0), pseudonyms)
    assert sorted(entry.batches for entry in manifest.sessions) == [1, 2, 3]
    now = [
        SourceSession("dev-1", "kept", 2),  # batches that arrived after as_of are not counted by the caller
        SourceSession("dev-2", "trimmed", 1),
        SourceSession("dev-3", "new", 5),
    ]
    report = check_lineage(manifest, pseudonyms, now)
    assert report.stale and report.sessions == 3
    assert report.deleted == [ManifestSession(pseudonyms.device("dev-1"), pseudonyms.session("gone"), 1)]
    assert report.reduced == [ManifestSession(pseudonyms.device("dev-2"), pseudonyms.session("trimmed"), 3)]
    whole = check_lineage(
        manifest, pseudonyms, [*now, SourceSession("dev-1", "gone", 1), SourceSession("dev-2", "trimmed", 3)]
    )
    assert not whole.stale


def test_check_refuses_a_dataset_without_manifest_or_built_from_a_spool(tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "old").mkdir()
    missing = runner.invoke(cli_app, ["datasets", "check", str(tmp_path / "old")])
    assert missing.exit_code == 2 and "no manifest.json" in " ".join(missing.output.split())

    sample = recording("s1", "dev-1")
    spool = Spool(tmp_path / "spool", load_or_create_key(tmp_path / "spool.key"))
    spool.append([*sample.frames.values(), *sample.batches])
    spool.close()
    built = runner.invoke(
        cli_app,
        [
            "build",
            "--spool",
            str(tmp_path / "spool"),
            "--key",
            str(tmp_path / "spool.key"),
            "--out",
            str(tmp_path / "ds"),
        ],
    )
    assert built.exit_code == 0, built.output
    assert read_manifest(tmp_path / "ds").source["kind"] == "spool"
    refused = runner.invoke(cli_app, ["datasets", "check", str(tmp_path / "ds")])
    assert refused.exit_code == 2 and "not a collector" in " ".join(refused.output.split())
