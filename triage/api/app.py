"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from urllib.parse import unquote
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text as sql_text
from sqlalchemy.exc import OperationalError

from triage import __version__
from triage.db import db_error_line, get_engine, session_factory
from triage.queue.service import DomainError, retry_case_learning, retry_pending_triage
from triage.queue.sla import SlaConfigError
from triage.settings import Settings, get_settings

log = logging.getLogger(__name__)
DEMO_JOIN_SECONDS = 60.0  # the demo set is 15 complaints; loading the model first takes the most of it


def _retry_once(app: FastAPI, *, force: bool) -> dict[str, int]:
    from triage.api.deps import get_case_sink, get_sla_dep, get_triager, resolve

    triager = resolve(app, get_triager)
    sla = resolve(app, get_sla_dep)
    refresh = getattr(triager, "refresh_if_changed", None)
    if refresh is not None:  # cases imported by the CLI or another worker: retrain on them
        try:
            refresh()
        except Exception:  # noqa: BLE001 - triage keeps working with the previous model
            log.exception("retraining on changed cases failed")
    with app.state.session_factory() as session:
        counts = retry_pending_triage(session, triager, sla=sla, force=force)
    if counts["tried"]:
        log.info("triage retry: %s", counts)
    try:  # closed cases the knowledge base missed (Chroma was down at closing)
        with app.state.session_factory() as session:
            learned = retry_case_learning(session, resolve(app, get_case_sink))
        if learned["tried"]:
            log.info("case learning retry: %s", learned)
    except Exception:  # noqa: BLE001 - keep the loop alive
        log.exception("retrying the knowledge base's closed cases failed")
    return counts


async def _retry_loop(app: FastAPI, interval: float | None) -> None:
    from triage.queue.duplicates import load_tokenizer

    try:  # the triager is built below; the duplicate check's dictionary loads beside it, not on a complaint
        await asyncio.to_thread(load_tokenizer)
    except Exception:  # noqa: BLE001 - it loads on first use instead
        log.exception("loading the duplicate check's dictionary failed")
    first = True  # at startup every pending complaint is tried (the model may just have been fixed)
    while True:
        try:
            await asyncio.to_thread(_retry_once, app, force=first)
        except Exception:  # noqa: BLE001 - keep the loop alive
            log.exception("background triage retry failed")
        first = False
        if not interval:
            return
        await asyncio.sleep(interval)


LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


_QUERY_PARAM = re.compile(r"([?&])([^=&\s]+)=([^&\s]*)")
SECRET_PARAMS = {"api_key", "access_token", "token"}


def _redact(text: str) -> str:
    """The value of a secret query parameter replaced by ***; the name is compared URL-decoded (api%5Fkey is the
    app's api_key too)."""
    def one(m: re.Match) -> str:
        return f"{m.group(1)}{m.group(2)}=***" if unquote(m.group(2)).lower() in SECRET_PARAMS else m.group(0)

    return _QUERY_PARAM.sub(one, text)


class RedactSecrets(logging.Filter):
    """Open311 clients may pass their token as ``?api_key=`` (the GeoReport convention): uvicorn's access log
    wrote it out whole, and an integration token lives 720 hours. The value is replaced before the line is
    written."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "=" in a for a in record.args):
            record.args = tuple(_redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str) and "=" in record.msg and not record.args:
            record.msg = _redact(record.msg)
        return True


def configure_logging(level: str = "INFO") -> None:
    """Under uvicorn nothing set up logging: the service's warnings came out bare (no time, level or worker),
    its INFO lines (retries, retraining) were lost, and the model load wrote progress bars into the log. Where
    the root logger has no handler yet (uvicorn configures only its own loggers), log with time, level and pid;
    TRIAGE_LOG_LEVEL sets the service's level."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    try:
        logging.getLogger("triage").setLevel((level or "INFO").upper())
    except ValueError:
        logging.getLogger("triage").setLevel(logging.INFO)
        log.warning("unknown TRIAGE_LOG_LEVEL %r: using INFO", level)
    for noisy in ("transformers", "sentence_transformers", "chromadb", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactSecrets) for f in access.filters):
        access.addFilter(RedactSecrets())
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def check_knowledge(settings: Settings) -> None:
    """Load the office's knowledge files once before serving: a typo in taxonomy.yaml, routing.yaml, sla.yaml or
    calendar_overrides.yaml, or a TRIAGE_JURISDICTION they do not define, stops the start with one line naming
    the file and the line or entry (it used to surface per complaint, as triage errors and 500s)."""
    from triage.classify.routing import get_routing
    from triage.queue.sla import get_sla
    from triage.taxonomy import KnowledgeConfigError, get_taxonomy

    kd = Path(settings.knowledge_dir)
    tax, rout = kd / "taxonomy.yaml", kd / "routing.yaml"
    get_taxonomy(tax if tax.exists() else None)
    routing = get_routing(rout if rout.exists() else None)
    if settings.jurisdiction not in routing.jurisdictions:
        raise KnowledgeConfigError(
            f"TRIAGE_JURISDICTION={settings.jurisdiction} 不在 routing.yaml 中（已有：{', '.join(routing.jurisdictions)}）"
            f" / not a jurisdiction of routing.yaml")
    get_sla(settings.knowledge_dir)


def create_app(settings: Settings | None = None, *, retry_interval: float | None = 30.0,
               retry_on_startup: bool = True) -> FastAPI:
    """The web app and API. ``retry_interval``: seconds between rounds of the background loop (None/0: only once
    at startup; ``retry_on_startup=False``: never). Each round retrains on cases another process imported, loads a
    newer tuned encoder, and retries complaints still ``received`` (each after its own back-off,
    `retry_backoff`): a short round costs one count of the cases, and `triage cases import` beside a running
    server shows in its suggestions within half a minute."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    engine = get_engine(settings)
    # Schema: SQLite is migrated here (embedded setup); PostgreSQL only checked — `triage db upgrade` migrates it
    # before the workers start (TRIAGE_AUTO_MIGRATE=true to migrate here too). See triage/migrate.py.
    from triage.migrate import SchemaError, ensure_schema
    from triage.taxonomy import KnowledgeConfigError

    auto = settings.auto_migrate if settings.auto_migrate is not None else engine.dialect.name == "sqlite"
    try:
        check_knowledge(settings)
        ensure_schema(engine, migrate=auto)
    except KnowledgeConfigError as exc:
        log.critical("cannot start: %s", exc)
        raise
    except (SchemaError, OperationalError) as exc:
        # Said once, plainly, before uvicorn's traceback (with --workers it restarts the worker: see
        # docs/operations.md, §5 Running it).
        why = str(exc).strip() if isinstance(exc, SchemaError) else (
            f"无法连接数据库 / cannot reach the database: {db_error_line(exc)}")
        log.critical("cannot start: %s", why)
        raise

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_retry_loop(app, retry_interval)) if retry_on_startup else None
        app.state.retry_task = task
        try:
            yield
        finally:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            # The first page view loads the demo set in a thread. Stopping while it is inside the embedding model
            # aborted the process at exit (C++ "terminate called without an active exception"); let it finish.
            demo = getattr(app.state, "web_demo_thread", None)
            if demo is not None and demo.is_alive():
                log.info("waiting for the demo set to finish loading before stopping")
                await asyncio.to_thread(demo.join, DEMO_JOIN_SECONDS)
            from triage.classify.service import loaded_triager

            triager = loaded_triager()
            if triager is not None:  # a retraining after closures, likewise
                await asyncio.to_thread(triager.stop_background)

    app = FastAPI(title="12345 环境投诉分拣与办理", version=__version__, lifespan=lifespan,
                  description="受理、分拣、派单、办理、答复、办结与统计。接口约定见 CONTRACT.md。",
                  docs_url=None, redoc_url=None)  # /docs is mounted below with its assets served locally
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory(engine)

    from triage.api.hardening import allowed_hosts, error_response, install

    install(app, max_body_bytes=settings.max_body_bytes,
            hosts=allowed_hosts(settings.allowed_hosts, settings.auth_mode))

    @app.exception_handler(DomainError)
    async def _domain_error(request: Request, exc: DomainError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if "retry_after" in exc.extra:
            headers = {"Retry-After": str(exc.extra["retry_after"])}
        return error_response(request.url.path, exc.status_code, exc.message, extra=exc.extra, headers=headers)

    @app.exception_handler(SlaConfigError)
    async def _sla_broken(request: Request, exc: SlaConfigError) -> JSONResponse:
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return error_response(request.url.path, 503, str(exc))

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> JSONResponse:
        # One line in the log, a 503 with a reason for the client (a bare 500 and a traceback per request before).
        log.error("%s %s: database unavailable: %s", request.method, request.url.path,
                  db_error_line(exc))
        return error_response(request.url.path, 503, "数据库暂不可用，请稍后重试 / the database is unavailable",
                              headers={"Retry-After": "30"})

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        ctype = request.headers.get("content-type", "")
        if (request.url.path.startswith("/api/") and ctype and "json" not in ctype.lower() and any(
                tuple(e.get("loc", ())) == ("body",) for e in exc.errors())):
            # A form or text body where JSON is expected: pydantic's "Input should be a valid dictionary" does
            # not tell the integrator what to send.
            return error_response(request.url.path, 415, f"请求体须为 JSON（Content-Type: application/json），收到的是 "
                                  f"{ctype.split(';')[0]} / the body must be JSON (application/json)")
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
            parts.append(f"{loc}: {err.get('msg', '')}")
        detail = "请求格式不正确 / invalid request: " + "; ".join(parts)
        # Not the offending input itself: it may be huge, or NaN (which JSON cannot carry).
        errors = [{k: err[k] for k in ("type", "loc", "msg") if k in err} for err in exc.errors()]
        return error_response(request.url.path, 422, detail, extra={"errors": jsonable_encoder(errors)})

    from triage.api.complaints import router as complaints_router
    from triage.api.metrics import router as metrics_router

    from triage.api.open311 import router as open311_router
    from triage.auth.api import router as auth_router
    from triage.auth.deps import authorize

    # Every /api and /open311 router is guarded: roles and units per triage/auth/permissions.py (token mode).
    guarded = [Depends(authorize)]
    app.include_router(auth_router, dependencies=guarded)
    app.include_router(complaints_router, dependencies=guarded)
    app.include_router(metrics_router, dependencies=guarded)
    app.include_router(open311_router, dependencies=guarded)
    try:
        from triage.api.knowledge import router as knowledge_router
    except ImportError:
        log.info("triage.api.knowledge not available yet; /api/knowledge not mounted")
    else:
        app.include_router(knowledge_router, dependencies=guarded)

    @app.get("/api/health", tags=["meta"])
    def health() -> JSONResponse:
        """ok only when the database answers: a load balancer takes a worker that cannot reach it out."""
        try:
            with app.state.engine.connect() as conn:
                conn.execute(sql_text("SELECT 1"))
        except OperationalError as exc:
            log.error("health: database unavailable: %s", db_error_line(exc))
            return JSONResponse({"status": "unavailable", "database": "unavailable", "version": __version__},
                                status_code=503)
        return JSONResponse({"status": "ok", "version": __version__})

    app.add_api_route("/api/health", health, methods=["HEAD"], include_in_schema=False)  # proxies check with HEAD

    from triage.api.docs import mount_docs
    from triage.web.routes import mount_web  # the Chinese web pages (/, /complaints/…, /dashboard…) and /static

    mount_docs(app)
    mount_web(app)
    return app
