from typing import Any

def parse(
    names: tuple[str, ...], kinds: bytes, convs: tuple[Any, ...], slow: type[BaseException], buf: bytes, pos: int, /
) -> tuple[dict[str, Any], int]: ...
