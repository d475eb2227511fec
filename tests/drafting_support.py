"""Shared helpers for the drafting tests: where the shared data is, and a few real articles.

The articles are read from the statute markdown in ../shared/data/laws by the knowledge base's parser, held in
memory (triage.drafting.lawfiles.LawLibrary), so these tests do not depend on the knowledge-base ingest.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LAWS = SHARED_DATA / "laws"
CODE_DIR = LAWS / "national" / "生态环境法典"
CODE = "中华人民共和国生态环境法典"

needs_laws = pytest.mark.skipif(not CODE_DIR.exists(), reason="shared law files absent (../shared/data/laws)")
needs_replies = pytest.mark.skipif(not (SHARED_DATA / "replies" / "taidi2020_env_replies_dev.csv").exists(),
                                   reason="shared replies file absent")
needs_cases = pytest.mark.skipif(not (SHARED_DATA / "cases" / "haikou12345_env_dev.csv").exists(),
                                 reason="shared cases file absent")


@lru_cache(maxsize=1)
def library():
    from triage.drafting.lawfiles import LawLibrary

    return LawLibrary.from_paths(LAWS)


def real_articles(*keys: tuple[str, int], in_force: bool = True) -> list[dict]:
    """Real article texts from the shared statutes: ``(law, article_no)`` → retriever-style dicts."""
    lib = library()
    out = []
    for law, no in keys:
        rec = lib.get(law, no)
        assert rec is not None, f"{law} {no} not found in shared statutes"
        out.append({"law": rec.law, "article": rec.article, "article_no": rec.article_no, "text": rec.text,
                    "in_force": in_force})
    return out


def fake_retriever(articles_by_period: dict[str, list[dict]]):
    """A retriever that returns fixed articles, choosing 'code' for facts from 2026-08-15 and 'old' before."""
    from datetime import date

    calls = []

    def retrieve(text, on, *, k=5, subtype=None):
        calls.append({"text": text, "on": on, "k": k, "subtype": subtype})
        key = "code" if on >= date(2026, 8, 15) else "old"
        return list(articles_by_period.get(key, []))

    retrieve.calls = calls
    return retrieve


def read_csv(name: str) -> list[dict]:
    with open(SHARED_DATA / name, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))
