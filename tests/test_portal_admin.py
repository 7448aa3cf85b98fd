"""The admin's and the data engineer's pages in real Chromium: the exemption queue, the policy editor,
fleet health and revocation, the audit log under the signed-in account, and no identity on the data
engineer's page. Cohort aggregates are refused below MIN_COHORT_PEOPLE people."""

from __future__ import annotations

import socket

import httpx
import pytest
from playwright.sync_api import Page, expect
from test_exemptions import ALLOWLIST_POLICY, make_frame, packed

from demotrace.collector.cohorts import MIN_COHORT_PEOPLE, CohortTooSmall, daily_aggregates, require_cohort
from demotrace.collector.fleet import FleetService
from demotrace.collector.store.fleet_store import DayVolume, FleetStore
from demotrace.policy import PolicyError, parse_policy
from tests.portal_support import ACCOUNTS, PortalCollector, form_token_of, sign_in, signed_in_client

BAD_REGEX_POLICY = ALLOWLIST_POLICY + 'deny_title_patterns = ["(unclosed"]\n'


def admin_api(collector: PortalCollector, method: str, path: str, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {collector.admin_token}"}
    return httpx.request(method, collector.url + path, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


def ask_exemption(collector: PortalCollector, person_id: str, reason: str) -> None:
    token = collector.devices[person_id].token
    answer = httpx.post(
        collector.url + "/v1/exemptions",
        json={"reason": reason, "delete_collected": False},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text


def device_policy(collector: PortalCollector, person_id: str) -> httpx.Response:
    token = collector.devices[person_id].token
    return httpx.get(
        collector.url + "/v1/device/policy", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_an_admin_approves_an_exemption_and_the_audit_log_names_the_account(
    portal: PortalCollector, page: Page
) -> None:
    ask_exemption(portal, "p-erin", "I handle HR cases")
    assert device_policy(portal, "p-erin").json()["exempt"] is False
    sign_in(page, portal, "ada")
    expect(page).to_have_url(portal.url + "/admin/exemptions")
    row = page.locator("tr", has_text="I handle HR cases")
    expect(row.locator("td").nth(1)).to_have_text("p-erin")
    row.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("Exemption approved")
    decided = page.locator("tr", has_text="I handle HR cases")
    expect(decided).to_contain_text("approved")
    expect(decided).to_contain_text("account:ada")
    assert device_policy(portal, "p-erin").json()["exempt"] is True

    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Actor").fill("account:ada")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("td.action", has_text="exemption_approved")).to_have_count(1)
    audit = admin_api(portal, "GET", "/v1/admin/audit", params={"action": "exemption_approved"}).json()
    assert [entry["actor"] for entry in audit] == ["account:ada"]


def test_a_bad_regex_is_refused_on_the_page_with_the_clis_message(
    portal: PortalCollector, page: Page
) -> None:
    with pytest.raises(PolicyError) as cli_error:
        parse_policy(BAD_REGEX_POLICY, source="policy")  # what `demotrace admin policy set` checks first
    sign_in(page, portal, "ada", next_path="/admin/policy")
    before = page.get_by_label("Policy (TOML)").input_value()
    page.get_by_label("Policy (TOML)").fill(BAD_REGEX_POLICY)
    page.get_by_role("button", name="Save policy").click()
    alert = page.get_by_role("alert")
    expect(alert).to_have_text(str(cli_error.value))
    expect(alert).to_contain_text("is not a valid regular expression")
    # Kept to fix, not lost (a textarea drops one leading newline).
    expect(page.get_by_label("Policy (TOML)")).to_have_value(BAD_REGEX_POLICY.lstrip("\n"))
    assert admin_api(portal, "GET", "/v1/admin/policy").json()["policy"] == before


def test_a_widening_policy_needs_the_confirmation_on_the_page(portal: PortalCollector, page: Page) -> None:
    sign_in(page, portal, "ada", next_path="/admin/policy")
    page.get_by_label("Policy (TOML)").fill(ALLOWLIST_POLICY.replace('"xterm", "firefox"', '"xterm", "zoom"'))
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("alert")).to_contain_text("widens capture")
    page.get_by_label("I mean to capture more than before").check()
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("status")).to_contain_text("Policy saved")
    assert '"zoom"' in admin_api(portal, "GET", "/v1/admin/policy").json()["policy"]
    audit = admin_api(portal, "GET", "/v1/admin/audit", params={"action": "policy_set"}).json()
    assert [entry["actor"] for entry in audit] == ["account:ada"]


def test_fleet_health_shows_reported_health_and_revokes_a_device(portal: PortalCollector, page: Page) -> None:
    device = portal.devices["p-emil"]
    report = {"agent_version": "0.1.0", "spool_backlog": 42, "last_error": "collector unreachable"}
    answer = httpx.post(
        portal.url + "/v1/device/report",
        json=report,
        headers={"Authorization": f"Bearer {device.token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    sign_in(page, portal, "ada", next_path="/admin/fleet")
    row = page.locator(f'tr[data-device="{device.device_id}"]')
    expect(row).to_contain_text("emil-laptop")
    expect(row).to_contain_text("0.1.0")
    expect(row).to_contain_text("42")
    expect(row).to_contain_text("collector unreachable")
    expect(row).to_contain_text("active")
    expect(page.locator(".withheld")).to_contain_text(f"at least {MIN_COHORT_PEOPLE} people")
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("status")).to_contain_text("Device revoked")
    expect(page.locator(f'tr[data-device="{device.device_id}"]')).to_contain_text("revoked")
    refused = httpx.get(
        portal.url + "/v1/device/policy", headers={"Authorization": f"Bearer {device.token}"}, timeout=30
    )
    assert refused.status_code == 401
    audit = admin_api(portal, "GET", "/v1/admin/audit", params={"action": "device_revoked"}).json()
    assert [(entry["actor"], entry["device_id"]) for entry in audit] == [("account:ada", device.device_id)]


def test_admin_forms_refuse_a_post_without_the_csrf_token(portal: PortalCollector) -> None:
    ask_exemption(portal, "p-erin", "please")
    request_id = admin_api(portal, "GET", "/v1/admin/exemptions").json()[0]["id"]
    with signed_in_client(portal, "ada") as client:
        assert client.post(f"/admin/exemptions/{request_id}/approve", data={}).status_code == 403
        assert client.post("/admin/policy", data={"policy": ALLOWLIST_POLICY}).status_code == 403
        device = portal.devices["p-emil"].device_id
        assert client.post(f"/admin/fleet/{device}/revoke", data={"csrf_token": "0" * 64}).status_code == 403
        assert admin_api(portal, "GET", "/v1/admin/exemptions").json()[0]["status"] == "requested"
        good = client.post(
            f"/admin/exemptions/{request_id}/approve", data={"csrf_token": form_token_of(client)}
        )
        assert good.status_code == 303
    assert admin_api(portal, "GET", "/v1/admin/exemptions").json()[0]["status"] == "approved"


def test_employees_and_data_engineers_cannot_use_admin_pages_or_the_admin_api(
    portal: PortalCollector,
) -> None:
    ask_exemption(portal, "p-erin", "please")
    for name in ("erin", "dana"):
        with signed_in_client(portal, name) as client:
            token = form_token_of(client)
            for path in ("/admin/exemptions", "/admin/policy", "/admin/fleet", "/admin/audit"):
                assert client.get(path).status_code == 403, (name, path)
            assert client.post("/admin/exemptions/1/approve", data={"csrf_token": token}).status_code == 403
            for path in ("/v1/admin/exemptions", "/v1/admin/people", "/v1/admin/audit", "/v1/admin/devices"):
                assert client.get(path).status_code == 401, (name, path)
    assert admin_api(portal, "GET", "/v1/admin/exemptions").json()[0]["status"] == "requested"


def upload_frames(collector: PortalCollector, person_id: str, count: int) -> None:
    token = collector.ingest.enroll(f"{person_id}-box", None, person_id).token
    for index in range(count):
        frame = make_frame(f"{person_id}-s", index)
        answer = httpx.put(
            f"{collector.url}/v1/records/{frame.frame_id}",
            content=packed(frame),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-demotrace-record"},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text


def test_the_data_engineer_sees_cohort_figures_and_never_an_identity(
    portal: PortalCollector, page: Page
) -> None:
    people = [f"p-{index:02d}" for index in range(MIN_COHORT_PEOPLE)]
    for person in people:
        upload_frames(portal, person, 2)
    sign_in(page, portal, "dana")
    expect(page).to_have_url(portal.url + "/data")
    volumes = page.locator("table.volumes")
    expect(volumes).to_contain_text(f"{2 * MIN_COHORT_PEOPLE}")  # today's records, fleet-wide
    text = page.locator("main").inner_text() + page.content()
    identities = [*people, "p-erin", "p-emil", "erin-laptop", "emil-laptop", "-box", socket.gethostname()]
    identities += [name for name in ACCOUNTS if name != "dana"]
    for device in portal.devices.values():
        identities.append(device.device_id)
    shown = [identity for identity in identities if identity in text]
    assert shown == []
    page.goto(portal.url + "/admin/fleet")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


def test_cohorts_below_the_minimum_are_refused_in_the_service(portal: PortalCollector) -> None:
    fleet = FleetService(FleetStore(portal.ingest.metadata.engine))
    with pytest.raises(CohortTooSmall, match=f"at least {MIN_COHORT_PEOPLE} people"):
        fleet.volumes()  # two people enrolled
    for person in [f"p-{index:02d}" for index in range(MIN_COHORT_PEOPLE - 2)]:
        upload_frames(portal, person, 1)
    volumes = fleet.volumes()
    assert volumes.people == MIN_COHORT_PEOPLE
    # Today only eight of the ten sent anything: the day itself is withheld.
    assert [(day.records, day.bytes) for day in volumes.days] == [(None, None)]
    with pytest.raises(CohortTooSmall):
        require_cohort(MIN_COHORT_PEOPLE - 1, "anything")
    days = daily_aggregates([DayVolume(0.0, MIN_COHORT_PEOPLE, 5, 500), DayVolume(86_400.0, 3, 1, 100)])
    assert [(d.records, d.bytes, d.suppressed) for d in days] == [(5, 500, False), (None, None, True)]
