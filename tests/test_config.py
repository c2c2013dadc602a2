"""Config: YAML + environment overrides → typed settings; bad input → one line naming key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cdcsync.cli import main
from cdcsync.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_loads() -> None:
    settings = load_settings(REPO / "config.example.yaml", environ={})
    assert settings.org_code == "12110000400000000X"
    assert settings.destination_names == ["archive"]
    assert settings.stream.batch_max_events == 1000


def test_environment_overrides_nested_and_list_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, "org_code: '123456'\ndestinations:\n  - {name: a, kind: jsonl, path: /tmp/a}\n")
    settings = load_settings(path, environ={
        "CDCSYNC_DATABASE__DSN": "host=db dbname=emr",
        "CDCSYNC_STREAM__BATCH_MAX_EVENTS": "50",
        "CDCSYNC_DESTINATIONS__0__PATH": "/tmp/b",
        "CDCSYNC_DESTINATIONS__0__ENABLED": "false",
        "CDCSYNC_PG_USER": "postgres",  # not a settings key: ignored
    })
    assert settings.database.dsn == "host=db dbname=emr"
    assert settings.stream.batch_max_events == 50
    assert str(settings.destinations[0].path) == "/tmp/b"  # type: ignore[union-attr]
    assert settings.enabled_destinations == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("org_code: '123456'\ndatabse: {dsn: x}\n", "databse: 未知的配置项"),
        ("org_code: '123456'\nstream: {batch_max_events: many}\n", "stream.batch_max_events"),
        ("org_code: '123456'\ndestinations: [{name: a, kind: ftp}]\n", "kind 应为 jsonl"),
        ("org_code: '123456'\ndestinations: [{name: a, kind: jsonl}]\n", "destinations[0].path: 缺少必填项"),
        ("stream: {}\n", "org_code: 缺少必填项"),
        ("org_code: [1\n", "YAML 格式错误"),
        (
            "org_code: '123456'\ndestinations: [{name: a, kind: jsonl, path: x}, {name: a, kind: jsonl, path: y}]\n",
            "目的地名称重复",
        ),
        ("org_code: '123456'\nops: {alerts: {smtp: [{host: h, sender: a@b, recipients: ['x y@z']}]}}\n",
         "ops.alerts.smtp[0].recipients[0]: 邮件地址格式不正确：'x y@z'"),
        ("org_code: '123456'\nops: {evaluation: {w_software: -1}}\n", "ops.evaluation.w_software"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    message = str(info.value)
    assert message.startswith(str(path))
    assert expected in message
    assert "\n" not in message


def test_cli_reports_bad_config_without_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, "org_code: '123456'\nstream: {linger_ms: -1}\n")
    result = CliRunner().invoke(main, ["-c", str(path), "db", "init"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "stream.linger_ms" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_config_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["-c", str(tmp_path / "nope.yaml"), "db", "init"])
    assert result.exit_code == 2
    assert "配置文件不存在" in result.output


def test_password_file_must_be_private(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    path = _write(tmp_path, f"org_code: '123456'\ndatabase: {{dsn: 'host=x', password_file: {secret}}}\n")
    result = CliRunner().invoke(main, ["-c", str(path), "db", "init"])
    assert result.exit_code == 2
    assert "chmod 600" in result.output
    assert "s3cret" not in result.output
    secret.chmod(0o600)
    assert "password='s3cret'" in load_settings(path, environ={}).database.conninfo()


def test_run_refuses_a_destination_whose_key_file_is_missing(tmp_path: Path) -> None:
    path = _write(tmp_path, (
        "org_code: '123456'\ndatabase: {dsn: 'host=127.0.0.1 port=1 dbname=x'}\n"
        "destinations:\n  - {name: national, kind: http, url: 'https://127.0.0.1:8888',"
        f" hospital_key: {tmp_path}/none.key, platform_public_key: {tmp_path}/none.pub}}\n"))
    result = CliRunner().invoke(main, ["-c", str(path), "run"])
    assert result.exit_code == 2
    assert "none.key" in result.output and "Traceback" not in result.output


def test_partial_listener_section_keeps_the_default_port(tmp_path: Path) -> None:
    """``api.data.enabled: false`` (what the busy-port message suggests) needs no port."""
    path = _write(tmp_path, "org_code: '123456'\napi:\n  data: {enabled: false}\n  monitor: {host: 127.0.0.1}\n")
    api = load_settings(path, environ={}).api
    assert not api.data.enabled
    assert (api.monitor.host, api.monitor.port) == ("127.0.0.1", 8883)
    assert api.web.port == 8884
    env = load_settings(_write(tmp_path, "org_code: '123456'\n"), environ={"CDCSYNC_API__WEB__ENABLED": "false"})
    assert not env.api.web.enabled and env.api.web.port == 8884


def test_a_duplicate_key_or_a_bad_environment_value_is_a_clear_error(tmp_path: Path) -> None:
    """A second ``destinations:`` would silently drop the first; a YAML typo in an environment
    variable names the variable (no traceback)."""
    cfg = tmp_path / "cdcsync.yaml"
    cfg.write_text("org_code: '123456'\ndestinations: []\nstream: {}\ndestinations: []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"第 4 行第 1 列：YAML 格式错误：键 'destinations' 重复"):
        load_settings(cfg, environ={})
    cfg.write_text("org_code: '123456'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="环境变量 CDCSYNC_STREAM__LINGER_MS：.*YAML 格式错误"):
        load_settings(cfg, environ={"CDCSYNC_STREAM__LINGER_MS": "[1"})
