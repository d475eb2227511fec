"""``triage db …`` (schema migrations) and ``triage users …`` (accounts for TRIAGE_AUTH_MODE=token).

Mounted by triage/cli.py. Output for people is Chinese + English; exit codes: 0 ok, 1 failure, 2 bad input.
"""

from __future__ import annotations

import getpass
import logging
import sys
from datetime import timedelta
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from triage.settings import get_settings

db_app = typer.Typer(help="数据库结构迁移 / database schema migrations (Alembic)", no_args_is_help=True)
users_app = typer.Typer(help="用户与令牌 / users and API tokens", no_args_is_help=True)
out = Console()
err = Console(stderr=True, soft_wrap=True)  # one line per message, as triage/cli.py


@users_app.callback()
def _users_log() -> None:
    """Account changes made here are logged as the server logs them (stderr, with time and level): a shell's
    changes to who may do what belong in the same security log as the web's, under the system user's name."""
    from triage.api.app import LOG_FORMAT

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    logging.getLogger("triage.auth").setLevel(logging.INFO)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry for the uid (some containers)
        return "cli"


def _engine():
    from triage.db import get_engine

    return get_engine(get_settings())


def _safe_url() -> str:
    from sqlalchemy.engine import make_url

    return make_url(get_settings().resolved_database_url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="目标版本，默认最新")] = "head") -> None:
    """迁移到最新（或指定）版本；已是最新时不做任何事 / apply migrations."""
    from triage.migrate import current_revision, head_revision, schema_state, upgrade

    eng = _engine()
    if schema_state(eng) == "unknown":
        err.print(f"[red]数据库结构版本 {current_revision(eng)} 比本程序（最新 {head_revision()}）新：请部署新版程序；"
                  f"若要回退程序，先用新版程序运行 `triage db downgrade {head_revision()} --yes`[/] / the database is "
                  f"newer than this code")
        raise typer.Exit(1)
    before, after = upgrade(eng, revision)
    if before == after:
        out.print(f"数据库已是最新版本 {after} / already at {after}  ({_safe_url()})")
    else:
        out.print(f"已迁移 {before or '（空库）'} → {after} / migrated {before} → {after}  ({_safe_url()})")


@db_app.command("current")
def db_current() -> None:
    """显示当前版本与最新版本 / show the current and head revisions."""
    from triage.migrate import current_revision, head_revision, schema_state

    eng = _engine()
    out.print(f"{_safe_url()}\ncurrent: {current_revision(eng) or '-'}  head: {head_revision()}  "
              f"state: {schema_state(eng)}")


@db_app.command("check")
def db_check() -> None:
    """数据库结构与模型一致则退出码 0 / exit 0 when the schema matches the models."""
    from triage.migrate import check_no_diff, head_revision, schema_state

    eng = _engine()
    state = schema_state(eng)
    if state in ("fresh", "unknown"):
        err.print(f"[red]{_STATE_ZH[state]}[/] (state {state}, head {head_revision()})")
        raise typer.Exit(1)
    diff = check_no_diff(eng)
    if state != "current" or diff:
        err.print(f"[red]结构不一致 / schema differs[/] (state {state}, head {head_revision()}):"
                  + (f" {_STATE_ZH[state]}" if state in _STATE_ZH else ""))
        for d in diff[:50]:
            err.print(f"  {_describe(d)}")
        raise typer.Exit(1)
    out.print(f"结构一致，版本 {head_revision()} / schema matches the models")


_STATE_ZH = {
    "fresh": "空库，尚未建表：请运行 `triage db upgrade` / empty database: run `triage db upgrade`",
    "behind": "版本落后：请运行 `triage db upgrade` / behind: run `triage db upgrade`",
    "legacy": "未纳入迁移管理的旧库：`triage db upgrade` 会接管并迁移 / never stamped: `triage db upgrade` adopts it",
    "unknown": "数据库版本比本程序新：请部署新版程序 / newer than this code: deploy the newer code",
}


def _describe(d) -> str:
    """One line per difference (autogenerate gives tuples holding whole Table objects)."""
    if isinstance(d, tuple) and d:
        names = [getattr(x, "name", None) for x in d[1:]]
        where = ".".join(str(n) for n in names if isinstance(n, str)) or ", ".join(map(str, d[1:4]))[:120]
        return f"{d[0]} {where}"
    if isinstance(d, list):
        return "; ".join(_describe(x) for x in d)
    return str(d)[:200]


@db_app.command("downgrade")
def db_downgrade(revision: str, yes: Annotated[bool, typer.Option("--yes", help="确认 / confirm")] = False) -> None:
    """回退到指定版本（会删除表和数据，须 --yes） / downgrade (drops tables and data; needs --yes)."""
    from triage.migrate import downgrade

    if not yes:
        err.print("[red]回退会删除数据，请加 --yes 确认 / downgrading drops data: add --yes[/]")
        raise typer.Exit(2)
    downgrade(_engine(), revision)
    out.print(f"已回退到 {revision} / downgraded to {revision}")


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return typer.prompt("密码 / password", hide_input=True, confirmation_prompt=True)


def _session():
    from triage.db import create_all, session_factory
    from triage.migrate import schema_state

    eng = _engine()
    if eng.dialect.name == "sqlite":
        create_all(eng)  # the embedded default needs no separate step
    else:
        state = schema_state(eng)
        if state != "current":
            err.print(f"[red]{_STATE_ZH.get(state, state)}[/]")
            raise typer.Exit(1)
    return session_factory(eng)()


def _fail(exc: Exception, code: int = 2) -> None:
    err.print(f"[red]错误 / error:[/] {getattr(exc, 'message', exc)}")
    raise typer.Exit(code)


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[str, typer.Option("--role", help="dispatcher / unit_staff / manager / admin")],
    unit: Annotated[Optional[str], typer.Option("--unit", help="unit_staff 的承办单位类型 unit_type")] = None,
    display_name: Annotated[Optional[str], typer.Option("--display-name")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="从标准输入读一行作为密码")] = False,
) -> None:
    """新建用户（密码交互输入或 --password-stdin） / add a user."""
    from triage.auth import service
    from triage.queue.service import DomainError

    try:  # validate before asking for the password
        service.check_username(name)
        service.check_role(role, unit)
    except DomainError as exc:
        _fail(exc)
    with _session() as session:
        try:  # before the password: it would be asked for in vain
            service.get_user(session, name.strip())
        except DomainError:
            pass
        else:
            _fail(service.UserExists(f"用户 {name.strip()} 已存在 / user {name.strip()} already exists"), 1)
        password = _read_password(password_stdin)
        try:
            u = service.create_user(session, username=name, password=password, role=role, unit_type=unit,
                                    display_name=display_name, actor=_actor())
            session.commit()
        except DomainError as exc:
            _fail(exc, 1 if exc.status_code == 409 else 2)
        out.print(f"已新建用户 {u.username}（{u.role}{'，' + u.unit_type if u.unit_type else ''}） / user added")


@users_app.command("list")
def users_list() -> None:
    """列出用户 / list users."""
    from triage.auth import service

    with _session() as session:
        table = Table("用户名", "角色", "单位类型", "启用", "创建时间")
        for u in service.list_users(session):
            table.add_row(u.username, u.role, u.unit_type or "-", "是" if u.active else "否",
                          u.created_at.isoformat(timespec="seconds"))
        out.print(table)


@users_app.command("set")
def users_set(
    name: str,
    role: Annotated[Optional[str], typer.Option("--role")] = None,
    unit: Annotated[Optional[str], typer.Option("--unit")] = None,
    active: Annotated[Optional[bool], typer.Option("--active/--inactive", help="停用会吊销其全部令牌")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="设新密码（吊销全部令牌）")] = False,
) -> None:
    """修改角色、单位、启用状态或密码 / change a user."""
    from triage.auth import service
    from triage.queue.service import DomainError

    password = _read_password(True) if password_stdin else None
    with _session() as session:
        try:
            u = service.update_user(session, username=name, role=role, unit_type=unit, active=active,
                                    password=password, actor=_actor())
            session.commit()
        except DomainError as exc:
            _fail(exc, 1 if exc.status_code == 404 else 2)
        out.print(f"已更新 {u.username}：{u.role} {u.unit_type or ''} {'启用' if u.active else '停用'}")


@users_app.command("token")
def users_token(
    name: str,
    hours: Annotated[float, typer.Option("--hours", help="有效期（小时）")] = 24 * 30,
    label: Annotated[Optional[str], typer.Option("--label")] = None,
) -> None:
    """为集成账号（如 Open311 网关）签发令牌，只显示一次 / issue a token (shown once)."""
    from triage.auth import service
    from triage.queue.service import DomainError

    if not 0 < hours <= 24 * 366:
        _fail(ValueError("--hours 须在 0 到 8784 之间 / --hours must be in (0, 8784]"))
    with _session() as session:
        try:
            user = service.get_user(session, name)
        except DomainError as exc:
            _fail(exc, 1)
        if not user.active:
            _fail(ValueError(f"用户 {name} 已停用 / user is inactive"), 1)
        token, rec = service.issue_token(session, user=user, ttl=timedelta(hours=hours), label=label or "cli")
        session.commit()
        logging.getLogger("triage.auth.service").info(
            "token issued: for %s (label %s, until %s) by %s", user.username, rec.label,
            rec.expires_at.isoformat(timespec="minutes"), _actor())
        err.print(f"令牌有效至 {rec.expires_at.isoformat(timespec='minutes')}，只显示这一次 / shown once:")
        print(token)
