"""First start: build the offline model, the knowledge base and the database, showing progress."""

from __future__ import annotations

import logging
from pathlib import Path

from rich.console import Console

from triage.settings import Settings

log = logging.getLogger(__name__)


def prepare(settings: Settings, console: Console | None = None) -> None:
    """Idempotent: a second start finds everything in place and only loads it."""
    console = console or Console(stderr=True)
    from triage.db import create_all, get_engine
    from triage.embeddings import default_model_dir, ensure_model, get_embedder
    from triage.kb.regulations import ingest_default_knowledge
    from triage.kb.store import CASES, REGULATIONS, get_store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.embedding_model and not (default_model_dir(settings) / "modules.json").exists():
        console.print("[bold]首次启动：正在构建离线向量模型[/] (multilingual-e5-small, 约30秒) …")
    with console.status("加载向量模型 / loading the embedding model …"):
        ensure_model(settings)
        embedder = get_embedder(settings)
    store = get_store(settings)
    if store.count(REGULATIONS) == 0:
        console.print("[bold]首次启动：正在建立法规知识库[/] (knowledge/regulations) …")
    report = ingest_default_knowledge(settings, store=store, embedder=embedder)
    log.info("regulation digest: %s", report)
    examples = Path(settings.knowledge_dir) / "cases"
    if examples.is_dir():
        from triage.kb.cases import import_cases

        for f in sorted(examples.iterdir()):
            if f.suffix.lower() in (".csv", ".jsonl", ".xlsx"):
                import_cases(f, store=store, embedder=embedder)
    create_all(get_engine(settings))
    articles = store.count(REGULATIONS)
    console.print(f"知识库就绪：法规 {articles} 条，历史案件 {store.count(CASES)} 件；"
                  f"数据目录 {settings.data_dir.resolve()}")
    if articles == 0:
        # Suggestions would cite no article and replies no basis: say so where the person starting it looks.
        from triage.kb.regulations import default_knowledge_dir

        console.print(f"[bold red]警告：法规知识库为空[/]：{default_knowledge_dir(settings)} 下没有法规摘要。"
                      "建议将不附法条依据。请把 TRIAGE_KNOWLEDGE_DIR 指向含 regulations/ 的 knowledge 目录，"
                      "或运行 triage kb ingest <法规目录> / the regulation knowledge base is empty")
