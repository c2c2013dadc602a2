"""Beijing time: the hospital's days (business date, report day, key expiry, backup weeks).

China has one time zone and no daylight saving time, so the fixed +08:00 offset is exact and
needs no tz database on the 前置机. In SQL the same day is ``TODAY_SQL`` / :func:`day_sql` (the
server's own ``Asia/Shanghai`` zone, which PostgreSQL ships).
"""

from __future__ import annotations

import datetime as dt

BEIJING = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


def day_sql(timestamptz_expr: str) -> str:
    """The Beijing date of a ``timestamptz`` SQL expression (a column name or ``now()``)."""
    return f"({timestamptz_expr} AT TIME ZONE 'Asia/Shanghai')::date"


# Today in Beijing, as a SQL expression (for INSERTs and WHEREs that must agree with beijing_today()).
TODAY_SQL = day_sql("now()")


def beijing_today() -> dt.date:
    return dt.datetime.now(BEIJING).date()

