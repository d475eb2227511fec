"""Deadlines in Chinese working days (SLA per urgency and pollution type).

Working days follow the State Council's yearly holiday notice: weekends and public holidays are off, make-up
working days (调休) on weekends are worked. Sources, in order:

1. ``knowledge/calendar_overrides.yaml`` for a year written there (a notice published after the library);
2. ``chinesecalendar`` (official data up to the year the library was released; raises for later years);
3. ``holidays.China`` as a fallback: weekends + rule-based statutory holidays, no make-up days. A deadline
   counted through such a year carries a visible note ("calendar not yet published") that is stored with it.

The SLA itself (``knowledge/sla.yaml``) gives per urgency a contact time and a closing time, and ordered
rules by pollution type / subtype / night that override the closing time.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from triage.settings import DEFAULT_KNOWLEDGE_DIR
from triage.taxonomy import KnowledgeConfigError, config_error

log = logging.getLogger(__name__)

TZ = ZoneInfo("Asia/Shanghai")
DAY_END = time(23, 59, 59)
FALLBACK_NOTE = "{years}年节假日安排尚未公布（calendar not yet published），期限按法定节假日规则推算、未计调休，公布后可能调整"
_DEFAULT_KNOWLEDGE = DEFAULT_KNOWLEDGE_DIR

SOURCE_OVERRIDE = "override"
SOURCE_OFFICIAL = "chinesecalendar"
SOURCE_FALLBACK = "holidays-fallback"


def local_date(dt: datetime) -> date:
    return to_local(dt).date()


def to_local(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=TZ)
    return dt.astimezone(TZ)


def end_of_local_day(d: date) -> datetime:
    """23:59:59 Beijing time on ``d``, as an aware UTC datetime."""
    return datetime.combine(d, DAY_END, tzinfo=TZ).astimezone(UTC)


# ---------------------------------------------------------------------------------------------- calendar
@dataclass(frozen=True)
class YearNotice:
    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]
    source: str = ""


def _parse_dates(items: list[Any] | None) -> set[date]:
    out: set[date] = set()
    for item in items or []:
        if isinstance(item, date):
            out.add(item)
            continue
        s = str(item).strip()
        if ".." in s:
            a, b = (date.fromisoformat(x.strip()) for x in s.split("..", 1))
            if b < a:
                raise ValueError(f"bad date range {s!r}")
            d = a
            while d <= b:
                out.add(d)
                d += timedelta(days=1)
        else:
            out.add(date.fromisoformat(s))
    return out


def load_calendar_overrides(path: Path | None) -> dict[int, YearNotice]:
    if path is None or not Path(path).exists():
        return {}
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    years = raw.get("years") or {}
    notices: dict[int, YearNotice] = {}
    for year, spec in years.items():
        year = int(year)
        spec = spec or {}
        hol = _parse_dates(spec.get("holidays"))
        wrk = _parse_dates(spec.get("workdays"))
        wrong = sorted(d for d in hol | wrk if d.year != year)
        if wrong:
            raise ValueError(f"{path}: year {year} lists dates of another year: {wrong[:3]}")
        if hol & wrk:
            raise ValueError(f"{path}: year {year}: a date is both holiday and workday: {sorted(hol & wrk)[:3]}")
        notices[year] = YearNotice(year, frozenset(hol), frozenset(wrk), str(spec.get("source", "")))
    return notices


class WorkCalendar:
    """Is a date a working day in mainland China, and how sure are we (see the module docstring)."""

    def __init__(self, overrides: dict[int, YearNotice] | None = None):
        self.overrides = overrides or {}
        self._fallback_years: dict[int, Any] = {}
        self._cache: dict[date, tuple[bool, str]] = {}

    def day(self, d: date) -> tuple[bool, str]:
        """(is_workday, source) where source is override / chinesecalendar / holidays-fallback."""
        hit = self._cache.get(d)
        if hit is not None:
            return hit
        notice = self.overrides.get(d.year)
        if notice is not None:
            if d in notice.workdays:
                res = (True, SOURCE_OVERRIDE)
            elif d in notice.holidays:
                res = (False, SOURCE_OVERRIDE)
            else:
                res = (d.weekday() < 5, SOURCE_OVERRIDE)
        else:
            try:
                import chinese_calendar

                res = (bool(chinese_calendar.is_workday(d)), SOURCE_OFFICIAL)
            except NotImplementedError:  # the library has no data for this year yet
                res = (self._fallback_is_workday(d), SOURCE_FALLBACK)
        self._cache[d] = res
        return res

    def is_workday(self, d: date) -> bool:
        return self.day(d)[0]

    def _fallback_is_workday(self, d: date) -> bool:
        cal = self._fallback_years.get(d.year)
        if cal is None:
            import holidays

            cal = self._fallback_years[d.year] = holidays.China(years=d.year)
        # is_working_day: not a weekend (unless a known make-up day) and not a holiday.
        return bool(cal.is_working_day(d))

    def add_working_days(self, start: date, n: int) -> tuple[date, set[int]]:
        """The ``n``-th working day after ``start`` (n=0: ``start`` itself, or the next working day).

        Returns the date and the years whose calendar was only estimated on the way.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        estimated: set[int] = set()
        d = start
        if n == 0:
            while True:
                ok, src = self.day(d)
                if src == SOURCE_FALLBACK:
                    estimated.add(d.year)
                if ok:
                    return d, estimated
                d += timedelta(days=1)
        left = n
        while left:
            d += timedelta(days=1)
            ok, src = self.day(d)
            if src == SOURCE_FALLBACK:
                estimated.add(d.year)
            if ok:
                left -= 1
        return d, estimated

    def working_days_between(self, a: date, b: date) -> int:
        """Working days in (a, b]; negative when b < a."""
        if b == a:
            return 0
        sign = 1
        if b < a:
            a, b, sign = b, a, -1
        n = 0
        d = a
        while d < b:
            d += timedelta(days=1)
            if self.is_workday(d):
                n += 1
        return sign * n


def fallback_note(years: set[int]) -> str | None:
    if not years:
        return None
    return FALLBACK_NOTE.format(years="、".join(str(y) for y in sorted(years)))


# ---------------------------------------------------------------------------------------------- policy
@dataclass(frozen=True)
class Rule:
    name: str
    when: dict[str, Any]
    close_working_days: int

    def matches(self, *, pollution_type: str | None, subtype: str | None, night: bool) -> bool:
        for key, want in self.when.items():
            wanted = set(want) if isinstance(want, list) else {want}  # one code or a list of them
            if key == "pollution_type" and pollution_type not in wanted:
                return False
            if key == "subtype" and subtype not in wanted:
                return False
            if key == "night" and bool(want) != night:
                return False
        return True


RULE_KEYS = ("pollution_type", "subtype", "night")


class SlaConfigError(KnowledgeConfigError):
    """sla.yaml or calendar_overrides.yaml cannot be used; the message names the file (and line)."""


def _config_error(path: Path, exc: Exception) -> SlaConfigError:
    return config_error(path, exc, cls=SlaConfigError, prefix="办理时限配置有误 / SLA configuration error: ")


def _check_rule(path: Path, r: dict[str, Any]) -> None:
    """A misspelt condition used to be ignored, so the rule matched every complaint (type: air gave a noise
    complaint the air rule's 10 days)."""
    name = r.get("name") or "?"
    when = r.get("when") or {}
    if not isinstance(when, dict):
        raise ValueError(f"{path}: rule {name}: when must be a mapping")
    unknown = sorted(set(when) - set(RULE_KEYS))
    if unknown:
        raise ValueError(f"{path}: rule {name}: unknown condition {', '.join(unknown)} "
                         f"(allowed: {', '.join(RULE_KEYS)})")
    if "night" in when and not isinstance(when["night"], bool):
        raise ValueError(f"{path}: rule {name}: night must be true or false, not {when['night']!r}")


@dataclass
class SlaPolicy:
    version: str
    urgency: dict[str, dict[str, Any]]
    rules: list[Rule]
    urgent_keywords: list[str] = field(default_factory=list)
    urgent_subtypes: list[str] = field(default_factory=list)
    night_start: time = time(22, 0)
    night_end: time = time(6, 0)
    night_keywords: list[str] = field(default_factory=list)
    due_soon_working_days: int = 1
    max_extensions: int = 2

    def urgency_of(self, text: str, subtype: str | None = None) -> str:
        if subtype and subtype in self.urgent_subtypes:
            return "urgent"
        if any(k in text for k in self.urgent_keywords):
            return "urgent"
        return "normal"

    def is_night(self, occurred_at: datetime | None, text: str | None) -> bool:
        if occurred_at is not None:
            t = to_local(occurred_at).time()
            if self.night_start > self.night_end:  # window spans midnight
                if t >= self.night_start or t < self.night_end:
                    return True
            elif self.night_start <= t < self.night_end:
                return True
        return bool(text) and any(k in text for k in self.night_keywords)


def _hhmm(s: str) -> time:
    h, m = str(s).split(":")
    return time(int(h), int(m))


def load_policy(path: Path) -> SlaPolicy:
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    urgency = raw.get("urgency") or {}
    if "normal" not in urgency:
        raise ValueError(f"{path}: urgency.normal is required")
    for name, spec in urgency.items():
        if "close_working_days" not in spec:
            raise ValueError(f"{path}: urgency.{name}.close_working_days is required")
    for r in raw.get("rules") or []:
        _check_rule(path, r)
    rules = [Rule(r["name"], dict(r.get("when") or {}), int(r["close_working_days"]))
             for r in raw.get("rules") or []]
    night = raw.get("night") or {}
    return SlaPolicy(
        version=str(raw.get("version", "")),
        urgency=urgency,
        rules=rules,
        urgent_keywords=list(raw.get("urgent_keywords") or []),
        urgent_subtypes=list(raw.get("urgent_subtypes") or []),
        night_start=_hhmm(night.get("start", "22:00")),
        night_end=_hhmm(night.get("end", "06:00")),
        night_keywords=list(night.get("keywords") or []),
        due_soon_working_days=int(raw.get("due_soon_working_days", 1)),
        max_extensions=int(raw.get("max_extensions", 2)),
    )


@dataclass(frozen=True)
class Deadline:
    due: datetime  # aware UTC
    contact_due: datetime | None
    note: str | None  # set when a year's calendar was only estimated
    rule: str  # which SLA entry decided the closing time
    close_working_days: int


@dataclass
class Sla:
    """Policy + calendar: what the queue asks for deadlines."""

    policy: SlaPolicy
    calendar: WorkCalendar

    def compute(self, start: datetime, *, urgency: str = "normal", pollution_type: str | None = None,
                subtype: str | None = None, occurred_at: datetime | None = None,
                text: str | None = None) -> Deadline:
        base = self.policy.urgency.get(urgency) or self.policy.urgency["normal"]
        days = int(base["close_working_days"])
        rule_name = f"urgency:{urgency if urgency in self.policy.urgency else 'normal'}"
        night = self.policy.is_night(occurred_at, text) if pollution_type == "noise" else False
        for rule in self.policy.rules:
            if rule.matches(pollution_type=pollution_type, subtype=subtype, night=night):
                if urgency == "urgent":
                    if rule.close_working_days < days:
                        days, rule_name = rule.close_working_days, rule.name
                else:
                    days, rule_name = rule.close_working_days, rule.name
                break
        start_day = local_date(start)
        due_day, estimated = self.calendar.add_working_days(start_day, days)
        contact_due = None
        if "contact_hours" in base:
            contact_due = start.astimezone(UTC) + timedelta(hours=float(base["contact_hours"]))
        elif "contact_working_days" in base:
            cday, est2 = self.calendar.add_working_days(start_day, int(base["contact_working_days"]))
            estimated |= est2
            contact_due = end_of_local_day(cday)
        return Deadline(end_of_local_day(due_day), contact_due, fallback_note(estimated), rule_name, days)

    def note_for(self, due: datetime, start: datetime) -> str | None:
        """The note for a deadline set by hand (extension): any estimated year between start and due."""
        a, b = local_date(start), local_date(due)
        years = set()
        d = a
        while d <= b:
            if self.calendar.day(d)[1] == SOURCE_FALLBACK:
                years.add(d.year)
                d = date(d.year + 1, 1, 1)
                continue
            d += timedelta(days=1)
        notes = [fallback_note(years)] if years else []
        if not self.calendar.is_workday(b):  # allowed (the office decides), but the unit should know
            notes.insert(0, f"新期限 {b.isoformat()} 为休息日")
        return "；".join(notes) or None

    def add_working_days(self, start: datetime, n: int) -> tuple[datetime, str | None]:
        day, est = self.calendar.add_working_days(local_date(start), n)
        return end_of_local_day(day), fallback_note(est)

    def is_overdue(self, deadline: datetime | None, now: datetime) -> bool:
        return deadline is not None and now > deadline

    def is_due_soon(self, deadline: datetime | None, now: datetime) -> bool:
        if deadline is None or now > deadline:
            return False
        left = self.calendar.working_days_between(local_date(now), local_date(deadline))
        return left <= self.policy.due_soon_working_days


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@lru_cache(maxsize=8)
def _load_sla(sla_path: str, overrides_path: str, _m1: float, _m2: float) -> Sla:
    try:
        policy = load_policy(Path(sla_path))
    except Exception as exc:  # noqa: BLE001 - YAML, a missing key, a bad value: all are the office's file
        raise _config_error(Path(sla_path), exc) from exc
    try:
        overrides = load_calendar_overrides(Path(overrides_path))
    except Exception as exc:  # noqa: BLE001
        raise _config_error(Path(overrides_path), exc) from exc
    return Sla(policy, WorkCalendar(overrides))


# The last SLA that loaded, per pair of files: a typo saved into sla.yaml while the service runs must not stop
# intake (a complaint was refused with a 500 and lost); the error is logged once per bad version of the file.
_last_good: dict[tuple[str, str], Sla] = {}
_reported: set[tuple[str, str, float, float]] = set()


def get_sla(knowledge_dir: Path | None = None) -> Sla:
    """The SLA from ``knowledge_dir`` (sla.yaml + calendar_overrides.yaml), reloaded when the files change."""
    if knowledge_dir is None:  # the configured folder (TRIAGE_KNOWLEDGE_DIR): an office's own sla.yaml
        from triage.settings import get_settings

        knowledge_dir = get_settings().knowledge_dir
    kd = Path(knowledge_dir) if knowledge_dir else _DEFAULT_KNOWLEDGE
    sla_path = kd / "sla.yaml"
    if not sla_path.exists():  # a knowledge dir without an SLA (e.g. a test's) uses the project's
        sla_path = _DEFAULT_KNOWLEDGE / "sla.yaml"
    ov = kd / "calendar_overrides.yaml"
    if not ov.exists():
        ov = _DEFAULT_KNOWLEDGE / "calendar_overrides.yaml"
    key = (str(sla_path), str(ov))
    stamp = (*key, _mtime(sla_path), _mtime(ov))
    try:
        sla = _load_sla(*stamp)
    except SlaConfigError as exc:
        previous = _last_good.get(key)
        if previous is None:
            raise
        if stamp not in _reported:
            _reported.add(stamp)
            log.error("%s — still using the version loaded before", exc)
        return previous
    _last_good[key] = sla
    return sla


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_deadline(value: str | date | datetime) -> datetime:
    """A deadline given by a person: a date means the end of that day (Beijing time); naive = Beijing time."""
    if isinstance(value, datetime):
        return to_local(value).astimezone(UTC)
    if isinstance(value, date):
        return end_of_local_day(value)
    s = str(value).strip()
    if _DATE_RE.match(s):
        return end_of_local_day(date.fromisoformat(s))
    return to_local(datetime.fromisoformat(s)).astimezone(UTC)
