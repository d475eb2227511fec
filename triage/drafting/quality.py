"""Quality check for any reply draft: ours, the LLM's, or a real one written by a department.

``check_draft`` looks for the six parts of an official reply by textual cues, measures how much of the
complaint's own vocabulary the reply takes up, checks every cited article (structured citations and
《…》第…条 references in the text) against the knowledge base and against the law in force on the date of the
facts, and rejects leftover placeholders. It returns a score in [0, 1] and Chinese messages for staff.

Score = 0.55 × share of parts present + 0.25 × relevance + 0.20 × citation score, minus 0.3 when a
placeholder is left and 0.1 when the text is too short to be a reply, clipped to [0, 1]. The citation
score is 1 when every citation checks out, 0.5 when there is nothing verifiable, and drops by 0.5 for each
citation that is out of force on the facts' date or does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any

from triage.drafting.dates import as_date, today, window_contains
from triage.drafting.types import Citation, QualityReport
from triage.kb.regulations import article_label, article_no, find_citations, law_dates, law_key

PARTS = ("称呼", "诉求复述", "核查情况", "处理措施", "法律依据", "结语")

_CUES: dict[str, re.Pattern[str]] = {
    "称呼": re.compile(r"您好|你好|尊敬的|市民朋友|网友|网民|先生|女士|同志|来电人"),
    "诉求复述": re.compile(
        r"您(?:于[^，。]{0,20})?(?:所)?(?:反映|来电|来信|留言|投诉|举报|咨询|诉求|提出)|"
        r"(?:反映|投诉|举报|留言|来信|来电)(?:的|了)?[^。]{0,40}(?:问题|情况|事项|一事|诉求)|"
        r"(?:收悉|已收到|知悉)|关于[^。]{2,60}的(?:问题|投诉|诉求|来信|留言)"),
    "核查情况": re.compile(
        r"经(?:现场|实地|认真|详细|我局|我单位|执法人员|工作人员)?(?:核查|核实|调查|查|了解|勘查|检查|走访|监测|检测)|"
        r"(?:现场|实地)(?:核查|核实|检查|查看|勘查|踏勘|调查)|(?:到达|赶赴|前往|赴|来到)(?:了)?(?:现场|该处|该地)|"
        r"(?:情况|反映)(?:基本)?(?:属实|不属实)|部分属实|查明|核查情况|调查处理|进行了?(?:核实|核查|调查)|"
        r"据(?:查|了解|核实)|排查|调查摸底|(?:检查|巡查|核查|执法人员|工作人员)[^。]{0,10}(?:发现|确认)"),
    "处理措施": re.compile(
        r"责令|(?:要求|督促|敦促)[^。]{0,20}(?:整改|停止|立即|限期|安装|清理|清运|规范|控制|落实|采取|拆除|停工|降低|调整)|"
        r"已(?:经)?(?:督促|要求|责令|安排|清理|清运|整改|拆除|处罚|立案|查处|取缔|关停|停止|安装|完成|协调|处理)|"
        r"下一步|(?:将|会)(?:继续|加强|持续|进一步|加大|依法|督促|安排|组织|联合|会同|对)|整改|处罚|罚款|立案|限期|约谈|"
        r"清运|关停|取缔|停业|巡查|监管|劝导|教育|制止|查处|采取[^。]{0,10}措施"),
    "法律依据": re.compile(
        r"《[^》]{2,60}(?:法|法典|条例|办法|规定|规则|细则|标准|决定)》|"
        r"(?:依据|根据|按照|依照)[^。]{0,30}(?:法律|法规|条例|规定|办法|标准)|"
        r"第[零〇一二三四五六七八九十百千\d]+条"),
    "结语": re.compile(
        r"感谢|谢谢|欢迎[^。]{0,12}(?:监督|来电|反映|联系)|如(?:有|对)[^。]{0,20}(?:疑问|问题|异议|不满|意见)|"
        r"特此(?:回复|答复|函复)|此复|联系电话|咨询电话|(?:理解|关心|支持)与?和?(?:支持|理解|监督)|请予?谅解|敬请谅解"),
}
_CLOSING_WINDOW = 0.4  # the closing must sit in the last 40% of the text (or its last 160 characters)

PLACEHOLDER_RE = re.compile(
    r"(?<![A-Za-z])(?:[xX]{2,})(?![A-Za-z])|××|○○|〇〇|【\s*】|〔\s*〕|\[\s*\]|（\s*）|\(\s*\)|"
    r"【[^】]{0,20}(?:填写|待定|待补|补充|请填|此处)[^】]{0,20}】|〔[^〕]{0,20}(?:填写|待定|待补|请填)[^〕]{0,20}〕|"
    r"\{\{?[^{}]{0,30}\}?\}|TODO|待填"
)

# Bigrams that occur in nearly every complaint or reply and say nothing about this complaint.
_STOP_BIGRAMS = set(
    "您好 你好 反映 问题 我们 希望 相关 部门 领导 现在 已经 没有 一个 这个 什么 可以 进行 情况 处理 核实 市民 "
    "来电 谢谢 政府 工作 我局 有关 及时 尽快 请求 投诉 请市 城管 核实 影响 严重 居民 周边 生活 正常 处理 "
    "回复 如下 现将 收悉 感谢 支持 关心 您的 你们 他们 就是 但是 而且 因为 所以 如果 还是 这样 那么 自己 "
    "一直 多次 不能 不是 也是 都是 时候 之后 以后 目前 已于 的问 题已 的情 况如 经核 核查 实际 存在".split()
)
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")

KnownArticles = (
    Callable[[str, int], "bool | None"] | Iterable[tuple[str, Any]] | Mapping[tuple[str, Any], Any] | Any | None
)


def content_bigrams(text: str) -> set[str]:
    out: set[str] = set()
    for run in _CJK_RUN.findall(text or ""):
        for i in range(len(run) - 1):
            bg = run[i : i + 2]
            if bg not in _STOP_BIGRAMS:
                out.add(bg)
    return out


def relevance(draft: str, complaint: str, *, saturation: int = 30) -> float:
    """Share of the complaint's distinctive character bigrams that the draft takes up.

    Saturates once ``saturation`` of them (or all, for a short complaint) are shared: a reply need not repeat
    a long complaint word for word to be about it.
    """
    c = content_bigrams(complaint)
    if not c:
        return 0.0
    d = content_bigrams(draft)
    shared = len(c & d)
    return round(min(1.0, shared / min(len(c), saturation)), 3)


def detect_parts(text: str) -> dict[str, bool]:
    text = text or ""
    head = text[:80]
    tail_start = min(int(len(text) * (1 - _CLOSING_WINDOW)), max(0, len(text) - 160))
    parts = {}
    for name, rx in _CUES.items():
        if name == "称呼":
            parts[name] = bool(rx.search(head))
        elif name == "结语":
            parts[name] = bool(rx.search(text[tail_start:]))
        else:
            parts[name] = bool(rx.search(text))
    return parts


class _Lookup:
    """known_articles in any of the accepted shapes → exists(law, no) and dates(law, no)."""

    def __init__(self, known: KnownArticles):
        self.known = known
        self._keys: set[tuple[str, int]] | None = None
        self._laws: set[str] = set()
        self._meta: dict[tuple[str, int], Any] = {}
        if known is None or callable(known) or hasattr(known, "known"):
            return
        items = known.items() if isinstance(known, Mapping) else ((k, None) for k in known)
        self._keys = set()
        for key, meta in items:
            law, no = key[0], article_no(key[1])
            if no is None:
                continue
            k = (law_key(law), no)
            self._keys.add(k)
            self._laws.add(k[0])
            if meta is not None:
                self._meta[k] = meta

    def exists(self, law: str, no: int) -> bool | None:
        if self.known is None:
            return None
        if hasattr(self.known, "known"):
            return self.known.known(law, no)
        if callable(self.known):
            return self.known(law, no)
        assert self._keys is not None
        if law_key(law) not in self._laws:
            return None
        return (law_key(law), no) in self._keys

    def in_force(self, law: str, no: int, on: date) -> bool | None:
        getter = getattr(self.known, "get", None)
        if getter is not None and not isinstance(self.known, Mapping):
            rec = getter(law, no)
            if rec is not None and hasattr(rec, "in_force"):
                return bool(rec.in_force(on))
        meta = self._meta.get((law_key(law), no))
        if isinstance(meta, Mapping):
            if "in_force_on" in meta and callable(meta["in_force_on"]):
                return bool(meta["in_force_on"](on))
            if meta.get("effective") or meta.get("repealed"):
                return window_contains(meta.get("effective"), meta.get("repealed"), on)
        d = law_dates(law)
        if d is None:
            return None
        return window_contains(d.effective, d.repealed, on)


def _display(law: str) -> str:
    return law if law.startswith("《") else f"《{law}》"


def check_citations(citations: list[tuple[str, int]], *, facts_date: date,
                    known_articles: KnownArticles) -> tuple[list[str], int, int, int]:
    """→ (problems, n_valid, n_invalid, n_unverifiable) for unique (law, article_no) pairs."""
    lookup = _Lookup(known_articles)
    problems: list[str] = []
    valid = invalid = unverifiable = 0
    seen: set[tuple[str, int]] = set()
    for law, no in citations:
        key = (law_key(law), no)
        if key in seen:
            continue
        seen.add(key)
        label = f"{_display(law)}{article_label(no)}"
        bad = False
        force = lookup.in_force(law, no, facts_date)
        if force is False:
            bad = True
            d = law_dates(law)
            if d and d.effective and facts_date < d.effective:
                problems.append(f"引用的{label}在事实发生日（{facts_date.isoformat()}）尚未施行"
                                f"（{d.effective.isoformat()}起施行）")
            elif d and d.repealed:
                succ = f"，应引用{_display(d.successor)}的相应条款" if d.successor else ""
                problems.append(f"引用的{label}在事实发生日（{facts_date.isoformat()}）已失效"
                                f"（{d.repealed.isoformat()}废止{succ}）")
            else:
                problems.append(f"引用的{label}在事实发生日（{facts_date.isoformat()}）不在有效期内")
        exists = lookup.exists(law, no)
        if exists is False:
            bad = True
            problems.append(f"引用的{label}在知识库中不存在，疑为虚构条款，请核对")
        if bad:
            invalid += 1
        elif exists is None:
            unverifiable += 1
            problems.append(f"提示：{label}未收录于知识库，无法核对条文")
        else:
            valid += 1
    return problems, valid, invalid, unverifiable


def _citation_pairs(text: str, citations: Iterable[Citation | Mapping[str, Any]] | None) -> list[tuple[str, int]]:
    pairs: list[tuple[str, int]] = []
    for c in citations or []:
        law = c.law if isinstance(c, Citation) else str(c.get("law", ""))
        art = c.article if isinstance(c, Citation) else c.get("article", c.get("article_no"))
        no = article_no(art)
        if law and no:
            pairs.append((law, no))
    for tc in find_citations(text):
        pairs.append((tc.law, tc.article_no))
    return pairs


def check_draft(text: str, *, complaint_text: str, facts_date: date | datetime | str | None,
                known_articles: KnownArticles, citations: Iterable[Citation | Mapping[str, Any]] | None = None,
                needs_basis: bool = True, findings_given: bool = True) -> QualityReport:
    """Score a reply draft; see the module docstring for the formula. Never raises on odd input.

    ``needs_basis=False``: a matter that is not environmental (re-dispatched to the unit whose duty it is) cites
    no environmental law on purpose; its reply is judged on the other five parts, and citing nothing is not a
    fault (a citation it does make is still checked).

    ``findings_given=False``: staff gave no findings, so whatever the draft says about an inspection is a
    placeholder ("将赴现场核查"); the part counts as missing (an empty draft scored 99 with ✓ 核查情况)."""
    text = text or ""
    on = as_date(facts_date) or today()
    parts = detect_parts(text)
    if not needs_basis:
        parts.pop("法律依据", None)
    if not findings_given:
        parts["核查情况"] = False
    problems: list[str] = []
    for name, present in parts.items():
        if not present:
            problems.append("尚未填写核查情况：草稿中的核查表述是占位，请补充实际核查结果" if name == "核查情况"
                            and not findings_given else f"缺少{name}")

    rel = relevance(text, complaint_text or "")
    if complaint_text and rel < 0.2:
        problems.append(f"与诉求内容关联度低（{rel:.2f}），请确认答复针对本件诉求")

    placeholders = sorted({m.group(0) for m in PLACEHOLDER_RE.finditer(text)})
    if placeholders:
        problems.append("草稿中仍有占位符：" + "、".join(placeholders[:5]))

    pairs = _citation_pairs(text, citations)
    cite_problems, n_valid, n_invalid, _n_unverifiable = check_citations(
        pairs, facts_date=on, known_articles=known_articles)
    problems.extend(cite_problems)
    if n_invalid:
        cite_score = max(0.0, 1.0 - 0.5 * n_invalid)
    elif n_valid or not needs_basis:
        cite_score = 1.0
    else:
        cite_score = 0.5

    score = 0.55 * (sum(parts.values()) / len(parts)) + 0.25 * rel + 0.20 * cite_score
    if placeholders:
        score -= 0.3
    if len(text.strip()) < 60:
        score -= 0.1
        problems.append("答复内容过短")
    score = round(min(1.0, max(0.0, score)), 3)
    return QualityReport(score=score, parts=parts, problems=problems)
