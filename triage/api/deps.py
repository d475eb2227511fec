"""FastAPI dependencies: everything the queue needs from outside is injected here, so tests override it.

| dependency        | default                                                         | tests give            |
|-------------------|-----------------------------------------------------------------|-----------------------|
| get_triager       | triage.classify.service.get_triager(settings)                   | a fake with .suggest  |
| get_drafter       | triage.drafting.service.draft_reply(req, settings=settings)     | a function req→Draft  |
| get_case_sink     | triage.kb.cases.upsert_case(case, store=…, embedder=…)          | a list.append         |
| get_unit_namer    | triage.classify.routing.unit_name(unit_type, jurisdiction)      | a function            |
| get_now           | the current UTC time                                            | a fixed clock         |
| get_sla_dep       | triage.queue.sla.get_sla(settings.knowledge_dir)                | —                     |

Imports of other domains happen inside the functions: the queue runs (and its tests pass) without them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from triage.auth.deps import get_principal as _get_principal
from triage.queue.models import utcnow
from triage.queue.sla import Sla, get_sla
from triage.settings import Settings

log = logging.getLogger(__name__)


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        try:
            yield session
        except Exception:
            session.rollback()
            raise


def get_now() -> datetime:
    return utcnow()


def get_sla_dep(settings: Settings = Depends(get_settings_dep)) -> Sla | None:
    """None when the office's SLA files cannot be read and none was loaded before: intake still stores the
    complaint; actions that need a deadline answer 503 with the file and line (SlaConfigError)."""
    from triage.queue.sla import SlaConfigError

    try:
        return get_sla(settings.knowledge_dir)
    except SlaConfigError:
        return None


def get_actor(principal=Depends(_get_principal)) -> str:
    """The acting user's name: the X-Actor header in dev mode (TRIAGE_AUTH_MODE=dev, default "dispatcher"),
    the token's user in token mode (401 without one). Roles: triage.auth.deps.get_principal / authorize."""
    return principal.name


class UnavailableTriager:
    """Stands in when the classifier cannot be loaded: every call fails, so complaints stay ``received``
    with the reason recorded, and the retry task picks them up once it loads."""

    def __init__(self, error: BaseException):
        self.error = error

    def suggest(self, text: str, *, occurred_at=None, address=None):
        raise RuntimeError(f"triager unavailable: {type(self.error).__name__}: {self.error}")


def get_triager(settings: Settings = Depends(get_settings_dep)) -> Any:
    try:
        from triage.classify.service import get_triager as _get_triager

        return _get_triager(settings)
    except Exception as exc:  # noqa: BLE001 - ImportError, missing model, Chroma down…
        log.warning("triager unavailable: %s", exc)
        return UnavailableTriager(exc)


def get_drafter(settings: Settings = Depends(get_settings_dep)) -> Callable[[Any], Any]:
    def drafter(req):
        from triage.drafting.service import draft_reply

        return draft_reply(req, settings=settings)

    return drafter


def get_case_sink(settings: Settings = Depends(get_settings_dep)) -> Callable[[dict[str, Any]], Any]:
    def sink(case: dict[str, Any]):
        from triage.embeddings import get_embedder
        from triage.kb.cases import upsert_case
        from triage.kb.store import get_store

        stored = upsert_case(case, store=get_store(settings), embedder=get_embedder(settings))
        # Closed cases teach the system: the triager retrains shortly after (debounced, in the background).
        from triage.classify.service import loaded_triager

        triager = loaded_triager()
        if triager is not None:
            triager.schedule_refresh()
        return stored

    return sink


def get_unit_namer(settings: Settings = Depends(get_settings_dep)) -> Callable[[str], str]:
    def namer(unit_type: str) -> str:
        from triage.classify.routing import unit_name

        return unit_name(unit_type, settings.jurisdiction)

    return namer


def resolve(app, dependency: Callable[..., Any]) -> Any:
    """Call a dependency outside a request (background tasks), honouring ``app.dependency_overrides``."""
    fn = app.dependency_overrides.get(dependency, dependency)
    params = inspect.signature(fn).parameters
    if "settings" in params:
        return fn(settings=app.state.settings)
    return fn()
