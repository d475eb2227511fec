"""``triage kb …``: ingest law markdown into the regulations collection and search the knowledge base.

``kb_app`` is a typer sub-app; ``triage/cli.py`` mounts it as ``triage kb``. Output for people is Chinese; logs
are English. A fresh machine gets the project's own digest automatically on first use.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from triage.kb.regulations import (
    IngestReport,
    NoLawFilesError,
    RegulationParseError,
    ensure_default_knowledge,
    ingest_paths,
)
from triage.kb.search import MAX_K, SearchError, search
from triage.kb.store import CASES, COLLECTIONS, REGULATIONS, KnowledgeStoreError
from triage.settings import Settings, get_settings

log = logging.getLogger(__name__)

kb_app = typer.Typer(name="kb", help="知识库：法规条文、法规摘要与历史案例的入库和检索。", no_args_is_help=True,
                     add_completion=False)

TEXT_PREVIEW = 60


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


def open_knowledge_base(settings: Settings):
    """(store, embedder) for the configured Chroma and embedding model. Tests replace this function."""
    from triage.embeddings import get_embedder
    from triage.kb.store import get_store

    return get_store(settings), get_embedder(settings)


def _open_or_exit(settings: Settings):
    try:
        return open_knowledge_base(settings)
    except KnowledgeStoreError as exc:
        _err().print(f"[red]无法打开知识库（Chroma）：{exc}[/red]")
    except (OSError, RuntimeError, ValueError, ImportError) as exc:
        _err().print(f"[red]无法加载向量模型：{exc}[/red]")
    raise typer.Exit(1)


def _first_use(settings: Settings, store, embedder) -> None:
    """An empty regulations collection gets the project's digest, so a fresh machine has a useful KB."""
    try:
        if store.count(REGULATIONS) > 0:
            return
        _err().print("首次使用：正在导入项目自带的法规摘要（knowledge/regulations）…")
        report = ensure_default_knowledge(settings, store, embedder)
        if report is not None:
            _err().print(f"已导入法规摘要 {report.articles} 条。")
    except (RegulationParseError, OSError) as exc:
        log.warning("default knowledge not ingested: %s", exc)
        _err().print(f"[yellow]未能导入项目自带的法规摘要：{exc}[/yellow]")


def _summary(report: IngestReport) -> Table:
    table = Table(title="法规入库结果", show_header=True, header_style="bold")
    table.add_column("项目")
    table.add_column("数量", justify="right")
    for label, value in (("文件", report.files), ("法律法规", len(report.laws)), ("条文", report.articles),
                         ("分块", report.chunks), ("新增", report.added), ("更新", report.updated),
                         ("未变（跳过）", report.unchanged), ("删除（已不存在）", report.removed)):
        table.add_row(label, str(value))
    table.add_row("用时（秒）", f"{report.seconds:.1f}")
    return table


@kb_app.command("ingest")
def ingest_command(
    paths: list[Path] = typer.Argument(..., help="法规 Markdown 文件或目录（可多个；目录递归读取 *.md）",
                                       show_default=False),
) -> None:
    """导入法规 Markdown（支持 **第一条**　 与 第一条  两种格式）到法规库；重复导入不会产生重复数据。"""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        _err().print(f"[red]路径不存在：{'、'.join(missing)}[/red]")
        raise typer.Exit(1)
    settings = get_settings()
    store, embedder = _open_or_exit(settings)
    _first_use(settings, store, embedder)
    try:
        report = ingest_paths(paths, store=store, embedder=embedder, progress=True)
    except FileNotFoundError as exc:
        _err().print(f"[red]路径不存在：{exc}[/red]")
        raise typer.Exit(1) from None
    except NoLawFilesError as exc:
        _err().print(f"[red]目录中没有法规文件（.md/.markdown/.txt） / {exc}[/red]")
        raise typer.Exit(1) from None
    except RegulationParseError as exc:
        _err().print(f"[red]无法解析法规文件：{exc}[/red]")
        raise typer.Exit(1) from None
    except KnowledgeStoreError as exc:
        _err().print(f"[red]写入知识库失败：{exc}[/red]")
        raise typer.Exit(1) from None
    Console().print(_summary(report))
    for line in report.superseded:
        Console().print(f"旧版本自新版本施行之日起失效 / earlier version ended: {line}")
    for skipped in report.skipped:
        _err().print(f"[yellow]未找到条文，已跳过：{skipped}[/yellow]")


def _preview(text: str, n: int = TEXT_PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[:n] + "…"


@kb_app.command("search")
def search_command(
    text: str = typer.Argument(..., help="要检索的内容，例如投诉原文", show_default=False),
    collection: str = typer.Option(REGULATIONS, "--collection", "-c", help="regulations（法规）或 cases（历史案例）"),
    k: int = typer.Option(5, "-k", help=f"返回条数（1–{MAX_K}）"),
    as_json: bool = typer.Option(False, "--json", help="输出 JSON 列表"),
    on: str | None = typer.Option(None, "--on", help="判断是否现行有效的日期 YYYY-MM-DD，默认今天",
                                  show_default=False),
) -> None:
    """检索最相近的法规条文或历史案例。"""
    if collection not in COLLECTIONS:
        _err().print(f"[red]未知的集合 {collection!r}：只能是 regulations 或 cases[/red]")
        raise typer.Exit(2)
    if not 1 <= k <= MAX_K:
        _err().print(f"[red]-k 必须在 1 到 {MAX_K} 之间[/red]")
        raise typer.Exit(2)
    if not text.strip():
        _err().print("[red]检索内容不能为空[/red]")
        raise typer.Exit(2)
    try:
        on_date = date.fromisoformat(on) if on else date.today()
    except ValueError:
        _err().print(f"[red]--on 日期格式应为 YYYY-MM-DD，收到：{on}[/red]")
        raise typer.Exit(2) from None

    settings = get_settings()
    store, embedder = _open_or_exit(settings)
    _first_use(settings, store, embedder)
    try:
        results = search(text, collection=collection, k=k, on=on_date, store=store, embedder=embedder,
                         jurisdiction=settings.jurisdiction)
    except SearchError as exc:
        _err().print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    except KnowledgeStoreError as exc:
        _err().print(f"[red]检索失败：{exc}[/red]")
        raise typer.Exit(1) from None

    if as_json:
        typer.echo(json.dumps(results, ensure_ascii=False, indent=1))
        return
    out = Console()
    if not results:
        out.print("没有找到结果（知识库可能为空，可先运行 triage kb ingest 导入法规）。")
        return
    if collection == CASES:
        table = Table(title=f"相似历史案例：{_preview(text, 30)}", header_style="bold")
        for col in ("案例编号", "污染类型", "承办单位类型", "相似度", "内容"):
            table.add_column(col, justify="right" if col == "相似度" else "left")
        for r in results:
            table.add_row(str(r["id"]), r.get("pollution_type") or "—", r.get("unit_type") or "—",
                          f"{r['similarity']:.3f}", _preview(r["text"]))
    else:
        table = Table(title=f"相关法规（现行有效判断日期：{on_date.isoformat()}）", header_style="bold")
        for col in ("法规", "条款", "现行有效", "相似度", "内容"):
            table.add_column(col, justify="right" if col == "相似度" else "left")
        for r in results:
            article = r["article"] + ("（摘要）" if r.get("source") == "digest" else "")
            force = "[green]是[/green]" if r["in_force"] else "[red]否[/red]"
            if not r.get("applies_here", True):
                force += "（外地法规）"
            body = f"{r['title']}：{r['text']}" if r.get("title") else r["text"]
            table.add_row(r["law"], article, force, f"{r['similarity']:.3f}", _preview(body))
    out.print(table)
