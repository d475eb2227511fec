"""Knowledge-base benchmark: case import throughput vs the bare model, search latency, retrieval quality.

    python bench/knowledge.py [--cases ../shared/data/cases/haikou12345_env_dev.csv] [--laws ../shared/data/laws]

Peer baseline in the same run: the embedding model alone encoding the same texts (import overhead = parsing,
validation, Chroma writes). Retrieval quality: complaint-style queries we wrote, each with the 生态环境法典 article
that should come first; hit@1 / hit@5 over distinct articles.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from triage.embeddings import get_embedder  # noqa: E402
from triage.kb.cases import import_cases, read_cases_file  # noqa: E402
from triage.kb.regulations import ingest_default_knowledge, ingest_paths  # noqa: E402
from triage.kb.search import search  # noqa: E402
from triage.kb.store import KnowledgeStore, make_client  # noqa: E402
from triage.settings import Settings  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
CODE = "生态环境法典"
# query → article number of the 生态环境法典 that should come first
QUERIES = [
    ("夜里工地还在施工，噪音太大", 572),
    ("楼下饭店油烟直排，没有装净化器", 250),
    ("工地扬尘很大，没有围挡也不洒水", 240),
    ("有人在空地上焚烧垃圾和塑料，浓烟呛人", 251),
    ("商铺门口用大喇叭循环播放促销广告", 592),
    ("改装摩托车半夜在街上炸街轰油门", 576),
    ("工厂用暗管偷排废水到河里", 164),
    ("小区旁边的河道黑臭多年没人治理", 283),
    ("家具厂喷漆车间没有治理设施，油漆味刺鼻", 214),
    ("楼上装修电钻声从早到晚响个不停，晚上也不停", 595),
    ("隔壁饭店的空调外机和风机噪音很大，整夜嗡嗡响", 591),
    ("小区广场舞音响声音太大", 593),
    ("小区垃圾堆了好几天没人清运", 505),
    ("诊所把医疗废物和生活垃圾混在一起丢弃", 544),
    ("附近工厂机器噪音太大，晚上也在生产", 567),
    ("渣土车沿路撒漏，路面全是泥土灰尘", 241),
]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=Path, default=SHARED / "cases" / "haikou12345_env_dev.csv")
    ap.add_argument("--laws", type=Path, default=SHARED / "laws")
    args = ap.parse_args()
    console = Console(width=160)
    settings = Settings()
    embedder = get_embedder(settings)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = KnowledgeStore(make_client(Settings(data_dir=Path(tmp), chroma=str(Path(tmp) / "c"))))
        t = time.perf_counter()
        ingest_default_knowledge(settings, store=store, embedder=embedder)
        if args.laws.exists():
            ingest_paths([args.laws], store=store, embedder=embedder, progress=False)
        regs_s = time.perf_counter() - t
        n_regs = store.count("regulations")
        if args.cases.exists():
            parsed, _ = read_cases_file(args.cases)
            texts = [r.text for r in parsed]
            embedder.embed_passages(texts[:16])  # warm-up for both sides
            t = time.perf_counter()
            embedder.embed_passages(texts)
            model_rate = len(texts) / (time.perf_counter() - t)
            t = time.perf_counter()
            rep = import_cases(args.cases, store=store, embedder=embedder)
            import_rate = rep.imported / (time.perf_counter() - t)
            rows.append(("case import (cases/s)", f"{import_rate:.1f}", f"{model_rate:.1f} model only",
                         f"{import_rate / model_rate:.2f}×"))
        lat, hit1, hit5 = [], 0, 0
        for q, art in QUERIES:
            t = time.perf_counter()
            res = search(q, k=5, store=store, embedder=embedder, in_force_only=True)
            lat.append((time.perf_counter() - t) * 1000)
            found = [r["article_no"] for r in res if CODE in r["law"]]
            hit1 += bool(res) and CODE in res[0]["law"] and res[0]["article_no"] == art
            hit5 += art in found
        rows.append(("search latency p50 / p95 (ms)", f"{statistics.median(lat):.1f} / {pct(lat, 0.95):.1f}",
                     "", "embed + Chroma"))
        rows.append((f"retrieval hit@1 ({len(QUERIES)} queries)", f"{hit1 / len(QUERIES):.2f}", "", ""))
        rows.append((f"retrieval hit@5 ({len(QUERIES)} queries)", f"{hit5 / len(QUERIES):.2f}", "", ""))
        rows.append(("regulation chunks ingested", str(n_regs), f"{regs_s:.0f} s", "digest + laws"))
    table = Table(title="bench/knowledge.py")
    for col in ("measure", "ours", "peer baseline", "note"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    console.print(table)


if __name__ == "__main__":
    main()
