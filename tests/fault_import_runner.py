"""Runs ``triage cases import FILE --json`` in this process with a small, slow, deterministic embedder, so a
test can kill -9 it between batches. Usage: python tests/fault_import_runner.py FILE PROGRESS_FILE DELAY.

Each embedded batch appends a line to PROGRESS_FILE *before* it is written to Chroma, so a kill can land
between the embedding and the write, or in the write itself."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np


class SlowHashEmbedder:
    model_id = "hash-fault-test"
    dim = 32

    def __init__(self, progress: Path, delay: float):
        self.progress, self.delay = progress, delay

    def embed_passages(self, texts, progress=False):
        time.sleep(self.delay)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            h = hashlib.sha256(t.encode()).digest()
            out[i] = np.frombuffer(h, dtype=np.uint8)[: self.dim].astype(np.float32) + 1.0
            out[i] /= np.linalg.norm(out[i])
        with self.progress.open("a") as f:
            f.write(f"{len(texts)}\n")
        return out

    embed_queries = embed_passages

    def embed_query(self, text):
        return self.embed_passages([text])[0]


def main() -> None:
    file, progress, delay = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    import triage.embeddings

    embedder = SlowHashEmbedder(progress, delay)
    triage.embeddings.get_embedder = lambda settings=None: embedder
    from triage.cli import app

    app(["cases", "import", str(file), "--json"], standalone_mode=True)


if __name__ == "__main__":
    main()
