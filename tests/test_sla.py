"""Working-day deadlines: Chinese holidays and make-up days, the 2027 fallback, overrides, SLA rules."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import chinese_calendar
import holidays
import pytest

from conftest import BJ, bj
from triage.queue.sla import (
    Sla,
    WorkCalendar,
    get_sla,
    load_calendar_overrides,
    load_policy,
    parse_deadline,
)

KNOWLEDGE = __import__("pathlib").Path(__file__).resolve().parents[1] / "knowledge"


def local(dt: datetime) -> datetime:
    return dt.astimezone(BJ)


def test_library_facts_national_day_2026():
    # Checked against the library (the official notice): 10-01..10-07 off, 10-08 worked again;
    # Sunday 09-20 and Saturday 10-10 are make-up working days.
    off = [date(2026, 10, d) for d in range(1, 8)]
    assert not any(chinese_calendar.is_workday(d) for d in off)
    assert chinese_calendar.is_workday(date(2026, 10, 8))
    assert chinese_calendar.is_workday(date(2026, 9, 20))
    assert chinese_calendar.is_workday(date(2026, 10, 10))
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(2027, 1, 4))


@pytest.mark.parametrize("year", [2025, 2026])
def test_chinesecalendar_and_holidays_agree(year):
    cn = holidays.China(years=year)
    d = date(year, 1, 1)
    cc_off_weekdays, differ = set(), []
    while d.year == year:
        if chinese_calendar.is_workday(d) != cn.is_working_day(d):
            differ.append(d)
        if d.weekday() < 5 and not chinese_calendar.is_workday(d):
            cc_off_weekdays.add(d)
        d += timedelta(days=1)
    assert differ == []
    # Every weekday off in chinesecalendar is a named holiday in holidays.China, and vice versa.
    assert cc_off_weekdays == {h for h in cn if h.weekday() < 5}


def test_deadline_across_national_day():
    sla = get_sla(KNOWLEDGE)
    d = sla.compute(bj(2026, 9, 28, 10), urgency="normal", pollution_type="air", subtype="air.dust")
    # 09-29, 09-30, [10-01..10-07 off], 10-08, 10-09, 10-10 (Saturday, make-up day) = 5 working days
    assert local(d.due).date() == date(2026, 10, 10)
    assert (local(d.due).hour, local(d.due).minute) == (23, 59)
    assert local(d.contact_due).date() == date(2026, 9, 29)
    assert d.note is None
    assert d.close_working_days == 5


def test_deadline_counts_make_up_sunday():
    sla = get_sla(KNOWLEDGE)
    # Friday 09-18 + 1 working day: Sunday 09-20 is worked, so the deadline is not Monday.
    d = sla.compute(bj(2026, 9, 18, 15), urgency="urgent", pollution_type="air", subtype="air.dust")
    assert local(d.due).date() == date(2026, 9, 20)
    assert d.contact_due == bj(2026, 9, 18, 17)  # urgent: 2 clock hours


def test_deadline_into_2027_carries_note():
    sla = get_sla(KNOWLEDGE)
    d = sla.compute(bj(2026, 12, 28, 9), urgency="normal", pollution_type="noise", subtype="noise.construction")
    # 12-29, 12-30, 12-31, [2027-01-01 holiday by rule, weekend], 01-04, 01-05
    assert local(d.due).date() == date(2027, 1, 5)
    assert d.note and "2027" in d.note and "calendar not yet published" in d.note
    inside = sla.compute(bj(2026, 12, 1, 9), urgency="normal", pollution_type="noise")
    assert inside.note is None


def test_override_publishes_a_year(tmp_path):
    (tmp_path / "calendar_overrides.yaml").write_text(
        "years:\n  2027:\n    source: test notice\n"
        "    holidays: ['2027-01-01', '2027-01-04..2027-01-05']\n    workdays: ['2027-01-09']\n",
        encoding="utf-8")
    sla = get_sla(tmp_path)  # no sla.yaml there: the project's policy, these overrides
    d = sla.compute(bj(2026, 12, 28, 9), urgency="normal", pollution_type="noise", subtype="noise.construction")
    # 12-29, 12-30, 12-31, [01-01, weekend, 01-04, 01-05 off], 01-06, 01-07
    assert local(d.due).date() == date(2027, 1, 7)
    assert d.note is None
    cal = sla.calendar
    assert cal.is_workday(date(2027, 1, 9)) and not cal.is_workday(date(2027, 1, 4))


def test_override_rejects_dates_of_another_year(tmp_path):
    p = tmp_path / "calendar_overrides.yaml"
    p.write_text("years:\n  2027:\n    holidays: ['2026-01-01']\n", encoding="utf-8")
    with pytest.raises(ValueError):
        load_calendar_overrides(p)


def test_rules_night_noise_urgent_and_drinking_water():
    sla = get_sla(KNOWLEDGE)
    start = bj(2026, 11, 2, 9)  # Monday
    night = sla.compute(start, pollution_type="noise", subtype="noise.construction", occurred_at=bj(2026, 11, 1, 23))
    assert night.rule == "night_noise" and local(night.due).date() == date(2026, 11, 4)
    by_word = sla.compute(start, pollution_type="noise", text="工地凌晨还在施工")
    assert by_word.rule == "night_noise"
    day = sla.compute(start, pollution_type="noise", occurred_at=bj(2026, 11, 1, 15))
    assert day.rule == "urgency:normal" and local(day.due).date() == date(2026, 11, 9)
    urgent = sla.compute(start, urgency="urgent", pollution_type="noise", occurred_at=bj(2026, 11, 1, 23))
    assert urgent.close_working_days == 1  # the shorter of urgent (1) and night noise (2)
    assert sla.compute(start, pollution_type="water", subtype="water.drinking_source").close_working_days == 2
    assert sla.policy.urgency_of("河里大量死鱼，疑似偷排") == "urgent"
    assert sla.policy.urgency_of("楼下烧烤油烟大") == "normal"


def test_due_soon_and_overdue():
    sla = get_sla(KNOWLEDGE)
    due = parse_deadline("2026-11-06")  # Friday
    assert local(due).date() == date(2026, 11, 6) and local(due).hour == 23
    assert not sla.is_due_soon(due, bj(2026, 11, 2, 9))
    assert sla.is_due_soon(due, bj(2026, 11, 5, 9))
    assert sla.is_due_soon(due, bj(2026, 11, 6, 20))
    assert sla.is_overdue(due, bj(2026, 11, 7, 0, 1)) and not sla.is_due_soon(due, bj(2026, 11, 7, 0, 1))


def test_policy_file_is_valid():
    policy = load_policy(KNOWLEDGE / "sla.yaml")
    assert policy.urgency["normal"]["close_working_days"] == 5
    assert {r.name for r in policy.rules} >= {"night_noise"}
    assert isinstance(Sla(policy, WorkCalendar()).calendar, WorkCalendar)
