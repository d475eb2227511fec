"""Edge hardening installed by ``create_app``: a request-body size limit (413), a guard against requests sent
from other sites' pages (CSRF, DNS rebinding), and error bodies that say what went wrong in Chinese and English,
in Open311's format under /open311.

The size limit is enforced on the declared Content-Length and again on the bytes actually received (chunked
uploads), before any route reads the body.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

HTTP_ZH = {
    400: "请求格式不正确", 401: "需要登录", 403: "无权访问", 404: "未找到", 405: "不支持的请求方法",
    406: "不支持的响应格式", 409: "状态冲突", 413: "请求体过大", 415: "不支持的内容类型", 422: "请求内容不正确",
    429: "请求过于频繁", 500: "服务器内部错误", 503: "服务暂不可用",
}


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive``: FastAPI re-raises HTTPExceptions met while reading a body (others become 400)."""

    def __init__(self, limit: int):
        super().__init__(413, f"请求体过大（上限 {limit} 字节） / request body larger than {limit} bytes")


class BodySizeLimit:
    """Pure ASGI middleware: 413 for a body over ``limit`` bytes."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.limit <= 0:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.limit
            except ValueError:
                too_big = False
            if too_big:
                await self._refuse(scope, receive, send)
                return
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send):
        detail = f"请求体过大（上限 {self.limit} 字节） / request body larger than {self.limit} bytes"
        response = error_response(scope.get("path", ""), 413, detail)
        await response(scope, receive, send)


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def host_name(netloc: str) -> str:
    """"example.org:8000" → "example.org", "[::1]:8000" → "::1", "http://example.org/" → "example.org"."""
    try:
        return (urlsplit(netloc if "//" in netloc else f"//{netloc}").hostname or "").lower()
    except ValueError:
        return ""


DEFAULT_PORTS = {"http": 80, "https": 443}


def _site(netloc: str, scheme: str) -> tuple[str, int | None]:
    """(host, port) with the scheme's default port filled in: "triage.office" and "triage.office:443" are one
    site over https."""
    try:
        parts = urlsplit(f"//{netloc}")
        return (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return "", None


class CrossSiteGuard:
    """Pure ASGI middleware against requests a page on another site makes the user's browser send.

    * A state-changing request (POST, PUT, PATCH, DELETE) whose ``Origin`` (or, without one, ``Referer``) names
      another host than the one addressed is refused (403). A browser sends these headers with every cross-site
      form or fetch and a page cannot forge them; clients that send neither (curl, integrations) pass. The pages'
      cookie is SameSite=Lax, but SameSite ignores ports: another service on the same intranet host counted as
      the same site. In dev mode, with no login at all, any page could post forms to the service.
    * ``allowed``: host names the service answers to (None: any). Dev mode allows only this machine's own names,
      so a page whose own host name was re-pointed at 127.0.0.1 (DNS rebinding) cannot read from it.
    """

    def __init__(self, app, allowed: frozenset[str] | None):
        self.app, self.allowed = app, allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or ()}
        host = headers.get("host", "")
        # No Host at all (an HTTP/1.0 health check) is no browser's request: DNS rebinding always carries one.
        if self.allowed is not None and host and host_name(host) not in self.allowed:
            await self._refuse(scope, receive, send, 400, (
                f"主机名 {host_name(host) or host!r} 不在本服务允许的范围内（TRIAGE_ALLOWED_HOSTS） / host not "
                "allowed; set TRIAGE_ALLOWED_HOSTS to the names the service is reached by"))
            return
        if scope.get("method", "GET") not in SAFE_METHODS:
            source = headers.get("origin") or headers.get("referer")
            if source and not self._same_site(source, host, headers.get("x-forwarded-host", "")):
                await self._refuse(scope, receive, send, 403, (
                    f"拒绝来自其他网站（{source[:100]}）的操作请求 / cross-site request refused: it came from a page "
                    "on another site (behind a proxy: pass the browser's host and port, nginx `proxy_set_header "
                    "Host $http_host;`)"))
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _same_site(source: str, host: str, forwarded_host: str) -> bool:
        """Whether the page that sent the request (Origin or Referer) is the host addressed: the Host header, or
        the first X-Forwarded-Host a proxy set. Ports count (another port is another service), with the scheme's
        default filled in on both sides."""
        if source == "null":
            return False
        try:
            parts = urlsplit(source)
        except ValueError:
            return False
        sent_from = _site(parts.netloc, parts.scheme)
        if not sent_from[0] or "@" in parts.netloc:
            return False
        addressed = [h.strip() for h in (host, forwarded_host.split(",")[0]) if h.strip()]
        return any(_site(h, parts.scheme) == sent_from for h in addressed)

    @staticmethod
    async def _refuse(scope, receive, send, status: int, detail: str):
        await error_response(scope.get("path", ""), status, detail)(scope, receive, send)


class SecurityHeaders:
    """Pure ASGI middleware: headers every response gets. The pages carry callers' names and numbers: no browser
    or proxy cache may keep them (static assets excepted), and no other site may frame them (a framed page can be
    made to click for the user). nosniff: a text answer is never run as a script."""

    CACHEABLE = ("/static/", "/docs-assets/")
    HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
               (b"content-security-policy", b"frame-ancestors 'none'"), (b"referrer-policy", b"same-origin")]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope.get("path", "").startswith(self.CACHEABLE)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self.HEADERS if k not in present]
                if not cacheable and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def allowed_hosts(setting: str | None, auth_mode: str) -> frozenset[str] | None:
    """TRIAGE_ALLOWED_HOSTS read: None = any host. Entries may carry a scheme or a port ("http://triage.office:8000"
    is "triage.office"; they matched nothing before). In dev mode this machine's own names are always allowed."""
    if setting is None:
        return frozenset(LOOPBACK_HOSTS) if auth_mode == "dev" else None
    raw = [x.strip() for x in setting.split(",") if x.strip()]
    if "*" in raw:
        return None
    names = {host_name(x) for x in raw} - {""}
    return frozenset(names | (set(LOOPBACK_HOSTS) if auth_mode == "dev" else set()))


def is_open311(path: str) -> bool:
    return path.startswith("/open311/")


def error_response(path: str, status: int, detail: str, extra: dict | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    if is_open311(path):
        from triage.api.open311 import open311_error

        return open311_error(path, status, detail, headers=headers)
    return JSONResponse(status_code=status, content=jsonable_encoder({"detail": detail, **(extra or {})}),
                        headers=headers)


def install(app: FastAPI, *, max_body_bytes: int, hosts: frozenset[str] | None = None) -> None:
    app.add_middleware(BodySizeLimit, limit=max_body_bytes)
    app.add_middleware(CrossSiteGuard, allowed=hosts)
    app.add_middleware(SecurityHeaders)  # outermost: refusals get the headers too

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, ensure_ascii=False)
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            # FastAPI's words for a body it could not decode, most often GBK text sent as JSON.
            detail = "请求体无法解析：须为 UTF-8 编码的 JSON / the body could not be parsed: send JSON encoded as UTF-8"
        zh = HTTP_ZH.get(exc.status_code)
        if zh and zh not in detail and not any("\u4e00" <= ch <= "\u9fff" for ch in detail):
            detail = f"{zh} / {detail}"
        return error_response(request.url.path, exc.status_code, detail, headers=getattr(exc, "headers", None))
