"""The date of the facts: what drafting and the quality check compare with a law's window."""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def as_date(value: date | datetime | str | None) -> date | None:
    """A datetime (aware → Asia/Shanghai), a date, or an ISO / 'YYYY/M/D h:m:s' string → date."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(SHANGHAI)
        return value.date()
    if isinstance(value, date):
        return value
    m = re.match(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})", str(value).strip())
    if not m:
        return None
    return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def today() -> date:
    return datetime.now(SHANGHAI).date()


def window_contains(effective: date | str | None, repealed: date | str | None, on: date) -> bool:
    """effective <= on < repealed (either end open when unknown): kb's ``in_force`` on plain dates."""
    from triage.kb.regulations import in_force

    return in_force({"effective": as_date(effective), "repealed": as_date(repealed)}, on)
