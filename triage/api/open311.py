"""Open311 GeoReport v2 under ``/open311/v2`` (JSON and XML), on top of the normal intake and queue.

| GeoReport                                  | here                                                         |
|--------------------------------------------|--------------------------------------------------------------|
| service_code / service_name / group        | taxonomy subtype code / its Chinese name / its pollution type |
| POST description, address_string, lat/long | complaint text, address (coordinates appended), source=open311 |
| POST requested_datetime                    | occurred_at (when the citizen reported it upstream)            |
| GET status open/closed, status_notes       | closed = 办结; every other state is open; notes in Chinese      |
| agency_responsible                         | the unit the complaint is assigned to (its real name)          |
| requested / updated / expected_datetime    | received_at / last change / the deadline in force              |

``jurisdiction_id`` must name a jurisdiction of knowledge/routing.yaml; this deployment serves
``TRIAGE_JURISDICTION`` and answers 404 (Open311 error body) for any other, as it does for unknown ids.
Errors are ``[{"code": …, "description": …}]`` or ``<errors><error>…</error></errors>``; bad input is 400.
In token mode the request routes need a token (``Authorization: Bearer`` or ``api_key``); the service list is
public. Times are ISO 8601 in Beijing time (+08:00).
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from typing import Annotated, Any
from xml.etree import ElementTree as ET

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session, selectinload

from triage.api.deps import get_actor, get_now, get_session, get_settings_dep, get_sla_dep, get_triager
from triage.auth.deps import get_unit_scope
from triage.queue import service
from triage.queue.models import Assignment, Complaint, Event, Status, Suggestion
from triage.queue.service import STATUS_ZH, DomainError, InvalidInput, NotFound
from triage.queue.sla import TZ, Sla
from triage.settings import Settings

router = APIRouter(prefix="/open311/v2", tags=["open311"])

FORMATS = ("json", "xml")
MAX_RESULTS = 1000
# The schema names the two formats (clients and fuzzers pick them); any other answers 404 in Open311's format.
Fmt = Annotated[str, Path(description="json 或 xml", json_schema_extra={"enum": list(FORMATS)})]
DEFAULT_WINDOW = timedelta(days=90)
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# ------------------------------------------------------------------------------------------ rendering
def _xml_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return _XML_BAD.sub("", str(v))


def _xml(root: str, item: str, rows: list[dict[str, Any]]) -> bytes:
    top = ET.Element(root)
    for row in rows:
        el = ET.SubElement(top, item)
        for k, v in row.items():
            child = ET.SubElement(el, k)
            if v is not None:
                child.text = _xml_text(v)
    return ET.tostring(top, encoding="utf-8", xml_declaration=True)


def render(fmt: str, root: str, item: str, rows: list[dict[str, Any]], status: int = 200) -> Response:
    if fmt == "xml":
        return Response(_xml(root, item, rows), status_code=status, media_type="text/xml; charset=utf-8")
    return JSONResponse(rows, status_code=status)


def open311_error(path: str, status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    code = 400 if status == 422 else status  # GeoReport knows 400 for bad input
    rows = [{"code": code, "description": detail}]
    if path.endswith(".xml"):
        return Response(_xml("errors", "error", rows), status_code=code, media_type="text/xml; charset=utf-8",
                        headers=headers)
    return JSONResponse(rows, status_code=code, headers=headers)


class Open311Error(DomainError):
    status_code = 400


def _fmt(fmt: str) -> str:
    if fmt not in FORMATS:
        raise NotFound(f"不支持的格式 {fmt!r}，只支持 .json 和 .xml / unknown format; use .json or .xml")
    return fmt


def _bj(dt: datetime | None) -> str | None:
    return dt.astimezone(TZ).isoformat(timespec="seconds") if dt is not None else None


# ------------------------------------------------------------------------------------------ jurisdiction
def check_jurisdiction(jurisdiction_id: str | None, settings: Settings) -> str:
    served = settings.jurisdiction
    if jurisdiction_id is None or jurisdiction_id == "":
        return served
    from triage.classify.routing import get_routing

    known = get_routing(settings.knowledge_dir / "routing.yaml").jurisdictions
    if jurisdiction_id not in known:
        raise NotFound(f"未知的辖区 jurisdiction_id {jurisdiction_id!r} / unknown jurisdiction_id; "
                       f"known: {', '.join(sorted(known))}")
    if jurisdiction_id != served:
        raise NotFound(f"本系统受理 {served}，不受理 {jurisdiction_id} / this endpoint serves jurisdiction "
                       f"{served!r}, not {jurisdiction_id!r}")
    return served


def _taxonomy(settings: Settings):
    from triage.taxonomy import NOT_ENV, get_taxonomy

    return get_taxonomy(settings.knowledge_dir / "taxonomy.yaml"), NOT_ENV


def _services(settings: Settings) -> list[dict[str, Any]]:
    tax, not_env = _taxonomy(settings)
    out = []
    for code, sub in tax.subtypes.items():
        if sub.type == not_env:
            continue
        words = sorted(sub.keywords, key=lambda w: -sub.keywords[w])[:8]
        out.append({"service_code": code, "service_name": sub.name, "description": sub.description,
                    "metadata": False, "type": "realtime", "keywords": ",".join(words), "group": sub.type})
    return out


# ------------------------------------------------------------------------------------------------ routes
@router.get("/discovery.{fmt}", summary="Open311 discovery")
def discovery(fmt: Fmt, request: Request) -> Response:
    fmt = _fmt(fmt)
    base = str(request.base_url).rstrip("/") + "/open311/v2/"
    row = {"changeset": "2026-11-28T00:00:00+08:00", "contact": "12345 环境投诉分拣系统管理员",
           "key_service": "令牌：POST /api/auth/token（令牌模式） / tokens from POST /api/auth/token",
           "specification": "http://wiki.open311.org/GeoReport_v2", "url": base, "type": "production",
           "formats": "application/json,text/xml"}
    return render(fmt, "discovery", "endpoint", [row])


@router.get("/services.{fmt}", summary="服务类型（投诉小类） / service list")
def services(fmt: Fmt, jurisdiction_id: str | None = Query(default=None),
             settings: Settings = Depends(get_settings_dep)) -> Response:
    fmt = _fmt(fmt)
    check_jurisdiction(jurisdiction_id, settings)
    return render(fmt, "services", "service", _services(settings))


@router.get("/services/{service_code}.{fmt}", summary="服务定义 / service definition")
def service_definition(service_code: str, fmt: Fmt, jurisdiction_id: str | None = Query(default=None),
                       settings: Settings = Depends(get_settings_dep)) -> Response:
    fmt = _fmt(fmt)
    check_jurisdiction(jurisdiction_id, settings)
    if service_code not in {s["service_code"] for s in _services(settings)}:
        raise NotFound(f"未知的 service_code {service_code!r} / unknown service_code")
    if fmt == "xml":
        top = ET.Element("service_definition")
        ET.SubElement(top, "service_code").text = service_code
        ET.SubElement(top, "attributes")
        return Response(ET.tostring(top, encoding="utf-8", xml_declaration=True), media_type="text/xml; charset=utf-8")
    return JSONResponse({"service_code": service_code, "attributes": []})


FIELDS = ("jurisdiction_id", "service_code", "description", "address_string", "address_id", "lat", "long",
          "requested_datetime", "email", "first_name", "last_name", "phone", "device_id", "account_id",
          "media_url", "api_key")


async def request_form(request: Request) -> dict[str, str]:
    """A GeoReport POST body: form-encoded (the spec), multipart, or JSON (convenience); query parameters
    fill in what the body lacks (jurisdiction_id, api_key)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: Any
    try:
        if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.form()
            data = {k: v for k, v in form.items() if isinstance(v, str)}
        elif ctype in ("application/json", ""):
            raw = await request.body()
            data = json.loads(raw) if raw.strip() else {}
        else:
            raise Open311Error(f"不支持的内容类型 {ctype} / unsupported content type; use "
                               f"application/x-www-form-urlencoded")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Open311Error("请求体无法解析 / the body cannot be parsed") from exc
    if not isinstance(data, dict):
        raise Open311Error("请求体应为表单或 JSON 对象 / the body must be a form or a JSON object")
    out: dict[str, str] = {}
    for k in FIELDS:
        v = data.get(k, request.query_params.get(k))
        if v is None:
            continue
        if isinstance(v, (dict, list)):
            raise Open311Error(f"{k} 应为文本 / {k} must be a plain value")
        out[k] = str(v)
    return out


def _float(form: dict[str, str], key: str, lo: float, hi: float) -> float | None:
    if not form.get(key, "").strip():
        return None
    try:
        v = float(form[key])
    except ValueError:
        raise Open311Error(f"{key} 应为数字 / {key} must be a number") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise Open311Error(f"{key} 超出范围 / {key} out of range")
    return v


def _datetime(value: str | None, name: str) -> datetime | None:
    if value is None or not value.strip():
        return None
    try:
        if "年" in value:  # 2026年3月5日 9时30分, as the platform's exports write it
            from triage.kb.cases import parse_when

            dt = parse_when(value)
        else:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise Open311Error(f"{name} 应为 ISO 8601 时间 / {name} must be an ISO 8601 date-time") from None
    return dt.replace(tzinfo=TZ) if dt.tzinfo is None else dt


@router.post("/requests.{fmt}", status_code=201, summary="提交投诉 / create a service request",
             openapi_extra={"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                 "type": "object", "required": ["service_code", "description"],
                 "properties": {k: {"type": "string"} for k in FIELDS}}}}}})
def post_request(fmt: Fmt, form: dict[str, str] = Depends(request_form), session: Session = Depends(get_session),
                 settings: Settings = Depends(get_settings_dep), triager: Any = Depends(get_triager),
                 now: datetime = Depends(get_now), sla: Sla = Depends(get_sla_dep),
                 actor: str = Depends(get_actor)) -> Response:
    fmt = _fmt(fmt)
    check_jurisdiction(form.get("jurisdiction_id"), settings)
    code = (form.get("service_code") or "").strip()
    if not code:
        raise Open311Error("缺少 service_code / service_code is required")
    if code not in {s["service_code"] for s in _services(settings)}:
        raise Open311Error(f"未知的 service_code {code!r}，见 services.json / unknown service_code")
    if not (form.get("description") or "").strip():
        raise Open311Error("缺少 description（投诉内容） / description is required")
    lat, lon = _float(form, "lat", -90, 90), _float(form, "long", -180, 180)
    if (lat is None) != (lon is None):
        raise Open311Error("lat 与 long 须同时给出 / give both lat and long")
    address = (form.get("address_string") or "").strip()
    if lat is not None:
        address = f"{address}（经纬度 {lat:.6f},{lon:.6f}）" if address else f"经纬度 {lat:.6f},{lon:.6f}"
    if not address and not (form.get("address_id") or "").strip():
        raise Open311Error("需要位置：address_string、lat/long 或 address_id / a location is required")
    if not address:
        address = f"地址编号 {form['address_id'].strip()}"
    name = " ".join(x for x in (form.get("last_name", "").strip(), form.get("first_name", "").strip()) if x)
    contact = "；".join(x for x in (name, form.get("phone", "").strip(), form.get("email", "").strip()) if x)
    try:
        c = service.intake(session, text=form["description"],
                           occurred_at=_datetime(form.get("requested_datetime"), "requested_datetime"),
                           address=address, contact=contact[:200] or None, source="open311", triager=triager,
                           now=now, sla=sla, actor=actor)
    except service.InvalidInput as exc:
        # The service names its own field; the client sent requested_datetime.
        raise Open311Error(exc.message.replace("occurred_at", "requested_datetime")) from None
    session.add(Event(complaint_id=c.id, actor=actor, at=now, kind="open311", from_status=c.status,
                      to_status=c.status, data={"service_code": code, "device_id": form.get("device_id"),
                                                "account_id": form.get("account_id"),
                                                "media_url": form.get("media_url"), "lat": lat, "long": lon}))
    session.commit()
    return render(fmt, "service_requests", "request",
                  [{"service_request_id": str(c.id), "service_notice": _notice(c), "account_id": None}], status=201)


def _notice(c: Complaint) -> str:
    """What the citizen is told: the same on the POST's answer and on every later GET."""
    if c.status == Status.closed.value:
        return "已办结。"
    if c.deadline is not None:
        note = f"已受理，承办单位将于 {c.deadline.astimezone(TZ):%Y-%m-%d %H:%M} 前答复。"
        return note + (f"（{c.deadline_note}）" if c.deadline_note else "")
    return "已受理，我们将尽快分派承办单位处理。"


def _public_status(c: Complaint) -> str:
    return "closed" if c.status == Status.closed.value else "open"


def _status_notes(c: Complaint) -> str:
    note = STATUS_ZH.get(c.status, c.status)
    if c.status == Status.closed.value and c.result:
        note += f"（核查结果：{c.result}）"
    if c.merged_into is not None:
        note += f"，已并入 {c.merged_into} 号工单一并办理"
    return note


def _request_row(c: Complaint, open311_data: dict[int, dict[str, Any]]) -> dict[str, Any]:
    s = c.suggestion
    posted = open311_data.get(c.id) or {}
    code = c.subtype or posted.get("service_code") or (s.subtype if s else None) or None
    from triage.taxonomy import get_taxonomy

    name = get_taxonomy().name(code) if code else None
    return {
        "service_request_id": str(c.id), "status": _public_status(c), "status_notes": _status_notes(c),
        "service_name": name, "service_code": code, "description": c.text,
        "agency_responsible": c.unit_name, "service_notice": _notice(c),
        "requested_datetime": _bj(c.received_at), "updated_datetime": _bj(c.updated_at or c.received_at),
        "expected_datetime": _bj(c.deadline), "address": c.address, "address_id": None, "zipcode": None,
        "lat": posted.get("lat"), "long": posted.get("long"), "media_url": posted.get("media_url"),
    }


def _open311_data(session: Session, ids: list[int]) -> dict[int, dict[str, Any]]:
    """What an Open311 POST sent that the complaint itself does not keep (service code, coordinates, media)."""
    if not ids:
        return {}
    rows = session.execute(select(Event.complaint_id, Event.data).where(Event.kind == "open311",
                                                                        Event.complaint_id.in_(ids))).all()
    return {cid: data or {} for cid, data in rows}


def _unit_filter(q, scope: str | None):
    if scope is None:
        return q
    return q.where(exists().where(Assignment.complaint_id == Complaint.id, Assignment.unit_type == scope))


def _ids(value: str | None) -> list[int] | None:
    if value is None or not value.strip():
        return None
    out = []
    for part in value.split(","):
        part = part.strip()
        if not part.isdigit() or len(part) > 18:
            raise Open311Error(f"service_request_id 应为数字编号：{part!r} / service_request_id must be numeric")
        out.append(int(part))
    if len(out) > MAX_RESULTS:
        raise Open311Error(f"最多查询 {MAX_RESULTS} 个编号 / at most {MAX_RESULTS} ids")
    return out


@router.get("/requests.{fmt}", summary="查询投诉 / service requests")
def get_requests(fmt: Fmt, jurisdiction_id: str | None = Query(default=None),
                 service_request_id: str | None = Query(default=None, description="逗号分隔的编号"),
                 service_code: str | None = Query(default=None, description="逗号分隔的小类编码"),
                 start_date: str | None = Query(default=None, description="ISO 8601"),
                 end_date: str | None = Query(default=None, description="ISO 8601"),
                 status: str | None = Query(default=None, description="open / closed，可逗号分隔"),
                 session: Session = Depends(get_session), settings: Settings = Depends(get_settings_dep),
                 now: datetime = Depends(get_now), scope: str | None = Depends(get_unit_scope)) -> Response:
    fmt = _fmt(fmt)
    check_jurisdiction(jurisdiction_id, settings)
    ids = _ids(service_request_id)
    q = select(Complaint).options(selectinload(Complaint.suggestions))
    if ids is not None:
        q = q.where(Complaint.id.in_(ids))
    else:  # GeoReport: without ids, the last 90 days unless dates are given
        end = _datetime(end_date, "end_date") or now
        start = _datetime(start_date, "start_date") or end - DEFAULT_WINDOW
        if end < start:
            raise Open311Error("end_date 早于 start_date / end_date is before start_date")
        q = q.where(Complaint.received_at >= start, Complaint.received_at <= end)
    if status:
        wanted = {x.strip() for x in status.split(",") if x.strip()}
        if not wanted <= {"open", "closed"}:
            raise Open311Error("status 只能是 open 或 closed / status must be open or closed")
        if wanted == {"open"}:
            q = q.where(Complaint.status != Status.closed.value)
        elif wanted == {"closed"}:
            q = q.where(Complaint.status == Status.closed.value)
    if service_code:
        codes = [x.strip() for x in service_code.split(",") if x.strip()]
        q = q.where(or_(Complaint.subtype.in_(codes), and_(Complaint.subtype.is_(None), or_(
            exists().where(Suggestion.complaint_id == Complaint.id, Suggestion.subtype.in_(codes)),
            exists().where(Event.complaint_id == Complaint.id, Event.kind == "open311",
                           Event.data["service_code"].as_string().in_(codes))))))
    q = _unit_filter(q, scope).order_by(Complaint.received_at.desc(), Complaint.id.desc()).limit(MAX_RESULTS)
    rows = list(session.scalars(q))
    codes_by_id = _open311_data(session, [c.id for c in rows])
    return render(fmt, "service_requests", "request", [_request_row(c, codes_by_id) for c in rows])


@router.get("/requests/{service_request_id}.{fmt}", summary="查询单件投诉 / one service request")
def get_request(service_request_id: str, fmt: Fmt, jurisdiction_id: str | None = Query(default=None),
                session: Session = Depends(get_session), settings: Settings = Depends(get_settings_dep),
                scope: str | None = Depends(get_unit_scope)) -> Response:
    fmt = _fmt(fmt)
    check_jurisdiction(jurisdiction_id, settings)
    missing = NotFound(f"工单 {service_request_id} 不存在 / service request {service_request_id} not found")
    if not service_request_id.isdigit() or len(service_request_id) > 18:
        raise missing
    q = select(Complaint).where(Complaint.id == int(service_request_id)).options(selectinload(Complaint.suggestions))
    c = session.scalars(_unit_filter(q, scope)).one_or_none()
    if c is None:
        raise missing
    return render(fmt, "service_requests", "request", [_request_row(c, _open311_data(session, [c.id]))])


__all__ = ["router", "open311_error", "InvalidInput"]
