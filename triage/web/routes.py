"""The pages (see ``triage/web/__init__.py`` for why they are plain server-rendered forms).

Routes are thin, as in the API: each action calls one function of ``triage.queue.service`` (or the metrics,
report, search and import functions) with the same dependencies the API uses (``triage.api.deps``), so tests
override the triager, drafter, clock… once for both. An action that succeeds redirects (POST → 303 → GET) with
a one-time message in a cookie; one the service refuses re-renders the page with the Chinese reason and the
values the user typed. Any other failure shows a Chinese error page, never a stack trace (``WebRoute``).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from triage.api.deps import (
    get_actor,
    get_case_sink,
    get_drafter,
    get_now,
    get_session,
    get_sla_dep,
    get_triager,
    get_unit_namer,
    resolve,
)
from triage.auth.deps import WEB_TOKEN_COOKIE, auth_mode, get_unit_scope, own_unit_cases, staff_queue_status
from triage.auth.models import Role
from triage.auth.permissions import UNIT_SCOPED, allowed
from triage.db import db_error_line
from triage.metrics import MAX_PERIOD_DAYS, compute_metrics, period_bounds
from triage.queue import service
from triage.queue.models import OPEN_STATUSES, Complaint, Status
from triage.queue.schemas import parse_day
from triage.queue.sla import Sla, SlaConfigError, local_date
from triage.web import charts, present
from triage.web.demo import DEMO_SOURCE, ensure_demo

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
FLASH_COOKIE = "triage_flash"
QUEUE_LIMIT = 1000  # list_queue's maximum; the page shows at most QUEUE_SHOWN of the filtered items
QUEUE_SHOWN = 300
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# The import page works synchronously: 1,000 rows take 15 s (68 passages/s) to ~80 s (a busy 2-core machine,
# long replies). Bigger files go through `triage cases import`, which shows progress.
MAX_SYNC_ROWS = 1000
# Rows of any kind, rejected ones included, the page reads before it stops: the bound on its work.
MAX_SYNC_RECORDS = 5 * MAX_SYNC_ROWS
# What an uploaded XLSX may unpack to: a thousand orders of long text come to a few MB; openpyxl reads a sheet's
# shared strings whole, so this bounds the work before the first row is counted.
MAX_SYNC_UNPACKED = 32 * 1024 * 1024
SHOWN_REJECTED = 500
MULTIPART_OVERHEAD = 64 * 1024  # the form's own bytes around the file
UPLOAD_SUFFIXES = (".csv", ".txt", ".xlsx", ".xlsm", ".jsonl", ".ndjson")
DASHBOARD_WEEKS = 8


# --------------------------------------------------------------------------------------------- rendering
def _may_open(user, path: str) -> bool:
    """Whether the navigation shows a page: a logged-in user sees only the pages their role may open."""
    if user is None:
        return True  # dev mode (every role) or nobody logged in yet
    from triage.auth.permissions import ROUTES, allowed

    permission = ROUTES.get(("GET", path))
    return permission is None or allowed(user.role, permission)


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.globals.update(type_name=present.type_name, unit_kind_name=present.unit_kind_name,
                       status_name=present.status_name, event_name=present.event_name, fmt_dt=present.fmt_dt,
                       pct=present.pct, conf=present.confidence_text, source_name=present.source_name,
                       generator_name=present.generator_name, zh=present.zh, RESULTS=present.RESULTS,
                       role_name=present.role_name, may_open=_may_open,
                       force_badge=present.force_badge)
    return env


templates = Jinja2Templates(env=_env())


def _encode_flash(messages: list[tuple[str, str]]) -> str:
    msgs = [[level, text[:300]] for level, text in messages[:12]]
    return base64.urlsafe_b64encode(json.dumps(msgs, ensure_ascii=False).encode("utf-8")).decode("ascii")


def _decode_flash(value: str | None) -> list[tuple[str, str]]:
    if not value:
        return []
    try:
        data = json.loads(base64.urlsafe_b64decode(value.encode("ascii")).decode("utf-8"))
        return [(str(level), str(text)) for level, text in data][:12]
    except Exception:  # noqa: BLE001 - a mangled cookie is just ignored
        return []


def redirect(url: str, *messages: tuple[str, str]) -> RedirectResponse:
    """303 to ``url`` with one-time messages ("ok" | "error" | "info", text) shown by the next page."""
    resp = RedirectResponse(url, status_code=303)
    if messages:
        resp.set_cookie(FLASH_COOKIE, _encode_flash(list(messages)), httponly=True, samesite="lax", path="/")
    return resp


def _has_demo(app) -> bool:
    try:
        with app.state.session_factory() as session:
            return session.scalar(select(Complaint.id).where(Complaint.source == DEMO_SOURCE).limit(1)) is not None
    except Exception:  # noqa: BLE001 - the banner is not worth an error page
        return False


def render(request: Request, name: str, ctx: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    flashes = _decode_flash(request.cookies.get(FLASH_COOKIE)) + list(ctx.pop("messages", []))
    principal = getattr(request.state, "principal", None) or getattr(request.state, "identity", None)
    full = {"flashes": flashes, "has_demo": _has_demo(request.app),
            "demo_state": getattr(request.app.state, "web_demo", None), "nav": ctx.get("nav", ""),
            "user": principal if principal is not None and not principal.dev else None, **ctx}
    resp = templates.TemplateResponse(request, name, full, status_code=status_code)
    if FLASH_COOKIE in request.cookies:
        resp.delete_cookie(FLASH_COOKIE, path="/")
    return resp


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    titles = {404: "找不到页面或记录", 409: "当前状态不允许该操作", 413: "文件太大", 422: "输入有误",
              503: "服务暂不可用"}
    ctx = {"title": titles.get(status_code, "出错了"), "message": message, "status": status_code}
    if status_code == 401:
        from urllib.parse import quote

        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        ctx.update(title="需要登录", login_url="/login?next=" + quote(_safe_back(here) if request.method == "GET"
                                                                   else "/", safe=""),
                   # the API's reason speaks of bearer headers; a person at a browser needs the page's words
                   message="登录已过期或已退出，请重新登录。" if request.cookies.get(WEB_TOKEN_COOKIE)
                   else "请先登录，登录后回到本页。")
    try:
        return render(request, "error.html", ctx, status_code=status_code)
    except Exception:  # noqa: BLE001 - last resort: a minimal page
        log.exception("error page failed")
        from markupsafe import escape

        return HTMLResponse(f'<!doctype html><meta charset="utf-8"><title>出错了</title><p>{escape(message)}</p>'
                            '<p><a href="/">返回待办队列</a></p>', status_code=status_code)


_FIELD_ZH = {"complaint_id": "投诉编号", "ids": "所选投诉", "k": "条数"}


class WebRoute(APIRoute):
    """Every failure of a page becomes a Chinese error page (status kept), never a traceback or JSON."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                names = []
                for err in exc.errors():
                    loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path", "form")]
                    names.append(_FIELD_ZH.get(loc[-1], loc[-1]) if loc else "请求")
                return error_page(request, 422, f"参数格式不正确：{'、'.join(dict.fromkeys(names))}")
            except service.DomainError as exc:
                return error_page(request, exc.status_code, present.zh(exc.message))
            except StarletteHTTPException as exc:
                return error_page(request, exc.status_code, present.zh(str(exc.detail)) or "请求无法完成")
            except SlaConfigError as exc:
                log.error("page %s: %s", request.url.path, exc)
                return error_page(request, 503, present.zh(str(exc)) + "。请管理员修正该文件。")
            except OperationalError as exc:
                log.error("page %s: database unavailable: %s", request.url.path, db_error_line(exc))
                return error_page(request, 503, "数据库暂不可用，请稍后重试；如问题持续，请联系系统管理员。")
            except Exception as exc:  # noqa: BLE001
                if _body_too_large(exc):
                    return error_page(request, 413, "提交的内容过大，请缩短后重试。")
                log.exception("page %s failed", request.url.path)
                return error_page(request, 500, "系统内部错误，请稍后重试；如问题持续，请联系系统管理员。")

        return wrapped


router = APIRouter(route_class=WebRoute, include_in_schema=False)


def mount_web(app: FastAPI) -> None:
    """Add the pages and their static files to the app (called by ``create_app``)."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")


# ------------------------------------------------------------------------------------------ dependencies
@dataclass
class Page:
    request: Request
    session: Session
    now: datetime
    sla: Sla
    actor: str
    unit_namer: Callable[[str], str]


def page(request: Request, session: Session = Depends(get_session), now: datetime = Depends(get_now),
         sla: Sla = Depends(get_sla_dep), actor: str = Depends(get_actor),
         unit_namer=Depends(get_unit_namer)) -> Page:
    ensure_demo(request.app)
    return Page(request, session, now, sla, actor, unit_namer)


def demo(request: Request, actor: str = Depends(get_actor)) -> str:
    """For pages that need no session: who acts (the API's rule: 401 in token mode without one), and the demo
    load on a fresh install (see ``triage.web.demo``)."""
    ensure_demo(request.app)
    return actor


def _safe_back(url: str | None, default: str = "/") -> str:
    """Only local paths: never redirect to another host."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return default
    return url


def _unit_name(namer: Callable[[str], str], code: str) -> str:
    try:
        return namer(code) or present.unit_kind_name(code)
    except Exception:  # noqa: BLE001
        return present.unit_kind_name(code)


def _options(namer: Callable[[str], str]) -> dict[str, Any]:
    """Select options from the taxonomy: types, subtypes per type, unit kinds with the jurisdiction's names."""
    from triage.taxonomy import UNIT_TYPES

    tax = present.taxonomy()
    types = [(code, tax.name(code)) for code in tax.type_codes] if tax else []
    subtypes = [(code, [(s.code, s.name) for s in tax.subtypes_of(code)]) for code, _ in types] if tax else []
    units = [(code, _unit_name(namer, code), present.unit_kind_name(code)) for code in UNIT_TYPES]
    return {"type_options": types, "subtype_groups": subtypes, "unit_options": units}


# --------------------------------------------------------------------------------------------------- queue
STATUS_FILTERS = [("", "全部未办结")] + [(s.value, present.status_name(s.value)) for s in Status]


def _labels(c: Complaint) -> tuple[str | None, str | None, str | None, str | None]:
    s = c.suggestion
    return (c.pollution_type or (s.pollution_type if s else None), c.subtype or (s.subtype if s else None),
            c.unit_type or (s.unit_type if s else None), c.unit_name or (s.unit_name if s else None))


def _queue_row(entry: service.QueueEntry, now: datetime, sla: Sla) -> dict[str, Any]:
    c = entry.complaint
    s = c.suggestion
    pt, st, ut, un = _labels(c)
    return {
        "c": c, "pollution_type": pt, "subtype": st, "unit_type": ut, "unit_name": un,
        # The model's confidence belongs to its own labels: none once a dispatcher has decided them.
        "confidence": s.confidence if s and c.pollution_type is None else None, "low": entry.low_confidence,
        "unit_doubt": s.unit_confidence if c.pollution_type is None and service.unit_doubtful(s) else None,
        "overdue": entry.overdue,
        "due_soon": entry.due_soon, "reason": entry.priority_reason, "contact_late": entry.contact_overdue,
        "rejected": entry.reply_rejected,
        "countdown": present.countdown(c.deadline, now, sla, open_=c.is_open),
        # Bulk accept only where the model is sure of both labels and the case is not a repeat: a duplicate
        # bulk-dispatched went out as a case of its own instead of being merged.
        "bulk": c.status == Status.triaged.value and s is not None and not entry.low_confidence
        and c.merged_into is None and c.duplicate_of is None,
    }


def _staff_unit(request: Request) -> str | None:
    """The unit a unit-staff user is limited to (None for everyone else), as the API's queue applies it."""
    principal = getattr(request.state, "principal", None)
    return get_unit_scope(principal) if principal is not None else None


# ------------------------------------------------------------------------------------------------ login
def _token_mode(request: Request) -> bool:
    return auth_mode(request) == "token"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:  # noqa: A002 - the usual name of the parameter
    if not _token_mode(request):
        return RedirectResponse(_safe_back(next), status_code=303)  # dev mode: no accounts, nothing to log in to
    return render(request, "login.html", {"title": "登录", "next": _safe_back(next), "username": ""})


@router.post("/login")
def login_submit(request: Request, username: str = Form(""), password: str = Form(""),
                 next: str = Form("/")) -> Response:  # noqa: A002
    """Checks the password like POST /api/auth/token (same throttle), then keeps the token in a cookie."""
    from triage.auth import service as auth

    target = _safe_back(next)
    if not _token_mode(request):
        return RedirectResponse(target, status_code=303)
    settings = request.app.state.settings
    ttl = timedelta(hours=settings.token_ttl_hours)
    try:
        with request.app.state.session_factory() as session:
            token, _, _ = auth.log_in(session, username=username[:100], password=password[:1000], ttl=ttl,
                                      label="web", client=request.client.host if request.client else "")
    except service.DomainError as exc:  # wrong password (401) or too many attempts (429)
        ctx = {"title": "登录", "next": target, "username": username[:100],
               "messages": [("error", present.zh(exc.message))]}
        return render(request, "login.html", ctx, status_code=exc.status_code)
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(WEB_TOKEN_COOKIE, token, max_age=int(ttl.total_seconds()), httponly=True, samesite="lax",
                    secure=request.url.scheme == "https", path="/")
    return resp


@router.post("/logout")
def logout(request: Request) -> Response:
    from triage.auth import service as auth

    token = request.cookies.get(WEB_TOKEN_COOKIE)
    if token:
        with request.app.state.session_factory() as session:
            auth.revoke_token(session, token)
            session.commit()
    resp = RedirectResponse("/login" if _token_mode(request) else "/", status_code=303)
    resp.delete_cookie(WEB_TOKEN_COOKIE, path="/")
    return resp


# ------------------------------------------------------------------------------------------------ queue
@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
@router.get("/queue", response_class=HTMLResponse)
def queue_page(status: str = "", unit: str = "", ptype: str = Query("", alias="type"), overdue: str = "",
               p: Page = Depends(page)) -> HTMLResponse:
    messages: list[tuple[str, str]] = []
    staff_unit = _staff_unit(p.request)
    try:
        if staff_unit:  # unit staff: only what their unit works now (as GET /api/queue)
            unit, wanted = staff_unit, staff_queue_status(status or None)
            entries = (service.list_queue(p.session, status=wanted, unit_type=unit, limit=QUEUE_LIMIT, now=p.now,
                                          sla=p.sla) if wanted else [])
        else:
            entries = service.list_queue(p.session, status=status or None, unit_type=unit or None,
                                         limit=QUEUE_LIMIT, now=p.now, sla=p.sla)
    except service.DomainError as exc:
        entries, messages = [], [("error", present.zh(exc.message))]
    if ptype:
        entries = [e for e in entries if _labels(e.complaint)[0] == ptype]
    if overdue:
        entries = [e for e in entries if e.overdue]
    rows = [_queue_row(e, p.now, p.sla) for e in entries[:QUEUE_SHOWN]]
    may_assign = not staff_unit and _may_role(p.request, "complaints.assign")  # a manager reads the queue only
    query = str(p.request.url.query)
    ctx = {
        "nav": "queue", "title": "待办队列", "rows": rows, "total": len(entries), "shown": len(rows),
        "filters": {"status": status, "unit": unit, "type": ptype, "overdue": bool(overdue)},
        "status_filters": STATUS_FILTERS, "back": "/" + (f"?{query}" if query else ""),
        "bulk_count": sum(1 for r in rows if r["bulk"]) if may_assign else 0, "messages": messages,
        "staff_unit": staff_unit, "may_assign": may_assign, **_options(p.unit_namer),
    }
    return render(p.request, "queue.html", ctx)


@router.post("/queue/accept")
def bulk_accept(ids: list[int] = Form(default=[]), back: str = Form("/"), p: Page = Depends(page)) -> Response:
    back = _safe_back(back)
    if not ids:
        return redirect(back, ("error", "请先勾选要采纳建议的投诉。"))
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    for cid in dict.fromkeys(ids):
        c = p.session.get(Complaint, cid)
        s = c.suggestion if c is not None else None
        if c is None:
            failed.append(("error", f"投诉 #{cid} 不存在。"))
            continue
        if s is None:
            failed.append(("error", f"投诉 #{cid}：尚无分类建议，请打开案件人工派单。"))
            continue
        if service.suggestion_doubtful(s):
            failed.append(("error", f"投诉 #{cid}：建议置信度低，不能批量采纳，请打开案件逐件审核。"))
            continue
        if c.duplicate_of is not None and c.merged_into is None:
            failed.append(("error", f"投诉 #{cid}：疑似投诉 #{c.duplicate_of} 的重复件，请打开案件合并或单独派单。"))
            continue
        try:
            service.assign(p.session, complaint_id=cid, actor=p.actor, unit_namer=p.unit_namer, now=p.now,
                           sla=p.sla)
            p.session.commit()
            done.append(f"#{cid}")
        except service.DomainError as exc:
            p.session.rollback()
            failed.append(("error", f"投诉 #{cid} 未能派单：{present.zh(exc.message)}"))
    msgs: list[tuple[str, str]] = []
    if done:
        msgs.append(("ok", f"已采纳建议并派单 {len(done)} 件：{'、'.join(done[:30])}{' 等' if len(done) > 30 else ''}。"))
    if failed:
        msgs.append(("error", f"{len(failed)} 件未能派单，见下列原因："))
        msgs.extend(failed[:10])
        if len(failed) > 10:
            msgs.append(("error", f"另有 {len(failed) - 10} 件未能派单，未逐条列出。"))
    return redirect(back, *msgs)


# --------------------------------------------------------------------------------------------- intake
@router.get("/complaints/new", response_class=HTMLResponse)
def intake_form(p: Page = Depends(page)) -> HTMLResponse:
    return render(p.request, "intake.html", {"nav": "intake", "title": "受理投诉", "form": {}})


@router.post("/complaints/new")
def intake_submit(text: str = Form(""), address: str = Form(""), contact: str = Form(""),
                  occurred_at: str = Form(""), external_id: str = Form(""), p: Page = Depends(page),
                  triager: Any = Depends(get_triager)) -> Response:
    form = {"text": text, "address": address, "contact": contact, "occurred_at": occurred_at,
            "external_id": external_id}
    try:
        occurred = None
        if occurred_at.strip():
            try:
                occurred = datetime.fromisoformat(occurred_at.strip())
            except ValueError:
                raise service.InvalidInput("事发时间格式不正确，应为 年-月-日 时:分") from None
        c = service.intake(p.session, text=text, occurred_at=occurred, address=address or None,
                           contact=contact or None, source="web", external_id=external_id or None,
                           triager=triager, actor=p.actor, now=p.now, sla=p.sla)
    except service.DomainError as exc:
        p.session.rollback()
        msg = present.zh(exc.message)  # a duplicate external_id already names the complaint that has it
        return render(p.request, "intake.html", {"nav": "intake", "title": "受理投诉", "form": form,
                                                 "messages": [("error", msg)]}, status_code=exc.status_code)
    msgs = [("ok", f"已受理，投诉编号 #{c.id}。")]
    if c.triage_error:
        msgs.append(("error", "自动分拣暂未成功，系统会稍后重试；也可以直接人工派单。"))
    return redirect(f"/complaints/{c.id}", *msgs)


# --------------------------------------------------------------------------------------------- case page
def _may_role(request: Request, permission: str) -> bool:
    """Whether the user's role may do this at all (dev mode: yes)."""
    principal = getattr(request.state, "principal", None)
    return principal is None or principal.dev or allowed(principal.role, permission)


def _may(request: Request, permission: str, c: Complaint) -> bool:
    """Whether the page offers an action: a form the user could only get a 403 for is left out (each route still
    checks). Dev mode (no login) offers everything."""
    principal = getattr(request.state, "principal", None)
    if principal is None or principal.dev:
        return True
    if not allowed(principal.role, permission):
        return False
    if principal.role == Role.unit_staff.value and UNIT_SCOPED.get(permission) == "act":
        return c.unit_type == principal.unit_type
    return True


def _case_ctx(p: Page, complaint_id: int) -> dict[str, Any]:
    p.session.expire_all()
    c = service.get_complaint(p.session, complaint_id)
    s = c.suggestion
    children = list(p.session.scalars(select(Complaint).where(Complaint.merged_into == c.id)
                                      .order_by(Complaint.id)))
    linked = {}
    for key in ("duplicate_of", "relapse_of", "merged_into"):
        other_id = getattr(c, key)
        if other_id is not None:
            linked[key] = p.session.get(Complaint, other_id)
    open_values = {x.value for x in OPEN_STATUSES}
    st = c.status
    latest = c.drafts[-1] if c.drafts else None
    events = [{"e": e, "details": present.event_details(e.kind, e.data)} for e in c.events]
    may = lambda permission: _may(p.request, permission, c)  # noqa: E731
    # No extension form where the limit is reached or the deadline has passed: it could only be refused.
    at_limit = c.assignment is not None and ((c.assignment.extensions or 0) >= p.sla.policy.max_extensions
                                             or c.assignment.deadline < p.now)
    can = {
        "assign": st in (Status.received.value, Status.triaged.value, Status.returned.value)
        and c.merged_into is None and may("complaints.assign"),
        "return": st == Status.assigned.value and may("complaints.work"),
        "extend": st == Status.assigned.value and may("complaints.extend") and not at_limit,
        "request_extension": st == Status.assigned.value and may("complaints.work") and not c.extension_pending
        and not at_limit,
        "decide_extension": c.extension_pending and may("complaints.extend"),
        "acknowledge": st == Status.assigned.value and c.assignment is not None
        and c.assignment.received_at is None and may("complaints.work"),
        "contact": st == Status.assigned.value and c.assignment is not None
        and c.assignment.contacted_at is None and may("complaints.work"),
        # While a reply waits for review only a reviewer who may also draft (admin, dev mode) redrafts it.
        "draft": may("complaints.work") and (st == Status.assigned.value
                                             or (st == Status.replied.value and may("complaints.close"))),
        "reply": st == Status.assigned.value and may("complaints.work"),
        "close": st in (Status.assigned.value, Status.replied.value) and may("complaints.close"),
        "reject": st == Status.replied.value and may("complaints.close"),
        "reopen": st == Status.closed.value and c.merged_into is None and may("complaints.assign"),
        "merge": st in open_values and c.merged_into is None and may("complaints.assign"),
    }
    # The suspected original, when it is open: only an open complaint can be merged into (the form is filled
    # with it). A closed one is named instead, with what can be done, rather than offered for a certain 409.
    dup = linked.get("duplicate_of")
    merge_into = dup.id if dup is not None and dup.status in open_values and dup.merged_into is None else None
    pt, sub, ut, un = _labels(c)
    return {
        "nav": "queue", "title": f"投诉 #{c.id}", "c": c, "s": s, "children": children, "linked": linked,
        "latest": latest, "events": events, "can": can, "form": {}, "merge_into": merge_into,
        "labels": {"pollution_type": pt, "subtype": sub, "unit_type": ut, "unit_name": un},
        "countdown": present.countdown(c.deadline, p.now, p.sla, open_=c.is_open),
        "contact_late": st == Status.assigned.value and c.assignment is not None
        and c.assignment.contact_overdue(p.now),
        "rejection": service.rejection_of(c),
        "similar_cases": own_unit_cases(s.similar_cases if s else [], _staff_unit(p.request)),
        "assignment": c.assignment, "max_extensions": p.sla.policy.max_extensions,
        "today": local_date(p.now).isoformat(), **_options(p.unit_namer),
    }


@router.get("/complaints/{complaint_id}", response_class=HTMLResponse)
def case_page(complaint_id: int, p: Page = Depends(page)) -> HTMLResponse:
    return render(p.request, "case.html", _case_ctx(p, complaint_id))


def _act(p: Page, complaint_id: int, action: Callable[[], str], anchor: str, form: dict[str, Any]) -> Response:
    """Run one service call; success → redirect with its message, refusal → the page again with the reason."""
    try:
        message = action()
        p.session.commit()
    except service.DomainError as exc:
        p.session.rollback()
        ctx = _case_ctx(p, complaint_id)
        ctx["form"] = form
        ctx["messages"] = [("error", present.zh(exc.message))]
        ctx["focus"], ctx["canonical"] = anchor, f"/complaints/{complaint_id}"
        return render(p.request, "case.html", ctx, status_code=exc.status_code)
    return redirect(f"/complaints/{complaint_id}#{anchor}", ("ok", message))


@router.post("/complaints/{complaint_id}/assign")
def assign_action(complaint_id: int, action: str = Form("accept"), pollution_type: str = Form(""),
                  subtype: str = Form(""), unit_type: str = Form(""), note: str = Form(""),
                  p: Page = Depends(page)) -> Response:
    form = {"pollution_type": pollution_type, "subtype": subtype, "unit_type": unit_type, "note": note}

    def run() -> str:
        if action == "accept":
            a = service.assign(p.session, complaint_id=complaint_id, actor=p.actor, note=note or None,
                               unit_namer=p.unit_namer, now=p.now, sla=p.sla)
            return f"已采纳建议，派至{a.unit_name}，办理期限 {present.fmt_dt(a.deadline)}。"
        pt, st, ut = pollution_type or None, subtype or None, unit_type or None
        if not (pt or st or ut):
            raise service.InvalidInput("改判时请至少选择类型、小类或承办单位之一；不改动请用“采纳建议”。")
        tax = present.taxonomy()
        if st and not pt and tax is not None:
            pt = tax.type_of(st)
        a = service.assign(p.session, complaint_id=complaint_id, actor=p.actor, pollution_type=pt, subtype=st,
                           unit_type=ut, note=note or None, unit_namer=p.unit_namer, now=p.now, sla=p.sla)
        how = "采纳建议" if a.accepted_suggestion else "改判"
        return f"已{how}并派至{a.unit_name}，办理期限 {present.fmt_dt(a.deadline)}。"

    return _act(p, complaint_id, run, "dispatch", form)


@router.post("/complaints/{complaint_id}/merge")
def merge_action(complaint_id: int, parent_id: str = Form(""), reason: str = Form(""),
                 p: Page = Depends(page)) -> Response:
    def run() -> str:
        try:
            parent = int(parent_id.strip().lstrip("#"))
        except ValueError:
            raise service.InvalidInput("请填写主件的投诉编号（数字）。") from None
        service.merge(p.session, complaint_id=complaint_id, parent_id=parent, actor=p.actor, reason=reason or None,
                      now=p.now)
        return f"已并入投诉 #{parent}，今后随主件办理、办结。"

    return _act(p, complaint_id, run, "merge", {"parent_id": parent_id, "merge_reason": reason})


@router.post("/complaints/{complaint_id}/draft")
def draft_action(complaint_id: int, findings: str = Form(""), result: str = Form(""), actions: str = Form(""),
                 p: Page = Depends(page), drafter=Depends(get_drafter)) -> Response:
    def run() -> str:
        d = service.draft(p.session, complaint_id=complaint_id, actor=p.actor, drafter=drafter,
                          findings=findings or None, result=result or None, actions=actions or None, now=p.now)
        score = (d.quality or {}).get("score")
        return "已生成答复草稿" + (f"，质量评分 {score * 100:.0f} 分" if isinstance(score, (int, float)) else "") + \
            "。请核对、修改后提交。"

    return _act(p, complaint_id, run, "draft", {"findings": findings, "result": result, "actions": actions})


@router.post("/complaints/{complaint_id}/reply")
def reply_action(complaint_id: int, reply: str = Form(""), result: str = Form(""),
                 p: Page = Depends(page)) -> Response:
    def run() -> str:
        service.submit_reply(p.session, complaint_id=complaint_id, actor=p.actor, reply=reply, result=result,
                             now=p.now)
        return "答复已提交，等待审核办结。"

    return _act(p, complaint_id, run, "draft", {"reply": reply, "result": result})


@router.post("/complaints/{complaint_id}/close")
def close_action(complaint_id: int, reply: str = Form(""), result: str = Form(""), p: Page = Depends(page),
                 case_sink=Depends(get_case_sink)) -> Response:
    def run() -> str:
        c = service.close(p.session, complaint_id=complaint_id, actor=p.actor, reply=reply, result=result or None,
                          case_sink=case_sink, now=p.now)
        on_time = c.deadline is None or c.closed_at <= c.deadline
        return f"已审核通过并办结（{c.result}，{'按时办结' if on_time else '超期办结'}）。"

    return _act(p, complaint_id, run, "draft", {"reply": reply, "result": result})


@router.post("/complaints/{complaint_id}/return")
def return_action(complaint_id: int, reason: str = Form(""), p: Page = Depends(page)) -> Response:
    def run() -> str:
        service.return_(p.session, complaint_id=complaint_id, actor=p.actor, reason=reason, now=p.now)
        return "已退单，投诉回到调度员待派单。"

    return _act(p, complaint_id, run, "work", {"return_reason": reason})


@router.post("/complaints/{complaint_id}/acknowledge")
def acknowledge_action(complaint_id: int, p: Page = Depends(page)) -> Response:
    def run() -> str:
        service.acknowledge(p.session, complaint_id=complaint_id, actor=p.actor, now=p.now)
        return "已签收。"

    return _act(p, complaint_id, run, "assignment", {})


@router.post("/complaints/{complaint_id}/contact")
def contact_action(complaint_id: int, note: str = Form(""), contacted_at: str = Form(""),
                   p: Page = Depends(page)) -> Response:
    def run() -> str:
        a = service.record_contact(p.session, complaint_id=complaint_id, actor=p.actor, note=note,
                                   contacted_at=contacted_at.strip() or None, now=p.now)
        late = a.contact_deadline is not None and a.contacted_at > a.contact_deadline
        return "已登记先行联系" + ("（已超过先行联系期限）。" if late else "。")

    return _act(p, complaint_id, run, "contact", {"contact_note": note, "contacted_at": contacted_at})


@router.post("/complaints/{complaint_id}/reject")
def reject_action(complaint_id: int, reason: str = Form(""), p: Page = Depends(page)) -> Response:
    def run() -> str:
        service.reject_reply(p.session, complaint_id=complaint_id, actor=p.actor, reason=reason, now=p.now)
        return "已驳回答复，投诉退回承办单位重新办理，期限不变。"

    return _act(p, complaint_id, run, "draft", {"reject_reason": reason})


def _working_days(value: str) -> int | None:
    if not value.strip():
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise service.InvalidInput("延长的工作日数应为整数。") from None


@router.post("/complaints/{complaint_id}/extend")
def extend_action(complaint_id: int, reason: str = Form(""), deadline: str = Form(""),
                  working_days: str = Form(""), p: Page = Depends(page)) -> Response:
    def run() -> str:
        a = service.extend(p.session, complaint_id=complaint_id, actor=p.actor, reason=reason,
                           deadline=deadline.strip() or None, working_days=_working_days(working_days), now=p.now,
                           sla=p.sla)
        return f"已延期，新的办理期限 {present.fmt_dt(a.deadline)}。"

    return _act(p, complaint_id, run, "work",
                {"extend_reason": reason, "deadline": deadline, "working_days": working_days})


@router.post("/complaints/{complaint_id}/extension-request")
def extension_request_action(complaint_id: int, reason: str = Form(""), deadline: str = Form(""),
                             working_days: str = Form(""), p: Page = Depends(page)) -> Response:
    def run() -> str:
        a = service.request_extension(p.session, complaint_id=complaint_id, actor=p.actor, reason=reason,
                                      deadline=deadline.strip() or None, working_days=_working_days(working_days),
                                      now=p.now, sla=p.sla)
        return f"已提交延期申请（申请期限 {present.fmt_dt(a.extension_request_deadline)}），待调度员审批。"

    return _act(p, complaint_id, run, "work",
                {"extend_reason": reason, "deadline": deadline, "working_days": working_days})


@router.post("/complaints/{complaint_id}/extension-decision")
def extension_decision_action(complaint_id: int, decision: str = Form(""), reason: str = Form(""),
                              p: Page = Depends(page)) -> Response:
    def run() -> str:
        if decision not in ("approve", "deny"):
            raise service.InvalidInput("请选择同意或不同意。")
        a = service.decide_extension(p.session, complaint_id=complaint_id, actor=p.actor,
                                     approve=decision == "approve", reason=reason or None, now=p.now, sla=p.sla)
        if decision == "approve":
            return f"已同意延期，新的办理期限 {present.fmt_dt(a.deadline)}。"
        return "已不同意延期，办理期限不变。"

    return _act(p, complaint_id, run, "work", {"decision_reason": reason})


@router.post("/complaints/{complaint_id}/reopen")
def reopen_action(complaint_id: int, reason: str = Form(""), unit_type: str = Form(""),
                  p: Page = Depends(page)) -> Response:
    def run() -> str:
        a = service.reopen(p.session, complaint_id=complaint_id, actor=p.actor, reason=reason,
                           unit_type=unit_type or None, unit_namer=p.unit_namer, now=p.now, sla=p.sla)
        return f"已重办，派至{a.unit_name}，办理期限 {present.fmt_dt(a.deadline)}。"

    return _act(p, complaint_id, run, "reopen", {"reopen_reason": reason, "reopen_unit": unit_type})


# --------------------------------------------------------------------------------------- dashboard, report
def _period(date_from: str | None, date_to: str | None, now: datetime, *, weeks: int | None) -> tuple[date, date]:
    """Both dates from the form; defaults: today, and ``weeks`` whole weeks back (or the 1st of the month)."""
    end = parse_day((date_to or "").strip(), "to") or local_date(now)
    if weeks:
        default_start = end - timedelta(days=end.weekday()) - timedelta(weeks=weeks - 1)
    else:
        default_start = end.replace(day=1)
    start = parse_day((date_from or "").strip(), "from") or default_start
    if start > end:
        raise service.InvalidInput("开始日期不能晚于结束日期。")
    if (end - start).days >= MAX_PERIOD_DAYS:
        raise service.InvalidInput("统计区间最长三年，请缩短区间。")
    return start, end


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(date_from: str | None = Query(None, alias="from"), date_to: str | None = Query(None, alias="to"),
              p: Page = Depends(page)) -> HTMLResponse:
    start, end, messages = _period_or_default(date_from, date_to, p.now, weeks=DASHBOARD_WEEKS)
    m = compute_metrics(p.session, start, end, as_of=p.now)
    s_utc, e_utc = period_bounds(start, end)
    relapses = service.list_relapses(p.session, start=s_utc, end=e_utc)
    ctx = {"nav": "dashboard", "title": "统计", "m": m, "start": start.isoformat(), "end": end.isoformat(),
           "trend": charts.weekly_trend(m["by_week"]), "relapses": relapses, "messages": messages}
    return render(p.request, "dashboard.html", ctx, status_code=422 if messages else 200)


def _period_or_default(date_from: str | None, date_to: str | None, now: datetime, *,
                       weeks: int | None) -> tuple[date, date, list[tuple[str, str]]]:
    """The asked period, or, where it cannot be used, the default one with the reason: a reversed period used to
    replace the whole dashboard by an error page, the dates chosen lost."""
    try:
        return (*_period(date_from, date_to, now, weeks=weeks), [])
    except service.DomainError as exc:
        start, end = _period(None, None, now, weeks=weeks)
        return start, end, [("error", f"{present.zh(exc.message)}（{date_from or '—'} 至 {date_to or '—'}）；"
                                      f"下面显示默认区间。")]


CSV_COLUMNS = ["分组", "名称", "受理", "派单", "现承办", "办结", "办结率", "按时办结", "按时办结率", "退单", "退单率",
               "重办", "重办率", "延期", "超期未办结", "反弹", "重复件（已合并）", "应先行联系", "按时联系", "先行联系及时率"]


def _csv_row(group: str, name: str, b: dict[str, Any]) -> list[Any]:
    def v(key: str) -> Any:
        return b.get(key, "")

    def r(key: str) -> str:
        return present.pct(b[key]) if key in b and b[key] is not None else ""

    return [group, name, v("received"), v("assigned"), v("handled"), v("closed"), r("closure_rate"), v("on_time"),
            r("on_time_rate"), v("returned"), r("return_rate"), v("reopened"), r("reopen_rate"), v("extended"),
            v("overdue_open"), v("relapses"), v("duplicates"), v("contact_due"), v("contact_on_time"), r("contact_on_time_rate")]


@router.get("/dashboard.csv")
def dashboard_csv(date_from: str | None = Query(None, alias="from"), date_to: str | None = Query(None, alias="to"),
                  p: Page = Depends(page)) -> Response:
    """The dashboard's tables in one CSV (UTF-8 with BOM, so that Excel shows the Chinese)."""
    start, end = _period(date_from, date_to, p.now, weeks=DASHBOARD_WEEKS)
    m = compute_metrics(p.session, start, end, as_of=p.now)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([f"12345环境投诉办理统计 {start.isoformat()} 至 {end.isoformat()}（按受理时间）"])
    if m.get("demo"):  # the page says so; a spreadsheet passed on without the note would read as real results
        w.writerow([f"注：本期受理数中含演示数据 {m['demo']} 件（虚构示例），不是本单位的办理实绩"])
    w.writerow(CSV_COLUMNS)
    w.writerow(_csv_row("总体", "全部", m))
    for t in m["by_type"]:
        w.writerow(_csv_row("按类型", present.type_name(t["pollution_type"]), t))
    for u in m["by_unit"]:
        w.writerow(_csv_row("按承办单位", u["unit_name"] or present.unit_kind_name(u["unit_type"]), u))
    for wk in m["by_week"]:
        w.writerow(_csv_row("按周", f"{wk['week_start']}至{wk['week_end']}", wk))
    name = f"metrics_{start.isoformat()}_{end.isoformat()}.csv"
    return Response("\ufeff" + buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


_LIST_ITEM = re.compile(r"^\s{0,3}(?:[-*+]|\d{1,9}[.)])\s")


def markdown_html(text: str) -> Markup:
    """The report's Markdown as HTML; raw HTML in the text is escaped, never passed through.

    A paragraph written right under a list (no blank line between, as the report template does after a
    ``{% endfor %}``) would be swallowed into the last item by CommonMark's lazy continuation: a blank line is
    put between them first.
    """
    from markdown_it import MarkdownIt

    lines = text.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        out.append(line)
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if _LIST_ITEM.match(line) and nxt.strip() and not nxt.startswith((" ", "\t")) and not _LIST_ITEM.match(nxt):
            out.append("")
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    return Markup(md.render("\n".join(out)))


@router.get("/report", response_class=HTMLResponse)
def report_page(date_from: str | None = Query(None, alias="from"), date_to: str | None = Query(None, alias="to"),
                p: Page = Depends(page)) -> HTMLResponse:
    from triage.report import build_report

    start, end, messages = _period_or_default(date_from, date_to, p.now, weeks=None)
    text = build_report(p.session, start, end, as_of=p.now)
    ctx = {"nav": "report", "title": "工作报告", "start": start.isoformat(), "end": end.isoformat(),
           "html": markdown_html(text), "messages": messages}
    return render(p.request, "report.html", ctx, status_code=422 if messages else 200)


# --------------------------------------------------------------------------------------- knowledge, import
def _kb(app) -> tuple[Any, Any, Any]:
    """(settings, store, embedder) through the knowledge API's dependencies (tests override them there)."""
    from triage.api.knowledge import get_kb_embedder, get_kb_store

    return app.state.settings, resolve(app, get_kb_store), resolve(app, get_kb_embedder)


@router.get("/knowledge", response_class=HTMLResponse)
def knowledge_page(request: Request, q: str = "", collection: str = "regulations", k: str = "5", on: str = "",
                   _: str = Depends(demo), now: datetime = Depends(get_now)) -> HTMLResponse:
    form = {"q": q, "collection": collection, "k": k, "on": on}
    ctx: dict[str, Any] = {"nav": "knowledge", "title": "知识检索", "form": form, "results": None}
    if not q.strip():
        return render(request, "knowledge.html", ctx)
    try:
        from triage.kb.search import SearchError, search, validate
        from triage.kb.store import REGULATIONS, KnowledgeStoreError

        try:
            n = int(k)
        except ValueError:
            raise SearchError("条数应为 1 到 50 之间的整数") from None
        text = validate(q, collection, n)
        try:
            on_day = date.fromisoformat(on) if on.strip() else local_date(now)  # today in Beijing
        except ValueError:
            raise SearchError("日期格式应为 年-月-日") from None
        settings, store, embedder = _kb(request.app)
        if collection == REGULATIONS:
            from triage.api.knowledge import _ensure_default_knowledge

            _ensure_default_knowledge(settings, store, embedder)
        ctx["results"] = search(text, collection=collection, k=n, on=on_day, store=store, embedder=embedder,
                                jurisdiction=settings.jurisdiction, unit_type=_staff_unit(request))
        ctx["on_day"] = on_day.isoformat()
    except ImportError:
        ctx["messages"] = [("error", "知识库检索功能尚未安装。")]
    except SearchError as exc:
        ctx["messages"] = [("error", present.zh(str(exc)))]
        return render(request, "knowledge.html", ctx, status_code=422)
    except StarletteHTTPException as exc:
        ctx["messages"] = [("error", present.zh(str(exc.detail)))]
        return render(request, "knowledge.html", ctx, status_code=exc.status_code)
    except (KnowledgeStoreError, OSError, RuntimeError) as exc:
        log.error("knowledge page search failed: %s", exc)
        ctx["messages"] = [("error", "检索服务暂不可用，请稍后再试。")]
        return render(request, "knowledge.html", ctx, status_code=503)
    return render(request, "knowledge.html", ctx)


def _import_ctx(settings, **extra: Any) -> dict[str, Any]:
    limit = _upload_limit(settings)
    return {"nav": "import", "title": "历史案例导入", "max_mb": _mb(limit), "max_bytes": limit,
            "max_rows": MAX_SYNC_ROWS, "report": None, **extra}


@router.get("/import", response_class=HTMLResponse)
def import_form(request: Request, _: str = Depends(demo)) -> HTMLResponse:
    return render(request, "import.html", _import_ctx(request.app.state.settings))


class TooManyRows(Exception):
    """n: the file's valid rows; None where reading stopped at MAX_SYNC_RECORDS rows of any kind."""

    def __init__(self, n: int | None):
        self.n = n


def _run_import(app, path: Path) -> Any:
    from triage.kb.cases import TooManyRecords, import_cases

    _, store, embedder = _kb(app)

    def check_total(n: int) -> None:
        if n > MAX_SYNC_ROWS:
            raise TooManyRows(n)

    try:
        report = import_cases(path, store=store, embedder=embedder, on_total=check_total,
                              max_records=MAX_SYNC_RECORDS, max_unpacked=MAX_SYNC_UNPACKED)
    except TooManyRecords:
        raise TooManyRows(None) from None
    if report.imported:
        # The next suggestions should know these cases: retrain now (in the background), not at the next loop.
        from triage.classify.service import loaded_triager

        triager = loaded_triager()
        if triager is not None:
            triager.schedule_refresh()
    return report


def _upload_limit(settings) -> int:
    """Ours, or the app's request-body limit (``settings.max_body_bytes``) when that is lower."""
    body = getattr(settings, "max_body_bytes", None)
    if not body or body <= 0:
        return MAX_UPLOAD_BYTES
    return max(min(MAX_UPLOAD_BYTES, body - MULTIPART_OVERHEAD), 1)


def _body_too_large(exc: BaseException) -> bool:
    try:
        from triage.api.hardening import BodyTooLarge
    except ImportError:
        return False
    return isinstance(exc, BodyTooLarge)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f}".rstrip("0").rstrip(".")


@router.post("/import", response_class=HTMLResponse)
async def import_upload(request: Request, _: str = Depends(demo)) -> HTMLResponse:
    """Synchronous: the file is read, validated, embedded and stored before the answer (≤ MAX_SYNC_ROWS rows)."""
    def fail(status: int, message: str) -> HTMLResponse:
        return render(request, "import.html", _import_ctx(request.app.state.settings, messages=[("error", message)]),
                      status_code=status)

    limit = _upload_limit(request.app.state.settings)
    too_big = f"文件超过 {_mb(limit)} MB 的上限，请拆分后分批导入，或在服务器上用命令行 triage cases import。"
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared > limit + MULTIPART_OVERHEAD:
        return fail(413, too_big)
    try:
        form = await request.form(max_files=1, max_fields=10)
    except Exception as exc:  # noqa: BLE001 - malformed multipart, too many parts, too big
        if _body_too_large(exc):
            return fail(413, too_big)
        return fail(400, "上传内容无法解析，请重新选择文件上传。")
    upload = form.get("file")
    if upload is None or isinstance(upload, str) or not upload.filename:
        return fail(422, "请选择要导入的文件（CSV、XLSX 或 JSONL）。")
    name = Path(upload.filename).name
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        return fail(422, f"不支持的文件类型“{suffix or '无扩展名'}”：请上传 CSV（UTF-8 或 GB18030）、XLSX 或 JSONL 文件。")
    fd, tmp = tempfile.mkstemp(prefix="triage-import-", suffix=suffix)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(1024 * 1024):
                size += len(chunk)
                if size > limit:
                    return fail(413, too_big)
                out.write(chunk)
        if size == 0:
            return fail(422, "上传的文件是空的。")
        try:
            report = await run_in_threadpool(_run_import, request.app, Path(tmp))
        except TooManyRows as exc:
            found = (f"文件共有 {exc.n} 条有效记录" if exc.n is not None else f"文件超过 {MAX_SYNC_RECORDS} 行")
            return fail(413, f"{found}，超过网页导入的上限（有效记录 {MAX_SYNC_ROWS} 条）。请拆分文件分批导入，"
                             "或在服务器上用命令行 triage cases import（显示进度）。")
        except ImportError:
            return fail(503, "知识库功能尚未安装，无法导入。")
        except StarletteHTTPException as exc:
            return fail(exc.status_code, present.zh(str(exc.detail)))
        except ValueError as exc:  # CaseFileError: the file as a whole cannot be read
            return fail(422, present.zh(str(exc)))
        except (OSError, RuntimeError) as exc:
            log.error("import page failed: %s", exc)
            return fail(503, "知识库暂不可用，导入未完成；已写入的记录再次导入时会自动跳过。")
    finally:
        await upload.close()
        try:
            os.unlink(tmp)
        except OSError:
            pass
    ctx = _import_ctx(request.app.state.settings, report=report, filename=name,
                      rejected=report.rejected[:SHOWN_REJECTED],
                      more_rejected=max(len(report.rejected) - SHOWN_REJECTED, 0))
    level = "ok" if not report.rejected else "info"
    ctx["messages"] = [(level, f"导入完成：共 {report.total} 行，新增 {report.imported} 件，已存在 {report.already_present} 件，"
                               f"拒收 {len(report.rejected)} 行。")]
    return render(request, "import.html", ctx)
