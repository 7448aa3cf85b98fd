"""Model-written instructions against a stub chat-completions server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from dataset_samples import Recording, recording

from demotrace.dataset.build import build_dataset
from demotrace.dataset.describe import DescriberConfig, completions_url, instruction_from_reply
from demotrace.dataset.privacy import KnownNames

USER = "zoe.quintero"


@dataclass
class Stub:
    """What the stub replies, and every request it received."""

    reply: str = "Write a greeting to the team in LibreOffice Writer"
    status: int = 200
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture()
def stub() -> Iterator[Stub]:
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": json.loads(body), "raw": body}
            )
            time.sleep(state.delay_s)
            reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": state.reply}}]}
            payload = json.dumps(reply).encode() if state.status == 200 else b'{"error": "boom"}'
            try:
                self.send_response(state.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def sessions() -> Recording:
    marked = recording("s-marked", "d1", task="Send the weekly note")
    unmarked = recording("s-free", "d1", start=300.0, title=f"Greeting for {USER} - LibreOffice Writer")
    return marked.add(unmarked)


def build(tmp_path: Path, config: DescriberConfig) -> tuple[Any, list[dict[str, Any]]]:
    sample = sessions()
    out = tmp_path / "out"
    extra = KnownNames(user_names=(USER,))
    summary = build_dataset(sample.batches, sample.load_frame, out, describer=config, extra_names=extra)
    lines = (out / "trajectories.jsonl").read_text().splitlines()
    return summary, [json.loads(line) for line in lines]


def test_unmarked_episodes_get_the_models_instruction_from_scrubbed_text_only(
    stub: Stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMOTRACE_TEST_LLM_KEY", "sk-test-123")
    config = DescriberConfig(url=stub.url, model="tiny-labeller", api_key_env="DEMOTRACE_TEST_LLM_KEY")
    summary, episodes = build(tmp_path, config)
    assert [(e["instruction"], e["instruction_source"]) for e in episodes] == [
        ("Send the weekly note", "marker"),
        ("Write a greeting to the team in LibreOffice Writer", "described"),
    ]
    assert summary.instructions_by_source == {"described": 1, "marker": 1}
    [request] = stub.requests  # only the unmarked episode is described
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test-123"
    body = request["body"]
    assert body["model"] == "tiny-labeller"
    prompt = body["messages"][-1]["content"]
    assert isinstance(prompt, str)  # text only: no image parts
    assert "libreoffice-writer" in prompt and "Greeting for <USER> - LibreOffice Writer" in prompt
    assert "pyautogui.write(message='Hello team')" in prompt
    assert USER.encode() not in request["raw"]
    assert b"image_url" not in request["raw"] and b"base64" not in request["raw"]


def test_the_models_reply_is_scrubbed_like_any_text(stub: Stub, tmp_path: Path) -> None:
    stub.reply = f'"Greet the team for {USER} and mail someone@example.org"\nExplanation: …'
    _, episodes = build(tmp_path, DescriberConfig(url=stub.url, model="m"))
    assert episodes[1]["instruction"] == "Greet the team for <USER> and mail <EMAIL>"


def test_an_http_error_falls_back_to_the_deterministic_description(stub: Stub, tmp_path: Path) -> None:
    stub.status = 500
    summary, episodes = build(tmp_path, DescriberConfig(url=stub.url, model="m"))
    assert episodes[1]["instruction_source"] == "generated"
    assert episodes[1]["instruction"].startswith("Work in libreoffice-writer")
    assert summary.describer_failures == 1


def test_a_timeout_falls_back_and_repeated_failures_stop_the_calls(stub: Stub, tmp_path: Path) -> None:
    stub.delay_s = 1.0
    sample = recording("s0", "d", title="First")
    for index in range(1, 5):
        sample = sample.add(recording(f"s{index}", "d", start=300.0 * index, title=f"Doc {index}"))
    config = DescriberConfig(url=stub.url, model="m", timeout_s=0.2, max_failures=2)
    started = time.monotonic()
    summary = build_dataset(sample.batches, sample.load_frame, tmp_path, describer=config)
    assert time.monotonic() - started < 10
    assert summary.instructions_by_source == {"generated": 5}
    assert summary.describer_failures == 2
    assert len(stub.requests) == 2  # gave up after two failures in a row


def test_images_are_sent_only_when_configured(stub: Stub, tmp_path: Path) -> None:
    build(tmp_path, DescriberConfig(url=stub.url, model="m", send_images=True))
    [request] = stub.requests
    parts = request["body"]["messages"][-1]["content"]
    assert [part["type"] for part in parts] == ["text", "image_url"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_unreachable_endpoint_falls_back(tmp_path: Path) -> None:
    # Port 9 on 127.0.0.1 (discard) is closed in a test environment: connection refused at once.
    summary, episodes = build(tmp_path, DescriberConfig(url="http://127.0.0.1:9/v1", model="m", timeout_s=1))
    assert episodes[1]["instruction_source"] == "generated"
    assert summary.describer_failures == 1


def test_reply_parsing_and_url_forms() -> None:
    assert completions_url("http://h/v1/") == "http://h/v1/chat/completions"
    assert completions_url("http://h/v1/chat/completions") == "http://h/v1/chat/completions"

    def reply(content: object) -> bytes:
        return json.dumps({"choices": [{"message": {"content": content}}]}).encode()

    assert instruction_from_reply(reply("  'Rename the file'  \n\nmore")) == "Rename the file"
    assert instruction_from_reply(reply("")) is None
    assert instruction_from_reply(reply(None)) is None
    assert instruction_from_reply(reply("x" * 400)) is None
    assert instruction_from_reply(b"not json") is None
    assert instruction_from_reply(b'{"choices": []}') is None
