"""The whole lifecycle through the HTTP API (CONTRACT.md), with fake triager, drafter and case sink."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest
from conftest import BJ, bj
from fastapi.testclient import TestClient

FUMES = "市民来电反映：白云区石井街石潭路88号楼下烧烤店油烟直排，熏得无法开窗，请城管核实处理！"
NOISE = "市民来电反映：白云区均禾街清湖村新市场旁工地施工噪音扰民，请核实处理。"


def post(client, path, json=None, actor="调度员甲", expect=200):
    r = client.post(path, json=json, headers={"X-Actor": quote(actor)})
    assert r.status_code == expect, r.text
    return r.json()


def local_date(iso: str) -> str:
    from datetime import datetime

    return datetime.fromisoformat(iso).astimezone(BJ).date().isoformat()


def test_lifecycle_intake_accept_draft_close(client, clock, sink):
    created = post(client, "/api/complaints", {"text": FUMES, "address": "石潭路88号", "contact": "[电话]",
                                                "external_id": "GZ-20261102-0001"}, expect=201)
    assert created["status"] == "triaged" and created["duplicate_of"] is None and created["relapse_of"] is None
    s = created["suggestion"]
    for key in ("pollution_type", "subtype", "unit_type", "unit_name", "confidence", "alternatives",
                "similar_cases", "regulations"):
        assert key in s
    assert (s["pollution_type"], s["unit_type"]) == ("air", "urban_management")
    cid = created["id"]

    assignment = post(client, f"/api/complaints/{cid}/assign")  # no body: accept the suggestion
    assert assignment["accepted_suggestion"] is True and assignment["assigned_by"] == "调度员甲"
    assert local_date(assignment["deadline"]) == "2026-11-09"  # Monday + 5 working days

    clock.now += timedelta(days=1)
    draft = post(client, f"/api/complaints/{cid}/draft", {"findings": "现场核查，该店未安装油烟净化器", "result": "属实"},
                 actor="石井城管中队")
    assert draft["generator"] == "template" and draft["prompt_version"] == "reply-test-1"
    assert draft["citations"] == [{"law": "中华人民共和国生态环境法典", "article": "第五百七十二条", "in_force": True}]
    assert set(draft) >= {"text", "citations", "generator", "prompt_version", "quality", "notice"}

    closed = post(client, f"/api/complaints/{cid}/close", {"reply": draft["text"], "result": "属实"})
    assert closed["complaint"]["status"] == "closed" and closed["complaint"]["result"] == "属实"
    assert closed["drafts"][0]["approved"] is True
    assert sink and sink[0]["order_id"] == "GZ-20261102-0001" and sink[0]["reply"] == draft["text"]

    detail = client.get(f"/api/complaints/{cid}").json()
    assert [e["kind"] for e in detail["events"]] == ["intake", "triage", "assign", "draft", "close", "case_learned"]
    assert detail["assignment"]["end_reason"] == "closed"
    assert detail["suggestion"]["versions"] == {"model": "fake-1"}
    close_ev = detail["events"][4]
    assert (close_ev["actor"], close_ev["from_status"], close_ev["to_status"]) == ("调度员甲", "assigned", "closed")
    assert close_ev["data"]["on_time"] is True


def test_return_and_reassign_with_override(client):
    cid = post(client, "/api/complaints", {"text": FUMES}, expect=201)["id"]
    post(client, f"/api/complaints/{cid}/assign")
    returned = post(client, f"/api/complaints/{cid}/return", {"reason": "该店位于商场内，属市场监管职责"}, actor="城管局")
    assert returned["complaint"]["status"] == "returned" and returned["complaint"]["return_count"] == 1
    ev = returned["events"][-1]
    assert (ev["kind"], ev["actor"], ev["reason"]) == ("return", "城管局", "该店位于商场内，属市场监管职责")
    other = post(client, "/api/complaints", {"text": NOISE}, expect=201)["id"]
    queue = client.get("/api/queue").json()
    assert [i["id"] for i in queue] == [cid, other] and "退单" in queue[0]["priority_reason"]
    again = post(client, f"/api/complaints/{cid}/assign", {"unit_type": "market_regulation", "note": "改派市场监管"})
    assert again["unit_type"] == "market_regulation" and again["unit_name"] == "测试区market_regulation"
    assert again["accepted_suggestion"] is False and again["suggested_unit_type"] == "urban_management"
    assert again["reason"] == "reassign"
    detail = client.get(f"/api/complaints/{cid}").json()
    assert len(detail["assignments"]) == 2 and detail["assignments"][0]["end_reason"] == "returned"
    assert detail["complaint"]["unit_type"] == "market_regulation"


def test_extension_across_national_day(client, clock):
    clock.now = bj(2026, 9, 28, 10)
    cid = post(client, "/api/complaints", {"text": NOISE, "occurred_at": "2026-09-27T15:00:00"}, expect=201)["id"]
    a = post(client, f"/api/complaints/{cid}/assign")
    assert local_date(a["deadline"]) == "2026-10-10"  # make-up Saturday after the holiday
    assert local_date(a["contact_deadline"]) == "2026-09-29"
    clock.now = bj(2026, 9, 30, 16)
    ext = post(client, f"/api/complaints/{cid}/extend", {"reason": "施工单位国庆停工，节后复查", "working_days": 3},
               actor="城管局")
    assert local_date(ext["deadline"]) == "2026-10-14" and ext["extensions"] == 1  # 10-12, 10-13, 10-14
    ext2 = post(client, f"/api/complaints/{cid}/extend", {"reason": "等待检测报告", "deadline": "2026-10-20"})
    assert local_date(ext2["deadline"]) == "2026-10-20" and ext2["extensions"] == 2
    r = client.post(f"/api/complaints/{cid}/extend", json={"reason": "再延", "deadline": "2026-10-19"})
    assert r.status_code == 409  # third extension is over the limit (checked before the date)
    detail = client.get(f"/api/complaints/{cid}").json()
    assert detail["complaint"]["extension_count"] == 2
    ev = [e for e in detail["events"] if e["kind"] == "extend"]
    assert ev[0]["reason"] == "施工单位国庆停工，节后复查" and local_date(ev[0]["data"]["old_deadline"]) == "2026-10-10"


def test_deadline_in_2027_shows_note(client, clock):
    clock.now = bj(2026, 12, 28, 9)
    cid = post(client, "/api/complaints", {"text": FUMES}, expect=201)["id"]
    a = post(client, f"/api/complaints/{cid}/assign")
    assert local_date(a["deadline"]) == "2027-01-05"
    assert "calendar not yet published" in a["deadline_note"]
    item = next(i for i in client.get("/api/queue").json() if i["id"] == cid)
    assert "2027" in item["deadline_note"]


def test_merge_duplicates_and_children_close_with_parent(client, sink):
    p = post(client, "/api/complaints", {"text": FUMES, "address": "白云区石井街石潭路88号"}, expect=201)
    c = post(client, "/api/complaints", {"text": FUMES.replace("来电", "微信"), "address": "石潭路88号"}, expect=201)
    assert c["duplicate_of"] == p["id"]
    post(client, f"/api/complaints/{p['id']}/assign")
    merged = post(client, f"/api/complaints/{c['id']}/merge", {"parent_id": p["id"], "reason": "同一店铺油烟"})
    assert merged["complaint"]["status"] == "merged" and merged["complaint"]["merged_into"] == p["id"]
    assert client.get(f"/api/complaints/{p['id']}").json()["children"] == [c["id"]]
    assert all(i["id"] != c["id"] for i in client.get("/api/queue").json())  # children leave the queue
    post(client, f"/api/complaints/{p['id']}/close", {"reply": "已责令该店安装油烟净化设施。", "result": "属实"})
    child = client.get(f"/api/complaints/{c['id']}").json()
    assert child["complaint"]["status"] == "closed" and child["complaint"]["result"] == "属实"
    assert len(child["drafts"]) == 1 and child["drafts"][0]["text"] == "已责令该店安装油烟净化设施。"
    assert child["events"][-1]["kind"] == "close" and child["events"][-1]["data"]["parent_id"] == p["id"]
    assert len(sink) == 1


def test_relapse_listed(client, clock):
    clock.now = bj(2026, 10, 8, 9)
    first = post(client, "/api/complaints", {"text": FUMES, "address": "白云区石井街石潭路88号"}, expect=201)["id"]
    post(client, f"/api/complaints/{first}/assign")
    clock.now = bj(2026, 10, 12, 9)
    post(client, f"/api/complaints/{first}/close", {"reply": "已整改。", "result": "属实"})
    clock.now = bj(2026, 11, 3, 9)
    again = post(client, "/api/complaints", {"text": "市民来电反映：石潭路88号烧烤店整改后又开始油烟直排。",
                                             "address": "白云区石井街石潭路88号"}, expect=201)
    assert again["relapse_of"] == first and again["duplicate_of"] is None
    rel = client.get("/api/relapses", params={"from": "2026-11-01", "to": "2026-11-30"}).json()
    assert [(r["id"], r["relapse_of"], r["days_since_close"], r["relapse_of_result"]) for r in rel] == [
        (again["id"], first, 22, "属实")]
    assert client.get("/api/relapses", params={"from": "2026-10-01", "to": "2026-10-31"}).json() == []
    # The first case is reopened and closed again later: the relapse still refers to the closure it followed.
    clock.now = bj(2026, 11, 4, 9)
    post(client, f"/api/complaints/{first}/reopen", {"reason": "油烟依旧"})
    clock.now = bj(2026, 11, 6, 9)
    post(client, f"/api/complaints/{first}/close", {"reply": "再次整改。", "result": "部分属实"})
    rel = client.get("/api/relapses", params={"from": "2026-11-01", "to": "2026-11-30"}).json()
    assert (rel[0]["days_since_close"], rel[0]["relapse_of_result"]) == (22, "属实")
    assert local_date(rel[0]["relapse_of_closed_at"]) == "2026-10-12"
    assert client.get("/api/relapses", params={"from": "2026-13-01"}).status_code == 422


def test_illegal_transitions_409_and_nothing_changes(client):
    cid = post(client, "/api/complaints", {"text": FUMES}, expect=201)["id"]
    before = client.get(f"/api/complaints/{cid}").json()
    for path, body in [("close", {"reply": "已处理", "result": "属实"}), ("return", {"reason": "x"}),
                       ("extend", {"reason": "x", "working_days": 1}), ("reopen", {"reason": "x"})]:
        r = client.post(f"/api/complaints/{cid}/{path}", json=body)
        assert r.status_code == 409, (path, r.text)
        assert "/" in r.json()["detail"] and r.json()["status"] == "triaged"
        assert client.get(f"/api/complaints/{cid}").json() == before
    post(client, f"/api/complaints/{cid}/assign")
    r = client.post(f"/api/complaints/{cid}/assign", json={})
    assert r.status_code == 409  # assigning twice
    post(client, f"/api/complaints/{cid}/close", {"reply": "已处理。", "result": "不属实"})
    closed = client.get(f"/api/complaints/{cid}").json()
    assert client.post(f"/api/complaints/{cid}/close", json={"reply": "再办结", "result": "属实"}).status_code == 409
    assert client.post(f"/api/complaints/{cid}/draft", json={}).status_code == 409
    assert client.get(f"/api/complaints/{cid}").json() == closed
    reopened = post(client, f"/api/complaints/{cid}/reopen", {"reason": "群众反映问题依旧"})
    assert reopened["reason"] == "reopen"
    assert client.get(f"/api/complaints/{cid}").json()["complaint"]["reopen_count"] == 1


def test_not_found_and_bad_input(client):
    assert client.get("/api/complaints/424242").status_code == 404
    r = client.post("/api/complaints/424242/assign")
    assert r.status_code == 404 and "不存在" in r.json()["detail"]
    r = client.post("/api/complaints", json={"text": "  "})
    assert r.status_code == 422 and r.json()["detail"] == "投诉内容不能为空 / text must not be empty"
    r = client.post("/api/complaints", json={"address": "无内容"})
    assert r.status_code == 422 and "text" in r.json()["detail"] and "invalid request" in r.json()["detail"]
    r = client.post("/api/complaints", json={"text": FUMES, "occurred_at": "2030-01-01T00:00:00+08:00"})
    assert r.status_code == 422 and "occurred_at" in r.json()["detail"]
    cid = post(client, "/api/complaints", {"text": FUMES}, expect=201)["id"]
    post(client, f"/api/complaints/{cid}/assign")
    r = client.post(f"/api/complaints/{cid}/close", json={"reply": "已处理", "result": "基本属实"})
    assert r.status_code == 422 and "属实" in r.json()["detail"]
    r = client.post(f"/api/complaints/{cid}/return", json={"reason": " "})
    assert r.status_code == 422
    assert client.get("/api/queue", params={"status": "archived"}).status_code == 422
    assert client.get("/api/metrics", params={"from": "2026-11-30", "to": "2026-11-01"}).status_code == 422


def test_duplicate_external_id_409_with_existing_id(client):
    first = post(client, "/api/complaints", {"text": FUMES, "external_id": "GZ-1"}, expect=201)
    r = client.post("/api/complaints", json={"text": NOISE, "external_id": "GZ-1"})
    assert r.status_code == 409 and r.json()["id"] == first["id"]


def test_triager_failure_then_retry(client, triager):
    triager.fail = True
    created = post(client, "/api/complaints", {"text": NOISE}, expect=201)
    assert created["status"] == "received" and created["suggestion"] is None
    assert "Chroma unreachable" in created["triage_error"]
    queue = client.get("/api/queue").json()
    assert queue[0]["id"] == created["id"] and queue[0]["priority_reason"] == "未能自动分拣，待人工派单"
    assert post(client, "/api/triage/retry") == {"tried": 1, "triaged": 0, "failed": 1}
    triager.fail = False
    assert post(client, "/api/triage/retry") == {"tried": 1, "triaged": 1, "failed": 0}
    detail = client.get(f"/api/complaints/{created['id']}").json()
    assert detail["complaint"]["status"] == "triaged" and detail["suggestion"]["pollution_type"] == "noise"
    assert detail["complaint"]["triage_attempts"] == 3


def test_startup_retries_pending_triage(app, triager):
    triager.fail = True
    with TestClient(app) as c0:
        cid = post(c0, "/api/complaints", {"text": NOISE}, expect=201)["id"]
    triager.fail = False
    from triage.api.app import create_app

    fresh = create_app(app.state.settings, retry_interval=None)  # a restart of the service
    fresh.dependency_overrides = dict(app.dependency_overrides)
    with TestClient(fresh) as c1:
        _wait(fresh.state.retry_task)  # the lifespan's background retry
        assert c1.get(f"/api/complaints/{cid}").json()["complaint"]["status"] == "triaged"


def _wait(task, seconds: float = 20.0):
    import time

    end = time.time() + seconds
    while not task.done() and time.time() < end:
        time.sleep(0.05)
    assert task.done()


def test_queue_order_overdue_due_soon_low_confidence(client, clock):
    clock.now = bj(2026, 11, 2, 9)  # Monday
    normal = post(client, "/api/complaints", {"text": FUMES}, expect=201)["id"]
    post(client, f"/api/complaints/{normal}/assign")  # due 11-09
    old = post(client, "/api/complaints", {"text": "市民来电反映：齐富路12号饭店油烟直排扰民。"}, expect=201)["id"]
    post(client, f"/api/complaints/{old}/assign", {"urgency": "urgent"})  # due 11-03
    low = post(client, "/api/complaints", {"text": "不清楚是哪里传来的怪味，请查一下。"}, expect=201)["id"]
    clock.now = bj(2026, 11, 4, 9)
    soon = post(client, "/api/complaints", {"text": "市民来电反映：均禾街清湖村工地施工噪音。",
                                            "occurred_at": "2026-11-03T23:30:00+08:00"}, expect=201)["id"]
    post(client, f"/api/complaints/{soon}/assign")  # night noise: 2 working days → 11-06, due soon on 11-05
    clock.now = bj(2026, 11, 5, 9)
    queue = client.get("/api/queue").json()
    order = [i["id"] for i in queue]
    assert order.index(old) < order.index(soon) < order.index(low) < order.index(normal)
    first = queue[0]
    assert first["id"] == old and first["overdue"] and first["priority_reason"] == "已超期"
    assert next(i for i in queue if i["id"] == soon)["due_soon"]
    assert next(i for i in queue if i["id"] == low)["low_confidence"]
    only = client.get("/api/queue", params={"status": "triaged"}).json()
    assert [i["id"] for i in only] == [low]
    by_unit = client.get("/api/queue", params={"unit_type": "urban_management", "limit": 1}).json()
    assert [i["id"] for i in by_unit] == [old]


def test_openapi_lists_contract_paths(client):
    paths = client.get("/openapi.json").json()["paths"]
    for p in ["/api/complaints", "/api/complaints/{complaint_id}", "/api/queue", "/api/complaints/{complaint_id}/assign",
              "/api/complaints/{complaint_id}/draft", "/api/complaints/{complaint_id}/close",
              "/api/complaints/{complaint_id}/return", "/api/complaints/{complaint_id}/extend",
              "/api/complaints/{complaint_id}/reopen", "/api/complaints/{complaint_id}/merge", "/api/metrics",
              "/api/relapses"]:
        assert p in paths
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("actor, expected", [(None, "dispatcher"), (quote("王科长"), "王科长")])
def test_actor_header(client, actor, expected):
    headers = {"X-Actor": actor} if actor else {}
    cid = client.post("/api/complaints", json={"text": FUMES}, headers=headers).json()["id"]
    r = client.post(f"/api/complaints/{cid}/assign", headers=headers)
    assert r.json()["assigned_by"] == expected


def test_extension_request_and_decision_over_http(client):
    cid = post(client, "/api/complaints", {"text": FUMES}, expect=201)["id"]
    post(client, f"/api/complaints/{cid}/assign")
    a = post(client, f"/api/complaints/{cid}/extension-request", {"reason": "需检测", "working_days": 2}, actor="城管")
    assert a["extension_requested_by"] == "城管" and a["extension_request_deadline"] > a["deadline"]
    item = next(i for i in client.get("/api/queue").json() if i["id"] == cid)
    assert item["extension_pending"] and "延期申请" in item["priority_reason"]
    post(client, f"/api/complaints/{cid}/extension-request", {"reason": "再延", "working_days": 1}, expect=409)
    post(client, f"/api/complaints/{cid}/extension-decision", {"approve": False}, expect=422)  # no reason
    decided = post(client, f"/api/complaints/{cid}/extension-decision", {"approve": True})
    assert decided["deadline"] == a["extension_request_deadline"] and decided["extensions"] == 1
    assert decided["extension_requested_at"] is None
    post(client, f"/api/complaints/{cid}/extension-decision", {"approve": True}, expect=409)
    kinds = [e["kind"] for e in client.get(f"/api/complaints/{cid}").json()["events"]]
    assert kinds[-2:] == ["extension_requested", "extend"]


def test_receipt_and_first_contact_over_http(client, clock):
    clock.now = bj(2026, 11, 2, 9)
    cid = post(client, "/api/complaints", {"text": FUMES}, expect=201)["id"]
    post(client, f"/api/complaints/{cid}/acknowledge", expect=409)  # not dispatched yet
    post(client, f"/api/complaints/{cid}/assign")
    item = next(i for i in client.get("/api/queue").json() if i["id"] == cid)
    assert item["unacknowledged"] and not item["contact_overdue"]
    a = post(client, f"/api/complaints/{cid}/acknowledge", actor="城管甲")
    assert a["received_by"] == "城管甲" and a["received_at"]
    post(client, f"/api/complaints/{cid}/acknowledge", actor="城管甲", expect=409)
    clock.now = bj(2026, 11, 4, 9)  # the contact deadline (11-03) has passed
    assert next(i for i in client.get("/api/queue").json() if i["id"] == cid)["contact_overdue"]
    post(client, f"/api/complaints/{cid}/contact", {"note": ""}, expect=422)
    post(client, f"/api/complaints/{cid}/contact", {"note": "电话", "contacted_at": "下午"}, expect=422)
    a = post(client, f"/api/complaints/{cid}/contact", {"note": "电话联系来电人", "contacted_at": "2026-11-03T15:00"},
             actor="城管甲")
    assert local_date(a["contacted_at"]) == "2026-11-03" and a["contact_note"] == "电话联系来电人"
    item = next(i for i in client.get("/api/queue").json() if i["id"] == cid)
    assert not item["unacknowledged"] and not item["contact_overdue"]
    events = client.get(f"/api/complaints/{cid}").json()["events"]
    assert [e["kind"] for e in events][-2:] == ["acknowledge", "contact"] and events[-1]["data"]["on_time"]


def test_a_returned_case_leaves_its_units_filter(client):
    cid = post(client, "/api/complaints", {"text": FUMES}, expect=201)["id"]
    post(client, f"/api/complaints/{cid}/assign")
    post(client, f"/api/complaints/{cid}/return", {"reason": "非本单位职责"})
    assert client.get("/api/queue", params={"unit_type": "urban_management"}).json() == []
    assert [i["id"] for i in client.get("/api/queue", params={"status": "returned"}).json()] == [cid]


def test_intake_takes_what_the_platform_sends(client, clock):
    """A numeric 工单号, a date as the platform writes it and a 诉求标题: file import took them, the API refused the
    first two and silently dropped the third."""
    body = {"text": "楼下饭店每天晚上油烟直排。", "title": "油烟扰民", "occurred_at": "2026年11月1日 21时30分",
            "external_id": 20261101001}
    created = post(client, "/api/complaints", body, expect=201)
    c = client.get(f"/api/complaints/{created['id']}").json()["complaint"]
    assert c["external_id"] == "20261101001" and c["text"] == "油烟扰民。楼下饭店每天晚上油烟直排。"
    assert c["occurred_at"].startswith("2026-11-01T13:30")  # 21:30 Beijing, stored in UTC
    again = client.post("/api/complaints", json={**body, "external_id": "20261101001"})
    assert again.status_code == 409 and again.json()["id"] == created["id"]
    titled = post(client, "/api/complaints", {"text": "油烟扰民，楼下饭店直排。", "title": "油烟扰民"}, expect=201)
    assert client.get(f"/api/complaints/{titled['id']}").json()["complaint"]["text"] == "油烟扰民，楼下饭店直排。"
    # Exports also write dates with slashes (pydantic answered "invalid date separator, expected `-`").
    slashed = post(client, "/api/complaints", {"text": "工地夜间施工噪音", "occurred_at": "2026/11/01 21:30"},
                   expect=201)
    assert client.get(f"/api/complaints/{slashed['id']}").json()["complaint"]["occurred_at"].startswith(
        "2026-11-01T13:30")
    bad = client.post("/api/complaints", json={"text": "工地夜间施工噪音", "occurred_at": "2026/13/01"})
    assert bad.status_code == 422 and "无法识别的日期" in bad.text
