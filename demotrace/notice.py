"""The notice a person reads and accepts before anything is recorded: made from the policy in force.

Pure: the text and its digest come from the policy alone; whether an earlier acceptance still holds is
decided by ``policy_change.widenings``: a policy that lets more be captured, or kept longer, than the one
accepted asks again; a narrower one does not (nothing is captured that the person did not accept).
"""

from __future__ import annotations

import hashlib
import textwrap

import msgspec

from demotrace.policy import CapturePolicy
from demotrace.policy_change import widenings

WIDTH = 92  # characters per line of the notice
NOTICE_VERSION = 1  # the wording's version: a change of wording asks everyone again (it is in the digest)


class NoticeAck(msgspec.Struct, kw_only=True):
    """One acceptance: of which notice (``digest``), for which policy, when (wall time), and whether the
    collector has it yet (``reported``)."""

    digest: str
    policy: CapturePolicy
    accepted_at: float
    reported: bool = False
    version: int = NOTICE_VERSION


def _listed(items: list[str], empty: str, label: str = "") -> str:
    """One wrapped, comma-separated line per list: a notice that fits a window without scrolling."""
    text = label + (", ".join(items) if items else empty)
    return textwrap.fill(
        text,
        width=WIDTH,
        initial_indent="  - ",
        subsequent_indent="    ",
        break_on_hyphens=False,
        break_long_words=False,
    )


def notice_text(policy: CapturePolicy) -> str:
    """The notice in plain language: what is captured, what never is, the person's rights, the use."""
    if policy.mode == "allowlist":
        captured = (
            "Only these apps and sites, while you use them:\n"
            + _listed(policy.allow_apps, "no app", "apps: ")
            + "\n"
            + _listed(policy.allow_url_patterns, "none", "web addresses matching: ")
            + (
                "\n" + _listed(policy.allow_title_patterns, "", "windows titled like: ")
                if policy.allow_title_patterns
                else ""
            )
        )
    else:
        captured = "Every app and site except those listed under 'Never captured'."
    frames = (
        "the screen just before each action"
        if policy.low_battery_mode != "pause"
        else "the screen just before each action (nothing on low battery)"
    )
    return "\n".join(
        [
            f"demotrace recording notice (version {NOTICE_VERSION})",
            "",
            "What is captured: your keystrokes, clicks, scrolls and mouse paths, the active app and",
            f"window, {frames}" + (", and the web address of allowed pages." if policy.record_urls else "."),
            captured,
            "",
            "Never captured:",
            _listed(policy.deny_apps, "none", "apps: "),
            _listed(policy.deny_url_patterns, "none", "web addresses matching: "),
            _listed(
                policy.deny_title_patterns, "none", "private and incognito windows, and windows titled like: "
            ),
            "  - what you type in password fields (it becomes <PASSWORD>); passwords, card numbers and",
            "    similar secrets are removed on this computer before anything is stored",
            "",
            "Your rights:",
            f"  - pause at any time, for up to {policy.pause_max_minutes:g} minutes (tray menu or "
            "`demotrace pause`)",
            "  - ask for an exemption: then nothing is recorded on your devices",
            "  - see and delete what was captured about you; it is kept at most "
            f"{policy.retention_days} days",
            "",
            "Use: the recordings train AI agents to use computers. They are never used to judge, rate or",
            "monitor people: no one sees per-person activity figures.",
        ]
    )


def notice_digest(policy: CapturePolicy) -> str:
    """The notice's version for this policy: a digest of its text (sha256, hex, first 16 characters)."""
    return hashlib.sha256(notice_text(policy).encode()).hexdigest()[:16]


def acceptance_holds(ack: NoticeAck | None, policy: CapturePolicy) -> bool:
    """Does an earlier acceptance cover ``policy``? Yes for the same notice, or a policy that captures
    no more than the accepted one; no acceptance covers nothing."""
    if ack is None or ack.version != NOTICE_VERSION:
        return False
    if ack.digest == notice_digest(policy):
        return True
    return not widenings(ack.policy, policy)


def encode_ack(ack: NoticeAck) -> bytes:
    return msgspec.json.encode(ack)


def decode_ack(data: bytes) -> NoticeAck:
    """The stored acceptance (msgspec.DecodeError / ValidationError when it is not one)."""
    return msgspec.json.decode(data, type=NoticeAck)
