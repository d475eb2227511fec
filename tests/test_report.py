"""The work report: Chinese prose with the real figures of the scripted batch (see test_metrics.py)."""

from __future__ import annotations

import re
from datetime import date

from conftest import bj
from test_metrics import batch  # noqa: F401 - the scripted batch fixture

from triage.report import build_report, cn_period, pct, report_command


def test_report_has_the_figures(session, batch):  # noqa: F811
    text = build_report(session, date(2026, 11, 2), date(2026, 11, 15), as_of=bj(2026, 11, 20, 12))
    print(text)
    assert text.startswith("# 12345环境类投诉办理情况报告（2026年11月2日至11月15日）")
    assert "2026年11月2日至11月15日，共受理12345环境类投诉6件（另有重复件1件已并入原件办理，不重复计数）" in text
    assert "已办结4件，12345办结率66.7%；其中按期办结3件，按时办结率75%" in text
    assert "派单5件，承办单位退单1件，退单率20%；经批准延期1件。" in text
    assert "重办1件，重办率20%" in text and "反弹）1件" in text
    assert "尚有2件已超过办理时限仍未办结" in text
    assert "**大气污染**：受理3件，占50%；办结2件，办结率66.7%，按时办结率100%；重复件1件；反弹1件。" in text
    assert "**尚未分类**：受理1件" in text
    assert text.index("**水污染**") < text.index("**尚未分类**")  # environmental types first
    assert "**测试区urban_management**：派至该单位4件，现由其承办3件，已办结2件，办结率66.7%，按时办结率100%；" \
           "退单1件，退单率25%；超期未办结1件。" in text
    assert "11月2日至11月8日：受理4件，办结3件（办结率75%），重复件1件。" in text
    assert re.search(r"2026年11月10日受理的第\d+号投诉：石潭路88号那家烧烤店整改后又开始油烟直排了。"
                     r"该处同类问题已于2026年11月5日办结（第\d+号，核查结果“属实”），相隔5天再次被投诉，目前已办结。", text)
    assert "督促测试区ecology_environment提高办理时效，本期其逾期办结1件，按时办结率为0%。" in text
    assert "大气污染投诉占比最高（50%）" in text
    for placeholder in ("xx", "XX", "{{", "}}", "None", "暂无", "nan"):
        assert placeholder not in text
    assert "数据截至2026年11月20日12时" in text


def test_empty_period_reads_well(session):
    text = build_report(session, date(2026, 12, 1), date(2026, 12, 31), as_of=bj(2027, 1, 2, 9))
    assert "2026年12月1日至12月31日，未受理12345环境类投诉。" in text
    assert "None" not in text and "暂无" not in text
    ahead = build_report(session, date(2026, 12, 1), date(2026, 12, 31), as_of=bj(2026, 11, 30, 9))
    assert "统计期间尚未开始" in ahead


def test_a_period_with_only_duplicates_does_not_say_nothing_was_received(session, batch):  # noqa: F811
    """C (received 11-03) was merged into A (11-02): a report of 11-03 alone used to read
    “共受理…0件（另有重复件1件…），本期未受理投诉。”"""
    text = build_report(session, date(2026, 11, 3), date(2026, 11, 3), as_of=bj(2026, 11, 20, 12))
    assert "收到12345环境类投诉1件，均为此前投诉的重复件，已并入原件办理，不另计受理量。" in text
    assert "未受理" not in text and "0件" not in text


def test_helpers_and_command(settings, batch):  # noqa: F811
    assert pct(0.66666) == "66.7%" and pct(1.0) == "100%" and pct(0.0) == "0%"
    assert cn_period(date(2026, 12, 28), date(2027, 1, 3)) == "2026年12月28日至2027年1月3日"
    text = report_command("2026-11-02", "2026-11-15", settings, as_of=bj(2026, 11, 20, 12))
    assert "共受理12345环境类投诉6件" in text


def test_report_over_http(client, batch):  # noqa: F811
    r = client.get("/api/report", params={"from": "2026-11-02", "to": "2026-11-15"})
    assert r.status_code == 200 and "共受理12345环境类投诉6件" in r.text


def test_many_units_are_summarised(session, batch):  # noqa: F811
    from triage.report import build_context

    ctx = build_context(session, date(2026, 11, 2), date(2026, 11, 15), as_of=bj(2026, 11, 20, 12), max_units=1)
    assert [u["unit_type"] for u in ctx["units"]] == ["urban_management"]
    assert ctx["other_units"] == {"n": 2, "assigned": 2, "handled": 2, "closed": 2, "closure_rate": 1.0}


def test_the_cli_refuses_a_mistyped_year_with_a_reason(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from triage.cli import app

    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path))
    r = CliRunner().invoke(app, ["report", "--from", "2026-11-01", "--to", "2099-12-31"])
    assert r.exit_code == 2 and "最长 3 年" in r.output and "Traceback" not in r.output
    for first, last in (("0001-01-01", "0001-01-01"), ("9999-12-31", "9999-12-31")):  # overflowed the bounds
        r = CliRunner().invoke(app, ["report", "--from", first, "--to", last])
        assert r.exit_code == 2 and "1970–2200" in r.output, r.output


def test_a_callers_markdown_stays_text_in_the_report():
    """A relapse's complaint text is quoted in the report: "[点我](http://…)![t](http://….png)" became a live link
    and a remote image on the report page."""
    from triage.report import _gist
    from triage.web.routes import markdown_html

    words = "[点我](http://evil.example/p)![t](http://evil.example/t.png) 烧烤店*油烟*直排 <b>x</b>"
    html = markdown_html(f"1. 第3号投诉：{_gist(words, limit=200)}。")
    assert "<a" not in html and "<img" not in html and "<em>" not in html and "<b>" not in html
    assert "[点我](http://evil.example/p)![t](http://evil.example/t.png)烧烤店*油烟*直排" in html
    assert _gist("噪声达到(70分贝)#3栋+5楼", limit=200) == "噪声达到(70分贝)#3栋+5楼"  # harmless marks left alone


def test_the_not_ours_count_says_where_it_is_the_systems_reading(session):
    """"经甄别属非环保诉求47件" read as people's screening, though most were the model's unreviewed suggestions."""
    from conftest import FakeTriager

    from triage.queue import service

    class NotOurs(FakeTriager):
        def suggest(self, text, **kw):
            return super().suggest(text, **kw).model_copy(update={
                "pollution_type": "not_environmental", "subtype": "", "unit_type": "dispatch_center"})

    service.intake(session, text="咨询户口迁移需要哪些材料", triager=NotOurs(), now=bj(2026, 12, 2, 10))
    session.commit()
    text = build_report(session, date(2026, 12, 1), date(2026, 12, 31), as_of=bj(2026, 12, 3, 9))
    assert "其中分拣为非环保诉求1件（尚未派单的按系统建议计）" in text and "经甄别" not in text
