"""Articles from statute markdown, parsed by the knowledge base's parser, and a small retriever over them.

The knowledge base (Chroma, ``triage.kb``) is the production source of articles. This module is the
stand-alone fallback used by the benchmark, the tests, and the drafter when the knowledge base is not built:
``triage.kb.regulations.parse_law_file`` reads the files; articles are ranked by character n-gram TF-IDF,
which needs no embedding model.

An article's window here is its law's (``triage.kb.regulations.law_dates``: first entry into force until
repealed), so a 2017 reply citing the air law of its time checks out; for laws kb does not date, the parsed
text's own ``effective`` / ``repealed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from triage.drafting.dates import as_date, window_contains
from triage.kb.regulations import (
    article_label,
    collect_law_files,
    is_digest_text,
    law_dates,
    RegulationParseError,
    law_key,
    parse_law_file,
)


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
        return window_contains(self.effective, self.repealed, on)

    def as_dict(self, on: date | None = None) -> dict:
        d = {"law": self.law, "article": self.article, "article_no": self.article_no, "text": self.text,
             "effective": self.effective.isoformat() if self.effective else "",
             "repealed": self.repealed.isoformat() if self.repealed else "", "source": self.source}
        if on is not None:
            d["in_force"] = self.in_force(on)
        return d


def parse_law_path(path: Path) -> list[ArticleRecord]:
    """Statute files under a path (a file, or folders of them; digests are skipped), one record per article.

    A number repeated in one law (quoted amendments, 第X条之一) keeps its first plain occurrence.
    """
    records: list[ArticleRecord] = []
    seen: set[tuple[str, int]] = set()
    for f, level in collect_law_files([path]):
        try:
            if is_digest_text(f.read_text(encoding="utf-8-sig", errors="replace")[:400]):
                continue
        except RegulationParseError:  # a digest with broken front matter: `kb ingest` reports it; not a statute
            continue
        doc = parse_law_file(f, level=level)
        window = law_dates(doc.law)
        effective = window.effective if window else doc.effective
        repealed = window.repealed if window else doc.repealed
        for art in doc.articles:
            key = (law_key(doc.law), art.article_no)
            if art.sub or key in seen:
                continue
            seen.add(key)
            records.append(ArticleRecord(law=doc.law, article_no=art.article_no, text=art.text,
                                         effective=effective, repealed=repealed, path=str(f)))
    return records


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
