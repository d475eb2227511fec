"""Duplicates (重复件) and relapses (反弹) by text and place similarity.

A duplicate is an open complaint about the same problem at the same place, received within a short window; a
relapse is a new complaint matching a case closed recently at the same place. Both are only flags for the
dispatcher (a merge is always a person's decision).

Similarity is rapidfuzz over the complaint with the hotline's boilerplate removed (``市民来电反映：`` …
``请…核实处理``), on characters and on jieba tokens, plus a place similarity: the addresses when both have
one, otherwise the place names found in the texts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import lru_cache

from rapidfuzz import fuzz
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

# Thresholds, all in one place (0–100 rapidfuzz scores). Calibrated on data/cases/haikou12345_env_dev.csv
# (bench/calibrate_duplicates.py prints the table): its 45 labelled duplicate pairs all score text ≥ 99 (re-recorded
# calls of the same complaint) and are all found; the other same-type pairs above 80 are nearly all verbatim
# repeats the labels missed, while distinct complaints that share a street reach 79.5 (two building sites on the
# same road). A flag is only a hint to the dispatcher, so we keep recall high and stop just above that.
DUP_TEXT_MIN = 80.0  # same problem, described again (place known and matching)
DUP_TEXT_MIN_NO_PLACE = 90.0  # no place on one side: only a near-verbatim repeat counts
PLACE_MIN = 80.0  # partial_ratio of addresses / place names: the same building, shop or street number
RELAPSE_PLACE_MIN = 85.0  # a relapse is only about the same place; the wording may differ after months
RELAPSE_TEXT_MIN = 55.0  # … and about the same kind of problem (or the same pollution type)
DUPLICATE_WINDOW = timedelta(days=7)
RELAPSE_WINDOW = timedelta(days=90)
NOT_ENV = "not_environmental"

_LEAD = re.compile(
    r"^\s*(?:[0-9]{4}[-/年][0-9]{1,2}[-/月][0-9]{1,2}日?\s*[0-9:：]*\s*)?"
    r"(?:市民|群众|网友|来电人|投诉人|业主)?(?:来电|微信|网上|来信|短信|来访|留言|电话|通过\w{0,6})?"
    r"(?:反映|反应|投诉|举报|称)[:：，,]?\s*")
_TAIL = re.compile(r"[，,。！!；;\s]*(?:请|望|希望|要求|恳请|烦请)[^。！!]{0,40}?(?:核实|处理|查处|解决|协调|整治|调查|跟进)"
                   r"[^。！!]{0,20}[。！!]?\s*(?:谢谢[！!。]?)?\s*$")
_MASK = re.compile(r"\[电话\]|\[手机\]|\d{7,}")
_PUNCT = re.compile(r"[\s，。、；：！？,.;:!?()（）【】\[\]“”\"'‘’《》<>—\-_/\\|~·…]+")
_PLACE = re.compile(
    r"[\u4e00-\u9fa5A-Za-z0-9]{2,14}?(?:路|街|大道|巷|弄|里|村|镇|乡|社区|小区|花园|公寓|大厦|广场|市场|苑|庭|府|城|园|湾|"
    r"酒店|宾馆|学校|医院|工业区|工业园|开发区|新村|家园|中心|大楼|商场|农贸市场|码头|公园)"
    r"(?:[0-9一二三四五六七八九十零〇\-]+(?:号|栋|幢|座|巷|弄|期|楼|路))*")
_STOP = {"的", "了", "在", "和", "与", "及", "是", "有", "都", "也", "很", "就", "被", "对", "将", "等", "到", "从",
         "我", "我们", "他们", "其", "该", "这", "那", "一个", "进行", "存在", "问题", "情况", "现象", "严重", "影响"}


@lru_cache(maxsize=8192)
def normalize(text: str | None) -> str:
    """The complaint without boilerplate, masks, punctuation and spaces; lower-cased."""
    if not text:
        return ""
    t = _MASK.sub("", str(text))
    for _ in range(2):  # "市民来电反映：市民微信反映：…" happens
        t = _LEAD.sub("", t, count=1)
    t = _TAIL.sub("", t)
    return _PUNCT.sub("", t).lower()


def _jieba():
    import jieba

    jieba.setLogLevel(60)  # its dictionary-loading chatter
    return jieba


@lru_cache(maxsize=4096)
def tokens(norm: str) -> tuple[str, ...]:
    return tuple(w for w in _jieba().lcut(norm) if w.strip() and w not in _STOP)


def load_tokenizer() -> None:
    """Load jieba's dictionary now (about 0.7 s): at start-up, not inside the first complaint after it."""
    _jieba().initialize()


def text_similarity(a: str, b: str) -> float:
    """0–100: the better of character similarity and jieba-token similarity (order-insensitive)."""
    na, nb = normalize(a), normalize(b)
    if not na or not nb:
        return 0.0
    char = fuzz.ratio(na, nb)
    tok = fuzz.token_sort_ratio(" ".join(tokens(na)), " ".join(tokens(nb)))
    return float(max(char, tok))


_PLACE_TEXT = re.compile(r"[\s，。、；：！？,.;:!?()（）【】\[\]“”\"'‘’《》<>—_/\\|~·…]+")
_LEADING_WORDS = re.compile(r"^.*[在到于住往近]")  # "其到南海大道172-7号" → "南海大道172-7号"
_NOT_A_PLACE = re.compile(r"有人|正在|跳广场|播放|进行|产生|多次|每天|经常|希望|部门|反映")  # "有人跳广场(舞)"…
# Province, city, district, county names before the place. Not a 区 or 市 that ends a place's own name: "华庭小区"
# and "华联超市" were stripped whole as if they were districts, so a complaint about them named no place at all.
_ADMIN_PREFIX = re.compile(r"^(?:[\u4e00-\u9fa5]{1,5}?(?:省|(?<![超城夜菜集门])市|(?<![小社园景校厂街片矿营城])区|县))+")
# Areas too large to mean "the same place": a road without a number, a town, a sub-district, a community. A lane
# (巷, 弄) is short enough to be one place.
_WEAK_END = re.compile(r"(?:路|街|大道|镇|乡|社区|开发区|工业区|工业园|城|中心)$")


@lru_cache(maxsize=8192)
def places(text: str | None) -> tuple[str, ...]:
    """Specific places a complaint names (compounds, buildings, villages, road + number…), longest first.

    Roads without a number, towns and districts are left out: two complaints on the same long road are not
    "the same place".
    """
    if not text:
        return ()
    t = _MASK.sub("", text)
    t = _LEAD.sub("", t, count=1)
    found = set()
    for m in _PLACE.finditer(_PLACE_TEXT.sub(" ", t)):
        seg = _ADMIN_PREFIX.sub("", _LEADING_WORDS.sub("", m.group(0)))
        if len(seg) < 3 or _WEAK_END.search(seg) or _NOT_A_PLACE.search(seg):
            continue
        found.add(seg.lower())
    return tuple(sorted(found, key=len, reverse=True))


_NUMBER = re.compile(r"\d+")


def _segment_score(x: str, y: str) -> float:
    nx, ny = _NUMBER.findall(x), _NUMBER.findall(y)
    if nx and ny and nx != ny:  # 中山北路2号 ≠ 中山北路12号
        return 0.0
    if x in y or y in x:  # "吾悦广场" / "新城吾悦广场"
        return 100.0
    return float(fuzz.ratio(x, y))


def place_similarity(addr_a: str | None, text_a: str | None, addr_b: str | None, text_b: str | None) -> float | None:
    """0–100 over the specific places of each side (its address and its text); None when a side names none."""
    pa = places(addr_a) + places(text_a) if addr_a else places(text_a)
    pb = places(addr_b) + places(text_b) if addr_b else places(text_b)
    if not pa or not pb:
        return None
    return max(_segment_score(x, y) for x in pa[:8] for y in pb[:8])


@dataclass(frozen=True)
class Match:
    complaint_id: int
    text_score: float
    place_score: float | None

    @property
    def score(self) -> float:
        return self.text_score if self.place_score is None else (self.text_score + self.place_score) / 2


def is_duplicate(text_score: float, place_score: float | None) -> bool:
    if place_score is None:
        return text_score >= DUP_TEXT_MIN_NO_PLACE
    return text_score >= DUP_TEXT_MIN and place_score >= PLACE_MIN


def is_relapse(text_score: float, place_score: float | None, same_problem: bool) -> bool:
    if place_score is None or place_score < RELAPSE_PLACE_MIN:
        return text_score >= DUP_TEXT_MIN_NO_PLACE  # verbatim again, place or not
    return same_problem or text_score >= RELAPSE_TEXT_MIN


def same_problem(type_a: str | None, subtype_a: str | None, type_b: str | None, subtype_b: str | None) -> bool:
    """Same subtype where both are specific; else the same pollution type. Non-environmental never relapses."""
    if not type_a or type_a != type_b or type_a == NOT_ENV:
        return False
    specific = [s for s in (subtype_a, subtype_b) if s and not s.endswith(".other")]
    if len(specific) == 2:
        return subtype_a == subtype_b
    return True


Labels = tuple[str | None, str | None]


def _suggested(session: Session, ids: list[int]) -> dict[int, Labels]:
    """The latest suggested (type, subtype) of each complaint: three columns, not the evidence-laden rows."""
    from triage.queue.models import Suggestion

    out: dict[int, Labels] = {}
    for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
        rows = session.execute(
            select(Suggestion.complaint_id, Suggestion.pollution_type, Suggestion.subtype)
            .where(Suggestion.complaint_id.in_(ids[start:start + 900])).order_by(Suggestion.id))
        out.update({cid: (ptype, sub) for cid, ptype, sub in rows})  # later suggestions overwrite earlier ones
    return out


def _candidate_columns(Complaint) -> tuple:  # noqa: N803 - the mapped class, imported late
    """What matching reads of a candidate: plain columns, not ORM rows (intake runs this for every complaint)."""
    return Complaint.id, Complaint.text, Complaint.address, Complaint.pollution_type, Complaint.subtype


def _same_set(Complaint, complaint):  # noqa: N803 - the mapped class, imported late
    """Real complaints are never linked to the fictitious demo set (a real relapse of demo case #2 was reported),
    nor demo ones to real ones."""
    from triage.queue.models import DEMO_SOURCE

    if complaint.source == DEMO_SOURCE:
        return Complaint.source == DEMO_SOURCE
    return or_(Complaint.source.is_(None), Complaint.source != DEMO_SOURCE)


def _labels(c, suggested: dict[int, Labels]) -> Labels:
    """The dispatcher's labels where the complaint is assigned, else the latest suggestion's."""
    if c.pollution_type:
        return c.pollution_type, c.subtype
    return suggested.get(c.id, (None, None))


def find_duplicate(session: Session, complaint, *, window: timedelta = DUPLICATE_WINDOW) -> Match | None:
    """The best open complaint received within ``window`` before this one that repeats it."""
    from triage.queue.models import OPEN_STATUSES, Complaint

    since = complaint.received_at - window
    rows = session.execute(
        select(*_candidate_columns(Complaint), Complaint.duplicate_of).where(
            Complaint.id != complaint.id,
            Complaint.status.in_([s.value for s in OPEN_STATUSES]),
            Complaint.merged_into.is_(None),
            Complaint.received_at >= since,
            Complaint.received_at <= complaint.received_at,
            _same_set(Complaint, complaint),
        ).order_by(Complaint.received_at.desc()).limit(2000)
    ).all()
    suggested = _suggested(session, [complaint.id] + [r.id for r in rows])
    best: Match | None = None
    mine = _labels(complaint, suggested)[0]
    for other in rows:
        theirs = _labels(other, suggested)[0]
        if mine and theirs and mine != theirs:
            continue
        ts = text_similarity(complaint.text, other.text)
        if ts < DUP_TEXT_MIN:
            continue
        ps = place_similarity(complaint.address, complaint.text, other.address, other.text)
        if is_duplicate(ts, ps):
            m = Match(other.id, ts, ps)
            # Equal scores go to the earlier complaint (rows come newest first): the original, not the last repeat.
            if best is None or m.score >= best.score:
                best = m
    if best is None:
        return None
    # A repeat of a repeat points at the original it repeats, while that is still open and in the window:
    # five calls about one refuse station read 43→42, 44→43, 45→44 … instead of all → 42.
    flagged = {r.id: r.duplicate_of for r in rows}
    root, seen = best.complaint_id, {best.complaint_id}
    while flagged.get(root) is not None and flagged[root] in flagged and flagged[root] not in seen:
        root = flagged[root]
        seen.add(root)
    return best if root == best.complaint_id else replace(best, complaint_id=root)


def find_relapse(session: Session, complaint, *, window: timedelta = RELAPSE_WINDOW) -> Match | None:
    """The best case closed within ``window`` before this complaint, at the same place, same problem."""
    from triage.queue.models import Complaint, Status

    since = complaint.received_at - window
    rows = session.execute(
        select(*_candidate_columns(Complaint)).where(
            Complaint.id != complaint.id,
            Complaint.status == Status.closed.value,
            Complaint.merged_into.is_(None),
            Complaint.closed_at >= since,
            Complaint.closed_at <= complaint.received_at,
            _same_set(Complaint, complaint),
        ).order_by(Complaint.closed_at.desc()).limit(5000)
    ).all()
    suggested = _suggested(session, [complaint.id] + [r.id for r in rows])
    best: Match | None = None
    mine, my_sub = _labels(complaint, suggested)
    if mine == NOT_ENV:
        return None
    for other in rows:
        theirs, their_sub = _labels(other, suggested)
        if theirs == NOT_ENV or (mine and theirs and mine != theirs):
            continue
        ps = place_similarity(complaint.address, complaint.text, other.address, other.text)
        if ps is None or ps < RELAPSE_PLACE_MIN:
            # only a near-verbatim repeat can make it without a matching place
            if fuzz.ratio(normalize(complaint.text), normalize(other.text)) < DUP_TEXT_MIN_NO_PLACE - 10:
                continue
        ts = text_similarity(complaint.text, other.text)
        if is_relapse(ts, ps, same_problem=same_problem(mine, my_sub, theirs, their_sub)):
            m = Match(other.id, ts, ps)
            if best is None or m.score > best.score:
                best = m
    return best

