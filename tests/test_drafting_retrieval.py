"""The default retriever over the knowledge base, with an in-memory stand-in for Chroma and the embedder,
and style examples."""

from __future__ import annotations

from datetime import date

import numpy as np

from triage.drafting.examples import ExamplePool, format_examples, kb_examples, resolve_examples
from triage.drafting.retrieval import articles_known, call_retriever, kb_known_articles, kb_retriever
from triage.kb.store import Hit
from triage.settings import Settings

CODE = "中华人民共和国生态环境法典"
NOISE = "中华人民共和国噪声污染防治法"


def meta(law, no, label, effective, repealed="", source="statute", **kw):
    return {"law": law, "article": label, "article_no": no, "effective": effective, "repealed": repealed,
            "source": source, "chunk": 0, **kw}


ROWS = [
    ("c572d", meta(CODE, 572, "第五百七十二条", "2026-08-15", source="digest"), "夜间施工摘要"),
    ("c572", meta(CODE, 572, "第五百七十二条", "2026-08-15"), "在噪声敏感建筑物集中区域禁止夜间进行产生噪声的施工作业"),
    ("c1185", meta(CODE, 1185, "第一千一百八十五条", "2026-08-15"), "超过噪声排放标准排放建筑施工噪声的罚款"),
    ("c571", meta(CODE, 571, "第五百七十一条", "2026-08-15"), "设置噪声自动监测系统"),
    ("n43", meta(NOISE, 43, "第四十三条", "2022-06-05", "2026-08-15"), "夜间禁止产生噪声的建筑施工作业"),
    ("n41", meta(NOISE, 41, "第四十一条", "2022-06-05", "2026-08-15"), "施工单位噪声污染防治实施方案"),
]


class FakeCollection:
    def get(self, where=None, include=None, limit=None):
        conds = where.get("$and", [where]) if where else []
        rows = [r for r in ROWS if all(r[1].get(k) == v for c in conds for k, v in c.items())]
        rows = rows[:limit] if limit else rows
        return {"ids": [r[0] for r in rows], "metadatas": [r[1] for r in rows], "documents": [r[2] for r in rows]}


class FakeStore:
    def __init__(self):
        self.queries = []

    def collection(self, name):
        assert name == "regulations"
        return FakeCollection()

    def query(self, name, vector, k=5, where=None):
        self.queries.append((name, k))
        if name == "cases":
            return [Hit("1", "工地夜间施工噪音", {"reply": "网友您好，经核查已责令停工。"}, 0.9),
                    Hit("2", "工地噪音", {"reply": ""}, 0.8)]
        return [Hit(r[0], r[2], dict(r[1]), 0.9 - i * 0.01) for i, r in enumerate(ROWS)][:k]


class FakeEmbedder:
    model_id = "fake"

    def embed_query(self, text):
        return np.ones(4, dtype=np.float32)


def test_kb_retriever_filters_by_date_and_prefers_the_digest_articles():
    store = FakeStore()
    retr = kb_retriever(Settings(), store=store, embedder=FakeEmbedder())
    after = call_retriever(retr, "夜间施工噪音", date(2026, 10, 1), k=3, subtype="noise.construction")
    keys = [(a["law"], a["article_no"]) for a in after]
    assert keys[:2] == [(CODE, 572), (CODE, 1185)]  # our digest's picks first, fetched exactly
    assert all(a["in_force"] and a["law"] == CODE for a in after)  # the repealed noise law is gone
    assert after[0]["text"].startswith("在噪声敏感建筑物")  # statute text preferred over the digest chunk
    before = call_retriever(retr, "夜间施工噪音", date(2025, 10, 1), k=3, subtype="noise.construction")
    assert {a["law"] for a in before} == {NOISE}
    assert (NOISE, 43) in [(a["law"], a["article_no"]) for a in before]


def test_known_articles_from_the_kb():
    known = kb_known_articles(FakeStore())
    assert known(CODE, 572) is True
    assert known(CODE, 1999) is False  # the law is there, the article is not: invented
    assert known("某省某条例", 3) is None  # a law the knowledge base does not hold: cannot say
    merged = articles_known([{"law": CODE, "article_no": 571}], extra=None)
    assert merged(CODE, 571) is True and merged(CODE, 1999) is False and merged("某条例", 1) is None


def test_retriever_with_a_plain_signature_is_called_too():
    got = call_retriever(lambda text, on: [{"law": "《中华人民共和国生态环境法典》", "article": "第572条", "text": "x"}],
                         "t", date(2026, 9, 1), k=3, subtype=None)
    assert got[0]["law"] == CODE and got[0]["article"] == "第五百七十二条" and got[0]["in_force"] is True


def test_style_examples():
    ex = kb_examples(Settings(), store=FakeStore(), embedder=FakeEmbedder())(text="工地夜间施工", k=2)
    assert [e["reply"] for e in ex] == ["网友您好，经核查已责令停工。"]  # cases without a reply are skipped
    pool = ExamplePool([{"text": "餐馆油烟扰民", "reply": "已责令安装油烟净化器", "subtype": "air.cooking_fumes"},
                        {"text": "工地夜间施工噪音扰民", "reply": "已责令停止夜间施工", "subtype": "noise.construction"}])
    assert resolve_examples(pool, "晚上工地施工太吵", k=1, subtype="noise.construction")[0]["reply"] == "已责令停止夜间施工"
    assert resolve_examples(lambda text, **kw: 1 / 0, "x") == []  # a broken source never breaks drafting
    assert "示例1" in format_examples(ex) and format_examples([]) == "（无）"


GD = "广东省大气污染防治条例"
BJ = "北京市环境噪声污染防治办法"


class LocalStore(FakeStore):
    """Two local regulations rank first: one of Guangdong, one of Beijing."""

    def query(self, name, vector, k=5, where=None):
        local = [Hit("gd", "餐饮油烟应当安装净化设施", meta(GD, 40, "第四十条", "2019-03-01", level="local"), 0.95),
                 Hit("bj", "夜间施工须经批准", meta(BJ, 17, "第十七条", "2007-01-01", level="local"), 0.94)]
        return (local + super().query(name, vector, k=k, where=where))[:k]


def test_local_regulations_only_of_the_jurisdictions_regions():
    def laws(jurisdiction):
        retr = kb_retriever(Settings(jurisdiction=jurisdiction), store=LocalStore(), embedder=FakeEmbedder())
        return {a["law"] for a in call_retriever(retr, "油烟", date(2026, 10, 1), k=5, subtype=None)}

    guangzhou, haikou = laws("gz_baiyun_junhe"), laws("hk_longhua")
    assert GD in guangzhou and BJ not in guangzhou  # Guangdong's rules bind a Guangzhou street, Beijing's do not
    assert GD not in haikou and BJ not in haikou
    assert CODE in guangzhou and CODE in haikou  # national law applies everywhere


def test_routing_regions_are_validated(tmp_path):
    import pytest
    import yaml

    from triage.classify.routing import load_routing
    from triage.settings import get_settings

    data = yaml.safe_load((get_settings().knowledge_dir / "routing.yaml").read_text(encoding="utf-8"))
    data["jurisdictions"]["hk_longhua"]["regions"] = "海南省"
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValueError, match="hk_longhua"):
        load_routing(path)
