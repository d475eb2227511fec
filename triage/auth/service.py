"""Users, passwords and tokens: plain functions over a Session (keyword-only arguments), as in the queue.

* Passwords: Argon2id through pwdlib (``PasswordHash.recommended()``); a wrong user name costs the same time
  as a wrong password, so the answer does not tell which names exist.
* Tokens: ``trg_`` + 43 URL-safe characters (256 random bits), stored as SHA-256; they expire
  (``TRIAGE_TOKEN_TTL_HOURS``) and can be revoked. Deactivating a user revokes all of its tokens.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from triage.auth.models import ApiToken, Role, User
from triage.queue.models import utcnow
from triage.queue.service import DomainError, InvalidInput, NotFound

log = logging.getLogger(__name__)

TOKEN_PREFIX = "trg_"
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
LAST_USED_RESOLUTION = timedelta(minutes=5)  # don't write on every request
ROLES = tuple(r.value for r in Role)


class AuthError(DomainError):
    status_code = 401


class Forbidden(DomainError):
    status_code = 403


class TooManyAttempts(DomainError):
    status_code = 429


class UserExists(DomainError):
    status_code = 409


@dataclass(frozen=True)
class Principal:
    """Who makes a request. ``dev``: TRIAGE_AUTH_MODE=dev, every role's rights, name from X-Actor."""

    name: str
    role: str
    unit_type: str | None = None
    user_id: int | None = None
    dev: bool = False


_hasher = None
_hasher_lock = threading.Lock()


def password_hasher():
    global _hasher
    with _hasher_lock:
        if _hasher is None:
            from pwdlib import PasswordHash

            _hasher = PasswordHash.recommended()
        return _hasher


def hash_password(password: str) -> str:
    return password_hasher().hash(password)


def _dummy_hash() -> str:
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = hash_password(secrets.token_urlsafe(16))
    return _DUMMY


_DUMMY: str | None = None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------- validation
def check_username(username: str | None) -> str:
    v = unicodedata.normalize("NFC", (username or "").strip())
    if not v:
        raise InvalidInput("用户名不能为空 / username must not be empty")
    if len(v) > 100:
        raise InvalidInput("用户名超过 100 字 / username longer than 100 characters")
    if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in v):
        raise InvalidInput("用户名不能含空白或控制字符 / username must not contain spaces or control characters")
    return v


# zxcvbn's guessability score, 0–4: 3 is "safely unguessable" for an online attack (about 10^8 guesses and more).
MIN_PASSWORD_SCORE = 3


def check_password(password: str | None, username: str = "") -> str:
    p = password or ""
    if len(p) < MIN_PASSWORD:
        raise InvalidInput(f"密码至少 {MIN_PASSWORD} 位 / password must have at least {MIN_PASSWORD} characters")
    if len(p) > MAX_PASSWORD:
        raise InvalidInput(f"密码超过 {MAX_PASSWORD} 位 / password longer than {MAX_PASSWORD} characters")
    if "\x00" in p:
        raise InvalidInput("密码不能含 NUL 字符 / password must not contain NUL")
    # Long is not enough: "1111111111", "password123" and "qwertyuiop" passed, and are among the first guesses of
    # any attacker. zxcvbn knows common passwords, keyboard walks, repeats, dates and the user's own name.
    from zxcvbn import zxcvbn

    if zxcvbn(p[:100], user_inputs=[username] if username else [])["score"] < MIN_PASSWORD_SCORE:
        raise InvalidInput("密码过于简单（常见密码、键盘序列、重复字符或含用户名），请换一个更长、更不规则的密码 / "
                           "password too easy to guess")
    return p


def check_role(role: str | None, unit_type: str | None) -> tuple[str, str | None]:
    from triage.taxonomy import UNIT_TYPES

    r = (role or "").strip()
    if r not in ROLES:
        raise InvalidInput(f"未知的角色 {r!r}，可选 {', '.join(ROLES)} / unknown role")
    u = (unit_type or "").strip() or None
    if r == Role.unit_staff.value:
        if u is None:
            raise InvalidInput("承办单位用户须指定 unit_type / unit_staff needs --unit (a unit_type)")
        if u not in UNIT_TYPES:
            raise InvalidInput(f"未知的 unit_type：{u} / unknown unit_type")
    elif u is not None:
        raise InvalidInput("只有承办单位用户（unit_staff）有 unit_type / only unit_staff users have a unit_type")
    return r, u


# ------------------------------------------------------------------------------------------------- users
def create_user(session: Session, *, username: str, password: str, role: str, unit_type: str | None = None,
                display_name: str | None = None, now: datetime | None = None, actor: str = "cli") -> User:
    name = check_username(username)
    pw = check_password(password, name)
    r, u = check_role(role, unit_type)
    if session.scalar(select(User.id).where(User.username == name)) is not None:
        raise UserExists(f"用户 {name} 已存在 / user {name} already exists")
    user = User(username=name, display_name=(display_name or "").strip()[:100] or None,
                password_hash=hash_password(pw), role=r, unit_type=u, active=True, created_at=now or utcnow())
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise UserExists(f"用户 {name} 已存在 / user {name} already exists") from exc
    log.info("user created: %s (role %s%s) by %s", name, r, f", unit {u}" if u else "", actor)
    return user


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"用户 {username} 不存在 / user {username} not found")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def update_user(session: Session, *, username: str, role: str | None = None, unit_type: str | None = None,
                active: bool | None = None, password: str | None = None, display_name: str | None = None,
                now: datetime | None = None, actor: str = "cli") -> User:
    user = get_user(session, username)
    now = now or utcnow()
    before = (user.role, user.unit_type, user.active)
    if role is not None or unit_type is not None:
        new_role = role if role is not None else user.role
        new_unit = unit_type if unit_type is not None else (user.unit_type if new_role == Role.unit_staff.value
                                                              else None)
        user.role, user.unit_type = check_role(new_role, new_unit)
    if password is not None:
        user.password_hash = hash_password(check_password(password, user.username))
        revoke_tokens(session, user_id=user.id, now=now)
    if display_name is not None:
        user.display_name = display_name.strip()[:100] or None
    if active is not None:
        user.active = bool(active)
        if not user.active:
            revoke_tokens(session, user_id=user.id, now=now)
    user.updated_at = now
    session.flush()
    # Who changed whose access, for the office's security log (the password itself never appears).
    changes = [f"{k} {a!r} → {b!r}" for k, a, b in zip(("role", "unit", "active"), before,
                                                         (user.role, user.unit_type, user.active)) if a != b]
    changes += ["password reset"] if password is not None else []
    log.info("user changed: %s (%s) by %s", user.username, "; ".join(changes) or "no access change", actor)
    return user


# ------------------------------------------------------------------------------------- login and tokens
class _Throttle:
    """Failed logins within ``window`` seconds (per process): at most ``per_name`` for one user name from one
    client address, and ``per_client`` for any names from one address.

    The user name alone was the key: anyone could keep any account, the admin's included, locked out with five
    wrong passwords, and one password tried across many names was never slowed. ``per_client`` is high enough
    for an office behind one NAT address (its people rarely mistype fifty times in five minutes), low enough to
    stop a password sprayed over every account.

    An attempt counts as a failure from the moment it is checked (``attempt``) until it succeeds: forty
    simultaneous guesses all passed a check made before any of them had failed."""

    MAX_KEYS = 10_000  # expired keys are dropped beyond this: a flood of names must not grow memory for ever

    def __init__(self, per_name: int = 5, per_client: int = 50, window: float = 300.0):
        self.per_name, self.per_client, self.window = per_name, per_client, window
        self._fails: dict[tuple[str, ...], list[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _keys(name: str, client: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return ("name", name, client), ("client", client)

    def attempt(self, name: str, client: str) -> float:
        """Refuse (TooManyAttempts) past a limit; else count this attempt as failed until ``succeeded``."""
        now = time.monotonic()
        with self._lock:
            for key, limit in zip(self._keys(name, client), (self.per_name, self.per_client)):
                fails = [t for t in self._fails.get(key, []) if now - t < self.window]
                if fails:
                    self._fails[key] = fails
                else:
                    self._fails.pop(key, None)
                if len(fails) >= limit:
                    raise TooManyAttempts("登录失败次数过多，请稍后再试 / too many failed logins; try again later",
                                          retry_after=int(self.window - (now - fails[0])) + 1)
            for key in self._keys(name, client):
                self._fails.setdefault(key, []).append(now)
            if len(self._fails) > self.MAX_KEYS:
                self._fails = {k: v for k, v in self._fails.items() if v and now - v[-1] < self.window}
        return now

    def succeeded(self, name: str, client: str, at: float) -> None:
        """The attempt made ``at`` was right: it is no failure, and this name's earlier ones from here are
        forgiven."""
        with self._lock:
            name_key, client_key = self._keys(name, client)
            self._fails.pop(name_key, None)
            self._drop(client_key, at)

    def withdrawn(self, name: str, client: str, at: float) -> None:
        """The attempt made ``at`` was never judged (the service was too busy): it counts for nothing."""
        with self._lock:
            for key in self._keys(name, client):
                self._drop(key, at)

    def _drop(self, key: tuple[str, ...], at: float) -> None:
        fails = self._fails.get(key)
        if fails and at in fails:
            fails.remove(at)


login_throttle = _Throttle()
# Each check holds 64 MiB for Argon2 (m=65536): forty logins at once took about 1 GB. Checks beyond this many wait.
_hashing = threading.BoundedSemaphore(4)
HASH_WAIT_S = 2.0


def authenticate(session: Session, *, username: str, password: str, client: str = "") -> User:
    """The active user with this name and password, or AuthError (same answer for every failure). ``client``: the
    caller's address, which the throttle counts failures by."""
    key = (username or "").strip().lower()[:100]
    at = login_throttle.attempt(key, client)
    user = session.scalar(select(User).where(User.username == (username or "").strip()))
    hasher = password_hasher()
    # A burst of logins waits here at most HASH_WAIT_S, not in the request threads every page shares (a burst of
    # forty held them: the queue answered in 3.8 s instead of 0.01 s).
    if not _hashing.acquire(timeout=HASH_WAIT_S):
        login_throttle.withdrawn(key, client, at)
        raise TooManyAttempts("登录请求过多，请稍后再试 / too many logins at once; try again shortly", retry_after=5)
    try:
        if user is None:
            hasher.verify(password or "", _dummy_hash())  # same cost as a real check
            ok = False
        else:
            ok, new_hash = hasher.verify_and_update(password or "", user.password_hash)
            if ok and new_hash:
                user.password_hash = new_hash  # parameters were raised since it was stored
    finally:
        _hashing.release()
    if not ok or user is None or not user.active:
        log.warning("failed login for %r from %s", key, client or "?")
        raise AuthError("用户名或密码错误 / wrong user name or password")
    login_throttle.succeeded(key, client, at)
    log.info("login: %s from %s", user.username, client or "?")
    return user


def issue_token(session: Session, *, user: User, ttl: timedelta, label: str | None = None,
                now: datetime | None = None) -> tuple[str, ApiToken]:
    now = now or utcnow()
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    rec = ApiToken(user_id=user.id, token_hash=token_digest(token), label=(label or "")[:100] or None,
                   created_at=now, expires_at=now + ttl)
    session.add(rec)
    session.flush()
    return token, rec


def log_in(session: Session, *, username: str, password: str, ttl: timedelta,
           label: str | None = None, client: str = "") -> tuple[str, ApiToken, User]:
    """Check the password (throttled) and issue a token, committed: what the API and the login page both do."""
    user = authenticate(session, username=username, password=password, client=client)
    token, rec = issue_token(session, user=user, ttl=ttl, label=label)
    session.commit()
    return token, rec, user


def resolve_token(session: Session, token: str, *, now: datetime | None = None) -> Principal | None:
    """The principal a bearer token stands for, or None (unknown, expired, revoked, user inactive)."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    now = now or utcnow()
    row = session.execute(select(ApiToken, User).join(User, ApiToken.user_id == User.id)
                          .where(ApiToken.token_hash == token_digest(token))).first()
    if row is None:
        return None
    tok, user = row
    if tok.revoked_at is not None or tok.expires_at <= now or not user.active:
        return None
    if tok.last_used_at is None or now - tok.last_used_at > LAST_USED_RESOLUTION:
        tok.last_used_at = now
        session.commit()
    return Principal(name=user.username, role=user.role, unit_type=user.unit_type, user_id=user.id)


def revoke_token(session: Session, token: str, *, now: datetime | None = None) -> bool:
    n = session.execute(update(ApiToken).where(ApiToken.token_hash == token_digest(token),
                                               ApiToken.revoked_at.is_(None))
                        .values(revoked_at=now or utcnow())).rowcount
    return bool(n)


def revoke_tokens(session: Session, *, user_id: int, now: datetime | None = None) -> int:
    return session.execute(update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
                           .values(revoked_at=now or utcnow())).rowcount
