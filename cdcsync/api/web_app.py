"""PC web service (port 8884): ``/status.html``, the page every doctor's workstation can open, and
the workbench (cdcsync/workbench: SSO, popup, report cards, review; docs/workbench.md).

Plain server-rendered HTML (``templates/status.html``, ``string.Template``) with a little inline
CSS: no script, no CDN, auto-refresh by ``<meta http-equiv="refresh">``, so it works in the old
browsers of hospital intranets. It shows the same status dict as the monitoring API and never any
patient data — only counts, times, versions.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import re
from collections.abc import Mapping
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from cdcsync import __version__
from cdcsync.api.errors import install_error_handlers
from cdcsync.beijing import BEIJING
from cdcsync.ops.backup.health import backup_text
from cdcsync.ops.status import StatusProvider, status_provider_for
from cdcsync.settings.api import ApiSettings
from cdcsync.spec import TIMELINESS, Spec, load_spec

if TYPE_CHECKING:
    from cdcsync.config import Settings

TEMPLATE = Path(__file__).with_name("templates") / "status.html"
PLATFORM_NAMES = {"national": "国家平台", "provincial": "省级平台"}
LAG_WARN_SECONDS = 600.0  # a platform more than 10 minutes behind is shown as "滞后"
BACKUP_PLACEHOLDER = "尚未配置备份"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def format_lag(seconds: float | None) -> str:
    """Lag as the page shows it: whole seconds below a minute, then minutes/hours."""
    if seconds is None:
        return "—"
    s = max(0, round(float(seconds)))
    if s < 60:
        return f"{s} 秒"
    if s < 3600:
        return f"{s // 60} 分 {s % 60} 秒"
    return f"{s // 3600} 小时 {s % 3600 // 60} 分"


def _time(value: Any) -> str:
    if not value:
        return "—"
    try:
        t = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return _e(value)
    if t.tzinfo is not None:
        t = t.astimezone(BEIJING)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _dest_state(d: Mapping[str, Any]) -> tuple[str, str]:
    """(css class, Chinese state) of one destination."""
    if not d.get("enabled", True):
        return "muted", "已停用"
    if "slot_exists" not in d:
        return "bad", "状态未知（数据库无法连接）"
    if d.get("stopped_reason"):
        return "bad", "已停止：复制槽失效，需按提示恢复"
    if not d["slot_exists"]:
        return "bad", "未开始同步（未创建复制槽）"
    if not d.get("active"):
        return "bad", "未运行"
    lag = d.get("lag_seconds")
    if lag is not None and float(lag) > LAG_WARN_SECONDS:
        return "warn", "运行中，滞后"
    return "ok", "运行中，数据及时"


def _platform_refused_text(dests: list[Mapping[str, Any]]) -> str:
    """The poison-batch alert: per platform, how many records it refuses for good (held in the
    quarantine under a PLT rule), with the table and field — never the record or the message."""
    parts = []
    for d in dests:
        refused = d.get("platform_refused") or {}
        n, last = int(refused.get("held") or 0), refused.get("last") or {}
        if n:
            name = d.get("destination", "")
            where = f"{last.get('table')}" + (f".{last['field']}" if last.get("field") else "")
            parts.append(f'<div class="attention" data-destination="{_e(name)}">{_e(PLATFORM_NAMES.get(name, name))}'
                         f"拒收 {n} 条记录（{_e(last.get('rule_id'))}，{_e(where)}），已隔离；其余数据照常上报。</div>")
    if not parts:
        return ""
    return "".join(parts) + ('<div class="sub">平台对这些记录的答复不会改变：请信息科查看 cdcsync quarantine list '
                             "--rule PLT422（或 PLT400、PLT413）中的原因，与平台或厂商核实后处理。</div>")


def _evaluation_text(rows: list[Mapping[str, Any]]) -> str:
    """Today's scores, one destination after another (docs/evaluation.md)."""
    if not rows:
        return "今日尚未评价"

    def f(v: Any) -> str:
        return "—" if v is None else f"{float(v):.1f}"

    return "；".join(f"{r['destination']}{'（试运行）' if r.get('environment') == 'test' else ''}："
                    f"正确性 {f(r.get('correctness'))}、及时性 {f(r.get('timeliness'))}、"
                    f"稳定性 {f(r.get('stability'))}、适应性 {f(r.get('adaptability'))}" for r in rows)


def _software_values(sw: Mapping[str, Any] | None) -> dict[str, str]:
    """可用新版本 / 更新说明 from the newest release check (cdcsync.control.upgrade.latest_check)."""
    if not sw or not sw.get("checked_at"):
        return {"available_version": "尚未检查", "release_notes": "—"}
    if not sw.get("available"):
        return {"available_version": f"无（已是最新，检查于 {_time(sw['checked_at'])}）", "release_notes": "—"}
    notes = "<br>".join(_e(line) for line in str(sw.get("notes") or "").splitlines()) or "—"
    return {"available_version": _e(sw["available"]) + "（由管理员执行 cdcsync upgrade apply 安装）",
            "release_notes": notes}


def render_status(st: Mapping[str, Any], spec: Spec) -> str:
    dests = list(st.get("destinations") or [])
    enabled = [d for d in dests if d.get("enabled", True)]
    running = [d for d in enabled if d.get("active")]
    if not st.get("database", {}).get("reachable", True):
        overall = ("bad", "未运行：镜像数据库无法连接", "请检查前置机上的 PostgreSQL 数据库服务。")
    elif not enabled:
        overall = ("bad", "未运行：未配置上报平台", "请在配置文件 destinations 中配置国家/省级平台。")
    elif len(running) == len(enabled):
        slow = [d for d in running if _dest_state(d)[0] == "warn"]
        overall = ("warn", "运行中（部分平台滞后）", "数据正在上报，但有平台延迟较大。") if slow else (
            "ok", "运行中", "数据正在实时上报。")
    elif running:
        overall = ("warn", "部分运行", "有上报平台未在同步，请联系前置机管理员。")
    else:
        overall = ("bad", "未运行", "同步程序未在运行，请联系前置机管理员。")
    if any(d.get("stopped_reason") for d in enabled):
        overall = (overall[0], overall[1], "有上报平台的复制槽已失效，该平台已停止上报：请按下方"
                   "“数据库日志（WAL）保留”中的提示恢复。")

    refused_text = _platform_refused_text(enabled)
    if refused_text and overall[0] == "ok":
        overall = ("warn", "运行中（有记录被平台拒收）", "其余数据正在上报；被拒收的记录已隔离，需要处理。")

    rows = []
    for d in dests:
        cls, text = _dest_state(d)
        name = d.get("destination", "")
        lag = d.get("lag_seconds")
        lag_attr = "" if lag is None else f' data-seconds="{float(lag):.3f}"'
        lag_bytes = d.get("lag_bytes")
        held = int(d.get("quarantined_held") or 0)
        rows.append(
            f'<tr data-destination="{_e(name)}"><td>{_e(PLATFORM_NAMES.get(name, name))}（{_e(name)}）'
            + ('<span class="tag warn trial">试运行·大疫情测试网</span>' if d.get("environment") == "test" else "")
            + '</td>'
            f'<td><span class="tag {cls}">{_e(text)}</span></td>'
            f'<td class="lag"{lag_attr}>{_e(format_lag(lag))}'
            + (f'<span class="muted">（{int(lag_bytes)} 字节）</span>' if lag_bytes is not None else "")
            + f"</td><td>{_time(d.get('last_ack_at'))}</td>"
            f'<td class="num{" attention" if held else ""}">{held}</td></tr>'
        )
    if not rows:
        rows.append('<tr><td colspan="5" class="muted">未配置上报平台</td></tr>')

    by_class: dict[str, list[str]] = {}
    for t in spec.tables:
        by_class.setdefault(t.timeliness, []).append(t.name)
    comment = {t.name: t.comment for t in spec.tables}
    head = "".join(f"<th>{_e(PLATFORM_NAMES.get(d['destination'], d['destination']))}已上报</th>"
                   f"<th>隔离</th>" for d in enabled)
    vrows = []
    for cls_id, label in TIMELINESS.items():
        tables = by_class.get(cls_id, [])
        if not tables:
            continue
        cells = ""
        for d in enabled:
            today = d.get("today") or {}
            delivered = sum(int(today.get(t, {}).get("delivered", 0)) for t in tables)
            quarantined = sum(int(today.get(t, {}).get("quarantined", 0)) for t in tables)
            cells += (f'<td class="num">{delivered}</td>'
                      f'<td class="num{" attention" if quarantined else ""}">{quarantined}</td>')
        names = "、".join(comment[t] for t in tables)
        vrows.append(f'<tr data-class="{cls_id}"><td>{_e(label)}</td><td class="muted">{_e(names)}</td>{cells}</tr>')

    held_total = sum(int(d.get("quarantined_held") or 0) for d in enabled)
    quarantine = (f'<span class="attention">共 {held_total} 条记录未通过校验或代码对照，已隔离，等待处理。</span>'
                  "请防保科/信息科在前置软件中查看原因、修正对照后重试。") if held_total else "没有待处理的隔离记录。"

    certs = "".join(f'<div class="cert-warning {"bad" if w.get("level") == "error" else "warn"}">'
                    f'{_e(w.get("message", ""))}</div>' for w in st.get("certificate_warnings") or [])
    uptime = st.get("uptime_seconds")
    values = {
        "cert_warnings": certs,
        "hospital": _e(st.get("hospital") or ""),
        "org_code": _e(st.get("org_code") or ""),
        "generated_at": _time(st.get("generated_at") or dt.datetime.now().isoformat()),
        "overall_class": overall[0],
        "overall_text": _e(overall[1]),
        "overall_detail": _e(overall[2]),
        "platform_rows": "\n".join(rows),
        "volume_head": head,
        "volume_rows": "\n".join(vrows),
        "quarantine_text": quarantine,
        "surveil_text": surveil_text(st.get("surveil")),
        "platform_refused_text": refused_text,
        "wal_section": render_wal(st),
        "backup_text": _e(backup_text(st.get("backup")) or BACKUP_PLACEHOLDER),
        "evaluation_text": _e(_evaluation_text(st.get("evaluation_today") or [])),
        "timeliness_section": render_timeliness(st),
        "version": _e(st.get("version") or __version__),
        **_software_values(st.get("software")),
        "spec_version": _e(st.get("spec_version") or spec.version),
        "mapping_version": _e(st.get("mapping_version") or "—"),
        "uptime": _e(format_lag(uptime) if uptime is not None else "—"),
        "listener_warnings": "".join(f'<div class="notice attention">安全提示：{_e(w)}</div>'
                                     for w in st.get("listener_warnings") or []),
    }
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(values)


def surveil_text(sv: Mapping[str, Any] | None) -> str:
    """Counts only (no patient data on a page anyone on the LAN may open)."""
    if not sv or sv.get("open") is None:
        return '<span class="muted">未启用</span>'
    n_open, overdue = int(sv["open"]), int(sv.get("overdue") or 0)
    if not n_open:
        return "没有待处理的监测预警病例。"
    late = f'，<span class="attention">其中 {overdue} 例已超过报告时限</span>' if overdue else ""
    return (f'未结病例（待确认、待确诊、待核查）<span class="num" data-open="{n_open}">{n_open}</span> 例{late}。'
            "请相关医生及时处理，防保科跟踪。")


def render_timeliness(st: Mapping[str, Any]) -> str:
    """Today's timeliness in two parts: HIS push (business time -> mirror) and front-end upload."""
    rows = st.get("timeliness_today") or []

    def pct(v: Any) -> str:
        return "—" if v is None else f"{float(v):.1%}"

    body = "".join(
        f'<tr data-destination="{_e(r["destination"])}" data-class="{_e(r["timeliness"])}">'
        f'<td>{_e(PLATFORM_NAMES.get(r["destination"], r["destination"]))}</td><td>{_e(r["label"])}</td>'
        f'<td class="num">{_e(r["events"])}</td><td class="num his">{pct(r["his_share"])}</td>'
        f'<td class="num frontend">{pct(r["frontend_share"])}</td><td class="num">{pct(r["within_share"])}</td></tr>'
        for r in rows)
    if not body:
        return '<div class="muted">今日尚无已确认的数据。</div>'
    return ('<table id="timeliness"><tr><th>平台</th><th>时效</th><th>事件数</th><th>HIS 推送及时率</th>'
            f"<th>前置软件上报及时率</th><th>端到端</th></tr>{body}</table>"
            '<div class="sub">HIS 推送：业务发生到写入镜像库（HIS 厂商负责）；'
            "前置软件上报：写入镜像库到平台确认接收。</div>")


def render_wal(st: Mapping[str, Any]) -> str:
    """The WAL safety block: the recovery message of a lost slot and every warning, errors first;
    the server's cap and the pg_wal volume ("未知" where the database does not tell)."""
    wal = st.get("wal")
    if not wal:
        return '<div class="muted">未知（镜像数据库无法连接）</div>'
    alerts: list[tuple[str, str]] = []
    for d in st.get("destinations") or []:
        for w in d.get("wal_warnings") or []:
            alerts.append((w["level"], f"{PLATFORM_NAMES.get(d['destination'], d['destination'])}：{w['message']}"))
    alerts += [(w["level"], w["message"]) for w in wal.get("warnings") or []]
    alerts.sort(key=lambda a: a[0] != "error")
    items = "".join(f'<li class="{"attention" if level == "error" else "warn-text"}">{_e(text)}</li>'
                    for level, text in alerts)
    keep = wal.get("max_slot_wal_keep_size_mb")
    free = (wal.get("volume") or {}).get("free_bytes")
    cap = "未知" if keep is None else ("-1（不限）" if keep < 0 else f"{keep} MB")
    disk = "未知" if free is None else f"{free // (1024 * 1024)} MB"
    slots = "".join(
        f'<tr data-destination="{_e(d["destination"])}">'
        f'<td>{_e(PLATFORM_NAMES.get(d["destination"], d["destination"]))}</td>'
        f'<td>{_e(d.get("wal_status") or "—")}</td><td>'
        + ("不限" if d.get("safe_wal_size") is None else f"{int(d['safe_wal_size']) // (1024 * 1024)} MB")
        + "</td></tr>"
        for d in st.get("destinations") or [] if d.get("slot_exists"))
    return (f'<ul id="wal-alerts">{items}</ul>' if items else '<div id="wal-alerts">WAL 保留正常。</div>') + (
        f'<table id="wal"><tr><th>max_slot_wal_keep_size</th><td colspan="2">{_e(cap)}</td></tr>'
        f'<tr><th>pg_wal 所在磁盘剩余</th><td colspan="2">{_e(disk)}</td></tr>'
        f"<tr><th>平台</th><th>wal_status</th><th>距离复制槽失效</th></tr>{slots}</table>")


def _style_hash() -> str:
    """CSP hash of status.html's one inline <style> (static text: no template variable in it)."""
    m = re.search(r"<style>(.*?)</style>", TEMPLATE.read_text(encoding="utf-8"), re.S)
    digest = hashlib.sha256(m.group(1).encode("utf-8")).digest() if m else b""
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def content_security_policy(frame_ancestors: list[str], *, scripts: bool = False) -> str:
    """No script at all, styles from our own file (and the status page's hashed block), forms only
    to ourselves, framing only by ourselves and the configured HIS origins. ``scripts``: the pages
    that load the workbench's countdown may run script files from ourselves (no inline script)."""
    ancestors = " ".join(["'self'", *frame_ancestors])
    script = "script-src 'self'; " if scripts else ""
    return (f"default-src 'none'; {script}style-src 'self' {_style_hash()}; img-src 'self'; form-action 'self'; "
            f"base-uri 'none'; frame-ancestors {ancestors}")


def create_web_app(settings: Settings, *, api: ApiSettings | None = None, status_provider: StatusProvider | None = None,
                   started_at: float | None = None, rules: Any = None) -> FastAPI:
    provider = status_provider or status_provider_for(settings, started_at=started_at, rules=rules)
    spec = rules.spec if rules is not None else load_spec()
    app = FastAPI(title="cdcsync PC端web服务", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app, "web")
    csp = content_security_policy(settings.workbench.frame_ancestors)
    csp_scripts = content_security_policy(settings.workbench.frame_ancestors, scripts=True)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        # Every page: never cached (patient data on shared ward PCs), strict CSP, no sniffing.
        response: Response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        script_pages: frozenset[str] = getattr(request.app.state, "script_pages", frozenset())
        response.headers["Content-Security-Policy"] = csp_scripts if request.url.path in script_pages else csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    if settings.workbench.enabled:
        from cdcsync.workbench.app import install_workbench

        install_workbench(app, settings)

    @app.get("/status.html", response_class=HTMLResponse)
    async def status_page() -> HTMLResponse:
        st = await run_in_threadpool(provider)
        return HTMLResponse(render_status(st, spec), headers={"Cache-Control": "no-store"})

    @app.get("/")
    async def root() -> RedirectResponse:
        return RedirectResponse("/status.html")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
