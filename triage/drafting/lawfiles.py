"""Articles straight from law markdown files, and a small retriever over them.

The knowledge base (Chroma, ``triage.kb``) is the production source of articles. This module is the
stand-alone fallback used by the benchmark, the tests, and the drafter when the knowledge base is not built:
it reads the same markdown styles (``**第一条**　…`` and ``第一条 …``) and ranks articles by character n-gram
TF-IDF, which needs no embedding model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from triage.drafting.laws import (
    NUMERAL_CHARS,
    article_label,
    as_date,
    cn_to_int,
    dates_in_force,
    law_dates,
    law_key,
)

_ARTICLE_START = re.compile(rf"^\s*(?:\*\*)?第([{NUMERAL_CHARS}]+)条(?:\*\*)?[\s　]*(.*)$")
_EFFECTIVE_RE = re.compile(r"(?:自)?(\d{4})年(\d{1,2})月(\d{1,2})日\s*(?:起)?\s*施行")


@dataclass
class ArticleRecord:
    law: str
    article_no: int
    text: str
    effective: date | None = None
    repealed: date | None = None
    source: str = "statute"
    path: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def article(self) -> str:
        return article_label(self.article_no)

    def in_force(self, on: date) -> bool:
        return dates_in_force(self.effective, self.repealed, on)

    def as_dict(self, on: date | None = None) -> dict:
        d = {"law": self.law, "article": self.article, "article_no": self.article_no, "text": self.text,
             "effective": self.effective.isoformat() if self.effective else "",
             "repealed": self.repealed.isoformat() if self.repealed else "", "source": self.source}
        if on is not None:
            d["in_force"] = self.in_force(on)
        return d


def _title(lines: list[str]) -> str | None:
    for line in lines:
        if line.startswith("# "):
            return line[2:].strip()
    return None


def parse_law_file(path: Path, law: str | None = None) -> list[ArticleRecord]:
    """One record per article. ``law`` overrides the title (the Code is split over several files)."""
    raw = path.read_text(encoding="utf-8")
    lines = raw.splitlines()
    name = law or _title(lines) or re.sub(r"\(.*\)$", "", path.stem)
    dates = law_dates(name)
    effective = dates.effective if dates else None
    repealed = dates.repealed if dates else None
    if effective is None:
        m = _EFFECTIVE_RE.search(raw)
        if m:
            effective = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    records: list[ArticleRecord] = []
    current: ArticleRecord | None = None
    for line in lines:
        if line.startswith("#") or line.startswith(":::") or line.startswith("<!--"):
            current = None
            continue
        m = _ARTICLE_START.match(line)
        if m and cn_to_int(m.group(1)):
            current = ArticleRecord(law=name, article_no=cn_to_int(m.group(1)) or 0, text=m.group(2).strip(),
                                    effective=effective, repealed=repealed, path=str(path))
            records.append(current)
        elif current is not None and line.strip():
            current.text += "\n" + line.strip()
    # A law file may repeat a number (quoted amendments); keep the first occurrence.
    seen: set[int] = set()
    unique = []
    for r in records:
        if r.article_no not in seen:
            seen.add(r.article_no)
            unique.append(r)
    return unique


def parse_law_path(path: Path) -> list[ArticleRecord]:
    """A file, or a folder of files (a folder with README.md titled '# X' is one law split over files)."""
    path = Path(path)
    if path.is_file():
        return parse_law_file(path)
    readme = path / "README.md"
    if readme.exists():
        name = _title(readme.read_text(encoding="utf-8").splitlines())
        if name:
            out: list[ArticleRecord] = []
            for f in sorted(path.glob("*.md")):
                if f.name != "README.md":
                    out.extend(parse_law_file(f, law=name))
            return out
    out = []
    for child in sorted(path.iterdir()):
        if child.is_dir() or child.suffix == ".md":
            out.extend(parse_law_path(child))
    return out


class LawLibrary:
    """Articles in memory: exact look-up by (law, number) and TF-IDF search restricted to those in force."""

    def __init__(self, records: list[ArticleRecord]):
        self.records = records
        self._by_key = {(law_key(r.law), r.article_no): r for r in records}
        self.laws = {law_key(r.law) for r in records}
        self._vectorizer = None
        self._matrix = None

    @classmethod
    def from_paths(cls, *paths: Path) -> "LawLibrary":
        recs: list[ArticleRecord] = []
        for p in paths:
            recs.extend(parse_law_path(Path(p)))
        return cls(recs)

    def get(self, law: str, article_no: int) -> ArticleRecord | None:
        return self._by_key.get((law_key(law), article_no))

    def knows_law(self, law: str) -> bool:
        return law_key(law) in self.laws

    def known(self, law: str, article_no: int) -> bool | None:
        """For quality checks: True/False when the law is here, None when it is not."""
        if not self.knows_law(law):
            return None
        return (law_key(law), article_no) in self._by_key

    def _index(self):
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            self._vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(2, 3), sublinear_tf=True,
                                               min_df=1)
            self._matrix = self._vectorizer.fit_transform([r.text for r in self.records])
        return self._vectorizer, self._matrix

    def search(self, text: str, on: date | None = None, k: int = 5) -> list[tuple[ArticleRecord, float]]:
        if not self.records:
            return []
        vec, mat = self._index()
        q = vec.transform([text])
        scores = (mat @ q.T).toarray().ravel()
        order = scores.argsort()[::-1]
        out = []
        for i in order:
            r = self.records[i]
            if on is not None and not r.in_force(on):
                continue
            out.append((r, float(scores[i])))
            if len(out) >= k:
                break
        return out

    def retriever(self):
        """A drafting retriever (see ``triage.drafting.retrieval.Retriever``) over this library."""
        from triage.drafting.basis import curated_for

        def retrieve(text: str, on: date, *, k: int = 4, subtype: str | None = None, **_: object) -> list[dict]:
            on = as_date(on) or on
            hits: list[dict] = []
            seen: set[tuple[str, int]] = set()
            for entry in curated_for(subtype, on):
                rec = self.get(entry.law, entry.article_no)
                if rec and rec.in_force(on) and (law_key(rec.law), rec.article_no) not in seen:
                    seen.add((law_key(rec.law), rec.article_no))
                    hits.append({**rec.as_dict(on), "similarity": 1.0, "curated": True})
            for rec, score in self.search(text, on, k=k):
                key = (law_key(rec.law), rec.article_no)
                if key not in seen:
                    seen.add(key)
                    hits.append({**rec.as_dict(on), "similarity": score})
            return hits

        return retrieve
