"""How things read on the pages: Chinese names of codes, Beijing times, deadline countdowns, percentages."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from triage.auth.models import ROLE_ZH  # one naming of the roles for every page
from triage.queue.service import ACTION_ZH, STATUS_ZH, UNIT_KIND_NAMES
from triage.queue.sla import Sla, local_date, to_local

UNCLASSIFIED_ZH = "未分类"

EVENT_ZH = {
    **ACTION_ZH,
    "intake": "受理", "triage_failed": "自动分拣失败", "reassign": "改派", "merge_child": "并入重复件",
    "flag_duplicate": "标记疑似重复", "flag_relapse": "标记反弹", "case_learned": "纳入历史案例库",
    "case_sink_failed": "纳入案例库失败", "case_not_learnable": "不纳入案例库（内容不合格）", "demo_link_removed": "演示数据已清除",
    "extension_requested": "申请延期", "extension_denied": "不同意延期", "extension_lapsed": "延期申请失效",
    "contact": "先行联系",
}
RESULTS = ("属实", "部分属实", "不属实")


def zh(message: str | None) -> str:
    """The Chinese half of a service message ("中文 / English")."""
    if not message:
        return ""
    return message.split(" / ", 1)[0].strip()


def taxonomy():
    try:
        from triage.taxonomy import get_taxonomy

        return get_taxonomy()
    except Exception:  # noqa: BLE001 - names are a convenience; codes still show
        return None


def type_name(code: str | None) -> str:
    if not code or code == "unclassified":
        return UNCLASSIFIED_ZH
    tax = taxonomy()
    return tax.name(code) if tax is not None else code


def role_name(role: str | None) -> str:
    return ROLE_ZH.get(role or "", role or "")


def unit_kind_name(code: str | None) -> str:
    if not code:
        return "—"
    return UNIT_KIND_NAMES.get(code, code)


def status_name(code: str | None) -> str:
    return STATUS_ZH.get(code or "", code or "—")


def event_name(kind: str) -> str:
    return EVENT_ZH.get(kind, kind)


def fmt_dt(dt: datetime | str | None, with_time: bool = True) -> str:
    if dt is None or dt == "":
        return "—"
    if isinstance(dt, str):
        try:
            dt = datetime.fromisoformat(dt)
        except ValueError:
            return dt
    local = to_local(dt)
    return local.strftime("%Y-%m-%d %H:%M") if with_time else local.strftime("%Y-%m-%d")


def pct(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x * 100:.1f}%"


@dataclass
class Countdown:
    text: str
    kind: str  # overdue | soon | ok | none
    hours_mode: bool = False  # shown in hours: the page's script keeps it current


def countdown(deadline: datetime | None, now: datetime, sla: Sla, *, open_: bool = True) -> Countdown:
    """剩余/超期 N 个工作日, or hours when less than a day (or no working day) lies between."""
    if deadline is None:
        return Countdown("未定期限", "none")
    if not open_:
        return Countdown(f"期限 {fmt_dt(deadline)}", "none")
    delta = deadline - now
    if delta >= timedelta(0):
        days = sla.calendar.working_days_between(local_date(now), local_date(deadline))
        kind = "soon" if sla.is_due_soon(deadline, now) else "ok"
        if delta < timedelta(hours=24) or days < 1:
            return Countdown(f"剩余 {_hours(delta)}", kind, True)
        return Countdown(f"剩余 {days} 个工作日", kind)
    late = -delta
    days = sla.calendar.working_days_between(local_date(deadline), local_date(now))
    if late < timedelta(hours=24) or days < 1:
        return Countdown(f"超期 {_hours(late)}", "overdue", True)
    return Countdown(f"超期 {days} 个工作日", "overdue")


def _hours(d: timedelta) -> str:
    h = d.total_seconds() / 3600
    if h < 1:
        return "不足 1 小时"
    return f"{math.floor(h)} 小时"


def confidence_text(x: float | None) -> str:
    """A probability as a percentage; never a bare 100% or 0% (it is an estimate)."""
    if x is None:
        return "—"
    if x > 0.99:
        return ">99%"
    if x < 0.01:
        return "<1%"
    return f"{x * 100:.0f}%"


def event_details(kind: str, data: dict[str, Any]) -> str:
    """One line about what an event changed (the units, labels and deadlines it carries)."""
    data = data or {}
    parts: list[str] = []
    if kind in ("assign", "reassign"):
        parts.append(f"承办单位：{data.get('unit_name') or unit_kind_name(data.get('unit_type'))}")
        if data.get("pollution_type"):
            parts.append(f"类型：{type_name(data.get('subtype') or data.get('pollution_type'))}")
        if data.get("accepted_suggestion") is True:
            parts.append("采纳系统建议")
        elif data.get("suggested"):
            parts.append("调度员改判")
        if data.get("deadline"):
            parts.append(f"期限：{fmt_dt(data['deadline'])}")
    elif kind == "triage":
        parts.append(f"建议：{type_name(data.get('subtype') or data.get('pollution_type'))} → "
                     f"{unit_kind_name(data.get('unit_type'))}")
        if data.get("confidence") is not None:
            parts.append(f"置信度 {confidence_text(data.get('confidence'))}")
    elif kind == "extend":
        parts.append(f"期限 {fmt_dt(data.get('old_deadline'))} → {fmt_dt(data.get('new_deadline'))}")
        if data.get("requested_by"):
            parts.append(f"同意 {data['requested_by']} 的延期申请")
    elif kind in ("extension_requested", "extension_denied"):
        parts.append(f"申请延至 {fmt_dt(data.get('requested_deadline'))}")
    elif kind == "acknowledge":
        parts.append(f"签收单位：{data.get('unit_name') or unit_kind_name(data.get('unit_type'))}")
    elif kind == "contact":
        parts.append(f"联系时间：{fmt_dt(data.get('contacted_at'))}")
        if data.get("contact_deadline"):
            parts.append("按时" if data.get("on_time") else f"超过期限 {fmt_dt(data['contact_deadline'])}")
    elif kind == "close":
        if data.get("result"):
            parts.append(f"核查结果：{data['result']}")
        if data.get("on_time") is not None:
            parts.append("按时办结" if data["on_time"] else "超期办结")
    elif kind in ("reply", "reject_reply") and data.get("result"):
        parts.append(f"{'被驳回的' if kind == 'reject_reply' else ''}核查结果：{data['result']}")
    elif kind == "reopen":
        parts.append(f"重办单位：{unit_kind_name(data.get('unit_type'))}")
    elif kind == "merge" and data.get("parent_id"):
        parts.append(f"并入投诉 #{data['parent_id']}")
    elif kind == "merge_child" and data.get("child_id"):
        parts.append(f"重复件 #{data['child_id']} 并入本件")
    elif kind == "intake" and data.get("source"):
        parts.append(f"来源：{source_name(data['source'])}")
    elif kind == "draft" and data.get("generator"):
        parts.append(f"起草方式：{generator_name(data['generator'])}")
    return "；".join(parts)


SOURCE_ZH = {"api": "接口", "web": "网页登记", "demo": "演示数据", "import": "批量导入", "open311": "Open311",
             "phone": "电话", "closed": "办结案件"}


def source_name(code: str | None) -> str:
    return SOURCE_ZH.get(code or "", code or "—")


def generator_name(code: str | None) -> str:
    if not code:
        return "—"
    if code == "template":
        return "模板起草"
    if code == "staff":
        return "人工撰写"
    if code.startswith("llm:"):
        return f"大模型起草（{code[4:]}）"
    if code.startswith("merged:"):
        return f"随主件 #{code[7:]} 答复"
    return code


def force_badge(law: str, in_force: bool | None, today: date | None = None) -> tuple[str, str]:
    """(css kind, words) for an article cited on the date of the facts. An article in force then but repealed
    since (the single laws the Code replaced, on an older case) must not read as 现行有效."""
    from triage.kb.regulations import KNOWN_REPEALS, law_key

    if not in_force:
        return "repealed", "已废止"
    repeals = {law_key(name): day for name, day in KNOWN_REPEALS.items()}
    day = repeals.get(law_key(law or ""))
    if day is not None and (today or date.today()) >= day:
        return "old", f"事发时有效（{day.year}年{day.month}月{day.day}日废止）"
    return "ok", "现行有效"
