"""A short atheris run over the collector's record decoder: every malformed body is refused with our
own errors, never anything else. The long run is bench/fuzz_decoder.py."""

from __future__ import annotations

from pathlib import Path

from bench.fuzz_decoder import fuzz, seed_records


def test_the_seeds_are_records_the_collector_takes() -> None:
    import zstandard

    from demotrace.collector.ingest import DEFAULT_MAX_RECORD_BYTES, decode_upload

    for plain in seed_records():
        decode_upload(zstandard.ZstdCompressor().compress(plain), DEFAULT_MAX_RECORD_BYTES)


def test_fuzzed_upload_bodies_are_refused_cleanly(tmp_path: Path) -> None:
    tally = fuzz(5, tmp_path)
    assert tally.fuzzer_stopped == ""
    assert tally.executions > 1000 and tally.edges > 0
    assert tally.crashes == 0, tally.signatures
