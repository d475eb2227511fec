"""Law-markdown parser, numerals, chunking, in-force dates, the digest's citations, idempotent ingest.

Fast: no embedding model (a deterministic fake embedder); the real-data tests read ../shared/data/laws and skip
where it is absent.
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from triage.kb import regulations as reg
from triage.kb.regulations import (
    CODE_TITLE,
    cn_to_int,
    in_force,
    ingest_paths,
    int_to_cn,
    parse_citation,
    parse_digest,
    parse_law_file,
    parse_law_text,
    parse_paths,
    split_text,
)
from triage.kb.store import REGULATIONS, KnowledgeStore

LAWS = Path(__file__).resolve().parents[2] / "shared" / "data" / "laws"
CODE_DIR = LAWS / "national" / "生态环境法典"
DIGEST_DIR = Path(__file__).resolve().parents[1] / "knowledge" / "regulations"
needs_laws = pytest.mark.skipif(not CODE_DIR.is_dir(), reason="../shared/data/laws not present")


class FakeEmbedder:
    """Deterministic unit vectors from a hash of the text; counts what it embeds."""

    model_id = "fake-embedder"
    dim = 16

    def __init__(self):
        self.embedded = 0

    def _vec(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed_passages(self, texts, progress=False):
        self.embedded += len(texts)
        return np.stack([self._vec(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_queries(self, texts, progress=False):
        return self.embed_passages(texts)

    def embed_query(self, text):
        return self._vec(text)


@pytest.fixture
def kb_store(tmp_path) -> KnowledgeStore:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"),
                                       settings=ChromaSettings(anonymized_telemetry=False, allow_reset=True))
    return KnowledgeStore(client)


# --------------------------------------------------------------------------------------------------- numerals
@pytest.mark.parametrize("text,value", [
    ("一", 1), ("十", 10), ("十五", 15), ("二十", 20), ("二十一", 21), ("九十九", 99), ("一百", 100),
    ("一百零五", 105), ("一百一十", 110), ("一百十", 110), ("一百二十三", 123), ("三百", 300), ("五百七十二", 572),
    ("一千", 1000), ("一千零五十", 1050), ("一千零五", 1005), ("一千二百", 1200), ("一千二百四十二", 1242),
    ("两千", 2000), ("一万零一", 10001), ("二〇二六", 2026), ("〇", 0), ("87", 87),
])
def test_cn_to_int(text, value):
    assert cn_to_int(text) == value


@pytest.mark.parametrize("bad", ["", "条", "十a", "第一"])
def test_cn_to_int_rejects_non_numerals(bad):
    with pytest.raises(ValueError):
        cn_to_int(bad)


def test_int_to_cn_writes_statute_style_and_round_trips():
    assert int_to_cn(10) == "十"
    assert int_to_cn(15) == "十五"
    assert int_to_cn(110) == "一百一十"
    assert int_to_cn(105) == "一百零五"
    assert int_to_cn(1050) == "一千零五十"
    assert int_to_cn(1005) == "一千零五"
    assert int_to_cn(1242) == "一千二百四十二"
    for n in range(0, 3000):
        assert cn_to_int(int_to_cn(n)) == n


# --------------------------------------------------------------------------------------------------- parsing
BOLD_STYLE = """---
prev: /somewhere/
---

# 第一编　总则

### 第一章　基本规定

**第一条**　为了测试解析器，制定本法。

**第二条**　本法所称测试，是指：

（一）第一种情形；

（二）第二种情形。

#### 第一节　细则

**第三条**　第二条规定的情形，适用本节。

# 第二编　污染防治

## 第七分编　噪声污染防治

### 第二十六章　建筑施工噪声污染防治

**第五百七十二条**　夜间不得施工。
"""

PLAIN_STYLE = """# 中华人民共和国测试法

2021年12月24日 第十三届全国人民代表大会常务委员会第三十二次会议通过

<!-- INFO END -->

## 第一章　总　　则

第一条 为了测试，制定本法。

第二条 本法适用于测试。
第三条规定的事项除外。

第二章 监督管理

第三条 监督管理部门负责测试。

第十条 本法自2022年6月5日起施行。《中华人民共和国旧测试法》同时废止。
"""


def test_parse_bold_style_with_markdown_headings():
    articles, info = parse_law_text(BOLD_STYLE)
    assert [a.article_no for a in articles] == [1, 2, 3, 572]
    assert [a.article for a in articles] == ["第一条", "第二条", "第三条", "第五百七十二条"]
    assert articles[0].part_path == "第一编 总则 / 第一章 基本规定"
    assert articles[1].text == "本法所称测试，是指：\n（一）第一种情形；\n（二）第二种情形。"
    # a paragraph starting with "第二条规定的…" is text, not a new article
    assert articles[2].text.startswith("第二条规定的情形")
    assert articles[2].part_path == "第一编 总则 / 第一章 基本规定 / 第一节 细则"
    # a new 编 resets the lower levels; 分编 sits between 编 and 章
    assert articles[3].part_path == "第二编 污染防治 / 第七分编 噪声污染防治 / 第二十六章 建筑施工噪声污染防治"
    assert info["title"] is None  # part files carry no law title; the folder README gives it


def test_parse_plain_style_with_bare_text_headings_and_dates():
    articles, info = parse_law_text(PLAIN_STYLE)
    assert [a.article_no for a in articles] == [1, 2, 3, 10]
    assert info["title"] == "中华人民共和国测试法"
    assert articles[0].part_path == "第一章 总 则"
    assert articles[1].text == "本法适用于测试。\n第三条规定的事项除外。"  # no space after 条: not an article
    assert articles[2].part_path == "第二章 监督管理"  # bare "第二章 监督管理" line is a heading
    assert info["effective"] == date(2022, 6, 5)
    assert info["repeals"] == {"中华人民共和国旧测试法": date(2022, 6, 5)}
    # the preamble (adoption line, INFO END) is not an article
    assert all("第十三届" not in a.text for a in articles)


def test_parse_law_file_takes_dates_from_name_and_text(tmp_path):
    folder = tmp_path / "repealed"
    folder.mkdir()
    path = folder / "测试法(2021-12-24).md"
    path.write_text(PLAIN_STYLE, encoding="utf-8")
    doc = parse_law_file(path)
    assert doc.law == "中华人民共和国测试法" and doc.law_short == "测试法"
    assert doc.version == date(2021, 12, 24)
    assert doc.effective == date(2022, 6, 5)  # the later of the revision date and the stated 施行 date
    assert doc.level == "repealed"
    assert doc.law_id == "测试法@2021-12-24"


def test_long_article_is_split_into_parts_that_keep_the_article(tmp_path):
    para = "这是一个很长的条款段落，用于检验长条文的切分是否正确。" * 12  # ~324 chars
    text = f"# 中华人民共和国长文法\n\n第一条 短条文。\n\n第二条 {para}\n\n{para}\n\n{para}\n"
    (tmp_path / "长文法.md").write_text(text, encoding="utf-8")
    [pf] = parse_paths([tmp_path])
    second = [c for c in pf.chunks if c.metadata["article_no"] == 2]
    assert len(second) == 3
    assert [c.id for c in second] == ["长文法:2:0", "长文法:2:1", "长文法:2:2"]
    assert all(len(c.text) <= reg.MAX_CHUNK_CHARS for c in second)
    assert all(c.metadata["article"] == "第二条" and c.metadata["chunks"] == 3 for c in second)
    assert "\n".join(c.text for c in second) == f"{para}\n{para}\n{para}"
    assert all("长文法 第二条" in c.embed_text for c in second)
    assert len([c for c in pf.chunks if c.metadata["article_no"] == 1]) == 1


def test_split_text_handles_one_enormous_paragraph():
    text = "甲" * 1300
    parts = split_text(text)
    assert [len(p) for p in parts] == [500, 500, 300]
    sentences = "；".join(["第一句话写得相当长一些"] * 80) + "。"
    parts = split_text(sentences)
    assert all(len(p) <= 500 for p in parts) and "".join(parts) == sentences


def test_in_force():
    meta = {"effective": "2026-08-15", "repealed": ""}
    assert in_force(meta, date(2026, 9, 1))
    assert in_force(meta, date(2026, 8, 15))
    assert not in_force(meta, date(2026, 8, 14))
    old = {"effective": "2022-06-05", "repealed": "2026-08-15"}
    assert in_force(old, date(2026, 8, 14))
    assert not in_force(old, date(2026, 8, 15))
    assert not in_force(old, date(2022, 1, 1))
    assert in_force({}, date(2000, 1, 1))  # unknown dates: treated as in force


def test_parse_citation():
    assert parse_citation("中华人民共和国生态环境法典 第五百七十二条") == (CODE_TITLE, "第五百七十二条", 572, 0)
    assert parse_citation("噪声污染防治法第四十三条")[:3] == ("中华人民共和国噪声污染防治法", "第四十三条", 43)
    assert parse_citation("城镇排水与污水处理条例 第二十条")[0] == "城镇排水与污水处理条例"
    with pytest.raises(reg.RegulationParseError):
        parse_citation("生态环境法典")


def test_digest_parses_with_real_law_and_article_metadata():
    text = """---
kind: digest
topic: 测试主题
---

# 标题

## 夜间施工
- 依据：中华人民共和国生态环境法典 第五百七十二条
- 原依据：中华人民共和国噪声污染防治法 第四十三条；噪声污染防治法 第八十八条
- 适用：noise.construction

用自己的话写的要点。

第二段。
"""
    [entry] = parse_digest(text, name="t")
    assert (entry.law, entry.article, entry.article_no) == (CODE_TITLE, "第五百七十二条", 572)
    assert entry.effective == date(2026, 8, 15)
    assert entry.text == "用自己的话写的要点。\n第二段。"
    assert reg.digest_cites(entry) == "生态环境法典第五百七十二条；原噪声污染防治法第四十三条；原噪声污染防治法第八十八条"
    [chunk] = reg.digest_chunks([entry], file_key="t")
    m = chunk.metadata
    assert (m["source"], m["level"], m["law"], m["article_no"]) == ("digest", "digest", CODE_TITLE, 572)
    assert m["repealed"] == "" and m["part_path"] == "摘要 / 测试主题 / 夜间施工"
    assert chunk.id == "digest:t:生态环境法典:572:0"


def test_project_digest_is_well_formed():
    files = sorted(DIGEST_DIR.glob("*.md"))
    entries = [e for f in files if f.name != "README.md" for e in parse_digest(f.read_text("utf-8"), name=f.stem)]
    assert 40 <= len(entries) <= 100  # 70 + the articles the drafter needs (triage.drafting.basis reads them)
    assert all(e.text and e.title and e.effective for e in entries)
    topics = " ".join(e.title + e.topic for e in entries)
    for needed in ("夜间施工", "广场舞", "装修", "高音喇叭", "改装", "扬尘", "油烟", "焚烧", "挥发性有机物", "暗管",
                   "排污口", "生活垃圾", "建筑垃圾", "危险废物", "治安管理处罚法", "道路交通安全法"):
        assert needed in topics, needed


# --------------------------------------------------------------------------------------------------- real data
@needs_laws
def test_real_code_parses_into_1242_articles_in_force_from_2026_08_15():
    files = reg.parse_paths([CODE_DIR])
    assert len(files) == 5  # README.md is read for the title and dates, not ingested
    nos = sorted({c.metadata["article_no"] for pf in files for c in pf.chunks})
    assert nos == list(range(1, 1243))
    assert sum(pf.articles for pf in files) == 1242
    metas = [c.metadata for pf in files for c in pf.chunks]
    assert {m["law"] for m in metas} == {CODE_TITLE}
    assert {m["effective"] for m in metas} == {"2026-08-15"}
    assert {m["repealed"] for m in metas} == {""}
    assert all(in_force(m, date(2026, 9, 1)) for m in metas)
    assert not in_force(metas[0], date(2026, 8, 1))
    art572 = next(m for m in metas if m["article_no"] == 572)
    assert art572["part_path"].endswith("第二十六章 建筑施工噪声污染防治")
    assert art572["part_path"].startswith("第二编 污染防治 / 第七分编 噪声污染防治")


@needs_laws
def test_repealed_laws_carry_the_codes_repeal_date():
    files = reg.parse_paths([LAWS / "repealed", CODE_DIR])
    noise = [c.metadata for pf in files for c in pf.chunks if pf.law == "中华人民共和国噪声污染防治法"]
    assert len({m["article_no"] for m in noise}) == 90
    assert {m["repealed"] for m in noise} == {"2026-08-15"}
    assert {m["effective"] for m in noise} == {"2022-06-05"}
    assert {m["level"] for m in noise} == {"repealed"}
    assert not in_force(noise[0], date(2026, 9, 1))
    assert in_force(noise[0], date(2025, 1, 1))
    for pf in files:
        if pf.path.parent.name == "repealed":
            assert pf.chunks and all(c.metadata["repealed"] == "2026-08-15" for c in pf.chunks), pf.law
    # the same dates without the Code in the batch: the built-in table copied from its final article
    alone = reg.parse_paths([LAWS / "repealed" / "噪声污染防治法(2021-12-24).md"])
    assert alone[0].chunks[0].metadata["repealed"] == "2026-08-15"


@needs_laws
def test_every_shared_law_parses_with_contiguous_article_numbers():
    by_law: dict[str, set[int]] = {}
    for pf in reg.parse_paths([LAWS]):
        assert pf.chunks, f"no articles in {pf.path}"
        by_law.setdefault(pf.law, set()).update(c.metadata["article_no"] for c in pf.chunks)
    assert len(by_law) >= 25
    for law, nos in by_law.items():
        assert sorted(nos) == list(range(1, max(nos) + 1)), law
    assert max(by_law["中华人民共和国治安管理处罚法"]) == 144


def _real_articles() -> dict[tuple[str, int], str]:
    texts: dict[tuple[str, int], list[str]] = {}
    for pf in reg.parse_paths([LAWS]):
        for c in pf.chunks:
            texts.setdefault((c.metadata["law"], c.metadata["article_no"]), []).append(c.text)
    return {k: "\n".join(v) for k, v in texts.items()}


def _longest_common_substring(a: str, b: str) -> int:
    best, prev = 0, [0] * (len(b) + 1)
    for ca in a:
        cur = [0] * (len(b) + 1)
        for j, cb in enumerate(b, 1):
            if ca == cb:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


@needs_laws
def test_digest_citations_exist_in_real_texts_and_are_paraphrased():
    real = _real_articles()
    laws_dates = {}
    for pf in reg.parse_paths([LAWS]):
        if pf.chunks:
            laws_dates[pf.law] = pf.chunks[0].metadata["effective"]
    problems = []
    for f in sorted(DIGEST_DIR.glob("*.md")):
        if f.name == "README.md":
            continue
        for e in parse_digest(f.read_text("utf-8"), name=f.stem):
            refs = [(e.law, e.article)] + e.old + e.related
            for law, article in refs:
                no = parse_citation(f"{law}{article}")[2]
                if (law, no) not in real:
                    problems.append(f"{f.name} «{e.title}»: {law}{article} does not exist")
                    continue
                # own words: no run of 17+ characters copied from a cited article
                copied = _longest_common_substring(e.text, real[(law, no)])
                if copied > 16:
                    problems.append(f"{f.name} «{e.title}»: {copied} characters copied from {law}{article}")
            for law, _ in e.old:
                assert law in reg.KNOWN_REPEALS, f"{law} cited as the old law but not repealed by the Code"
            # the digest's own dates agree with the texts it cites
            assert e.effective.isoformat() == laws_dates[e.law], (e.title, e.law)
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------------- ingest
@needs_laws
def test_ingest_is_idempotent(kb_store):
    emb = FakeEmbedder()
    paths = [CODE_DIR, LAWS / "repealed" / "噪声污染防治法(2021-12-24).md", DIGEST_DIR]
    first = ingest_paths(paths, store=kb_store, embedder=emb, progress=False)
    assert first.files == 5 + 1 + len([f for f in DIGEST_DIR.glob("*.md") if f.name != "README.md"])
    n_digest = sum(len(parse_digest(f.read_text("utf-8"), name=f.stem))
                   for f in DIGEST_DIR.glob("*.md") if f.name != "README.md")
    assert first.articles == 1242 + 90 + n_digest
    assert first.added == first.chunks and first.unchanged == 0
    count = kb_store.count(REGULATIONS)
    assert count == first.chunks
    embedded = emb.embedded

    second = ingest_paths(paths, store=kb_store, embedder=emb, progress=False)
    assert (second.added, second.updated, second.removed) == (0, 0, 0)
    assert second.unchanged == second.chunks == first.chunks
    assert kb_store.count(REGULATIONS) == count
    assert emb.embedded == embedded  # nothing re-embedded

    hit = kb_store.collection(REGULATIONS).get(ids=["生态环境法典:572:0"], include=["metadatas", "documents"])
    meta = hit["metadatas"][0]
    assert meta["article"] == "第五百七十二条" and meta["source"] == "statute" and meta["level"] == "national"
    assert "夜间" in hit["documents"][0]


def test_reingest_of_an_edited_file_updates_and_removes_stale_chunks(kb_store, tmp_path):
    law = tmp_path / "laws" / "编辑法.md"
    law.parent.mkdir()
    long_para = "需要切分的长段落内容。" * 60
    law.write_text(f"# 编辑法\n\n第一条 原文。\n\n第二条 {long_para}\n", encoding="utf-8")
    emb = FakeEmbedder()
    first = ingest_paths([law.parent], store=kb_store, embedder=emb, progress=False)
    assert first.chunks == 3 and kb_store.count(REGULATIONS) == 3

    law.write_text("# 编辑法\n\n第一条 修改后的原文。\n\n第二条 变短了。\n", encoding="utf-8")
    second = ingest_paths([law.parent], store=kb_store, embedder=emb, progress=False)
    assert (second.chunks, second.added, second.updated, second.unchanged, second.removed) == (2, 0, 2, 0, 1)
    assert kb_store.count(REGULATIONS) == 2


def test_a_new_version_of_a_law_ends_the_earlier_one(kb_store, tmp_path):
    """An amended local regulation ingested as a new file beside the old one left both in force: a reply could
    cite the superseded text. The earlier version now ends the day the new one takes effect."""
    from triage.kb.regulations import in_force

    local = tmp_path / "laws" / "local"
    local.mkdir(parents=True)
    old = "# 广东省测试污染防治条例\n\n本条例自2019年3月1日起施行。\n\n第一条 旧的规定。\n\n第二条 旧的第二条。\n"
    (local / "广东省测试污染防治条例(2019-01-01).md").write_text(old, encoding="utf-8")
    first = ingest_paths([local.parent], store=kb_store, embedder=FakeEmbedder(), progress=False)
    assert first.superseded == []
    new = "# 广东省测试污染防治条例\n\n本条例自2023年1月1日起施行。\n\n第一条 新的规定。\n\n第二条 新的第二条。\n"
    (local / "广东省测试污染防治条例(2022-11-30).md").write_text(new, encoding="utf-8")
    second = ingest_paths([local.parent], store=kb_store, embedder=FakeEmbedder(), progress=False)
    assert second.superseded == ["广东省测试污染防治条例 2019-03-01 → 2023-01-01"]
    got = kb_store.collection(REGULATIONS).get(include=["metadatas", "documents"])
    rows = {(m["effective"], d[:4]): m for m, d in zip(got["metadatas"], got["documents"])}
    assert {k: (m["repealed"], m["level"]) for k, m in rows.items()} == {
        ("2019-03-01", "旧的规定"): ("2023-01-01", "local"), ("2019-03-01", "旧的第二"): ("2023-01-01", "local"),
        ("2023-01-01", "新的规定"): ("", "local"), ("2023-01-01", "新的第二"): ("", "local")}
    old_meta, new_meta = rows[("2019-03-01", "旧的规定")], rows[("2023-01-01", "新的规定")]
    assert in_force(old_meta, date(2022, 12, 31)) and not in_force(old_meta, date(2023, 1, 1))
    assert in_force(new_meta, date(2023, 1, 1)) and not in_force(new_meta, date(2022, 12, 31))
    # Ingesting again changes nothing and re-embeds nothing.
    emb = FakeEmbedder()
    third = ingest_paths([local.parent], store=kb_store, embedder=emb, progress=False)
    assert third.superseded == [] and emb.embedded == 0 and third.unchanged == 4


def test_ingest_missing_path_raises(kb_store, tmp_path):
    with pytest.raises(FileNotFoundError):
        ingest_paths([tmp_path / "nope"], store=kb_store, embedder=FakeEmbedder(), progress=False)


def test_a_folder_reached_through_dot_dot_is_read_and_hidden_folders_below_it_are_not(tmp_path, monkeypatch):
    """The README's `triage kb ingest ../shared/data/laws`: the ".." once counted as a hidden folder, so the command
    read no file at all and reported zeros."""
    laws = tmp_path / "shared" / "laws"
    (laws / "national").mkdir(parents=True)
    (laws / ".git").mkdir()
    (laws / "national" / "测试法.md").write_text("# 测试法\n\n第一条 为了测试。\n", encoding="utf-8")
    (laws / ".git" / "旧稿.md").write_text("# 旧稿\n\n第一条 不读。\n", encoding="utf-8")
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert [f.name for f, _ in reg.collect_law_files([Path("../shared/laws")])] == ["测试法.md"]


def test_the_level_comes_from_the_folders_below_the_one_given_not_from_its_ancestors(tmp_path):
    """Laws kept under /usr/local (or any folder named local or repealed above them) were all taken for local
    regulations, which a jurisdiction cites only where their title names its region: national laws went uncited."""
    root = tmp_path / "usr" / "local" / "share" / "laws"
    for folder, name in (("national", "国家测试法"), ("local", "广东省测试条例"), ("repealed", "旧测试法")):
        (root / folder).mkdir(parents=True)
        (root / folder / f"{name}.md").write_text(f"# {name}\n\n第一条 为了测试。\n", encoding="utf-8")
    (root / "未分类.md").write_text("# 未分类测试法\n\n第一条 为了测试。\n", encoding="utf-8")
    levels = {f.stem: level for f, level in reg.collect_law_files([root])}
    assert levels == {"国家测试法": "national", "广东省测试条例": "local", "旧测试法": "repealed",
                      "未分类": "national"}
    # The folder given may itself be the level's folder, and a single file takes its level from its own folder.
    assert {level for _, level in reg.collect_law_files([root / "local"])} == {"local"}
    assert reg.collect_law_files([root / "未分类.md"])[0][1] == "national"
    assert {p.law: p.chunks[0].metadata["level"] for p in reg.parse_paths([root])}["国家测试法"] == "national"


def test_a_folder_without_law_files_is_an_error_not_an_empty_report(kb_store, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.docx").write_bytes(b"")
    with pytest.raises(reg.NoLawFilesError, match="no law file"):
        ingest_paths([tmp_path / "empty"], store=kb_store, embedder=FakeEmbedder(), progress=False)


def test_ingest_default_knowledge_and_ensure(kb_store, tmp_path):
    from triage.settings import Settings

    settings = Settings(data_dir=tmp_path)
    emb = FakeEmbedder()
    report = reg.ensure_default_knowledge(settings, kb_store, emb)
    assert report is not None and report.chunks >= 40 and kb_store.count(REGULATIONS) == report.chunks
    assert reg.ensure_default_knowledge(settings, kb_store, emb) is None  # not empty any more


def test_a_local_regulation_outside_a_local_folder_is_still_local(tmp_path):
    """Ingested from a folder not named local/, 广州市… was stored as national and cited in every jurisdiction."""
    from triage.kb.regulations import parse_law_file

    f = tmp_path / "laws_flat" / "广州市建筑施工噪声污染防治规定(2026-09-01).md"
    f.parent.mkdir()
    f.write_text("# 广州市建筑施工噪声污染防治规定\n\n第一条 为了防治建筑施工噪声污染，制定本规定。\n", encoding="utf-8")
    assert parse_law_file(f).level == "local"
    g = tmp_path / "laws_flat" / "城市市容和环境卫生管理条例.md"
    g.write_text("# 城市市容和环境卫生管理条例\n\n第一条 为了加强城市市容和环境卫生管理，制定本条例。\n", encoding="utf-8")
    assert parse_law_file(g).level == "national"


def test_a_digest_mistake_names_the_file_and_the_entry(tmp_path):
    """A bad 施行 date said only "not an ISO date"; front matter that is not YAML was read as a statute and
    skipped with exit 0."""
    from triage.kb.regulations import RegulationParseError, collect_law_files, parse_digest, parse_files

    entry = "## 夜间施工\n- 依据：中华人民共和国生态环境法典 第五百七十二条\n- 施行：2026-13-01\n\n夜间不得施工。\n"
    with pytest.raises(RegulationParseError, match=r"tianhe: entry '夜间施工': 施行"):
        parse_digest("---\nkind: digest\ntopic: 天河\n---\n" + entry, name="tianhe")
    bad = tmp_path / "tianhe.md"
    bad.write_text("---\nkind: digest\ntopic: [天河区夜间施工\n---\n" + entry.replace("2026-13-01", "2026-10-01"),
                   encoding="utf-8")
    with pytest.raises(RegulationParseError, match="tianhe.md.*front matter"):
        parse_files(collect_law_files([bad]))
