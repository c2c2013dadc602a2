"""``cdcsync evaluate``: the day's dynamic evaluation per destination (docs/evaluation.md)."""

from __future__ import annotations

import datetime as dt
import json

import click
import psycopg

from cdcsync.cli_context import AppContext, pass_app


@click.command("evaluate")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="评价日期（北京时间，默认今天）")
@click.option("--month", type=click.DateTime(["%Y-%m"]), help="评价整月（至今天为止的每一天）")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True,
              help="html：含近 30 天得分曲线（内嵌 SVG，无外部资源）")
@pass_app
def evaluate(app: AppContext, day: dt.datetime | None, month: dt.datetime | None, fmt: str) -> None:
    """动态评价：按日、按目的地计算正确性、及时性、稳定性、适应性得分，并记入历史。"""
    from cdcsync.beijing import beijing_today
    from cdcsync.ops.evaluate import evaluate_day, history, render_html, render_text, save

    if day and month:
        raise click.UsageError("--date 与 --month 只能指定其一")
    settings = app.settings
    today = beijing_today()
    days = [day.date() if day else today]
    if month:
        first = month.date().replace(day=1)
        nxt = (first + dt.timedelta(days=32)).replace(day=1)
        days = [first + dt.timedelta(days=i) for i in range((min(nxt, today + dt.timedelta(days=1)) - first).days)]
    with psycopg.connect(settings.database.conninfo(), autocommit=True) as conn:
        evals = []
        for d in days:
            got = evaluate_day(conn, settings, d)
            save(conn, got)
            evals.extend(got)
        hist = history(conn, days[-1]) if fmt == "html" else {}
    if fmt == "json":
        click.echo(json.dumps([e.as_dict() for e in evals], ensure_ascii=False, indent=2))
    elif fmt == "html":
        click.echo(render_html([e for e in evals if e.day == days[-1]], hist, days[-1]), nl=False)
    else:
        click.echo(render_text(evals), nl=False)
