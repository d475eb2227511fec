"""Our own short digest of the articles a reply usually rests on, per complaint subtype.

Each entry names an exact article (checked against the statute files by tests/test_drafting_basis.py) and
says in one line, in our words, what it requires. Entries carry the window in which that article number is
valid: the Code from 2026-08-15; the single laws in their last version until the Code repealed them.

The drafter prefers these articles when the retriever returns them (or, with no knowledge base at all, uses
them directly); anything else the retriever finds is summarised from its text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from triage.drafting.laws import CODE_EFFECTIVE, CODE_NAME, article_label, dates_in_force

AIR = "中华人民共和国大气污染防治法"
WATER = "中华人民共和国水污染防治法"
NOISE = "中华人民共和国噪声污染防治法"
WASTE = "中华人民共和国固体废物污染环境防治法"
SOIL = "中华人民共和国土壤污染防治法"
EPL = "中华人民共和国环境保护法"
DRAINAGE = "城镇排水与污水处理条例"
CITY = "城市市容和环境卫生管理条例"

# When the numbering we hold took effect (the last revision of each single law).
_FROM = {
    AIR: date(2016, 1, 1),
    WATER: date(2018, 1, 1),
    NOISE: date(2022, 6, 5),
    WASTE: date(2020, 9, 1),
    SOIL: date(2019, 1, 1),
    EPL: date(2015, 1, 1),
    DRAINAGE: date(2014, 1, 1),
    CITY: date(1992, 8, 1),
    CODE_NAME: CODE_EFFECTIVE,
}
_UNTIL = {AIR: CODE_EFFECTIVE, WATER: CODE_EFFECTIVE, NOISE: CODE_EFFECTIVE, WASTE: CODE_EFFECTIVE,
          SOIL: CODE_EFFECTIVE, EPL: CODE_EFFECTIVE}


@dataclass(frozen=True)
class BasisEntry:
    law: str
    article_no: int
    gist: str  # what the article requires, in one clause, our wording
    keywords: tuple[str, ...] = ()  # words the article text must contain (checked by a test)

    @property
    def article(self) -> str:
        return article_label(self.article_no)

    @property
    def valid_from(self) -> date | None:
        return _FROM.get(self.law)

    @property
    def valid_until(self) -> date | None:
        return _UNTIL.get(self.law)

    def valid_on(self, on: date) -> bool:
        return dates_in_force(self.valid_from, self.valid_until, on)


def _e(law: str, no: int, gist: str, *kw: str) -> BasisEntry:
    return BasisEntry(law, no, gist, tuple(kw))


C = CODE_NAME
BASIS: dict[str, list[BasisEntry]] = {
    "noise.construction": [
        _e(C, 572, "在噪声敏感建筑物集中区域，夜间（一般为22时至次日6时）不得进行产生噪声的施工作业；确需连续施工的，须取得相关部门证明并告知附近居民", "夜间", "施工作业"),
        _e(C, 1185, "超标排放施工噪声或未取得证明夜间施工的，由指定部门责令改正，可处一万元以上十万元以下罚款", "建筑施工噪声"),
        _e(NOISE, 43, "在噪声敏感建筑物集中区域，夜间不得进行产生噪声的建筑施工作业；确需连续施工的，须取得证明并公告附近居民", "夜间", "施工作业"),
        _e(NOISE, 77, "超标排放施工噪声或未取得证明夜间施工的，由指定部门责令改正并处罚款", "建筑施工噪声"),
    ],
    "noise.social_life": [
        _e(C, 593, "在噪声敏感建筑物集中区域不得使用高音广播喇叭；在公共场所开展娱乐、健身活动应遵守区域、时段、音量规定", "高音广播喇叭", "音量"),
        _e(C, 592, "商业经营活动中不得使用高音广播喇叭等持续发出高噪声的方式招揽顾客，经营者应防止经营噪声扰民", "商业经营活动"),
        _e(C, 1190, "违反上述规定的，由指定部门说服教育、责令改正；拒不改正的可给予警告并处罚款", "说服教育"),
        _e(NOISE, 64, "在噪声敏感建筑物集中区域不得使用高音广播喇叭；在公共场所开展娱乐、健身活动应遵守区域、时段、音量规定", "高音广播喇叭", "音量"),
        _e(NOISE, 63, "商业经营活动中不得使用高音广播喇叭等方式招揽顾客，经营者应防止经营噪声扰民", "商业经营活动"),
    ],
    "noise.industrial": [
        _e(C, 567, "排放工业噪声的单位和经营者应采取有效措施减少振动、降低噪声", "工业噪声", "降低噪声"),
        _e(C, 591, "使用空调器、冷却塔、水泵、风机等设备的经营管理者应优化布局，防止、减轻噪声污染", "冷却塔"),
        _e(NOISE, 36, "排放工业噪声的单位和经营者应采取有效措施减少振动、降低噪声", "工业噪声"),
        _e(NOISE, 62, "使用空调器、冷却塔、水泵、风机等设备的经营管理者应优化布局，防止、减轻噪声污染", "冷却塔"),
    ],
    "noise.traffic": [
        _e(C, 576, "不得驾驶拆除消声器、加装排气管等擅自改装的机动车轰鸣、疾驶，机动车音响应控制音量", "消声器"),
        _e(C, 1187, "改装车辆轰鸣疾驶或违规使用声响装置的，由公安机关交通管理部门给予警告并处罚款", "公安机关交通管理部门"),
        _e(NOISE, 47, "不得驾驶擅自改装的机动车轰鸣、疾驶，机动车音响应控制音量", "消声器"),
    ],
    "noise.other": [
        _e(C, 599, "社会生活噪声扰民的，物业、居（村）委会应及时劝阻调解，劝阻无效的可向有关部门报告，有关部门应依法处理", "劝阻、调解"),
    ],
    "air.cooking_fumes": [
        _e(C, 250, "排放油烟的餐饮经营者应安装并正常使用油烟净化设施，达标排放，不得影响附近居民生活；居民楼等处禁止新建产生油烟的餐饮项目", "油烟净化"),
        _e(C, 1132, "未安装或未正常使用油烟净化设施超标排放的，责令改正，处五千元以上五万元以下罚款，拒不改正的责令停业整治", "油烟"),
        _e(AIR, 81, "排放油烟的餐饮经营者应安装并正常使用油烟净化设施，达标排放，防止影响附近居民生活", "油烟净化"),
        _e(AIR, 118, "未安装或不正常使用油烟净化设施超标排放的，责令改正并处罚款", "油烟"),
    ],
    "air.dust": [
        _e(C, 240, "施工单位应设置硬质围挡，采取覆盖、洒水抑尘、冲洗车辆等防尘措施，渣土应及时清运或密闭遮盖", "硬质围挡", "洒水抑尘"),
        _e(C, 1128, "施工工地未落实围挡、覆盖、洒水等防尘措施的，由住房城乡建设等部门责令改正并处罚款，拒不改正的责令停工整治", "硬质围挡"),
        _e(AIR, 69, "施工单位应设置硬质围挡，采取覆盖、洒水抑尘、冲洗车辆等防尘措施", "硬质"),
        _e(AIR, 115, "施工工地未落实防尘措施的，由主管部门责令改正并处罚款", "硬质围挡"),
    ],
    "air.industrial": [
        _e(C, 214, "生产、使用含挥发性有机物的原辅材料应在密闭空间或设备中进行，并安装使用污染防治设施", "挥发性有机物"),
        _e(C, 1107, "超过排放标准排放污染物的，由生态环境主管部门责令改正并处罚款，可责令限产、停产整治", "超过污染物排放标准"),
        _e(AIR, 45, "产生含挥发性有机物废气的生产活动应在密闭空间或设备中进行，并安装使用污染防治设施", "挥发性有机物"),
        _e(AIR, 18, "企业事业单位建设项目应依法进行环境影响评价，排放大气污染物应符合排放标准", "排放标准"),
    ],
    "air.open_burning": [
        _e(C, 251, "在人口集中地区不得焚烧垃圾、塑料、橡胶等产生有毒有害烟尘和恶臭气体的物质", "焚烧"),
        _e(C, 246, "在人口集中地区、交通干线附近等禁烧区域和时段内不得露天焚烧秸秆、落叶", "露天焚烧"),
        _e(C, 1131, "违规露天焚烧的，由县级以上地方人民政府确定的部门责令改正并可处罚款", "露天焚烧"),
        _e(AIR, 82, "在人口集中地区不得焚烧垃圾、塑料、橡胶等产生有毒有害烟尘和恶臭气体的物质", "焚烧"),
        _e(AIR, 119, "违规露天焚烧的，由有关部门责令改正并可处罚款", "露天焚烧"),
    ],
    "air.vehicle_exhaust": [
        _e(C, 221, "机动车、非道路移动机械不得超过标准排放大气污染物", "不得超过标准排放"),
        _e(C, 223, "在用机动车应定期进行排放检验，生态环境部门可对在用车排放进行监督抽测", "排放检验"),
        _e(AIR, 51, "机动车、非道路移动机械不得超过标准排放大气污染物", "不得超过标准排放"),
    ],
    "air.odour": [
        _e(C, 249, "生产经营中产生恶臭气体的，应科学选址、设置防护距离，并安装净化装置防止恶臭排放", "恶臭气体"),
        _e(AIR, 80, "生产经营中产生恶臭气体的，应科学选址、设置防护距离，并安装净化装置防止恶臭排放", "恶臭气体"),
        _e(AIR, 75, "畜禽养殖场应及时收集、清运和无害化处理粪污，防止排放恶臭气体", "畜禽养殖"),
    ],
    "water.industrial_discharge": [
        _e(C, 164, "不得通过暗管、渗井、渗坑或不正常运行污染防治设施等逃避监管的方式排放污染物", "暗管"),
        _e(C, 298, "排放工业废水的企业应收集并处理全部废水，有毒有害废水应分类收集处理，不得稀释排放", "工业废水"),
        _e(C, 1108, "以逃避监管方式排放污染物的，由生态环境主管部门责令改正，处十万元以上一百万元以下罚款，并移送公安机关", "暗管"),
        _e(WATER, 39, "不得私设暗管或利用渗井、渗坑等逃避监管的方式排放水污染物", "暗管"),
    ],
    "water.sewage": [
        _e(DRAINAGE, 20, "排水单位和个人应将污水排入城镇排水设施，雨污分流地区不得将污水排入雨水管网", "雨水管网"),
        _e(C, 301, "城镇污水应当集中处理，地方政府应建设污水处理设施和配套管网，推进雨污分流", "集中处理"),
        _e(DRAINAGE, 49, "未按规定将污水排入城镇排水设施或将污水排入雨水管网的，由城镇排水主管部门责令改正", "雨水管网"),
    ],
    "water.river": [
        _e(C, 282, "不得向水体排放、倾倒工业废渣、城镇垃圾和其他废弃物", "城镇垃圾"),
        _e(C, 164, "不得向江河湖泊、水库及其滩地和岸坡倾倒、堆放固体废物和其他污染物", "江河湖泊"),
        _e(WATER, 37, "不得向水体排放、倾倒工业废渣、城镇垃圾和其他废弃物", "城镇垃圾"),
        _e(WATER, 38, "不得在江河、湖泊、水库最高水位线以下的滩地和岸坡堆放、存贮固体废弃物和其他污染物", "滩地"),
    ],
    "water.drinking_source": [
        _e(C, 318, "在饮用水水源保护区内禁止设置排污口", "排污口"),
        _e(C, 317, "国家实行饮用水水源保护区制度，分为一级、二级保护区", "饮用水水源保护区"),
        _e(WATER, 64, "在饮用水水源保护区内禁止设置排污口", "排污口"),
        _e(WATER, 84, "在饮用水水源保护区内设置排污口的，责令限期拆除并处罚款", "排污口"),
    ],
    "solid_waste.household": [
        _e(C, 506, "单位和个人应在指定地点分类投放生活垃圾，不得随意倾倒、堆放、丢弃或焚烧", "生活垃圾"),
        _e(C, 504, "环境卫生主管部门应制定生活垃圾清扫、收集、运输和处理的规范并加强监督", "清扫"),
        _e(WASTE, 49, "单位和个人应在指定地点分类投放生活垃圾，不得随意倾倒、抛撒、堆放或焚烧", "生活垃圾"),
        _e(CITY, 28, "市容环境卫生主管部门对生活废弃物的收集、运输和处理实施监督管理，垃圾应及时清运", "及时清运"),
    ],
    "solid_waste.construction": [
        _e(C, 520, "工程施工单位应编制建筑垃圾处理方案并及时清运施工产生的建筑垃圾", "建筑垃圾"),
        _e(C, 1169, "擅自倾倒、堆放、丢弃、遗撒固体废物的，由主管部门责令停止违法行为、消除污染并处罚款", "擅自倾倒"),
        _e(WASTE, 63, "工程施工单位应编制建筑垃圾处理方案并及时清运施工产生的建筑垃圾", "建筑垃圾"),
    ],
    "solid_waste.industrial": [
        _e(C, 475, "产生、贮存、运输、处置固体废物的单位应采取防扬散、防流失、防渗漏措施，不得擅自倾倒、堆放、丢弃或焚烧", "防扬散"),
        _e(C, 489, "产生工业固体废物的单位应建立全过程污染防治责任制度和管理台账", "工业固体废物"),
        _e(WASTE, 20, "产生、贮存、运输、处置固体废物的单位应采取防扬散、防流失、防渗漏措施，不得擅自倾倒、堆放", "防扬散"),
    ],
    "solid_waste.hazardous": [
        _e(C, 533, "产生危险废物的单位应按国家规定和标准贮存、利用、处置危险废物，任何人不得擅自倾倒、堆放", "危险废物"),
        _e(C, 532, "产生危险废物的单位应制定管理计划、建立管理台账并如实申报", "管理台账"),
        _e(WASTE, 79, "产生危险废物的单位应按规定和标准贮存、利用、处置危险废物，不得擅自倾倒、堆放", "危险废物"),
    ],
    "soil.contamination": [
        _e(C, 422, "不得向耕地、林地等农用地排放重金属等有毒有害物质超标的污水、污泥、尾矿、矿渣", "农用地"),
        _e(SOIL, 28, "不得向农用地排放重金属等有毒有害物质超标的污水、污泥、尾矿、矿渣", "农用地"),
    ],
    "radiation.electromagnetic": [
        _e(C, 659, "运行电磁辐射设施的单位应合理布局，配套建设并正常运行污染防治设施，防止、减轻电磁辐射污染", "电磁辐射设施"),
        _e(C, 653, "电磁辐射污染是指超过国家电磁辐射排放标准的非电离辐射", "电磁辐射"),
    ],
    "ecology.damage": [
        _e(C, 730, "不得开垦、填埋自然湿地，不得擅自在湿地采砂、采矿、取土或排放超标废水", "湿地"),
        _e(C, 709, "不得毁林开垦、采石、采砂、采土等毁坏林木和林地", "毁林"),
        _e(EPL, 29, "国家在重点生态功能区、生态环境敏感区和脆弱区划定生态保护红线，实行严格保护", "生态保护红线"),
    ],
}

# When nothing specific applies: the general duty of polluters.
GENERAL: list[BasisEntry] = [
    _e(C, 150, "排放污染物的单位和个人应采取有效措施，防治生产、生活中产生的各类环境污染", "排放污染物"),
    _e(EPL, 42, "排放污染物的企业事业单位和其他生产经营者应采取措施，防治废气、废水、废渣、噪声等对环境的污染", "噪声"),
]

_BY_KEY = {(e.law, e.article_no): e for entries in [*BASIS.values(), GENERAL] for e in entries}


def curated_for(subtype: str | None, on: date, *, general: bool = True) -> list[BasisEntry]:
    """The digest entries valid on ``on`` for a subtype (``<type>.other`` falls back to the general duty)."""
    entries = list(BASIS.get(subtype or "", []))
    out = [e for e in entries if e.valid_on(on)]
    if general and not out:
        out = [e for e in GENERAL if e.valid_on(on)]
    return out


def gist_for(law: str, article_no: int) -> str | None:
    from triage.drafting.laws import law_key

    for (name, no), entry in _BY_KEY.items():
        if no == article_no and law_key(name) == law_key(law):
            return entry.gist
    return None


def all_entries() -> list[BasisEntry]:
    return list(_BY_KEY.values())
