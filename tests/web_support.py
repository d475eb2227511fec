"""Fakes for the web page tests (TestClient and browser): an in-memory knowledge store, a character-bigram
embedder, a triager whose suggestions carry evidence, and the app factory with every heavy dependency replaced.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from conftest import FakeTriager, fake_drafter

from triage.classify.types import Suggestion
from triage.kb.store import Hit

DIM = 128
CODE = "中华人民共和国生态环境法典"
NOISE_LAW = "中华人民共和国噪声污染防治法"


class FakeEmbedder:
    """Hashed character bigrams, normalised: texts sharing words come out close."""

    def _one(self, text: str) -> np.ndarray:
        v = np.zeros(DIM, dtype=np.float32)
        for a, b in zip(text, text[1:]):
            v[int(hashlib.md5((a + b).encode()).hexdigest()[:6], 16) % DIM] += 1.0
        n = float(np.linalg.norm(v))
        return v / n if n else v

    def embed_query(self, text: str) -> np.ndarray:
        return self._one(text)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, DIM), dtype=np.float32)


class FakeStore:
    """The KnowledgeStore calls the pages use, over dicts."""

    def __init__(self):
        self.rows: dict[str, dict[str, tuple[np.ndarray, str, dict[str, Any]]]] = {"regulations": {}, "cases": {}}

    def count(self, name: str) -> int:
        return len(self.rows[name])

    def existing_ids(self, name: str, ids: list[str]) -> set[str]:
        return {i for i in ids if i in self.rows[name]}

    def upsert(self, name, ids, vectors, documents, metadatas) -> None:
        for i, v, d, m in zip(ids, vectors, documents, metadatas):
            self.rows[name][i] = (np.asarray(v, dtype=np.float32), d, dict(m))

    def query(self, name: str, vector, k: int = 5, where=None) -> list[Hit]:
        q = np.asarray(vector, dtype=np.float32)
        hits = [Hit(id=i, text=d, metadata=m, similarity=float(np.dot(q, v)))
                for i, (v, d, m) in self.rows[name].items()]
        return sorted(hits, key=lambda h: -h.similarity)[:k]


def seeded_store(embedder: FakeEmbedder) -> FakeStore:
    """Two articles (one of the Code in force, one of a repealed law) and one past case."""
    store = FakeStore()
    laws = [
        ("code-572", "在噪声敏感建筑物集中区域，禁止夜间进行产生噪声的建筑施工作业，但抢修、抢险施工作业除外。",
         {"law": CODE, "article": "第五百七十二条", "article_no": 572, "effective": "2026-08-15", "repealed": "",
          "part_path": "第四编 污染防治 · 噪声污染防治"}),
        ("noise-43", "在噪声敏感建筑物集中区域，禁止夜间进行产生噪声的建筑施工作业。",
         {"law": NOISE_LAW, "article": "第四十三条", "article_no": 43, "effective": "2022-06-05",
          "repealed": "2026-08-15", "part_path": "第四章 建筑施工噪声污染防治"}),
    ]
    store.upsert("regulations", [x[0] for x in laws], embedder.embed_passages([x[1] for x in laws]),
                 [x[1] for x in laws], [x[2] for x in laws])
    case = "夜间工地打桩施工噪音扰民，居民无法休息"
    store.upsert("cases", ["HK-001"], embedder.embed_passages([case]), [case],
                 [{"order_id": "HK-001", "pollution_type": "noise", "subtype": "noise.construction",
                   "unit_type": "urban_management", "unit_raw": "龙华区综合行政执法局",
                   "reply": "经现场核查，该工地夜间施工属实，已责令停止夜间施工。"}])
    return store


class EvidenceTriager(FakeTriager):
    """The conftest triager, plus the evidence a real one returns (similar cases, articles in and out of force)."""

    def suggest(self, text: str, *, occurred_at=None, address=None) -> Suggestion:
        s = super().suggest(text, occurred_at=occurred_at, address=address)
        return Suggestion.model_validate({**s.model_dump(),
            "unit_alternatives": [{"unit_type": "ecology_environment", "confidence": 0.1}],
            "similar_cases": [{"id": "HK-001", "text": "夜间工地打桩施工噪音扰民，居民无法休息", "pollution_type": "noise",
                               "subtype": "noise.construction", "unit_type": "urban_management",
                               "unit_raw": "龙华区综合行政执法局", "reply": "经现场核查，该工地夜间施工属实，已责令停止夜间施工。",
                               "similarity": 0.83}],
            "regulations": [
                {"law": CODE, "article": "第五百七十二条", "article_no": 572, "text": "禁止夜间进行产生噪声的建筑施工作业。",
                 "in_force": True, "similarity": 0.71},
                {"law": NOISE_LAW, "article": "第四十三条", "article_no": 43, "text": "禁止夜间进行产生噪声的建筑施工作业。",
                 "in_force": False, "similarity": 0.69}],
        })


def make_app(settings, *, triager=None, clock=None, sink=None, store=None, embedder=None):
    """The app with the conftest fakes for the queue and the knowledge fakes above for search and import."""
    from triage.api import deps
    from triage.api.app import create_app
    from triage.api.knowledge import get_kb_embedder, get_kb_store

    embedder = embedder or FakeEmbedder()
    store = store if store is not None else seeded_store(embedder)
    triager = triager or EvidenceTriager()
    sink = sink if sink is not None else []
    app = create_app(settings, retry_on_startup=False)
    app.dependency_overrides[deps.get_triager] = lambda: triager
    app.dependency_overrides[deps.get_drafter] = lambda: fake_drafter
    app.dependency_overrides[deps.get_case_sink] = lambda: sink.append
    app.dependency_overrides[deps.get_unit_namer] = lambda: (lambda ut: f"测试区{ut}")
    app.dependency_overrides[get_kb_store] = lambda: store
    app.dependency_overrides[get_kb_embedder] = lambda: embedder
    if clock is not None:
        app.dependency_overrides[deps.get_now] = clock
    app.state.test_store, app.state.test_sink, app.state.test_triager = store, sink, triager
    return app


BAD_ROWS_CSV = (
    "order_id,text,pollution_type,subtype,unit_type,reply\n"
    "W-1,楼下烧烤店油烟直排，熏得无法开窗,air,air.cooking_fumes,urban_management,已责令安装油烟净化器\n"
    "W-2,,noise,,public_security,\n"
    "W-3,工地夜间施工噪音扰民,noise,noise.construction,urban_management,已责令停止夜间施工\n"
    "W-4,河涌发黑发臭,waterr,,water_affairs,\n"
    "W-3,重复的工单号,noise,,urban_management,\n"
    "W-6,小区门口垃圾堆积无人清运,solid_waste,solid_waste.household,sanitation_dept,\n"
)
"""6 data rows: 2 good (W-1, W-3); rejected: row 3 (empty text), row 5 (unknown type), row 6 (duplicate order_id),
row 7 (unknown unit)."""
