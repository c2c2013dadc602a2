"""Fake but realistic people: Chinese names, 居民身份证号 (GB 11643), phones, addresses.

Everything here is invented. ID numbers carry a correct GB 11643-1999 check digit and agree with
the person's region, birth date and sex, so a validator that cross-checks them sees a consistent
person; :func:`corrupt_check_digit` makes the one deliberate exception.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Surnames roughly by frequency (the first ones are the most common); a few compound surnames.
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁"
    "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
_SURNAME_WEIGHTS = [max(1.0, 60.0 / (i + 1)) for i in range(len(_SURNAMES))]
_COMPOUND = ("欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "令狐", "慕容")
_MALE = "伟强磊军勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆帅旭宁龙林峰建国志文博昊然子轩浩宇梓豪振东海洋晨阳德胜永庆立新"
_FEMALE = "芳娜敏静丽艳娟霞秀英玲桂兰燕萍红梅琳雪婷慧颖倩佳怡欣妍雨涵梓萱诗琪晓丹思佳紫嫣若曦美玉春花淑珍凤琴"
# Characters outside the BMP that real people have in their names (surrogate pairs in UTF-16,
# 4 bytes in UTF-8): the pipeline must carry them untouched.
_NON_BMP = ("𠮷", "𬱖", "𫖯", "𬌗", "𬇙")


@dataclass(frozen=True)
class Region:
    """A county-level division (GB/T 2260) with its province and city names."""

    code: str
    province: str
    city: str
    county: str

    @property
    def prefix(self) -> str:
        """Province + city + county, as written at the start of an address."""
        parts = [self.province]
        if self.city and self.city != self.province:
            parts.append(self.city)
        parts.append(self.county)
        return "".join(parts)


# Fallback when the region value domain is unavailable: a few real county-level codes.
FALLBACK_REGIONS: tuple[Region, ...] = (
    Region("110101", "北京市", "北京市", "东城区"),
    Region("110105", "北京市", "北京市", "朝阳区"),
    Region("310104", "上海市", "上海市", "徐汇区"),
    Region("320102", "江苏省", "南京市", "玄武区"),
    Region("330106", "浙江省", "杭州市", "西湖区"),
    Region("420106", "湖北省", "武汉市", "武昌区"),
    Region("440106", "广东省", "广州市", "天河区"),
    Region("510107", "四川省", "成都市", "武侯区"),
)

_ROADS = (
    "人民路",
    "解放路",
    "建设路",
    "中山路",
    "和平街",
    "幸福路",
    "文化路",
    "长江路",
    "新华街",
    "朝阳路",
    "光明路",
    "友谊路",
    "胜利街",
    "滨河路",
    "学院路",
    "东风路",
    "青年路",
    "公园路",
)
_COMMUNITIES = (
    "幸福小区",
    "阳光花园",
    "锦绣家园",
    "翠湖苑",
    "金色家园",
    "和谐嘉园",
    "书香名邸",
    "滨江花园",
    "城市之光",
    "紫荆苑",
)
_MOBILE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "153",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "176",
    "177",
    "180",
    "181",
    "183",
    "185",
    "186",
    "187",
    "188",
    "189",
    "191",
    "198",
    "199",
)

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def check_digit(first17: str) -> str:
    """GB 11643-1999 check character (ISO 7064 MOD 11-2) for the first 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def id_number(region: str, birth: dt.date, male: bool, rng: random.Random) -> str:
    """An 18-digit 居民身份证号 whose birth date, sex (odd = male) and check digit agree."""
    seq = rng.randrange(0, 500) * 2 + (1 if male else 0)
    first17 = f"{region}{birth:%Y%m%d}{seq:03d}"
    return first17 + check_digit(first17)


def corrupt_check_digit(number: str) -> str:
    """The same number with a wrong (but well-formed) check character."""
    good = number[-1]
    choices = [c for c in "0123456789X" if c != good]
    # Deterministic: the next character in the cycle, never the correct one.
    return number[:-1] + choices[int(number[-2]) % len(choices)]


def surname(rng: random.Random) -> str:
    if rng.random() < 0.01:
        return rng.choice(_COMPOUND)
    return rng.choices(_SURNAMES, weights=_SURNAME_WEIGHTS)[0]


def given_name(rng: random.Random, male: bool, *, non_bmp_ratio: float = 0.004) -> str:
    pool = _MALE if male else _FEMALE
    n = 1 if rng.random() < 0.25 else 2
    chars = [rng.choice(pool) for _ in range(n)]
    if rng.random() < non_bmp_ratio:
        chars[-1] = rng.choice(_NON_BMP)
    return "".join(chars)


def full_name(rng: random.Random, male: bool, *, non_bmp_ratio: float = 0.004) -> str:
    return surname(rng) + given_name(rng, male, non_bmp_ratio=non_bmp_ratio)


def mobile(rng: random.Random) -> str:
    return rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def street_address(region: Region, rng: random.Random) -> str:
    road = f"{rng.choice(_ROADS)}{rng.randint(1, 399)}号"
    flat = f"{rng.randint(1, 30)}栋{rng.randint(1, 6)}单元{rng.randint(1, 33)}0{rng.randint(1, 4)}室"
    return f"{region.prefix}{road}{rng.choice(_COMMUNITIES)}{flat}"


def regions_from_domain(codes: Mapping[str, str]) -> list[Region]:
    """County-level regions from a GB/T 2260 code → name table (e.g. the national ``region`` domain).

    A county code ends in anything but ``00``; its province is ``XX0000`` and its city ``XXXX00``
    (municipalities often lack the city row: the province name stands in).
    """
    out: list[Region] = []
    for code, name in codes.items():
        if len(code) != 6 or not code.isdigit() or code.endswith("00"):
            continue
        province = codes.get(code[:2] + "0000")
        if province is None:
            continue
        city = codes.get(code[:4] + "00", province)
        if city in ("市辖区", "县"):
            city = province
        if name == "市辖区":
            continue
        out.append(Region(code, province, city, name))
    return out


@dataclass(frozen=True)
class Person:
    name: str
    male: bool
    birth_date: dt.date
    region: Region
    id_no: str
    phone: str
    address: str
    contact_name: str
    contact_phone: str


@functools.cache
def _valid_years(code: str) -> tuple[int, int] | None:
    """Years in which ``code`` was an assigned county code, per python-stdnum's GB/T 2260 history.

    None when stdnum does not know the code. Real ID numbers keep the code in force when they were
    first issued; choosing one valid in the birth year keeps ``stdnum.cn.ric`` (and validators built
    on it) satisfied.
    """
    from stdnum import numdb

    info = {k: v for _, props in numdb.get("cn/loc").info(code) for k, v in props.items()}
    county = info.get("county")
    if not county or "province" not in info:
        return None
    lo, hi = 9999, 0
    for part in county.split(","):
        if not part.startswith("["):
            return (0, 9999)
        start, end = part[1:].split("]")[0].split("-")
        lo = min(lo, int(start) if start else 0)
        hi = max(hi, int(end) if end else 9999)
    return (lo, hi)


def region_for_year(regions: Sequence[Region], year: int, rng: random.Random) -> Region:
    """A region from ``regions`` whose code was in force in ``year`` (else a fallback that always was)."""
    for _ in range(8):
        region = rng.choice(regions)
        span = _valid_years(region.code)
        if span is not None and span[0] <= year <= span[1]:
            return region
    return FALLBACK_REGIONS[0]


def make_person(
    rng: random.Random,
    regions: Sequence[Region],
    today: dt.date,
    *,
    age_years: float | None = None,
    non_bmp_ratio: float = 0.004,
) -> Person:
    """A person of plausible age (children, adults and elderly all visit a hospital)."""
    male = rng.random() < 0.5
    if age_years is None:
        bucket = rng.random()
        if bucket < 0.12:
            age_years = rng.uniform(0.1, 6)
        elif bucket < 0.22:
            age_years = rng.uniform(6, 18)
        elif bucket < 0.72:
            age_years = rng.uniform(18, 60)
        else:
            age_years = rng.uniform(60, 95)
    birth = today - dt.timedelta(days=max(1, int(age_years * 365.25)))
    region = region_for_year(regions, birth.year, rng)
    name = full_name(rng, male, non_bmp_ratio=non_bmp_ratio)
    # Children are registered with a parent as contact.
    contact = surname(rng) + given_name(rng, rng.random() < 0.5, non_bmp_ratio=0.0)
    return Person(
        name=name,
        male=male,
        birth_date=birth,
        region=region,
        id_no=id_number(region.code, birth, male, rng),
        phone=mobile(rng),
        address=street_address(region, rng),
        contact_name=contact,
        contact_phone=mobile(rng),
    )


def age_on(birth: dt.date, day: dt.date) -> int:
    """Completed years on ``day``."""
    years = day.year - birth.year
    if (day.month, day.day) < (birth.month, birth.day):
        years -= 1
    return years


def infant_months(birth: dt.date, day: dt.date) -> int | None:
    """Completed months on ``day`` of a child under one year (0-11), else None."""
    if age_on(birth, day) >= 1:
        return None
    months = (day.year - birth.year) * 12 + day.month - birth.month - (1 if day.day < birth.day else 0)
    return min(11, months)
