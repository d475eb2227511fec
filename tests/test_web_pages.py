"""The Chinese web pages through TestClient, with the fakes of conftest.py and web_support.py (no model)."""

from __future__ import annotations

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from conftest import bj
from fastapi.testclient import TestClient
from web_support import BAD_ROWS_CSV, make_app

from triage.queue import service
from triage.queue.models import Complaint
from triage.settings import Settings
from triage.web import present

FUMES = "市民来电反映：石井街石潭路88号楼下烧烤店油烟直排，熏得无法开窗，请城管核实处理！"
NOISE = "市民来电反映：均禾街清湖村新市场旁工地夜间施工噪音扰民，请核实处理。"
VAGUE = "最近总闻到一股怪味，不清楚是哪里来的，请查一下。"
SEWAGE = "市民反映：嘉禾花园北门的下水道冒污水，臭味很重，请处理。"


@pytest.fixture
def settings(tmp_path):
    """No demo set: these tests start from an empty queue (the demo has its own tests below)."""
    return Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'web.db'}", demo_data=False)


@pytest.fixture
def app(settings, clock, sink):
    return make_app(settings, clock=clock, sink=sink)


@pytest.fixture
def client(app):
    return TestClient(app)


def intake(client, text: str, **fields) -> int:
    r = client.post("/complaints/new", data={"text": text, **fields}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


def load(app, cid: int) -> Complaint:
    with app.state.session_factory() as s:
        c = service.get_complaint(s, cid)
        s.expunge_all()
        return c


def post(client, path: str, data: dict | None = None, expect: int = 303):
    r = client.post(path, data=data or {}, follow_redirects=False)
    assert r.status_code == expect, r.text[-2000:]
    return r


def flashes(html: str) -> list[str]:
    found = re.findall(r'<div class="flash flash-\w+"[^>]*>(.*?)</div>', html, re.S)
    return [re.sub(r"\s+", " ", m).strip() for m in found]


def queue_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr class="row-\w+" data-id="(\d+)"', html)]


# ------------------------------------------------------------------------------------------------- queue
def test_queue_lists_in_urgency_order_with_badges_and_filters(app, client, clock):
    fumes = intake(client, FUMES, address="石潭路88号")
    noise = intake(client, NOISE)
    vague = intake(client, VAGUE)
    again = intake(client, FUMES, address="石潭路88号")  # the same complaint again: a duplicate
    html = client.get("/").text
    assert '<meta charset="utf-8">' in html and "待办队列" in html
    with app.state.session_factory() as s:
        expected = [e.complaint.id for e in service.list_queue(s, now=clock.now)]
    assert queue_ids(html) == expected and set(expected) == {fumes, noise, vague, again}
    row = {cid: html.split(f'data-id="{cid}"', 1)[1].split("</tr>", 1)[0] for cid in expected}
    assert "置信度低" in row[vague] and "置信度低" not in row[fumes]
    assert "重复件" in row[again] and "重复件" not in row[fumes]
    assert "剩余 5 个工作日" in row[fumes] and "测试区urban_management" in row[fumes]
    # only confident, untouched suggestions can be bulk-accepted
    assert 'name="ids"' in row[fumes] and 'name="ids"' not in row[vague]

    assert queue_ids(client.get("/?type=air").text) == [i for i in expected if i in (fumes, again, vague)]
    assert queue_ids(client.get("/?type=noise").text) == [noise]
    urban = [i for i in expected if i in (fumes, noise, again)]
    assert queue_ids(client.get("/queue?unit=urban_management").text) == urban
    assert queue_ids(client.get("/?overdue=1").text) == []
    clock.now += timedelta(days=9)
    late = client.get("/?overdue=1").text
    assert set(queue_ids(late)) == {fumes, noise, vague, again} and "超期" in late
    bad = client.get("/?status=nonsense")
    assert bad.status_code == 200 and "未知的状态" in bad.text and queue_ids(bad.text) == []
    # Once the dispatcher has decided, the model's confidence (and its doubt) no longer describe the row.
    post(client, f"/complaints/{vague}/assign", {"action": "override", "pollution_type": "air",
                                                  "unit_type": "ecology_environment"})
    row = client.get("/").text.split(f'data-id="{vague}"', 1)[1].split("</tr>", 1)[0]
    assert "置信度低" not in row and ">人工<" in row and "%" not in row


def test_countdown_reads_in_working_days_or_hours():
    from triage.queue.sla import get_sla
    from triage.web.present import countdown

    sla = get_sla()
    friday_night = bj(2026, 11, 6, 23, 59, 59)
    assert countdown(friday_night, bj(2026, 11, 2, 9), sla).text == "剩余 4 个工作日"
    assert countdown(friday_night, bj(2026, 11, 6, 10), sla).text == "剩余 13 小时"
    assert countdown(friday_night, bj(2026, 11, 7, 9), sla).text == "超期 9 小时"
    assert countdown(friday_night, bj(2026, 11, 8, 20), sla).text == "超期 44 小时"  # a weekend: no working day
    over = countdown(friday_night, bj(2026, 11, 10, 9), sla)
    assert (over.text, over.kind) == ("超期 2 个工作日", "overdue")
    assert countdown(None, bj(2026, 11, 2, 9), sla).text == "未定期限"


def test_bulk_accept_assigns_confident_ones_and_reports_each_failure(app, client):
    fumes = intake(client, FUMES)
    sewage = intake(client, SEWAGE)
    vague = intake(client, VAGUE)
    r = post(client, "/queue/accept", {"ids": [str(fumes), str(sewage), str(vague), "9999"], "back": "/?type=air"})
    assert r.headers["location"] == "/?type=air"
    msgs = flashes(client.get(r.headers["location"]).text)
    assert any(f"已采纳建议并派单 2 件：#{fumes}、#{sewage}" in m for m in msgs)
    assert any(f"#{vague}" in m and "置信度低" in m for m in msgs)
    assert any("#9999 不存在" in m for m in msgs)
    assert load(app, fumes).status == "assigned" and load(app, sewage).unit_type == "water_affairs"
    assert load(app, vague).status == "triaged"
    # the message is shown once
    assert not flashes(client.get("/").text)
    again = client.get(post(client, "/queue/accept", {"ids": [str(fumes)]}).headers["location"]).text
    assert "当前状态“办理中”不能派单" in again
    assert "请先勾选" in client.get(post(client, "/queue/accept", {}).headers["location"]).text
    # never redirected off-site
    assert post(client, "/queue/accept", {"ids": [str(vague)], "back": "//evil.example/"}).headers["location"] == "/"


# ---------------------------------------------------------------------------------------------- case page
def test_case_page_shows_suggestion_evidence_and_timeline(app, client):
    cid = intake(client, NOISE, address="清湖村新市场", contact="[电话]")
    html = client.get(f"/complaints/{cid}").text
    for part in ("投诉内容", "分拣建议", "建筑施工噪声", "90%", "测试区urban_management", "rule R1",
                 "其他可能的类型", "相似历史案件", "龙华区综合行政执法局", "已责令停止夜间施工",
                 "《中华人民共和国生态环境法典》第五百七十二条", "现行有效", "已废止", "办理记录", "受理", "分拣",
                 "采纳建议并派单", "改判后派单"):
        assert part in html, part
    assert "退单 / 延期" not in html  # not assigned yet
    assert "大模型" not in html  # the LLM member is off: nothing said about it


def test_case_page_says_whether_the_llm_member_took_part(app, client, monkeypatch):
    from triage.api import deps

    triager = app.dependency_overrides[deps.get_triager]()
    plain = triager.suggest
    for llm, shown in (("qwen2.5-7b/classify-2026-11-28.1", "参与了类型判断（qwen2.5-7b/classify-2026-11-28.1）"),
                       ("未参与：响应超时", "未参与：响应超时，本建议未采用大模型意见")):
        monkeypatch.setattr(triager, "suggest", lambda text, llm=llm, **kw: plain(text, **kw).model_copy(
            update={"versions": {"model": "fake", "llm": llm}}))
        cid = intake(client, NOISE + llm)
        assert shown in client.get(f"/complaints/{cid}").text


def test_case_page_marks_a_past_order_at_the_same_place(app, client, monkeypatch):
    from triage.api import deps

    triager = app.dependency_overrides[deps.get_triager]()
    plain = triager.suggest
    cid = intake(client, NOISE)
    assert "历史重复" not in client.get(f"/complaints/{cid}").text

    def repeated(text, **kw):
        s = plain(text, **kw)
        return s.model_copy(update={"similar_cases": [s.similar_cases[0].model_copy(update={"same_place": True})]})

    monkeypatch.setattr(triager, "suggest", repeated)
    cid = intake(client, NOISE + "又开始了")
    html = client.get(f"/complaints/{cid}").text
    assert "历史重复：同一地点同类问题此前已有 1 件工单" in html
    assert '<span class="badge badge-relapse">同一地点</span> 夜间工地打桩施工噪音扰民' in html
    assert client.get(f"/api/complaints/{cid}").json()["suggestion"]["similar_cases"][0]["same_place"] is True


def test_accept_then_override_elsewhere_and_refusals_keep_the_form(app, client):
    a = intake(client, FUMES)
    r = post(client, f"/complaints/{a}/assign", {"action": "accept"})
    assert r.headers["location"] == f"/complaints/{a}#dispatch"
    page = client.get(r.headers["location"]).text
    assert "已采纳建议，派至测试区urban_management" in page and "派单情况" in page
    contact = load(app, a).assignment.contact_deadline
    assert contact is not None and f"先行联系来电人期限 {present.fmt_dt(contact)}" in page
    assert load(app, a).assignment.accepted_suggestion is True

    b = intake(client, SEWAGE)
    bad = post(client, f"/complaints/{b}/assign", {"action": "override", "pollution_type": "noise",
                                                   "subtype": "water.sewage", "note": "改派说明"}, expect=422)
    assert "不属于" in bad.text and 'value="改派说明"' in bad.text and "Traceback" not in bad.text
    nothing = post(client, f"/complaints/{b}/assign", {"action": "override"}, expect=422)
    assert "至少选择" in nothing.text
    post(client, f"/complaints/{b}/assign", {"action": "override", "subtype": "water.river",
                                             "unit_type": "ecology_environment", "note": "河道问题"})
    c = load(app, b)
    assert (c.status, c.pollution_type, c.subtype, c.unit_type) == ("assigned", "water", "water.river",
                                                                    "ecology_environment")
    assert c.assignment.accepted_suggestion is False and c.assignment.note == "河道问题"
    page = client.get(f"/complaints/{b}").text
    assert "调度员改判" in page and "测试区ecology_environment" in page


def test_draft_edit_approve_close_and_the_dashboard_follows(app, client, clock, sink):
    a = intake(client, FUMES, external_id="GZ-1")
    b = intake(client, NOISE)
    post(client, f"/complaints/{a}/assign", {"action": "accept"})
    post(client, f"/complaints/{b}/assign", {"action": "accept"})
    assert 'data-kpi="closure_rate">0.0%' in client.get("/dashboard").text

    clock.now += timedelta(days=1)
    r = post(client, f"/complaints/{a}/draft", {"findings": "现场核查，该店未安装油烟净化器", "result": "属实"})
    assert r.headers["location"].endswith("#draft")
    page = client.get(f"/complaints/{a}").text
    assert "已生成答复草稿，质量评分 90 分" in page and "《中华人民共和国生态环境法典》第五百七十二条" in page
    assert "您好！您反映的" in page and "现场核查，该店未安装油烟净化器" in page
    draft_text = load(app, a).drafts[-1].text

    bad = post(client, f"/complaints/{a}/close", {"reply": draft_text + "（已修改）", "result": ""}, expect=422)
    assert "核查结果只能是" in bad.text and "（已修改）" in bad.text  # the edited text survives the refusal
    post(client, f"/complaints/{a}/close", {"reply": draft_text + "（已修改）", "result": "属实"})
    c = load(app, a)
    assert c.status == "closed" and c.reply.endswith("（已修改）") and c.result == "属实"
    assert sink and sink[0]["order_id"] == "GZ-1"
    page = client.get(f"/complaints/{a}").text
    assert "已审核通过并办结（属实，按时办结）" in page and "（已修改）" in page
    dash = client.get("/dashboard").text
    assert 'data-kpi="closure_rate">50.0%' in dash and 'data-kpi="on_time_rate">100.0%' in dash
    assert "<svg" in dash and "每周受理、办结件数与办结率" in dash
    # closing twice is refused with the state named
    again = post(client, f"/complaints/{a}/close", {"reply": "x", "result": "属实"}, expect=409)
    assert "当前状态“已办结”不能办结" in again.text


def test_submit_reply_then_approve(app, client):
    a = intake(client, FUMES)
    post(client, f"/complaints/{a}/assign", {"action": "accept"})
    post(client, f"/complaints/{a}/reply", {"reply": "您好！经核查情况属实，已责令整改。感谢您的监督。", "result": "属实"})
    assert load(app, a).status == "replied"
    page = client.get(f"/complaints/{a}").text
    assert "审核通过并办结" in page and "提交答复待审核" not in page
    post(client, f"/complaints/{a}/close", {"reply": "您好！经核查情况属实，已责令整改。感谢您的监督。", "result": "属实"})
    assert load(app, a).status == "closed"


def test_return_extend_and_reassign(app, client, clock):
    a = intake(client, FUMES)
    post(client, f"/complaints/{a}/assign", {"action": "accept"})
    page = client.get(f"/complaints/{a}").text
    assert "退单 / 延期" in page and "每次派单最多延期 2 次" in page

    empty = post(client, f"/complaints/{a}/extend", {"reason": "等待检测报告"}, expect=422)
    assert "二者选一" in empty.text and "等待检测报告" in empty.text
    early = post(client, f"/complaints/{a}/extend", {"reason": "等待检测报告", "deadline": "2026-11-03"}, expect=422)
    assert "新期限须晚于原期限" in early.text
    r = post(client, f"/complaints/{a}/extend", {"reason": "等待检测报告", "deadline": "2026-11-20"})
    assert "新的办理期限 2026-11-20 23:59" in client.get(r.headers["location"]).text
    post(client, f"/complaints/{a}/extend", {"reason": "再等等", "working_days": "2"})
    assert load(app, a).extension_count == 2

    assert "退单理由" in post(client, f"/complaints/{a}/return", {"reason": "  "}, expect=422).text
    post(client, f"/complaints/{a}/return", {"reason": "该店位于商场内，属市场监管职责"})
    c = load(app, a)
    assert c.status == "returned" and c.return_count == 1
    row = client.get("/").text.split(f'data-id="{a}"', 1)[1].split("</tr>", 1)[0]
    assert "退单 1 次" in row and "已退单" in row
    page = client.get(f"/complaints/{a}").text
    assert "该店位于商场内，属市场监管职责" in page and "改判后派单" in page

    post(client, f"/complaints/{a}/assign", {"action": "override", "unit_type": "market_regulation"})
    c = load(app, a)
    assert c.status == "assigned" and c.unit_type == "market_regulation" and c.assign_count == 2
    assert "改派" in client.get(f"/complaints/{a}").text


def test_merge_duplicate_into_parent_and_reopen(app, client):
    parent = intake(client, FUMES, address="石潭路88号")
    child = intake(client, FUMES, address="石潭路88号")
    page = client.get(f"/complaints/{child}").text
    assert f"疑似与 <a href=\"/complaints/{parent}\">投诉 #{parent}</a>" in page
    assert f'name="parent_id" size="8" inputmode="numeric" value="{parent}"' in page
    assert "请填写主件" in post(client, f"/complaints/{child}/merge", {"parent_id": "abc"}, expect=422).text
    post(client, f"/complaints/{child}/merge", {"parent_id": f"#{parent}", "reason": "同一地点同一问题"})
    assert load(app, child).status == "merged"
    assert f'<a href="/complaints/{child}">#{child}</a>' in client.get(f"/complaints/{parent}").text
    assert child not in queue_ids(client.get("/").text)

    post(client, f"/complaints/{parent}/assign", {"action": "accept"})
    post(client, f"/complaints/{parent}/close", {"reply": "您好！已处理。", "result": "部分属实"})
    assert load(app, child).status == "closed"
    post(client, f"/complaints/{parent}/reopen", {"reason": "市民反映问题仍在"})
    c = load(app, parent)
    assert c.status == "assigned" and c.reopen_count == 1


def test_a_closed_original_is_not_offered_for_merging(app, client):
    """The merge form was filled with a suspected original that had closed since: submitting it could only be
    refused (409). It is now named with what can be done instead."""
    parent = intake(client, FUMES, address="石潭路88号")
    child = intake(client, FUMES, address="石潭路88号")
    post(client, f"/complaints/{parent}/assign", {"action": "accept"})
    post(client, f"/complaints/{parent}/close", {"reply": "您好！已处理。", "result": "属实"})
    page = client.get(f"/complaints/{child}").text
    assert 'name="parent_id" size="8" inputmode="numeric" value=""' in page
    assert f"疑似重复的 <a href=\"/complaints/{parent}\">投诉 #{parent}</a> 目前已办结，不能并入" in page
    assert "可将其重办后再合并" in page


# ----------------------------------------------------------------------------------------- intake, errors
def test_intake_form_validates_in_chinese(app, client):
    r = client.get("/complaints/new")
    assert r.status_code == 200 and 'name="text"' in r.text and "<label>" in r.text
    empty = post(client, "/complaints/new", {"text": "   ", "address": "石潭路"}, expect=422)
    assert "不能为空" in empty.text and 'value="石潭路"' in empty.text
    bad_time = post(client, "/complaints/new", {"text": FUMES, "occurred_at": "昨天"}, expect=422)
    assert "事发时间格式不正确" in bad_time.text
    first = intake(client, FUMES, external_id="GZ-9", occurred_at="2026-11-01T21:30")
    assert load(app, first).source == "web"
    dup = post(client, "/complaints/new", {"text": FUMES, "external_id": "GZ-9"}, expect=409)
    assert f"工单号 GZ-9 已登记为投诉 #{first}" in dup.text and dup.text.count(f"投诉 #{first}") == 1
    assert not any("external_id" in f for f in flashes(dup.text))  # the form's words, not the API's field code


def test_errors_are_chinese_pages_and_user_text_is_escaped(app, client):
    missing = client.get("/complaints/999")
    assert missing.status_code == 404 and "投诉 999 不存在" in missing.text and "<!doctype html>" in missing.text
    not_a_number = client.get("/complaints/abc")
    assert not_a_number.status_code == 422 and "参数格式不正确：投诉编号" in not_a_number.text
    bad_period = client.get("/dashboard?from=2026-13-01")
    assert bad_period.status_code == 422 and "日期格式应为 YYYY-MM-DD" in bad_period.text
    assert 'data-kpi="received"' in bad_period.text  # the dashboard stays, with the reason (it was replaced)
    reversed_ = client.get("/report?from=2026-11-20&to=2026-11-01")
    assert reversed_.status_code == 422 and "开始日期不能晚于结束日期" in reversed_.text and "工作报告" in reversed_.text

    cid = intake(client, '<script>alert("x")</script>楼下饭店油烟<b>很大</b>', address="<img src=x onerror=alert(1)>")
    for path in ("/", f"/complaints/{cid}", "/report"):
        html = client.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>很大" not in html, path
    assert "&lt;script&gt;" in client.get(f"/complaints/{cid}").text


def test_a_failure_inside_a_page_is_a_chinese_500(app, client, monkeypatch):
    import triage.web.routes as routes

    def boom(*a, **k):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(routes, "compute_metrics", boom)
    r = client.get("/dashboard")
    assert r.status_code == 500 and "系统内部错误" in r.text and "database on fire" not in r.text


# ------------------------------------------------------------------------------------ dashboard and report
def test_dashboard_csv_export(app, client, clock):
    a = intake(client, FUMES)
    intake(client, NOISE)
    post(client, f"/complaints/{a}/assign", {"action": "accept"})
    post(client, f"/complaints/{a}/close", {"reply": "您好！已处理。", "result": "属实"})
    r = client.get("/dashboard.csv?from=2026-10-01&to=2026-11-02")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="metrics_2026-10-01_2026-11-02.csv"' in r.headers["content-disposition"]
    assert r.content.startswith("\ufeff".encode())
    lines = r.content.decode("utf-8-sig").splitlines()
    assert lines[1].split(",")[:7] == ["分组", "名称", "受理", "派单", "现承办", "办结", "办结率"]
    overall = lines[2].split(",")
    assert overall[:7] == ["总体", "全部", "2", "1", "", "1", "50.0%"]
    assert any(line.startswith("按类型,大气污染,1,") for line in lines)
    assert any(line.startswith("按承办单位,测试区urban_management,,1,1,1,100.0%") for line in lines)
    assert sum(line.startswith("按周,") for line in lines) == 6  # 10-01 … 11-02: six Monday weeks
    header = lines[1].split(",")
    assert "重复件（已合并）" in header and "先行联系及时率" in header  # the dashboard's figures, all of them


def test_dashboard_default_period_tables_and_relapses(app, client, clock):
    a = intake(client, SEWAGE, address="嘉禾花园北门")
    post(client, f"/complaints/{a}/assign", {"action": "accept"})
    post(client, f"/complaints/{a}/close", {"reply": "您好！已疏通。", "result": "属实"})
    clock.now += timedelta(days=10)
    b = intake(client, "市民反映：嘉禾花园北门的下水道又冒污水了，臭味很重。", address="嘉禾花园北门")
    assert load(app, b).relapse_of == a
    html = client.get("/dashboard").text
    assert 'name="from" value="2026-09-21"' in html and 'name="to" value="2026-11-12"' in html  # 8 weeks
    assert "水污染" in html and "测试区water_affairs" in html
    rel = html.split('id="relapses"', 1)[1]
    assert f'href="/complaints/{b}">#{b}</a>' in rel and f'href="/complaints/{a}">#{a}</a>' in rel and "10 天" in rel
    assert "反弹" in client.get("/").text
    assert "其后已重办" not in client.get(f"/complaints/{b}").text
    post(client, f"/complaints/{a}/reopen", {"reason": "下水道仍在冒污水"})
    page = client.get(f"/complaints/{b}").text  # it read as if #a were still closed
    assert "其后已重办，目前办理中" in page and "可考虑与之合并" in page


def test_report_page_renders_the_work_report_as_html(app, client):
    a = intake(client, FUMES)
    post(client, f"/complaints/{a}/assign", {"action": "accept"})
    html = client.get("/report?from=2026-11-01&to=2026-11-02").text
    assert "<h1>" in html and "共受理12345环境类投诉1件" in html and "<h2>一、按污染类型</h2>" in html
    assert "<strong>大气污染</strong>" in html and "/api/report?from=2026-11-01&amp;to=2026-11-02" in html


def test_trend_chart_geometry_stays_inside_the_box():
    from triage.web.charts import HEIGHT, WIDTH, weekly_trend

    weeks = [{"week_start": f"2026-11-{d:02d}", "week_end": f"2026-11-{d + 6:02d}", "received": r, "closed": c,
              "closure_rate": (c / r if r else None)} for d, r, c in ((2, 7, 3), (9, 0, 0), (16, 13, 13))]
    t = weekly_trend(weeks)
    assert [w["label"] for w in t["weeks"]] == ["11/2", "11/9", "11/16"] and t["ticks"][-1]["v"] == 20
    for w in t["weeks"]:
        assert 0 <= w["rx"] and w["cx_bar"] + w["bar"] <= WIDTH and t["top"] <= w["ry"] <= t["base"] <= HEIGHT
    assert t["line"].count(",") == 2  # the empty week has no rate point
    assert weekly_trend([])["empty"] is True


# --------------------------------------------------------------------------------------- knowledge, import
def test_knowledge_search_page(app, client):
    page = client.get("/knowledge")
    assert page.status_code == 200 and 'name="q"' in page.text and "条结果" not in page.text
    html = client.get("/knowledge", params={"q": "夜间建筑施工噪声", "on": "2026-11-28"}).text
    assert "2 条结果" in html and "《中华人民共和国生态环境法典》第五百七十二条" in html
    items = {("第五百七十二条" in li): li for li in html.split('<li class="card">')[1:]}
    assert "现行有效" in items[True] and "已废止" in items[False] and "废止：2026-08-15" in items[False]
    before = client.get("/knowledge", params={"q": "夜间建筑施工噪声", "on": "2026-01-01"}).text
    items = {("第五百七十二条" in li): li for li in before.split('<li class="card">')[1:]}
    assert "尚未施行" in items[True] and "现行有效" in items[False]  # before 2026-08-15 the old law applied
    cases = client.get("/knowledge", params={"q": "工地夜间打桩", "collection": "cases", "k": "3"}).text
    assert "龙华区综合行政执法局" in cases and "已责令停止夜间施工" in cases
    assert "k 必须在 1 到 50 之间" in client.get("/knowledge", params={"q": "噪声", "k": "99"}).text
    assert "未知的知识库集合" in client.get("/knowledge", params={"q": "噪声", "collection": "x"}).text


def test_import_reports_rejected_rows_and_is_idempotent(app, client, monkeypatch):
    import triage.classify.service as classify_service

    refreshes: list[int] = []
    monkeypatch.setattr(classify_service, "_triager", SimpleNamespace(schedule_refresh=lambda: refreshes.append(1)))
    page = client.get("/import")
    assert 'enctype="multipart/form-data"' in page.text and "一次最多 1000 条" in page.text
    r = client.post("/import", files={"file": ("export.csv", BAD_ROWS_CSV.encode("gb18030"), "text/csv")})
    assert r.status_code == 200
    html = r.text
    assert 'data-kpi="total">6<' in html and 'data-kpi="imported">2<' in html and 'data-kpi="rejected">4<' in html
    rows = re.findall(r"<td class=\"num\">第 (\d+) 行</td><td>(.*?)</td>", html)
    assert [int(n) for n, _ in rows] == [3, 5, 6, 7]
    assert "text 为空" in rows[0][1] and "未知的 pollution_type" in rows[1][1] and "与第4行重复" in rows[2][1]
    assert set(app.state.test_store.rows["cases"]) >= {"W-1", "W-3"}
    assert refreshes == [1]  # the running triager retrains on the new cases
    again = client.post("/import", files={"file": ("export.csv", BAD_ROWS_CSV.encode("utf-8"), "text/csv")}).text
    assert 'data-kpi="imported">0<' in again and 'data-kpi="already_present">2<' in again
    assert refreshes == [1]  # nothing new: no retraining


def test_import_refusals_are_clear(app, client, monkeypatch):
    import triage.web.routes as routes

    assert "请选择要导入的文件" in client.post("/import", data={"x": "1"}).text
    doc = client.post("/import", files={"file": ("cases.docx", b"PK..", "application/octet-stream")})
    assert doc.status_code == 422 and "不支持的文件类型“.docx”" in doc.text
    no_text = client.post("/import", files={"file": ("a.csv", "order_id,title\n1,x\n".encode(), "text/csv")})
    assert no_text.status_code == 422 and "缺少必需的列 text" in no_text.text
    assert "上传的文件是空的" in client.post("/import", files={"file": ("a.csv", b"", "text/csv")}).text
    monkeypatch.setattr(routes, "MAX_SYNC_ROWS", 1)
    many = client.post("/import", files={"file": ("a.csv", BAD_ROWS_CSV.encode(), "text/csv")})
    assert many.status_code == 413 and "有效记录 1 条" in many.text and "triage cases import" in many.text
    # Rejected rows count toward the page's bound too: a file of 600,000 bad rows was read whole (30 s, 200 MB).
    monkeypatch.setattr(routes, "MAX_SYNC_ROWS", 1000)
    monkeypatch.setattr(routes, "MAX_SYNC_RECORDS", 3)
    bad = "order_id,text\n" + "".join(f"B{i},\n" for i in range(2, 12)) + "B99,工地夜间施工\n"
    stopped = client.post("/import", files={"file": ("bad.csv", bad.encode(), "text/csv")})
    assert stopped.status_code == 413 and "文件超过 3 行" in stopped.text
    monkeypatch.setattr(routes, "MAX_UPLOAD_BYTES", 100)
    big = client.post("/import", files={"file": ("a.csv", BAD_ROWS_CSV.encode(), "text/csv")})
    assert big.status_code == 413 and "MB 的上限" in big.text


# ------------------------------------------------------------------------------------------------ demo
def test_first_page_view_loads_the_demo_set(tmp_path, clock):
    from triage.web.demo import load_demo_if_empty

    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'demo.db'}", demo_data=True)
    app = make_app(settings, clock=clock)
    client = TestClient(app)
    first = client.get("/")
    assert first.status_code == 200
    app.state.web_demo_thread.join(timeout=60)
    html = client.get("/").text
    assert "演示数据" in html and "重复件" in html and "反弹" in html and "置信度低" in html
    with app.state.session_factory() as s:
        rows = s.query(Complaint).order_by(Complaint.received_at).all()
        assert len(rows) == 15 and {c.source for c in rows} == {"demo"}
        by_ext = {c.external_id: c for c in rows}
        assert by_ext["DEMO-0008"].relapse_of == by_ext["DEMO-0001"].id
        assert by_ext["DEMO-0011"].duplicate_of == by_ext["DEMO-0010"].id
        statuses = [c.status for c in rows]
        assert statuses.count("closed") == 4 and "returned" in statuses and "assigned" in statuses
        assert all(c.received_at <= clock.now for c in rows)
    assert app.state.test_sink == []  # demo closures never reach the knowledge base
    assert load_demo_if_empty(app) == 0  # not empty any more
    dash = client.get("/dashboard").text
    assert 'data-kpi="received">15<' in dash
    assert 'data-demo-count="15"' in dash  # the manager is told the figures are fictitious
    assert "含演示数据" in client.get("/report").text
    assert "含演示数据 15 件" in client.get("/dashboard.csv").text.splitlines()[1]  # the export says so too

    # Going live: `triage demo clear` deletes the demo set; a real complaint linked to a demo one keeps its row.
    from triage.queue.models import Event
    from triage.web.demo import clear_demo, cleared_marker

    with app.state.session_factory() as s:
        demo_id = s.query(Complaint.id).filter_by(external_id="DEMO-0001").scalar()
        real = Complaint(text="真实投诉：楼下饭店油烟直排", source="api", received_at=clock.now, relapse_of=demo_id)
        s.add(real)
        s.commit()
        real_id = real.id
        assert clear_demo(s, settings) == 15
    with app.state.session_factory() as s:
        assert [c.id for c in s.query(Complaint).all()] == [real_id]
        assert s.get(Complaint, real_id).relapse_of is None
        assert s.query(Event).filter_by(complaint_id=real_id, kind="demo_link_removed").count() == 1
        assert s.query(Event).count() == 1  # the demo complaints' trail went with them
        s.delete(s.get(Complaint, real_id))
        s.commit()
    assert cleared_marker(settings).exists()
    assert load_demo_if_empty(app) == 0  # empty again, but the demo set does not come back
    dash = client.get("/dashboard").text
    assert "data-demo-count" not in dash and "演示数据" not in client.get("/").text


def test_stopping_waits_for_the_demo_load(tmp_path, clock):
    # Stopping while the demo thread was inside the embedding model aborted the process at exit (SIGABRT).
    import time

    from web_support import EvidenceTriager

    class SlowTriager(EvidenceTriager):  # as slow as the real one on its first use
        def suggest(self, text, **kw):
            time.sleep(0.1)
            return super().suggest(text, **kw)

    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'stop.db'}", demo_data=True)
    app = make_app(settings, clock=clock, triager=SlowTriager())
    with TestClient(app) as client:
        assert client.get("/").status_code == 200
        thread = app.state.web_demo_thread
    assert not thread.is_alive()
    with app.state.session_factory() as s:
        assert s.query(Complaint).count() == 15


def test_no_demo_when_disabled_or_when_there_is_data(app, client, settings):
    from triage.web.demo import load_demo_if_empty

    assert load_demo_if_empty(app) == 0
    client.get("/")
    assert getattr(app.state, "web_demo", None) == "off"
    settings.demo_data = True
    intake(client, FUMES)
    assert load_demo_if_empty(app) == 0


def test_report_markdown_keeps_a_paragraph_after_a_list_out_of_it():
    from triage.web.routes import markdown_html

    html = str(markdown_html("## 一、按污染类型\n\n1. **噪声污染**：受理1件。\n从具体问题看，投诉较集中的是<b>施工噪声</b>。\n"))
    assert "</ol>\n<p>从具体问题看" in html and "&lt;b&gt;施工噪声&lt;/b&gt;" in html


def test_token_mode_pages_ask_for_a_login_and_show_nothing(tmp_path, clock):
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'tok.db'}", demo_data=True,
                        auth_mode="token")
    app = make_app(settings, clock=clock)
    client = TestClient(app)
    for path in ("/", "/complaints/1", "/dashboard", "/dashboard.csv", "/report", "/knowledge?q=噪声", "/import"):
        r = client.get(path)
        assert r.status_code == 401 and "需要登录" in r.text and "<!doctype html>" in r.text, path
    r = client.post("/import", files={"file": ("a.csv", BAD_ROWS_CSV.encode(), "text/csv")})
    assert r.status_code == 401 and app.state.test_store.count("cases") == 1
    assert client.post("/queue/accept", data={"ids": ["1"]}).status_code == 401
    with app.state.session_factory() as s:
        assert s.query(Complaint).count() == 0  # no demo load before someone is logged in


def test_cli_demo_clear_asks_first(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from triage.cli import app as cli
    from triage.db import create_all, get_engine, session_factory
    from triage.settings import get_settings
    from triage.web.demo import cleared_marker

    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TRIAGE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        engine = get_engine(get_settings())
        create_all(engine)
        with session_factory(engine)() as s:
            s.add_all([Complaint(text="演示", source="demo"), Complaint(text="真实投诉", source="web")])
            s.commit()
        runner = CliRunner()
        refused = runner.invoke(cli, ["demo", "clear"], input="n\n")
        assert refused.exit_code == 1 and "删除 1 件演示投诉" in refused.output
        assert not cleared_marker(get_settings()).exists()
        done = runner.invoke(cli, ["demo", "clear", "--yes"])
        assert done.exit_code == 0 and "已清除演示数据 1 件" in done.output
        with session_factory(engine)() as s:
            assert [c.source for c in s.query(Complaint).all()] == ["web"]
        assert cleared_marker(get_settings()).exists()
    finally:
        get_settings.cache_clear()


def test_an_article_in_force_on_the_facts_date_but_repealed_since_does_not_read_as_current():
    from datetime import date

    air = "中华人民共和国大气污染防治法"
    assert present.force_badge(air, True, today=date(2026, 11, 30)) == ("old", "事发时有效（2026年8月15日废止）")
    assert present.force_badge(air, True, today=date(2026, 8, 1)) == ("ok", "现行有效")  # before the Code
    assert present.force_badge("中华人民共和国生态环境法典", True) == ("ok", "现行有效")
    assert present.force_badge("《大气污染防治法》", False)[1] == "已废止"


def test_no_extension_form_once_the_limit_is_reached(app, client):
    cid = intake(client, FUMES)
    post(client, f"/complaints/{cid}/assign", {"action": "accept"})
    for _ in range(2):
        assert f'action="/complaints/{cid}/extend"' in client.get(f"/complaints/{cid}").text
        post(client, f"/complaints/{cid}/extend", {"reason": "需检测", "working_days": "1"})
    page = client.get(f"/complaints/{cid}").text
    assert f'action="/complaints/{cid}/extend"' not in page and f'/complaints/{cid}/extension-request"' not in page
    assert f'action="/complaints/{cid}/return"' in page  # the rest of the unit's work stays


def test_the_unit_signs_for_a_case_and_logs_its_first_contact(app, client, clock):
    cid = intake(client, FUMES)
    post(client, f"/complaints/{cid}/assign", {"action": "accept"})
    assert "待签收" in client.get("/queue").text
    page = client.get(f"/complaints/{cid}").text
    assert f'action="/complaints/{cid}/acknowledge"' in page and f'action="/complaints/{cid}/contact"' in page
    r = post(client, f"/complaints/{cid}/acknowledge")
    assert "已签收" in flashes(client.get(r.headers["location"]).text)[0]
    page = client.get(f"/complaints/{cid}").text
    assert f'action="/complaints/{cid}/acknowledge"' not in page and "待签收" not in page
    bad = client.post(f"/complaints/{cid}/contact", data={"note": "电话", "contacted_at": "2099-01-01T09:00"})
    assert bad.status_code == 422 and "联系时间不能晚于现在" in bad.text and 'value="电话"' in bad.text  # kept
    from triage.queue.sla import to_local

    clock.now += timedelta(hours=2)
    when = to_local(clock.now - timedelta(minutes=5))  # the datetime-local field sends Beijing wall time
    post(client, f"/complaints/{cid}/contact", {"note": "电话联系来电人，约定明日核查",
                                                "contacted_at": when.strftime("%Y-%m-%dT%H:%M")})
    c = load(app, cid)
    assert c.assignment.contact_note == "电话联系来电人，约定明日核查" and c.assignment.received_at is not None
    page = client.get(f"/complaints/{cid}").text
    assert f"先行联系：{when:%Y-%m-%d %H:%M}" in page and f'action="/complaints/{cid}/contact"' not in page


def test_the_unit_sees_its_reply_under_review_and_a_rejection_with_its_reason(app, client):
    """Unit staff had no 答复 section while their reply waited for review, and a 驳回 left the case reading 常规
    in their queue, the reason only at the bottom of the timeline."""
    cid = intake(client, FUMES)
    post(client, f"/complaints/{cid}/assign", {"action": "accept"})
    post(client, f"/complaints/{cid}/draft", {"findings": "现场核查属实", "result": "属实", "actions": "已责令整改"})
    assert "已责令整改</textarea>" in client.get(f"/complaints/{cid}").text  # a redraft keeps the measures
    post(client, f"/complaints/{cid}/reply", {"reply": "您好！经核查属实，已责令整改。感谢监督。", "result": "属实"})
    post(client, f"/complaints/{cid}/reject", {"reason": "请写明核查时间"})
    page = client.get(f"/complaints/{cid}").text
    assert "答复已被驳回" in page and "请写明核查时间" in page and "答复被驳回</span>" in page
    row = re.search(rf'<tr[^>]*data-id="{cid}".*?</tr>', client.get("/queue").text, re.S).group(0)
    assert "答复被驳回" in row and "常规" not in row


def test_after_demo_clear_the_first_page_does_not_say_the_demo_is_loading(tmp_path):
    from triage.web.demo import cleared_marker, ensure_demo

    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'q.db'}", demo_data=True)
    cleared_marker(settings).parent.mkdir(parents=True, exist_ok=True)
    cleared_marker(settings).write_text("cleared", encoding="utf-8")
    app = make_app(settings)
    with TestClient(app) as c:
        page = c.get("/").text
    assert "正在载入演示数据" not in page and ensure_demo(app) == "off"
