"""Law markdown → one chunk per article in the ``regulations`` collection.

Two statute styles are read (both seen in ``shared/data/laws``):

* just-laws style: ``**第一条**　…`` with markdown headings ``# 第一编``, ``## 第七分编``, ``### 第一章``, ``#### 第一节``;
* LawRefBook style: plain ``第一条 …`` at line start, headings ``## 第一章 总则`` or bare ``第一章 总则`` lines.

Text before the first heading/article (title, adoption dates, front matter, ``<!-- INFO END -->``) is not an
article and is skipped, but it is read for dates: an explicit ``2007年1月1日 施行`` line, the article
``本法自2026年8月15日起施行。《…》、《…》同时废止。`` (which also tells which laws the text repeals), and a
``README.md`` beside a multi-file law (the 生态环境法典 folder) for its title and dates.

Naming convention: ``law`` is the full official title as the text's own ``# `` title gives it (for example
``中华人民共和国生态环境法典``, ``中华人民共和国噪声污染防治法``, ``广东省大气污染防治条例``); ``law_short`` drops the
``中华人民共和国`` prefix (``生态环境法典``) and is what citations strings (``cites``) and chunk ids use.

Dates: ``effective`` is the date this version of the text applies from: the latest of the stated 施行 date and
the revision date in the file name (``大气污染防治法(2018-10-26).md`` → revised 2018-10-26, first in force 2016-01-01
→ effective 2018-10-26). ``repealed`` comes from a repealing text (the Code repeals the single laws on
2026-08-15); when that text is not part of the same ingest the built-in ``KNOWN_REPEALS`` (copied from the Code's
final article and README) still applies.

The project's own digest (``knowledge/regulations/*.md``, front matter ``kind: digest``) is parsed by
:func:`parse_digest`; its chunks carry the REAL law and article they summarise (``source="digest"``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from triage.kb.store import REGULATIONS, KnowledgeStore

log = logging.getLogger(__name__)

PRC = "中华人民共和国"
MAX_CHUNK_CHARS = 500
EMBED_BATCH = 64
STATUTE = "statute"
DIGEST = "digest"
LEVELS = ("national", "local", "repealed", "digest")
LAW_SUFFIXES = (".md", ".markdown", ".txt")

# The 生态环境法典 (art. 1242 and its README): in force 2026-08-15, repealing these ten laws on the same day.
CODE_TITLE = "中华人民共和国生态环境法典"
CODE_EFFECTIVE = date(2026, 8, 15)
KNOWN_REPEALS: dict[str, date] = {
    f"{PRC}{name}": CODE_EFFECTIVE
    for name in ("环境保护法", "环境影响评价法", "海洋环境保护法", "大气污染防治法", "水污染防治法",
                 "土壤污染防治法", "固体废物污染环境防治法", "噪声污染防治法", "放射性污染防治法",
                 "清洁生产促进法")
}
# Dates of the laws the digest cites, used when a digest entry states none itself (施行：YYYY-MM-DD).
KNOWN_EFFECTIVE: dict[str, date] = {
    CODE_TITLE: CODE_EFFECTIVE,
    f"{PRC}治安管理处罚法": date(2026, 1, 1),   # 2025 revision, art. 144
    f"{PRC}道路交通安全法": date(2021, 4, 29),  # 2021 amendment
    "城市市容和环境卫生管理条例": date(2017, 3, 1),
    "城镇排水与污水处理条例": date(2014, 1, 1),
    "排污许可管理条例": date(2021, 3, 1),
}


# ---------------------------------------------------------------------------------------------------------------
# Chinese numerals
# ---------------------------------------------------------------------------------------------------------------
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_BIG = {"万": 10_000, "亿": 100_000_000}
CN_NUM = "零〇一二两三四五六七八九十百千万"


def cn_to_int(text: str) -> int:
    """Chinese (or Arabic) numeral → int: 十 → 10, 二十 → 20, 一百零五 → 105, 一千二百四十二 → 1242.

    Digit strings without units (二〇二六) read digit by digit. Raises ValueError on anything else.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty numeral")
    if s.isascii() and s.isdigit():
        return int(s)
    if all(ch in _CN_DIGITS for ch in s):
        if len(s) == 1:
            return _CN_DIGITS[s]
        return int("".join(str(_CN_DIGITS[ch]) for ch in s))
    total = section = digit = 0
    for ch in s:
        if ch in _CN_DIGITS:
            digit = _CN_DIGITS[ch]
        elif ch in _CN_UNITS:
            section += (digit or 1) * _CN_UNITS[ch]
            digit = 0
        elif ch in _CN_BIG:
            total += (section + digit) * _CN_BIG[ch]
            section = digit = 0
        else:
            raise ValueError(f"not a Chinese numeral: {text!r}")
    return total + section + digit


def int_to_cn(n: int) -> str:
    """int → the numeral as statutes write article numbers: 10 → 十, 110 → 一百一十, 1050 → 一千零五十."""
    if n < 0:
        raise ValueError("negative numbers are not article numbers")
    if n == 0:
        return "零"
    digits = "零一二三四五六七八九"
    if n >= 10_000:
        high, low = divmod(n, 10_000)
        rest = "" if low == 0 else ("零" if low < 1000 else "") + _under_10k(low, digits, leading=False)
        return int_to_cn(high) + "万" + rest
    return _under_10k(n, digits, leading=True)


def _under_10k(n: int, digits: str, leading: bool) -> str:
    out = []
    zero = False
    for unit_value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d, n = divmod(n, unit_value)
        if d:
            if zero:
                out.append("零")
                zero = False
            # 十 alone at the start (十, 十五), but 一十 after a higher unit (一百一十).
            if not (unit == "十" and d == 1 and not out and leading):
                out.append(digits[d])
            out.append(unit)
        elif out:
            zero = True
    return "".join(out)


def article_label(no: int, sub: int = 0) -> str:
    """3 → 第三条; (120, 1) → 第一百二十条之一."""
    return f"第{int_to_cn(no)}条" + (f"之{int_to_cn(sub)}" if sub else "")


# ---------------------------------------------------------------------------------------------------------------
# Data types
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Article:
    article: str  # 第八十七条
    article_no: int
    text: str
    part_path: str = ""
    sub: int = 0  # 第X条之一 → 1


@dataclass
class LawDocument:
    """One parsed file: a whole law, or one part of a multi-file law such as the 生态环境法典."""

    law: str
    articles: list[Article]
    effective: date | None = None
    repealed: date | None = None
    version: date | None = None
    level: str = "national"
    source: str = STATUTE
    path: Path | None = None
    repeals: dict[str, date] = field(default_factory=dict)  # laws this text repeals → on which date
    doc_key: str = ""

    @property
    def law_short(self) -> str:
        return short_title(self.law)

    @property
    def law_id(self) -> str:
        return self.law_short + (f"@{self.version.isoformat()}" if self.version else "")


@dataclass
class DigestEntry:
    law: str
    article: str
    article_no: int
    title: str
    text: str
    topic: str
    old: list[tuple[str, str]] = field(default_factory=list)  # (law, article) of the repealed law
    related: list[tuple[str, str]] = field(default_factory=list)  # further in-force citations
    subtypes: str = ""
    effective: date | None = None
    sub: int = 0


@dataclass
class Chunk:
    id: str
    text: str  # stored document: the article text (or this part of it)
    embed_text: str  # what is embedded: law + article + part path + text
    metadata: dict[str, Any]


@dataclass
class IngestReport:
    files: int = 0
    articles: int = 0
    chunks: int = 0
    added: int = 0  # new chunk ids
    unchanged: int = 0  # same id and same content hash: not re-embedded
    updated: int = 0  # same id, new content
    removed: int = 0  # ids of an ingested file that its new version no longer has
    superseded: list[str] = field(default_factory=list)  # "law (effective → until)": earlier versions now ended
    seconds: float = 0.0
    laws: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files without any article


class RegulationParseError(ValueError):
    """A file could not be read as a law or a digest."""


def short_title(law: str) -> str:
    return law[len(PRC):] if law.startswith(PRC) and len(law) > len(PRC) else law


def full_title(law: str) -> str:
    """Map a short national law name to its full title where we know it (噪声污染防治法 → 中华人民共和国噪声污染防治法)."""
    law = law.strip().strip("《》")
    if law.startswith(PRC):
        return law
    candidate = PRC + law
    if candidate in KNOWN_REPEALS or candidate in KNOWN_EFFECTIVE or law.endswith(("法", "法典")):
        return candidate
    return law


# ---------------------------------------------------------------------------------------------------------------
# Statute parsing
# ---------------------------------------------------------------------------------------------------------------
_NUM = f"[{CN_NUM}]+"
_ART_BOLD = re.compile(rf"^\s*\*\*\s*(第({_NUM})条(?:之({_NUM}))?)\s*\*\*[\s\u3000]*(.*)$")
_ART_PLAIN = re.compile(rf"^\s*(第({_NUM})条(?:之({_NUM}))?)(?:[ \t\u3000]+(.*)|$)")
_HEADING = re.compile(rf"^\s*(?:#{{1,6}}\s*)?(?:\*\*)?\s*(第({_NUM})(分编|编|章|节))(?:\s|\u3000)*([^\n]*?)(?:\*\*)?\s*$")
_HEADING_LEVEL = {"编": 0, "分编": 1, "章": 2, "节": 3}
_TITLE = re.compile(r"^#\s+(.+?)\s*$")
_FILE_DATE = re.compile(r"[(（](\d{4})-(\d{1,2})-(\d{1,2})[)）]")
_EFFECTIVE_LINE = re.compile(r"^\s*(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日\s*施行\s*$")
_EFFECTIVE_ART = re.compile(r"本(?:法典|法|条例|办法|规定|细则|决定)自(\d{4})年(\d{1,2})月(\d{1,2})日起施行")
_REPEAL = re.compile(
    r"自(\d{4})年(\d{1,2})月(\d{1,2})日起施行。(?:自同日起，?)?((?:《[^》]+》[、，,]?\s*)+)(?:同时)?废止")


def _is_heading(line: str) -> re.Match | None:
    m = _HEADING.match(line)
    if not m:
        return None
    rest = m.group(4).strip()
    # A heading is short and is not a sentence; "第二章规定的…" at the start of a paragraph is not one.
    if len(rest) > 40 or rest.endswith(("。", "；", "：", "，")) or "，" in rest:
        return None
    if not line.lstrip().startswith("#") and rest and not re.match(r"^[\s\u3000]", line[m.end(1):] or " "):
        # bare-text heading needs a separator between 第一章 and its name
        return None
    return m


def _clean_line(line: str) -> str:
    line = line.replace("\u3000", " ").strip()
    return re.sub(r"\s{2,}", " ", line)


def parse_law_text(text: str) -> tuple[list[Article], dict[str, Any]]:
    """Parse one markdown text into articles; also return what the preamble and text say about the law.

    The info dict has ``title`` (the ``# `` title that is not a part/chapter heading), ``effective`` (date or
    None) and ``repeals`` ({law title: date}).
    """
    lines = text.splitlines()
    articles: list[Article] = []
    info: dict[str, Any] = {"title": None, "effective": None, "repeals": {}}
    path: dict[int, str] = {}
    current: Article | None = None
    paragraphs: list[str] = []
    in_front_matter = False
    in_block = False
    started = False

    def flush() -> None:
        nonlocal current, paragraphs
        if current is not None:
            current.text = "\n".join(p for p in paragraphs if p)
            articles.append(current)
        current, paragraphs = None, []

    for i, raw in enumerate(lines):
        line = raw.rstrip()
        stripped = line.strip()
        if i == 0 and stripped == "---":
            in_front_matter = True
            continue
        if in_front_matter:
            if stripped == "---":
                in_front_matter = False
            continue
        if stripped.startswith(":::"):  # vuepress container (::: tip … :::)
            in_block = not in_block
            continue
        if in_block or stripped.startswith("<!--"):
            if not started:
                _read_preamble_line(stripped, info)
            continue
        heading = _is_heading(line)
        if heading:
            flush()
            started = True
            level = _HEADING_LEVEL[heading.group(3)]
            for lv in list(path):
                if lv >= level:
                    del path[lv]
            name = _clean_line(heading.group(4))
            path[level] = heading.group(1) + (f" {name}" if name else "")
            continue
        m = _ART_BOLD.match(line) or _ART_PLAIN.match(line)
        if m:
            flush()
            started = True
            sub = cn_to_int(m.group(3)) if m.group(3) else 0
            current = Article(article=m.group(1), article_no=cn_to_int(m.group(2)), text="",
                              part_path=" / ".join(path[k] for k in sorted(path)), sub=sub)
            first = _clean_line(m.group(4) or "")
            paragraphs = [first] if first else []
            continue
        if stripped.startswith("#"):
            title = _TITLE.match(stripped)
            if title and info["title"] is None and not started:
                info["title"] = title.group(1).replace("\u3000", " ").strip()
            continue
        if current is None:
            if not started:
                _read_preamble_line(stripped, info)
            continue
        if stripped in ("---", "***"):
            continue
        if stripped:
            paragraphs.append(_clean_line(stripped))
    flush()

    body = "\n".join(a.text for a in articles)
    if info["effective"] is None:
        found = _EFFECTIVE_ART.findall(body)
        if found:
            y, mo, d = found[-1]
            info["effective"] = date(int(y), int(mo), int(d))
    info["repeals"].update(_find_repeals(body))
    return articles, info


def _read_preamble_line(line: str, info: dict[str, Any]) -> None:
    m = _EFFECTIVE_LINE.match(line)
    if m:
        info["effective"] = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    info["repeals"].update(_find_repeals(line))
    if info["effective"] is None:
        m2 = _EFFECTIVE_ART.search(line)
        if m2:
            info["effective"] = date(int(m2.group(1)), int(m2.group(2)), int(m2.group(3)))


def _find_repeals(text: str) -> dict[str, date]:
    out: dict[str, date] = {}
    for m in _REPEAL.finditer(text):
        when = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        for title in re.findall(r"《([^》]+)》", m.group(4)):
            out[title.strip()] = when
    return out


@lru_cache(maxsize=64)
def _folder_info(folder: str) -> dict[str, Any]:
    """Title, effective date and repeals stated in a folder's README.md (multi-file laws)."""
    readme = Path(folder) / "README.md"
    if not readme.is_file():
        return {}
    _, info = parse_law_text(readme.read_text(encoding="utf-8-sig"))
    return info if info.get("title") else {}


LEVEL_FOLDERS = ("repealed", "local", "national")


def _level_of_folders(names: Iterable[str]) -> str | None:
    """The level the nearest level-named folder gives (names nearest the file first), else None."""
    return next((n.lower() for n in names if n.lower() in LEVEL_FOLDERS), None)


def _level_from_path(path: Path) -> str:
    """A file's level from the two folders above it (laws/local/x.md, laws/repealed/某法/第一编.md). Farther
    ancestors say nothing about the law: /usr/local/share/laws/national/x.md is national."""
    return _level_of_folders(reversed(Path(path).parts[-3:-1])) or "national"


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise RegulationParseError(f"{path}: not UTF-8 or GB18030 text")


def parse_law_file(path: Path | str, *, level: str | None = None) -> LawDocument:
    """Parse a statute file (either style). The title comes from its ``# `` line, else the folder's README,
    else the file name without the ``(YYYY-MM-DD)`` revision date."""
    path = Path(path)
    text = _read_text(path)
    articles, info = parse_law_text(text)
    folder = _folder_info(str(path.parent.resolve()))
    title = info.get("title") or folder.get("title") or _FILE_DATE.sub("", path.stem).strip()
    if info.get("title") and folder.get("title") and _looks_like_part_title(info["title"]):
        title = folder["title"]
    m = _FILE_DATE.search(path.stem)
    version = date(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None
    stated = info.get("effective") or folder.get("effective")
    candidates = [d for d in (stated, version) if d]
    effective = max(candidates) if candidates else None
    repeals = {**folder.get("repeals", {}), **info.get("repeals", {})}
    repealed = KNOWN_REPEALS.get(title)
    lvl = level or _level_from_path(path)
    if repealed and lvl == "national":
        lvl = "repealed"
    if lvl == "national" and looks_local(title):
        # A 广州市… regulation ingested from a folder not named local/ was cited in every jurisdiction.
        log.warning("%s: 《%s》 is a local regulation by its title: cited only where a region matches", path, title)
        lvl = "local"
    doc = LawDocument(law=title, articles=articles, effective=effective, repealed=repealed, version=version,
                      level=lvl, path=path, repeals=repeals)
    doc.doc_key = f"{doc.law_id}/{path.name}"
    return doc


# Provinces and their kin: a regulation whose title starts with one (or with 某某经济特区) is local. Cities are not
# listed (城市市容和环境卫生管理条例 is national and starts with 城市); a city's regulation is recognised by the
# regions the jurisdictions name in routing.yaml.
PROVINCES = (
    "北京市", "天津市", "上海市", "重庆市", "河北省", "山西省", "辽宁省", "吉林省", "黑龙江省", "江苏省", "浙江省",
    "安徽省", "福建省", "江西省", "山东省", "河南省", "湖北省", "湖南省", "广东省", "海南省", "四川省", "贵州省",
    "云南省", "陕西省", "甘肃省", "青海省", "台湾省", "内蒙古自治区", "广西壮族自治区", "西藏自治区",
    "宁夏回族自治区", "新疆维吾尔自治区", "香港特别行政区", "澳门特别行政区",
)


def looks_local(title: str) -> bool:
    t = (title or "").strip("《》 ")
    if t.startswith(PRC):
        return False
    if t.startswith(PROVINCES) or re.match(r"^[\u4e00-\u9fff]{2,4}经济特区", t):
        return True
    try:
        from triage.classify.routing import get_routing

        regions = {r for j in get_routing().jurisdictions.values() for r in (j.get("regions") or [])}
    except Exception:  # noqa: BLE001 - without routing, only the provinces are known
        return False
    return any(t.startswith(r) for r in regions if len(r) >= 2)


def _looks_like_part_title(title: str) -> bool:
    return bool(re.match(rf"^第{_NUM}(编|分编|章|节)", title))


# ---------------------------------------------------------------------------------------------------------------
# Digest parsing
# ---------------------------------------------------------------------------------------------------------------
_FRONT_MATTER = re.compile(r"\A\ufeff?---\s*\n(.*?)\n---\s*\n", re.S)
_FIELD = re.compile(r"^\s*[-*]?\s*(依据|原依据|相关|适用|施行)\s*[:：]\s*(.+?)\s*$")
_CITATION = re.compile(rf"^(.+?)\s*(第({_NUM})条(?:之({_NUM}))?)$")


def front_matter(text: str) -> dict[str, Any]:
    m = _FRONT_MATTER.match(text)
    if not m:
        return {}
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def is_digest_text(text: str, name: str = "") -> bool:
    """Front matter says kind: digest. Front matter that names a digest but is not valid YAML is an error (it was
    read as a statute, found no article and was skipped with exit 0)."""
    if str(front_matter(text).get("kind", "")).strip().lower() == DIGEST:
        return True
    m = _FRONT_MATTER.match(text)
    if m and re.search(r"^kind:\s*digest\s*$", m.group(1), re.M):
        try:
            yaml.safe_load(m.group(1))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" 第 {mark.line + 2} 行" if mark is not None else ""
            raise RegulationParseError(f"{name}{where}: 摘要文件的开头（front matter）不是合法的 YAML / the digest's "
                                       f"front matter is not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    return False


def parse_citation(text: str) -> tuple[str, str, int, int]:
    """"中华人民共和国生态环境法典 第四百零一条" → (full law title, 第四百零一条, 401, 0)."""
    m = _CITATION.match(text.strip().replace("\u3000", " "))
    if not m:
        raise RegulationParseError(f"not a citation of an article: {text!r}")
    law = full_title(m.group(1).strip().strip("《》").strip())
    return law, m.group(2), cn_to_int(m.group(3)), cn_to_int(m.group(4)) if m.group(4) else 0


def parse_digest(text: str, *, name: str = "digest") -> list[DigestEntry]:
    """Parse a digest file: YAML front matter (``kind: digest``, ``topic``, optional default ``effective``) and
    entries, each a ``## heading`` followed by field lines and the paraphrase. An entry's effective date is its
    own ``施行：`` line, else the cited law's date in ``KNOWN_EFFECTIVE``, else the front matter's::

        ## 夜间施工原则上禁止
        - 依据：中华人民共和国生态环境法典 第X条
        - 原依据：中华人民共和国噪声污染防治法 第四十三条
        - 适用：noise.construction

        (the entry in the project's own words)
    """
    meta = front_matter(text)
    topic = str(meta.get("topic") or name)
    default_effective = _as_date(meta.get("effective"))
    body = _FRONT_MATTER.sub("", text, count=1)
    entries: list[DigestEntry] = []
    blocks = re.split(r"^##\s+", body, flags=re.M)[1:]
    for block in blocks:
        heading, _, rest = block.partition("\n")
        fields: dict[str, str] = {}
        lines: list[str] = []
        for line in rest.splitlines():
            f = _FIELD.match(line)
            if f and not lines:
                fields[f.group(1)] = f.group(2)
                continue
            if line.strip().startswith("#"):
                continue
            if line.strip() or lines:
                lines.append(line.strip())
        if "依据" not in fields:
            raise RegulationParseError(f"{name}: entry {heading.strip()!r} has no 依据 line")
        law, article, no, sub = parse_citation(fields["依据"])
        old = [parse_citation(c)[:2] for c in _split_list(fields.get("原依据", ""))]
        related = [parse_citation(c)[:2] for c in _split_list(fields.get("相关", ""))]
        text_body = "\n".join(p for p in "\n".join(lines).split("\n") if p.strip()).strip()
        if not text_body:
            raise RegulationParseError(f"{name}: entry {heading.strip()!r} is empty")
        try:
            stated = _as_date(fields.get("施行"))
        except RegulationParseError as exc:
            raise RegulationParseError(f"{name}: entry {heading.strip()!r}: 施行 {exc}") from exc
        entries.append(DigestEntry(
            law=law, article=article, article_no=no, sub=sub, title=heading.strip(), text=text_body, topic=topic,
            old=old, related=related, subtypes=fields.get("适用", "").replace(" ", ""),
            effective=stated or KNOWN_EFFECTIVE.get(law) or default_effective))
    return entries


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in re.split(r"[；;]", value) if v.strip()]


def _as_date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError as exc:
        raise RegulationParseError(f"not an ISO date: {value!r}") from exc


def digest_cites(entry: DigestEntry) -> str:
    parts = [f"{short_title(entry.law)}{entry.article}"]
    parts += [f"原{short_title(law)}{art}" for law, art in entry.old]
    parts += [f"{short_title(law)}{art}" for law, art in entry.related]
    return "；".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# Chunking
# ---------------------------------------------------------------------------------------------------------------
def split_text(text: str, limit: int = MAX_CHUNK_CHARS) -> list[str]:
    """Split a long article into parts of at most ``limit`` characters, at paragraph, then sentence boundaries.
    Joining the parts with "\\n" gives the text back (modulo splits inside a paragraph, joined with "")."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    for para in text.split("\n"):
        if len(para) <= limit:
            pieces.append(para)
            continue
        sentences = [s for s in re.split(r"(?<=[。；;！？])", para) if s]
        buf = ""
        for s in sentences:
            while len(s) > limit:  # a single enormous sentence: hard cut
                if buf:
                    pieces.append(buf)
                    buf = ""
                pieces.append(s[:limit])
                s = s[limit:]
            if len(buf) + len(s) > limit and buf:
                pieces.append(buf)
                buf = ""
            buf += s
        if buf:
            pieces.append(buf)
    parts: list[str] = []
    buf = ""
    for p in pieces:
        candidate = f"{buf}\n{p}" if buf else p
        if len(candidate) > limit and buf:
            parts.append(buf)
            buf = p
        else:
            buf = candidate
    if buf:
        parts.append(buf)
    return parts


def _iso(d: date | None) -> str:
    return d.isoformat() if d else ""


def law_chunks(doc: LawDocument, *, repeals: dict[str, date] | None = None) -> list[Chunk]:
    """Chunks of one parsed statute file. ``repeals`` (title → date) overrides the built-in repeal table."""
    repealed = (repeals or {}).get(doc.law) or doc.repealed
    level = doc.level
    if repealed and level == "national":
        level = "repealed"
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for art in doc.articles:
        key = f"{art.article_no}" + (f"-{art.sub}" if art.sub else "")
        if key in seen:  # a number repeated in one file (bad source): keep both, distinct ids
            seen[key] += 1
            key = f"{key}#{seen[key]}"
        else:
            seen[key] = 1
        parts = split_text(art.text)
        for i, part in enumerate(parts):
            meta = {
                "law": doc.law,
                "law_short": doc.law_short,
                "law_id": doc.law_id,
                "article": art.article,
                "article_no": art.article_no,
                "part_path": art.part_path,
                "effective": _iso(doc.effective),
                "repealed": _iso(repealed),
                "source": STATUTE,
                "level": level,
                "chunk": i,
                "chunks": len(parts),
                "cites": "",
                "title": "",
                "subtypes": "",
                "doc": doc.doc_key,
            }
            header = f"{doc.law_short} {art.article}" + (f"（{art.part_path}）" if art.part_path else "")
            if len(parts) > 1:
                header += f" 第{i + 1}部分"
            chunks.append(Chunk(id=f"{doc.law_id}:{key}:{i}", text=part, embed_text=f"{header}\n{part}",
                                metadata=meta))
    return chunks


def digest_chunks(entries: list[DigestEntry], *, file_key: str) -> list[Chunk]:
    chunks: list[Chunk] = []
    used: set[str] = set()
    for e in entries:
        base = f"digest:{file_key}:{short_title(e.law)}:{e.article_no}" + (f"-{e.sub}" if e.sub else "")
        ident, n = base, 1
        while ident in used:
            n += 1
            ident = f"{base}#{n}"
        used.add(ident)
        part_path = f"摘要 / {e.topic} / {e.title}"
        parts = split_text(e.text)
        for i, part in enumerate(parts):
            meta = {
                "law": e.law,
                "law_short": short_title(e.law),
                "law_id": f"digest:{file_key}",
                "article": e.article,
                "article_no": e.article_no,
                "part_path": part_path,
                "effective": _iso(e.effective),
                "repealed": _iso(KNOWN_REPEALS.get(e.law)),
                "source": DIGEST,
                "level": DIGEST,
                "chunk": i,
                "chunks": len(parts),
                "cites": digest_cites(e),
                "title": e.title,
                "subtypes": e.subtypes,
                "doc": f"digest:{file_key}",
            }
            embed = f"{e.title}｜{short_title(e.law)} {e.article}（{e.topic}）\n{part}"
            chunks.append(Chunk(id=f"{ident}:{i}", text=part, embed_text=embed, metadata=meta))
    return chunks


# ---------------------------------------------------------------------------------------------------------------
# Files → chunks
# ---------------------------------------------------------------------------------------------------------------
class NoLawFilesError(RegulationParseError):
    """A folder given to ingest holds no law file."""


def collect_law_files(paths: Iterable[Path | str]) -> list[tuple[Path, str]]:
    """Expand folders (recursively, ``*.md``/``*.txt``, README.md and hidden folders excluded) into (file, level) and
    check that every path exists and every folder holds at least one law file (NoLawFilesError otherwise).

    Hidden folders and the level (national / local / repealed) are judged from the folder given down, never from
    above it: "../shared/data/laws" starts with a dot, and /usr/local holds national laws too."""
    files: list[tuple[Path, str]] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise FileNotFoundError(str(p))
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in LAW_SUFFIXES
                           and f.name.lower() != "readme.md"
                           and not any(x.startswith(".") for x in f.relative_to(p).parts))
            if not found:
                raise NoLawFilesError(f"{p}: no law file ({'/'.join(LAW_SUFFIXES)}) in this folder")
            for f in found:
                below = (p.resolve().name, *f.relative_to(p).parts[:-1])  # the folder given, then those under it
                files.append((f, _level_of_folders(reversed(below)) or "national"))
        else:
            files.append((p, _level_from_path(p)))
    unique: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for f, level in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append((f, level))
    return unique


@dataclass
class ParsedFile:
    path: Path
    kind: str  # statute | digest
    chunks: list[Chunk]
    articles: int
    law: str
    doc_key: str


def parse_files(files: list[tuple[Path, str]]) -> list[ParsedFile]:
    """Parse every (file, level) of collect_law_files; statutes first get the repeal dates stated by any text in
    the same batch."""
    statutes: list[LawDocument] = []
    out: list[ParsedFile] = []
    for f, level in files:
        text = _read_text(f)
        if is_digest_text(text, str(f)):
            entries = parse_digest(text, name=f.stem)
            chunks = digest_chunks(entries, file_key=f.stem)
            out.append(ParsedFile(f, DIGEST, chunks, len(entries), "（摘要）" + f.stem, f"digest:{f.stem}"))
        else:
            statutes.append(parse_law_file(f, level=level))
    repeals: dict[str, date] = {}
    for doc in statutes:
        repeals.update(doc.repeals)
    # "《…》同时废止" in a law's text names other laws; never let a text repeal itself.
    for doc in statutes:
        own = {k: v for k, v in repeals.items() if k != doc.law}
        out.append(ParsedFile(doc.path, STATUTE, law_chunks(doc, repeals=own), len(doc.articles), doc.law,
                              doc.doc_key))
    return out


def parse_paths(paths: Iterable[Path | str]) -> list[ParsedFile]:
    return parse_files(collect_law_files(paths))


# ---------------------------------------------------------------------------------------------------------------
# Ingest
# ---------------------------------------------------------------------------------------------------------------
def content_hash(chunk: Chunk, model_id: str = "") -> str:
    meta = {k: v for k, v in chunk.metadata.items() if k != "hash"}
    payload = json.dumps([model_id, chunk.embed_text, chunk.text, meta], ensure_ascii=False, sort_keys=True)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()


def _existing_hashes(store: KnowledgeStore, ids: list[str]) -> dict[str, str]:
    col = store.collection(REGULATIONS)
    found: dict[str, str] = {}
    for i in range(0, len(ids), 500):
        res = col.get(ids=ids[i:i + 500], include=["metadatas"])
        for id_, meta in zip(res["ids"], res["metadatas"]):
            found[id_] = str((meta or {}).get("hash", ""))
    return found


def _ids_of_doc(store: KnowledgeStore, doc_key: str) -> set[str]:
    res = store.collection(REGULATIONS).get(where={"doc": doc_key}, include=[])
    return set(res["ids"])


def ingest_paths(paths: Iterable[Path | str], *, store: KnowledgeStore, embedder, progress: bool = True,
                 on_progress: Callable[[int, int], None] | None = None) -> IngestReport:
    """Parse law files/folders (statutes and digests) and write their chunks into the regulations collection.

    Idempotent: a chunk whose id exists with the same content hash is not re-embedded; ids that a re-ingested
    file no longer produces are deleted. Raises FileNotFoundError for a missing path, RegulationParseError for
    an unreadable file.
    """
    started = time.perf_counter()
    files = collect_law_files(paths)
    parsed = parse_files(files)
    report = IngestReport(files=len(files))
    model_id = str(getattr(embedder, "model_id", ""))
    todo: list[Chunk] = []
    stale: list[str] = []
    for pf in parsed:
        if not pf.chunks:
            report.skipped.append(str(pf.path))
            log.warning("no articles found in %s", pf.path)
            continue
        if pf.law not in report.laws:
            report.laws.append(pf.law)
        report.articles += pf.articles
        report.chunks += len(pf.chunks)
        for c in pf.chunks:
            c.metadata["hash"] = content_hash(c, model_id)
        ids = [c.id for c in pf.chunks]
        if len(set(ids)) != len(ids):
            raise RegulationParseError(f"{pf.path}: duplicate chunk ids")
        existing = _existing_hashes(store, ids)
        for c in pf.chunks:
            old = existing.get(c.id)
            if old is None:
                report.added += 1
                todo.append(c)
            elif old != c.metadata["hash"]:
                report.updated += 1
                todo.append(c)
            else:
                report.unchanged += 1
        stale.extend(sorted(_ids_of_doc(store, pf.doc_key) - set(ids)))

    if stale:
        col = store.collection(REGULATIONS)
        for i in range(0, len(stale), 500):
            col.delete(ids=stale[i:i + 500])
        report.removed = len(stale)

    # Similar lengths in one batch: far less padding for the transformer (articles run from 20 to 500 chars).
    todo.sort(key=lambda c: len(c.embed_text))
    bar = None
    if progress and todo:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]向量化条文"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       transient=False)
        bar.start()
        task = bar.add_task("embed", total=len(todo))
    try:
        for i in range(0, len(todo), EMBED_BATCH):
            batch = todo[i:i + EMBED_BATCH]
            vectors = embedder.embed_passages([c.embed_text for c in batch])
            store.upsert(REGULATIONS, [c.id for c in batch], vectors, [c.text for c in batch],
                         [c.metadata for c in batch])
            done = min(i + EMBED_BATCH, len(todo))
            if bar is not None:
                bar.update(task, completed=done)
            if on_progress is not None:
                on_progress(done, len(todo))
    finally:
        if bar is not None:
            bar.stop()
    report.superseded = end_superseded_versions(store, {pf.law for pf in parsed if pf.kind == STATUTE and pf.chunks})
    report.seconds = round(time.perf_counter() - started, 2)
    log.info("ingested %d files: %d articles, %d chunks (%d added, %d updated, %d unchanged, %d removed) in %.1fs",
             report.files, report.articles, report.chunks, report.added, report.updated, report.unchanged,
             report.removed, report.seconds)
    return report


def end_superseded_versions(store: KnowledgeStore, laws: Iterable[str]) -> list[str]:
    """Each earlier version of these laws ends where the next one takes effect (its ``repealed`` set to that
    date, unless it ended earlier already): an amended local regulation, ingested as a new file beside the old
    one, left both in force, so replies could cite the superseded text. Versions are told apart by their
    ``effective`` date; the several files of one law (the Code's parts) share it. Returns what changed, as
    "law effective → until" lines."""
    col = store.collection(REGULATIONS)
    changed: list[str] = []
    for law in sorted(set(laws)):
        res = col.get(where={"$and": [{"law": law}, {"source": STATUTE}]}, include=["metadatas"])
        by_start: dict[str, list[tuple[str, dict]]] = {}
        for id_, meta in zip(res["ids"], res["metadatas"]):
            if meta and meta.get("effective"):
                by_start.setdefault(str(meta["effective"]), []).append((id_, meta))
        starts = sorted(by_start)
        for start, successor in zip(starts, starts[1:]):
            ids, metas = [], []
            for id_, meta in by_start[start]:
                ends = str(meta.get("repealed") or "")
                if ends and ends <= successor:
                    continue  # it ended before the next version began
                level = "repealed" if meta.get("level") == "national" else meta.get("level")
                ids.append(id_)
                metas.append({**meta, "repealed": successor, "level": level})
            if ids:
                for i in range(0, len(ids), 500):
                    col.update(ids=ids[i:i + 500], metadatas=metas[i:i + 500])
                changed.append(f"{law} {start} → {successor}")
                log.info("%s: the version in force from %s ends on %s, when the next one takes effect",
                         law, start, successor)
    return changed


def default_knowledge_dir(settings) -> Path:
    return Path(settings.knowledge_dir) / "regulations"


def ingest_default_knowledge(settings, store: KnowledgeStore, embedder, *, progress: bool = False) -> IngestReport:
    """Ingest the project's own digest (knowledge/regulations/): the KB a fresh machine starts with."""
    folder = default_knowledge_dir(settings)
    try:
        return ingest_paths([folder], store=store, embedder=embedder, progress=progress)
    except (FileNotFoundError, NoLawFilesError):
        log.warning("no regulation digest at %s", folder)
        return IngestReport()


def ensure_default_knowledge(settings, store: KnowledgeStore, embedder, *, progress: bool = False
                             ) -> IngestReport | None:
    """First use: if the regulations collection is empty, ingest the digest. Returns the report, or None."""
    if store.count(REGULATIONS) > 0:
        return None
    return ingest_default_knowledge(settings, store, embedder, progress=progress)


# ---------------------------------------------------------------------------------------------------------------
# In force
# ---------------------------------------------------------------------------------------------------------------
def _meta_date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def in_force(meta: dict[str, Any], on: date) -> bool:
    """effective <= on and (no repealed date or on < repealed). An unknown effective date counts as in force."""
    eff = _meta_date(meta.get("effective"))
    rep = _meta_date(meta.get("repealed"))
    if eff and on < eff:
        return False
    return not (rep and on >= rep)


# ---------------------------------------------------------------------------------------------------------------
# Law names, article numbers and citations as people write them (replies, LLM output, drafting)
# ---------------------------------------------------------------------------------------------------------------
# Short forms people write for the big laws.
LAW_ALIASES = {
    "环保法": "环境保护法",
    "环评法": "环境影响评价法",
    "大气法": "大气污染防治法",
    "水污法": "水污染防治法",
    "固废法": "固体废物污染环境防治法",
    "噪声法": "噪声污染防治法",
    "土壤法": "土壤污染防治法",
}
_TEXT_NUM_CHARS = "零〇○一二三四五六七八九十百千两0-9０-９"
_WIDE = str.maketrans("０１２３４５６７８９○", "0123456789〇")


def normalize_law(name: str) -> str:
    """A law title without 《》, the 中华人民共和国 prefix, a version suffix or spaces.

    '《中华人民共和国大气污染防治法》（2018年修正）' → '大气污染防治法'
    """
    s = re.sub(r"\s+", "", name or "").lstrip("《〈<\"“")
    s = re.sub(r"[（(][^）)]*[）)]$", "", s)  # (2018年修正) / (2022-11-30)
    s = s.strip("《》〈〉<>\"“”")
    return short_title(s)


def law_key(name: str) -> str:
    """The key two spellings of one law share: normalize_law, then the usual short forms (大气法 → 大气污染防治法)."""
    key = normalize_law(name)
    return LAW_ALIASES.get(key, key)


def article_no(label: str | int | None) -> int | None:
    """'第八十七条' / '第87条' / '87' / 87 → 87; None when there is no number."""
    if label is None:
        return None
    if isinstance(label, int):
        return label
    m = re.search(rf"第?([{_TEXT_NUM_CHARS}]+)条?", str(label))
    if not m:
        return None
    try:
        return cn_to_int(m.group(1).translate(_WIDE))
    except ValueError:
        return None


@dataclass(frozen=True)
class TextCitation:
    law: str  # as written, without 《》
    article_no: int
    span: tuple[int, int]  # where 《law》…第N条 sits in the text

    @property
    def article(self) -> str:
        return article_label(self.article_no)


_TNUM = rf"[{_TEXT_NUM_CHARS}]+"
# 《law》, optional （version）, optional 的/规定/相关规定, then 第N条 (…款/项), then more 、第M条.
_TEXT_CITE = re.compile(
    rf"《([^《》]{{2,60}})》\s*(?:[（(][^）)]{{0,20}}[）)])?\s*(?:的|中|之)?(?:相关)?(?:规定)?\s*"
    rf"(第{_TNUM}条(?:第{_TNUM}[款项])*(?:\s*[、，,和及与或]\s*第{_TNUM}条(?:第{_TNUM}[款项])*)*)"
)
_TEXT_ART = re.compile(rf"第({_TNUM})条")


def find_citations(text: str) -> list[TextCitation]:
    """Every 《…》第…条 reference in free text, one entry per article (第三十条、第三十一条 → two)."""
    out: list[TextCitation] = []
    for m in _TEXT_CITE.finditer(text or ""):
        law = m.group(1).strip()
        if not re.search(r"(法|法典|条例|办法|规定|规则|细则|决定)$", law):
            continue  # 《声环境质量标准》… and similar are not statutes with articles
        for a in _TEXT_ART.finditer(m.group(2)):
            n = article_no(a.group(1))
            if n:
                out.append(TextCitation(law=law, article_no=n, span=(m.start(), m.end())))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Law-level dates: is a citation of this law valid on a given day?
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LawDates:
    """A law's window as a whole: first entry into force (any version) until repealed, and what replaced it.

    ``numbered_since``: when the article numbering of the text we hold took effect (the last revision that
    renumbered the law); article-level citations of that text are valid from then on.
    """

    effective: date | None
    repealed: date | None = None
    successor: str | None = None
    numbered_since: date | None = None


# First entry into force of the laws that complaint replies cite (short titles). Repeals by the Code come from
# KNOWN_REPEALS; the two earlier replacements are listed here.
_FIRST_IN_FORCE: dict[str, date] = {
    "生态环境法典": CODE_EFFECTIVE,
    "环境保护法": date(1989, 12, 26),
    "环境影响评价法": date(2003, 9, 1),
    "海洋环境保护法": date(1983, 3, 1),
    "大气污染防治法": date(1988, 6, 1),
    "水污染防治法": date(1984, 11, 1),
    "土壤污染防治法": date(2019, 1, 1),
    "固体废物污染环境防治法": date(1996, 4, 1),
    "噪声污染防治法": date(2022, 6, 5),
    "环境噪声污染防治法": date(1997, 3, 1),
    "放射性污染防治法": date(2003, 10, 1),
    "清洁生产促进法": date(2003, 1, 1),
    "治安管理处罚法": date(2006, 3, 1),
    "行政处罚法": date(1996, 10, 1),
    "道路交通安全法": date(2004, 5, 1),
    "城市市容和环境卫生管理条例": date(1992, 8, 1),
    "信访工作条例": date(2022, 5, 1),
    "信访条例": date(2005, 5, 1),
    "排污许可管理条例": date(2021, 3, 1),
    "城镇排水与污水处理条例": date(2014, 1, 1),
    "畜禽规模养殖污染防治条例": date(2014, 1, 1),
    "建设项目环境保护管理条例": date(1998, 11, 29),
}
_REPLACED: dict[str, tuple[date, str]] = {
    "环境噪声污染防治法": (date(2022, 6, 5), f"{PRC}噪声污染防治法"),
    "信访条例": (date(2022, 5, 1), "信访工作条例"),
}
# When the numbering of the repealed single laws' last texts (../shared/data/laws/repealed) took effect.
_NUMBERED_SINCE: dict[str, date] = {
    "环境保护法": date(2015, 1, 1),
    "大气污染防治法": date(2016, 1, 1),  # 2015 revision; the 2018 amendment kept the numbers
    "水污染防治法": date(2018, 1, 1),
    "土壤污染防治法": date(2019, 1, 1),
    "固体废物污染环境防治法": date(2020, 9, 1),
    "噪声污染防治法": date(2022, 6, 5),
}


def law_dates(name: str) -> LawDates | None:
    """The window of a law we know (any spelling of its title); None for others (a local regulation, say)."""
    key = law_key(name)
    first = _FIRST_IN_FORCE.get(key)
    if first is None:
        return None
    repealed = KNOWN_REPEALS.get(full_title(key))
    successor = CODE_TITLE if repealed else None
    if key in _REPLACED:
        repealed, successor = _REPLACED[key]
    numbered = _NUMBERED_SINCE.get(key) or KNOWN_EFFECTIVE.get(full_title(key)) or first
    return LawDates(first, repealed, successor, numbered)


def law_in_force(name: str, on: date) -> bool | None:
    """True / False for a law we know; None when we cannot judge."""
    d = law_dates(name)
    if d is None:
        return None
    return in_force({"effective": d.effective, "repealed": d.repealed}, on)
