"""Shared fixtures: a throw-away SQLite database, a settable clock, fakes for the triager/drafter/case sink,
and a TestClient whose dependencies are the fakes. Suites add their own fixtures in their own files."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

# Starlette's TestClient addresses the app as http://testserver; dev mode otherwise answers only this machine's own
# names (triage/api/hardening.py). test_bad_input.py checks that default with the setting left unset.
os.environ.setdefault("TRIAGE_ALLOWED_HOSTS", "testserver,localhost,127.0.0.1,::1")

from triage.classify.types import Suggestion
from triage.settings import Settings

BJ = ZoneInfo("Asia/Shanghai")
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def bj(*args: int) -> datetime:
    """A Beijing wall-clock time as an aware UTC datetime: bj(2026, 9, 28, 10)."""
    return datetime(*args, tzinfo=BJ).astimezone(UTC)


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# keyword → (pollution_type, subtype, unit_type): enough to make the fake triager say something plausible
_RULES = [
    ("油烟", ("air", "air.cooking_fumes", "urban_management")),
    ("施工", ("noise", "noise.construction", "urban_management")),
    ("噪音", ("noise", "noise.social_life", "public_security")),
    ("污水", ("water", "water.sewage", "water_affairs")),
    ("垃圾", ("solid_waste", "solid_waste.household", "sanitation")),
]


class FakeTriager:
    """Keyword triager; ``fail = True`` makes it raise like an unreachable Chroma."""

    def __init__(self):
        self.fail = False
        self.calls = 0
        self.low_confidence_words = ("不清楚",)

    def suggest(self, text: str, *, occurred_at=None, address=None) -> Suggestion:
        self.calls += 1
        if self.fail:
            raise ConnectionError("Chroma unreachable")
        pt, st, ut = next((v for k, v in _RULES if k in text), ("air", "air.other", "ecology_environment"))
        low = any(w in text for w in self.low_confidence_words)
        return Suggestion(pollution_type=pt, subtype=st, unit_type=ut, unit_name=f"测试区{ut}",
                          confidence=0.4 if low else 0.9, unit_confidence=0.8, low_confidence=low,
                          alternatives=[{"pollution_type": "noise", "confidence": 0.05}],
                          unit_decided_by="rule R1", versions={"model": "fake-1"})


def fake_drafter(req):
    from triage.drafting.types import Citation, Draft, QualityReport

    return Draft(text=f"您好！您反映的“{req.complaint_text[:20]}”问题，经{req.unit_name}核查{req.result or ''}。",
                 citations=[Citation(law="中华人民共和国生态环境法典", article="第五百七十二条", in_force=True)],
                 generator="template", prompt_version="reply-test-1",
                 quality=QualityReport(score=0.9, parts={"greeting": True}, problems=[]))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'queue.db'}")


@pytest.fixture
def engine(settings):
    from triage.db import create_all, make_engine

    eng = make_engine(settings.resolved_database_url)
    create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine):
    from triage.db import session_factory

    with session_factory(engine)() as s:
        yield s


@pytest.fixture
def triager() -> FakeTriager:
    return FakeTriager()


@pytest.fixture
def clock() -> Clock:
    return Clock(bj(2026, 11, 2, 9))


@pytest.fixture
def sink() -> list[dict]:
    """Cases handed to the knowledge base (the default case sink is replaced by ``sink.append``)."""
    return []


@pytest.fixture
def app(settings, triager, clock, sink):
    from triage.api import deps
    from triage.api.app import create_app

    application = create_app(settings, retry_on_startup=False)
    application.dependency_overrides[deps.get_triager] = lambda: triager
    application.dependency_overrides[deps.get_drafter] = lambda: fake_drafter
    application.dependency_overrides[deps.get_case_sink] = lambda: sink.append
    application.dependency_overrides[deps.get_unit_namer] = lambda: (lambda ut: f"测试区{ut}")
    application.dependency_overrides[deps.get_now] = clock
    return application


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    return TestClient(app)
