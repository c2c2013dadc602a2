"""YAML as cdcsync reads every file and pushed package: safe types only, a duplicate key is an
error (PyYAML would silently keep the last one: a second ``destinations:`` in a config would
drop the first), and a parse error says where, in Chinese. Callers put their file name in front.
"""

from __future__ import annotations

from typing import Any

import yaml

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: ~5x faster


class StrictLoader(_BaseLoader):
    """SafeLoader (libyaml's when built) that refuses duplicate mapping keys."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)  # merge keys (<<) as SafeLoader does
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in result:
            raise yaml.constructor.ConstructorError(None, None, f"键 {key!r} 重复", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=deep)
    return result


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class YamlProblem(ValueError):
    """The text is not valid YAML; ``str()`` says where and why, in Chinese."""


def load(text: str | bytes) -> Any:
    """Parse ``text`` (bytes: UTF-8, or another encoding with a BOM); raises :class:`YamlProblem`."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise YamlProblem(describe(exc)) from None
    except UnicodeDecodeError as exc:
        raise YamlProblem(f"不是有效的 UTF-8 文本（第 {exc.start} 字节）") from None
    except ValueError as exc:  # e.g. a timestamp like 2003-13-01 that the YAML resolver accepts
        raise YamlProblem(f"取值无效：{exc}（日期应为 YYYY-MM-DD）") from None


def describe(exc: yaml.YAMLError) -> str:
    """``第 L 行第 C 列：YAML 格式错误：<problem>`` (the position when PyYAML knows it)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).splitlines()[0]
    where = f"第 {mark.line + 1} 行第 {mark.column + 1} 列：" if mark is not None else ""
    return f"{where}YAML 格式错误：{problem}"
