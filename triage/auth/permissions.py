"""Who may call what: one table from (method, route) to a permission, one table from permission to roles.

Every route under /api and /open311, and every web page, must appear in ROUTES (tests/test_auth.py fails
otherwise); a route that is missing is refused in token mode (fail closed). ``None`` = no login needed.
The check runs when a route first asks who the caller is (``get_principal``, behind ``get_actor``), and for the
/api and /open311 routers in any case (``authorize``).

Unit staff are further limited to their own unit's cases (``UNIT_SCOPED``): they read a complaint that was ever
assigned to their unit kind, act only on one assigned to it now, and their queue is filtered to it.
"""

from __future__ import annotations

from triage.auth.models import Role

D, U, M, A = Role.dispatcher.value, Role.unit_staff.value, Role.manager.value, Role.admin.value

PERMISSIONS: dict[str, frozenset[str]] = {
    "complaints.create": frozenset({D, A}),
    "complaints.read": frozenset({D, U, M, A}),
    "complaints.read_all": frozenset({D, M, A}),  # lists that are not (yet) filtered to a unit
    "complaints.assign": frozenset({D, A}),  # assign, merge, reopen, triage retry: the dispatcher's desk
    "complaints.work": frozenset({U, A}),  # draft, reply, return, ask for more time: the unit's work
    "complaints.extend": frozenset({D, A}),  # grant more time, or decide a unit's request for it
    # Review: the unit submits its reply, the dispatcher approves it (办结) or sends it back (驳回); a unit closing
    # its own case would skip the review that 12345 requires.
    "complaints.close": frozenset({D, A}),
    "metrics.read": frozenset({D, M, A}),
    "knowledge.read": frozenset({D, U, M, A}),
    "knowledge.manage": frozenset({A}),
    "jurisdictions.read": frozenset({D, U, M, A}),
    "jurisdictions.manage": frozenset({A}),
    "users.manage": frozenset({A}),
    "self": frozenset({D, U, M, A}),
}

# Permissions whose {complaint_id} routes check the unit of unit staff: "read" (ever assigned to the unit) or
# "act" (assigned to it now).
UNIT_SCOPED = {"complaints.read": "read", "complaints.work": "act"}

ROUTES: dict[tuple[str, str], str | None] = {
    ("GET", "/api/health"): None,
    ("POST", "/api/auth/token"): None,
    # The API's description (Swagger UI, triage/api/docs.py) as FastAPI's own /openapi.json: public, it holds no
    # data; calling the API from it needs a token like any other client.
    ("GET", "/docs"): None,
    ("GET", "/docs-assets/{name}"): None,
    ("GET", "/api/auth/me"): "self",
    ("DELETE", "/api/auth/token"): "self",
    ("POST", "/api/complaints"): "complaints.create",
    ("GET", "/api/complaints/{complaint_id}"): "complaints.read",
    ("GET", "/api/queue"): "complaints.read",
    ("POST", "/api/complaints/{complaint_id}/assign"): "complaints.assign",
    ("POST", "/api/complaints/{complaint_id}/merge"): "complaints.assign",
    ("POST", "/api/complaints/{complaint_id}/reopen"): "complaints.assign",
    ("POST", "/api/triage/retry"): "complaints.assign",
    ("POST", "/api/complaints/{complaint_id}/draft"): "complaints.work",
    ("POST", "/api/complaints/{complaint_id}/reply"): "complaints.work",
    ("POST", "/api/complaints/{complaint_id}/return"): "complaints.work",
    ("POST", "/api/complaints/{complaint_id}/extend"): "complaints.extend",
    ("POST", "/api/complaints/{complaint_id}/extension-request"): "complaints.work",
    ("POST", "/api/complaints/{complaint_id}/acknowledge"): "complaints.work",
    ("POST", "/api/complaints/{complaint_id}/contact"): "complaints.work",
    ("POST", "/api/complaints/{complaint_id}/extension-decision"): "complaints.extend",
    ("POST", "/api/complaints/{complaint_id}/close"): "complaints.close",
    ("POST", "/api/complaints/{complaint_id}/reject"): "complaints.close",
    ("GET", "/api/metrics"): "metrics.read",
    ("GET", "/api/report"): "metrics.read",
    ("GET", "/api/relapses"): "metrics.read",
    ("GET", "/api/knowledge/search"): "knowledge.read",
    ("GET", "/api/jurisdictions"): "jurisdictions.read",
    ("GET", "/api/users"): "users.manage",
    ("POST", "/api/users"): "users.manage",
    ("PATCH", "/api/users/{username}"): "users.manage",
    ("GET", "/open311/v2/discovery.{fmt}"): None,
    ("GET", "/open311/v2/services.{fmt}"): None,
    ("GET", "/open311/v2/services/{service_code}.{fmt}"): None,
    ("GET", "/open311/v2/requests.{fmt}"): "complaints.read",
    ("POST", "/open311/v2/requests.{fmt}"): "complaints.create",
    ("GET", "/open311/v2/requests/{service_request_id}.{fmt}"): "complaints.read",
    # The web pages (triage/web/routes.py). They ask get_actor, which checks these in token mode. The queue page
    # shows unit staff only what their unit works now, as GET /api/queue does.
    ("GET", "/login"): None,
    ("POST", "/login"): None,
    ("POST", "/logout"): None,
    ("GET", "/"): "complaints.read",
    ("GET", "/queue"): "complaints.read",
    ("POST", "/queue/accept"): "complaints.assign",
    ("GET", "/complaints/new"): "complaints.create",
    ("POST", "/complaints/new"): "complaints.create",
    ("GET", "/complaints/{complaint_id}"): "complaints.read",
    ("POST", "/complaints/{complaint_id}/assign"): "complaints.assign",
    ("POST", "/complaints/{complaint_id}/merge"): "complaints.assign",
    ("POST", "/complaints/{complaint_id}/reopen"): "complaints.assign",
    ("POST", "/complaints/{complaint_id}/draft"): "complaints.work",
    ("POST", "/complaints/{complaint_id}/reply"): "complaints.work",
    ("POST", "/complaints/{complaint_id}/return"): "complaints.work",
    ("POST", "/complaints/{complaint_id}/extend"): "complaints.extend",
    ("POST", "/complaints/{complaint_id}/extension-request"): "complaints.work",
    ("POST", "/complaints/{complaint_id}/acknowledge"): "complaints.work",
    ("POST", "/complaints/{complaint_id}/contact"): "complaints.work",
    ("POST", "/complaints/{complaint_id}/extension-decision"): "complaints.extend",
    ("POST", "/complaints/{complaint_id}/close"): "complaints.close",
    ("POST", "/complaints/{complaint_id}/reject"): "complaints.close",
    ("GET", "/dashboard"): "metrics.read",
    ("GET", "/dashboard.csv"): "metrics.read",
    ("GET", "/report"): "metrics.read",
    ("GET", "/knowledge"): "knowledge.read",
    ("GET", "/import"): "knowledge.manage",
    ("POST", "/import"): "knowledge.manage",
}


def allowed(role: str, permission: str) -> bool:
    return role in PERMISSIONS.get(permission, frozenset())
