"""Faults: kill -9 in the middle of ``triage cases import`` and run it again (exact counts, nothing twice);
Chroma or the LLM unavailable at intake (every complaint stored as received, triage catches up when the
triager works again, through the API); the LLM down while drafting (template draft with a notice)."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from triage.queue.models import Complaint, Event, Suggestion
from triage.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TEXTS = ["工地夜间施工噪音扰民", "楼下饭店油烟直排", "河涌有污水直排", "小区垃圾没人清运", "路边有人焚烧垃圾"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------- kill -9 import
def _cases_file(path: Path, n: int = 700) -> set[str]:
    """n rows: most with an order_id, every tenth without (stable id from the text), and 3 bad rows."""
    from triage.kb.cases import stable_id

    ids: set[str] = set()
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["order_id", "text", "pollution_type"])
        for i in range(n):
            text = f"{TEXTS[i % len(TEXTS)]}（第{i}号工单，地点{i * 7 % 97}号）"
            oid = "" if i % 10 == 0 else f"HK-{i:05d}"
            w.writerow([oid, text, ""])
            ids.add(oid or stable_id(text))
        w.writerow(["BAD-1", "", ""])
        w.writerow(["BAD-2", "有效文本但类型不对", "smog"])
        w.writerow(["HK-00001", "重复编号", ""])
    return ids


def _run_import(file: Path, data: Path, progress: Path, delay: float, **popen):
    env = {**os.environ, "TRIAGE_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("TRIAGE_CHROMA", None)
    return subprocess.Popen([sys.executable, str(HERE / "fault_import_runner.py"), str(file), str(progress),
                             str(delay)], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **popen)


def _stored_ids(data: Path) -> list[str]:
    from triage.kb.store import CASES, KnowledgeStore, make_client

    store = KnowledgeStore(make_client(Settings(data_dir=data, chroma=str(data / "chroma"))))
    ids = store.get_all(CASES)["ids"]
    del store
    return ids


def test_kill_9_during_cases_import_then_rerun_gives_exact_counts(tmp_path):
    from triage.kb.cases import EMBED_BATCH

    data, progress = tmp_path / "data", tmp_path / "progress.txt"
    expected = _cases_file(tmp_path / "cases.csv")
    batches = -(-len(expected) // EMBED_BATCH)

    proc = _run_import(tmp_path / "cases.csv", data, progress, delay=0.4)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = len(progress.read_text().splitlines()) if progress.exists() else 0
        if done >= 4 or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)  # mid-way: after the 4th batch was embedded, before or while it is written
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    partial = _stored_ids(data)
    assert 3 * EMBED_BATCH <= len(partial) < len(expected)  # some batches landed, not all
    assert len(set(partial)) == len(partial)

    progress.unlink()
    rerun = _run_import(tmp_path / "cases.csv", data, progress, delay=0.0)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()[-2000:]
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["imported"] + report["already_present"] == len(expected)
    assert report["already_present"] == len(partial)
    assert sorted(e["row"] for e in report["rejected"]) == [len(expected) + 2, len(expected) + 3,
                                                            len(expected) + 4]
    assert len(progress.read_text().splitlines()) <= batches - len(partial) // EMBED_BATCH  # only what was missing

    final = _stored_ids(data)
    assert len(final) == len(set(final)) == len(expected) and set(final) == expected

    third = _run_import(tmp_path / "cases.csv", data, progress, delay=0.0)
    out, err = third.communicate(timeout=300)
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert (report["imported"], report["already_present"]) == (0, len(expected))
    assert sorted(_stored_ids(data)) == sorted(final)


# -------------------------------------------------------------------------- triager down, then back
def _count(app, model, *where) -> int:
    with app.state.session_factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_triager_down_every_complaint_stored_then_caught_up_through_the_api(client, app, triager):
    triager.fail = True  # Chroma (or the model behind the triager) unreachable
    ids = []
    for i in range(12):
        r = client.post("/api/complaints", json={"text": f"{TEXTS[i % 5]}，第{i}次反映", "external_id": f"EXT-{i}"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["status"] == "received" and "unreachable" in body["triage_error"]
        ids.append(body["id"])
    assert _count(app, Complaint) == 12 and _count(app, Complaint, Complaint.status == "received") == 12
    queue = client.get("/api/queue").json()
    assert {q["id"] for q in queue} == set(ids) and all(q["priority"] <= 2 for q in queue)  # needs a person

    still_down = client.post("/api/triage/retry").json()
    assert still_down == {"tried": 12, "triaged": 0, "failed": 12}
    assert _count(app, Complaint, Complaint.status == "received") == 12

    triager.fail = False  # back
    assert client.post("/api/triage/retry").json() == {"tried": 12, "triaged": 12, "failed": 0}
    assert _count(app, Complaint, Complaint.status == "triaged") == 12
    assert _count(app, Suggestion) == 12  # one suggestion each, nothing twice
    assert client.post("/api/triage/retry").json()["tried"] == 0
    detail = client.get(f"/api/complaints/{ids[0]}").json()
    assert detail["complaint"]["triage_attempts"] == 3 and detail["complaint"]["triage_error"] is None
    kinds = [e["kind"] for e in detail["events"]]
    assert kinds.count("intake") == 1 and kinds.count("triage") == 1
    # Duplicate submissions during the outage were refused, not stored twice.
    assert client.post("/api/complaints", json={"text": TEXTS[0], "external_id": "EXT-0"}).status_code == 409
    assert _count(app, Complaint) == 12


def test_startup_retry_catches_up_after_a_restart(settings, triager, clock):
    """The outage outlives the process: after a restart with a working triager, the startup pass triages
    everything still received."""
    from fastapi.testclient import TestClient

    from triage.api import deps
    from triage.api.app import create_app

    def make(retry: bool):
        a = create_app(settings, retry_on_startup=retry, retry_interval=None)
        a.dependency_overrides[deps.get_triager] = lambda: triager
        a.dependency_overrides[deps.get_now] = clock
        return a

    triager.fail = True
    first = make(retry=False)
    with TestClient(first) as c:
        for i in range(5):
            assert c.post("/api/complaints", json={"text": TEXTS[i]}).json()["status"] == "received"
    triager.fail = False
    second = make(retry=True)
    with TestClient(second) as c:
        deadline = time.monotonic() + 20
        while _count(second, Complaint, Complaint.status == "triaged") < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _count(second, Complaint, Complaint.status == "triaged") == 5
        assert c.get("/api/queue").json()[0]["status"] == "triaged"


def test_chroma_down_with_the_real_triager_dependency_stores_as_received(tmp_path, clock):
    """No fake: the real get_triager against a Chroma server that is not there."""
    from fastapi.testclient import TestClient

    from triage.api import deps
    from triage.api.app import create_app
    from triage.classify.service import reset_triager
    from triage.kb.store import reset_store_cache

    reset_triager()
    reset_store_cache()
    try:
        app = create_app(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'q.db'}",
                                  chroma=f"http://127.0.0.1:{_free_port()}"), retry_on_startup=False)
        app.dependency_overrides[deps.get_now] = clock
        c = TestClient(app)
        r = c.post("/api/complaints", json={"text": "楼下饭店油烟直排，熏得没法开窗"})
        assert r.status_code == 201 and r.json()["status"] == "received"
        assert "unavailable" in r.json()["triage_error"]
        assert _count(app, Complaint, Complaint.status == "received") == 1
        assert _count(app, Event, Event.kind == "intake") == 1
    finally:
        reset_triager()
        reset_store_cache()


def test_llm_down_while_drafting_gives_a_template_draft(tmp_path, triager, clock):
    from fastapi.testclient import TestClient

    from triage.api import deps
    from triage.api.app import create_app
    from triage.kb.store import reset_store_cache

    port = _free_port()
    reset_store_cache()
    try:
        app = create_app(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'q.db'}",
                                  llm_base_url=f"http://127.0.0.1:{port}/v1", llm_model="qwen-test",
                                  llm_api_key="x", llm_timeout=2, llm_max_retries=0,
                                  chroma=f"http://127.0.0.1:{_free_port()}"), retry_on_startup=False)
        app.dependency_overrides[deps.get_triager] = lambda: triager
        app.dependency_overrides[deps.get_now] = clock
        c = TestClient(app)
        cid = c.post("/api/complaints", json={"text": "楼下饭店油烟直排，熏得没法开窗"}).json()["id"]
        c.post(f"/api/complaints/{cid}/assign")
        r = c.post(f"/api/complaints/{cid}/draft", json={"findings": "现场核查属实", "result": "属实"})
        assert r.status_code == 200, r.text
        assert r.json()["generator"].startswith("template") and "大模型服务不可用" in (r.json()["notice"] or "")
    finally:
        reset_store_cache()


def test_startup_loads_the_duplicate_dictionary(settings, triager, monkeypatch):
    """jieba's dictionary (0.7 s) loads while the service starts, not inside the first complaint after it."""
    import jieba
    from fastapi.testclient import TestClient

    from triage.api import deps
    from triage.api.app import create_app

    monkeypatch.setattr(jieba.dt, "initialized", False)  # as in a fresh process
    app = create_app(settings, retry_on_startup=True, retry_interval=None)
    app.dependency_overrides[deps.get_triager] = lambda: triager
    with TestClient(app):
        deadline = time.monotonic() + 20
        while not jieba.dt.initialized and time.monotonic() < deadline:
            time.sleep(0.05)
        assert jieba.dt.initialized


_WRITER = """
import sys
import numpy as np
from triage.kb.store import CASES, KnowledgeStore, make_client
from triage.settings import Settings

store = KnowledgeStore(make_client(Settings(chroma=sys.argv[1])))
vecs = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
store.upsert(CASES, [f"c{i}" for i in range(50)], vecs, [f"案件{i}" for i in range(50)],
             [{"pollution_type": "noise"}] * 50)
"""


def test_cases_written_by_another_process_are_found_by_a_running_server(tmp_path, caplog):
    """The first day: the server is running on the embedded store and `triage cases import` writes to the same folder
    from another process. The server's Chroma then holds a stale picture of the index ("Error creating hnsw segment
    reader: Nothing found on disk") and, before the store reopened itself, every triage failed until a restart."""
    import numpy as np

    from triage.kb.store import CASES, KnowledgeStore, make_client

    path = str(tmp_path / "chroma")
    store = KnowledgeStore(make_client(Settings(chroma=path)))
    probe = np.ones(8, dtype=np.float32)
    assert store.query(CASES, probe, k=3) == []  # the server has opened the (empty) collection
    subprocess.run([sys.executable, "-c", _WRITER, path], cwd=ROOT, check=True, timeout=120)
    hits = store.query(CASES, probe, k=3)
    assert len(hits) == 3 and all(h.metadata["pollution_type"] == "noise" for h in hits)
    assert store.count(CASES) == 50
    assert "reopened the embedded Chroma store" in caplog.text


def test_database_down_is_a_503_with_a_reason_and_health_says_so(app, client):
    """With PostgreSQL gone the API answered a plain-text 500 and logged a traceback per request, the pages a
    generic 500, and /api/health kept saying ok, so a load balancer could not tell."""
    from sqlalchemy import create_engine

    from triage.db import session_factory

    assert client.get("/api/health").json()["status"] == "ok"
    assert client.head("/api/health").status_code == 200 and client.head("/").status_code == 200  # proxy checks
    gone = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    app.state.engine, app.state.session_factory = gone, session_factory(gone)
    r = client.get("/api/queue")
    assert r.status_code == 503 and "数据库暂不可用" in r.json()["detail"] and r.headers["retry-after"] == "30"
    r = client.post("/api/complaints", json={"text": "楼下饭店油烟直排"})
    assert r.status_code == 503
    health = client.get("/api/health")
    assert health.status_code == 503 and health.json()["database"] == "unavailable"
    page = client.get("/queue")
    assert page.status_code == 503 and "数据库暂不可用" in page.text
