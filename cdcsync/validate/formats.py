"""Field formats of the dataset spec (``format:``): fast predicates, one call per value.

Every checker takes a ``str`` and returns ``True`` when it is well formed. Regular expressions
are compiled once at import; the check-digit algorithms are plain loops over precomputed
tables, so a call costs about a microsecond.

Formats: ``date``, ``datetime``, ``phone`` (mainland mobile or landline), ``postal_code``,
``id_number`` (18-digit 居民身份证号, GB 11643-1999 check digit and a valid birth date),
``uscc`` (统一社会信用代码, GB 32100-2015 check character) and ``org_code`` (医疗机构代码:
6–22 upper-case letters or digits, the rule of ``config.org_code``; a USCC or a 卫生机构登记号).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from operator import mul

# --- 居民身份证号 (GB 11643-1999) -----------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_OFFSET = 48 * sum(_ID_WEIGHTS)  # sum(w * (ord(ch) - 48)) == sum(w * ord(ch)) - _ID_OFFSET
_ID_CHECK = "10X98765432"
_EARLIEST_BIRTH = dt.date(1890, 1, 1)


def id_check_digit(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    if len(first17) != 17:
        raise ValueError(f"17 characters expected, got {len(first17)}")
    if first17.isascii() and first17.isdigit():
        # The weights are 2^(17-i) mod 11 and 13 ≡ 2 (mod 11), so the weighted sum is congruent
        # to 2 * (the digits read in base 13): one int() in C instead of 17 multiplications.
        return _ID_CHECK[2 * int(first17, 13) % 11]
    return _ID_CHECK[(sum(map(mul, _ID_WEIGHTS, map(ord, first17))) - _ID_OFFSET) % 11]


def id_birth_date(value: str) -> dt.date | None:
    """Birth date encoded in digits 7–14, or None when it is not a real date."""
    digits = value[6:14]
    if len(digits) == 8 and digits.isascii() and digits.isdigit():
        try:
            return dt.date.fromisoformat(digits)  # YYYYMMDD (Python >= 3.11): no int() per part
        except ValueError:
            return None
    try:
        return dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return None


def id_sex_code(value: str) -> str:
    """National sex code (GB/T 2261.1) encoded by digit 17: odd ⇒ "1" 男性, even ⇒ "2" 女性."""
    return "1" if (ord(value[16]) - 48) % 2 else "2"


def id_number_birth(value: str, today: dt.date | None = None) -> dt.date | None:
    """The birth date of a valid 18-digit citizen ID number (see :func:`is_id_number`), else None."""
    if len(value) != 18:
        return None
    first17 = value[:17]
    if not (first17.isascii() and first17.isdigit()) or value[0] == "0":
        return None
    last = value[17]
    if last == "x":
        last = "X"
    if id_check_digit(first17) != last:
        return None
    birth = id_birth_date(value)
    if birth is None or birth < _EARLIEST_BIRTH or birth > (today or dt.date.today()):
        return None
    return birth


def is_id_number(value: str, today: dt.date | None = None) -> bool:
    """18-digit citizen ID number: 17 digits + check (digit or X), birth date real and not future."""
    return id_number_birth(value, today) is not None


# --- 统一社会信用代码 (GB 32100-2015) ---------------------------------------------------------

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, S, V, Z
_USCC_VALUE = {ch: i for i, ch in enumerate(_USCC_CHARS)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_check_char(first17: str) -> str | None:
    """The check character for 17 USCC characters, or None when one is outside the charset."""
    total = 0
    values = _USCC_VALUE
    for weight, ch in zip(_USCC_WEIGHTS, first17, strict=True):
        v = values.get(ch)
        if v is None:
            return None
        total += weight * v
    return _USCC_CHARS[(31 - total % 31) % 31]


def is_uscc(value: str) -> bool:
    """18 characters: registration authority, type, 6-digit region, 9-char org code, check char."""
    if len(value) != 18 or not value[2:8].isdigit():
        return False
    return uscc_check_char(value[:17]) == value[17]


# --- other formats ----------------------------------------------------------------------------

_MOBILE = re.compile(r"(?:\+?86[- ]?)?1[3-9]\d{9}")
# Area code 0 + 2–3 digits (parentheses or a dash allowed), a 7–8 digit number not starting
# with 0 or 1, an optional extension.
_LANDLINE = re.compile(r"(?:\+?86[- ]?)?(?:\(0\d{2,3}\)|0\d{2,3})[- ]?[2-9]\d{6,7}(?:[-转#]\d{1,6})?")
_POSTAL = re.compile(r"[0-8]\d{5}")
_ORG_CODE = re.compile(r"[0-9A-Z]{6,22}")


def is_phone(value: str) -> bool:
    if len(value) == 11 and value[0] == "1" and value.isascii() and value.isdigit():
        return value[1] in "3456789"  # the common case, a bare mobile number: no regex
    return _MOBILE.fullmatch(value) is not None or _LANDLINE.fullmatch(value) is not None


def is_postal_code(value: str) -> bool:
    return _POSTAL.fullmatch(value) is not None


def is_org_code(value: str) -> bool:
    # Same rule as config.org_code: a USCC or a 卫生机构登记号, which cannot be told apart reliably
    # at 18 characters, so the check character is only enforced by format ``uscc``.
    return _ORG_CODE.fullmatch(value) is not None


def parse_date(value: str) -> dt.date | None:
    """``YYYY-MM-DD`` (or the compact ``YYYYMMDD``) as a date, else None."""
    if len(value) not in (8, 10):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def parse_datetime(value: str) -> dt.datetime | None:
    """ISO-8601 date and time (``T`` or a space between them, optional fraction/offset), else None."""
    if len(value) < 16:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def is_date(value: str) -> bool:
    return parse_date(value) is not None


def is_datetime(value: str) -> bool:
    return parse_datetime(value) is not None


def _is_id_number(value: str) -> bool:
    return is_id_number(value)


FORMATS: dict[str, Callable[[str], bool]] = {
    "date": is_date,
    "datetime": is_datetime,
    "phone": is_phone,
    "postal_code": is_postal_code,
    "id_number": _is_id_number,
    "uscc": is_uscc,
    "org_code": is_org_code,
}

# What each format expects, for messages (never the value itself: it may be patient data).
FORMAT_TEXT: dict[str, str] = {
    "date": "日期，格式为 YYYY-MM-DD",
    "datetime": "日期时间，格式为 YYYY-MM-DD HH:MM:SS",
    "phone": "电话号码（11位手机号，或带区号的固定电话）",
    "postal_code": "6位数字邮政编码",
    "id_number": "有效的18位公民身份号码（校验码正确、出生日期有效）",
    "uscc": "有效的18位统一社会信用代码（校验码正确）",
    "org_code": "医疗机构代码（6–22位大写字母或数字）",
}
