"""Every export of build_dataset, read back with its own ecosystem's reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from dataset_samples import Recording, recording

from demotrace.dataset.build import build_dataset
from demotrace.dataset.options import ShardLimits


def two_sessions() -> Recording:
    first = recording("sess-a", "dev-a", task="Write the greeting", image_format="PNG", image_size=(64, 40))
    second = recording("sess-b", "dev-b", start=500.0, image_format="WEBP", image_size=(48, 30))
    return first.add(second)


def agentnet(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]


@pytest.fixture()
def built(tmp_path: Path) -> Path:
    sample = two_sessions()
    out = tmp_path / "out"
    build_dataset(sample.batches, sample.load_frame, out, shard_limits=ShardLimits(max_steps=3))
    return out


def test_parquet_loads_with_hugging_face_datasets_and_images_decode(built: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    shards = sorted((built / "parquet").glob("*.parquet"))
    assert [shard.name for shard in shards] == [f"train-{i:05d}-of-00003.parquet" for i in range(3)]
    loaded = datasets.load_dataset(
        "parquet",
        data_files={"train": [str(shard) for shard in shards]},
        split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )
    assert isinstance(loaded.features["image"], datasets.Image)
    expected = [
        (episode["task_id"], step["index"], step["value"]["code"], episode["instruction"])
        for episode in agentnet(built)
        for step in episode["traj"]
    ]
    assert [
        (row["task_id"], row["step_index"], row["code"], row["instruction"]) for row in loaded
    ] == expected
    sizes = {row["task_id"].split("-")[0]: row["image"].size for row in loaded}
    assert sorted(sizes.values()) == [(48, 30), (64, 40)]
    first = loaded[0]
    assert first["action"] == "click" and first["episode_steps"] == 4
    assert first["image"].size == (64, 40)
    assert json.loads(first["action_detail"])["x"] == 640
    assert first["image_region"] == {"left": 0, "top": 0, "width": 64, "height": 40}


def test_parquet_reads_with_pandas_and_pyarrow(built: Path) -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_parquet(built / "parquet")
    assert len(frame) == 8
    assert set(frame["action"]) == {"click", "type", "hotkey", "scroll"}
    assert frame["image"].iloc[0]["bytes"][:8] == b"\x89PNG\r\n\x1a\n"
    table = pq.read_table(sorted((built / "parquet").glob("*.parquet"))[0])
    assert b"huggingface" in table.schema.metadata
    assert json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]["image"] == {
        "_type": "Image"
    }


def test_webdataset_shards_iterate_with_decoded_images_and_json(built: Path) -> None:
    import webdataset

    shards = sorted(str(path) for path in (built / "webdataset").glob("shard-*.tar"))
    assert len(shards) == 3  # 8 steps, at most 3 per shard
    samples = list(webdataset.WebDataset(shards, shardshuffle=False, empty_check=False).decode("pil"))
    assert len(samples) == 8
    by_key = {sample["__key__"]: sample for sample in samples}
    for episode in agentnet(built):
        for step in episode["traj"]:
            sample = by_key[f"{episode['task_id']}_{step['index']:05d}"]
            record = sample["json"]
            assert record["code"] == step["value"]["code"]
            assert record["instruction"] == episode["instruction"]
            assert record["step_index"] == step["index"]
            extension = step["image"].rsplit(".", 1)[1]
            assert sample[extension].size == (step["image_region"]["width"], step["image_region"]["height"])
    assert {key for sample in samples for key in sample if not key.startswith("__")} == {
        "json",
        "png",
        "webp",
    }


def test_adp_trajectories_are_ordered_observations_and_code_actions(built: Path) -> None:
    adp = [json.loads(line) for line in (built / "adp" / "trajectories.jsonl").read_text().splitlines()]
    episodes = agentnet(built)
    assert [record["id"] for record in adp] == [episode["task_id"] for episode in episodes]
    for record, episode in zip(adp, episodes, strict=True):
        content = record["content"]
        assert content[0] == {
            "class_": "text_observation",
            "content": episode["instruction"],
            "source": "user",
        }
        classes = [item["class_"] for item in content[1:]]
        assert classes == ["image_observation", "code_action"] * len(episode["traj"])
        images = [item["content"] for item in content if item["class_"] == "image_observation"]
        assert images == [step["image"] for step in episode["traj"]]
        assert all((built / image).is_file() for image in images)
        codes = [item for item in content if item["class_"] == "code_action"]
        assert [code["content"] for code in codes] == [step["value"]["code"] for step in episode["traj"]]
        assert all(code["language"] == "python" and code["description"] for code in codes)
        assert all(isinstance(value, str) for value in record["details"].values())  # ADP: str → str
        assert record["details"]["session_id"] == episode["session_id"]


def test_formats_choose_what_is_written_and_stale_outputs_go(tmp_path: Path) -> None:
    sample = two_sessions()
    out = tmp_path / "out"
    build_dataset(sample.batches, sample.load_frame, out)
    summary = build_dataset(sample.batches, sample.load_frame, out, formats=["parquet"])
    assert summary.formats == ["parquet"]
    assert sorted(path.name for path in (out / "parquet").iterdir()) == ["train-00000-of-00001.parquet"]
    assert not (out / "trajectories.jsonl").exists()
    assert not (out / "adp" / "trajectories.jsonl").exists()
    assert list((out / "webdataset").glob("*.tar")) == []
    # Always written, whatever the formats.
    for always in ("index.html", "report.html", "summary.json"):
        assert (out / always).is_file()
    figures = json.loads((out / "summary.json").read_text())
    assert figures["parquet_dir"] == "parquet" and figures["trajectories_path"] == ""
    assert figures["parquet_shards"] == 1 and figures["webdataset_shards"] == 0
    with pytest.raises(ValueError, match="unknown dataset formats"):
        build_dataset(sample.batches, sample.load_frame, out, formats=["csv"])  # type: ignore[list-item]


def test_an_empty_dataset_still_has_loadable_shards(tmp_path: Path) -> None:
    import webdataset

    summary = build_dataset([], lambda _: None, tmp_path)
    assert summary.episodes == 0
    [shard] = (tmp_path / "parquet").glob("*.parquet")
    assert pq.read_table(shard).num_rows == 0
    [tar] = (tmp_path / "webdataset").glob("*.tar")
    assert list(webdataset.WebDataset(str(tar), shardshuffle=False, empty_check=False)) == []
    assert (tmp_path / "adp" / "trajectories.jsonl").read_text() == ""
