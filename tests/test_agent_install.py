"""`demotrace agent install` / `uninstall` as a person runs them: it enrolls with a real collector, writes
a systemd user unit and an XDG autostart entry with the installed `demotrace`'s absolute command lines
(checked by systemd-analyze verify and desktop-file-validate); uninstall removes them (data on request)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from demotrace.collector.app import create_app
from demotrace.collector.server import ServerThread
from demotrace.device.install import desktop_quote, systemd_quote
from demotrace.protocol import ADMIN_DEVICES_PATH

ADMIN = "install-admin-token-0123456789"
SECRET = "fleet-enrollment-secret-42"
DEMOTRACE = Path(sys.executable).parent / "demotrace"


def user_env(home: Path) -> dict[str, str]:
    (home / "run").mkdir(parents=True, mode=0o700)
    return {
        **os.environ,
        "HOME": str(home),
        # A space in the config folder: every path in a command line must be quoted right.
        "XDG_CONFIG_HOME": str(home / "my config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_RUNTIME_DIR": str(home / "run"),
    }


def demotrace(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demotrace.cli", *args], env=env, capture_output=True, text=True, input=stdin
    )


def key_of(text: str, key: str) -> str:
    lines = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]
    assert len(lines) == 1, text
    return lines[0]


def verify_unit(unit: Path, env: dict[str, str]) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (scripts/setup.sh installs Debian's systemd)")
    checked = subprocess.run(
        ["systemd-analyze", "--user", "verify", str(unit)], env=env, capture_output=True, text=True
    )
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr


def test_install_enrolls_writes_valid_files_and_uninstall_removes_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = user_env(home)
    with ServerThread(
        create_app(tmp_path / "collector", enrollment_secret=SECRET, admin_token=ADMIN)
    ) as server:
        refused = demotrace(
            env, "agent", "install", "--server", server.url, "--secret", "wrong", "--no-enable"
        )
        assert (
            refused.returncode == 2
            and "cannot enroll" in refused.stderr
            and "Traceback" not in refused.stderr
        )
        done = demotrace(
            env,
            "agent",
            "install",
            "--server",
            server.url,
            "--secret",
            SECRET,
            "--portal",
            "https://portal.example/me?tab=devices",
            "--no-enable",
        )
        assert done.returncode == 0, done.stderr
        devices = httpx.get(f"{server.url}{ADMIN_DEVICES_PATH}", headers={"Authorization": f"Bearer {ADMIN}"})
        assert len(devices.json()) == 1
        assert "enrolled with" in done.stdout and "demotrace notice --accept" in done.stdout

        # Installing again keeps the enrolment (no second device) and rewrites the same files.
        again = demotrace(env, "agent", "install", "--no-enable")
        assert again.returncode == 0 and "already enrolled" in again.stdout, again.stderr
        assert (
            len(
                httpx.get(
                    f"{server.url}{ADMIN_DEVICES_PATH}", headers={"Authorization": f"Bearer {ADMIN}"}
                ).json()
            )
            == 1
        )

    unit = home / "my config" / "systemd" / "user" / "demotrace-recorder.service"
    autostart = home / "my config" / "autostart" / "demotrace-tray.desktop"
    unit_text = unit.read_text()
    assert shlex.split(key_of(unit_text, "ExecStart")) == [
        str(DEMOTRACE.absolute()),
        "record",
        "--server",
        server.url,
    ]
    assert key_of(unit_text, "Restart") == "on-failure" and key_of(unit_text, "KillSignal") == "SIGINT"
    assert key_of(unit_text, "WantedBy") == "graphical-session.target"
    assert shlex.split(key_of(autostart.read_text(), "Exec")) == [str(DEMOTRACE.absolute()), "tray"]
    verify_unit(unit, env)
    if shutil.which("desktop-file-validate") is None:
        pytest.skip("desktop-file-validate is not installed (Debian's desktop-file-utils)")
    validated = subprocess.run(["desktop-file-validate", str(autostart)], capture_output=True, text=True)
    assert validated.returncode == 0 and not validated.stdout.strip(), validated.stdout

    credentials = home / "my config" / "demotrace" / "device.json"
    assert credentials.exists()
    kept = demotrace(env, "agent", "uninstall")
    assert kept.returncode == 0, kept.stderr
    assert not unit.exists() and not autostart.exists() and credentials.exists()
    declined = demotrace(env, "agent", "uninstall", "--remove-data", stdin="n\n")
    assert declined.returncode == 1 and credentials.exists()
    removed = demotrace(env, "agent", "uninstall", "--remove-data", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert not credentials.parent.exists() and f"deleted {credentials.parent}" in removed.stdout.replace(
        "\n", ""
    )


def test_the_first_install_option_with_spaces_and_specials_is_quoted_for_each_format(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = user_env(home)
    policy = home / "my config" / "policy 100%$.toml"
    policy.parent.mkdir(parents=True)
    policy.write_text('mode = "denylist"\n')
    done = demotrace(
        env, "agent", "install", "--policy", str(policy), "--portal", "http://x/a b", "--no-enable"
    )
    assert done.returncode == 0, done.stderr
    unit = home / "my config" / "systemd" / "user" / "demotrace-recorder.service"
    exec_start = key_of(unit.read_text(), "ExecStart")
    assert "%%$$" in exec_start  # systemd specifiers and variables taken literally
    verify_unit(unit, env)
    assert systemd_quote("plain") == "plain" and systemd_quote("a b") == '"a b"'
    assert desktop_quote("a b") == '"a b"' and desktop_quote('say "$x"') == '"say \\\\"\\\\$x\\\\""'
    autostart = home / "my config" / "autostart" / "demotrace-tray.desktop"
    if shutil.which("desktop-file-validate") is not None:
        validated = subprocess.run(["desktop-file-validate", str(autostart)], capture_output=True, text=True)
        assert validated.returncode == 0 and not validated.stdout.strip(), validated.stdout
