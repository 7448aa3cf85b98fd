"""Fixtures for the portal's tests (registered through ``pytest_plugins`` in conftest.py): a running
collector with an account of each role, and pages of a real Chromium (Debian's, driven by Playwright).

    def test_x(portal: PortalCollector, page: Page) -> None:
        sign_in(page, portal, "ada")          # the admin; "erin" the employee; "dana" the data engineer
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI

from demotrace.collector.accounts import LocalAccounts, Role
from demotrace.collector.app import create_app
from demotrace.collector.ingest import Enrollment, IngestService
from demotrace.collector.limits import CollectorLimits
from demotrace.collector.portal.auth import CSRF_FIELD, LOGIN_COOKIE, SESSION_COOKIE
from demotrace.collector.server import ServerThread
from demotrace.collector.web_sessions import csrf_token

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
PORTAL_ADMIN_TOKEN = "portal-admin-token-0123456789"
PASSWORD = "correct horse battery staple"
# name -> (role, person id of an employee)
ACCOUNTS: dict[str, tuple[Role, str | None]] = {
    "ada": (Role.ADMIN, None),
    "erin": (Role.EMPLOYEE, "p-erin"),
    "emil": (Role.EMPLOYEE, "p-emil"),
    "dana": (Role.DATA_ENGINEER, None),
}


@dataclass
class PortalCollector:
    """A collector serving at ``url``, with ``ACCOUNTS`` made (each with ``PASSWORD``) and one enrolled
    device per employee (``devices``: person id -> its enrolment)."""

    url: str
    app: FastAPI
    data_dir: Path
    admin_token: str = PORTAL_ADMIN_TOKEN
    devices: dict[str, Enrollment] = field(default_factory=dict)

    @property
    def ingest(self) -> IngestService:
        ingest: IngestService = self.app.state.ingest
        return ingest

    @property
    def accounts(self) -> LocalAccounts:
        accounts: LocalAccounts = self.app.state.portal.accounts
        return accounts

    def enroll(self, device_name: str, person_id: str | None = None) -> Enrollment:
        enrollment = self.ingest.enroll(device_name, None, person_id)
        self.devices.setdefault(enrollment.person_id, enrollment)
        return enrollment


def make_portal_app(data_dir: Path, limits: CollectorLimits | None = None) -> PortalCollector:
    """A collector app (not yet served) with the accounts and one device per employee."""
    app = create_app(data_dir, admin_token=PORTAL_ADMIN_TOKEN, retention_interval_s=None, limits=limits)
    collector = PortalCollector(url="", app=app, data_dir=data_dir)
    for name, (role, person_id) in ACCOUNTS.items():
        if person_id is not None:
            collector.enroll(f"{name}-laptop", person_id)
        collector.accounts.add(name, role, PASSWORD, person_id, "test")
    return collector


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[PortalCollector]:
    """A running collector with an account of each role (see ACCOUNTS)."""
    collector = make_portal_app(tmp_path / "collector")
    with ServerThread(collector.app) as server:
        collector.url = server.url
        yield collector


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup.sh (Debian package chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium_browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) and a page in it, 1280x900."""
    context = chromium_browser.new_context(viewport={"width": 1280, "height": 900}, ignore_https_errors=False)
    new_page = context.new_page()
    new_page.set_default_timeout(15_000)
    yield new_page
    context.close()


def sign_in(
    page: Page, collector: PortalCollector, name: str, password: str = PASSWORD, next_path: str | None = None
) -> None:
    """Fill the sign-in form as a person would, and submit it (then land on ``next_path`` if given)."""
    if next_path is not None:
        page.goto(collector.url + next_path)  # redirected to the sign-in form, and back after it
    elif not page.url.startswith(collector.url + "/login"):
        page.goto(collector.url + "/login")
    page.get_by_label("Account name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


@contextmanager
def signed_in_client(
    collector: PortalCollector, name: str, password: str = PASSWORD
) -> Iterator[httpx.Client]:
    """An HTTP client holding a session of ``name`` (signed in through the form, as a browser does)."""
    with httpx.Client(base_url=collector.url, timeout=30) as client:
        client.get("/login")
        token = csrf_token(client.cookies[LOGIN_COOKIE])
        answer = client.post("/login", data={"name": name, "password": password, CSRF_FIELD: token})
        assert answer.status_code == 303, answer.text
        assert SESSION_COOKIE in client.cookies
        yield client


def form_token_of(client: httpx.Client) -> str:
    """The CSRF token the pages give this client's session."""
    return csrf_token(client.cookies[SESSION_COOKIE])
