"""Task instructions written by a language model, for episodes without a task marker (optional).

The describer sends an OpenAI-compatible chat-completions endpoint the episode's app names, window
titles and pyautogui steps, all already scrubbed (detectors + names) by the build; images only if the
configuration says so. Any failure (network, timeout, HTTP status, odd reply) returns None and the build
keeps the deterministic description; after ``max_failures`` failures in a row the describer stops asking,
so a dead endpoint costs a few timeouts, not one per episode.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Sequence

import httpx
import msgspec

from demotrace.dataset.episodes import Episode
from demotrace.dataset.export.agentnet import ScreenSize, action_code
from demotrace.dataset.privacy import Scrubber
from demotrace.model import Action, Frame

SYSTEM_PROMPT = (
    "You label recorded computer-use demonstrations for training AI agents. Given the apps, window "
    "titles and pyautogui steps of one demonstration, reply with the task the person carried out, as one "
    "imperative sentence of at most 25 words (for example: 'Save the quarterly report as PDF in "
    "LibreOffice Writer'). Placeholders like <EMAIL> stand for redacted text. Reply with the sentence only."
)
MAX_INSTRUCTION_CHARS = 300


class DescriberConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where and how to ask. ``url`` is the chat-completions URL, or an API base ("…/v1") to which
    "/chat/completions" is added. The API key is read from the environment variable ``api_key_env``
    at call time, so it is never stored in a config file or a summary."""

    url: str
    model: str
    api_key_env: str | None = None
    timeout_s: float = 20.0
    max_steps: int = 60  # steps listed in the prompt; longer episodes are cut, with a note
    send_images: bool = False  # send the episode's first frame too
    max_failures: int = 3
    max_tokens: int = 80


def completions_url(url: str) -> str:
    trimmed = url.rstrip("/")
    return trimmed if trimmed.endswith("/chat/completions") else trimmed + "/chat/completions"


def _quoted(text: str) -> str:
    return '"' + " ".join(text.split())[:120] + '"'


def episode_prompt(actions: Sequence[Action], screen: ScreenSize, max_steps: int) -> str:
    """The episode as text: a line per step, with the app and title whenever the window changes."""
    lines = []
    window: tuple[str, str] | None = None
    for number, action in enumerate(actions[:max_steps], start=1):
        here = (action.window.app, action.window.title) if action.window is not None else ("", "")
        if here != window:
            window = here
            lines.append(f"In {here[0] or 'an unnamed app'}, window {_quoted(here[1])}:")
        lines.append(f"{number}. {action_code(action, screen).replace(chr(10), '; ')}")
    if len(actions) > max_steps:
        lines.append(f"… and {len(actions) - max_steps} more steps.")
    return "\n".join(lines)


def request_body(
    config: DescriberConfig, prompt: str, image: tuple[str, bytes] | None = None
) -> dict[str, object]:
    user: object = prompt
    if image is not None:
        media_type, data = image
        url = f"data:{media_type};base64,{base64.b64encode(data).decode()}"
        user = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": url}}]
    return {
        "model": config.model,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
        "temperature": 0,
        "max_tokens": config.max_tokens,
    }


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Message


class _Completion(msgspec.Struct):
    choices: list[_Choice]


def instruction_from_reply(body: bytes) -> str | None:
    """The first line of the first choice, unquoted; None for anything that is not a usable sentence."""
    try:
        completion = msgspec.json.decode(body, type=_Completion)
    except msgspec.MsgspecError:
        return None
    if not completion.choices or not completion.choices[0].message.content:
        return None
    lines = [line.strip() for line in completion.choices[0].message.content.splitlines() if line.strip()]
    if not lines:
        return None
    text = lines[0].strip().strip("\"'“”`").strip()
    if not text or len(text) > MAX_INSTRUCTION_CHARS:
        return None
    return text


class ChatDescriber:
    """Asks the endpoint for one instruction per episode; ``client`` may be passed in (tests, pooling)."""

    def __init__(self, config: DescriberConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        self._client = client if client is not None else httpx.Client(timeout=config.timeout_s)
        self._owns_client = client is None
        self._failures_in_a_row = 0
        self.failures = 0

    def __enter__(self) -> ChatDescriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    @property
    def gave_up(self) -> bool:
        return self._failures_in_a_row >= self.config.max_failures

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.config.api_key_env, "") if self.config.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    def describe(
        self, actions: Sequence[Action], screen: ScreenSize, image: tuple[str, bytes] | None = None
    ) -> str | None:
        """An instruction for the episode, or None (the caller falls back to its own description)."""
        if self.gave_up or not actions:
            return None
        prompt = episode_prompt(actions, screen, self.config.max_steps)
        body = request_body(self.config, prompt, image if self.config.send_images else None)
        try:
            response = self._client.post(
                completions_url(self.config.url),
                json=body,
                headers=self._headers(),
                timeout=self.config.timeout_s,
            )
            response.raise_for_status()
            instruction = instruction_from_reply(response.content)
        except httpx.HTTPError:
            instruction = None
        if instruction is None:
            self.failures += 1
            self._failures_in_a_row += 1
        else:
            self._failures_in_a_row = 0
        return instruction


def _first_frame(episode: Episode, load_frame: Callable[[str], Frame | None]) -> tuple[str, bytes] | None:
    frame_id = next((action.frame_id for action in episode.actions if action.frame_id is not None), None)
    frame = load_frame(frame_id) if frame_id is not None else None
    return (frame.media_type, frame.data) if frame is not None else None


def describe_episodes(
    episodes: Sequence[Episode],
    describer: ChatDescriber,
    scrubber: Scrubber,
    load_frame: Callable[[str], Frame | None],
) -> list[Episode]:
    """Episodes without a task marker get the model's instruction when it gives one (scrubbed like any
    text: a model may echo what it was shown); everything else is returned unchanged."""
    described = []
    for episode in episodes:
        if episode.instruction_source == "generated":
            screen = ScreenSize(width=episode.header.screen_width, height=episode.header.screen_height)
            image = _first_frame(episode, load_frame) if describer.config.send_images else None
            instruction = describer.describe(episode.actions, screen, image)
            if instruction is not None:
                episode = msgspec.structs.replace(
                    episode, instruction=scrubber.text(instruction), instruction_source="described"
                )
        described.append(episode)
    return described
