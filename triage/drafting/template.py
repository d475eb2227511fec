"""The template drafter: the default without an LLM, and the fallback when one fails.

A reply is composed from parts (greeting, restatement, findings, measures, legal basis, closing) rendered by
``templates/reply.txt.j2``. What varies by case comes from here: the restatement from the complaint text,
the unit's typical measures for the subtype, and the legal basis from the retrieved articles in force on the
date of the facts (our digest's wording where we have it). Staff normally only edit the findings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from triage.drafting.basis import curated_for, gist_for
from triage.drafting.dates import as_date, today
from triage.drafting.summary import ISSUE_LABELS, summarize
from triage.drafting.types import Citation, Draft, DraftRequest
from triage.kb.regulations import article_label, article_no, law_key
from triage.taxonomy import NOT_ENV

TEMPLATES_DIR = Path(__file__).parent / "templates"
REPLY_TEMPLATE = "reply.txt.j2"
GENERATOR = "template"
MAX_BASIS = 2

# What the unit checks first and what it typically does, per subtype (our wording).
_ACTIONS: dict[str, tuple[str, list[str]]] = {
    "noise.construction": ("施工单位、作业时段以及是否取得夜间连续施工证明", [
        "核查施工单位是否取得夜间连续施工证明，对无证明夜间施工的责令立即停止作业",
        "督促施工单位合理安排作业时间，使用低噪声设备和工艺，落实降噪措施",
        "在夜间等重点时段加强巡查，对违规施工依法查处"]),
    "noise.social_life": ("噪声来源、发生时段和音量情况", [
        "对相关经营者或活动组织者进行劝导，责令其控制音量、停止使用高音广播喇叭",
        "会同社区、物业加强劝阻和调解，对劝阻无效、拒不改正的依法处理",
        "在晚间等重点时段加强巡查，防止问题反复"]),
    "noise.industrial": ("设备噪声的来源、运行时段和降噪设施情况", [
        "督促责任单位对风机、冷却塔、水泵等设备采取减振、隔声、消声等降噪措施",
        "必要时委托监测机构开展噪声监测，对超标排放的依法责令改正",
        "持续跟踪整改情况，防止噪声扰民反弹"]),
    "noise.traffic": ("噪声来源路段、时段和车辆情况", [
        "将有关情况通报公安交通管理部门，加强对改装车辆轰鸣疾驶、违规鸣笛等行为的查处",
        "在重点路段和时段加强巡查管控",
        "会同道路管理部门研究设置限速、禁鸣标志或隔声设施等措施"]),
    "air.cooking_fumes": ("油烟净化设施的安装、运行和清洗情况以及排烟管道设置", [
        "检查该餐饮单位油烟净化设施是否安装并正常使用，排烟管道设置是否符合要求",
        "督促经营者定期清洗维护净化设施，确保油烟达标排放，必要时委托检测",
        "对未安装或不正常使用净化设施、超标排放油烟的依法责令改正并予以处罚"]),
    "air.dust": ("工地围挡、裸土覆盖、洒水降尘和车辆冲洗等防尘措施落实情况", [
        "检查施工现场围挡、裸土覆盖、洒水降尘和出入车辆冲洗等措施的落实情况",
        "督促施工单位及时清运渣土，清洁周边道路",
        "对防尘措施不到位的依法责令整改，拒不整改的依法处罚"]),
    "air.industrial": ("企业生产工艺、废气收集处理设施运行情况和环保手续", [
        "检查企业环评、排污许可手续及废气收集处理设施的运行情况",
        "必要时开展废气监测，对超标排放、未经处理直排的依法查处",
        "将该企业纳入日常监管重点，跟踪整改落实"]),
    "air.open_burning": ("焚烧地点、焚烧物和责任人", [
        "立即制止焚烧行为，清理焚烧现场",
        "查明责任人，依法予以处理",
        "加强巡查和禁烧宣传，防止焚烧现象再次发生"]),
    "air.vehicle_exhaust": ("车辆及其排放情况", [
        "会同公安交通管理部门加强对冒黑烟车辆的检查",
        "对排放超标的车辆依法处理并督促维修治理"]),
    "air.odour": ("异味来源和相关场所的清运、除臭措施", [
        "排查异味来源，检查垃圾站、养殖场等场所的清运、密闭和除臭措施",
        "督促责任单位及时清运、加强密闭和除臭处理",
        "跟踪复查整改效果"]),
    "water.industrial_discharge": ("企业排水去向、废水处理设施运行情况和排污口设置", [
        "检查企业废水处理设施运行情况和排污口设置，必要时采样监测",
        "对偷排、超标排放或私设暗管的依法立案查处",
        "加强对周边水体的巡查"]),
    "water.sewage": ("污水来源、外溢点位和排水管网情况", [
        "排查污水外溢点位和管网情况，督促责任单位及时疏通、修复",
        "检查周边单位和商户是否将污水排入雨水管网，违规的责令改正",
        "跟踪复查，防止污水再次外溢"]),
    "water.river": ("水体污染范围、沿岸排口和垃圾情况", [
        "组织排查沿岸排口和污染来源",
        "督促清理水面漂浮物和岸边垃圾",
        "落实河湖长制巡查，发现违法排污依法查处"]),
    "water.drinking_source": ("保护区内是否存在排污口或其他违法活动", [
        "核查保护区内排污口和违法活动情况",
        "对违法行为依法查处并责令限期整改",
        "加强保护区巡查和标识管理"]),
    "solid_waste.household": ("垃圾堆放位置、数量和清运安排", [
        "督促环卫作业单位及时清运垃圾、清洗收集点",
        "加强日常保洁和巡查，合理调整清运频次",
        "引导居民和商户定点分类投放"]),
    "solid_waste.construction": ("建筑垃圾（渣土）来源、倾倒人和运输单位", [
        "查明建筑垃圾来源和运输单位，责令责任方限期清理",
        "对乱倒乱堆、运输遗撒的依法查处",
        "加强重点区域巡查"]),
    "solid_waste.industrial": ("固体废物种类、来源及企业贮存处置台账", [
        "核查企业固体废物贮存、转移和处置台账",
        "督促规范贮存并限期清理，对违法倾倒的依法查处"]),
    "solid_waste.hazardous": ("危险废物的种类、贮存场所和转移处置情况", [
        "检查危险废物贮存场所、识别标志和转移联单",
        "对违规贮存、倾倒的依法查处，涉嫌犯罪的移送公安机关"]),
    "soil.contamination": ("污染来源和影响范围", [
        "组织对相关地块采样检测",
        "根据检测结果督促责任人采取风险管控措施"]),
    "radiation.electromagnetic": ("相关设施的环评、验收手续和电磁环境状况", [
        "核查相关设施的环评和验收手续",
        "委托有资质的机构开展电磁环境监测，并向您反馈监测结果"]),
    "ecology.damage": ("破坏行为的地点、范围和责任人", [
        "会同自然资源、水利、林业等部门核查现场",
        "对非法采砂、毁林、填埋等行为依法制止和查处",
        "督促责任人恢复生态"]),
}
_TYPE_DEFAULT = ("现场情况和问题成因", [
    "组织人员核查现场，查明问题来源和责任主体",
    "对发现的问题督促责任方限期整改，违法的依法处理",
    "加强巡查，跟踪整改效果"])
_NOT_OURS_ACTIONS = ("您反映事项的具体情况", [
    "在职责范围内办理您反映的事项",
    "把办理结果及时告知您"])
_ORDINALS = "一二三四五六七八九"

_THANKS = {
    "urban_management": "城市管理工作",
    "public_security": "公安工作",
    "traffic_police": "交通管理工作",
    "sanitation": "环境卫生工作",
    "street_town": "我们工作",
    "housing_construction": "城乡建设工作",
    "water_affairs": "水务工作",
}
_GENERIC_UNIT = {
    "ecology_environment": "生态环境部门",
    "urban_management": "城市管理综合执法部门",
    "public_security": "公安机关",
    "traffic_police": "公安交通管理部门",
    "housing_construction": "住房城乡建设部门",
    "water_affairs": "水务部门",
    "street_town": "属地街道（镇）",
    "sanitation": "环境卫生管理部门",
    "transport": "交通运输部门",
    "agriculture": "农业农村部门",
    "market_regulation": "市场监督管理部门",
    "natural_resources": "自然资源部门",
}


@dataclass
class BasisItem:
    law: str
    article_no: int
    gist: str
    in_force: bool = True

    @property
    def article(self) -> str:
        return article_label(self.article_no)

    def citation(self) -> Citation:
        return Citation(law=self.law, article=self.article, in_force=self.in_force)


def self_reference(unit_name: str | None) -> str:
    """How the replying unit refers to itself: 我局, 我队, 我街道…"""
    name = (unit_name or "").strip()
    for suffix, ref in (("分局", "我局"), ("局", "我局"), ("大队", "我队"), ("中队", "我队"), ("支队", "我队"),
                        ("街道办事处", "我街道"), ("街道", "我街道"), ("人民政府", "我单位"), ("镇政府", "我镇"),
                        ("中心", "我中心"), ("委员会", "我委"), ("所", "我所"), ("办公室", "我办"), ("公司", "我司")):
        if name.endswith(suffix):
            return ref
    return "我单位"


def auto_gist(text: str, limit: int = 70) -> str:
    """First sentence of an article, shortened: used when our digest has no wording for it."""
    first = re.split(r"[。\n]", (text or "").strip(), maxsplit=1)[0]
    first = first.rstrip("：:；;，,")
    if len(first) > limit:
        first = first[:limit].rstrip("，,、；;（(") + "等"
    return first


def select_basis(articles: list[dict], *, subtype: str | None, on: date, limit: int = MAX_BASIS) -> list[BasisItem]:
    """Articles to cite: our digest's picks among the retrieved ones, else the best retrieved ones, else the
    digest directly. Only articles in force on ``on``."""
    usable = [a for a in articles if a.get("in_force", True) and article_no(a.get("article", a.get("article_no")))]
    curated = curated_for(subtype, on)
    curated_keys = {(law_key(e.law), e.article_no): e for e in curated}
    picked: list[BasisItem] = []
    # 1. digest entries that the retriever also found (in the digest's order)
    found = {(law_key(a["law"]), article_no(a.get("article", a.get("article_no")))): a for a in usable}
    for key, entry in curated_keys.items():
        if key in found:
            a = found[key]
            picked.append(BasisItem(law=a["law"], article_no=entry.article_no, gist=entry.gist))
    # 2. then our digest's entries for this subtype from laws the retriever returned nothing of (those it searched
    # and passed over stay out). Before the Code (2026-08-15) these are the repealed single laws, which a knowledge
    # base holding only the digest (stored under the Code) cannot return; a loose search hit (治安管理处罚法 on
    # construction noise) or a minor entry found alone (市容条例 on dust) is worse.
    if curated_for(subtype, on, general=False):
        searched = {law_key(a.get("law", "")) for a in articles}
        picked += [BasisItem(law=e.law, article_no=e.article_no, gist=e.gist) for e in curated
                   if law_key(e.law) not in searched]
    if picked:
        return picked[:limit]
    # 3. the retriever's best that are plainly about this kind of pollution, summarised from their text
    ptype = (subtype or "").split(".")[0]
    for a in [a for a in usable if _about(a.get("text", ""), ptype)][:limit]:
        no = article_no(a.get("article", a.get("article_no")))
        gist = gist_for(a["law"], no) or auto_gist(a.get("text", ""))
        if gist:
            picked.append(BasisItem(law=a["law"], article_no=no, gist=gist))
    if picked:
        return picked
    # 4. nothing retrieved (no knowledge base): our digest's general entries
    return [BasisItem(law=e.law, article_no=e.article_no, gist=e.gist) for e in curated[:limit]]


# Words an article must contain to be cited for a pollution type when our digest has nothing on it: a search
# hit that is merely "about the environment" is worse than no article at all.
_TYPE_WORDS = {
    "noise": ("噪声",),
    "air": ("大气", "废气", "烟", "尘", "恶臭", "异味", "挥发性有机物", "焚烧"),
    "water": ("水污染", "水体", "污水", "废水", "排污口", "饮用水"),
    "solid_waste": ("固体废物", "垃圾", "废物"),
    "soil": ("土壤",),
    "radiation": ("辐射", "放射"),
    "ecology": ("生态", "湿地", "森林", "林地", "草原", "野生", "渔业", "采砂", "矿"),
}


def _about(text: str, ptype: str) -> bool:
    words = _TYPE_WORDS.get(ptype)
    return True if not words else any(w in (text or "") for w in words)


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), undefined=StrictUndefined,
                       keep_trailing_newline=False, autoescape=False)


@lru_cache(maxsize=4)
def template_version(name: str = REPLY_TEMPLATE) -> str:
    head = (TEMPLATES_DIR / name).read_text(encoding="utf-8")[:300]
    m = re.search(r"version:\s*([\w.\-]+)", head)
    return m.group(1) if m else "reply-template-unversioned"


def _sentence(s: str) -> str:
    s = (s or "").strip()
    if not s:
        return s
    return s if s[-1] in "。！？!?" else s + "。"


def _result_sentence(result: str | None) -> str:
    r = (result or "").strip()
    if r == "属实":
        return "经核实，您反映的情况属实。"
    if r == "部分属实":
        return "经核实，您反映的情况部分属实。"
    if r == "不属实":
        return "经核实，现场未发现您反映的情况，反映情况不属实。"
    return ""


def render_template_reply(req: DraftRequest, *, articles: list[dict], facts_date: date | None = None,
                          draft_date: date | None = None) -> tuple[str, list[BasisItem], list[str]]:
    """→ (text, cited articles, notes for staff)."""
    on = facts_date or as_date(req.occurred_at) or today()
    subtype = req.subtype or ""
    ptype = req.pollution_type or (subtype.split(".")[0] if subtype else "")
    summary = summarize(req.complaint_text, subtype=subtype or None, pollution_type=ptype or None,
                        address=req.address)
    not_ours = ptype == NOT_ENV  # re-dispatched elsewhere: no site inspection of pollution, no environmental law
    if not_ours:
        focus, measures = _NOT_OURS_ACTIONS
        basis: list[BasisItem] = []
    else:
        focus, measures = _ACTIONS.get(subtype) or _ACTIONS.get(f"{ptype}.other") or _TYPE_DEFAULT
        basis = select_basis(articles, subtype=subtype or None, on=on)
    unit = (req.unit_name or "").strip() or _GENERIC_UNIT.get(req.unit_type or "", "") or "我们"
    ref = self_reference(req.unit_name) if req.unit_name else ("我们" if unit == "我们" else "我单位")
    notes: list[str] = []
    findings = _sentence(req.findings or "")
    if not findings:
        notes.append("未提供办理情况：草稿以“将依职责核实办理”的表述代替，请补充后再答复。" if not_ours else
                     "未提供核查情况：草稿以“将赴现场核查”的表述代替，请补充核查结果后再答复。")
    if not_ours:
        notes.append("该诉求不属于生态环境事项：草稿不引用环境法律，请按承办单位的职责补充办理依据。")
    elif not basis:
        notes.append("未检索到事实发生日有效的相关法条，法律依据部分为概括表述，请补充。")
    else:  # the gist is our summary of the article: a reader of the draft may take it for the statute's words
        notes.append("法律依据部分是对所引条文要点的概括，不是法律原文；发出前请对照条文原文核对。")
    actions = _sentence(req.actions or "")
    follow_up = measures[-1] if actions and measures else ""
    ctx = {
        "greeting": "市民朋友：您好！",
        "restatement": summary.restatement(),
        "unit": unit,
        "self_ref": ref,
        "findings": findings,
        "result": (req.result or "").strip(),
        "result_sentence": _result_sentence(req.result) if findings else "",
        "focus": focus,
        "issue": ISSUE_LABELS.get(subtype) or ISSUE_LABELS.get(ptype) or "相关",
        "actions": actions,
        "follow_up": follow_up,
        "measures": measures[: len(_ORDINALS)],
        "ordinals": _ORDINALS,
        "basis": basis,
        "thanks_topic": _THANKS.get(req.unit_type or "", "我们工作" if not_ours else "生态环境保护工作"),
        "not_ours": not_ours,
        "contact_unit": (req.unit_name or "").strip(),
        "signature": (req.unit_name or "").strip(),
        "date": _cn_date(draft_date or today()),
    }
    text = _env().get_template(REPLY_TEMPLATE).render(**ctx)
    text = re.sub(r"\n{2,}", "\n", text).strip()
    return text, basis, notes


def _cn_date(d: date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def template_draft(req: DraftRequest, *, articles: list[dict], facts_date: date | None = None,
                   draft_date: date | None = None) -> Draft:
    text, basis, notes = render_template_reply(req, articles=articles, facts_date=facts_date,
                                               draft_date=draft_date)
    return Draft(text=text, citations=[b.citation() for b in basis], generator=GENERATOR,
                 prompt_version=template_version(), notice="；".join(n.rstrip("。") for n in notes) or None)
