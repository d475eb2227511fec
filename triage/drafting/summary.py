"""A concise restatement of a complaint: what, where, when, and what the citizen asks for.

Rule-based and deliberately conservative: it picks the place, the time expression and the one or two clauses
that describe the nuisance from the citizen's own words (turned into the second person), and never copies the
whole text. Good enough for the opening paragraph of a reply; staff can always edit it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ISSUE_LABELS: dict[str, str] = {
    "noise": "噪声扰民",
    "noise.construction": "建筑施工噪声扰民",
    "noise.social_life": "社会生活噪声扰民",
    "noise.industrial": "设备噪声扰民",
    "noise.traffic": "交通噪声扰民",
    "air": "大气污染",
    "air.industrial": "企业废气排放",
    "air.dust": "扬尘污染",
    "air.cooking_fumes": "餐饮油烟污染",
    "air.open_burning": "露天焚烧",
    "air.vehicle_exhaust": "机动车尾气污染",
    "air.odour": "异味扰民",
    "water": "水污染",
    "water.industrial_discharge": "企业废水排放",
    "water.sewage": "污水排放",
    "water.river": "河道水体污染",
    "water.drinking_source": "饮用水水源保护",
    "solid_waste": "垃圾堆放",
    "solid_waste.household": "生活垃圾堆放和清运",
    "solid_waste.construction": "建筑垃圾（渣土）倾倒",
    "solid_waste.industrial": "工业固体废物堆放",
    "solid_waste.hazardous": "危险废物处置",
    "soil": "土壤污染",
    "soil.contamination": "土壤污染",
    "radiation": "辐射",
    "radiation.electromagnetic": "电磁辐射",
    "ecology": "生态破坏",
    "ecology.damage": "生态破坏",
}

# Words that mark a clause as describing the nuisance itself, by pollution type.
_TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "noise": ("噪音", "噪声", "吵", "喧哗", "喇叭", "音响", "施工", "广场舞", "鸣笛", "轰鸣", "扰民", "震", "机器",
              "麻将", "装修", "KTV", "酒吧", "叫", "响", "声"),
    "air": ("油烟", "烟", "臭", "味", "气味", "废气", "粉尘", "扬尘", "灰尘", "焚烧", "烧", "排放", "尾气", "喷漆",
            "刺鼻", "呛"),
    "water": ("污水", "废水", "排放", "偷排", "排污", "黑臭", "水质", "河", "水源", "外溢", "管道", "下水道"),
    "solid_waste": ("垃圾", "渣土", "堆放", "倾倒", "清运", "废物", "固废", "乱倒", "乱堆", "倒", "废渣", "泥土",
                    "碎石", "砂石", "丢", "扔", "脏"),
    "soil": ("土壤", "污染", "农田", "重金属"),
    "radiation": ("辐射", "基站", "高压线", "变电站", "电磁"),
    "ecology": ("采砂", "挖沙", "砍伐", "砍树", "毁林", "填", "湿地", "挖", "破坏", "捕", "电鱼", "炸鱼", "毒鱼", "猎",
                "鸟", "野生", "开采", "采石", "山体", "植被"),
}
_GENERIC_WORDS = ("污染", "扰民", "影响", "严重", "排放", "存在")

_PLACE_SUFFIX = (
    "小区|花园|广场|公园|大道|路口|路|街道|大街|街|巷|弄|村委会|村|社区|大厦|商场|市场|工地|学校|中学|小学|幼儿园|医院|"
    "港|海峡|海滩|海域|江|溪|水渠|山|岭|商城|新城|广场|中心|"
    "酒店|公寓|宾馆|工厂|厂|公司|宿舍|苑|湾|庭|园|桥|河|湖|水库|镇|乡|楼盘|商业街|大院|码头|车站|加油站|菜场"
)
# Greedy over characters that occur in place names; function words end a place.
_NOT_PLACE = "的有在是说到把被让给了着过都就也还又很太我你他她其们从向对往为因由将与及等能请"
_PLACE_RE = re.compile(
    rf"[^\s{_NOT_PLACE}，。！？；,.!?;：:、（）()“”\"'【】\[\]]{{2,40}}(?:{_PLACE_SUFFIX})(?![民委])"
    rf"(?:[A-Za-z0-9一二三四五六七八九十]+(?:栋|号楼|号|期|单元))?")
_PLACE_LEAD = re.compile(r"^.*?(?:反映|投诉|举报|来电|称|表示|居住在|住在|位于|家住|在|于|是|的)(?=[\u4e00-\u9fa5A-Za-z0-9])")
_TIME_RE = re.compile(
    r"(每天|每晚|每日|天天|经常|长期|近期|最近|近日|连续\w{0,3}天|周末|节假日)?"
    r"((?:早上|上午|中午|下午|傍晚|晚上|夜间|夜里|深夜|半夜|凌晨)"
    r"(?:\s*(?:\d{1,2}|[一二三四五六七八九十两]{1,3})\s*(?:[:：]\s*\d{2}|点钟|点半?|时)(?:\s*(?:多|左右|以后|后|之后))?"
    r"(?:\s*(?:到|至|-|—|~)\s*(?:次日|凌晨|早上)?\s*(?:\d{1,2}|[一二三四五六七八九十两]{1,3})\s*(?:[:：]\s*\d{2}|点钟|点半?|时))?)?)"
)
_FREQUENCY = ("每天", "每晚", "每日", "天天", "经常", "长期", "近期", "最近", "近日", "周末", "节假日")
_DEMAND_RE = re.compile(r"(希望|请求|要求|恳请|恳求|请|望|盼|建议)")
_LEAD_FILLER = re.compile(
    r"^(?:市民(?:来电|短信|来信|网上|微信)?(?:反映|投诉|咨询|举报)?|来电人?(?:反映)?|网友(?:反映)?|反映|投诉|举报|"
    r"尊敬的[^，,。：:]{0,12}|[^，,。：:]{0,6}(?:书记|市长|领导|局长|主任)(?:您好|你好)?|您好|你好|各位领导好?)\s*[:：，,！!]?\s*"
)
_SPLIT = "，。！？；,.!?;\n：:"


def _clauses(text: str) -> list[str]:
    """Split on punctuation, but not inside brackets (shop lists like （醉鹅店，烧烤店） stay together)."""
    out, buf, depth = [], [], 0
    for ch in text:
        if ch in "（(【[":
            depth += 1
        elif ch in "）)】]":
            depth = max(0, depth - 1)
        if ch in _SPLIT and depth == 0:
            s = "".join(buf).strip()
            if s:
                out.append(s)
            buf = []
        else:
            buf.append(ch)
    s = "".join(buf).strip()
    if s:
        out.append(s)
    return out


def second_person(s: str) -> str:
    """The citizen's first person, as the reply addresses them."""
    s = s.replace("我们小区", "所在小区").replace("我小区", "所在小区").replace("我家", "您家")
    s = s.replace("我们", "居民").replace("本人", "您").replace("俺", "您")
    s = re.sub(r"我(?!局|司|单位|部门|队|办|镇)", "您", s)
    return s


def _strip_lead(clause: str) -> str:
    prev = None
    while prev != clause:
        prev = clause
        clause = _LEAD_FILLER.sub("", clause, count=1).strip()
    return clause


def _trim(s: str, n: int) -> str:
    s = s.strip(" 　,，。；;：:!！")
    return s if len(s) <= n else s[:n].rstrip("，,、（(") + "等"


@dataclass
class ComplaintSummary:
    issue: str  # label such as 建筑施工噪声扰民
    place: str | None
    when: str | None
    details: list[str]
    demand: str | None

    def restatement(self) -> str:
        where = self.place or ""
        opening = f"您反映的{where}{self.issue}问题已收悉。" if where else f"您反映的{self.issue}问题已收悉。"
        body = ""
        if self.details:
            body = "据您反映，" + "，".join(self.details)
            if self.when and self.when not in body:
                # "（时段：经常）" read like a form field: a frequency is said as one, a time of day as a time
                body += f"，{self.when}如此" if self.when in _FREQUENCY else f"（时段：{self.when}）"
            body += "。"
        elif self.when:
            if self.when in _FREQUENCY:
                body = f"据您反映，该问题{self.when}都会出现。"
            else:
                body = f"据您反映，该问题多发生在{self.when}。"
        ask = f"您希望有关部门{self.demand}。" if self.demand else ""
        return opening + body + ask


def summarize(text: str, *, subtype: str | None = None, pollution_type: str | None = None,
              address: str | None = None) -> ComplaintSummary:
    ptype = pollution_type or (subtype.split(".")[0] if subtype else None)
    issue = ISSUE_LABELS.get(subtype or "") or ISSUE_LABELS.get(ptype or "") or (
        "有关" if ptype == "not_environmental" else "环境")
    text = (text or "").replace("[电话]", "")
    text = re.sub(r"(?:https?://|www\.)\S+|\S*\.(?:com|cn|net|html?)\S*", "", text)  # links and their debris
    clauses = [c for c in (_strip_lead(c) for c in _clauses(text)) if c]

    place = _trim(address, 30) if address else _find_place(clauses)
    when = _find_when(text)
    topic = _TOPIC_WORDS.get(ptype or "", ()) or tuple(w for ws in _TOPIC_WORDS.values() for w in ws)

    scored = []
    for i, c in enumerate(clauses):
        if _DEMAND_RE.match(c) or len(c) < 4:
            continue
        score = sum(2 for w in topic if w in c) + sum(1 for w in _GENERIC_WORDS if w in c) + (0.5 if len(c) >= 10 else 0)
        if score:
            scored.append((score, -i, c))
    scored.sort(reverse=True)
    picked = sorted(scored[:2], key=lambda t: -t[1])
    details = []
    for _, _, c in picked:
        c = second_person(c)
        if place and c.startswith(place):
            c = c[len(place):].lstrip("的")
        c = _trim(c, 40)
        if len(c) >= 4 and c not in details:
            details.append(c)

    if not details:  # nothing matched the topic words: the first descriptive clause, shortened
        for c in clauses:
            if len(c) >= 8 and not _DEMAND_RE.match(c) and not re.search(r"来电|反映|投诉|谢谢", c) and c != place:
                details.append(_trim(second_person(c), 40))
                break

    demand = _find_demand(clauses)
    return ComplaintSummary(issue=issue, place=place, when=when, details=details, demand=demand)


def _find_place(clauses: list[str]) -> str | None:
    for c in clauses[:6]:
        m = _PLACE_RE.search(c)
        if not m:
            continue
        place = m.group(0)
        # drop a leading verb phrase ("市民反映在…", "其居住在…")
        lead = _PLACE_LEAD.match(place)
        if lead and len(place) - lead.end() >= 3:
            place = place[lead.end():]
        place = re.sub(r"^(?:其|我|您|本人|我们|请求|求|希望|呼吁|要求|关于|反映|投诉|咨询|坚决反对|反对|举报|禁止|关闭|"
                       r"解决|处理|整治|再次)+", "", place)
        if len(place) >= 3:
            return _trim(place, 30)
    return None


def _find_when(text: str) -> str | None:
    for m in _TIME_RE.finditer(text):
        s = "".join(g for g in m.groups() if g)
        if s:
            return s.replace(" ", "")
    m = re.search(r"(每天|每晚|长期|经常|周末|节假日)", text)
    return m.group(1) if m else None


def _find_demand(clauses: list[str]) -> str | None:
    for c in reversed(clauses):
        if not _DEMAND_RE.search(c):
            continue
        if "取缔" in c:
            return "依法取缔"
        if "查处" in c or "处罚" in c:
            return "依法查处"
        if "整改" in c or "整治" in c:
            return "督促整改"
        if "搬迁" in c or "搬走" in c:
            return "研究搬迁问题"
        if "清理" in c or "清运" in c or "清洗" in c:
            return "及时清理"
        if "监测" in c or "检测" in c:
            return "开展监测"
        if "停止" in c or "制止" in c:
            return "予以制止"
        if "核实" in c or "处理" in c or "解决" in c or "管" in c:
            return "核实处理"
    return None
