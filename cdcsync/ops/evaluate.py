"""The daily dynamic evaluation (issue 18 section 3): 正确性, 及时性, 稳定性 and 适应性 per
Beijing day and destination from what the project records (delivery statistics, quarantine,
latency, daemon runs, stream health, the backup catalogue, the platform's announcements, the
package manager's records). Formulas in docs/evaluation.md. Scores are kept in
``cdcsync.evaluation_daily``.

A component without data that day is left out of its dimension and shown as "尚未测量".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import orjson
import psycopg

from cdcsync import __version__
from cdcsync.beijing import BEIJING, beijing_today, day_sql
from cdcsync.ops.backup_view import BackupState, backup_state
from cdcsync.settings.ops import EvaluationSettings

NOT_MEASURED = "尚未测量"


@dataclass
class Component:
    name: str
    label: str
    value: float | None  # 0..1; None: not measured that day
    weight: float
    detail: str


@dataclass
class Dimension:
    name: str
    label: str
    components: list[Component] = field(default_factory=list)
    penalty: float = 0.0

    @property
    def score(self) -> float | None:
        measured = [c for c in self.components if c.value is not None and c.weight > 0]
        total = sum(c.weight for c in measured)
        if not total:
            return None
        return round(max(0.0, 100 * sum(c.weight * (c.value or 0.0) for c in measured) / total - self.penalty), 1)


@dataclass
class DayEvaluation:
    day: dt.date
    destination: str
    environment: str
    dimensions: list[Dimension]

    @property
    def overall(self) -> float | None:
        got = [d.score for d in self.dimensions if d.score is not None]
        return round(sum(got) / len(got), 1) if got else None

    def scores(self) -> dict[str, float | None]:
        return {d.name: d.score for d in self.dimensions} | {"overall": self.overall}

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "destination": self.destination, "environment": self.environment,
                "scores": self.scores(),
                "dimensions": [{"name": d.name, "label": d.label, "score": d.score, "penalty": d.penalty,
                                "components": [asdict(c) for c in d.components]} for d in self.dimensions]}


def _share(num: float, den: float) -> float | None:
    return None if den <= 0 else num / den


def correctness(conn: psycopg.Connection[Any], day: dt.date, dest: str, cfg: EvaluationSettings) -> Dimension:
    (delivered,) = conn.execute("SELECT coalesce(sum(delivered), 0) FROM cdcsync.delivery_stats"
                                " WHERE destination = %s AND business_date = %s", (dest, day)).fetchone() or (0,)
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE rule_id LIKE 'PLT%%' OR rule_id = 'sink.rejected'),"
        " count(*) FILTER (WHERE NOT (rule_id LIKE 'PLT%%' OR rule_id = 'sink.rejected')),"
        " count(*) FILTER (WHERE rule_id = 'REQ001') FROM cdcsync.quarantine"
        " WHERE destination = %s AND " + day_sql("first_seen") + " = %s", (dest, day)).fetchone()
    platform, local, required = (int(x) for x in (row or (0, 0, 0)))
    d = int(delivered)
    passed = d + platform
    captured = passed + local
    cards = conn.execute("SELECT matched, with_differences, frontend_only, nndrs_only FROM recon.card_daily_summary"
                         " WHERE compare_date = %s", (day,)).fetchone()
    # Without an NNDRS export imported since the day began, every hospital card would count as
    # "front-end only": the comparison says nothing yet, so it is left out rather than scored 0.
    (imported,) = conn.execute("SELECT EXISTS (SELECT 1 FROM recon.nndrs_card WHERE imported_at >= %s)",
                               (dt.datetime.combine(day, dt.time(), BEIJING),)).fetchone() or (False,)
    card_value, card_detail = None, "尚未导入覆盖当日的大疫情网报告卡导出，" + NOT_MEASURED
    if cards is not None and imported:
        matched, differ, fe_only, nn_only = (int(x) for x in cards)
        card_value = _share(matched - differ, matched + fe_only + nn_only)
        card_detail = f"一致 {matched - differ}，不一致 {differ}，仅前置 {fe_only}，仅大疫情网 {nn_only}"
    return Dimension("correctness", "正确性", [
        Component("validation", "通过校验与代码映射", _share(passed, captured), cfg.w_validation,
                  f"通过 {passed} / 采集 {captured}（隔离 {local}）"),
        Component("platform", "平台接收", _share(d, passed), cfg.w_platform, f"接收 {d}，拒收 {platform}"),
        Component("completeness", "必填项完整", None if captured == 0 else 1 - required / captured,
                  cfg.w_completeness, f"必填项缺失 {required} / {captured}"),
        Component("cards", "报告卡与大疫情网一致", card_value, cfg.w_cards, card_detail),
    ])


def _within_for_class(hist: Sequence[int], cls: str) -> int:
    """Events of a business-time histogram within ``cls``'s limit. Exact: every class limit is a
    bucket bound and a delay goes to the first bucket whose bound is >= it (engine.accounting)."""
    from cdcsync.engine.accounting import LATENCY_BOUNDS, TIMELINESS_LIMITS

    return int(sum(hist[:LATENCY_BOUNDS.index(TIMELINESS_LIMITS[cls]) + 1]))


def timeliness(conn: psycopg.Connection[Any], day: dt.date, dest: str,
               now: dt.datetime | None = None, classes: Mapping[str, str] | None = None) -> Dimension:
    """``classes``: per-table timeliness classes pushed by the national platform (a ``timeliness``
    package); a table listed there is counted against its pushed class, recomputed from its
    histogram, instead of the spec's class it was recorded under."""
    classes = classes or {}
    events = within = 0
    for table, recorded, n, w, hist in conn.execute(
            "SELECT table_name, timeliness, events, within_limit, business_hist FROM cdcsync.delivery_latency"
            " WHERE destination = %s AND business_date = %s", (dest, day)).fetchall():
        cls = classes.get(table, recorded)
        events += int(n)
        within += int(w) if cls == recorded else _within_for_class(hist, cls)
    start, end = _day_window(day, now or dt.datetime.now(dt.UTC))
    # Early-warning cases due in the window (报告时限): handled when closed (reported, excluded,
    # corrected) by their due time; one still open after it is late.
    due, handled = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE closed_at IS NOT NULL AND closed_at <= due_at)"
        " FROM cdcsync.surveil_case WHERE due_at >= %s AND due_at < %s", (start, end)).fetchone() or (0, 0)
    return Dimension("timeliness", "及时性", [
        Component("events", "时限内送达", _share(within, events), 0.8, f"时限内 {within} / {events}"),
        Component("cases", "待处理病例按时处理", _share(int(handled), int(due)), 0.2,
                  f"按时处理 {handled} / 到期 {due}" if due else "当日无到期的预警病例；" + NOT_MEASURED),
    ])


def _day_window(day: dt.date, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), BEIJING)
    return start, min(start + dt.timedelta(days=1), now)


def daemon_uptime(runs: Sequence[tuple[dt.datetime, dt.datetime]], first_start: dt.datetime | None,
                  start: dt.datetime, end: dt.datetime) -> tuple[float | None, float, int]:
    """(uptime share, longest outage in seconds, restarts) of the window; time before the first run
    ever is not counted (the software was not installed)."""
    if first_start is not None:
        start = max(start, first_start)
    if first_start is None or end <= start:
        return None, 0.0, 0
    spans = sorted((max(a, start), min(b, end)) for a, b in runs if b > start and a < end)
    up, cursor, longest = 0.0, start, 0.0
    for a, b in spans:
        if a > cursor:
            longest = max(longest, (a - cursor).total_seconds())
        if b > cursor:
            up += (b - max(a, cursor)).total_seconds()
            cursor = b
    longest = max(longest, (end - cursor).total_seconds())
    restarts = sum(1 for a, _ in runs if start < a < end)
    return up / (end - start).total_seconds(), longest, restarts


def backup_component(backup: BackupState | None, end: dt.datetime, weight: float) -> Component:
    if backup is None:
        return Component("backup", "备份并验证", None, weight, NOT_MEASURED)
    value, detail = backup.covers(end)
    return Component("backup", "备份并验证", value, weight, detail)


def stability(conn: psycopg.Connection[Any], day: dt.date, dest: str, cfg: EvaluationSettings,
              now: dt.datetime, slack_s: float, backup: BackupState | None = None) -> Dimension:
    start, end = _day_window(day, now)
    rows = conn.execute("SELECT started_at, coalesce(stopped_at, last_seen_at + make_interval(secs => %s))"
                        " FROM cdcsync.daemon_run WHERE started_at < %s ORDER BY started_at",
                        (slack_s, end)).fetchall()
    (first,) = conn.execute("SELECT min(started_at) FROM cdcsync.daemon_run").fetchone() or (None,)
    share, longest, restarts = daemon_uptime([(a, b) for a, b in rows], first, start, end)
    window = (end - max(start, first or start)).total_seconds()
    st = conn.execute("SELECT healthy_s, backlog_max_bytes, lag_max_s FROM cdcsync.stream_daily"
                      " WHERE destination = %s AND day = %s", (dest, day)).fetchone()
    stream = None if st is None or window <= 0 else min(1.0, float(st[0]) / window)
    dim = Dimension("stability", "稳定性", [
        Component("daemon_uptime", "守护进程在线", share, cfg.w_daemon_uptime,
                  f"最长中断 {longest / 60:.1f} 分钟，重启 {restarts} 次"),
        Component("stream_uptime", "数据流正常", stream, cfg.w_stream_uptime,
                  "无记录" if st is None else f"积压高水位 {int(st[1])} 字节，最大滞后 {float(st[2]):.0f} 秒"),
        # Before the software first ran there was nothing to back up: not scored.
        backup_component(backup if first is not None and first < end else None, end, cfg.w_backup),
    ])
    dim.penalty = min(cfg.restart_penalty_max, cfg.restart_penalty * restarts)
    return dim


def _announced(conn: psycopg.Connection[Any], dest: str) -> dict[str, Any]:
    row = conn.execute("SELECT announced FROM cdcsync.platform_notice WHERE destination = %s", (dest,)).fetchone()
    return row[0] if row and isinstance(row[0], dict) else {}


def _version_date(version: str) -> dt.date | None:
    """The date of a code-table version ("<hash>@YYYY-MM-DD", or a bare date)."""
    try:
        return dt.date.fromisoformat(version.rpartition("@")[2][:10])
    except ValueError:
        return None


def value_domains_component(local: str | None, announced: str | None, weight: float) -> Component:
    """Code tables against the platform's announced ``mapping_version``: 1 when the same or newer."""
    label = "值域（代码表）为平台公布的最新版"
    if not local or not announced:
        return Component("value_domains", label, None, weight,
                         f"本机 {local or '（未知）'}，平台公布 {announced or '（未公布）'}；" + NOT_MEASURED)
    mine, theirs = _version_date(local), _version_date(announced)
    if local == announced or (mine is not None and theirs is not None and mine >= theirs):
        return Component("value_domains", label, 1.0, weight, f"本机 {local}，平台公布 {announced}")
    behind = f"，落后 {(theirs - mine).days} 天" if mine and theirs else ""
    return Component("value_domains", label, 0.0, weight, f"本机 {local}，平台公布 {announced}{behind}")


def rule_pack_component(local: str | None, announced: str | None, weight: float) -> Component:
    """The early-warning rule pack in use against the platform's announced ``rule_pack_version``."""
    label = "预警规则包为平台公布的最新版"
    if not local or not announced:
        return Component("rule_pack", label, None, weight,
                         f"本机 {local or '（未知）'}，平台公布 {announced or '（未公布）'}；" + NOT_MEASURED)
    return Component("rule_pack", label, 1.0 if local == announced else 0.0, weight,
                     f"本机 {local}，平台公布 {announced}")


def local_rule_pack_version(conn: psycopg.Connection[Any], settings: Any) -> str | None:
    """The configured rule pack's version; when it cannot be read, the pack the newest case ran."""
    from cdcsync.surveil.pack import PackError, load_pack

    try:
        return load_pack(settings.surveil.pack).version
    except (PackError, AttributeError):
        row = conn.execute("SELECT pack_version FROM cdcsync.surveil_case ORDER BY created_at DESC LIMIT 1").fetchone()
        return str(row[0]) if row else None


# Package groups whose security updates matter: (label, dpkg .list file patterns).
OS_PACKAGES = (("OpenSSL", ("openssl.list", "libssl[0-9]*.list")),
               ("PostgreSQL", ("postgresql-[0-9]*.list", "libpq[0-9]*.list")))


def package_updates(info_dir: Path) -> dict[str, dt.datetime]:
    """Per package group, when dpkg last installed or upgraded one of its packages (the mtime of
    its ``.list`` file, rewritten on every unpack). Groups not installed are absent."""
    lists = [(p.name.removesuffix(".list").split(":")[0] + ".list", p) for p in info_dir.glob("*.list")]
    out: dict[str, dt.datetime] = {}
    for label, patterns in OS_PACKAGES:
        times = [p.stat().st_mtime for name, p in lists if any(fnmatch(name, pat) for pat in patterns)]
        if times:
            out[label] = dt.datetime.fromtimestamp(max(times), dt.UTC)
    return out


def os_packages_component(info_dir: Path, end: dt.datetime, cfg: EvaluationSettings) -> Component:
    label = "操作系统安全更新（OpenSSL、PostgreSQL）"
    updated = package_updates(info_dir) if info_dir.is_dir() else {}
    if not updated:
        return Component("os_packages", label, None, cfg.w_os_packages,
                         f"包管理器记录不可用（{info_dir}）；" + NOT_MEASURED)
    fresh, stale = cfg.package_fresh_days, max(cfg.package_stale_days, cfg.package_fresh_days + 1)
    parts, values = [], []
    for name, at in updated.items():
        if at > end:  # upgraded since: what was installed on that day is no longer on record
            continue
        age = (end - at).total_seconds() / 86400
        values.append(1.0 if age <= fresh else max(0.0, (stale - age) / (stale - fresh)))
        parts.append(f"{name} 更新于 {at.astimezone(BEIJING):%Y-%m-%d}（{int(age)} 天前）")
    if not values:
        return Component("os_packages", label, None, cfg.w_os_packages,
                         "该日之后已更新，当日状态无记录；" + NOT_MEASURED)
    return Component("os_packages", label, min(values), cfg.w_os_packages, "，".join(parts))


def adaptability(conn: psycopg.Connection[Any], dest: str, cfg: EvaluationSettings | None = None,
                 mapping_version: str | None = None, end: dt.datetime | None = None,
                 rule_pack: str | None = None) -> Dimension:
    cfg = cfg or EvaluationSettings()
    announced = _announced(conn, dest)
    latest = announced.get("software")
    value = None if not latest else (1.0 if latest == __version__ else 0.0)
    return Dimension("adaptability", "适应性", [
        Component("software", "软件版本为平台公布的最新版", value, cfg.w_software,
                  f"本机 {__version__}，平台公布 {latest or '（未公布）'}"),
        value_domains_component(mapping_version, announced.get("mapping_version"), cfg.w_value_domains),
        rule_pack_component(rule_pack, announced.get("rule_pack_version"), cfg.w_rule_pack),
        os_packages_component(cfg.dpkg_info_dir, end or dt.datetime.now(dt.UTC), cfg),
    ])


def local_mapping_version(settings: Any) -> str | None:
    from cdcsync.mapping.domains import load_code_tables

    try:
        return str(load_code_tables(settings.mappings_dir, settings.hospital, strict=False).version)
    except Exception:  # noqa: BLE001 - unreadable code tables: the component is not measured
        return None


def evaluate_day(conn: psycopg.Connection[Any], settings: Any, day: dt.date,
                 now: dt.datetime | None = None) -> list[DayEvaluation]:
    now = now or dt.datetime.now(dt.UTC)
    cfg: EvaluationSettings = settings.ops.evaluation
    slack = settings.ops.heartbeat.interval_s
    backups = backup_state(settings)
    mapping_version = local_mapping_version(settings)
    rule_pack = local_rule_pack_version(conn, settings)
    _, end = _day_window(day, now)
    from cdcsync.config import pushed_table_classes  # the control plane's overlay, read per evaluation

    classes = pushed_table_classes(settings.state_dir)
    out = []
    for d in settings.destinations:
        env = getattr(d, "environment", "production")
        out.append(DayEvaluation(day, d.name, env, [
            correctness(conn, day, d.name, cfg), timeliness(conn, day, d.name, now, classes),
            stability(conn, day, d.name, cfg, now, slack, backups),
            adaptability(conn, d.name, cfg, mapping_version, end, rule_pack)]))
    return out


def save(conn: psycopg.Connection[Any], evals: Sequence[DayEvaluation]) -> None:
    for e in evals:
        s = e.scores()
        conn.execute(
            "INSERT INTO cdcsync.evaluation_daily (day, destination, environment, correctness, timeliness, stability,"
            " adaptability, overall, details) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s::jsonb)"
            " ON CONFLICT (day, destination) DO UPDATE SET environment = EXCLUDED.environment,"
            " correctness = EXCLUDED.correctness, timeliness = EXCLUDED.timeliness, stability = EXCLUDED.stability,"
            " adaptability = EXCLUDED.adaptability, overall = EXCLUDED.overall, details = EXCLUDED.details,"
            " computed_at = now()",
            (e.day, e.destination, e.environment, s["correctness"], s["timeliness"], s["stability"],
             s["adaptability"], s["overall"], orjson.dumps(e.as_dict()).decode()))


def evaluate_today(conn: psycopg.Connection[Any], settings: Any) -> dict[str, Any]:
    """The ops loop's hook: today's scores, saved to the history; the heartbeat's ``evaluation``."""
    day = beijing_today()
    evals = evaluate_day(conn, settings, day)
    save(conn, evals)
    return {"day": day.isoformat(), "destinations": {e.destination: e.scores() for e in evals}}


def render_text(evals: Sequence[DayEvaluation]) -> str:
    lines = []
    for e in evals:
        trial = "（试运行·大疫情测试网）" if e.environment == "test" else ""
        lines.append(f"{e.day} 目的地 {e.destination}{trial}：综合 {_fmt(e.overall)}")
        for d in e.dimensions:
            lines.append(f"  {d.label} {_fmt(d.score)}" + (f"（重启扣 {d.penalty:g} 分）" if d.penalty else ""))
            for c in d.components:
                v = NOT_MEASURED if c.value is None else f"{100 * c.value:.1f}%"
                lines.append(f"    - {c.label}：{v}；{c.detail}")
    return "\n".join(lines) + "\n"


def _fmt(v: float | None) -> str:
    return NOT_MEASURED if v is None else f"{v:.1f}"


# --------------------------------------------------------------------------- history and HTML

DIMENSIONS = (("correctness", "正确性", "#1f77b4"), ("timeliness", "及时性", "#2ca02c"),
              ("stability", "稳定性", "#d62728"), ("adaptability", "适应性", "#9467bd"))


History = dict[str, list[tuple[dt.date, dict[str, Any]]]]


def history(conn: psycopg.Connection[Any], end: dt.date, days: int = 30) -> History:
    """Per destination, the stored scores of the ``days`` days ending at ``end``."""
    rows = conn.execute("SELECT destination, day, correctness, timeliness, stability, adaptability"
                        " FROM cdcsync.evaluation_daily WHERE day > %s AND day <= %s ORDER BY destination, day",
                        (end - dt.timedelta(days=days), end)).fetchall()
    out: History = {}
    for dest, day, *vals in rows:
        out.setdefault(dest, []).append(
            (day, {k: (None if v is None else float(v)) for (k, _, _), v in zip(DIMENSIONS, vals, strict=True)}))
    return out


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def svg_chart(points: Sequence[tuple[dt.date, dict[str, Any]]], end: dt.date, days: int = 30) -> str:
    """Inline SVG: the four scores over the last ``days`` days (no script, no external resource)."""
    w, h, left, top, bottom = 640, 220, 40, 10, 30
    pw, ph = w - left - 10, h - top - bottom
    start = end - dt.timedelta(days=days - 1)

    def x(day: dt.date) -> float:
        return left + pw * (day - start).days / max(days - 1, 1)

    def y(v: float) -> float:
        return top + ph * (1 - v / 100)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img"'
             f' aria-label="近{days}天得分">']
    for v in (0, 50, 80, 100):
        parts.append(f'<line x1="{left}" x2="{w - 10}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{v}</text>')
    parts.append(f'<text x="{left}" y="{h - 8}" font-size="10">{start}</text>'
                 f'<text x="{w - 10}" y="{h - 8}" font-size="10" text-anchor="end">{end}</text>')
    for i, (key, label, color) in enumerate(DIMENSIONS):
        pts = [(x(d), y(s[key])) for d, s in points if s.get(key) is not None and d >= start]
        if pts:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" data-dimension="{key}" points="'
                         + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
            parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{color}"/>' for a, b in pts]
        parts.append(f'<text x="{left + 10 + 80 * i}" y="{h - 8}" font-size="11" fill="{color}" dx="90">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(evals: Sequence[DayEvaluation], hist: History, end: dt.date) -> str:
    body = []
    for e in evals:
        trial = "（试运行·大疫情测试网）" if e.environment == "test" else ""
        body.append(f"<section data-destination=\"{_esc(e.destination)}\"><h2>{e.day} 目的地 "
                    f"{_esc(e.destination)}{trial}：综合 {_fmt(e.overall)}</h2><table><tr><th>维度</th><th>得分</th>"
                    "<th>指标</th><th>数值</th><th>依据</th></tr>")
        for d in e.dimensions:
            for i, c in enumerate(d.components):
                head = (f'<td rowspan="{len(d.components)}">{d.label}</td><td rowspan="{len(d.components)}">'
                        f"{_fmt(d.score)}{f'（重启扣 {d.penalty:g} 分）' if d.penalty else ''}</td>") if i == 0 else ""
                v = NOT_MEASURED if c.value is None else f"{100 * c.value:.1f}%"
                body.append(f"<tr>{head}<td>{_esc(c.label)}</td><td>{v}</td><td>{_esc(c.detail)}</td></tr>")
        body.append("</table><h3>近 30 天</h3>" + svg_chart(hist.get(e.destination, []), end) + "</section>")
    return ("<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>前置软件动态评价</title>"
            "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body><h1>前置软件动态评价</h1>"
            + "".join(body) + "<p>计算方法见 docs/evaluation.md。</p></body></html>\n")
