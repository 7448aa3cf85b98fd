"""Screenshots of every portal page, to look at them as their users would:

    .venv/bin/python scripts/portal_screenshots.py [OUT_DIR]     (default: ./portal-screenshots)

Starts a throwaway collector on loopback with an account of each role, twelve people who uploaded a
few frames, an exemption request and a device health report, then signs in to real Chromium
(/usr/bin/chromium, headless) and saves one PNG per page.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx
import zstandard
from playwright.sync_api import Page, sync_playwright

from demotrace.collector.accounts import LocalAccounts, Role
from demotrace.collector.app import create_app
from demotrace.collector.ingest import IngestService
from demotrace.collector.server import ServerThread
from demotrace.model import Frame, encode_record

PASSWORD = "screenshots only, not a secret"
BAD_POLICY = 'mode = "allowlist"\nallow_apps = ["xterm"]\ndeny_title_patterns = ["(unclosed"]\n'


def frame(session: str, index: int) -> Frame:
    return Frame(
        f"{session}-f{index}", session, "x", float(index), 1.7e9 + index, 0, 0, 2, 2, "image/png", b"x"
    )


def seed(url: str, ingest: IngestService) -> None:
    for person in range(12):
        token = ingest.enroll(f"laptop-{person:02d}", None, f"p-{person:02d}").token
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-demotrace-record"}
        for index in range(3):
            record = frame(f"p{person}", index)
            body = zstandard.ZstdCompressor().compress(encode_record(record))
            httpx.put(f"{url}/v1/records/{record.frame_id}", content=body, headers=headers, timeout=30)
        if person == 3:
            httpx.post(
                f"{url}/v1/exemptions",
                json={"reason": "I work on medical records all day", "delete_collected": True},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
        if person in (1, 2):
            health = {"agent_version": "0.1.0", "spool_backlog": 17 * person, "last_error": None}
            if person == 2:
                health["last_error"] = "the collector did not answer within 30 s"
            httpx.post(
                f"{url}/v1/device/report",
                json=health,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )


def sign_in(page: Page, url: str, name: str) -> None:
    page.context.clear_cookies()
    page.goto(url + "/login")
    page.get_by_label("Account name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data:
        app = create_app(Path(data), admin_token="screenshots-admin-token", retention_interval_s=None)
        with ServerThread(app) as server:
            seed(server.url, app.state.ingest)
            accounts: LocalAccounts = app.state.portal.accounts
            accounts.add("ada", Role.ADMIN, PASSWORD, None, "screenshots")
            accounts.add("dana", Role.DATA_ENGINEER, PASSWORD, None, "screenshots")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.goto(server.url + "/login")
                page.screenshot(path=str(out / "login.png"), full_page=True)
                sign_in(page, server.url, "ada")
                for name in ("exemptions", "fleet", "audit", "policy"):
                    page.goto(f"{server.url}/admin/{name}")
                    page.screenshot(path=str(out / f"admin-{name}.png"), full_page=True)
                page.get_by_label("Policy (TOML)").fill(BAD_POLICY)
                page.get_by_role("button", name="Save policy").click()
                page.screenshot(path=str(out / "admin-policy-error.png"), full_page=True)
                page.goto(server.url + "/docs")
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(out / "admin-docs.png"))
                sign_in(page, server.url, "dana")
                page.screenshot(path=str(out / "data.png"), full_page=True)
                page.goto(server.url + "/admin/fleet")
                page.screenshot(path=str(out / "forbidden.png"), full_page=True)
                browser.close()
    for png in sorted(out.glob("*.png")):
        print(png)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("portal-screenshots"))
