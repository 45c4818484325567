"""Budget periods: where a UTC calendar day, week (from Monday) or month begins and ends, in
seconds since the epoch, by integer arithmetic on days (no clock, no time zone database).

    period_bounds("month", 1_767_225_600)  # (1767225600.0, 1769904000.0): January 2026
"""
from __future__ import annotations

import math

PERIODS = ("day", "week", "month", "total")
DAY = 86_400


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (the calendar's 400-year cycle of
    146,097 days, the year counted from March so that February is last)."""
    year -= month <= 2
    era, year_of_era = divmod(year, 400)
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def civil_from_days(days: int) -> tuple[int, int, int]:
    """The (year, month, day) of a day counted from 1970-01-01."""
    era, day_of_era = divmod(days + 719_468, 146_097)
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524
                   - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    mp = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month, day


def period_bounds(period: str, t: float) -> tuple[float, float]:
    """The start and end (seconds since the epoch, UTC) of the `period` holding time `t`."""
    if period == "total":
        return -math.inf, math.inf
    day = math.floor(t / DAY)
    if period == "day":
        return float(day * DAY), float((day + 1) * DAY)
    if period == "week":  # 1970-01-01 was a Thursday: its week began three days before
        monday = day - (day + 3) % 7
        return float(monday * DAY), float((monday + 7) * DAY)
    if period == "month":
        year, month, _ = civil_from_days(day)
        start = days_from_civil(year, month, 1)
        end = days_from_civil(year + month // 12, month % 12 + 1, 1)
        return float(start * DAY), float(end * DAY)
    raise ValueError(f"unknown budget period {period!r}; known: {', '.join(PERIODS)}")
