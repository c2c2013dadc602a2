"""Which SM2 implementation this process uses, and why: logged at start, shown by ``status`` and 8883.

OpenSSL 3 (``sm2_openssl``) is used when libcrypto loads and passes its self-test and
``CDCSYNC_PURE_PYTHON`` is unset; otherwise the Python implementation (same formats, slower, and
holding the interpreter lock the stream needs). A security officer wants to know which one signs.
"""

from __future__ import annotations

import os


def sm2_backend() -> dict[str, str]:
    """``{"backend": "openssl" | "python", "reason": <Chinese, one line>}``."""
    from cdcsync.crypto import sm2, sm2_openssl

    if sm2.backend() == "openssl":
        return {"backend": "openssl", "reason": "系统 OpenSSL 3（libcrypto）加载成功并通过自检；"
                                                "椭圆曲线运算在 OpenSSL 中进行，不占用解释器锁"}
    if os.environ.get("CDCSYNC_PURE_PYTHON"):
        why = "设置了环境变量 CDCSYNC_PURE_PYTHON"
    elif sm2_openssl.BACKEND is None:
        why = f"系统 OpenSSL 3 不可用或自检失败（{sm2_openssl.REASON}）"
    else:
        why = "程序指定使用 Python 实现"
    return {"backend": "python", "reason": f"使用 Python 实现：{why}；格式相同，但较慢且占用解释器锁"}


def describe() -> str:
    info = sm2_backend()
    return f"SM2 实现：{'OpenSSL' if info['backend'] == 'openssl' else 'Python'}（{info['reason']}）"
