"""Cold-start members: the keyword reading of a letter's first sentence, prototypes from the taxonomy's examples."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from triage.classify.members import KeywordMember, Labels, PrototypeMember, first_sentence
from triage.embeddings import get_embedder
from triage.taxonomy import UNIT_TYPES, get_taxonomy, load_taxonomy


@pytest.fixture(scope="module")
def tax():
    return get_taxonomy()


@pytest.fixture(scope="module")
def labels(tax):
    return Labels.from_taxonomy(tax, list(UNIT_TYPES))


def test_first_sentence_skips_the_hotline_preamble():
    assert first_sentence("市民来电反映：楼下烧烤店油烟大。已投诉多次！") == "楼下烧烤店油烟大"
    assert first_sentence("投诉工地夜间施工噪音\n小区南门外") == "投诉工地夜间施工噪音"


def test_title_outweighs_side_issues_of_a_long_letter(tax, labels):
    letter = ("投诉幸福小区旁工地夜间施工噪音扰民。小区南门外的工地从去年开工，周边还有几家饭店和烧烤摊，"
              "油烟直排，排烟管对着住户，烧烤的烟雾也很大，餐馆厨房的油烟净化器形同虚设。")
    kw = KeywordMember(tax, labels)
    whole, _, _ = kw.scores(letter)
    assert labels.types[int(whole.argmax())] == "air"  # counted over the whole letter, the fumes win
    p_type, _ = kw.predict(letter)
    assert labels.types[int(p_type.argmax())] == "noise"


def test_every_subtype_has_examples_of_its_own(tax):
    for code, s in tax.subtypes.items():
        assert s.examples, code
        assert s.description not in s.examples
    assert tax.types["not_environmental"]["examples"]


def test_examples_must_be_sentences(tmp_path):
    bad = {"version": "t", "types": {"noise": {"name": "噪声", "subtypes": {
        "noise.other": {"name": "其他", "description": "x", "examples": ["好", ""]}}}}}
    path = tmp_path / "taxonomy.yaml"
    path.write_text(yaml.safe_dump(bad, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValueError, match="noise.other"):
        load_taxonomy(path)


@pytest.mark.parametrize("text, subtype", [
    ("有人在空地上烧塑料和旧轮胎，黑烟很呛", "air.open_burning"),
    ("楼上每天半夜拖椅子跳来跳去", "noise.social_life"),
])
def test_examples_recognise_phrasings_the_description_misses(tax, labels, text, subtype):
    emb = get_embedder()
    bare = dataclasses.replace(
        tax, subtypes={c: dataclasses.replace(s, examples=()) for c, s in tax.subtypes.items()},
        types={c: dict(t, examples=()) for c, t in tax.types.items()})
    vec = emb.embed_query(text)
    with_examples = PrototypeMember(tax, labels, emb).predict_vec(vec)[1]
    description_only = PrototypeMember(bare, labels, emb).predict_vec(vec)[1]
    assert labels.subtypes[int(with_examples.argmax())] == subtype
    assert labels.subtypes[int(description_only.argmax())] != subtype


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (SHARED_DATA / "cases").exists(), reason="../shared/data is absent")
def test_examples_are_our_own_words(tax):
    """The examples are written by us: none repeats ten characters in a row of a real work order."""
    import csv

    corpus = []
    for path in [*(SHARED_DATA / "cases").glob("*.csv"), *(SHARED_DATA / "replies").glob("*.csv")]:
        with path.open(encoding="utf-8") as f:
            corpus += [(r.get("title") or "") + (r.get("text") or "") for r in csv.DictReader(f)]
    corpus_text = "\n".join(corpus)
    examples = [e for s in tax.subtypes.values() for e in s.examples] + list(tax.types["not_environmental"]["examples"])
    copied = [e for e in examples if any(e[i:i + 10] in corpus_text for i in range(len(e) - 9))]
    assert not copied


def test_eval_rows_keep_their_file_row_numbers_and_the_baseline_skips_unlabelled_rows(tmp_path):
    from triage.classify.evaluate import Baseline, read_test_rows

    f = tmp_path / "test.csv"
    f.write_text("order_id,text,pollution_type\n1,楼下饭店油烟直排,air\n2,,noise\n3,工地夜间施工,noise\n",
                 encoding="utf-8")
    skipped: list[int] = []
    rows = read_test_rows(f, skipped=skipped)
    assert [r["row"] for r in rows] == [2, 4] and skipped == [3]  # spreadsheet rows: the header is row 1
    texts = ["饭店油烟直排", "烧烤油烟熏人", "工地夜间施工噪音", "夜里打桩很吵", "不知道是什么的咨询"]
    base = Baseline().fit(texts, ["air", "air", "noise", "noise", ""], ["", "", "", "", ""])
    assert set(base.type_model.classes_) == {"air", "noise"}  # unlabelled is not not_environmental
    with pytest.raises(ValueError, match="两类"):
        Baseline().fit(texts[:2], ["air", ""], ["", ""])
