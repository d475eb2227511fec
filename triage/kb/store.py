"""Chroma client and the two collections: ``regulations`` (one chunk per article) and ``cases`` (past orders).

Vectors always come from our own embedder (``embeddings=`` / ``query_embeddings=``): handing Chroma raw text
would make it fetch its default ONNX model, which fails offline.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from urllib.parse import urlparse

import numpy as np

from triage.settings import Settings, get_settings

REGULATIONS = "regulations"
CASES = "cases"
COLLECTIONS = (REGULATIONS, CASES)
# Chroma caps one write; stay well under it.
WRITE_BATCH = 1000

log = logging.getLogger(__name__)
T = TypeVar("T")


class KnowledgeStoreError(RuntimeError):
    """Chroma is unreachable or refused an operation."""


def _unreachable(exc: BaseException) -> bool:
    """A connection-level failure talking to a Chroma server (httpx's transport errors, sockets, timeouts)."""
    try:
        import httpx

        if isinstance(exc, (httpx.TransportError,)):
            return True
    except ImportError:  # pragma: no cover - chromadb depends on httpx
        pass
    return isinstance(exc, (ConnectionError, TimeoutError))


def make_client(settings: Settings):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=True)
    if settings.chroma and settings.chroma.startswith(("http://", "https://")):
        url = urlparse(settings.chroma)
        return chromadb.HttpClient(
            host=url.hostname or "127.0.0.1",
            port=url.port or (443 if url.scheme == "https" else 8000),
            ssl=url.scheme == "https",
            settings=chroma_settings,
        )
    path = settings.chroma or str(settings.chroma_path)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


@dataclass
class Hit:
    id: str
    text: str
    metadata: dict[str, Any]
    similarity: float


class KnowledgeStore:
    """Thin wrapper: named collections, batched upserts, cosine similarity in [−1, 1]."""

    def __init__(self, client, prefix: str = ""):
        self.client = client
        self.prefix = prefix  # lets `triage eval` work in isolated collections on the same client
        self._collections: dict[str, Any] = {}
        self._reopen_lock = threading.Lock()

    def collection(self, name: str):
        if name not in COLLECTIONS:
            raise ValueError(f"unknown collection {name!r}; expected one of {COLLECTIONS}")
        if name not in self._collections:
            self._collections[name] = self.client.get_or_create_collection(
                name=self.prefix + name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
            )
        return self._collections[name]

    def _reopen(self, failed_client) -> bool:
        """Open the embedded store afresh; False for a Chroma server (nothing to reopen).

        An embedded Chroma caches where each collection's index lies on disk. Another process writing to the same
        folder (`triage cases import` beside a running server, the usual first day) leaves that cache stale, and
        every query then fails ("Error creating hnsw segment reader") until the process restarts. A client opened
        afresh reads the folder as it is now."""
        import chromadb

        with self._reopen_lock:
            if self.client is not failed_client:
                return True  # another thread has reopened it meanwhile
            get_settings = getattr(failed_client, "get_settings", None)
            settings = get_settings() if get_settings is not None else None
            if settings is None or not settings.is_persistent or not settings.persist_directory:
                return False
            failed_client.close()  # releases Chroma's shared state for this folder, so the next client rebuilds it
            self._collections = {}
            self.client = chromadb.PersistentClient(path=settings.persist_directory, settings=settings)
            log.warning("reopened the embedded Chroma store at %s", settings.persist_directory)
            return True

    def _call(self, op: Callable[[], T]) -> T:
        """Run a Chroma operation; where the embedded store fails, reopen it and try once more."""
        from chromadb.errors import InternalError

        client = self.client
        try:
            try:
                return op()
            except InternalError as exc:
                log.warning("Chroma failed: %s", exc)
                if not self._reopen(client):
                    raise
                return op()
        except KnowledgeStoreError:
            raise
        except Exception as exc:
            if _unreachable(exc):
                # A Chroma server that is down raises the HTTP client's errors; callers handle this one type.
                raise KnowledgeStoreError(f"Chroma 不可用 / Chroma unreachable: {type(exc).__name__}: {exc}") from exc
            raise

    def count(self, name: str) -> int:
        return self._call(lambda: self.collection(name).count())

    def existing_ids(self, name: str, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), WRITE_BATCH):
            batch = ids[i : i + WRITE_BATCH]
            found.update(self._call(lambda: self.collection(name).get(ids=batch, include=[]))["ids"])
        return found

    def upsert(self, name: str, ids: list[str], vectors: np.ndarray, documents: list[str],
               metadatas: list[dict[str, Any]]) -> None:
        for i in range(0, len(ids), WRITE_BATCH):
            sl = slice(i, i + WRITE_BATCH)
            self._call(lambda: self.collection(name).upsert(
                ids=ids[sl],
                embeddings=np.asarray(vectors[sl], dtype=np.float32),
                documents=documents[sl],
                metadatas=[_clean_metadata(m) for m in metadatas[sl]],
            ))

    def query(self, name: str, vector: np.ndarray, k: int = 5,
              where: dict[str, Any] | None = None) -> list[Hit]:
        # Chroma 1.x answers fewer than k (or none) itself: no count() round trip on the hot path.
        res = self._call(lambda: self.collection(name).query(
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=k,
            where=where,
            include=["documents", "metadatas", "distances"],
        ))
        hits = []
        for id_, doc, meta, dist in zip(res["ids"][0], res["documents"][0], res["metadatas"][0],
                                        res["distances"][0]):
            hits.append(Hit(id=id_, text=doc or "", metadata=dict(meta or {}), similarity=1.0 - float(dist)))
        return hits

    def vectors_where(self, name: str, where: dict[str, Any]) -> tuple[list[Hit], np.ndarray]:
        """The entries matching ``where`` (similarity 0) with their vectors, for searching a small set in memory."""
        res = self._call(lambda: self.collection(name).get(where=where,
                                                           include=["documents", "metadatas", "embeddings"]))
        hits = [Hit(id=i, text=d or "", metadata=dict(m or {}), similarity=0.0)
                for i, d, m in zip(res["ids"], res["documents"], res["metadatas"])]
        vecs = np.asarray(res["embeddings"], dtype=np.float32) if hits else np.zeros((0, 1), dtype=np.float32)
        return hits, vecs

    def get_all(self, name: str, include_embeddings: bool = False) -> dict[str, Any]:
        include = ["documents", "metadatas"] + (["embeddings"] if include_embeddings else [])
        return self._call(lambda: self.collection(name).get(include=include))

    def delete_collections(self) -> None:
        for name in COLLECTIONS:
            try:
                self.client.delete_collection(self.prefix + name)
            except Exception:  # noqa: BLE001 - absent collection is fine
                pass
        self._collections.clear()


def _clean_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """Chroma accepts str/int/float/bool only; drop None and stringify the rest."""
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if v is None:
            continue
        out[k] = v if isinstance(v, (str, int, float, bool)) else str(v)
    return out


_store: KnowledgeStore | None = None


_store_lock = threading.Lock()


def get_store(settings: Settings | None = None) -> KnowledgeStore:
    """The process's store, opened once. Under a lock: two threads opening the embedded Chroma at the same time
    (the retry loop and a draft, just after start) failed with "'RustBindingsAPI' object has no attribute
    'bindings'"."""
    global _store
    settings = settings or get_settings()
    if _store is None:
        with _store_lock:
            if _store is None:
                try:
                    _store = KnowledgeStore(make_client(settings))
                except Exception as exc:  # noqa: BLE001
                    raise KnowledgeStoreError(f"cannot open Chroma ({settings.chroma or settings.chroma_path}): "
                                              f"{exc}") from exc
    return _store


def reset_store_cache() -> None:
    global _store
    _store = None
