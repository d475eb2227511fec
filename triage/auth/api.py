"""``/api/auth`` (log in for a token, who am I, log out), ``/api/users`` (admin) and ``/api/jurisdictions``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from triage.api.deps import get_actor, get_session, get_settings_dep
from triage.auth import service
from triage.auth.deps import bearer, get_principal
from triage.auth.models import User
from triage.auth.service import Principal
from triage.queue.service import InvalidInput
from triage.settings import Settings

router = APIRouter(prefix="/api", tags=["auth"])


class TokenIn(BaseModel):
    username: str = Field(max_length=100)
    password: str = Field(max_length=service.MAX_PASSWORD)
    label: str | None = Field(default=None, max_length=100, description="令牌用途，例如设备名")


class UserOut(BaseModel):
    username: str
    display_name: str | None
    role: str
    unit_type: str | None
    active: bool
    created_at: datetime


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime
    user: UserOut


class UserIn(BaseModel):
    username: str = Field(max_length=100)
    password: str = Field(max_length=service.MAX_PASSWORD)
    role: str = Field(description="dispatcher / unit_staff / manager / admin")
    unit_type: str | None = Field(default=None, max_length=64, description="unit_staff 必填：承办单位类型")
    display_name: str | None = Field(default=None, max_length=100)


class UserPatch(BaseModel):
    role: str | None = None
    unit_type: str | None = Field(default=None, max_length=64)
    active: bool | None = None
    password: str | None = Field(default=None, max_length=service.MAX_PASSWORD)
    display_name: str | None = Field(default=None, max_length=100)


def user_out(u: User) -> UserOut:
    return UserOut(username=u.username, display_name=u.display_name, role=u.role, unit_type=u.unit_type,
                   active=u.active, created_at=u.created_at)


async def _token_body(request: Request) -> TokenIn:
    """JSON, or an OAuth2 password form (what /docs' Authorize button sends)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.form()
            data: Any = {k: form.get(k) for k in ("username", "password", "label") if form.get(k) is not None}
        else:
            data = json.loads(await request.body() or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput("请求体应为 JSON 或表单 / body must be JSON or a form") from exc
    if not isinstance(data, dict) or not isinstance(data.get("username"), str) \
            or not isinstance(data.get("password"), str):
        raise InvalidInput("需要 username 和 password / username and password are required")
    try:
        return TokenIn.model_validate(data)
    except ValueError as exc:
        raise InvalidInput("username 或 password 过长 / username or password too long") from exc


@router.post("/auth/token", response_model=TokenOut, summary="登录，取得访问令牌 / log in for a bearer token",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": TokenIn.model_json_schema()},
                 "application/x-www-form-urlencoded": {"schema": TokenIn.model_json_schema()}}}})
async def login(request: Request, settings: Settings = Depends(get_settings_dep)) -> TokenOut:
    body = await _token_body(request)

    def work() -> TokenOut:
        with request.app.state.session_factory() as session:
            token, rec, user = service.log_in(session, username=body.username, password=body.password,
                                              ttl=timedelta(hours=settings.token_ttl_hours), label=body.label,
                                              client=request.client.host if request.client else "")
            return TokenOut(access_token=token, expires_at=rec.expires_at, user=user_out(user))

    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(work)  # Argon2 takes ~50 ms of CPU: keep it off the event loop


@router.get("/auth/me", response_model=UserOut | dict, summary="当前用户 / who am I")
def me(principal: Principal = Depends(get_principal), session: Session = Depends(get_session)) -> Any:
    if principal.dev:
        return {"username": principal.name, "role": "dev", "unit_type": None, "dev": True}
    return user_out(service.get_user(session, principal.name))


@router.delete("/auth/token", status_code=204, summary="注销当前令牌 / revoke the token used")
def logout(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
           principal: Principal = Depends(get_principal), session: Session = Depends(get_session)) -> None:
    if credentials is not None:
        service.revoke_token(session, credentials.credentials)
        session.commit()


@router.get("/users", response_model=list[UserOut], summary="用户列表（管理员） / users")
def users(session: Session = Depends(get_session)) -> list[UserOut]:
    return [user_out(u) for u in service.list_users(session)]


@router.post("/users", response_model=UserOut, status_code=201, summary="新建用户（管理员） / add a user")
def add_user(body: UserIn, session: Session = Depends(get_session), actor: str = Depends(get_actor)) -> UserOut:
    u = service.create_user(session, username=body.username, password=body.password, role=body.role,
                            unit_type=body.unit_type, display_name=body.display_name, actor=actor)
    session.commit()
    return user_out(u)


@router.patch("/users/{username}", response_model=UserOut, summary="修改用户（管理员） / change a user")
def patch_user(username: str, body: UserPatch = Body(...), session: Session = Depends(get_session),
               actor: str = Depends(get_actor)) -> UserOut:
    u = service.update_user(session, username=username, role=body.role, unit_type=body.unit_type,
                            active=body.active, password=body.password, display_name=body.display_name,
                            actor=actor)
    session.commit()
    return user_out(u)


@router.get("/jurisdictions", summary="辖区及其承办单位名称 / jurisdictions and their unit names")
def jurisdictions(settings: Settings = Depends(get_settings_dep)) -> dict[str, Any]:
    from triage.classify.routing import get_routing

    routing = get_routing(settings.knowledge_dir / "routing.yaml")
    return {"current": settings.jurisdiction,
            "jurisdictions": [{"id": k, "name": v.get("name", k), "units": v.get("units", {})}
                              for k, v in routing.jurisdictions.items()]}
