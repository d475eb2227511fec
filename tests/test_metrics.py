"""Every figure of /api/metrics against hand-computed values for a small scripted batch.

Period 2026-11-02 (Mon) … 2026-11-15 (Sun), read on 2026-11-20 12:00 (Beijing):

| id | received | story                                                            | in cohort |
|----|----------|------------------------------------------------------------------|-----------|
| I  | 11-01    | closed the same day (before the period)                          | no        |
| A  | 11-02    | air, urban_management, closed 11-05 (deadline 11-09): on time     | yes       |
| B  | 11-02    | noise, returned by urban_management, re-assigned to ecology_env., | yes       |
|    |          | closed 11-12 after its deadline 11-10: late                      |           |
| C  | 11-03    | duplicate of A, merged; closes with A                            | no (dup)  |
| D  | 11-04    | water, deadline 11-11, extended 2 working days → 11-13, closed    | yes       |
|    |          | 11-13: on time                                                   |           |
| E  | 11-06    | triage fails: stays received, provisional deadline 11-13: overdue | yes       |
| F  | 11-09    | air, closed 11-10, reopened 11-12 (deadline 11-19): open, overdue | yes       |
| G  | 11-10    | relapse of A (same shop), closed 11-11: on time                   | yes       |
| H  | 11-16    | after the period                                                 | no        |
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from conftest import bj

A_TEXT = "市民来电反映：白云区石井街石潭路88号楼下烧烤店油烟直排，熏得无法开窗，请城管核实处理！"
SHOP = "白云区石井街石潭路88号"


def act(client, clock, when, path, body=None, expect=200, actor="调度员"):
    clock.now = when
    r = client.post(path, json=body, headers={"X-Actor": quote(actor)})
    assert r.status_code == expect, r.text
    return r.json()


@pytest.fixture
def batch(client, clock, triager):
    ids = {}

    def new(key, when, text, address=None):
        ids[key] = act(client, clock, when, "/api/complaints", {"text": text, "address": address}, expect=201)["id"]
        return ids[key]

    i = new("I", bj(2026, 11, 1, 9), "市民来电反映：白云区太和镇龙归路9号KTV音响噪音扰民。")
    act(client, clock, bj(2026, 11, 1, 9, 30), f"/api/complaints/{i}/assign")
    act(client, clock, bj(2026, 11, 1, 20), f"/api/complaints/{i}/close", {"reply": "已劝导。", "result": "属实"})

    a = new("A", bj(2026, 11, 2, 9), A_TEXT, SHOP)
    act(client, clock, bj(2026, 11, 2, 9, 30), f"/api/complaints/{a}/assign")
    b = new("B", bj(2026, 11, 2, 10), "市民来电反映：白云区均禾街清湖村新市场旁工地施工噪音扰民，请核实处理。")
    act(client, clock, bj(2026, 11, 2, 10, 30), f"/api/complaints/{b}/assign")
    act(client, clock, bj(2026, 11, 3, 9), f"/api/complaints/{b}/return", {"reason": "噪声执法属生态环境部门"})
    act(client, clock, bj(2026, 11, 3, 10), f"/api/complaints/{b}/assign", {"unit_type": "ecology_environment"})
    c = new("C", bj(2026, 11, 3, 11), A_TEXT.replace("来电", "微信"), "石潭路88号")
    act(client, clock, bj(2026, 11, 3, 12), f"/api/complaints/{c}/merge", {"parent_id": a})
    d = new("D", bj(2026, 11, 4, 9), "市民来电反映：白云区嘉禾街望岗村排污口生活污水外溢，臭不可闻。")
    act(client, clock, bj(2026, 11, 4, 10), f"/api/complaints/{d}/assign")
    act(client, clock, bj(2026, 11, 5, 15), f"/api/complaints/{a}/close", {"reply": "已责令整改。", "result": "属实"})
    triager.fail = True
    new("E", bj(2026, 11, 6, 9), "市民来电反映：白云区永平街东平村路口垃圾堆积无人清运。")
    triager.fail = False
    f = new("F", bj(2026, 11, 9, 9), "市民来电反映：白云区新市街齐富路12号饭店油烟直排扰民，请核实处理！", "齐富路12号")
    act(client, clock, bj(2026, 11, 9, 10), f"/api/complaints/{f}/assign")
    act(client, clock, bj(2026, 11, 10, 9), f"/api/complaints/{d}/extend", {"reason": "需委托监测", "working_days": 2})
    act(client, clock, bj(2026, 11, 10, 16), f"/api/complaints/{f}/close", {"reply": "已处理。", "result": "部分属实"})
    g = new("G", bj(2026, 11, 10, 9, 30), "市民来电反映：石潭路88号那家烧烤店整改后又开始油烟直排了。", SHOP)
    act(client, clock, bj(2026, 11, 10, 10), f"/api/complaints/{g}/assign")
    act(client, clock, bj(2026, 11, 11, 10), f"/api/complaints/{g}/close", {"reply": "再次责令整改。", "result": "属实"})
    act(client, clock, bj(2026, 11, 12, 10), f"/api/complaints/{f}/reopen", {"reason": "市民反映油烟依旧"})
    act(client, clock, bj(2026, 11, 12, 15), f"/api/complaints/{b}/close", {"reply": "已责令停止夜间施工。", "result": "属实"})
    act(client, clock, bj(2026, 11, 13, 10), f"/api/complaints/{d}/close", {"reply": "已封堵排污口。", "result": "属实"})
    h = new("H", bj(2026, 11, 16, 9), "市民来电反映：白云区人和镇鹤龙路5号工厂废气。")
    act(client, clock, bj(2026, 11, 16, 10), f"/api/complaints/{h}/assign")
    clock.now = bj(2026, 11, 20, 12)
    return ids


def test_batch_story(client, batch):
    g = client.get(f"/api/complaints/{batch['G']}").json()["complaint"]
    assert g["relapse_of"] == batch["A"] and g["duplicate_of"] is None
    c = client.get(f"/api/complaints/{batch['C']}").json()["complaint"]
    assert (c["status"], c["merged_into"]) == ("closed", batch["A"])
    e = client.get(f"/api/complaints/{batch['E']}").json()["complaint"]
    assert e["status"] == "received" and e["deadline"].startswith("2026-11-13")


def test_metrics_figures(client, batch):
    m = client.get("/api/metrics", params={"from": "2026-11-02", "to": "2026-11-15"}).json()
    top = {k: m[k] for k in ("received", "closed", "closure_rate", "on_time", "on_time_rate", "assigned", "returned",
                             "return_rate", "reopened", "reopen_rate", "extended", "extension_rate", "duplicates",
                             "duplicates_flagged", "relapses", "overdue_open")}
    assert top == {
        "received": 6,  # A B D E F G
        "closed": 4,  # A B D G (F was reopened)
        "closure_rate": 0.6667,
        "on_time": 3,  # A, D (within its extension), G; B late
        "on_time_rate": 0.75,
        "assigned": 5,  # all but E
        "returned": 1,  # B
        "return_rate": 0.2,
        "reopened": 1,  # F
        "reopen_rate": 0.2,  # F / (A B D F G closed at least once)
        "extended": 1,
        "extension_rate": 0.2,
        "duplicates": 1,  # C
        "duplicates_flagged": 0,
        "relapses": 1,  # G
        "overdue_open": 2,  # E (11-13), F (11-19)
    }
    by_type = {t["pollution_type"]: t for t in m["by_type"]}
    assert [t["pollution_type"] for t in m["by_type"]] == ["air", "noise", "unclassified", "water"]
    assert {k: by_type["air"][k] for k in ("received", "closed", "closure_rate", "on_time", "on_time_rate",
                                           "duplicates", "relapses", "reopened")} == {
        "received": 3, "closed": 2, "closure_rate": 0.6667, "on_time": 2, "on_time_rate": 1.0, "duplicates": 1,
        "relapses": 1, "reopened": 1}
    assert (by_type["noise"]["received"], by_type["noise"]["closed"], by_type["noise"]["on_time_rate"],
            by_type["noise"]["returned"]) == (1, 1, 0.0, 1)
    assert (by_type["water"]["closed"], by_type["water"]["on_time_rate"], by_type["water"]["extended"]) == (1, 1.0, 1)
    assert (by_type["unclassified"]["received"], by_type["unclassified"]["closure_rate"],
            by_type["unclassified"]["on_time_rate"]) == (1, 0.0, None)

    units = [(u["unit_type"], u["unit_name"], u["assigned"], u["handled"], u["closed"], u["closure_rate"],
              u["on_time"], u["on_time_rate"], u["returned"], u["return_rate"], u["extended"], u["reopened"],
              u["overdue_open"]) for u in m["by_unit"]]
    assert units == [
        ("urban_management", "测试区urban_management", 4, 3, 2, 0.6667, 2, 1.0, 1, 0.25, 0, 1, 1),  # A B F G
        ("ecology_environment", "测试区ecology_environment", 1, 1, 1, 1.0, 0, 0.0, 0, 0.0, 0, 0, 0),  # B
        ("water_affairs", "测试区water_affairs", 1, 1, 1, 1.0, 1, 1.0, 0, 0.0, 1, 0, 0),  # D
    ]
    weeks = [(w["week_start"], w["week_end"], w["received"], w["closed"], w["closure_rate"], w["on_time"],
              w["on_time_rate"], w["returned"], w["relapses"], w["duplicates"]) for w in m["by_week"]]
    assert weeks == [
        ("2026-11-02", "2026-11-08", 4, 3, 0.75, 2, 0.6667, 1, 0, 1),  # A B D E (+C)
        ("2026-11-09", "2026-11-15", 2, 1, 0.5, 1, 1.0, 0, 1, 0),  # F G
    ]


def test_period_edges_and_empty_period(client, batch):
    one_day = client.get("/api/metrics", params={"from": "2026-11-16", "to": "2026-11-16"}).json()
    assert (one_day["received"], one_day["closed"], one_day["closure_rate"]) == (1, 0, 0.0)  # H
    assert one_day["on_time_rate"] is None and one_day["by_week"][0]["week_start"] == "2026-11-16"
    empty = client.get("/api/metrics", params={"from": "2026-12-01", "to": "2026-12-31"}).json()
    assert (empty["received"], empty["closure_rate"], empty["by_type"], empty["by_unit"]) == (0, None, [], [])
    assert len(empty["by_week"]) == 5  # weeks starting 11-30 (clipped to 12-01), 12-07, 12-14, 12-21, 12-28
    contract = {"received", "closed", "closure_rate", "on_time_rate", "return_rate", "by_unit", "by_type"}
    assert contract <= set(empty)


def test_as_of_leaves_out_later_closures(session, client, batch):
    from datetime import date

    from triage.metrics import compute_metrics

    m = compute_metrics(session, date(2026, 11, 2), date(2026, 11, 15), as_of=bj(2026, 11, 11, 23))
    # By 11-11 23:00: A (11-05) and G (11-11) closed; F's closure (11-10) was later undone by the reopen.
    assert (m["received"], m["closed"], m["on_time"]) == (6, 2, 2)


def test_first_contact_figures(client, clock):
    """先行联系: per dispatch. Period 11-02 … 11-08, read 11-11 12:00; contact deadline = 1 working day.

    P contacted on time; Q contacted late; R never contacted; S returned before its contact deadline (owes none),
    then re-dispatched to ecology and contacted on time. Due 4 (P Q R S'), on time 2, recorded 3."""
    def dispatch(key, hour, unit=None):
        cid = act(client, clock, bj(2026, 11, 2, hour), "/api/complaints",
                  {"text": f"市民来电反映：白云区石井街石潭路{hour}号楼下烧烤店油烟直排。"}, expect=201)["id"]
        act(client, clock, bj(2026, 11, 2, hour, 30), f"/api/complaints/{cid}/assign",
            {"unit_type": unit} if unit else None)
        return cid

    p, q, r, s = (dispatch(k, h) for k, h in (("P", 9), ("Q", 10), ("R", 11), ("S", 12)))
    act(client, clock, bj(2026, 11, 2, 15), f"/api/complaints/{s}/return", {"reason": "属环保职责"}, actor="城管")
    act(client, clock, bj(2026, 11, 2, 16), f"/api/complaints/{s}/assign", {"unit_type": "ecology_environment"})
    act(client, clock, bj(2026, 11, 3, 9), f"/api/complaints/{s}/contact", {"note": "电话联系"}, actor="环保")
    act(client, clock, bj(2026, 11, 3, 10), f"/api/complaints/{p}/contact", {"note": "电话联系"}, actor="城管")
    act(client, clock, bj(2026, 11, 5, 10), f"/api/complaints/{q}/contact", {"note": "电话联系"}, actor="城管")
    later = act(client, clock, bj(2026, 11, 9, 9), "/api/complaints", {"text": "市民来电反映：齐富路饭店油烟直排。"},
                expect=201)["id"]
    act(client, clock, bj(2026, 11, 9, 9, 30), f"/api/complaints/{later}/assign")  # contact due 11-10
    clock.now = bj(2026, 11, 11, 12)

    m = client.get("/api/metrics", params={"from": "2026-11-02", "to": "2026-11-08"}).json()
    assert (m["contacted"], m["contact_due"], m["contact_on_time"], m["contact_on_time_rate"]) == (3, 4, 2, 0.5)
    units = {u["unit_type"]: (u["contacted"], u["contact_due"], u["contact_on_time"], u["contact_on_time_rate"])
             for u in m["by_unit"]}
    assert units == {"urban_management": (2, 3, 1, 0.3333), "ecology_environment": (1, 1, 1, 1.0)}
    report = client.get("/api/report", params={"from": "2026-11-02", "to": "2026-11-08"}).text
    assert "应在时限内先行联系来电人4件次，按时联系2件次，先行联系及时率50%" in report

    # A period whose dispatches logged no contact (an office not using the step) reports no 0% rate.
    quiet = client.get("/api/metrics", params={"from": "2026-11-09", "to": "2026-11-09"}).json()
    assert (quiet["contacted"], quiet["contact_due"], quiet["contact_on_time_rate"]) == (0, 1, 0.0)
    assert "先行联系" not in client.get("/api/report", params={"from": "2026-11-09", "to": "2026-11-09"}).text
    page = client.get("/dashboard", params={"from": "2026-11-09", "to": "2026-11-09"}).text
    assert "本期未登记先行联系" in page and 'data-kpi="contact_on_time_rate"' not in page


def test_units_are_judged_on_their_own_time_and_their_own_closures(client, clock):
    """Per unit: a reply sent in time counts as on time even when the dispatcher approves it after the deadline
    (the office's own 按时办结率 still counts the closure as late), a reply waiting for review is not the unit's
    overdue case, and a 重办 is charged to the unit whose closure failed, not to the one it was re-sent to."""
    def new(hour, text):
        cid = act(client, clock, bj(2026, 11, 2, hour), "/api/complaints", {"text": text}, expect=201)["id"]
        act(client, clock, bj(2026, 11, 2, hour, 30), f"/api/complaints/{cid}/assign")  # due 11-09
        return cid

    late_review = new(9, "市民来电反映：白云区石井街石潭路88号楼下烧烤店油烟直排。")
    waiting = new(10, "市民来电反映：白云区新市街齐富路12号饭店油烟直排扰民。")
    moved = new(11, "市民来电反映：白云区嘉禾街望岗村路口饭店油烟直排。")
    for cid in (late_review, waiting):
        act(client, clock, bj(2026, 11, 9, 16), f"/api/complaints/{cid}/reply",
            {"reply": "已责令安装油烟净化设施。", "result": "属实"}, actor="城管")
    act(client, clock, bj(2026, 11, 10, 9), f"/api/complaints/{late_review}/close",
        {"reply": "已责令安装油烟净化设施。", "result": "属实"})
    act(client, clock, bj(2026, 11, 3, 9), f"/api/complaints/{moved}/close", {"reply": "已劝导。", "result": "属实"})
    act(client, clock, bj(2026, 11, 4, 9), f"/api/complaints/{moved}/reopen",
        {"reason": "油烟依旧，属生态环境职责", "unit_type": "ecology_environment"})
    clock.now = bj(2026, 11, 20, 12)

    m = client.get("/api/metrics", params={"from": "2026-11-02", "to": "2026-11-02"}).json()
    assert (m["closed"], m["on_time"], m["overdue_open"]) == (1, 0, 2)  # the office: approved late; two open
    units = {u["unit_type"]: u for u in m["by_unit"]}
    cg, eco = units["urban_management"], units["ecology_environment"]
    assert (cg["handled"], cg["closed"], cg["on_time"], cg["overdue_open"], cg["reopened"]) == (2, 1, 1, 0, 1)
    assert (eco["handled"], eco["overdue_open"], eco["reopened"]) == (1, 1, 0)
