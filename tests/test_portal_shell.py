"""The portal's shell: sign-in and sign-out in real Chromium, sessions, CSRF, throttling, roles and the
security headers of every answer."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from tls_ca import TestCA

from demotrace.collector.accounts import AccountError, Role
from demotrace.collector.limits import CollectorLimits
from demotrace.collector.portal.auth import CSRF_FIELD, LOGIN_COOKIE, SESSION_COOKIE
from demotrace.collector.server import ServerThread
from demotrace.collector.tls import server_context
from demotrace.collector.web_sessions import LoginThrottle, csrf_token
from tests.portal_support import PASSWORD, PortalCollector, make_portal_app, sign_in, signed_in_client


def test_an_admin_signs_in_sees_the_admin_nav_and_signs_out(portal: PortalCollector, page: Page) -> None:
    page.goto(portal.url + "/admin/exemptions")
    expect(page).to_have_url(portal.url + "/login?next=/admin/exemptions")
    sign_in(page, portal, "ada")
    expect(page).to_have_url(portal.url + "/admin/exemptions")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Audit log")).to_be_visible()
    expect(page.locator(".account-name")).to_have_text("ada")
    cookie = next(c for c in page.context.cookies() if c["name"] == SESSION_COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(portal.url + "/login")
    page.goto(portal.url + "/admin/exemptions")
    expect(page).to_have_url(portal.url + "/login?next=/admin/exemptions")


def test_a_wrong_password_is_refused_on_the_page(portal: PortalCollector, page: Page) -> None:
    sign_in(page, portal, "ada", "not the password at all")
    expect(page.get_by_role("alert")).to_have_text("Wrong account name or password.")
    expect(page.locator(".account-name")).to_have_count(0)


def test_the_n_plus_first_bad_sign_in_is_refused_even_with_the_right_password(tmp_path: Path) -> None:
    collector = make_portal_app(tmp_path / "c", CollectorLimits(login_failures_per_account=3))
    with ServerThread(collector.app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        collector.url = server.url

        def attempt(password: str) -> httpx.Response:
            client.get("/login")
            token = csrf_token(client.cookies[LOGIN_COOKIE])
            return client.post("/login", data={"name": "ada", "password": password, CSRF_FIELD: token})

        assert [attempt("wrong password number").status_code for _ in range(3)] == [401, 401, 401]
        refused = attempt(PASSWORD)
        assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
        assert SESSION_COOKIE not in client.cookies
        # Another account from another name is throttled by its own count (the address allows 20).
        client.get("/login")
        token = csrf_token(client.cookies[LOGIN_COOKIE])
        other = client.post("/login", data={"name": "dana", "password": PASSWORD, CSRF_FIELD: token})
        assert other.status_code == 303


def test_a_form_post_without_the_sessions_csrf_token_is_refused(portal: PortalCollector) -> None:
    with signed_in_client(portal, "ada") as client:
        assert client.post("/logout", data={}).status_code == 403
        assert client.post("/logout", data={CSRF_FIELD: csrf_token("another session")}).status_code == 403
        assert client.get("/").status_code == 303  # still signed in
        good = client.post("/logout", data={CSRF_FIELD: csrf_token(client.cookies[SESSION_COOKIE])})
        assert good.status_code == 303
        assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")


def test_a_sign_in_form_without_its_token_is_refused(portal: PortalCollector) -> None:
    with httpx.Client(base_url=portal.url, timeout=30) as client:
        answer = client.post("/login", data={"name": "ada", "password": PASSWORD})
        assert answer.status_code == 400 and SESSION_COOKIE not in client.cookies


def test_roles_reach_only_their_pages_and_never_the_admin_api(portal: PortalCollector) -> None:
    with signed_in_client(portal, "erin") as employee:
        assert employee.get("/admin/exemptions").status_code == 403
        assert employee.get("/v1/admin/exemptions").status_code == 401
    with signed_in_client(portal, "dana") as engineer:
        assert engineer.get("/admin/policy").status_code == 403
        assert engineer.get("/v1/admin/people").status_code == 401


def test_a_disabled_accounts_session_ends_at_once(portal: PortalCollector) -> None:
    with signed_in_client(portal, "erin") as client:
        assert client.get("/", follow_redirects=False).headers["location"] == "/me"
        portal.accounts.disable("erin", "test")
        assert client.get("/", follow_redirects=False).headers["location"] == "/login?next=/"


def test_security_headers_on_pages_and_api(portal: PortalCollector) -> None:
    with httpx.Client(base_url=portal.url, timeout=30) as client:
        for path in ("/login", "/v1/health", "/static/portal.css"):
            headers = client.get(path).headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert "'unsafe-inline'" not in headers["content-security-policy"]
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer"
            assert "strict-transport-security" not in headers  # plain HTTP: HSTS is for TLS only


def test_the_sign_in_redirect_never_leaves_the_site(portal: PortalCollector) -> None:
    with httpx.Client(base_url=portal.url, timeout=30) as client:
        page = client.get("/login", params={"next": "//evil.example/x"}).text
        assert 'name="next" value="/"' in page


@pytest.mark.parametrize(
    ("name", "role", "person", "message"),
    [
        ("x y", Role.ADMIN, None, "account name"),
        ("newhire", Role.EMPLOYEE, None, "needs --person"),
        ("newhire", Role.EMPLOYEE, "p-nobody", "no person p-nobody"),
        ("newadmin", Role.ADMIN, "p-erin", "only an employee"),
        ("ada", Role.ADMIN, None, "already an account named ada"),
    ],
)
def test_accounts_that_cannot_be_made_say_why(
    tmp_path: Path, name: str, role: Role, person: str | None, message: str
) -> None:
    collector = make_portal_app(tmp_path / "c")
    with pytest.raises(AccountError, match=message):
        collector.accounts.add(name, role, PASSWORD, person, "test")
    with pytest.raises(AccountError, match="12 to"):
        collector.accounts.add("shorty", Role.ADMIN, "short", None, "test")


def test_the_api_docs_are_for_admins_and_load_nothing_from_elsewhere(
    portal: PortalCollector, page: Page
) -> None:
    with signed_in_client(portal, "erin") as employee:
        assert employee.get("/docs").status_code == 403
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    sign_in(page, portal, "ada", next_path="/docs")
    expect(page.locator(".opblock-summary-path", has_text="/v1/admin/exemptions").first).to_be_visible()
    assert requested and all(url.startswith(portal.url + "/") for url in requested)
    assert errors == []


def test_the_openapi_schema_has_the_api_and_none_of_the_portal(portal: PortalCollector) -> None:
    schema = httpx.get(portal.url + "/openapi.json", timeout=30).json()
    paths = set(schema["paths"])
    assert {"/v1/health", "/v1/enroll", "/v1/admin/audit", "/v1/admin/policy"} <= paths
    assert all(path.startswith("/v1/") for path in paths), paths
    audit_filters = {p["name"] for p in schema["paths"]["/v1/admin/audit"]["get"]["parameters"]}
    assert {"actor", "action", "since", "until", "limit", "device_id"} <= audit_filters


def test_pages_work_over_https_with_a_secure_cookie_and_hsts(
    tmp_path: Path, chromium_browser: Browser
) -> None:
    ca = TestCA(tmp_path / "ca")
    cert = ca.issue()
    collector = make_portal_app(tmp_path / "c")
    with ServerThread(collector.app, tls=server_context(cert.certfile, cert.keyfile)) as server:
        collector.url = server.url
        assert server.url.startswith("https://")
        with httpx.Client(
            base_url=server.url, verify=ssl.create_default_context(cafile=str(ca.ca_file)), timeout=30
        ) as client:
            headers = client.get("/login").headers
            assert headers["strict-transport-security"].startswith("max-age=")
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
        # The test CA is not in Chromium's store: the certificate is checked above, with httpx.
        context = chromium_browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        try:
            sign_in(page, collector, "ada", next_path="/admin/fleet")
            expect(page.get_by_role("heading", name="Fleet health")).to_be_visible()
            cookie = next(c for c in context.cookies() if c["name"] == SESSION_COOKIE)
            assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        finally:
            context.close()


def test_the_login_throttle_refills_with_time_and_counts_addresses_too() -> None:
    now = [0.0]
    throttle = LoginThrottle(per_account=2, per_address=3, window_s=60.0, clock=lambda: now[0])
    throttle.failed("ada", "10.0.0.1")
    throttle.failed("ADA", "10.0.0.1")  # names are counted without case
    assert throttle.wait_needed("ada", "10.0.0.2") > 0
    assert throttle.wait_needed("dana", "10.0.0.2") == 0
    throttle.failed("dana", "10.0.0.1")
    assert throttle.wait_needed("erin", "10.0.0.1") > 0  # the address spent its three
    now[0] = 30.0  # half the window: one failure per account forgiven
    assert throttle.wait_needed("ada", "10.0.0.2") == 0
