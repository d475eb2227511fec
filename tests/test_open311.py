"""Open311 GeoReport v2 (/open311/v2): services from the taxonomy, POST through the normal intake, GET with its
filters, JSON and XML, jurisdiction_id, Open311 error bodies. Fake triager (conftest)."""

from __future__ import annotations

from datetime import timedelta
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import func, select

from triage.queue.models import Complaint

FUMES = "石潭路88号楼下烧烤店油烟直排，熏得无法开窗。"
GARBAGE = "清湖村市场门口垃圾三天没人清运，苍蝇很多。"


def _post(client, fmt="json", **fields):
    data = {"service_code": "air.cooking_fumes", "description": FUMES, "address_string": "石潭路88号", **fields}
    return client.post(f"/open311/v2/requests.{fmt}", data={k: v for k, v in data.items() if v is not None})


def _count(app) -> int:
    with app.state.session_factory() as s:
        return s.scalar(select(func.count()).select_from(Complaint))


def test_services_from_the_taxonomy_json_and_xml(client):
    services = client.get("/open311/v2/services.json").json()
    by_code = {s["service_code"]: s for s in services}
    assert by_code["noise.construction"]["service_name"] == "建筑施工噪声"
    assert by_code["noise.construction"]["group"] == "noise"
    assert by_code["air.cooking_fumes"]["metadata"] is False and by_code["air.cooking_fumes"]["type"] == "realtime"
    assert not any(s["group"] == "not_environmental" for s in services)
    xml = client.get("/open311/v2/services.xml")
    assert xml.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(xml.content)
    assert root.tag == "services" and len(root) == len(services)
    assert {e.findtext("service_code") for e in root} == set(by_code)
    assert client.get("/open311/v2/services/noise.construction.json").json()["service_code"] == "noise.construction"
    assert client.get("/open311/v2/services/nope.json").status_code == 404


def test_post_creates_a_complaint_through_the_intake(client, app, clock):
    r = _post(client, requested_datetime="2026-11-02T08:15:00+08:00", first_name="小明", last_name="王",
              phone="13800000000", lat="23.2123", long="113.2701")
    assert r.status_code == 201, r.text
    [ack] = r.json()
    cid = int(ack["service_request_id"])
    assert "已受理" in ack["service_notice"]
    detail = client.get(f"/api/complaints/{cid}").json()
    c = detail["complaint"]
    assert c["source"] == "open311" and c["text"] == FUMES and c["status"] == "triaged"
    assert c["address"].startswith("石潭路88号") and "23.212300,113.270100" in c["address"]
    assert c["contact"] == "王 小明；13800000000"
    assert c["occurred_at"].startswith("2026-11-02T00:15:00")  # requested_datetime, stored in UTC
    assert [e["kind"] for e in detail["events"]][:3] == ["intake", "triage", "open311"]

    [got] = client.get(f"/open311/v2/requests/{cid}.json").json()
    assert got["service_request_id"] == str(cid) and got["status"] == "open"
    assert got["service_code"] == "air.cooking_fumes" and got["service_name"] == "餐饮油烟"
    assert got["description"] == FUMES and got["agency_responsible"] is None  # not yet assigned
    assert got["requested_datetime"].endswith("+08:00") and got["expected_datetime"]
    # What the POST sent and said is what a later GET gives back (both were null).
    assert (got["lat"], got["long"]) == (23.2123, 113.2701) and got["service_notice"] == ack["service_notice"]

    xml = _post(client, fmt="xml", description=GARBAGE, service_code="solid_waste.household")
    assert xml.status_code == 201
    root = ET.fromstring(xml.content)
    assert root.tag == "service_requests" and root[0].findtext("service_request_id")


def test_requested_datetime_as_the_platform_writes_it(client):
    r = _post(client, requested_datetime="2026年11月1日 20时30分")
    assert r.status_code == 201, r.text
    cid = r.json()[0]["service_request_id"]
    assert client.get(f"/api/complaints/{cid}").json()["complaint"]["occurred_at"].startswith("2026-11-01T12:30")


def test_get_after_assignment_and_closure(client, clock):
    cid = int(_post(client).json()[0]["service_request_id"])
    a = client.post(f"/api/complaints/{cid}/assign").json()
    [got] = client.get(f"/open311/v2/requests/{cid}.json").json()
    assert got["agency_responsible"] == "测试区urban_management"
    assert got["expected_datetime"] and got["status_notes"] == "办理中"
    from datetime import datetime

    assert datetime.fromisoformat(got["expected_datetime"]) == datetime.fromisoformat(a["deadline"])
    clock.now += timedelta(days=1)
    client.post(f"/api/complaints/{cid}/close", json={"reply": "已责令安装油烟净化器。", "result": "属实"})
    [got] = client.get(f"/open311/v2/requests/{cid}.json").json()
    assert got["status"] == "closed" and "属实" in got["status_notes"]
    assert got["updated_datetime"] > got["requested_datetime"]
    xml = ET.fromstring(client.get(f"/open311/v2/requests/{cid}.xml").content)
    assert xml[0].findtext("status") == "closed" and xml[0].findtext("agency_responsible") == "测试区urban_management"


def test_get_requests_filters(client, clock):
    first = int(_post(client).json()[0]["service_request_id"])
    clock.now += timedelta(days=2)
    second = int(_post(client, description=GARBAGE, service_code="solid_waste.household").json()[0]
                 ["service_request_id"])
    client.post(f"/api/complaints/{second}/assign")
    client.post(f"/api/complaints/{second}/close", json={"reply": "已清运。", "result": "属实"})

    def ids(query: str) -> list[int]:
        r = client.get(f"/open311/v2/requests.json{query}")
        assert r.status_code == 200, r.text
        return [int(x["service_request_id"]) for x in r.json()]

    assert ids("") == [second, first]  # newest first
    assert ids("?status=open") == [first] and ids("?status=closed") == [second]
    assert ids("?status=open,closed") == [second, first]
    assert ids(f"?service_request_id={first},{second}") == [second, first]
    assert ids(f"?service_request_id={first}") == [first]
    assert ids("?service_code=solid_waste.household") == [second]
    assert ids("?start_date=2026-11-03T00:00:00%2B08:00") == [second]
    assert ids("?end_date=2026-11-03T00:00:00%2B08:00") == [first]
    assert ids("?start_date=2026-12-01T00:00:00%2B08:00&end_date=2026-12-02T00:00:00%2B08:00") == []
    xml = ET.fromstring(client.get("/open311/v2/requests.xml?status=closed").content)
    assert [e.findtext("service_request_id") for e in xml] == [str(second)]


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_jurisdiction_id(client, app, fmt):
    assert client.get(f"/open311/v2/services.{fmt}?jurisdiction_id=gz_baiyun_junhe").status_code == 200
    for jid in ("nowhere", "hk_longhua"):  # unknown; known to routing.yaml but served by another deployment
        r = client.get(f"/open311/v2/services.{fmt}?jurisdiction_id={jid}")
        assert r.status_code == 404
        if fmt == "json":
            [err] = r.json()
            assert err["code"] == 404 and jid in err["description"]
        else:
            root = ET.fromstring(r.content)
            assert root.tag == "errors" and root[0].findtext("code") == "404"
    before = _count(app)
    assert _post(client, fmt=fmt, jurisdiction_id="nowhere").status_code == 404
    assert _count(app) == before
    assert _post(client, fmt=fmt, jurisdiction_id="gz_baiyun_junhe").status_code == 201
    assert client.get(f"/open311/v2/requests.{fmt}?jurisdiction_id=nowhere").status_code == 404


@pytest.mark.parametrize("fields,reason", [
    ({"service_code": None}, "service_code"),
    ({"service_code": "noise.made_up"}, "service_code"),
    ({"service_code": "not_environmental"}, "service_code"),
    ({"description": "   "}, "description"),
    ({"address_string": None}, "location"),
    ({"address_string": None, "lat": "23.1"}, "lat"),
    ({"lat": "91", "long": "113"}, "lat"),
    ({"lat": "nan", "long": "113"}, "lat"),
    ({"requested_datetime": "2026-02-30T10:00:00"}, "requested_datetime"),
    ({"requested_datetime": "2099-01-01T10:00:00+08:00"}, "requested_datetime must not be"),  # not occurred_at
    ({"description": "x" * 20_001}, "20000"),
])
def test_bad_posts_are_400_with_an_open311_error_and_store_nothing(client, app, fields, reason):
    before = _count(app)
    r = _post(client, **fields)
    assert r.status_code == 400, r.text
    [err] = r.json()
    assert err["code"] == 400 and reason in err["description"]
    assert _count(app) == before


def test_bad_gets_and_formats(client):
    assert client.get("/open311/v2/requests.json?status=pending").status_code == 400
    assert client.get("/open311/v2/requests.json?service_request_id=1;DROP").status_code == 400
    assert client.get("/open311/v2/requests.json?start_date=yesterday").status_code == 400
    assert client.get("/open311/v2/requests.json?start_date=2026-11-05T00:00:00&end_date=2026-11-01T00:00:00"
                      ).status_code == 400
    assert client.get("/open311/v2/requests/abc.json").status_code == 404
    assert client.get("/open311/v2/requests/99999.xml").status_code == 404
    r = client.get("/open311/v2/services.csv")
    assert r.status_code == 404 and r.json()[0]["code"] == 404
    r = client.post("/open311/v2/requests.json", content=b"<xml/>", headers={"content-type": "application/xml"})
    assert r.status_code == 400
    j = client.post("/open311/v2/requests.json", json={"service_code": "air.cooking_fumes", "description": FUMES,
                                                       "address_string": "石潭路88号"})
    assert j.status_code == 201  # JSON bodies are accepted as a convenience


def test_an_api_key_in_the_address_is_not_written_to_the_access_log(caplog):
    """GeoReport clients send ?api_key=…: uvicorn's access line wrote the 720-hour token out whole."""
    import logging

    from triage.api.app import configure_logging

    configure_logging("INFO")
    access = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET",
                    "/open311/v2/requests.json?api_key=trg_LsUk13n82p04Z9&jurisdiction_id=junhe", "1.1", 200)
    line = caplog.records[-1].getMessage()
    assert "trg_LsUk13n82p04Z9" not in line
    assert "/open311/v2/requests.json?api_key=***&jurisdiction_id=junhe" in line
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):  # the name URL-encoded is still the key
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET",
                    "/open311/v2/requests.json?status=open&api%5Fkey=trg_Secret2&%61pi_key=trg_Secret3", "1.1", 200)
    line = caplog.records[-1].getMessage()
    assert "trg_Secret" not in line and "status=open" in line
    configure_logging("INFO")  # configured twice (one app per test): one filter, not two
    assert sum(type(f).__name__ == "RedactSecrets" for f in access.filters) == 1
