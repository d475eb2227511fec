"""Law names, article numbers and which law was in force on a given day.

Used by the drafter (which articles may be cited), the quality check (which citations in a text are valid)
and the LLM post-check. Works on its own: when the knowledge base knows better (per-article ``effective`` /
``repealed`` metadata) that wins, otherwise the table below decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
CODE_NAME = "中华人民共和国生态环境法典"
CODE_EFFECTIVE = date(2026, 8, 15)

_PRC = "中华人民共和国"
_DIGITS = {"零": 0, "〇": 0, "○": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
           "八": 8, "九": 9}
_UNITS = {"十": 10, "百": 100, "千": 1000}
NUMERAL_CHARS = "零〇○一二三四五六七八九十百千两0-9０-９"


def cn_to_int(s: str) -> int | None:
    """'五百七十二' → 572, '一千二百四十二' → 1242, '十' → 10, '48' → 48; None if not a number."""
    s = s.strip().translate(str.maketrans("０１２３４５６７８９", "0123456789"))
    if not s:
        return None
    if s.isdigit():
        return int(s)
    total, current = 0, 0
    for ch in s:
        if ch in _DIGITS:
            current = _DIGITS[ch]
        elif ch in _UNITS:
            total += (current or 1) * _UNITS[ch]
            current = 0
        else:
            return None
    return total + current


def int_to_cn(n: int) -> str:
    """572 → '五百七十二', 10 → '十', 105 → '一百零五' (the way statutes number their articles)."""
    if n <= 0:
        raise ValueError(n)
    digits = "零一二三四五六七八九"
    if n < 10:
        return digits[n]
    if n < 20:
        return "十" + (digits[n % 10] if n % 10 else "")
    out = []
    units = [(1000, "千"), (100, "百"), (10, "十")]
    rest = n
    zero_pending = False
    started = False
    for value, name in units:
        d, rest = divmod(rest, value)
        if d:
            if zero_pending:
                out.append("零")
                zero_pending = False
            out.append(digits[d] + name)
            started = True
        elif started:
            zero_pending = True
    if rest:
        if zero_pending:
            out.append("零")
        out.append(digits[rest])
    return "".join(out)


def article_label(n: int) -> str:
    return f"第{int_to_cn(n)}条"


def article_no(label: str | int | None) -> int | None:
    """'第八十七条' / '87' / 87 → 87."""
    if label is None:
        return None
    if isinstance(label, int):
        return label
    m = re.search(rf"第?([{NUMERAL_CHARS}]+)条?", str(label))
    return cn_to_int(m.group(1)) if m else None


def normalize_law(name: str) -> str:
    """Canonical short key for a law title: no 《》, no 中华人民共和国 prefix, no version suffix or spaces.

    '《中华人民共和国大气污染防治法》（2018年修正）' → '大气污染防治法'
    """
    s = re.sub(r"\s+", "", name or "").lstrip("《〈<\"“")
    s = re.sub(r"[（(][^）)]*[）)]$", "", s)  # (2018年修正) / (2022-11-30)
    s = s.strip("《》〈〉<>\"“”")
    if s.startswith(_PRC):
        s = s[len(_PRC):]
    return s


@dataclass(frozen=True)
class LawDates:
    effective: date | None
    repealed: date | None = None
    successor: str | None = None


# Dates of the laws that complaint replies cite. Article numbers of older versions of a law are not modelled:
# a law counts as in force from its first entry into force until it was repealed.
LAW_TABLE: dict[str, LawDates] = {
    "生态环境法典": LawDates(CODE_EFFECTIVE),
    "环境保护法": LawDates(date(1989, 12, 26), CODE_EFFECTIVE, CODE_NAME),
    "环境影响评价法": LawDates(date(2003, 9, 1), CODE_EFFECTIVE, CODE_NAME),
    "海洋环境保护法": LawDates(date(1983, 3, 1), CODE_EFFECTIVE, CODE_NAME),
    "大气污染防治法": LawDates(date(1988, 6, 1), CODE_EFFECTIVE, CODE_NAME),
    "水污染防治法": LawDates(date(1984, 11, 1), CODE_EFFECTIVE, CODE_NAME),
    "土壤污染防治法": LawDates(date(2019, 1, 1), CODE_EFFECTIVE, CODE_NAME),
    "固体废物污染环境防治法": LawDates(date(1996, 4, 1), CODE_EFFECTIVE, CODE_NAME),
    "噪声污染防治法": LawDates(date(2022, 6, 5), CODE_EFFECTIVE, CODE_NAME),
    "环境噪声污染防治法": LawDates(date(1997, 3, 1), date(2022, 6, 5), "噪声污染防治法"),
    "放射性污染防治法": LawDates(date(2003, 10, 1), CODE_EFFECTIVE, CODE_NAME),
    "清洁生产促进法": LawDates(date(2003, 1, 1), CODE_EFFECTIVE, CODE_NAME),
    "治安管理处罚法": LawDates(date(2006, 3, 1)),
    "行政处罚法": LawDates(date(1996, 10, 1)),
    "道路交通安全法": LawDates(date(2004, 5, 1)),
    "城市市容和环境卫生管理条例": LawDates(date(1992, 8, 1)),
    "信访工作条例": LawDates(date(2022, 5, 1)),
    "信访条例": LawDates(date(2005, 5, 1), date(2022, 5, 1), "信访工作条例"),
    "排污许可管理条例": LawDates(date(2021, 3, 1)),
    "城镇排水与污水处理条例": LawDates(date(2014, 1, 1)),
    "畜禽规模养殖污染防治条例": LawDates(date(2014, 1, 1)),
    "建设项目环境保护管理条例": LawDates(date(1998, 11, 29)),
}

# Short forms people write for the big laws.
_ALIASES = {
    "环保法": "环境保护法",
    "环评法": "环境影响评价法",
    "大气法": "大气污染防治法",
    "水污法": "水污染防治法",
    "固废法": "固体废物污染环境防治法",
    "噪声法": "噪声污染防治法",
    "土壤法": "土壤污染防治法",
}


def law_key(name: str) -> str:
    key = normalize_law(name)
    return _ALIASES.get(key, key)


def law_dates(name: str) -> LawDates | None:
    return LAW_TABLE.get(law_key(name))


def as_date(value: date | datetime | str | None) -> date | None:
    """A datetime (aware → Asia/Shanghai), a date, or an ISO / 'YYYY/M/D h:m:s' string → date."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(SHANGHAI)
        return value.date()
    if isinstance(value, date):
        return value
    s = str(value).strip()
    m = re.match(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})", s)
    if not m:
        return None
    return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def today() -> date:
    return datetime.now(SHANGHAI).date()


def dates_in_force(effective: date | str | None, repealed: date | str | None, on: date) -> bool:
    eff, rep = as_date(effective), as_date(repealed)
    if eff and on < eff:
        return False
    if rep and on >= rep:
        return False
    return True


def law_in_force(name: str, on: date) -> bool | None:
    """True / False from the table; None when the law is not in the table (a local regulation, say)."""
    d = law_dates(name)
    if d is None:
        return None
    return dates_in_force(d.effective, d.repealed, on)


def meta_in_force(meta: dict, on: date) -> bool:
    """In force on ``on`` judged from chunk metadata (``effective`` / ``repealed``), falling back to the table.

    Uses the knowledge-base engineer's ``triage.kb.regulations.in_force`` when it exists.
    """
    try:  # the knowledge base's own rule, when that module is present
        from triage.kb.regulations import in_force as kb_in_force  # type: ignore

        return bool(kb_in_force(meta, on))
    except Exception:  # noqa: BLE001 - absent module or different metadata: use ours
        pass
    if meta.get("effective") or meta.get("repealed"):
        return dates_in_force(meta.get("effective"), meta.get("repealed"), on)
    judged = law_in_force(str(meta.get("law", "")), on)
    return True if judged is None else judged


@dataclass(frozen=True)
class TextCitation:
    law: str  # as written, without 《》
    article_no: int
    span: tuple[int, int]  # where 《law》…第N条 sits in the text

    @property
    def article(self) -> str:
        return article_label(self.article_no)


_NUM = rf"[{NUMERAL_CHARS}]+"
# 《law》, optional （version）, optional 的/规定/相关规定, then 第N条 (…款/项), then more 、第M条.
_CITE_RE = re.compile(
    rf"《([^《》]{{2,60}})》\s*(?:[（(][^）)]{{0,20}}[）)])?\s*(?:的|中|之)?(?:相关)?(?:规定)?\s*"
    rf"(第{_NUM}条(?:第{_NUM}[款项])*(?:\s*[、，,和及与或]\s*第{_NUM}条(?:第{_NUM}[款项])*)*)"
)
_ART_RE = re.compile(rf"第({_NUM})条")


def parse_citations(text: str) -> list[TextCitation]:
    """Every 《…》第…条 reference in a text, one entry per article (第三十条、第三十一条 → two)."""
    out: list[TextCitation] = []
    for m in _CITE_RE.finditer(text or ""):
        law = m.group(1).strip()
        if not re.search(r"(法|法典|条例|办法|规定|规则|细则|决定)$", law):
            continue  # 《声环境质量标准》… and similar are not statutes with articles
        for a in _ART_RE.finditer(m.group(2)):
            n = cn_to_int(a.group(1))
            if n:
                out.append(TextCitation(law=law, article_no=n, span=(m.start(), m.end())))
    return out
