"""Benchmark: our template drafts vs. the real official replies, scored by the same quality check.

Data: the environmental messages (pollution_type != not_environmental) of
../shared/data/replies/taidi2020_env_replies_dev.csv, each with the government's real reply.

Columns
  real              the real reply, judged with facts_date = its reply_time (2012–2020: the laws of the time)
  real (shuffled)   negative control: each real reply judged against another message (relevance should drop)
  ours: no findings the template drafter given only the message (title + text), its labelled type/subtype and
                    the replying body's name where the reply names it; facts_date = msg_time. No findings, so
                    the draft says verification is planned (and the notice says findings are missing).
  ours: generic     as above plus a fixed, neutral staff input for every message (not the real findings):
                    findings "工作人员到现场进行了核查，现场情况与反映基本一致", result "部分属实",
                    actions "已要求相关责任方立即整改"
  ours: 2026 facts  "no findings" with facts_date = 2026-11-28: the Code must be cited instead of the old laws
Articles come from the statutes in ../shared/data/laws parsed directly (our digest first, then char-n-gram
TF-IDF), so the benchmark does not need the Chroma knowledge base; the same parsed statutes are the
known_articles for every column.

Usage: .venv/bin/python bench/drafts.py [--data DIR] [--limit N] [--plain] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
import time
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from triage.drafting.lawfiles import LawLibrary  # noqa: E402
from triage.drafting.dates import as_date  # noqa: E402
from triage.kb.regulations import find_citations  # noqa: E402
from triage.drafting.quality import PARTS, PLACEHOLDER_RE, check_draft, relevance  # noqa: E402
from triage.drafting.service import draft_reply  # noqa: E402
from triage.drafting.types import DraftRequest  # noqa: E402
from triage.settings import Settings  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
GENERIC = {"findings": "工作人员到现场进行了核查，现场情况与反映基本一致", "result": "部分属实",
           "actions": "已要求相关责任方立即整改"}
TODAY = date(2026, 11, 28)


def load_rows(data: Path) -> list[dict]:
    with open(data / "replies" / "taidi2020_env_replies_dev.csv", encoding="utf-8", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["pollution_type"] and r["pollution_type"] != "not_environmental"]


def _parse_dt(s: str) -> datetime | None:
    d = as_date(s)
    return datetime(d.year, d.month, d.day, 12) if d else None


class Column:
    def __init__(self, name: str):
        self.name = name
        self.reports = []
        self.texts = []
        self.relevances = []
        self.seconds = []

    def add(self, text: str, report, complaint: str, seconds: float | None = None):
        self.texts.append(text)
        self.reports.append(report)
        self.relevances.append(relevance(text, complaint))
        if seconds is not None:
            self.seconds.append(seconds)

    def stats(self) -> dict:
        n = len(self.reports)
        scores = [r.score for r in self.reports]
        out = {"n": n}
        for p in PARTS:
            out[f"part:{p}"] = sum(r.parts[p] for r in self.reports) / n
        out["all six parts"] = sum(all(r.parts.values()) for r in self.reports) / n
        out["mean score"] = statistics.mean(scores)
        out["median score"] = statistics.median(scores)
        out["placeholder rate"] = sum(bool(PLACEHOLDER_RE.search(t)) for t in self.texts) / n
        out["mean relevance"] = statistics.mean(self.relevances)
        out["cites an article"] = sum(bool(find_citations(t)) for t in self.texts) / n
        bad = [sum(1 for p in r.problems if "失效" in p or "尚未施行" in p or "疑为虚构" in p) for r in self.reports]
        out["drafts w/ invalid citation"] = sum(1 for b in bad if b) / n
        out["drafts w/ unverifiable citation"] = sum(any(p.startswith("提示：") for p in r.problems)
                                                     for r in self.reports) / n
        out["median length (chars)"] = statistics.median(len(t) for t in self.texts)
        out["seconds per draft"] = statistics.mean(self.seconds) if self.seconds else None
        return out


def run(data: Path, limit: int | None = None) -> tuple[list[Column], dict]:
    rows = load_rows(data)
    if limit:
        rows = rows[:limit]
    lib = LawLibrary.from_paths(data / "laws")
    retriever = lib.retriever()
    settings = Settings(llm_base_url=None, llm_model=None)  # template drafter only
    cols = {k: Column(k) for k in ("real", "real (shuffled)", "ours: no findings", "ours: generic findings",
                                   "ours: 2026 facts")}
    shuffled = rows[:]
    random.Random(20261128).shuffle(shuffled)
    law_years = {"old laws": 0, "Code": 0}
    for r, other in zip(rows, shuffled):
        complaint = f"{r['title']}\n{r['text']}"
        reply_date = as_date(r["reply_time"]) or as_date(r["msg_time"])
        cols["real"].add(r["reply"], check_draft(r["reply"], complaint_text=complaint, facts_date=reply_date,
                                                 known_articles=lib), complaint)
        other_complaint = f"{other['title']}\n{other['text']}"
        cols["real (shuffled)"].add(
            r["reply"], check_draft(r["reply"], complaint_text=other_complaint, facts_date=reply_date,
                                    known_articles=lib), other_complaint)
        base = dict(complaint_text=complaint, occurred_at=_parse_dt(r["msg_time"]), pollution_type=r["pollution_type"],
                    subtype=r["subtype"] or None, unit_name=r["unit_raw"] or None)
        for col, extra, facts in (("ours: no findings", {}, None), ("ours: generic findings", GENERIC, None),
                                  ("ours: 2026 facts", {}, TODAY)):
            req = DraftRequest(**{**base, **extra, **({"occurred_at": datetime(2026, 11, 28, 12)} if facts else {})})
            t0 = time.perf_counter()
            d = draft_reply(req, settings=settings, retriever=retriever, known_articles=lib, draft_date=TODAY)
            dt = time.perf_counter() - t0
            on = facts or as_date(req.occurred_at)
            rep = check_draft(d.text, complaint_text=complaint, facts_date=on, known_articles=lib,
                              citations=d.citations)
            cols[col].add(d.text, rep, complaint, dt)
            if col == "ours: no findings" or col == "ours: 2026 facts":
                for c in d.citations:
                    law_years["Code" if "法典" in c.law else "old laws"] += 1
    return list(cols.values()), law_years


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3f}" if v < 10 else f"{v:.0f}"
    return str(v)


def print_table(cols: list[Column], plain: bool = False) -> None:
    stats = [c.stats() for c in cols]
    keys = list(stats[0])
    if not plain:
        try:
            from rich.console import Console
            from rich.table import Table

            t = Table(title="Reply drafts vs. real replies (taidi2020 env messages, same quality check)")
            t.add_column("metric")
            for c in cols:
                t.add_column(c.name, justify="right")
            for k in keys:
                t.add_row(k, *[_fmt(s[k]) for s in stats])
            Console(width=160).print(t)
            return
        except ImportError:
            pass
    width = max(len(k) for k in keys) + 2
    print("metric".ljust(width) + "".join(c.name.rjust(24) for c in cols))
    for k in keys:
        print(k.ljust(width) + "".join(_fmt(s[k]).rjust(24) for s in stats))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--plain", action="store_true", help="plain-text table instead of rich")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = ap.parse_args(argv)
    if not (args.data / "replies" / "taidi2020_env_replies_dev.csv").exists():
        print(f"shared data not found under {args.data}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    cols, law_years = run(args.data, args.limit)
    print_table(cols, plain=args.plain)
    print(f"citations in our drafts (no findings + 2026 facts columns): {law_years}; "
          f"{time.perf_counter() - t0:.1f}s in all")
    if args.json:
        print(json.dumps({c.name: c.stats() for c in cols}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
