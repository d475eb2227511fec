"""All configuration in one pydantic-settings object (environment prefix TRIAGE_)."""

from __future__ import annotations

import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The repository root: knowledge/, prompts/ and migrations/ live beside the package in a checkout.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _resource_root() -> Path:
    """Where knowledge/, prompts/, migrations/ and alembic.ini are read from.

    A checkout (editable install, tests, CI) reads them beside the package, so an edit takes effect at once; a
    plain `pip install` of the wheel gets them as data files under <prefix>/share/triage12345 (pyproject.toml).
    """
    if (PROJECT_ROOT / "knowledge" / "taxonomy.yaml").is_file():
        return PROJECT_ROOT
    return Path(sysconfig.get_path("data")) / "share" / "triage12345"


RESOURCE_ROOT = _resource_root()
# The shipped knowledge folder: the default of TRIAGE_KNOWLEDGE_DIR, and what a trimmed copy falls back to.
DEFAULT_KNOWLEDGE_DIR = RESOURCE_ROOT / "knowledge"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="where SQLite, Chroma and exports live")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite under data_dir")
    chroma: str | None = Field(default=None, description="http://host:port of a Chroma server; default embedded")
    embedding_model: str | None = Field(default=None, description="path of a sentence-transformers model")
    model_cache_dir: Path = Field(default=Path.home() / ".cache" / "triage" / "models")
    embedding_batch_size: int = 32
    # "onnx": the same weights exported once to ONNX and run by ONNX Runtime (about twice as fast on two cores;
    # checked against torch at export, torch is used where the export fails); "torch": sentence-transformers only.
    embedding_backend: Literal["onnx", "torch"] = "onnx"
    # The office's tuned encoder (`triage tune`) runs as an int8 copy of its ONNX export: faster, and its vectors
    # feed only the member refit on them. False: the exact export (with the "onnx" backend).
    tuned_encoder_int8: bool = True
    knowledge_dir: Path = DEFAULT_KNOWLEDGE_DIR
    prompts_dir: Path = RESOURCE_ROOT / "prompts"
    jurisdiction: str = "gz_baiyun_junhe"
    # Reply drafting through any OpenAI-compatible endpoint; empty = template drafter.
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = None
    llm_timeout: float = 30.0
    llm_max_retries: int = 1
    # The LLM as a member of the triage ensemble (triage/classify/llm_member.py): one call per complaint, on the
    # intake path, so it is off unless asked for and gets its own, shorter time limit and no retry; a miss only
    # means the other members decide. `triage eval` then scores the system with and without it.
    llm_classify: bool = False
    llm_classify_timeout: float = Field(default=8.0, gt=0, description="seconds one classification call may take")
    demo_data: bool = True
    # Production path (docs/operations.md): "dev" = no login, the actor comes from the X-Actor header and every
    # role is allowed (the embedded single-laptop setup); "token" = every /api route but /api/health and
    # /api/auth/token needs a bearer token of a user made with `triage users add`.
    auth_mode: Literal["dev", "token"] = "dev"
    token_ttl_hours: float = Field(default=12.0, gt=0, description="lifetime of a token from POST /api/auth/token")
    # None: SQLite databases are migrated by the app at start, other databases only by `triage db upgrade`.
    auto_migrate: bool | None = None
    max_body_bytes: int = Field(default=2_000_000, description="requests with a larger body get 413")
    # Host names the service answers to, comma-separated ("*": any). Default: in dev mode, where nothing asks
    # who you are, only this machine's own names, so a web page elsewhere cannot reach the service through a
    # host name of its own (DNS rebinding); in token mode any (the proxy in front decides).
    allowed_hosts: str | None = None
    log_level: str = Field(default="INFO", description="the service's log level under uvicorn (DEBUG, INFO, WARNING…)")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'triage.db').resolve()}"

    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma"


@lru_cache
def get_settings() -> Settings:
    return Settings()
