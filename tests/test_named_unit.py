"""The unit a complaint names ("请市城管核实处理"): finding it, and learning where the office sends such orders."""

from __future__ import annotations

import numpy as np
import pytest

from triage.classify.named_unit import NamedUnitMember, UnitNames
from triage.classify.routing import get_routing
from triage.taxonomy import UNIT_TYPES

UNITS = list(UNIT_TYPES)


@pytest.fixture(scope="module")
def names() -> UnitNames:
    return UnitNames(get_routing().unit_aliases)


@pytest.mark.parametrize("text, key", [
    ("龙华区国贸北路烧烤店油烟扰民！请市城管核实处理！", "urban_management"),
    ("排水沟堵塞，污水溢流出路面，请琼山区水务局核实处理！", "water_affairs"),
    ("有改装摩托车炸街，请交通警察来处理", "traffic_police"),  # not 交通 (transport)
    ("有人在林子里捕鸟，请森林公安查处", "natural_resources"),  # not 公安 (police)
    ("楼上有人大声喧哗，请公安局核实处理！谢谢！", "public_security"),
    ("小区旁边工厂夜里机器轰鸣，请龙华区政府核实处理！", "generic:区政府"),
    ("路口积水很深，请职能局核实处理。", "generic:职能局"),
    ("有工厂排放废气，请美兰区政府环保局核实处理", "ecology_environment"),  # a duty before a generic name
    ("城管说这事归环保管，他们也不来。请公安局核实处理", "public_security"),  # the closing request counts
    ("开发区里的工地夜里还在施工，请桂林洋经济开发区核实处理", "street_town"),  # a zone's committee is territorial
])
def test_finds_the_unit_a_complaint_asks_for(names, text, key):
    named = names.find(text)
    assert named is not None and named.key == key and named.requested


def test_a_unit_only_mentioned_is_a_weaker_kind_of_name(names):
    named = names.find("市民来电咨询：住建局电话号码。")
    assert named is not None and named.key == "mention:housing_construction" and not named.requested
    assert names.find("楼下饭店油烟很大，影响休息") is None


def test_without_history_the_named_unit_is_the_best_guess(names):
    member = NamedUnitMember(names, UNITS)
    p = member.predict(names.find("工厂废气刺鼻，请环保局核实处理"), "air", "air.industrial")
    assert UNITS[int(p.argmax())] == "ecology_environment"
    assert p.min() > 0  # a name alone rules nothing out
    assert member.predict(names.find("路灯坏了，请区政府核实处理"), "not_environmental", "") is None
    assert member.predict(None, "noise", "noise.industrial") is None


def test_history_decides_where_a_generic_name_goes_by_kind_of_complaint(names):
    texts, units, types, subs = [], [], [], []
    for i in range(6):
        texts.append(f"第{i}家工厂机器噪音扰民，请龙华区政府核实处理")
        units.append("ecology_environment"), types.append("noise"), subs.append("noise.industrial")
        texts.append(f"第{i}条路的路灯不亮，请龙华区政府核实处理")
        units.append("street_town"), types.append("not_environmental"), subs.append("")
    member = NamedUnitMember(names, UNITS).fit(texts, units, types, subs)
    named = names.find("小区对面厂房风机很吵，请龙华区政府核实处理！")
    industrial = member.predict(named, "noise", "noise.industrial")
    other = member.predict(named, "not_environmental", "")
    assert UNITS[int(industrial.argmax())] == "ecology_environment"
    assert UNITS[int(other.argmax())] == "street_town"
    assert member.history(named, "ecology_environment", "noise", "noise.industrial") == (
        6, 6, "点名「龙华区政府」的同类诉求")
    # Another district's government has no history of its own: it borrows from every 区政府 order.
    p = member.predict(names.find("工厂噪音，请秀英区政府核实处理"), "noise", "noise.industrial")
    assert UNITS[int(p.argmax())] == "ecology_environment"


def test_the_reason_quotes_a_level_of_history_with_enough_orders(names):
    """Two past 秀英区政府 pump-noise orders are no basis for "2 件中 2 件": the reason quotes every 区政府 noise order
    the estimate borrows from."""
    texts = ["秀英区某小区水泵噪音扰民，请秀英区政府核实处理"] * 2 + [f"第{i}家工厂机器噪音，请龙华区政府核实处理"
                                                    for i in range(7)]
    units = ["street_town"] * 2 + ["ecology_environment"] * 5 + ["street_town"] * 2
    member = NamedUnitMember(names, UNITS).fit(texts, units, ["noise"] * 9, ["noise.industrial"] * 9)
    named = names.find("秀英区某商场水泵噪音，请秀英区政府核实处理")
    assert member.history(named, "street_town", "noise", "noise.industrial") == (4, 9, "点名区政府的同类诉求")
    # A level with enough orders of its own is quoted as it is.
    named = names.find("第八家工厂机器噪音，请龙华区政府核实处理")
    assert member.history(named, "ecology_environment", "noise", "noise.industrial") == (
        5, 7, "点名「龙华区政府」的同类诉求")
    assert member.history(names.find("住建局电话是多少"), "housing_construction", "not_environmental", "") == (
        0, 0, "")


def test_history_can_overrule_the_name(names):
    """An office that sends 'please, 城管' requests about sewage to the street: its practice wins."""
    texts = [f"第{i}户往路面排放污水，请城管核实处理" for i in range(30)]
    member = NamedUnitMember(names, UNITS).fit(texts, ["street_town"] * 30, ["water"] * 30, ["water.sewage"] * 30)
    p = member.predict(names.find("有人往路上倒污水，请城管核实处理"), "water", "water.sewage")
    assert UNITS[int(p.argmax())] == "street_town"
    assert p[UNITS.index("urban_management")] > p[UNITS.index("public_security")]  # the name still counts
    assert np.isclose(p.sum(), 1.0)


def test_unknown_unit_kind_in_the_lexicon_is_refused(tmp_path):
    from triage.classify.routing import load_routing
    from triage.settings import get_settings

    raw = (get_settings().knowledge_dir / "routing.yaml").read_text(encoding="utf-8")
    assert "  sanitation: [环卫, 环境卫生]" in raw
    broken = tmp_path / "routing.yaml"
    broken.write_text(raw.replace("  sanitation: [环卫, 环境卫生]", "  sanitaton: [环卫, 环境卫生]"), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown unit kind sanitaton"):
        load_routing(broken)
