"""The template drafter on real complaints from the shared files, with a fake retriever of real articles."""

from __future__ import annotations

import random
from datetime import date, datetime

import pytest

from drafting_support import (
    CODE,
    fake_retriever,
    library,
    needs_cases,
    needs_laws,
    needs_replies,
    read_csv,
    real_articles,
)
from triage.drafting.quality import PARTS, PLACEHOLDER_RE, check_draft
from triage.drafting.service import draft_reply
from triage.drafting.template import template_draft
from triage.drafting.types import DraftRequest
from triage.kb.regulations import article_no, find_citations
from triage.settings import Settings

pytestmark = [needs_laws, pytest.mark.timeout(120)]

NO_LLM = Settings(llm_base_url=None, llm_model=None)
AIR = "中华人民共和国大气污染防治法"
NOISE = "中华人民共和国噪声污染防治法"


@pytest.fixture(scope="module")
def retriever():
    """Real articles: the Code's for facts from 2026-08-15, the repealed single laws' before."""
    return fake_retriever({
        "code": real_articles((CODE, 572), (CODE, 250), (CODE, 593), (CODE, 506), (CODE, 150)),
        "old": real_articles((NOISE, 43), (AIR, 81), ("中华人民共和国环境保护法", 42)),
    })


def _sample(rows: list[dict], n: int, seed: int = 7) -> list[dict]:
    env = [r for r in rows if r.get("pollution_type") and r["pollution_type"] != "not_environmental"]
    return random.Random(seed).sample(env, min(n, len(env)))


def _assert_good(draft, complaint: str, facts: date):
    lib = library()
    report = check_draft(draft.text, complaint_text=complaint, facts_date=facts, known_articles=lib,
                         citations=draft.citations)
    missing = [p for p in PARTS if not report.parts[p]]
    assert not missing, f"missing parts {missing}:\n{draft.text}"
    assert not PLACEHOLDER_RE.search(draft.text), draft.text
    for c in draft.citations:
        rec = lib.get(c.law, article_no(c.article))
        assert rec is not None and rec.in_force(facts), f"{c.law}{c.article} not in force on {facts}"
    for tc in find_citations(draft.text):
        rec = lib.get(tc.law, tc.article_no)
        assert rec is not None and rec.in_force(facts), f"text cites {tc.law}{tc.article} (not in force {facts})"
    assert not [p for p in report.problems if "疑为虚构" in p or "失效" in p or "尚未施行" in p], report.problems
    assert report.score >= 0.8, (report, draft.text)
    return report


@needs_cases
def test_template_on_real_haikou_complaints(retriever):
    rows = _sample(read_csv("cases/haikou12345_env_dev.csv"), 25)
    facts = datetime(2026, 10, 9, 21, 0)
    for r in rows:
        req = DraftRequest(complaint_text=r["text"], occurred_at=facts, pollution_type=r["pollution_type"],
                           subtype=r["subtype"], unit_type=r["unit_type"], unit_name=r["unit_raw"] or None)
        draft = draft_reply(req, settings=NO_LLM, retriever=retriever)
        assert draft.generator == "template"
        _assert_good(draft, r["text"], facts.date())
        # a restatement, not a copy: long complaints are never pasted whole
        if len(r["text"]) > 120:
            assert r["text"] not in draft.text
        # findings missing → neutral planned verification + visible notice
        assert "将安排工作人员赴现场核查" in draft.text
        assert "未提供核查情况" in (draft.notice or "")
        # facts after 2026-08-15: none of the single laws the Code repealed (other laws of the digest may apply)
        assert not any("防治法" in c.law or c.law.endswith("环境保护法") for c in draft.citations), draft.citations


@needs_replies
def test_template_on_real_taidi_messages_with_findings(retriever):
    rows = _sample(read_csv("replies/taidi2020_env_replies_dev.csv"), 20, seed=11)
    for r in rows:
        complaint = f"{r['title']}\n{r['text']}"
        facts = datetime(2026, 9, 1, 10, 0)
        req = DraftRequest(complaint_text=complaint, occurred_at=facts, pollution_type=r["pollution_type"],
                           subtype=r["subtype"], unit_name="某区生态环境分局",
                           findings="工作人员于9月2日到现场核查，现场存在反映的情况", result="部分属实",
                           actions="已责令相关责任方限期整改")
        draft = draft_reply(req, settings=NO_LLM, retriever=retriever)
        _assert_good(draft, complaint, facts.date())
        assert "工作人员于9月2日到现场核查，现场存在反映的情况。" in draft.text
        assert "部分属实" in draft.text and "已责令相关责任方限期整改" in draft.text
        assert "我局" in draft.text
        # With findings given, the one thing left to check is the law: the basis is our summary, not its words.
        assert draft.notice == "法律依据部分是对所引条文要点的概括，不是法律原文；发出前请对照条文原文核对。"


def test_facts_date_decides_which_law_is_cited(retriever):
    text = "市民反映：某工地每天晚上十一点后还在施工，噪音扰民，请核实处理。"
    before = DraftRequest(complaint_text=text, occurred_at=datetime(2025, 5, 6, 23), pollution_type="noise",
                          subtype="noise.construction")
    after = before.model_copy(update={"occurred_at": datetime(2026, 9, 6, 23)})
    d_before = draft_reply(before, settings=NO_LLM, retriever=retriever)
    d_after = draft_reply(after, settings=NO_LLM, retriever=retriever)
    assert [(c.law, c.article) for c in d_before.citations] == [(NOISE, "第四十三条")]
    assert [(c.law, c.article) for c in d_after.citations] == [(CODE, "第五百七十二条")]
    assert "噪声污染防治法》第四十三条" in d_before.text and "生态环境法典》第五百七十二条" in d_after.text
    _assert_good(d_before, text, date(2025, 5, 6))
    _assert_good(d_after, text, date(2026, 9, 6))


def test_not_true_result_changes_measures(retriever):
    req = DraftRequest(complaint_text="市民反映某餐馆油烟直排，熏得家里不能开窗。", occurred_at=datetime(2026, 9, 10),
                       pollution_type="air", subtype="air.cooking_fumes", unit_name="某区城市管理和综合执法局",
                       findings="执法人员现场检查，该餐馆油烟净化器正常运行，排烟口高于周边建筑", result="不属实")
    draft = draft_reply(req, settings=NO_LLM, retriever=retriever)
    assert "不属实" in draft.text and "继续关注" in draft.text
    assert "一是" not in draft.text  # no enforcement list for a complaint found untrue
    assert [(c.law, c.article) for c in draft.citations] == [(CODE, "第二百五十条")]


def test_retriever_failure_still_drafts_from_the_digest():
    def broken(text, on, **kw):
        raise ConnectionError("Chroma down")

    req = DraftRequest(complaint_text="某广场每晚广场舞音响声音太大，请管管。", occurred_at=datetime(2026, 10, 1, 21),
                       pollution_type="noise", subtype="noise.social_life")
    draft = draft_reply(req, settings=NO_LLM, retriever=broken)
    assert draft.generator == "template"
    assert "法规检索暂不可用" in draft.notice
    assert draft.citations and all(c.law == CODE and c.in_force for c in draft.citations)
    _assert_good(draft, req.complaint_text, date(2026, 10, 1))


def test_out_of_force_articles_from_the_retriever_are_never_cited():
    stale = real_articles((AIR, 81), in_force=False)  # what a sloppy retriever might return after 2026-08-15
    req = DraftRequest(complaint_text="楼下烧烤店油烟很大", occurred_at=datetime(2026, 11, 1), pollution_type="air",
                       subtype="air.cooking_fumes")
    draft = template_draft(req, articles=stale, facts_date=date(2026, 11, 1))
    assert all(c.law == CODE for c in draft.citations)
    draft2 = draft_reply(req, settings=NO_LLM, retriever=lambda text, on, **kw: stale)
    assert AIR not in draft2.text and all(c.law != AIR for c in draft2.citations)


def test_retriever_receives_text_date_and_subtype(retriever):
    req = DraftRequest(complaint_text="夜间施工噪音", occurred_at=datetime(2026, 12, 1, 23), subtype="noise.construction",
                       pollution_type="noise")
    draft_reply(req, settings=NO_LLM, retriever=retriever)
    call = retriever.calls[-1]
    assert call["on"] == date(2026, 12, 1) and call["subtype"] == "noise.construction" and "夜间施工" in call["text"]


def test_a_matter_that_is_not_environmental_gets_no_environmental_reply(retriever):
    """A 户口 or 房产证 question re-dispatched to 公安 or 住建 was answered with an on-site pollution inspection and
    a polluter's duty from the Code, and the quality check saw nothing wrong."""
    req = DraftRequest(complaint_text="我想咨询一下孩子入学的户口迁移需要什么材料，请派出所告知。",
                       occurred_at=datetime(2026, 11, 20, 9), pollution_type="not_environmental", subtype="",
                       unit_type="public_security", unit_name="均禾派出所")
    before = len(retriever.calls)
    draft = draft_reply(req, settings=NO_LLM, retriever=retriever)
    assert len(retriever.calls) == before  # no environmental article is looked for
    assert draft.citations == [] and "《" not in draft.text
    for wrong in ("环境问题", "赴现场核查", "污染", "生态环境保护"):
        assert wrong not in draft.text, wrong
    assert "依职责" in draft.text and "均禾派出所" in draft.text and "不属于生态环境事项" in draft.notice
    done = draft_reply(req.model_copy(update={"findings": "经了解，来电人需办理户口迁移", "result": "属实",
                                              "actions": "已电话告知来电人所需材料"}), settings=NO_LLM, retriever=retriever)
    assert "将将" not in done.text and "依照" not in done.text  # no doubled word, no empty claim of a legal basis
    assert "下一步，我所将把办理结果及时告知您。" in done.text
    # Its reply lacks a legal basis on purpose: the quality check does not count that part as missing.
    assert "法律依据" not in done.quality.parts and not any("法律依据" in p for p in done.quality.problems)
    assert all(done.quality.parts.values()) and done.quality.score >= 0.85, done.quality


@pytest.mark.parametrize("subtype, text, expected", [
    ("noise.construction", "均禾街清湖村某工地凌晨还在施工打桩，噪音非常大", {(NOISE, 40), (NOISE, 43)}),
    ("air.dust", "工地渣土裸露不覆盖，刮风时扬尘很大", {(AIR, 69)}),  # beside 市容条例 34, the digest's too
])
def test_before_the_code_the_digests_repealed_law_is_cited_when_the_store_holds_only_the_code(subtype, text,
                                                                                              expected):
    """On a fresh install the knowledge base holds only the digest, stored under the Code: for facts of
    2026-08-14 no Code article it returns is in force, and a loose hit (治安管理处罚法 on construction noise) or a
    minor entry it did find (市容条例 on dust) was cited alone instead of the single law then in force."""
    loose = [{"law": "中华人民共和国治安管理处罚法", "article": "第八十八条", "in_force": True,
              "text": "违反关于社会生活噪声污染防治的法律规定，制造噪声干扰他人正常生活的，处警告"},
             {"law": "城市市容和环境卫生管理条例", "article": "第三十四条", "in_force": True,
              "text": "随地吐痰、便溺，乱扔果皮、纸屑和烟头等废弃物的"}]
    req = DraftRequest(complaint_text=text, occurred_at=datetime(2026, 8, 14, 23, 30), pollution_type=subtype.split(".")[0],
                       subtype=subtype)
    draft = template_draft(req, articles=loose, facts_date=date(2026, 8, 14))
    cited = {(c.law, article_no(c.article)) for c in draft.citations}
    assert expected <= cited, cited
    assert "中华人民共和国治安管理处罚法" not in {law for law, _ in cited}


def test_a_gist_that_opens_a_list_keeps_all_its_points():
    from triage.drafting.basis import first_sentence

    text = ("判断是否构成噪声污染要看两点：声音来自工业生产、建筑施工、交通运输或社会生活等活动；并且要么超过了相应的排放标准，"
            "要么没有依法落实防控措施，同时确实干扰了他人的生活。因此核查时既要看监测数据。")
    assert first_sentence(text).endswith("同时确实干扰了他人的生活")
    long_clause = "施工单位应当" + "落实防尘措施" * 14 + "；并且按规定公示"
    assert first_sentence(long_clause + "。") == long_clause.split("；")[0]  # a long plain clause is still cut


def test_a_frequency_is_restated_as_one_not_as_a_form_field():
    from triage.drafting.summary import summarize

    s = summarize("楼下烧烤店油烟很大，熏得不能开窗。这种情况每天都有，请处理", subtype="air.cooking_fumes")
    assert "每天如此" in s.restatement() and "时段" not in s.restatement()
