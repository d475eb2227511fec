"""check_draft on crafted and real replies; law dates, citation parsing, the digest and the prompt files."""

from __future__ import annotations

import random
import statistics
from datetime import date

import pytest

from drafting_support import CODE, library, needs_laws, needs_replies, read_csv
from triage.drafting.basis import all_entries, basis_by_subtype, curated_for, general_entries
from triage.kb.regulations import (
    CODE_EFFECTIVE,
    KNOWN_REPEALS,
    article_label,
    cn_to_int,
    find_citations,
    int_to_cn,
    law_in_force,
    normalize_law,
)
from triage.drafting.prompts import PromptFileError, load_prompt, parse_prompt
from triage.drafting.quality import PARTS, check_draft, detect_parts, relevance
from triage.drafting.types import Citation
from triage.settings import Settings

COMPLAINT = "市民反映：某小区旁工地每天晚上十一点后还在打桩施工，噪音很大，严重影响居民休息，请核实处理。"
GOOD = ("市民朋友：您好！\n您反映的某小区旁工地每天晚上十一点后还在打桩施工、噪音很大影响居民休息的问题已收悉。\n"
        "经现场核查，该工地22时后仍在打桩作业，未取得夜间连续施工证明，反映情况属实。\n"
        "我局已责令施工单位立即停止夜间施工，下一步将加强夜间巡查。\n"
        "根据《中华人民共和国生态环境法典》第五百七十二条，噪声敏感建筑物集中区域夜间禁止产生噪声的施工作业。\n"
        "感谢您对我们工作的关心和支持。")
KNOWN = {(CODE, 572), (CODE, 1185), ("中华人民共和国噪声污染防治法", 43), ("中华人民共和国大气污染防治法", 81)}


# ------------------------------------------------------------------------------------------------ numbers, laws

@pytest.mark.parametrize("n", [1, 9, 10, 11, 19, 20, 87, 100, 101, 110, 572, 1000, 1005, 1010, 1185, 1242])
def test_chinese_article_numbers_round_trip(n):
    assert cn_to_int(int_to_cn(n)) == n


def test_known_numerals():
    assert int_to_cn(572) == "五百七十二" and int_to_cn(1105) == "一千一百零五" and int_to_cn(10) == "十"
    assert cn_to_int("一千二百四十二") == 1242 and cn_to_int("十五") == 15 and cn_to_int("48") == 48
    assert article_label(87) == "第八十七条"


def test_law_names_and_validity():
    assert normalize_law("《中华人民共和国大气污染防治法》（2018年修正）") == "大气污染防治法"
    assert law_in_force(CODE, date(2026, 8, 14)) is False
    assert law_in_force(CODE, CODE_EFFECTIVE) is True
    assert law_in_force("大气污染防治法", date(2026, 8, 14)) is True
    assert law_in_force("中华人民共和国大气污染防治法", CODE_EFFECTIVE) is False
    assert law_in_force("中华人民共和国环境噪声污染防治法", date(2022, 6, 5)) is False  # replaced in 2022
    assert law_in_force("广东省大气污染防治条例", date(2026, 9, 1)) is None  # not ours to judge


def test_parse_citations_in_text():
    text = ("依据《中华人民共和国环境噪声污染防治法》第三十条第一款、第五十六条的规定，"
            "并按《声环境质量标准》GB3096-2008执行；根据《大气污染防治法》（2018年修正）第八十一条处理。")
    got = [(c.law, c.article_no) for c in find_citations(text)]
    assert got == [("中华人民共和国环境噪声污染防治法", 30), ("中华人民共和国环境噪声污染防治法", 56),
                   ("大气污染防治法", 81)]


# ------------------------------------------------------------------------------------------------ check_draft

def test_good_draft_scores_high():
    r = check_draft(GOOD, complaint_text=COMPLAINT, facts_date=date(2026, 11, 20), known_articles=KNOWN,
                    citations=[Citation(law=CODE, article="第五百七十二条", in_force=True)])
    assert all(r.parts.values()), r.parts
    assert r.problems == []
    assert r.score >= 0.9


@pytest.mark.parametrize("marker", ["xx", "XX", "【】", "××", "○○", "【请填写核查情况】"])
def test_placeholders_are_problems(marker):
    text = GOOD.replace("22时后", f"{marker}时后")
    r = check_draft(text, complaint_text=COMPLAINT, facts_date=date(2026, 11, 20), known_articles=KNOWN)
    assert any("占位符" in p for p in r.problems), r.problems
    clean = check_draft(GOOD, complaint_text=COMPLAINT, facts_date=date(2026, 11, 20), known_articles=KNOWN)
    assert r.score <= clean.score - 0.25


def test_repealed_law_after_the_code_is_a_problem():
    text = GOOD.replace("《中华人民共和国生态环境法典》第五百七十二条", "《中华人民共和国噪声污染防治法》第四十三条")
    after = check_draft(text, complaint_text=COMPLAINT, facts_date=date(2026, 9, 1), known_articles=KNOWN)
    assert any("已失效" in p and "生态环境法典" in p for p in after.problems), after.problems
    before = check_draft(text, complaint_text=COMPLAINT, facts_date=date(2026, 8, 14), known_articles=KNOWN)
    assert not any("失效" in p for p in before.problems)
    assert before.score > after.score


def test_code_cited_for_facts_before_it_took_effect():
    r = check_draft(GOOD, complaint_text=COMPLAINT, facts_date=date(2025, 12, 1), known_articles=KNOWN)
    assert any("尚未施行" in p and "2026-08-15" in p for p in r.problems), r.problems


def test_structured_citations_are_checked_too():
    r = check_draft(GOOD, complaint_text=COMPLAINT, facts_date=date(2026, 11, 20), known_articles=KNOWN,
                    citations=[{"law": "中华人民共和国大气污染防治法", "article": "第八十一条", "in_force": True}])
    assert any("大气污染防治法》第八十一条" in p and "已失效" in p for p in r.problems)


def test_invented_article_number():
    text = GOOD.replace("第五百七十二条", "第一千八百条")
    r = check_draft(text, complaint_text=COMPLAINT, facts_date=date(2026, 11, 20), known_articles=KNOWN)
    assert any("疑为虚构" in p for p in r.problems), r.problems
    # known_articles may also be a callable
    r2 = check_draft(text, complaint_text=COMPLAINT, facts_date=date(2026, 11, 20),
                     known_articles=lambda law, no: no < 1243 if "法典" in law else None)
    assert any("疑为虚构" in p for p in r2.problems)


def test_law_outside_the_knowledge_base_is_only_a_hint():
    text = GOOD.replace("《中华人民共和国生态环境法典》第五百七十二条", "《西地省城市综合管理条例》第四十一条")
    r = check_draft(text, complaint_text=COMPLAINT, facts_date=date(2019, 1, 1), known_articles=KNOWN)
    assert [p for p in r.problems if "西地省" in p] == ["提示：《西地省城市综合管理条例》第四十一条未收录于知识库，无法核对条文"]


def test_missing_parts_are_reported():
    bare = "已处理。"
    r = check_draft(bare, complaint_text=COMPLAINT, facts_date=date(2026, 11, 20), known_articles=KNOWN)
    for part in ("称呼", "诉求复述", "法律依据", "结语"):
        assert f"缺少{part}" in r.problems
    assert "答复内容过短" in r.problems
    assert r.score < 0.4


def test_relevance_tells_own_complaint_from_another():
    other = "市民反映某菜市场门口垃圾堆积多日无人清运，臭味很大，请环卫部门处理。"
    assert relevance(GOOD, COMPLAINT) > 0.3
    assert relevance(GOOD, other) < 0.1


@needs_replies
def test_real_replies_parts_and_relevance():
    rows = [r for r in read_csv("replies/taidi2020_env_replies_dev.csv") if r["pollution_type"] != "not_environmental"]
    present = {p: statistics.mean(detect_parts(r["reply"])[p] for r in rows) for p in PARTS}
    assert present["称呼"] > 0.8 and present["诉求复述"] > 0.8  # real replies nearly always greet and restate
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    own = statistics.mean(relevance(r["reply"], r["title"] + r["text"]) for r in rows)
    foreign = statistics.mean(relevance(s["reply"], r["title"] + r["text"]) for r, s in zip(rows, shuffled))
    assert own > 2 * foreign, (own, foreign)


@needs_replies
@needs_laws
def test_real_reply_citing_the_law_of_its_time_passes():
    rows = read_csv("replies/taidi2020_env_replies_dev.csv")
    cited = [r for r in rows if "《中华人民共和国大气污染防治法》" in r["reply"] and find_citations(r["reply"])]
    assert cited
    r = cited[0]
    then = check_draft(r["reply"], complaint_text=r["text"], facts_date=r["reply_time"], known_articles=library())
    assert not [p for p in then.problems if "失效" in p or "尚未施行" in p], then.problems
    today = check_draft(r["reply"], complaint_text=r["text"], facts_date=date(2026, 11, 28), known_articles=library())
    assert any("已失效" in p for p in today.problems)


# ------------------------------------------------------------------------------------------------ digest

@needs_laws
@pytest.mark.parametrize("entry", all_entries(), ids=lambda e: f"{normalize_law(e.law)}-{e.article_no}")
def test_digest_entries_exist_in_the_statutes(entry):
    """Every article the drafter takes from knowledge/regulations (依据 and 原依据) exists in the statutes."""
    rec = library().get(entry.law, entry.article_no)
    assert rec is not None, f"{entry.law}{entry.article} not in shared statutes"
    if normalize_law(entry.law) == normalize_law(CODE):
        assert entry.valid_from == CODE_EFFECTIVE and entry.valid_until is None
    if entry.law in KNOWN_REPEALS:  # an old law's article: only until the Code
        assert entry.valid_until == CODE_EFFECTIVE and entry.valid_from and entry.valid_from < CODE_EFFECTIVE
    # our gist is a paraphrase, not a copy of the statute
    assert entry.gist and entry.gist not in rec.text


def test_digest_picks_the_law_in_force():
    basis = basis_by_subtype()
    assert len(basis) >= 20 and general_entries()
    for subtype in basis:
        for e in curated_for(subtype, date(2026, 9, 1)):
            assert e.law not in KNOWN_REPEALS and law_in_force(e.law, date(2026, 9, 1)), (subtype, e)
    before = curated_for("noise.construction", date(2025, 9, 1))
    assert before and all(normalize_law(e.law) == "噪声污染防治法" for e in before)  # the 原依据 articles
    assert all(e in general_entries() for e in curated_for("noise.construction", date(2021, 1, 1)))  # before the 2022 law


# ------------------------------------------------------------------------------------------------ prompt files

@pytest.mark.parametrize("name, variables", [
    ("reply_draft", {"complaint", "facts_date", "pollution", "unit_name", "findings", "result", "actions",
                     "articles", "examples"}),
    ("classify", {"text", "pollution_types", "subtypes", "unit_types"}),
])
def test_prompt_files_have_versions_and_variables(name, variables):
    p = load_prompt(Settings().prompts_dir, name)
    assert p.version.startswith(("reply-draft-", "classify-")) and p.version[-1].isdigit()
    tpl = p.chat_template()
    assert set(tpl.input_variables) == variables
    msgs = tpl.format_messages(**{v: f"<{v}>" for v in variables})
    assert [m.type for m in msgs] == ["system", "human"]


def test_prompt_without_version_is_rejected():
    with pytest.raises(PromptFileError):
        parse_prompt("---\npurpose: x\n---\n<!-- role: human -->\nhi {text}\n")
    with pytest.raises(PromptFileError):
        parse_prompt("no front matter")


def test_a_single_brace_in_a_prompt_is_named_when_the_file_is_read():
    """{"落款": "单位"} (braces not doubled) failed only at the LLM call, reported as 大模型服务不可用 (KeyError)."""
    head = "---\nversion: t-1\nvariables: text\n---\n<!-- role: human -->\n"
    assert parse_prompt(head + "分类：{text}；格式 {{\"a\": 1}}\n", "p.md").version == "t-1"
    with pytest.raises(PromptFileError, match=r"p.md: human 段第 2 行.*不是声明的变量"):
        parse_prompt(head + "分类：{text}\n落款格式：{\"落款\": \"单位\"}\n", "p.md")


def test_a_reply_on_a_matter_that_is_not_ours_needs_no_legal_basis():
    reply = ("您好！您反映的小区门口占道经营问题已收悉。经我所工作人员现场核查，情况属实。已督促摊主规范经营，"
             "下一步将加强巡查。感谢您的监督。")
    complaint = "小区门口有人占道经营，影响通行。"
    env = check_draft(reply, complaint_text=complaint, facts_date="2026-11-20", known_articles=None)
    ours = check_draft(reply, complaint_text=complaint, facts_date="2026-11-20", known_articles=None,
                       needs_basis=False)
    assert "缺少法律依据" in env.problems and "法律依据" not in ours.parts
    assert not any("法律依据" in p for p in ours.problems) and ours.score > env.score
    cited = check_draft(reply + "依据《中华人民共和国道路交通安全法》第九百条处理。", complaint_text=complaint,
                        facts_date="2026-11-20", known_articles=[("中华人民共和国道路交通安全法", 31)],
                        needs_basis=False)
    assert any("第九百条" in p for p in cited.problems)  # a citation it does make is still checked


def test_a_draft_without_findings_is_not_scored_as_if_it_had_them():
    """An empty draft (no 核查情况 given) scored 99 with ✓ 核查情况 beside the notice 未提供核查情况."""
    draft = ("市民朋友：您好！您反映的楼下饭店油烟直排问题已收悉。我局将安排工作人员赴现场核查。根据《中华人民共和国"
             "生态环境法典》第二百五十条，餐饮经营者应安装油烟净化设施。感谢您的监督。")
    given = check_draft(draft, complaint_text="楼下饭店油烟直排", facts_date="2026-11-20", known_articles=None)
    blank = check_draft(draft, complaint_text="楼下饭店油烟直排", facts_date="2026-11-20", known_articles=None,
                        findings_given=False)
    assert given.parts["核查情况"] and not blank.parts["核查情况"] and blank.score < given.score
    assert any("尚未填写核查情况" in p for p in blank.problems)
