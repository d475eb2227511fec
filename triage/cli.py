"""The `triage` command line (typer). Domain logic lives in the modules; commands only parse and print."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from triage.settings import get_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(help="12345 环境投诉分拣服务 / triage of 12345 environmental complaints", no_args_is_help=True,
                  pretty_exceptions_enable=False)
cases_app = typer.Typer(help="历史案件 / past cases", no_args_is_help=True)
app.add_typer(cases_app, name="cases")
demo_app = typer.Typer(help="演示数据 / the demo set loaded on first start", no_args_is_help=True)
app.add_typer(demo_app, name="demo")
console = Console()
# soft_wrap: a message stays one line in a log or a pipe (rich wrapped it at 80 columns off a terminal).
err = Console(stderr=True, soft_wrap=True)


def _kb_app():
    from triage.kb.commands import kb_app

    return kb_app


app.add_typer(_kb_app(), name="kb", help="法规与案件知识库 / knowledge base")

# ---- production path (issue 7): `triage db upgrade|current|check|downgrade`, `triage users add|list|set|token`.
# The commands live in triage/ops_cli.py; keep this block to these lines.
from triage.ops_cli import db_app, users_app  # noqa: E402

app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
# ---- end of the production-path block


def _quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("transformers", "sentence_transformers", "chromadb", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]错误 / error:[/] {message}")
    raise typer.Exit(code)


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000, reload: bool = False) -> None:
    """启动网页与接口服务（首次启动时建立知识库） / start the web app and API."""
    import uvicorn

    from triage.api.app import create_app
    from triage.bootstrap import prepare

    _quiet_logs()
    settings = get_settings()
    prepare(settings, err)
    err.print(f"服务地址 http://{host}:{port}  接口文档 http://{host}:{port}/docs")
    if settings.auth_mode == "dev" and host not in ("127.0.0.1", "localhost", "::1") and not settings.allowed_hosts:
        # Dev mode asks nobody who they are; it answers only to this machine's own names (triage/api/hardening.py).
        err.print("[yellow]开发模式无需登录，只响应本机地址（localhost、127.0.0.1）。多人使用请改用令牌模式（TRIAGE_AUTH_MODE="
                  "token，见 docs/operations.md）；确需在本模式下供他人访问，请在 TRIAGE_ALLOWED_HOSTS 中列出访问所用的主机名或地址。"
                  "[/yellow] / dev mode has no login and answers only to this machine's names; use token mode for "
                  "an office, or list the names in TRIAGE_ALLOWED_HOSTS")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


@app.command()
def init() -> None:
    """建立离线模型、知识库与数据库（不启动服务） / build model, knowledge base and database."""
    from triage.bootstrap import prepare

    _quiet_logs()
    prepare(get_settings(), err)


@cases_app.command("import")
def cases_import(
    file: Path,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """导入历史案件（CSV UTF-8/GB18030、XLSX、JSONL），按 order_id 去重 / import past cases."""
    from triage.embeddings import get_embedder
    from triage.kb.cases import CaseFileError, import_cases
    from triage.kb.store import get_store

    _quiet_logs()
    settings = get_settings()
    if not file.exists():
        _fail(f"文件不存在 / file not found: {file}")
    try:
        embedder = get_embedder(settings)
        store = get_store(settings)
        with Progress(TextColumn("导入 / importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, disable=as_json) as progress:
            task = progress.add_task("import", total=None)
            report = import_cases(file, store=store, embedder=embedder,
                                  on_total=lambda n: progress.update(task, total=n),
                                  on_progress=lambda n: progress.advance(task, n))
    except CaseFileError as exc:
        _fail(str(exc), 2)
    if report.imported:
        from triage.classify.service import reset_triager

        reset_triager()  # the next triage retrains on the new history
    if as_json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        console.print(f"共 {report.total} 行：新导入 {report.imported}，已存在 {report.already_present}，"
                      f"拒绝 {len(report.rejected)}")
        if report.units_inferred:
            console.print(f"其中 {report.units_inferred} 行没有 unit_type，已按承办单位名称（unit_raw）判定单位类别 / "
                          f"unit_type read from unit_raw for {report.units_inferred} rows")
        if report.imported:
            console.print("提示：运行 triage tune 用新的历史案件微调向量模型（数分钟） / "
                          "run `triage tune` to tune the encoder on the new history")
        for e in report.rejected[:200]:
            console.print(f"  [yellow]{e}[/]")
        if len(report.rejected) > 200:
            console.print(f"  … 另有 {len(report.rejected) - 200} 行被拒绝")
    if report.rejected and not report.imported and not report.already_present:
        raise typer.Exit(1)


@app.command("triage")
def triage_text(text: str, occurred_at: Optional[datetime] = None, address: Optional[str] = None,
                as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """对一条投诉给出分类、承办单位和依据（不入库） / classify one complaint without storing it."""
    from triage.classify.service import get_triager

    _quiet_logs()
    if not text.strip():
        _fail("投诉内容不能为空 / text must not be empty", 2)
    s = get_triager().suggest(text, occurred_at=occurred_at, address=address)
    if as_json:
        print(s.model_dump_json())
        return
    from triage.taxonomy import get_taxonomy

    tax = get_taxonomy()
    flag = "[red]（置信度低，请人工判断）[/]" if s.low_confidence else ""
    console.print(f"类型：{tax.name(s.pollution_type)} / {tax.name(s.subtype) if s.subtype else '-'}"
                  f"  置信度 {s.confidence:.2f}{flag}")
    console.print(f"承办：{s.unit_name}（{s.unit_type}）  依据：{s.unit_decided_by}")
    for c in s.similar_cases[:3]:
        console.print(f"  相似案件 {c.id} ({c.similarity:.2f}) {c.pollution_type}/{c.unit_type}: {c.text[:60]}")
    for r in s.regulations[:3]:
        console.print(f"  法规 《{r.law}》{r.article} ({r.similarity:.2f})")


@app.command()
def tune(
    epochs: Annotated[int, typer.Option(min=1, max=10, help="passes over the cases")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """用本辖区已办案件微调向量模型（两核约每千件五分钟） / fine-tune the encoder on the office's labelled cases."""
    from dataclasses import asdict

    from triage.classify.tuning import tune_office_encoder
    from triage.kb.store import get_store

    _quiet_logs()
    settings = get_settings()
    try:
        with Progress(TextColumn("微调 / tuning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, disable=as_json) as progress:
            task = progress.add_task("tune", total=None)
            report = tune_office_encoder(settings, get_store(settings), epochs=epochs,
                                         progress=lambda i, n: progress.update(task, completed=i, total=n))
    except ValueError as exc:
        _fail(f"{exc}（先用 triage cases import 导入已标注的历史案件 / import labelled cases first）", 2)
    from triage.classify.service import reset_triager

    reset_triager()  # a triager in this process picks the new encoder up; a running server does at its next retraining
    if as_json:
        print(json.dumps(asdict(report), ensure_ascii=False))
    else:
        console.print(f"已用 {report.cases} 件已标注案件微调 {report.epochs} 轮，用时 {report.seconds:.0f} 秒；"
                      f"服务在下次重训时启用（指纹 {report.fingerprint}）")


@app.command("eval")
def eval_command(
    cases: Annotated[Path, typer.Option("--cases", help="TRAIN: past cases file")],
    test: Annotated[Path, typer.Option("--test", help="TEST: labelled complaints to classify")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    predictions: Annotated[Optional[Path], typer.Option(
        "--predictions", help="OUT.csv: one line per TEST row; `row` is its line in TEST as a spreadsheet numbers "
        "it (header = 1); a row without text is left unclassified (empty)")] = None,
    tune: Annotated[bool, typer.Option("--tune/--no-tune", help="fine-tune the encoder on TRAIN first "
                                       "(minutes; as `triage tune` does on an office's history)")] = True,
) -> None:
    """系统与基线（TF-IDF + 逻辑回归）在同一训练集上的对比评测 / evaluate against the baseline."""
    from triage.classify.evaluate import evaluate
    from triage.kb.cases import CaseFileError

    _quiet_logs()
    for p in (cases, test):
        if not p.exists():
            _fail(f"文件不存在 / file not found: {p}", 2)
    if predictions is not None and not (predictions.parent.is_dir() and os.access(predictions.parent, os.W_OK)):
        # Checked first: it was found out only after the whole run, with a traceback, and the figures were lost.
        _fail(f"无法写入预测文件：目录 {predictions.parent} 不存在或不可写 / cannot write --predictions there", 2)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True) as progress:
            tuning = progress.add_task("微调 / tuning on TRAIN", total=None, visible=tune)
            task = progress.add_task("评测 / evaluating", total=None)
            result = evaluate(cases, test, settings=get_settings(), predictions=predictions, tune=tune,
                              progress=lambda i, n: progress.update(task, completed=i, total=n),
                              tune_progress=lambda i, n: progress.update(tuning, completed=i, total=n))
    except (CaseFileError, ValueError) as exc:
        _fail(str(exc), 2)
    if not as_json:
        table = Table(title=f"triage eval — {result['n_test']} test rows")
        sides = ["system"] + (["system_without_llm"] if "system_without_llm" in result else []) + ["baseline"]
        table.add_column("metric")
        for side in sides:
            table.add_column(side, justify="right")
        fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
        for key in result["system"]:
            table.add_row(key, *(fmt(result[side].get(key)) for side in sides))
        console.print(table)
        if result.get("llm_unanswered"):
            err.print(f"大模型未作答 {result['llm_unanswered']} 行 / the LLM member did not answer "
                      f"{result['llm_unanswered']} rows")
    print(json.dumps(result, ensure_ascii=False))


@app.command()
def report(
    date_from: Annotated[str, typer.Option("--from", help="YYYY-MM-DD")],
    date_to: Annotated[str, typer.Option("--to", help="YYYY-MM-DD")],
) -> None:
    """生成阶段工作报告 / the periodic work report."""
    from triage.report import report_command

    from triage.queue.schemas import parse_day
    from triage.queue.service import InvalidInput

    try:  # the API's own check: format, and years 1970–2200 (0001 or 9999 overflowed the period's bounds)
        a, b = parse_day(date_from, "--from"), parse_day(date_to, "--to")
    except InvalidInput as exc:
        _fail(exc.message, 2)
    if a is None or b is None:
        _fail("日期格式应为 YYYY-MM-DD / dates must be YYYY-MM-DD", 2)
    if b < a:
        _fail("结束日期早于开始日期 / --to is before --from", 2)
    from triage.metrics import MAX_PERIOD_DAYS

    if (b - a).days >= MAX_PERIOD_DAYS:
        _fail(f"统计期间最长 {MAX_PERIOD_DAYS // 365} 年，请检查日期 / the period spans at most {MAX_PERIOD_DAYS} days", 2)
    print(report_command(a, b, get_settings()))


@demo_app.command("clear")
def demo_clear(yes: Annotated[bool, typer.Option("--yes", help="不再确认 / do not ask")] = False) -> None:
    """清除演示数据（正式使用前） / delete the demo complaints before going live; they are not loaded again."""
    from sqlalchemy import func, select

    from triage.db import create_all, get_engine, session_factory
    from triage.queue.models import DEMO_SOURCE, Complaint
    from triage.web.demo import clear_demo

    settings = get_settings()
    engine = get_engine(settings)
    create_all(engine)
    with session_factory(engine)() as session:
        n = session.scalar(select(func.count()).select_from(Complaint).where(Complaint.source == DEMO_SOURCE))
        if n and not yes and not typer.confirm(f"删除 {n} 件演示投诉及其分拣、派单、答复和日志？ / delete {n} demo "
                                               "complaints?"):
            _fail("未清除 / nothing deleted", 1)
        removed = clear_demo(session, settings)
    console.print(f"已清除演示数据 {removed} 件；今后不再自动载入 / {removed} demo complaints deleted; the demo set "
                  "will not be loaded again")


def main() -> None:
    """The console script: the commands, with the failures of the services they need (Chroma, the database,
    a migration) told in one line and an exit code, not a traceback."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from triage.db import db_error_line
    from triage.kb.store import KnowledgeStoreError
    from triage.migrate import SchemaError
    from triage.taxonomy import KnowledgeConfigError

    try:
        app()
    except KnowledgeStoreError as exc:
        err.print(f"[red]错误 / error:[/] 知识库（Chroma）不可用，请检查 TRIAGE_CHROMA 或数据目录 / the knowledge "
                  f"store is unavailable: {exc}")
        sys.exit(1)
    except (SchemaError, KnowledgeConfigError) as exc:
        err.print(f"[red]错误 / error:[/] {exc}")
        sys.exit(1)
    except OperationalError as exc:
        err.print(f"[red]错误 / error:[/] 无法连接数据库，请检查 TRIAGE_DATABASE_URL 与数据库服务 / cannot reach the "
                  f"database: {db_error_line(exc)}")
        sys.exit(1)
    except ProgrammingError as exc:
        err.print(f"[red]错误 / error:[/] 数据库结构不完整，请先运行 `triage db upgrade` / the schema is incomplete: run "
                  f"`triage db upgrade` ({db_error_line(exc)})")
        sys.exit(1)
    except CommandError as exc:
        err.print(f"[red]错误 / error:[/] 迁移命令失败 / migration failed: {exc}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
