"""Load test: many concurrent clients posting complaints to a real server on loopback, with a peer baseline.

    python bench/load.py                       # real triager, 50 clients, 60 s per phase
    python bench/load.py --fake-triager        # a keyword stand-in instead of the model (tests the plumbing)
    python bench/load.py --clients 20 --duration 15 --phases triage,health

Each phase starts its own server (uvicorn, one process, SQLite in a fresh temporary directory), runs
``--clients`` concurrent clients for ``--duration`` seconds, stops by itself, stops the server, and then counts
the rows in the database: every complaint the server acknowledged (201 with an id) must be stored, and nothing
else. Phases (the same load, so the difference is the cost of triage):

  triage      POST /api/complaints with triage on (the real triager, or --fake-triager)
  no-triage   POST /api/complaints with triage disabled (the complaint is stored, the suggestion comes later)
  health      GET /api/health (the server and HTTP stack alone)

The real triager needs a knowledge base: the server imports the first rows of the Haikou dev orders as history
(``--history``, default ../shared/data/cases/haikou12345_env_dev.csv) and the project's regulation digest;
the clients send the remaining rows' texts, so no complaint is its own nearest neighbour. Only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HAIKOU = ROOT.parent / "shared" / "data" / "cases" / "haikou12345_env_dev.csv"
HOST = "127.0.0.1"  # loopback only, by design
HISTORY_ROWS = 700
FALLBACK_TEXTS = ["市民来电反映：楼下烧烤店油烟直排，熏得无法开窗，请核实处理。",
                  "市民反映：小区旁工地夜间施工噪音扰民，凌晨还在打桩。",
                  "市民反映：河涌有污水直排，气味很大。", "市民反映：市场门口垃圾三天没人清运。",
                  "市民反映：路边有人焚烧垃圾，浓烟很大。"]


# ------------------------------------------------------------------------------------------------ server
def _split_history(history: Path | None, out: Path) -> list[str]:
    """Write the history part as a cases file; return the held-out texts the clients will send."""
    if history is None or not history.exists():
        return FALLBACK_TEXTS
    with history.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    with out.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows[:HISTORY_ROWS])
    return [r["text"] for r in rows[HISTORY_ROWS:] if r["text"].strip()] or FALLBACK_TEXTS


def serve(args: argparse.Namespace) -> None:
    """The server side of one phase (run in a subprocess by the load side)."""
    import logging

    import uvicorn

    from triage.api import deps
    from triage.api.app import create_app
    from triage.settings import Settings

    logging.basicConfig(level=logging.WARNING)
    data = Path(args.data)
    settings = Settings(data_dir=data, jurisdiction="hk_longhua" if args.history else "gz_baiyun_junhe")
    if args.mode == "real":
        from rich.console import Console

        from triage.bootstrap import prepare
        from triage.embeddings import get_embedder
        from triage.kb.cases import import_cases
        from triage.kb.store import get_store

        prepare(settings, Console(stderr=True))
        if args.history:
            report = import_cases(Path(args.history), store=get_store(settings), embedder=get_embedder(settings))
            print(f"history: {report.imported} cases imported", file=sys.stderr)
    app = create_app(settings, retry_on_startup=False)
    if args.mode == "fake":
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import FakeTriager

        fake = FakeTriager()
        app.dependency_overrides[deps.get_triager] = lambda: fake
    elif args.mode == "none":
        app.dependency_overrides[deps.get_triager] = lambda: None
    else:  # real: build the triager (trains on the history) before the first client arrives
        from triage.classify.service import get_triager

        t0 = time.perf_counter()
        get_triager(settings).suggest("楼下饭店油烟直排")
        print(f"triager ready in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    uvicorn.run(app, host=HOST, port=args.port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, phase: str, mode: str, workdir: Path, history: Path | None):
        self.port = _free_port()
        self.data = workdir / f"data-{phase}"
        self.data.mkdir(parents=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", "--mode", mode, "--port", str(self.port),
               "--data", str(self.data)]
        if history is not None and mode == "real":
            cmd += ["--history", str(history)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.log = (workdir / f"server-{phase}.log").open("wb")
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://{HOST}:{self.port}"

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url + "/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"server not ready after {timeout:.0f}s; see {self.log.name}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def stored_ids(self) -> set[int]:
        with sqlite3.connect(self.data / "triage.db") as db:
            return {row[0] for row in db.execute("SELECT id FROM complaints")}

    def stored_by_status(self) -> Counter:
        with sqlite3.connect(self.data / "triage.db") as db:
            return Counter(dict(db.execute("SELECT status, count(*) FROM complaints GROUP BY status").fetchall()))


# -------------------------------------------------------------------------------------------------- load
@dataclass
class Result:
    phase: str
    duration: float = 0.0
    latencies: list[float] = field(default_factory=list)  # successful requests, seconds
    errors: Counter = field(default_factory=Counter)
    acked: set[int] = field(default_factory=set)
    stored: set[int] | None = None
    statuses: Counter = field(default_factory=Counter)


async def _client(i: int, http, phase: str, texts: list[str], deadline: float, res: Result) -> None:
    n = 0
    while time.monotonic() < deadline:
        text = texts[(i * 7919 + n) % len(texts)]
        n += 1
        t0 = time.perf_counter()
        try:
            if phase == "health":
                r = await http.get("/api/health")
                ok = r.status_code == 200
            else:
                r = await http.post("/api/complaints", json={"text": text, "source": "load-test"})
                ok = r.status_code == 201
                if ok:
                    res.acked.add(r.json()["id"])
            if ok:
                res.latencies.append(time.perf_counter() - t0)
            else:
                res.errors[f"HTTP {r.status_code}"] += 1
        except Exception as exc:  # noqa: BLE001 - counted by kind
            res.errors[type(exc).__name__] += 1


async def run_load(url: str, phase: str, clients: int, duration: float, texts: list[str]) -> Result:
    import httpx

    res = Result(phase)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(60.0), limits=limits) as http:
        t0 = time.monotonic()
        deadline = t0 + duration
        await asyncio.gather(*(_client(i, http, phase, texts, deadline, res) for i in range(clients)))
        res.duration = time.monotonic() - t0  # includes the last in-flight requests
    return res


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] * 1000


def report(results: list[Result], clients: int, duration: float, triager: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"bench/load.py — {clients} clients × {duration:.0f} s per phase, loopback, "
                        f"{os.cpu_count()} cores, triager: {triager}")
    for col in ("phase", "ok", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "acked", "stored",
                "stored = acked"):
        table.add_column(col, justify="left" if col in ("phase", "errors") else "right")
    for r in results:
        errors = ", ".join(f"{k}: {v}" for k, v in r.errors.most_common()) or "none"
        posts = r.phase != "health"
        match = "-" if not posts else ("yes" if r.stored == r.acked else
                                       f"NO (+{len(r.stored - r.acked)} / -{len(r.acked - r.stored)})")
        table.add_row(r.phase, str(len(r.latencies)), f"{len(r.latencies) / r.duration:.1f}",
                      f"{_pct(r.latencies, .5):.0f}", f"{_pct(r.latencies, .95):.0f}", f"{_pct(r.latencies, .99):.0f}",
                      f"{max(r.latencies, default=0) * 1000:.0f}", errors,
                      str(len(r.acked)) if posts else "-", str(len(r.stored)) if posts else "-", match)
    Console(width=170).print(table)
    for r in results:
        if r.phase != "health" and r.statuses:
            print(f"{r.phase}: stored by status {dict(r.statuses)}; mean latency "
                  f"{statistics.fmean(r.latencies) * 1000 if r.latencies else float('nan'):.0f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per phase")
    ap.add_argument("--phases", default="triage,no-triage,health")
    ap.add_argument("--fake-triager", action="store_true", help="keyword stand-in instead of the real model")
    ap.add_argument("--history", type=Path, default=HAIKOU)
    ap.add_argument("--ready-timeout", type=float, default=600.0)
    # server side (internal)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="real", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--data", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args)
        return 0
    if not (1 <= args.clients <= 500 and 1 <= args.duration <= 600):
        ap.error("--clients must be 1..500 and --duration 1..600 seconds")
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - {"triage", "no-triage", "health"}
    if unknown:
        ap.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    results = []
    with tempfile.TemporaryDirectory(prefix="triage-load-") as tmp:
        work = Path(tmp)
        history = None
        texts = FALLBACK_TEXTS
        if args.history and args.history.exists():
            history = work / "history.csv"
            texts = _split_history(args.history, history)
        for phase in phases:
            mode = {"triage": "fake" if args.fake_triager else "real", "no-triage": "none", "health": "none"}[phase]
            print(f"[{phase}] starting server ({mode} triager) …", file=sys.stderr)
            server = Server(phase, mode, work, history)
            try:
                server.wait_ready(args.ready_timeout)
                print(f"[{phase}] {args.clients} clients for {args.duration:.0f} s …", file=sys.stderr)
                res = asyncio.run(run_load(server.url, phase, args.clients, args.duration, texts))
            finally:
                server.stop()
            if phase != "health":
                res.stored = server.stored_ids()
                res.statuses = server.stored_by_status()
            results.append(res)
    report(results, args.clients, args.duration, "fake (keywords)" if args.fake_triager else "real")
    bad = [r.phase for r in results if r.stored is not None and r.stored != r.acked]
    if bad:
        print(f"stored ≠ acknowledged in: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
