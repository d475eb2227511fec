"""The periodic work report: Chinese prose in the register of a government work report, every figure real.

``build_report(session, date_from, date_to)`` renders ``triage/templates/report.md.j2`` from
``triage.metrics.compute_metrics`` plus the relapse list; ``report_command`` does the same from settings (the
CLI's ``triage report --from --to`` calls it).
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.metrics import UNCLASSIFIED, compute_metrics, period_bounds
from triage.queue.models import Complaint, Status
from triage.queue.service import list_relapses
from triage.queue.sla import TZ

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Used when knowledge/taxonomy.yaml cannot be read.
TYPE_NAMES = {
    "noise": "噪声污染", "air": "大气污染", "water": "水污染", "solid_waste": "固体废物污染", "soil": "土壤污染",
    "radiation": "辐射污染", "ecology": "生态破坏", "not_environmental": "非环保诉求", UNCLASSIFIED: "尚未分类",
}
STATUS_TEXT = {
    Status.received.value: "正在分拣", Status.triaged.value: "等待派单", Status.assigned.value: "正在办理",
    Status.returned.value: "已退回调度重新派单", Status.replied.value: "答复待审核", Status.closed.value: "已办结",
    Status.merged.value: "已并入其他投诉办理",
}
# What a report usually proposes for the type that weighs most in the period.
TYPE_ACTIONS = {
    "noise": "加强夜间施工审批管理和对商铺音响、娱乐场所的执法巡查",
    "air": "加强对餐饮油烟、工地扬尘和露天焚烧的日常监管",
    "water": "加强对排污口、偷排漏排和生活污水外溢的排查整治",
    "solid_waste": "加强垃圾清运和建筑垃圾、渣土乱倒的巡查管控",
    "soil": "加强对疑似污染地块的排查和风险管控",
    "radiation": "加强对基站、变电站等设施的信息公开和监测解释",
    "ecology": "加强对非法采砂、毁林填湖等生态破坏行为的巡查打击",
    "not_environmental": "做好非环保诉求的甄别和及时转派，减少误派",
}

_LEAD = re.compile(r"^\s*(?:市民|群众|网友)?(?:来电|微信|网上|来信|短信|公众号|通过\S{0,6})?(?:反映|反应|投诉|举报)[:：]?\s*")
_TAIL = re.compile(r"[，,。！!；;\s]*(?:请|望|烦请|恳请)[^。！!]{0,40}?(?:核实|处理|查处|解决)[^。！!]{0,20}[。！!]?\s*(?:谢谢[！!。]?)?\s*$")


def _type_names() -> dict[str, str]:
    names = dict(TYPE_NAMES)
    try:
        from triage.taxonomy import get_taxonomy

        tax = get_taxonomy()
        for code in tax.types:
            names[code] = tax.name(code)
        names.update({code: s.name for code, s in tax.subtypes.items()})
    except Exception:  # noqa: BLE001 - the report works without the taxonomy
        pass
    return names


def cn_date(d: date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def cn_period(a: date, b: date) -> str:
    if a == b:
        return cn_date(a)
    if a.year == b.year:
        return f"{cn_date(a)}至{b.month}月{b.day}日"
    return f"{cn_date(a)}至{cn_date(b)}"


def pct(x: float | None) -> str:
    if x is None:
        return "暂无"
    v = round(x * 100, 1)
    return f"{v:.0f}%" if v == int(v) else f"{v:.1f}%"


def _gist(text: str, limit: int = 60) -> str:
    t = _LEAD.sub("", text.strip(), count=1)
    t = _TAIL.sub("", t).strip()
    t = re.sub(r"\s+", "", t)
    if len(t) > limit:
        t = t[:limit].rstrip("，,。；;、") + "……"
    return md_text(t.rstrip("。！!；;，,"))


# Only what can open a link, an image, an autolink, code or emphasis in the middle of a line: "(" without "[",
# or "#" and "+" mid-line, do nothing, and escaping them put backslashes into the downloaded text.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>!])")


def md_text(text: str) -> str:
    """A caller's words as plain text in the Markdown report: a complaint reading "[点我](http://…)" or
    "![](http://…)" became a live link and a remote image on the report page."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def _local_day(dt: datetime) -> date:
    return dt.astimezone(TZ).date()


def _next_steps(m: dict[str, Any], types: list[dict[str, Any]], units: list[dict[str, Any]],
                names: dict[str, str]) -> list[str]:
    steps: list[str] = []
    min_closed = 1 if m["closed"] < 30 else 5
    if m["overdue_open"]:
        worst = max(units, key=lambda u: u["overdue_open"], default=None)
        tail = (f"，其中{worst['unit_name']}{worst['overdue_open']}件" if worst and worst["overdue_open"] else "")
        steps.append(f"对{m['overdue_open']}件超过办理时限仍未办结的投诉逐件督办{tail}，确保尽快办结答复。")
    returned_units = sorted((u for u in units if u["returned"]), key=lambda u: (-u["returned"], u["unit_name"]))
    if returned_units:
        u = returned_units[0]
        steps.append(f"会同{u['unit_name']}等单位分析退单原因（本期该单位退单{u['returned']}件），厘清职责边界，"
                     f"减少工单来回流转。")
    # The unit with the most closures past the deadline (among units with a few closures and < 90 % on time).
    slow = sorted((u for u in units if u["closed"] >= min_closed and u["on_time_rate"] is not None
                   and u["on_time_rate"] < 0.9), key=lambda u: (-(u["closed"] - u["on_time"]), u["unit_name"]))
    if slow:
        u = slow[0]
        steps.append(f"督促{u['unit_name']}提高办理时效，本期其逾期办结{u['closed'] - u['on_time']}件，"
                     f"按时办结率为{pct(u['on_time_rate'])}。")
    if m["relapses"]:
        rel = sorted((t for t in types if t["relapses"]), key=lambda t: -t["relapses"])
        what = "、".join(t["name"] for t in rel[:2]) or "相关"
        steps.append(f"对{m['relapses']}件反弹问题（主要是{what}问题）开展“回头看”，加强日常巡查，防止问题反复。")
    if m["duplicates"]:
        steps.append(f"本期有{m['duplicates']}件重复投诉，说明部分问题群众反复来电，要加快首次办理、及时回应诉求。")
    env_types = [t for t in types if t["code"] not in ("not_environmental", UNCLASSIFIED)]
    if env_types:
        top = env_types[0]
        action = TYPE_ACTIONS.get(top["code"])
        if action:
            steps.append(f"{top['name']}投诉占比最高（{top['share']}），下一步要{action}。")
    steps.append("持续做好12345环境类投诉的受理、分拣、派单和办理工作，提高办结质量和群众满意度。")
    return steps


def build_context(session: Session, date_from: date, date_to: date, *, as_of: datetime | None = None,
                  title: str | None = None, scope: str = "", max_units: int = 10,
                  max_relapses: int = 20) -> dict[str, Any]:
    as_of = as_of or datetime.now(UTC)
    m = compute_metrics(session, date_from, date_to, as_of=as_of)
    names = _type_names()
    start, end = period_bounds(date_from, date_to)
    cohort = session.scalars(select(Complaint).where(Complaint.received_at >= start, Complaint.received_at < end,
                                                     Complaint.merged_into.is_(None))).all()
    types = []
    # Environmental types first (largest first), then non-environmental, then unclassified.
    order = {"not_environmental": 1, UNCLASSIFIED: 2}
    for t in sorted(m["by_type"], key=lambda t: (order.get(t["pollution_type"], 0), -t["received"])):
        if not t["received"]:
            continue
        types.append({**t, "code": t["pollution_type"], "name": names.get(t["pollution_type"], t["pollution_type"]),
                      "share": pct(t["received"] / m["received"]) if m["received"] else "0%"})
    sub_counts = Counter()
    for c in cohort:
        st = c.subtype or (c.suggestion.subtype if c.suggestion else None)
        if st and not st.endswith(".other") and not st.startswith("not_environmental"):
            sub_counts[st] += 1
    top_subtypes = [{"name": names.get(code, code), "count": n} for code, n in sub_counts.most_common(3) if n > 1]
    units = m["by_unit"][:max_units]
    rest = m["by_unit"][max_units:]
    others = None
    if rest:
        handled, closed = sum(u["handled"] for u in rest), sum(u["closed"] for u in rest)
        others = {"n": len(rest), "assigned": sum(u["assigned"] for u in rest), "handled": handled,
                  "closed": closed, "closure_rate": closed / handled if handled else None}
    weeks = []
    for w in m["by_week"]:
        a, b = date.fromisoformat(w["week_start"]), date.fromisoformat(w["week_end"])
        weeks.append({**w, "label": cn_period(a, b).split("年", 1)[1] if a.year == b.year else cn_period(a, b)})
    relapses: list[dict[str, Any]] = []
    for r in list_relapses(session, start=start, end=end):
        c, closed = r.complaint, r.previous_closed_at
        days = r.days_since_close
        relapses.append({
            "id": c.id, "received": cn_date(_local_day(c.received_at)), "text": _gist(c.text),
            "prev_id": r.previous.id, "prev_closed": cn_date(_local_day(closed)) if closed else "此前",
            "prev_result": md_text(r.previous_result) if r.previous_result else r.previous_result,
            "gap": ("当天" if days == 0 else f"相隔{days}天") if days is not None else "此后",
            "status_text": STATUS_TEXT.get(c.status, ""),
        })
    more_relapses = max(0, len(relapses) - max_relapses)
    relapses = relapses[:max_relapses]
    local_as_of = as_of.astimezone(TZ)
    period = cn_period(date_from, date_to)
    return {
        "m": m, "types": types, "top_subtypes": top_subtypes, "units": units, "other_units": others,
        "weeks": weeks,
        "relapses": relapses, "more_relapses": more_relapses, "n_relapses": len(relapses) + more_relapses,
        "period": period, "scope": scope,
        "not_env": next((t["received"] for t in types if t["code"] == "not_environmental"), 0),
        "title": title or f"12345环境类投诉办理情况报告（{period}）",
        "as_of_text": f"{cn_date(local_as_of.date())}{local_as_of.hour}时",
        "not_started": date_from > local_as_of.date(),
        "next_steps": _next_steps(m, types, m["by_unit"], names),
    }


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.globals["pct"] = pct
    return env


def build_report(session: Session, date_from: date, date_to: date, *, as_of: datetime | None = None,
                 title: str | None = None, scope: str = "") -> str:
    """The report for complaints received from ``date_from`` to ``date_to`` (Beijing dates, inclusive)."""
    ctx = build_context(session, date_from, date_to, as_of=as_of, title=title, scope=scope)
    text = _env().get_template("report.md.j2").render(**ctx)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def report_command(date_from: str | date, date_to: str | date, settings=None, *,
                   as_of: datetime | None = None) -> str:
    """What ``triage report --from --to`` prints: opens the configured database and builds the report."""
    from triage.db import create_all, get_engine, session_factory
    from triage.settings import get_settings

    a = date.fromisoformat(date_from) if isinstance(date_from, str) else date_from
    b = date.fromisoformat(date_to) if isinstance(date_to, str) else date_to
    settings = settings or get_settings()
    engine = get_engine(settings)
    create_all(engine)
    with session_factory(engine)() as session:
        return build_report(session, a, b, as_of=as_of)
