"""The console through the gateway, as a browser talks to it (plain HTTP, cookies, forms):
sessions that cannot be fixed or forged, CSRF on every form, no open redirect, idle expiry,
readable errors that keep what was typed, no stack trace ever, the public look-up, /docs offline."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from markupsafe import escape

from services.console.i18n import translator
from services.console.web import safe_next
from shared import clock
from tests import suites

T = translator("vi")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest_asyncio.fixture(scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[suites.Running]:
    # every request here comes from 127.0.0.1 through the console: the gateway's per-address
    # limits would count the whole module as one caller; only the look-up keeps its rule (its
    # test names its visitors' addresses, which the gateway believes from loopback)
    generous = {"rate": 1000, "burst": 10000}
    lookup_only = {"GET /api/intake/lookup": {"rate": 0.5, "burst": 30}}
    async with suites.embedded(
        tmp_path_factory.mktemp("console"), rate_public=generous, rate_routes=lookup_only
    ) as running:
        yield running


def browser(running: suites.Running) -> httpx.AsyncClient:
    return running.client(follow_redirects=False)


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text[:1000]
    return found.group(1)


async def log_in(client: httpx.AsyncClient, username: str, *, next_url: str = "/") -> httpx.Response:
    form = await client.get("/dang-nhap")
    return await client.post(
        "/dang-nhap",
        data={"csrf_token": csrf_of(form), "username": username, "password": "demo", "next": next_url},
    )


def session_cookie(response: httpx.Response) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith("lt_session="):
            return header
    return None


async def test_pages_come_through_the_gateway_in_vietnamese(running: suites.Running) -> None:
    async with browser(running) as client:
        home = await client.get("/")
        assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
        assert '<html lang="vi">' in home.text and T("Look up a dossier") in home.text
        csp = home.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "style-src 'self'" in csp
        assert home.headers["x-frame-options"] == "DENY"
        assert len(home.headers.get_list("content-security-policy")) == 1
        # the API is where it was
        assert (await client.get("/api/intake/procedures")).headers["content-type"].startswith("application/json")
        assert (await client.get("/static/console.css")).status_code == 200


async def test_api_docs_work_offline(running: suites.Running) -> None:
    async with browser(running) as client:
        docs = await client.get("/docs")
        assert docs.status_code == 200
        assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
        assert assets and all(a.startswith("/docs/static/") for a in assets), assets
        assert "cdn" not in docs.text and "https://" not in docs.headers["content-security-policy"]
        for asset in assets:
            assert (await client.get(asset)).status_code == 200, asset


async def test_log_in_goes_home_by_role_and_log_out_ends_the_session(running: suites.Running) -> None:
    async with browser(running) as client:
        answer = await log_in(client, "desk_officer")
        assert answer.status_code == 303 and answer.headers["location"] == "/mot-cua"
        cookie = session_cookie(answer)
        assert cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert "Secure" not in cookie  # development over http; see test_cookies_are_secure_over_https
        desk = await client.get("/mot-cua")
        assert desk.status_code == 200 and "Lê Văn Tiếp" in desk.text
        stolen = client.cookies.get("lt_session")
        out = await client.post("/dang-xuat", data={"csrf_token": csrf_of(desk)})
        assert out.status_code == 303
    # the old id opens nothing any more, even sent again by hand
    async with browser(running) as thief:
        thief.cookies.set("lt_session", stolen or "", domain="127.0.0.1")
        again = await thief.get("/mot-cua")
        assert again.status_code == 303 and again.headers["location"].startswith("/dang-nhap")


async def test_wrong_password_keeps_the_user_name_and_says_why(running: suites.Running) -> None:
    async with browser(running) as client:
        form = await client.get("/dang-nhap")
        answer = await client.post(
            "/dang-nhap",
            data={"csrf_token": csrf_of(form), "username": "desk_officer", "password": "wrong", "next": "/"},
        )
        assert answer.status_code == 400
        assert T("Wrong user name or password, or the account is locked.") in answer.text
        assert 'value="desk_officer"' in answer.text
        assert session_cookie(answer) is None


async def test_every_form_needs_its_csrf_token(running: suites.Running) -> None:
    async with browser(running) as client:
        await client.get("/dang-nhap")
        no_token = await client.post("/dang-nhap", data={"username": "desk_officer", "password": "demo"})
        assert no_token.status_code == 403 and session_cookie(no_token) is None
        forged = await client.post(
            "/dang-nhap", data={"csrf_token": "x" * 43, "username": "desk_officer", "password": "demo"}
        )
        assert forged.status_code == 403 and session_cookie(forged) is None
        assert (await log_in(client, "desk_officer")).status_code == 303
        # logged in: the anonymous token no longer passes; the session's own is needed
        anonymous = client.cookies.get("lt_csrf")
        logout = await client.post("/dang-xuat", data={"csrf_token": anonymous or ""})
        assert logout.status_code == 403
        assert (await client.get("/mot-cua")).status_code == 200  # still logged in
        receive = await client.post(
            "/mot-cua/tiep-nhan", data={"procedure": "1.001193", "full_name": "Kẻ Giả Mạo", "have-1": "1"}
        )
        assert receive.status_code == 403
        listed = await client.get("/mot-cua", params={"view": "all", "applicant": "Kẻ Giả Mạo"})
        assert T("No dossiers in this list.") in listed.text


async def test_a_session_id_chosen_before_log_in_is_never_used(running: suites.Running) -> None:
    """Session fixation: whatever id the browser carried, log-in gives a fresh one."""
    async with browser(running) as client:
        client.cookies.set("lt_session", "attacker-chose-this-id", domain="127.0.0.1")
        answer = await log_in(client, "leader")
        assert answer.status_code == 303
        assert client.cookies.get("lt_session") not in (None, "attacker-chose-this-id")
    async with browser(running) as attacker:
        attacker.cookies.set("lt_session", "attacker-chose-this-id", domain="127.0.0.1")
        assert (await attacker.get("/ky-duyet")).status_code == 303
    # logging in again in the same browser replaces the id too
    async with browser(running) as client:
        await log_in(client, "leader")
        first = client.cookies.get("lt_session")
        await log_in(client, "clerk")
        second = client.cookies.get("lt_session")
        assert first != second
    async with browser(running) as thief:
        thief.cookies.set("lt_session", first or "", domain="127.0.0.1")
        assert (await thief.get("/ky-duyet")).status_code == 303


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
        "/%0d%0aLocation:%20http://evil.example",
        "\\\\evil.example",
    ],
)
async def test_next_never_leaves_the_site(running: suites.Running, target: str) -> None:
    async with browser(running) as client:
        answer = await log_in(client, "desk_officer", next_url=target)
        assert answer.status_code == 303
        location = urlsplit(answer.headers["location"])
        assert not location.scheme and not location.netloc and location.path.startswith("/"), location
        assert not location.path.startswith(("//", "/\\")), location


def test_safe_next_keeps_local_paths_only() -> None:
    assert safe_next("/ho-so/000.00.00.H56-260101-0001?x=1") == "/ho-so/000.00.00.H56-260101-0001?x=1"
    for bad in ("", None, "ho-so", "//a.vn", "/\\a.vn", "https://a.vn/x", "/x\r\nSet-Cookie: a=b"):
        assert safe_next(bad) == "/"


async def test_log_in_returns_to_the_page_that_asked_for_it(running: suites.Running) -> None:
    async with browser(running) as client:
        asked = await client.get("/mot-cua", params={"view": "overdue"})
        assert asked.status_code == 303
        login_url = asked.headers["location"]
        assert login_url.startswith("/dang-nhap?next=")
        form = await client.get(login_url)
        assert 'name="next" value="/mot-cua?view=overdue"' in form.text
        answer = await log_in(client, "desk_officer", next_url="/mot-cua?view=overdue")
        assert answer.headers["location"] == "/mot-cua?view=overdue"


async def test_an_idle_session_ends(running: suites.Running) -> None:
    async with browser(running) as client:
        await log_in(client, "desk_officer")
        assert (await client.get("/mot-cua")).status_code == 200
        with clock.shifted(clock.now() + timedelta(minutes=31)):
            idle = await client.get("/mot-cua")
            assert idle.status_code == 303 and idle.headers["location"].startswith("/dang-nhap")
            page = await client.get("/")
            assert T("Log in") in page.text and "Lê Văn Tiếp" not in page.text


async def test_a_page_of_another_role_is_refused_in_words(running: suites.Running) -> None:
    async with browser(running) as client:
        await log_in(client, "specialist")
        refused = await client.get("/van-thu")
        assert refused.status_code == 403 and T("This page is for another role.") in refused.text


async def test_public_look_up_keeps_the_input_and_does_not_say_which_part_was_wrong(
    running: suites.Running,
) -> None:
    async with browser(running) as client:
        missing = await client.get("/tra-cuu", params={"code": "000.00.00.H56-260101-0001", "secret": "WRONGSECRET"})
        assert missing.status_code == 404
        assert T("No dossier matches this code and look-up code. Check both on your receipt.") in missing.text
        assert 'value="000.00.00.H56-260101-0001"' in missing.text and 'value="WRONGSECRET"' in missing.text
        garbage = await client.get("/tra-cuu", params={"code": "<script>", "secret": "x"})
        assert garbage.status_code == 400 and "<script>" not in garbage.text


async def test_public_look_up_is_rate_limited(running: suites.Running) -> None:
    """The gateway's one look-up rule, per visitor (the console names them in X-Forwarded-For),
    stops guessing, and the console says so in words; another visitor is still served."""
    limiter = None
    guesser, neighbour = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "203.0.113.8"}
    async with browser(running) as client:
        statuses = []
        for _ in range(40):
            r = await client.get(
                "/tra-cuu", params={"code": "000.00.00.H56-260101-0002", "secret": "NOPE"}, headers=guesser
            )
            statuses.append(r.status_code)
            if r.status_code == 429:
                limiter = r
                break
        assert limiter is not None, statuses
        assert T("Too many look-ups from your connection; wait a minute and try again.") in limiter.text
        other = await client.get(
            "/tra-cuu", params={"code": "000.00.00.H56-260101-0002", "secret": "NOPE"}, headers=neighbour
        )
        assert other.status_code == 404


async def test_due_date_page_answers_in_vietnamese_dates(running: suites.Running) -> None:
    async with browser(running) as client:
        page = await client.get("/han-giai-quyet", params={"procedure": "1.001193", "received": "13/02/2026 10:00"})
        assert page.status_code == 200
        # 8 working hours from Friday 13/02/2026 10:00, before Tết (16–20/02): Monday 23/02 10:00
        assert "23/02/2026 10:00" in page.text, page.text


async def test_a_refused_action_shows_why_on_its_form_with_the_input_kept(running: suites.Running) -> None:
    async with browser(running) as client:
        await log_in(client, "desk_officer.41")  # the ward receives birth registrations
        form = await client.get("/mot-cua/tiep-nhan", params={"procedure": "1.001193"})
        created = await client.post(
            "/mot-cua/tiep-nhan",
            data={
                "csrf_token": csrf_of(form),
                "procedure": "1.001193",
                "full_name": "Trần Văn Bình",
                "have-1": "1",
                "have-2": "1",
            },
        )
        assert created.status_code == 303, re.findall(r"role=\"alert\"[^>]*>([^<]*)", created.text)
        code = created.headers["location"].split("/ho-so/")[1].split("?")[0]
        page = await client.get(f"/ho-so/{code}")
        assert T("Accepted") in page.text
        # refusing an accepted dossier is not allowed: intake says 409; the form says so, keeps the text
        action = await client.get(f"/ho-so/{code}/hanh-dong/refuse")
        refused = await client.post(
            f"/ho-so/{code}/hanh-dong/refuse", data={"csrf_token": csrf_of(action), "reasons": "Thiếu giấy chứng sinh"}
        )
        assert refused.status_code == 409
        assert 'role="alert"' in refused.text and "Thiếu giấy chứng sinh" in refused.text


def _standalone(tmp_path: Path, **overrides: Any) -> Any:
    from fastapi.testclient import TestClient

    from services.console.app import create_app
    from services.console.config import get_settings

    settings = get_settings(var_dir=tmp_path, port=0, log_json=False, **overrides)
    return TestClient(create_app(settings), raise_server_exceptions=False, follow_redirects=False)


def test_the_api_away_gives_a_readable_page_and_no_stack_trace(tmp_path: Path) -> None:
    with _standalone(tmp_path, gateway_url="http://127.0.0.1:9") as client:
        page = client.get("/tra-cuu", params={"code": "000.00.00.H56-260101-0001", "secret": "ABC"})
        assert page.status_code == 502
        assert T("The system is not answering; try again shortly.") in page.text
        assert "Traceback" not in page.text and "httpx" not in page.text and "127.0.0.1:9" not in page.text


def test_a_fault_of_the_console_is_a_page_without_a_stack_trace(tmp_path: Path, monkeypatch: Any) -> None:
    from services.console.api import Api

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(Api, "procedures", broken)
    with _standalone(tmp_path) as client:
        page = client.get("/han-giai-quyet", params={"q": "khai sinh"})
        assert page.status_code == 500
        assert T("Something went wrong on our side; it was logged.") in page.text
        assert "Traceback" not in page.text and "secret internals" not in page.text


def test_cookies_are_secure_over_https(tmp_path: Path) -> None:
    from services.console.config import get_settings

    assert get_settings(public_base_url="https://dichvucong.thanhhoa.gov.vn").secure_cookies
    assert get_settings(environment="production", public_base_url="http://x", demo=False).secure_cookies
    assert not get_settings(public_base_url="http://127.0.0.1:8000").secure_cookies
    with _standalone(tmp_path, public_base_url="https://dichvucong.thanhhoa.gov.vn") as client:
        cookie = client.get("/").headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie


async def test_admin_adds_and_removes_a_calendar_swap(running: suites.Running) -> None:
    async with browser(running) as client:
        await log_in(client, "admin")
        page = await client.get("/quan-tri/lich", params={"year": 2027})
        assert page.status_code == 200 and T("Working calendar") in page.text and "Tết Dương lịch" in page.text
        refused = await client.post("/quan-tri/lich", data={"csrf_token": csrf_of(page), "day": "09/01/2027"})
        assert refused.status_code == 400 and 'value="09/01/2027"' in refused.text
        saved = await client.post(
            "/quan-tri/lich",
            data={"csrf_token": csrf_of(page), "day": "09/01/2027", "working": "1", "reason": "Thông báo hoán đổi"},
        )
        assert saved.status_code == 303
        page = await client.get("/quan-tri/lich", params={"year": 2027})
        assert "Thông báo hoán đổi" in page.text and T("Saved: {day}.").format(day="09/01/2027") in page.text
        removed = await client.post("/quan-tri/lich/2027-01-09/xoa", data={"csrf_token": csrf_of(page)})
        assert removed.status_code == 303
        assert "Thông báo hoán đổi" not in (await client.get("/quan-tri/lich", params={"year": 2027})).text


async def test_admin_creates_and_locks_an_account(running: suites.Running) -> None:
    async with browser(running) as client:
        await log_in(client, "admin")
        page = await client.get("/quan-tri/nguoi-dung")
        assert page.status_code == 200 and "desk_officer" in page.text
        account = {
            "csrf_token": csrf_of(page),
            "username": "mot_cua_2",
            "full_name": "Ngô Thị Tiếp Nhận",
            "roles": ["desk_officer"],
            "agency": "000.00.41.H56",
            "clearance": "0",
        }
        weak = await client.post("/quan-tri/nguoi-dung", data={**account, "password": "ngan"})
        assert weak.status_code in (400, 422) and 'role="alert"' in weak.text
        assert 'value="Ngô Thị Tiếp Nhận"' in weak.text and "ngan" not in weak.text.split('id="password"')[1][:80]
        made = await client.post("/quan-tri/nguoi-dung", data={**account, "password": "mat-khau-du-dai-2026"})
        assert made.status_code == 303, re.findall(r'role="alert"[^>]*>([^<]*)', made.text)
        listed = await client.get("/quan-tri/nguoi-dung", params={"agency": "000.00.41.H56"})
        assert "Ngô Thị Tiếp Nhận" in listed.text
        locked = await client.post("/quan-tri/nguoi-dung/mot_cua_2/khoa", data={"csrf_token": csrf_of(listed)})
        assert locked.status_code == 303
    async with browser(running) as someone:
        form = await someone.get("/dang-nhap")
        refused = await someone.post(
            "/dang-nhap",
            data={"csrf_token": csrf_of(form), "username": "mot_cua_2", "password": "mat-khau-du-dai-2026"},
        )
        assert refused.status_code == 400


async def test_admin_sees_procedures_and_their_versions(running: suites.Running) -> None:
    async with browser(running) as client:
        await log_in(client, "admin")
        listed = await client.get("/quan-tri/thu-tuc", params={"q": "khai sinh"})
        assert listed.status_code == 200 and "1.001193" in listed.text and "Hộ tịch" in listed.text
        versions = await client.get("/quan-tri/thu-tuc/1.001193")
        assert versions.status_code == 200 and T("Versions") in versions.text and "01/07/2025" in versions.text
        assert (await client.get("/quan-tri/thu-tuc/9.999999")).status_code == 404


async def test_province_dashboard_shows_every_agency_under_the_admin(running: suites.Running) -> None:
    async with running.client() as api:
        agencies = (await api.get("/api/intake/agencies", params={"under": "000.00.00.H56"})).json()
    agencies = agencies["items"] if isinstance(agencies, dict) else agencies
    children = [a for a in agencies if a.get("parent_code") == "000.00.00.H56" and a.get("active", True)]
    assert len(children) > 1
    async with browser(running) as client:
        await log_in(client, "admin")
        page = await client.get("/tong-hop")
        assert page.status_code == 200
        text = page.text
        for agency in children:
            assert agency["name"] in text or str(escape(agency["name"])) in text, agency["name"]


async def test_admin_adds_a_procedure_version_and_a_refusal_keeps_the_form(running: suites.Running) -> None:
    async with browser(running) as client:
        await log_in(client, "admin")
        page = await client.get("/quan-tri/thu-tuc/1.001193")
        assert T("Add a version") in page.text
        form = {
            "csrf_token": csrf_of(page),
            "effective_from": "01/01/2030",
            "name": "Đăng ký khai sinh (sửa đổi)",
            "sector": "Hộ tịch",
            "receiving_agencies": "000.00.41.H56, 999.99.99.H56",
            "deciding_agency": "000.00.41.H56",
            "processing_hours": "4",
            "cutoff": "",
            "fee_vnd": "0",
            "online_level": "full",
        }
        refused = await client.post("/quan-tri/thu-tuc/1.001193", data=form)
        assert refused.status_code == 422
        said = re.search(r'id="form-error">([^<]*)<', refused.text)
        assert said and "999.99.99.H56" in said.group(1), refused.text[:3000]
        assert 'value="Đăng ký khai sinh (sửa đổi)"' in refused.text
        added = await client.post("/quan-tri/thu-tuc/1.001193", data={**form, "receiving_agencies": "000.00.41.H56"})
        assert added.status_code == 303, added.text[:500]
        shown = await client.get("/quan-tri/thu-tuc/1.001193")
        assert "01/01/2030" in shown.text and "4 giờ làm việc" in shown.text
        assert "Đã thêm phiên bản" in shown.text
    async with running.client() as api:
        versions = (await api.get("/api/intake/procedures/1.001193")).json()["versions"]
    newest = max(versions, key=lambda x: x["version"])
    # a form without component rows keeps the components of the version in force
    assert newest["effective_from"] == "2030-01-01" and newest["components"], newest
    assert newest["components"] == versions[-2]["components"]


async def test_admin_edits_a_procedures_components_and_a_refusal_keeps_them(running: suites.Running) -> None:
    async with running.client() as api:
        before = (await api.get("/api/intake/procedures/1.001193")).json()
    first = before["current"]["components"][0]
    async with browser(running) as client:
        await log_in(client, "admin")
        page = await client.get("/quan-tri/thu-tuc/1.001193")
        assert f'value="{first["name"]}"' in page.text
        fields = dict(re.findall(r'<input id="([a-z_]+)" name="[a-z_]+" value="([^"]*)"', page.text))
        rows = len(before["current"]["components"])
        form: dict[str, Any] = {
            **{k: html.unescape(v) for k, v in fields.items()},
            "csrf_token": csrf_of(page),
            "effective_from": "01/06/2032",
            "online_level": before["current"]["online_level"],
            "component-1-name": "Tờ khai đăng ký khai sinh (mẫu mới)",
            "component-1-kind": "copy",
            "component-1-copies": "abc",
            "component-1-required": "1",
        }
        for i in range(2, rows + 3):
            form[f"component-{i}-name"] = ""  # every other component dropped
        form[f"component-{rows + 1}-name"] = "Giấy xác nhận cư trú"
        form[f"component-{rows + 1}-copies"] = "2"
        refused = await client.post("/quan-tri/thu-tuc/1.001193", data=form)
        assert refused.status_code == 422, refused.text[:2000]
        said = re.search(r'id="form-error">([^<]*)<', refused.text)
        assert said and T("Number of copies") in said.group(1), refused.text[:3000]
        assert 'value="Tờ khai đăng ký khai sinh (mẫu mới)"' in refused.text and 'value="abc"' in refused.text
        assert 'value="Giấy xác nhận cư trú"' in refused.text
        added = await client.post("/quan-tri/thu-tuc/1.001193", data={**form, "component-1-copies": "3"})
        assert added.status_code == 303, added.text[:2000]
    async with running.client() as api:
        versions = (await api.get("/api/intake/procedures/1.001193")).json()["versions"]
    newest = max(versions, key=lambda x: x["version"])
    assert newest["effective_from"] == "2032-06-01"
    assert newest["components"] == [
        {
            "no": 1,
            "name": "Tờ khai đăng ký khai sinh (mẫu mới)",
            "copies": 3,
            "original_required": False,
            "required": True,
        },
        {"no": 2, "name": "Giấy xác nhận cư trú", "copies": 2, "original_required": True, "required": False},
    ]


async def test_leader_assigns_an_incoming_document_and_a_refusal_keeps_the_form(running: suites.Running) -> None:
    async with running.client() as api:
        r = await api.post(
            "/api/document/documents/incoming",
            headers=await running.auth("clerk.41"),
            json={
                "agency": "000.00.41.H56",
                "type_key": "CV",
                "subject": "Đề nghị phối hợp rà soát hộ tịch",
                "code": "27/STP-HT",
                "issuing_organ": {"organ_id": "000.00.00.H56", "organ_name": "Sở Tư pháp"},
            },
        )
        assert r.status_code == 201, r.text
        doc_id = r.json()["id"]
    async with browser(running) as client:
        await log_in(client, "leader.41")
        page = await client.get("/ky-duyet")
        assert T("Incoming documents waiting for assignment") in page.text
        assert "Đề nghị phối hợp rà soát hộ tịch" in page.text
        # the picker offers the ward's specialist by name, and nobody from another agency
        assert "Nguyễn Văn Hộ (specialist.41)" in page.text
        assert "specialist.11" not in page.text and "Trần Thị Chuyên" not in page.text
        # someone not on the list (another agency's specialist) is refused before the API is asked
        stranger = {"csrf_token": csrf_of(page), "assignee": "specialist.11", "due_date": ""}
        refused = await client.post(f"/ky-duyet/giao/{doc_id}", data=stranger)
        assert refused.status_code == 400
        assert T("Choose who processes it from the list of your agency's specialists.") in refused.text
        form = {"csrf_token": csrf_of(page), "assignee": "specialist.41", "due_date": "01/01/2020"}
        refused = await client.post(f"/ky-duyet/giao/{doc_id}", data=form)
        assert 400 <= refused.status_code < 500
        said = re.search(r'id="form-error">([^<]*)<', refused.text)
        assert said and "past" in said.group(1), refused.text[:3000]
        assert '<option value="specialist.41" selected>' in refused.text and 'value="01/01/2020"' in refused.text
        done = await client.post(f"/ky-duyet/giao/{doc_id}", data={**form, "due_date": "31/12/2099"})
        assert done.status_code == 303, done.text[:2000]
        after = await client.get("/ky-duyet")
        assert T("Assigned to {name}, due {day}.").format(name="Nguyễn Văn Hộ", day="31/12/2099") in after.text
        assert "Đề nghị phối hợp rà soát hộ tịch" not in after.text
    async with running.client() as api:
        found = await api.get(f"/api/document/documents/{doc_id}/assignments", headers=await running.auth("leader.41"))
    [assignment] = found.json()["items"]
    assert (assignment["assignee"], assignment["assignee_name"], assignment["role"]) == (
        "specialist.41",
        "Nguyễn Văn Hộ",
        "main",
    )
