"""FastAPI dependencies for authentication and authorisation.

* ``get_principal``: who calls. Dev mode: the X-Actor header (URL-encoded Chinese allowed), every role's rights.
  Token mode: ``Authorization: Bearer trg_…`` (Open311 clients may send it as ``api_key`` instead; the web pages
  read it from the cookie ``/login`` sets); else 401.
* ``authorize``: mounted on the /api and /open311 routers by ``create_app``; looks the route up in
  ``permissions.ROUTES`` and checks the role, and the unit for unit staff. Public routes never resolve a token.
* ``get_unit_scope``: the unit kind a unit-staff caller is limited to (None for everyone else).
"""

from __future__ import annotations

from urllib.parse import unquote

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from triage.auth.models import ROLE_ZH, Role
from triage.auth.permissions import ROUTES, UNIT_SCOPED, allowed
from triage.auth.service import AuthError, Forbidden, Principal, resolve_token
from triage.queue.service import InvalidInput, NotFound

bearer = HTTPBearer(auto_error=False, description="POST /api/auth/token 取得的令牌 / token from /api/auth/token")
STAFF_STATUSES = ("assigned", "replied")
WEB_TOKEN_COOKIE = "triage_session"


def auth_mode(request: Request) -> str:
    settings = getattr(request.app.state, "settings", None)
    return getattr(settings, "auth_mode", "dev") or "dev"


def dev_actor(x_actor: str | None) -> str:
    actor = unquote(x_actor).strip() if x_actor else ""
    return actor[:100] or "dispatcher"


def _token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is not None and credentials.scheme.lower() == "bearer":
        return credentials.credentials.strip()
    path = request.url.path
    if path.startswith("/open311/"):
        return request.query_params.get("api_key") or None
    if not path.startswith("/api/"):
        # Web pages: the token the login page keeps in an HttpOnly, SameSite=Lax cookie (another site's form
        # cannot post with it). The API never reads the cookie: its clients send the header.
        return request.cookies.get(WEB_TOKEN_COOKIE) or None
    return None


def get_principal(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
                  x_actor: str | None = Header(default=None, description="开发模式下的操作人（可 URL 编码中文）"),
                  ) -> Principal:
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    if auth_mode(request) == "dev":
        principal = Principal(name=dev_actor(x_actor), role=Role.admin.value, dev=True)
    else:
        token = _token(request, credentials)
        if not token:
            raise AuthError("需要登录：请携带 Authorization: Bearer 令牌 / authentication required: send a bearer "
                            "token from POST /api/auth/token")
        with request.app.state.session_factory() as session:
            principal = resolve_token(session, token)
        if principal is None:
            raise AuthError("令牌无效或已过期，请重新登录 / invalid or expired token; log in again")
        request.state.identity = principal  # who it is, even when refused: the 403 page still shows the user
        enforce(request, principal)  # whichever route asks who calls (API, Open311, web page) is checked
    request.state.principal = principal
    return principal


def _route_key(request: Request) -> tuple[str, str]:
    route = request.scope.get("route")
    method = "GET" if request.method == "HEAD" else request.method
    return method, getattr(route, "path", request.url.path)


def authorize(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
              x_actor: str | None = Header(default=None, include_in_schema=False)) -> None:
    """Router-level guard: public routes pass; every other route needs a principal, which is checked."""
    key = _route_key(request)
    if key in ROUTES and ROUTES[key] is None:
        return  # public
    get_principal(request, credentials, x_actor)


def enforce(request: Request, principal: Principal) -> None:
    """The route's permission for this role, and the unit for unit staff (token mode only)."""
    key = _route_key(request)
    if key in ROUTES and ROUTES[key] is None:
        return
    permission = ROUTES.get(key)
    if permission is None:  # a route nobody classified: refuse rather than guess
        raise Forbidden(f"未配置权限的接口 / no permission rule for {key[0]} {key[1]}")
    if not allowed(principal.role, permission):
        raise Forbidden(f"{ROLE_ZH.get(principal.role, principal.role)}无权执行此操作 / role '{principal.role}' may "
                        f"not do this ({permission})")
    scope = UNIT_SCOPED.get(permission)
    if principal.role == Role.unit_staff.value and scope and "complaint_id" in request.path_params:
        try:
            cid = int(request.path_params["complaint_id"])
        except ValueError:
            return  # the route's own validation answers 422
        check_unit_access(request, cid, principal, scope)


def check_unit_access(request: Request, complaint_id: int, principal: Principal, scope: str) -> None:
    """Unit staff: 404 for a case never assigned to their unit (its existence is not revealed), 403 for acting
    on one that was theirs but is not now."""
    from triage.queue.models import Assignment, Complaint

    with request.app.state.session_factory() as session:
        ever = session.scalar(select(Assignment.id).where(Assignment.complaint_id == complaint_id,
                                                          Assignment.unit_type == principal.unit_type).limit(1))
        if ever is None and scope == "read":
            # A duplicate merged into one of the unit's cases: its caller gets the unit's reply, so the unit reads
            # it (the case page links it; it answered 404).
            parent = session.scalar(select(Complaint.merged_into).where(Complaint.id == complaint_id))
            if parent is not None:
                ever = session.scalar(select(Assignment.id).where(Assignment.complaint_id == parent,
                                                                  Assignment.unit_type == principal.unit_type)
                                      .limit(1))
        if ever is None:
            raise NotFound(f"投诉 {complaint_id} 不存在 / complaint {complaint_id} not found")
        if scope == "act":
            now_assigned = session.scalar(select(Assignment.id).join(Complaint, Complaint.id == Assignment.complaint_id)
                                          .where(Assignment.complaint_id == complaint_id,
                                                 Assignment.ended_at.is_(None),
                                                 Assignment.unit_type == principal.unit_type,
                                                 Complaint.unit_type == principal.unit_type).limit(1))
            if now_assigned is None:
                raise Forbidden(f"投诉 {complaint_id} 已不由本单位承办 / complaint {complaint_id} is no longer "
                                f"assigned to your unit")


def get_unit_scope(principal: Principal = Depends(get_principal)) -> str | None:
    if principal.dev or principal.role != Role.unit_staff.value:
        return None
    return principal.unit_type


def own_unit_cases(cases: list[dict], unit_scope: str | None) -> list[dict]:
    """The similar past cases (as stored with a suggestion) a caller may read: unit staff only those their own unit
    handled (a past case's text and reply hold its caller's name and another unit's findings); others all."""
    if unit_scope is None:
        return list(cases)
    return [sc for sc in cases if sc.get("unit_type") == unit_scope]


def staff_queue_status(status: str | None) -> str | None:
    """Unit staff see only cases their unit works now: the asked statuses narrowed to assigned/replied
    (None = nothing left to show)."""
    asked = [x.strip() for x in (status or ",".join(STAFF_STATUSES)).split(",") if x.strip()]
    from triage.queue.models import Status

    bad = [x for x in asked if x not in {s.value for s in Status}]
    if bad:
        raise InvalidInput(f"未知的状态：{', '.join(bad)} / unknown status")
    kept = [x for x in asked if x in STAFF_STATUSES]
    return ",".join(kept) or None
