"""Optional parts of cdcsync (pyproject extras) and the clear error when one is not installed.

The daemon needs only the runtime dependencies. The reference platform (``upstream-sim``), the
synthetic hospital (``gen``) and ``demo`` built on both need the ``sim`` extra
(``pip install 'cdcsync[sim]'``); ``scripts/setup.sh`` installs it with the tests' extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

EXTRAS: dict[str, str] = {"sim": "参考平台（upstream-sim）、合成医院（gen）与演示（demo）"}
# Import names of the packages each extra brings (pyproject.toml [project.optional-dependencies]).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {"sim": ("msgspec", "stdnum")}


class MissingExtraError(RuntimeError):
    """A command needs an optional extra that is not installed; str() tells how to install it."""


def missing_extra_message(extra: str, module: str | None) -> str:
    what = f"（缺少 Python 包 {module}）" if module else ""
    return (f"此命令属于可选组件 {extra}：{EXTRAS[extra]}{what}，未安装。请执行 "
            f"pip install 'cdcsync[{extra}]'（在源码目录中：pip install -e '.[{extra}]'）")


def require_extra(extra: str) -> None:
    """MissingExtraError unless every package of ``extra`` can be imported."""
    for module in EXTRA_MODULES[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingExtraError(missing_extra_message(extra, module)) from None


def missing_extra_command(name: str, extra: str, module: str | None) -> click.Command:
    """Stands in for a command whose module could not be imported: says which extra to install."""

    def callback(**_kw: Any) -> None:
        raise MissingExtraError(missing_extra_message(extra, module))

    return click.Command(name, callback=callback, help=f"（需安装可选组件 cdcsync[{extra}]）{EXTRAS[extra]}",
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                           "help_option_names": []})


@contextmanager
def optional_command(found: list[click.Command], name: str, extra: str) -> Iterator[None]:
    """Import a command of an optional extra inside this block and append it to ``found``; when the
    import fails for a missing module, append the stand-in that says which extra to install."""
    try:
        yield
    except ModuleNotFoundError as exc:
        found.append(missing_extra_command(name, extra, exc.name))
