"""A small OpenAI-compatible chat-completions server for tests, on 127.0.0.1 and an ephemeral port.

Modes (``server.mode = ...``, changeable between requests):
  normal      200 with ``server.content`` (a str, or a callable(request_json) -> str) as the message content
  structured  200 with JSON text built from the request's response_format json_schema (``server.structured``
              dict, or a callable(request_json) -> dict), as an OpenAI server with structured outputs answers
  slow        sleeps ``server.delay`` seconds, then answers like ``normal`` (for timeouts)
  trickle     sends the headers at once, then the body one byte at a time spread over ``server.delay``
              seconds: each read is quick, so a per-read client timeout never fires
  error500    HTTP 500 with an OpenAI-style error body
  malformed   HTTP 200 whose body is not JSON at all
  empty       200 with an empty message content
Every request body is kept in ``server.requests``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


class FakeLLMServer:
    def __init__(self, mode: str = "normal", content: str | Callable[[dict], str] = "",
                 structured: dict | Callable[[dict], dict] | None = None, delay: float = 5.0,
                 model: str = "fake-model"):
        self.mode = mode
        self.content = content
        self.structured = structured
        self.delay = delay
        self.model = model
        self.requests: list[dict] = []
        self.paths: list[str] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def __enter__(self) -> "FakeLLMServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):  # /v1/models, for clients that probe
                self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                server.requests.append(body)
                server.paths.append(self.path)
                server._respond(self, body)

            def _send(self, status: int, payload: Any, raw: bytes | None = None):
                data = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): fine
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-llm", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    # -- answers
    def completion(self, content: str, finish_reason: str = "stop") -> dict:
        return {
            "id": f"chatcmpl-fake-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }

    def _content(self, body: dict) -> str:
        return self.content(body) if callable(self.content) else str(self.content)

    def _respond(self, handler, body: dict) -> None:
        mode = self.mode
        if mode == "slow":
            time.sleep(self.delay)
            handler._send(200, self.completion(self._content(body)))
        elif mode == "trickle":
            data = json.dumps(self.completion(self._content(body)), ensure_ascii=False).encode("utf-8")
            try:
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.flush()
                step = self.delay / max(1, len(data))
                for i in range(len(data)):
                    handler.wfile.write(data[i : i + 1])
                    handler.wfile.flush()
                    time.sleep(step)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif mode == "error500":
            handler._send(500, {"error": {"message": "internal error (fake)", "type": "server_error"}})
        elif mode == "malformed":
            handler._send(200, None, raw=b"<html>upstream gateway said something that is not JSON")
        elif mode == "empty":
            handler._send(200, self.completion(""))
        elif mode == "structured":
            fmt = body.get("response_format") or {}
            if fmt.get("type") != "json_schema":
                handler._send(400, {"error": {"message": "expected response_format json_schema"}})
                return
            data = self.structured(body) if callable(self.structured) else (self.structured or {})
            handler._send(200, self.completion(json.dumps(data, ensure_ascii=False)))
        else:
            handler._send(200, self.completion(self._content(body)))
