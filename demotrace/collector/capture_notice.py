"""The plain-language page "what we capture", written from the policy in force (pure: policy in,
sections of sentences out). Nothing here is a promise the code does not keep: every sentence is either
read from the policy or states what the recorder does whatever the policy says."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from demotrace.policy import CapturePolicy


@dataclass(frozen=True)
class NoticeSection:
    title: str
    sentences: list[str]
    items: list[str] = field(default_factory=list)


# Regular-expression pieces that read as plain words: "any subdomain", a literal dot, word edges.
_PLAIN = [
    (r"([a-z0-9-]+\.)*", "*."),
    (r"([a-z0-9-]+\.)?", "*."),
    (r"\.", "."),
    (r"\b", ""),
    ("^", ""),
]
_STILL_REGEX = re.compile(r"[\\()\[\]|?*+{}$^]")


def readable_pattern(pattern: str) -> str | None:
    r"""A pattern as a person reads it (``^https://([a-z0-9-]+\.)*atlassian\.net/`` is
    ``https://*.atlassian.net/``), or None when it is more than a plain text with wildcards."""
    text = pattern
    for piece, plain in _PLAIN:
        text = text.replace(piece, plain)
    if _STILL_REGEX.search(text.replace("*.", "")):
        return None
    return text


def _listed(label: str, patterns: list[str]) -> list[str]:
    """A line of the readable patterns, and one of the rest as the policy writes them."""
    readable = [text for text in map(readable_pattern, patterns) if text is not None]
    detailed = [pattern for pattern in patterns if readable_pattern(pattern) is None]
    lines = [f"{label}: " + ", ".join(readable)] if readable else []
    if detailed:
        lines.append(f"{label} (rules as the policy writes them): " + " · ".join(detailed))
    return lines


def _minutes(value: float) -> str:
    return f"{value:g} minute" + ("" if value == 1 else "s")


def capture_notice(policy: CapturePolicy) -> list[NoticeSection]:
    where: list[str]
    items: list[str]
    if policy.mode == "allowlist":
        where = [
            "Only the apps and websites listed here are recorded. Everything else is never captured: "
            "when another window is in front, nothing is recorded at all."
        ]
        items = [f"Apps: {', '.join(policy.allow_apps)}"] if policy.allow_apps else []
        items += _listed("Websites", policy.allow_url_patterns)
        items += _listed("Windows whose title mentions", policy.allow_title_patterns)
        if not items:
            items = ["(nothing is allowed yet: nothing is recorded)"]
    else:
        where = [
            "Every app is recorded except those listed under 'What is never captured'. Your "
            "organisation's policy can narrow this at any time."
        ]
        items = []
    captured = NoticeSection(
        "What is captured",
        [
            "While you work in an allowed app or site: your clicks, scrolls, key presses and mouse "
            "paths; the name of the app and the window title"
            + ("; the address of the web page" if policy.record_urls else "")
            + (
                "; what a click landed on in a web page (a button's label, a field's kind)"
                if policy.record_page_elements
                else ""
            )
            + "; and a screenshot just before each action.",
            *where,
        ],
        items,
    )
    never = NoticeSection(
        "What is never captured",
        [
            "Passwords: typing in a password field or a sign-in window is replaced by a placeholder "
            "on your computer, before anything is stored.",
            "Sensitive text (card numbers, email addresses, phone numbers and the like) is replaced "
            "on your computer, and the same text on screen is painted over in black in the screenshot. "
            "The portal shows those black boxes on your screenshots.",
            "Private or incognito browser windows, and these apps and sites:",
        ],
        ([f"Apps: {', '.join(policy.deny_apps)}"] if policy.deny_apps else [])
        + _listed("Websites", policy.deny_url_patterns)
        + _listed("Windows whose title mentions", policy.deny_title_patterns),
    )
    control = NoticeSection(
        "What you control",
        [
            "Pause recording at any time, from the tray or this portal: by default for "
            f"{_minutes(policy.pause_default_minutes)}, at most "
            f"{_minutes(policy.pause_max_minutes)} at once.",
            "See every session recorded about you, download all of it, and delete a session or "
            "everything, from this portal.",
            "Ask to be exempted: once an administrator approves, your devices stop recording.",
            f"Everything is deleted from the server after {policy.retention_days} days in any case.",
        ],
    )
    purpose = NoticeSection(
        "What the data is used for",
        [
            "Training software agents to use computers the way people do: the recordings become "
            "examples of tasks done step by step.",
            "Never for judging people: not for performance reviews, monitoring working hours or "
            "discipline. The portal shows administrators totals over groups of at least ten people, "
            "never one person's activity.",
        ],
    )
    return [captured, never, control, purpose]
