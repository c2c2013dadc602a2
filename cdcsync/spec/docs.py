"""Markdown reference of the dataset spec for HIS/EMR vendors (docs/dataset.md).

Regenerate with ``python -m cdcsync.spec.docs > docs/dataset.md``; tests/test_spec.py fails while
the committed file and the spec disagree.
"""

from __future__ import annotations

import sys
from typing import Any

from cdcsync.spec.ddl import column_comment
from cdcsync.spec.model import TIMELINESS, Field, Rule, Spec, Table, load_spec

REGENERATE = "python -m cdcsync.spec.docs > docs/dataset.md"

_KIND_NAMES = {
    "range": "取值范围 range",
    "date_order": "时间先后 date_order",
    "required_if": "条件必填 required_if",
    "id_number_if": "身份证号校验 id_number_if",
    "age_consistent": "年龄一致 age_consistent",
    "not_future": "不晚于当前 not_future",
}
_FORMAT_NAMES = {
    "id_number": "公民身份号码",
    "phone": "电话号码",
    "postal_code": "邮政编码",
    "date": "日期",
    "datetime": "日期时间",
    "org_code": "医疗机构代码",
    "uscc": "统一社会信用代码",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _field_row(table: Table, i: int, f: Field) -> str:
    domain = f"`{f.domain}` {f.domain_name}" if f.domain else ""
    fmt = f"`{f.format}` {_FORMAT_NAMES[f.format]}" if f.format else ""
    cells = [
        str(i),
        f"`{f.name}`",
        _cell(column_comment(f)),
        f"`{f.sql_type}`",
        "是 Y" if f.required else "",
        "是 Y" if f.name in table.primary_key else "",
        domain,
        fmt,
        "是 Y" if f.pii else "",
    ]
    return "| " + " | ".join(cells) + " |"


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' if isinstance(v, str) else _show(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if hasattr(value, "items"):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _rule_row(rule: Rule) -> str:
    params = "; ".join(f"{k}: {_show(v)}" for k, v in rule.params.items())
    return f"| {rule.id} | {_KIND_NAMES[rule.kind]} | `{_cell(params)}` | {_cell(rule.message)} |"


def table_doc(table: Table) -> str:
    lines = [
        f"## `{table.name}` {table.comment}",
        "",
        f"- 表名 Table: `emr.{table.name}`",
        f"- 上报时效 Timeliness: {TIMELINESS[table.timeliness]} (`{table.timeliness}`)",
        f"- 主键 Primary key: `({', '.join(table.primary_key)})`",
        f"- 业务时间 Business time: `{table.business_time}`",
    ]
    if table.business_date:
        lines.append(f"- 业务日期 Business date: `{table.business_date}`")
    if table.national_codes:
        lines.append("- 写入方 Writer: 前置软件（cdcsync）自身写入，院内系统不写；代码字段为国家值域代码"
                     " (written by cdcsync only; coded fields hold national codes)")
    lines += [
        "",
        "| # | 字段 Field | 说明 Description | 类型 Type | 必填 Required | 主键 PK"
        " | 值域 Domain | 格式 Format | 个人信息 PII |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_field_row(table, i, f) for i, f in enumerate(table.fields, 1)]
    if table.rules:
        lines += [
            "",
            "校验规则 Rules:",
            "",
            "| 规则 Rule | 类型 Kind | 参数 Parameters | 提示 Message |",
            "|---|---|---|---|",
        ]
        lines += [_rule_row(r) for r in table.rules]
    return "\n".join(lines) + "\n"


def generate_docs(spec: Spec | None = None) -> str:
    spec = spec or load_spec()
    lines = [
        f"# {spec.name} Dataset specification (v{spec.version})",
        "",
        f"<!-- 自动生成，请勿手工修改。Generated from cdcsync/spec/dataset.yaml: {REGENERATE} -->",
        "",
        "本文件供医院 HIS/EMR 厂商对照改造：按下表向前置机 PostgreSQL 镜像库 `emr` 模式写入数据"
        "（或通过数据 API 推送同样的字段）。",
        "This is the reference for HIS/EMR vendors: write rows into the `emr` schema of the front-end "
        "PostgreSQL mirror (or push the same fields through the data API) as listed below.",
        "",
        "约定 Conventions:",
        "",
        "- 代码类字段（有“值域”的列）填写医院**本地代码**，由前置软件按代码映射表转换为国家值域代码。"
        " Coded columns hold the hospital's LOCAL code; cdcsync maps it to the national value domain.",
        "- 日期时间为北京时间（UTC+8），不带时区。 Timestamps are Beijing local time without time zone.",
        "- 每张表都有 `org_code`（医疗机构代码）、`modify_flag`（修改标志：1 正常，2 修改，3 撤销）、"
        "`collect_time`（数据采集时间）、`update_time`（数据更新时间）。"
        " Every table has org_code, modify_flag (1 normal, 2 modified, 3 revoked), collect_time, update_time.",
        "- 必填字段在库中为 NOT NULL；校验规则不通过的记录进入隔离区，不会静默丢弃。"
        " Required fields are NOT NULL; rows failing a rule are quarantined, never dropped silently.",
        "- “个人信息”字段不会出现在任何日志中。 PII fields never appear in logs.",
        "- 规则中对代码字段的条件（如证件类别 in [\"01\"]）按映射后的国家代码判断。"
        " Rule conditions on coded fields compare the national code after mapping.",
        "",
        "| 表 Table | 说明 Description | 上报时效 Timeliness | 主键 Primary key | 字段数 Fields |",
        "|---|---|---|---|---|",
    ]
    for t in spec.tables:
        lines.append(
            f"| `{t.name}` | {t.comment} | "
            f"{TIMELINESS[t.timeliness]} | `({', '.join(t.primary_key)})` | {len(t.fields)} |"
        )
    lines.append("")
    return "\n".join(lines) + "\n" + "\n".join(table_doc(t) for t in spec.tables)


def main() -> None:
    sys.stdout.buffer.write(generate_docs().encode("utf-8"))


if __name__ == "__main__":
    main()
