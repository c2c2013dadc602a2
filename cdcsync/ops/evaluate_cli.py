"""``cdcsync evaluate``: the day's dynamic evaluation per destination (docs/evaluation.md)."""

from __future__ import annotations

import datetime as dt
import json

import click
import psycopg

from cdcsync.cli import AppContext, pass_app


@click.command("evaluate")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="评价日期（北京时间，默认今天）")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_app
def evaluate(app: AppContext, day: dt.datetime | None, fmt: str) -> None:
    """动态评价：按日、按目的地计算正确性、及时性、稳定性、适应性得分，并记入历史。"""
    from cdcsync.ops.evaluate import beijing_today, evaluate_day, render_text, save

    settings = app.settings
    when = day.date() if day else beijing_today()
    with psycopg.connect(settings.database.conninfo(), autocommit=True) as conn:
        evals = evaluate_day(conn, settings, when)
        save(conn, evals)
    if fmt == "json":
        click.echo(json.dumps([e.as_dict() for e in evals], ensure_ascii=False, indent=2))
    else:
        click.echo(render_text(evals), nl=False)
