"""The LLM paths over real HTTP against a fake OpenAI-compatible server on loopback.

Every failure (slow answer past the timeout, HTTP 500, a body that is not JSON, content that is not the
expected JSON, empty content, placeholders) must end in the template draft with a visible Chinese notice,
within timeout × (retries + 1) plus a small margin. The classifier member must reject codes outside the
taxonomy.
"""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from drafting_support import CODE, fake_retriever, needs_laws, real_articles
from fake_llm_server import FakeLLMServer
from triage.classify.llm_member import AllowedCodes, LLMClassifier, UnknownCodeError
from triage.drafting.llm import MARGIN_S, LLMUnavailable
from triage.drafting.service import draft_reply
from triage.drafting.types import DraftRequest
from triage.settings import Settings

pytestmark = [needs_laws, pytest.mark.timeout(60)]

TIMEOUT = 0.8
RETRIES = 1
BOUND = TIMEOUT * (RETRIES + 1) + MARGIN_S + 0.5  # what draft_reply promises, plus scheduling slack

COMPLAINT = ("市民来电反映：白云区均禾街石马桥路某小区旁的建筑工地每天晚上11点以后还在打桩施工，噪音很大，"
             "严重影响周边居民休息，请相关部门核实处理。")


def make_settings(server: FakeLLMServer, **kw) -> Settings:
    timeout = kw.pop("timeout", TIMEOUT)
    return Settings(llm_base_url=server.base_url, llm_model="fake-qwen", llm_api_key=None, llm_timeout=timeout,
                    llm_classify_timeout=timeout, llm_max_retries=kw.pop("retries", RETRIES), **kw)


@pytest.fixture(scope="module", autouse=True)
def warm_imports():
    """Import the client stack once so the time bounds below measure waiting on the server, not imports."""
    import langchain_openai  # noqa: F401
    import openai  # noqa: F401


@pytest.fixture(scope="module")
def articles():
    return real_articles((CODE, 572), (CODE, 1185))


@pytest.fixture
def retriever(articles):
    return fake_retriever({"code": articles})


def request(**kw) -> DraftRequest:
    base = dict(complaint_text=COMPLAINT, occurred_at=datetime(2026, 11, 20, 23, 30), pollution_type="noise",
                subtype="noise.construction", unit_type="urban_management", unit_name="白云区均禾街道综合行政执法队")
    base.update(kw)
    return DraftRequest(**base)


def llm_json(text: str, citations: list[dict]) -> str:
    return json.dumps({"text": text, "citations": citations}, ensure_ascii=False)


GOOD_TEXT = ("市民朋友：您好！\n您反映的石马桥路某小区旁建筑工地夜间打桩施工噪声扰民问题已收悉。\n"
             "经我队执法人员11月21日夜间现场核查，该工地确在22时后进行打桩作业，未能出示夜间连续施工证明，反映情况属实。\n"
             "我队已当场责令施工单位停止夜间施工，并下达责令改正通知书，下一步将加强夜间巡查。\n"
             "根据《中华人民共和国生态环境法典》第五百七十二条，在噪声敏感建筑物集中区域夜间禁止进行产生噪声的施工作业。\n"
             "感谢您对城市管理工作的关心和支持。如有疑问，可拨打12345热线反映。")


def test_llm_answer_is_used_with_prompt_version_and_checked_citations(retriever):
    content = llm_json(GOOD_TEXT, [{"law": CODE, "article": "第五百七十二条"}])
    with FakeLLMServer("normal", content=content) as srv:
        draft = draft_reply(request(findings="11月21日夜间现场核查，工地确有夜间打桩", result="属实"),
                            settings=make_settings(srv), retriever=retriever,
                            examples=[{"text": "工地夜间施工噪音", "reply": "网友您好！经核查，已责令停工。感谢支持。"}])
    assert draft.generator == "llm:fake-qwen"
    assert draft.prompt_version.startswith("reply-draft-")
    assert draft.text.startswith("市民朋友：您好！")
    assert [(c.law, c.article, c.in_force) for c in draft.citations] == [(CODE, "第五百七十二条", True)]
    assert draft.notice is None
    assert draft.quality is not None and all(draft.quality.parts.values())
    # the request really went over HTTP, with the retrieved articles and the style example in the prompt
    assert srv.paths == ["/v1/chat/completions"]
    sent = json.dumps(srv.requests[0]["messages"], ensure_ascii=False)
    assert "第五百七十二条" in sent and "夜间" in sent
    assert "经核查，已责令停工" in sent
    assert srv.requests[0]["model"] == "fake-qwen"


def test_invented_and_repealed_citations_are_dropped_and_noted(retriever):
    text = GOOD_TEXT.replace(
        "感谢您",
        "同时依据《中华人民共和国生态环境法典》第一千九百九十九条和《中华人民共和国噪声污染防治法》第四十三条予以处理。\n感谢您")
    content = llm_json(text, [{"law": CODE, "article": "第五百七十二条"},
                              {"law": CODE, "article": "第一千九百九十九条"},
                              {"law": "中华人民共和国噪声污染防治法", "article": "第四十三条"}])
    with FakeLLMServer("normal", content=content) as srv:
        draft = draft_reply(request(findings="现场核查属实", result="属实"), settings=make_settings(srv),
                            retriever=retriever, examples=[])
    assert draft.generator.startswith("llm:")
    cited = {(c.law, c.article) for c in draft.citations}
    assert cited == {(CODE, "第五百七十二条")}
    assert "第一千九百九十九条" not in draft.text  # scrubbed from the text as well
    assert "噪声污染防治法》第四十三条" not in draft.text  # repealed on 2026-08-15, facts are later
    assert draft.notice and "第一千九百九十九条" in draft.notice and "已删除" in draft.notice
    assert draft.quality and not [p for p in draft.quality.problems if "疑为虚构" in p or "已失效" in p]


@pytest.mark.parametrize("mode, reason", [
    ("slow", "超时"),
    ("error500", "HTTP 500"),
    ("malformed", "返回格式无法解析"),
    ("empty", "返回内容为空"),
])
def test_failures_fall_back_to_template_with_notice_in_bounded_time(mode, reason, retriever):
    with FakeLLMServer(mode, content="{}", delay=TIMEOUT * 4) as srv:
        t0 = time.monotonic()
        draft = draft_reply(request(), settings=make_settings(srv), retriever=retriever, examples=[])
        elapsed = time.monotonic() - t0
    assert draft.generator == "template"
    assert draft.prompt_version.startswith("reply-template-")
    assert draft.notice and draft.notice.startswith("大模型服务不可用") and reason in draft.notice
    assert "已使用模板生成草稿" in draft.notice
    assert elapsed < BOUND, f"{mode}: {elapsed:.2f}s > {BOUND:.2f}s"
    # no findings were given: every part is there but the inspection, which is a placeholder until staff fill it
    assert draft.quality and {k for k, v in draft.quality.parts.items() if not v} == {"核查情况"}
    retried = mode in ("slow", "error500")
    assert len(srv.requests) == (RETRIES + 1 if retried else 1)


@pytest.mark.parametrize("content, reason", [
    ("这不是JSON，只是一段话。", "返回格式无法解析"),
    ('{"text": "", "citations": []}', "返回内容为空"),
    ('{"citations": []}', "返回内容为空"),
    ("```json\n{\"text\": \"太短\"}\n```", "返回内容过短"),
])
def test_unusable_content_falls_back(content, reason, retriever):
    with FakeLLMServer("normal", content=content) as srv:
        draft = draft_reply(request(), settings=make_settings(srv), retriever=retriever, examples=[])
    assert draft.generator == "template"
    assert reason in (draft.notice or "")


def test_placeholders_in_llm_text_fall_back(retriever):
    content = llm_json(GOOD_TEXT.replace("11月21日", "xx月xx日"), [])
    with FakeLLMServer("normal", content=content) as srv:
        draft = draft_reply(request(), settings=make_settings(srv), retriever=retriever, examples=[])
    assert draft.generator == "template"
    assert "占位符" in draft.notice
    assert "xx" not in draft.text


def test_json_in_code_fence_is_accepted(retriever):
    content = "好的，以下是草稿：\n```json\n" + llm_json(GOOD_TEXT, []) + "\n```"
    with FakeLLMServer("normal", content=content) as srv:
        draft = draft_reply(request(findings="现场核查属实"), settings=make_settings(srv), retriever=retriever,
                            examples=[])
    assert draft.generator == "llm:fake-qwen"
    # the model listed no citations, but the text cites 572, which was retrieved: it is kept
    assert [(c.law, c.article) for c in draft.citations] == [(CODE, "第五百七十二条")]


def test_trickling_server_cannot_hold_the_caller(retriever):
    """A server that keeps sending a byte now and then defeats per-read timeouts; our deadline still holds."""
    content = llm_json(GOOD_TEXT, [])
    with FakeLLMServer("trickle", content=content, delay=TIMEOUT * 8) as srv:
        t0 = time.monotonic()
        draft = draft_reply(request(), settings=make_settings(srv), retriever=retriever, examples=[])
        elapsed = time.monotonic() - t0
    assert elapsed < BOUND, f"{elapsed:.2f}s > {BOUND:.2f}s"
    assert draft.generator == "template" and "超时" in draft.notice


def test_unreachable_endpoint_falls_back_quickly(retriever):
    with FakeLLMServer() as srv:
        url = srv.base_url
    settings = Settings(llm_base_url=url, llm_model="fake", llm_timeout=TIMEOUT, llm_max_retries=RETRIES)
    t0 = time.monotonic()
    draft = draft_reply(request(), settings=settings, retriever=retriever, examples=[])
    assert time.monotonic() - t0 < BOUND
    assert draft.generator == "template" and "无法连接" in draft.notice


def test_no_llm_configured_uses_template_without_llm_notice(retriever):
    draft = draft_reply(request(), settings=Settings(llm_base_url=None, llm_model=None), retriever=retriever)
    assert draft.generator == "template"
    assert "大模型" not in (draft.notice or "")
    assert "未提供核查情况" in draft.notice  # findings missing is still said


# ------------------------------------------------------------------------------------------ classifier member

ALLOWED = AllowedCodes.of(
    ["noise", "air", "not_environmental"],
    ["noise.construction", "noise.social_life", "air.cooking_fumes", "air.other", "noise.other"],
    ["urban_management", "public_security", "ecology_environment", "other"],
)


def labels(**kw) -> dict:
    base = {"pollution_type": "noise", "subtype": "noise.construction", "unit_type": "urban_management",
            "confidence": 0.86, "evidence": "工地每天晚上11点以后还在打桩"}
    base.update(kw)
    return base


def test_classifier_structured_output_accepted_and_schema_sent():
    with FakeLLMServer("structured", structured=labels()) as srv:
        clf = LLMClassifier(make_settings(srv), allowed=ALLOWED)
        out = clf.classify(COMPLAINT)
    assert out is not None
    assert (out["pollution_type"], out["subtype"], out["unit_type"]) == ("noise", "noise.construction",
                                                                        "urban_management")
    assert out["confidence"] == pytest.approx(0.86)
    assert out["prompt_version"].startswith("classify-")
    fmt = srv.requests[0]["response_format"]
    assert fmt["type"] == "json_schema"
    props = fmt["json_schema"]["schema"]["properties"]
    assert set(props["subtype"]["enum"]) == set(ALLOWED.subtypes) | {"not_environmental"}
    assert set(props["unit_type"]["enum"]) == set(ALLOWED.unit_types)


@pytest.mark.parametrize("bad, message", [
    (labels(subtype="noise.karaoke"), "unknown subtype"),
    (labels(pollution_type="light"), "unknown pollution_type"),
    (labels(unit_type="fire_brigade"), "unknown unit_type"),
    (labels(pollution_type="air", subtype="noise.construction"), "does not belong"),
])
def test_classifier_rejects_codes_outside_the_taxonomy(bad, message):
    with FakeLLMServer("structured", structured=bad) as srv:
        clf = LLMClassifier(make_settings(srv), allowed=ALLOWED)
        assert clf.classify(COMPLAINT) is None
        assert message in clf.last_error
        with pytest.raises(UnknownCodeError, match=message):
            clf.classify_or_raise(COMPLAINT)


def test_classifier_not_environmental_has_no_subtype():
    data = labels(pollution_type="not_environmental", subtype="not_environmental", unit_type="other")
    with FakeLLMServer("structured", structured=data) as srv:
        out = LLMClassifier(make_settings(srv), allowed=ALLOWED).classify("小区停水三天了")
    assert out["pollution_type"] == "not_environmental" and out["subtype"] is None


@pytest.mark.parametrize("mode", ["slow", "error500", "malformed"])
def test_classifier_failures_return_none_in_bounded_time(mode):
    with FakeLLMServer(mode, delay=TIMEOUT * 4) as srv:
        clf = LLMClassifier(make_settings(srv), allowed=ALLOWED)
        t0 = time.monotonic()
        assert clf.classify(COMPLAINT) is None
        assert time.monotonic() - t0 < TIMEOUT + MARGIN_S + 0.5  # one try: it sits on the intake path
        assert clf.last_error.startswith("unavailable")
        assert len(srv.requests) == 1
        with pytest.raises(LLMUnavailable):
            clf.classify_or_raise(COMPLAINT)


def test_classifier_disabled_without_endpoint():
    clf = LLMClassifier(Settings(llm_base_url=None, llm_model=None), allowed=ALLOWED)
    assert not clf.enabled
    assert clf.classify(COMPLAINT) is None


def test_scrubbed_citations_leave_a_readable_sentence():
    """Two unverifiable citations beside a good one read 根据相关法律法规和相关法律法规以及《…》第二百五十条."""
    from datetime import date

    from triage.drafting.chain import verify_citations

    code = "中华人民共和国生态环境法典"
    text = ("根据《中华人民共和国大气污染防治法》第八十一条和《中华人民共和国生态环境法典》第九百九十九条以及"
            f"《{code}》第二百五十条，我局将依法处理。另依照《某某条例》第三条和《某某办法》第九条，督促整改。")
    articles = [{"law": code, "article_no": 250, "in_force": True}]
    out, cited, notes = verify_citations(text, [], articles=articles, known=lambda law, no: False,
                                         on=date(2026, 11, 1))
    assert out.startswith(f"根据《{code}》第二百五十条，我局将依法处理。") and "另依照相关法律法规，督促整改。" in out
    assert [(c.law, c.article) for c in cited] == [(code, "第二百五十条")] and notes
