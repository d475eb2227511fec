"""Past-case import: formats, encodings, row errors with row numbers, idempotence, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from triage.embeddings import get_embedder
from triage.kb.cases import CaseFileError, import_cases, read_cases_file
from triage.kb.store import CASES, KnowledgeStore, make_client
from triage.settings import Settings

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HEADER = ["order_id", "text", "reply", "pollution_type", "subtype", "unit_type", "unit_raw"]
ROWS = [
    ["A1", "工地夜间施工噪音太大，凌晨一点还在打桩", "", "noise", "noise.construction", "urban_management", "街道综合执法办"],
    ["A2", "楼下烧烤店油烟直排，熏得没法开窗", "已责令安装净化器", "air", "air.cooking_fumes", "urban_management", ""],
    ["A3", "", "", "noise", "", "", ""],                                           # row 4: empty text
    ["A4", "河里有污水直排", "", "water", "water.sewage", "nonexistent_unit", ""],  # row 5: unknown unit
    ["A5", "小区垃圾三天没人清运", "", "solid_waste", "noise.construction", "", ""],  # row 6: mismatched subtype
    ["A1", "重复编号的一行", "", "noise", "", "", ""],                              # row 7: duplicate order_id
    ["", "没有编号但内容完整的投诉：广场舞音响太吵", "", "noise", "noise.social_life", "public_security", ""],
]


@pytest.fixture()
def store(tmp_path):
    return KnowledgeStore(make_client(Settings(data_dir=tmp_path, chroma=str(tmp_path / "chroma"))))


def write_csv(path: Path, encoding: str) -> Path:
    with path.open("w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(ROWS)
    return path


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_csv_rows_validated_with_row_numbers(tmp_path, encoding):
    rows, errors = read_cases_file(write_csv(tmp_path / "x.csv", encoding))
    assert [r.order_id for r in rows][:2] == ["A1", "A2"]
    assert rows[0].text.startswith("工地夜间施工")
    assert len(rows) == 3
    assert {e.row for e in errors} == {4, 5, 6, 7}
    assert "text" in next(e.reason for e in errors if e.row == 4)
    assert "unit_type" in next(e.reason for e in errors if e.row == 5)
    assert "第7行" in str(next(e for e in errors if e.row == 7))


def test_xlsx_and_jsonl(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(HEADER)
    for r in ROWS:
        ws.append(r)
    ws.append(["F1", "=HYPERLINK(\"http://x\",\"click\")", "", "", "", "", ""])  # row 9: a formula, not a complaint
    wb.save(tmp_path / "x.xlsx")
    rows, errors = read_cases_file(tmp_path / "x.xlsx")
    assert len(rows) == 3 and 9 in {e.row for e in errors}

    lines = [json.dumps(dict(zip(HEADER, r)), ensure_ascii=False) for r in ROWS[:2]] + ["{not json"]
    (tmp_path / "x.jsonl").write_text("\n".join(lines), encoding="utf-8")
    rows, errors = read_cases_file(tmp_path / "x.jsonl")
    assert [r.order_id for r in rows] == ["A1", "A2"] and errors[0].row == 3


PLATFORM_HEADER = ["序号", "工单编号", "诉求标题", "诉求内容", "事发地址", "受理时间", "承办单位", "办理结果"]
PLATFORM_ROW = ["1", "GD2026110001", "工地夜间施工", "凌晨一点还在打桩，吵得睡不着", "白云区均禾街清湖村",
                "2026-11-02 23:40:00", "均禾街综合执法办", "已责令夜间停工"]


@pytest.mark.parametrize("suffix", ["csv", "xlsx", "jsonl"])
def test_a_platform_export_with_chinese_headers_is_read_as_it_comes(tmp_path, suffix):
    """12345 platforms export 工单编号 / 诉求内容 / 承办单位 …, not the shared format's English names."""
    path = tmp_path / f"export.{suffix}"
    if suffix == "csv":
        with path.open("w", newline="", encoding="gb18030") as f:
            csv.writer(f).writerows([PLATFORM_HEADER, PLATFORM_ROW])
    elif suffix == "xlsx":
        from openpyxl import Workbook

        wb = Workbook()
        wb.active.append(PLATFORM_HEADER)
        wb.active.append(PLATFORM_ROW)
        wb.save(path)
    else:
        path.write_text(json.dumps(dict(zip(PLATFORM_HEADER, PLATFORM_ROW)), ensure_ascii=False), encoding="utf-8")
    rows, errors = read_cases_file(path)
    assert not errors and len(rows) == 1
    row = rows[0]
    assert row.order_id == "GD2026110001"  # 工单编号, not 序号 (a row number)
    assert row.text == "工地夜间施工。凌晨一点还在打桩，吵得睡不着"  # the title goes before the text, as for `title`
    assert (row.address, row.unit_raw, row.reply) == ("白云区均禾街清湖村", "均禾街综合执法办", "已责令夜间停工")
    assert row.occurred_at.startswith("2026-11-02T23:40")


@pytest.mark.parametrize("suffix", ["csv", "xlsx"])
def test_a_title_line_above_the_header_is_skipped_and_rows_keep_their_numbers(tmp_path, suffix):
    title = ["12345工单导出（2026-11-01至2026-11-30）"] + [""] * (len(PLATFORM_HEADER) - 1)
    empty_text = ["2", "GD2026110002", "", "", "白云区", "", "", ""]
    table = [title, [""] * len(PLATFORM_HEADER), PLATFORM_HEADER, PLATFORM_ROW, empty_text]
    path = tmp_path / f"export.{suffix}"
    if suffix == "csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(table)
    else:
        from openpyxl import Workbook

        wb = Workbook()
        for cells in table:
            wb.active.append([c or None for c in cells])
        wb.save(path)
    rows, errors = read_cases_file(path)
    assert [r.order_id for r in rows] == ["GD2026110001"]
    assert [(e.row, "text" in e.reason) for e in errors] == [(5, True)]  # the fifth row, as the spreadsheet shows
    # A header farther down than HEADER_SEARCH_ROWS is not looked for: the file is refused, not misread.
    path = tmp_path / "deep.csv"
    path.write_text("\n".join(["标题行,"] * 6 + ["工单编号,诉求内容", "1,噪音扰民"]), encoding="utf-8")
    with pytest.raises(CaseFileError, match="诉求内容"):
        read_cases_file(path)


def test_a_column_of_the_shared_format_wins_over_an_alias_and_a_file_without_text_names_the_aliases(tmp_path):
    path = tmp_path / "both.csv"
    path.write_text("text,诉求内容\n这一列算数,这一列不算\n", encoding="utf-8")
    rows, _ = read_cases_file(path)
    assert rows[0].text == "这一列算数"
    (tmp_path / "none.csv").write_text("工单编号,备注\n1,无内容\n", encoding="utf-8")
    with pytest.raises(CaseFileError, match="诉求内容"):
        read_cases_file(tmp_path / "none.csv")


def test_blank_lines_count_in_row_numbers_as_a_spreadsheet_shows_them(tmp_path):
    f = tmp_path / "blank.csv"
    f.write_text("工单编号,诉求内容,受理时间\nW001,楼下烧烤店油烟直排,2026-10-10\n\nW002,,2026-10-10\n,,\n"
                 "W003,河涌发黑发臭,2026-10-11\n", encoding="utf-8")
    rows, errors = read_cases_file(f)
    assert [(r.row, r.order_id) for r in rows] == [(2, "W001"), (6, "W003")]
    assert [(e.row, "text" in e.reason) for e in errors] == [(4, True)]  # line 4 in an editor and a spreadsheet


def test_dates_as_chinese_exports_write_them(tmp_path):
    f = tmp_path / "dates.csv"
    f.write_text("工单编号,诉求内容,受理时间\n"
                 "A,油烟直排,2026年3月5日\nB,夜间施工噪音,2026年03月05日 09:30:00\nC,河涌发臭,2026年3月5日 9时30分\n"
                 "D,露天焚烧,45000\nE,工地扬尘,2026年13月5日\nF,垃圾乱堆,前天\n", encoding="utf-8")
    rows, errors = read_cases_file(f)
    assert {r.order_id: r.occurred_at[:16] for r in rows} == {
        "A": "2026-03-05T00:00", "B": "2026-03-05T09:30", "C": "2026-03-05T09:30", "D": "2023-03-15T00:00"}
    assert [(e.row, "无法识别的日期" in e.reason) for e in errors] == [(6, True), (7, True)]


def test_unreadable_files_are_refused(tmp_path):
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    with pytest.raises(CaseFileError):
        read_cases_file(tmp_path / "x.pdf")
    (tmp_path / "nocol.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(CaseFileError, match="text"):
        read_cases_file(tmp_path / "nocol.csv")


def test_import_is_idempotent(tmp_path, store):
    path = write_csv(tmp_path / "x.csv", "utf-8")
    embedder = get_embedder()
    first = import_cases(path, store=store, embedder=embedder)
    assert (first.imported, first.already_present, len(first.rejected)) == (3, 0, 4)
    second = import_cases(path, store=store, embedder=embedder)
    assert (second.imported, second.already_present) == (0, 3)
    assert store.count(CASES) == 3
    meta = store.collection(CASES).get(ids=["A2"])["metadatas"][0]
    assert meta["subtype"] == "air.cooking_fumes" and meta["reply"] == "已责令安装净化器"


@pytest.mark.skipif(not (SHARED_DATA / "cases").exists(), reason="../shared/data is absent")
def test_cli_imports_real_export_and_reports_json(tmp_path, monkeypatch):
    import triage.kb.store as store_mod
    from triage.cli import app
    from triage.settings import get_settings

    # A slice of the real Haikou export, so the test stays fast.
    src = SHARED_DATA / "cases" / "haikou12345_env_dev.csv"
    with src.open(encoding="utf-8") as f:
        reader = csv.reader(f)
        head = [next(reader) for _ in range(41)]
    part = tmp_path / "part.csv"
    with part.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(head)
    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    store_mod.reset_store_cache()
    try:
        result = CliRunner().invoke(app, ["cases", "import", str(part), "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["imported"] == 40 and report["rejected"] == []
        again = CliRunner().invoke(app, ["cases", "import", str(part), "--json"])
        assert json.loads(again.stdout.strip().splitlines()[-1])["already_present"] == 40
        missing = CliRunner().invoke(app, ["cases", "import", str(tmp_path / "nope.csv")])
        assert missing.exit_code != 0 and "不存在" in missing.output
    finally:
        get_settings.cache_clear()
        store_mod.reset_store_cache()


def test_the_kind_of_a_handling_units_name():
    from triage.classify.routing import get_routing

    routing = get_routing()
    kinds = {name: routing.kind_of_unit_name(name) for name in (
        "均禾街综合行政执法办公室",  # configured for gz_baiyun_junhe, as written
        "海口市龙华区综合行政执法局", "广州市公安局白云区分局均禾派出所", "白云区水务局",
        "威立雅水务有限公司",  # a company, though 水务 names a duty
        "数字城管专席",  # the hotline's dispatch desk, though 城管 names a duty
        "人民政府", "某某研究所", "")}
    assert kinds == {"均禾街综合行政执法办公室": "urban_management", "海口市龙华区综合行政执法局": "urban_management",
                     "广州市公安局白云区分局均禾派出所": "public_security", "白云区水务局": "water_affairs",
                     "威立雅水务有限公司": "company", "数字城管专席": "dispatch_center",
                     "人民政府": None, "某某研究所": None, "": None}


def test_an_export_that_names_its_units_gives_its_cases_unit_kinds(tmp_path, store):
    path = tmp_path / "export.csv"
    path.write_text("工单编号,诉求内容,承办单位,unit_type\n"
                    "K1,楼下饭店油烟直排,龙华区综合行政执法局,\n"
                    "K2,河道有污水直排,某某研究所,\n"  # a name nothing places: no unit kind rather than a guess
                    "K3,工地夜间施工,龙华区综合行政执法局,housing_construction\n",  # a given unit_type stays
                    encoding="utf-8")
    report = import_cases(path, store=store, embedder=get_embedder(Settings()))
    assert (report.imported, report.units_inferred, report.as_dict()["units_inferred"]) == (3, 1, 1)
    got = store.collection(CASES).get(ids=["K1", "K2", "K3"], include=["metadatas"])
    meta = dict(zip(got["ids"], got["metadatas"]))
    assert meta["K1"]["unit_type"] == "urban_management" and meta["K1"]["unit_inferred"] is True
    assert meta["K2"]["unit_type"] == "" and "unit_inferred" not in meta["K2"]
    assert meta["K3"]["unit_type"] == "housing_construction" and "unit_inferred" not in meta["K3"]


@pytest.mark.skipif(not (SHARED_DATA / "cases" / "haikou12345_env_dev.csv").exists(), reason="shared data absent")
def test_unit_kinds_read_from_the_real_haikou_unit_names_agree_with_its_labels():
    """The Haikou file labels both: read its 承办单位 names alone and compare with its unit_type."""
    from triage.classify.routing import get_routing

    rows, _ = read_cases_file(SHARED_DATA / "cases" / "haikou12345_env_dev.csv")
    routing = get_routing()
    pairs = [(routing.kind_of_unit_name(r.unit_raw), r.unit_type) for r in rows if r.unit_raw and r.unit_type]
    placed = [(k, u) for k, u in pairs if k is not None]
    agree = sum(k == u for k, u in placed)
    assert len(placed) / len(pairs) >= 0.85, (len(placed), len(pairs))
    assert agree / len(placed) >= 0.95, (agree, len(placed))
