"""Edge hardening installed by ``create_app``: a request-body size limit (413) and error bodies that say what
went wrong in Chinese and English, in Open311's format under /open311.

The size limit is enforced on the declared Content-Length and again on the bytes actually received (chunked
uploads), before any route reads the body.
"""

from __future__ import annotations

import json

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


def is_open311(path: str) -> bool:
    return path.startswith("/open311/")


def error_response(path: str, status: int, detail: str, extra: dict | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    if is_open311(path):
        from triage.api.open311 import open311_error

        return open311_error(path, status, detail, headers=headers)
    return JSONResponse(status_code=status, content=jsonable_encoder({"detail": detail, **(extra or {})}),
                        headers=headers)


def install(app: FastAPI, *, max_body_bytes: int) -> None:
    app.add_middleware(BodySizeLimit, limit=max_body_bytes)

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
