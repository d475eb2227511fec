"""The articles a reply usually rests on, per complaint subtype: read from the project digest.

The digest (``knowledge/regulations/*.md``, parsed by ``triage.kb.regulations.parse_digest``) is the one
list. Each entry names an exact article (``依据``), the repealed single-law article it replaces (``原依据``)
and the subtypes it serves (``适用``; ``general`` marks the fallback for a subtype with nothing of its own).
From every entry come one basis entry for the current article, valid from the entry's ``effective`` until
its law's repeal, and one per ``原依据`` article, valid while that law's current numbering was in force
(``law_dates(...).numbered_since`` until the Code repealed it). The one-line summary is the entry's first
sentence (our words). Within a subtype: its own topic file first, then the more specific entries (fewer ``适用``), then file order.

The drafter prefers these articles when the retriever returns them (or, with no knowledge base at all, uses
them directly); anything else the retriever finds is summarised from its text.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

from triage.drafting.dates import window_contains
from triage.kb.regulations import (
    KNOWN_REPEALS,
    DigestEntry,
    article_label,
    article_no,
    law_dates,
    law_key,
    parse_digest,
)
from triage.settings import DEFAULT_KNOWLEDGE_DIR, get_settings

DIGEST_DIR = DEFAULT_KNOWLEDGE_DIR / "regulations"
GENERAL_KEY = "general"
GIST_CHARS = 90


@dataclass(frozen=True)
class BasisEntry:
    law: str
    article_no: int
    gist: str  # what the article requires, in one sentence, our wording (the digest entry's first sentence)
    valid_from: date | None = None
    valid_until: date | None = None
    title: str = ""  # the digest entry's heading

    @property
    def article(self) -> str:
        return article_label(self.article_no)

    def valid_on(self, on: date) -> bool:
        return window_contains(self.valid_from, self.valid_until, on)


def first_sentence(text: str, limit: int = GIST_CHARS) -> str:
    """The first sentence of a digest entry; a long one is cut at its first clause break (；), unless that clause
    opens a list (…要看两点：A；B): cut there, the list would keep one point of two."""
    s = re.split(r"[。\n]", (text or "").strip(), maxsplit=1)[0]
    if len(s) > limit and "；" in s and "：" not in s.split("；", 1)[0]:
        s = s.split("；", 1)[0]
    return s.rstrip("：:；;，,")


def entries_of(e: DigestEntry) -> list[BasisEntry]:
    """The current article of a digest entry, then the repealed articles it replaces (its 原依据)."""
    gist = first_sentence(e.text)
    out = [BasisEntry(e.law, e.article_no, gist, e.effective, KNOWN_REPEALS.get(e.law), e.title)]
    for law, art in e.old:
        window = law_dates(law)
        no = article_no(art)
        if no:
            out.append(BasisEntry(law, no, gist, window.numbered_since if window else None,
                                  window.repealed if window else KNOWN_REPEALS.get(law), e.title))
    return out


def load_digest(folder: Path | None = None) -> dict[str, tuple[BasisEntry, ...]]:
    """The digest of the configured knowledge folder (TRIAGE_KNOWLEDGE_DIR), the same one `triage kb` ingests."""
    if folder is None:
        folder = Path(get_settings().knowledge_dir) / "regulations"
        if not folder.is_dir():  # a knowledge folder without its own digest (tests, a trimmed copy)
            folder = DIGEST_DIR
    return _load_digest(Path(folder))


@lru_cache(maxsize=4)
def _load_digest(folder: Path) -> dict[str, tuple[BasisEntry, ...]]:
    """Subtype (or ``general``) → basis entries, each (law, article) once per subtype.

    Order: the subtype's own file first (the file with most entries for it), then entries serving fewer
    subtypes, then file order.
    """
    found: list[tuple[str, list[str], BasisEntry]] = []
    for f in sorted(folder.glob("*.md")):
        if f.name.lower() == "readme.md":
            continue
        for e in parse_digest(f.read_text(encoding="utf-8"), name=f.stem):
            subtypes = [s for s in e.subtypes.split(",") if s]
            found += [(f.stem, subtypes, entry) for entry in entries_of(e)]
    per_file = Counter((s, stem) for stem, subtypes, _ in found for s in subtypes)
    home = {s: stem for (s, stem), _ in sorted(per_file.items(), key=lambda kv: -kv[1])[::-1]}
    out: dict[str, tuple[BasisEntry, ...]] = {}
    for s in sorted({s for _, subtypes, _ in found for s in subtypes}):
        items = [(stem != home[s], len(subtypes), i, entry)
                 for i, (stem, subtypes, entry) in enumerate(found) if s in subtypes]
        seen: set[tuple[str, int]] = set()
        entries = []
        for *_, entry in sorted(items, key=lambda t: t[:3]):
            key = (law_key(entry.law), entry.article_no)
            if key not in seen:
                seen.add(key)
                entries.append(entry)
        out[s] = tuple(entries)
    return out


def basis_by_subtype() -> dict[str, list[BasisEntry]]:
    return {s: list(v) for s, v in load_digest().items() if s != GENERAL_KEY}


def general_entries() -> list[BasisEntry]:
    return list(load_digest().get(GENERAL_KEY, ()))


def curated_for(subtype: str | None, on: date, *, general: bool = True) -> list[BasisEntry]:
    """The digest entries valid on ``on`` for a subtype (nothing valid → the general duty of polluters)."""
    out = [e for e in load_digest().get(subtype or "", ()) if subtype != GENERAL_KEY and e.valid_on(on)]
    if general and not out:
        out = [e for e in general_entries() if e.valid_on(on)]
    return out


@lru_cache(maxsize=1)
def _by_key() -> dict[tuple[str, int], BasisEntry]:
    found: dict[tuple[str, int], BasisEntry] = {}
    for entries in load_digest().values():
        for e in entries:
            found.setdefault((law_key(e.law), e.article_no), e)
    return found


def gist_for(law: str, no: int) -> str | None:
    entry = _by_key().get((law_key(law), no))
    return entry.gist if entry else None


def all_entries() -> list[BasisEntry]:
    return list(_by_key().values())
