"""TRIAGE_CHROMA=http://127.0.0.1:PORT: the same ingest and search against a `chroma run` server (started here
on loopback from .venv/bin/chroma) as against the embedded PersistentClient, with the real embedder over the
project's regulation digest (knowledge/regulations, ~100 chunks)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from triage.kb.regulations import ingest_default_knowledge
from triage.kb.search import search
from triage.kb.store import REGULATIONS, KnowledgeStore, make_client
from triage.settings import Settings

CHROMA = Path(sys.executable).parent / "chroma"
QUERY = "晚上十一点工地还在打桩施工，噪音太大睡不着"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    exe = str(CHROMA) if CHROMA.exists() else shutil.which("chroma")
    if exe is None:
        pytest.skip("the chroma CLI is not installed")
    port = _free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = (path.parent / "chroma-server.log").open("wb")
    proc = subprocess.Popen([exe, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chroma run did not start (exit {proc.poll()})")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


class MemoEmbedder:
    """The real embedder, remembering passages: the embedded-store comparison must not pay for them twice."""

    def __init__(self, inner):
        self.inner, self.model_id, self._memo = inner, inner.model_id, {}

    def embed_passages(self, texts, progress=False):
        import numpy as np

        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if todo:
            self._memo.update(zip(todo, self.inner.embed_passages(todo)))
        return np.stack([self._memo[t] for t in texts]) if texts else self.inner.embed_passages([])

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def embedder():
    from triage.embeddings import get_embedder

    return MemoEmbedder(get_embedder(Settings()))


def test_ingest_and_search_through_a_chroma_server(chroma_server, embedder, tmp_path):
    server_settings = Settings(data_dir=tmp_path, chroma=chroma_server)
    client = make_client(server_settings)
    assert type(client).__name__ != "PersistentClient" and client.heartbeat() > 0
    remote = KnowledgeStore(client)

    report = ingest_default_knowledge(server_settings, remote, embedder)
    assert report.chunks > 20 and remote.count(REGULATIONS) == report.chunks
    again = ingest_default_knowledge(server_settings, remote, embedder)  # idempotent over HTTP as well
    assert again.added == 0 and remote.count(REGULATIONS) == report.chunks

    local = KnowledgeStore(make_client(Settings(data_dir=tmp_path, chroma=str(tmp_path / "embedded"))))
    ingest_default_knowledge(server_settings, local, embedder)

    hits = search(QUERY, k=5, store=remote, embedder=embedder)
    assert hits and any("噪声" in (h["law"] + h["text"]) or "施工" in h["text"] for h in hits[:3])
    same = search(QUERY, k=5, store=local, embedder=embedder)
    assert [(h["law"], h["article"]) for h in hits] == [(h["law"], h["article"]) for h in same]
    assert [round(h["similarity"], 4) for h in hits] == [round(h["similarity"], 4) for h in same]

    # The service's own store factory follows TRIAGE_CHROMA too.
    from triage.kb.store import get_store, reset_store_cache

    reset_store_cache()
    try:
        assert get_store(server_settings).count(REGULATIONS) == report.chunks
    finally:
        reset_store_cache()


def test_server_gone_is_a_knowledge_store_error_not_a_hang(tmp_path):
    from triage.kb.store import KnowledgeStoreError, get_store, reset_store_cache

    reset_store_cache()
    t0 = time.monotonic()
    try:
        with pytest.raises(KnowledgeStoreError):
            get_store(Settings(data_dir=tmp_path, chroma=f"http://127.0.0.1:{_free_port()}"))
    finally:
        reset_store_cache()
    assert time.monotonic() - t0 < 30


class _GoneCollection:
    """What chromadb's HttpClient does once the server has died: every call fails in the transport."""

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise httpx.ConnectError("[Errno 111] Connection refused")
        return fail


class _GoneClient:
    def get_or_create_collection(self, *args, **kwargs):
        return _GoneCollection()

    def get_collection(self, *args, **kwargs):
        return _GoneCollection()


def test_a_server_that_dies_later_is_a_knowledge_store_error_and_a_503(app, client):
    """With the server killed after start, knowledge search answered a bare 500 and logged a traceback: the
    transport error never became the KnowledgeStoreError the routes turn into 503."""
    from triage.api.knowledge import get_kb_embedder, get_kb_store
    from triage.kb.store import KnowledgeStoreError

    gone = KnowledgeStore(_GoneClient())
    with pytest.raises(KnowledgeStoreError, match="unreachable"):
        gone.count(REGULATIONS)

    class Embedder:
        def embed_query(self, text):
            import numpy as np

            return np.ones(384, dtype=np.float32) / np.sqrt(384)

    app.dependency_overrides[get_kb_store] = lambda: gone
    app.dependency_overrides[get_kb_embedder] = lambda: Embedder()
    r = client.get("/api/knowledge/search", params={"q": "夜间施工噪声"})
    assert r.status_code == 503 and "知识库暂不可用" in r.json()["detail"]
