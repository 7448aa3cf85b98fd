"""Capture decisions: allow/deny lists, pause, exemption, battery, password windows, and the gate."""

from __future__ import annotations

import threading

import pytest

from demotrace.policy import (
    DEFAULT_FLEET_POLICY,
    DEFAULT_LOCAL_POLICY,
    CaptureGate,
    CapturePolicy,
    Decision,
    DeviceState,
    PolicyError,
    WindowContext,
    decide,
    decision_expires,
    is_password_window,
    parse_policy,
)

NOW = 1_800_000_000.0
IDLE = DeviceState(notice_accepted=True)
FORM = WindowContext(app="DemoForm", instance="demoform", process="python3", title="demotrace demo form")
TERMINAL = WindowContext(app="XTerm", instance="xterm", process="xterm", title="bash")
KEEPASS = WindowContext(app="KeePassXC", instance="keepassxc", process="keepassxc", title="Passwords.kdbx")
PRIVATE = WindowContext(app="firefox", instance="Navigator", title="Mozilla Firefox Private Browsing")
ALLOW_FORM = CapturePolicy(mode="allowlist", allow_apps=["DemoForm"])


def test_the_local_default_captures_everything_but_the_denylist() -> None:
    assert decide(DEFAULT_LOCAL_POLICY, FORM, IDLE, NOW) == Decision("all")
    assert decide(DEFAULT_LOCAL_POLICY, TERMINAL, IDLE, NOW) == Decision("all")
    assert decide(DEFAULT_LOCAL_POLICY, None, IDLE, NOW) == Decision("all")  # the bare desktop
    assert decide(DEFAULT_LOCAL_POLICY, KEEPASS, IDLE, NOW) == Decision("nothing", "denied app")
    assert decide(DEFAULT_LOCAL_POLICY, PRIVATE, IDLE, NOW) == Decision("nothing", "denied title")


@pytest.mark.parametrize(
    "window",
    [
        WindowContext(app="KEEPASSXC"),  # class, any case
        WindowContext(app="Something", instance="keepassxc"),  # instance
        WindowContext(app="", process="KeePassXC"),  # process name
    ],
)
def test_denied_apps_match_class_instance_or_process_case_insensitively(window: WindowContext) -> None:
    assert decide(DEFAULT_LOCAL_POLICY, window, IDLE, NOW).reason == "denied app"


def test_app_names_match_whole_names_only() -> None:
    # "keepass" is denied; "keepassxc-browser-helper" is a different program and "pass" is not "keepass".
    policy = CapturePolicy(deny_apps=["keepass"], deny_title_patterns=[])
    assert decide(policy, WindowContext(app="keepassxc-browser-helper"), IDLE, NOW).capture == "all"
    assert decide(policy, WindowContext(app="pass"), IDLE, NOW).capture == "all"


@pytest.mark.parametrize(
    ("title", "denied"),
    [
        ("New Private Browsing Window", True),
        ("Incognito - Google Chrome", True),
        ("InPrivate - Microsoft Edge", True),
        ("Online Banking | Example Bank", True),
        ("Example Bank - Sign in to your account", True),
        ("MyChart - Patient Portal", True),
        ("privately browsing the docs", False),  # \b: not the word "private browsing"
        ("Bankruptcy law reading list", False),
        ("", False),
    ],
)
def test_denied_titles(title: str, denied: bool) -> None:
    decision = decide(DEFAULT_LOCAL_POLICY, WindowContext(app="firefox", title=title), IDLE, NOW)
    assert decision == (Decision("nothing", "denied title") if denied else Decision("all"))


def test_an_allowlist_captures_only_what_it_allows() -> None:
    assert decide(ALLOW_FORM, FORM, IDLE, NOW) == Decision("all")
    assert decide(ALLOW_FORM, TERMINAL, IDLE, NOW) == Decision("nothing", "not allowlisted")
    assert decide(ALLOW_FORM, None, IDLE, NOW) == Decision("nothing", "not allowlisted")
    assert decide(ALLOW_FORM, WindowContext(app="demoform"), IDLE, NOW).capture == "all"


def test_the_denylist_wins_over_the_allowlist() -> None:
    policy = CapturePolicy(
        mode="allowlist",
        allow_apps=["gedit", "keepassxc"],
        allow_title_patterns=[r"private"],
    )
    assert decide(policy, KEEPASS, IDLE, NOW) == Decision("nothing", "denied app")
    assert decide(policy, PRIVATE, IDLE, NOW) == Decision("nothing", "denied title")
    assert decide(policy, WindowContext(app="gedit", title="Docs"), IDLE, NOW).capture == "all"


def test_allowed_title_patterns_are_searched_case_insensitively() -> None:
    policy = CapturePolicy(mode="allowlist", allow_title_patterns=[r"^jira\b"])
    assert decide(policy, WindowContext(app="jira-desktop", title="JIRA board"), IDLE, NOW).capture == "all"
    assert decide(policy, WindowContext(app="jira-desktop", title="my jira"), IDLE, NOW).capture == "nothing"


def browser(
    title: str, url: str | None = None, *, private: bool = False, extension: bool = True
) -> WindowContext:
    return WindowContext(
        app="Chromium", instance="chromium", process="chromium", title=title, url=url, private=private,
        extension=extension,
    )  # fmt: skip


def test_a_browser_is_decided_by_its_url_never_by_its_title() -> None:
    policy = CapturePolicy(
        mode="allowlist",
        allow_url_patterns=[r"^https://acme\.atlassian\.net/"],
        allow_title_patterns=[r" - Jira\b"],  # for other apps; a page chooses its own title
    )
    jira = "https://acme.atlassian.net/browse/T-1"
    assert decide(policy, browser("T-1 - Jira - Chromium", jira), IDLE, NOW) == Decision("all")
    # A page that titles itself like the allowed site is not captured, whatever its title says.
    assert decide(policy, browser("T-1 - Jira - Chromium", "https://evil.example/"), IDLE, NOW) == Decision(
        "nothing", "not allowlisted"
    )
    # Without the extension's word on the page, a browser window is not captured under an allowlist.
    assert decide(policy, browser("T-1 - Jira - Chromium"), IDLE, NOW) == Decision("nothing", "unknown page")
    no_extension = browser("T-1 - Jira - Chromium", extension=False)
    assert decide(policy, no_extension, IDLE, NOW) == Decision("nothing", "unknown page")
    # The shipped fleet policy lists work sites by URL only.
    assert decide(DEFAULT_FLEET_POLICY, browser("T-1 - Jira - Chromium"), IDLE, NOW).capture == "nothing"
    assert (
        decide(DEFAULT_FLEET_POLICY, browser("x", "https://github.com/acme/app"), IDLE, NOW).capture == "all"
    )


def test_private_windows_and_denied_urls_are_never_captured() -> None:
    anything = CapturePolicy(mode="allowlist", allow_apps=["chromium"], allow_url_patterns=[".*"])
    private = browser("Docs", "https://github.com/acme", private=True)
    assert decide(anything, private, IDLE, NOW) == Decision("nothing", "private window")
    assert decide(DEFAULT_LOCAL_POLICY, private, IDLE, NOW) == Decision("nothing", "private window")
    webmail = browser("Inbox", "https://mail.google.com/mail/u/0/")
    assert decide(anything, webmail, IDLE, NOW) == Decision("nothing", "denied url")
    assert decide(DEFAULT_LOCAL_POLICY, webmail, IDLE, NOW) == Decision("nothing", "denied url")
    assert decide(DEFAULT_LOCAL_POLICY, browser("Docs", "https://github.com/"), IDLE, NOW).capture == "all"


def test_a_denylist_without_the_extension_goes_by_the_title_with_it_by_the_page() -> None:
    plain = browser("Docs - Chromium", extension=False)
    assert decide(DEFAULT_LOCAL_POLICY, plain, IDLE, NOW).capture == "all"
    assert decide(
        DEFAULT_LOCAL_POLICY, browser("Incognito - Chromium", extension=False), IDLE, NOW
    ).reason == ("denied title")
    # The extension runs but does not report this window (a private one it may not see): not captured.
    assert decide(DEFAULT_LOCAL_POLICY, browser("Docs - Chromium"), IDLE, NOW) == Decision(
        "nothing", "unknown page"
    )


def test_pause_stops_everything_until_it_expires() -> None:
    paused = DeviceState(notice_accepted=True, paused_until=NOW + 60)
    assert decide(DEFAULT_LOCAL_POLICY, FORM, paused, NOW) == Decision("nothing", "paused")
    assert decide(DEFAULT_LOCAL_POLICY, FORM, paused, NOW + 59.999).reason == "paused"
    assert decide(DEFAULT_LOCAL_POLICY, FORM, paused, NOW + 60) == Decision("all")
    assert decision_expires(paused, NOW) == NOW + 60
    assert decision_expires(paused, NOW + 60) is None
    assert decision_expires(IDLE, NOW) is None


def test_exemption_stops_everything_and_comes_first() -> None:
    exempt = DeviceState(notice_accepted=True, exempt=True, paused_until=NOW + 60)
    assert decide(DEFAULT_LOCAL_POLICY, FORM, exempt, NOW) == Decision("nothing", "exempt")
    assert decide(ALLOW_FORM, TERMINAL, exempt, NOW) == Decision("nothing", "exempt")


def test_pause_is_reported_before_a_window_denial() -> None:
    paused = DeviceState(notice_accepted=True, paused_until=NOW + 60)
    assert decide(DEFAULT_LOCAL_POLICY, KEEPASS, paused, NOW).reason == "paused"


def test_low_battery_follows_the_policy_mode() -> None:
    low = DeviceState(notice_accepted=True, on_battery=True, battery_percent=12)
    plugged = DeviceState(notice_accepted=True, on_battery=False, battery_percent=12)
    unknown = DeviceState(notice_accepted=True, on_battery=True, battery_percent=None)
    at_threshold = DeviceState(notice_accepted=True, on_battery=True, battery_percent=20)
    input_only = decide(DEFAULT_LOCAL_POLICY, FORM, low, NOW)
    assert input_only == Decision("input_only", "low battery")
    assert input_only.input_allowed and not input_only.screen_allowed
    assert decide(DEFAULT_LOCAL_POLICY, FORM, plugged, NOW) == Decision("all")
    assert decide(DEFAULT_LOCAL_POLICY, FORM, unknown, NOW) == Decision("all")
    assert decide(DEFAULT_LOCAL_POLICY, FORM, at_threshold, NOW) == Decision("all")  # below, not at
    pause_policy = CapturePolicy(low_battery_mode="pause")
    assert decide(pause_policy, FORM, low, NOW) == Decision("nothing", "low battery")
    normal_policy = CapturePolicy(low_battery_mode="normal")
    assert decide(normal_policy, FORM, low, NOW) == Decision("all")
    # A denied window stays denied (and says so) on low battery.
    assert decide(DEFAULT_LOCAL_POLICY, KEEPASS, low, NOW) == Decision("nothing", "denied app")
    assert decide(pause_policy, KEEPASS, low, NOW) == Decision("nothing", "denied app")


def test_decision_levels() -> None:
    assert Decision("all").input_allowed and Decision("all").screen_allowed
    assert not Decision("nothing", "paused").input_allowed
    assert not Decision("nothing", "paused").screen_allowed


@pytest.mark.parametrize(
    ("title", "password"),
    [
        ("Sign in", True),
        ("demotrace demo - Sign In", True),
        ("Signin required", True),
        ("Log in to GitHub", True),
        ("Enter password", True),
        ("Unlock Keyring", True),
        ("Authentication required", True),
        ("Enter your one-time code", True),
        ("demotrace demo form", False),
        ("Design review notes", False),  # "sign" inside "Design" is not the word
        ("Blog index", False),
        ("", False),
    ],
)
def test_password_windows_are_recognised_by_title(title: str, password: bool) -> None:
    window = WindowContext(app="Any", title=title)
    assert is_password_window(DEFAULT_LOCAL_POLICY, window) is password


def test_no_window_is_not_a_password_window() -> None:
    assert not is_password_window(DEFAULT_LOCAL_POLICY, None)
    assert not is_password_window(CapturePolicy(password_title_patterns=[]), WindowContext(title="Sign in"))


def test_a_policy_file_decides_like_the_struct() -> None:
    policy = parse_policy(
        """
mode = "allowlist"
allow_apps = ["DemoForm"]
deny_title_patterns = ["secret project"]
"""
    )
    assert decide(policy, FORM, IDLE, NOW) == Decision("all")
    secret = WindowContext(app="DemoForm", title="Secret Project plan")
    assert decide(policy, secret, IDLE, NOW) == Decision("nothing", "denied title")
    assert decide(policy, TERMINAL, IDLE, NOW) == Decision("nothing", "not allowlisted")


def test_bad_patterns_are_refused_with_the_field_named() -> None:
    with pytest.raises(PolicyError, match="allow_title_patterns"):
        parse_policy('allow_title_patterns = ["(unclosed"]')


def test_the_gate_decides_at_its_clock_and_tells_listeners() -> None:
    now = [NOW]
    gate = CaptureGate(ALLOW_FORM, clock=lambda: now[0], notice_accepted=True)
    heard = threading.Semaphore(0)

    def listener() -> None:
        heard.release()

    gate.subscribe(listener)
    assert gate.decide(FORM) == Decision("all")
    gate.update_state(paused_until=NOW + 10)
    assert heard.acquire(timeout=0)
    assert gate.decide(FORM) == Decision("nothing", "paused")
    now[0] = NOW + 10
    assert gate.decide(FORM) == Decision("all")
    gate.set_policy(CapturePolicy(mode="allowlist", allow_apps=["XTerm"]))
    assert heard.acquire(timeout=0)
    assert gate.decide(FORM) == Decision("nothing", "not allowlisted")
    gate.unsubscribe(listener)
    gate.unsubscribe(listener)  # twice: ignored
    gate.update_state(exempt=True)
    assert not heard.acquire(timeout=0)
    assert gate.decide(TERMINAL) == Decision("nothing", "exempt")
