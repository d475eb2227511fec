"""Past cases: read a 12345 export (CSV UTF-8/GB18030, XLSX, JSONL), validate row by row, embed, store in Chroma.

Idempotent on ``order_id`` (rows without one get a stable id from their text), resumable after a crash:
cases are written batch by batch and already-stored ids are skipped on the next run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dateutil import parser as dateparser

from triage.embeddings import complaint_for_embedding
from triage.kb.store import CASES, KnowledgeStore
from triage.privacy import mask_personal_numbers
from triage.taxonomy import NOT_ENV, UNIT_TYPES, get_taxonomy

COLUMNS = ("order_id", "text", "title", "reply", "pollution_type", "subtype", "unit_type", "unit_raw",
           "occurred_at", "address", "duplicate_of")
# Column headers of 12345 platform exports, read as the columns above when the file lacks those: an office can
# import its export as it comes, without renaming columns. A column of the shared format present in the file wins.
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "order_id": ("工单编号", "工单号", "工单编码", "流水号"),  # not 编号 or 序号: often a row number
    "text": ("诉求内容", "来电内容", "反映内容", "投诉内容", "工单内容", "问题描述", "诉求描述", "内容"),
    "title": ("诉求标题", "工单标题", "标题", "主题"),
    "reply": ("答复内容", "回复内容", "办理结果", "处理结果", "办理情况", "答复意见"),
    "unit_raw": ("承办单位", "办理单位", "处置单位", "责任单位", "主办单位"),
    "occurred_at": ("发生时间", "受理时间", "来电时间", "登记时间", "创建时间"),
    "address": ("事发地址", "事发地点", "发生地点", "问题地址", "地址"),
}
_MISSING_TEXT = (f"缺少必需的列 text（或 {'、'.join(HEADER_ALIASES['text'])}） / required column 'text' is missing")
MAX_TEXT = 20_000
MAX_REPLY_STORED = 4_000  # Chroma metadata stays small; the full reply lives in the database for our own cases
EMBED_BATCH = 128  # rows embedded and written per step; a crash loses at most one step
# As at intake: C0/C1 controls but tab and newlines, bidi overrides, lone surrogates, non-characters.
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
                        "\ufffe\uffff]")


@dataclass
class RowError:
    row: int  # 1-based line/row number as a spreadsheet shows it (header = row 1)
    reason: str

    def __str__(self) -> str:
        return f"第{self.row}行 / row {self.row}: {self.reason}"


@dataclass
class CaseRow:
    row: int
    order_id: str
    text: str
    pollution_type: str = ""
    subtype: str = ""
    unit_type: str = ""
    unit_raw: str = ""
    reply: str = ""
    occurred_at: str = ""
    address: str = ""
    unit_inferred: bool = False  # unit_type read from unit_raw at import (infer_unit_types), not given

    def metadata(self, source: str = "import") -> dict[str, Any]:
        return {
            "order_id": self.order_id, "pollution_type": self.pollution_type, "subtype": self.subtype,
            "unit_type": self.unit_type, "unit_raw": self.unit_raw, "reply": self.reply[:MAX_REPLY_STORED],
            "occurred_at": self.occurred_at, "address": self.address, "source": source,
            **({"unit_inferred": True} if self.unit_inferred else {}),
        }


@dataclass
class ImportReport:
    total: int = 0
    imported: int = 0
    already_present: int = 0
    rejected: list[RowError] = field(default_factory=list)
    units_inferred: int = 0  # rows whose unit_type was read from their unit_raw

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "imported": self.imported, "already_present": self.already_present,
                "units_inferred": self.units_inferred,
                "rejected": [{"row": e.row, "reason": e.reason} for e in self.rejected]}


class CaseFileError(ValueError):
    """The file as a whole cannot be read (unknown format, not a table, undecodable)."""


class TooManyRecords(CaseFileError):
    """More records than the caller's ``max_records``: reading stopped there."""

    def __init__(self, limit: int):
        super().__init__(f"文件超过 {limit} 行 / the file has more than {limit} rows")
        self.limit = limit


# An XLSX is a zip: a sheet of 600,000 identical rows packs into 151 KB. A 12345 export unpacks to far less, and
# to less than ZIP_BOMB_RATIO times its packed size (text, even repetitive, compresses some tens of times at most).
MAX_XLSX_UNPACKED_BYTES = 500 * 1024 * 1024
ZIP_BOMB_RATIO, ZIP_BOMB_FLOOR = 100, 10 * 1024 * 1024


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Not UTF-8 as a whole. If some lines are UTF-8 and others not, the file was pasted together from two
    # encodings: decoding it all as GB18030 would silently garble the UTF-8 rows.
    utf8_lines = bad_line = 0
    for n, line in enumerate(raw.splitlines(), start=1):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            utf8_lines += 1
        except UnicodeDecodeError:
            bad_line = bad_line or n
    if utf8_lines and bad_line:
        raise CaseFileError(f"文件混用了 UTF-8 与其他编码（第{bad_line}行不是 UTF-8），请统一另存为 UTF-8 / "
                            f"mixed encodings: line {bad_line} is not UTF-8 while others are")
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        pass
    raise CaseFileError("文件编码无法识别（应为 UTF-8 或 GB18030） / file is neither UTF-8 nor GB18030")


def header_map(names: Iterable[Any]) -> dict[str, str]:
    """File header → column, for each header that is the first alias found of a column the file lacks
    (HEADER_ALIASES)."""
    present = {str(n).strip() for n in names if n is not None}
    out: dict[str, str] = {}
    for column, aliases in HEADER_ALIASES.items():
        if column in present:
            continue
        alias = next((a for a in aliases if a in present), None)
        if alias is not None:
            out[alias] = column
    return out


# Platform exports often put a title line or two ("12345工单导出 2026-11-01至2026-11-30") above the header: the
# header is the first of this many rows that has a text column.
HEADER_SEARCH_ROWS = 5


def _is_header(cells: Iterable[Any]) -> bool:
    names = {str(c).strip() for c in cells if c is not None}
    return "text" in names or any(a in names for a in HEADER_ALIASES["text"])


def _take_header(rows: Iterator[Sequence[Any]]) -> tuple[list[str], int]:
    """Read rows up to the header (the first of HEADER_SEARCH_ROWS rows with a text column); return its column
    names, read through HEADER_ALIASES, and its row number. CaseFileError where there is none."""
    for n, cells in enumerate(rows, start=1):
        if cells and _is_header(cells):
            header = [str(c).strip() if c is not None else "" for c in cells]
            names = header_map(header)
            return [names.get(h, h) for h in header], n
        if n >= HEADER_SEARCH_ROWS:
            break
    raise CaseFileError(_MISSING_TEXT)


def _renamed(rec: dict[Any, Any], names: dict[str, str]) -> dict[str, Any]:
    return {names.get(k, k): v for k, v in ((str(k or "").strip(), v) for k, v in rec.items())}


BLANK: dict[str, Any] = {}  # what _all_records yields for a blank row: counted by _records, never returned


def _records(path: Path, *, max_rows: int | None = None,
             max_unpacked: int | None = None) -> Iterable[tuple[int, dict[str, Any]]]:
    """Yield (row number, raw record) from any supported format, headers read through HEADER_ALIASES.

    ``max_rows``: TooManyRecords past that many rows after the header, blank ones included (a sheet of two million
    empty rows, 63 KB packed, was read to its end). ``max_unpacked``: the most an XLSX may unpack to (default
    MAX_XLSX_UNPACKED_BYTES); openpyxl reads its shared strings whole before the first row."""
    for n, rec in _all_records(path, max_unpacked or MAX_XLSX_UNPACKED_BYTES):
        if max_rows is not None and n > max_rows + HEADER_SEARCH_ROWS:
            raise TooManyRecords(max_rows)
        if rec is not BLANK:
            yield n, rec


def _all_records(path: Path, max_unpacked: int) -> Iterable[tuple[int, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        text = _decode(path.read_bytes())
        if "\x00" in text:
            raise CaseFileError("文件含二进制内容，不是CSV / file contains binary data, not CSV")
        # strict: an unterminated quote is an error, not a field that swallows the rest of the file
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            done = 0  # the physical line where the last whole record ended: a broken one starts after it

            def records():
                nonlocal done
                for cells in reader:
                    done = reader.line_num
                    yield cells  # blank lines too: a spreadsheet shows them as rows, so they are counted

            rows = records()
            keys, n = _take_header(rows)
            for i, cells in enumerate(rows, start=n + 1):
                if not any(c.strip() for c in cells):
                    yield i, BLANK
                    continue
                if len(cells) > len(keys):  # more cells than the header: an unquoted comma split the row
                    yield i, {"__error__": "列数多于表头（内容里的逗号可能未加引号） / more cells than the header "
                                           "(an unquoted comma?)"}
                    continue
                yield i, dict(zip(keys, cells))
        except csv.Error as exc:
            line = done + 1  # the record after the last one read whole
            raise CaseFileError(f"CSV 格式错误（约第{line}行，如引号未闭合）：{exc} / broken CSV near line {line} "
                                f"(an unclosed quote?): {exc}") from exc
    elif suffix in (".xlsx", ".xlsm"):
        import zipfile

        from openpyxl import load_workbook

        try:
            with zipfile.ZipFile(path) as packed:
                unpacked = sum(info.file_size for info in packed.infolist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise CaseFileError(f"无法读取Excel文件 / cannot read XLSX: {exc}") from exc
        if unpacked > max_unpacked:
            raise CaseFileError(f"Excel文件解压后超过 {max_unpacked // 2**20} MB，请拆分后导入 / the XLSX "
                                f"unpacks to more than {max_unpacked // 2**20} MB; split it")
        if unpacked > ZIP_BOMB_FLOOR and unpacked > ZIP_BOMB_RATIO * path.stat().st_size:
            raise CaseFileError(f"Excel文件解压后是原文件的 {unpacked // max(path.stat().st_size, 1)} 倍，不像正常的导出"
                                f"文件，请另存后再导入 / the XLSX unpacks to over {ZIP_BOMB_RATIO} times its size")
        try:
            wb = load_workbook(path, read_only=True, data_only=False)
        except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds
            raise CaseFileError(f"无法读取Excel文件 / cannot read XLSX: {exc}") from exc
        try:  # closed also where the reader stops early (TooManyRecords)
            ws = wb.worksheets[0]
            rows = ws.iter_rows(values_only=True)
            header, n = _take_header(rows)  # rows numbered as the spreadsheet shows them
            for i, values in enumerate(rows, start=n + 1):
                if values is None or all(v is None for v in values):
                    yield i, BLANK
                    continue
                yield i, dict(zip(header, values))
        finally:
            wb.close()
    elif suffix in (".jsonl", ".ndjson"):
        for i, line in enumerate(_decode(path.read_bytes()).splitlines(), start=1):
            if not line.strip():
                yield i, BLANK
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                yield i, {"__error__": f"JSON 格式错误 / invalid JSON: {exc.msg}"}
                continue
            except RecursionError:
                yield i, {"__error__": "JSON 嵌套过深 / JSON nested too deeply"}
                continue
            yield i, (_renamed(rec, header_map(rec)) if isinstance(rec, dict)
                      else {"__error__": "每行应为一个JSON对象 / each line must be an object"})
    else:
        raise CaseFileError(f"不支持的文件类型 {suffix} / unsupported file type (use CSV, XLSX or JSONL)")


def _cell(rec: dict[str, Any], key: str) -> str:
    v = rec.get(key)
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v).strip()


def stable_id(text: str) -> str:
    return "txt-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def validate_record(row: int, rec: dict[str, Any]) -> CaseRow | RowError:
    if "__error__" in rec:
        return RowError(row, rec["__error__"])
    tax = get_taxonomy()
    text = _cell(rec, "text")
    title = _cell(rec, "title")
    if title and title not in text:
        text = f"{title}。{text}"
    if not text:
        return RowError(row, "text 为空 / text is empty")
    if len(text) > MAX_TEXT:
        return RowError(row, f"text 超过 {MAX_TEXT} 字 / text longer than {MAX_TEXT} characters")
    if text.startswith(("=", "+", "@")) and len(text) < 300 and any(c in text for c in "(|!"):
        return RowError(row, "text 看起来是表格公式，不是投诉内容 / text looks like a spreadsheet formula")
    bad = _BAD_CHARS.search(text)
    if bad:
        return RowError(row, f"text 含控制字符 U+{ord(bad.group()):04X} / text contains a control character")
    # Codes in any case ("NOISE", as a spreadsheet's autocorrect or an export may write them).
    ptype, subtype, unit = (_cell(rec, k).lower() for k in ("pollution_type", "subtype", "unit_type"))
    if subtype == NOT_ENV and ptype in ("", NOT_ENV):  # a not-ours order has no subtype; some files repeat the type
        ptype, subtype = NOT_ENV, ""
    if ptype and ptype not in tax.types:
        return RowError(row, f"未知的 pollution_type '{ptype}' / unknown pollution_type")
    if subtype and not tax.is_valid(ptype or tax.type_of(subtype), subtype):
        return RowError(row, f"subtype '{subtype}' 与 pollution_type '{ptype}' 不符 / unknown or mismatched subtype")
    if ptype and not subtype and ptype != NOT_ENV:
        subtype = tax.default_subtype(ptype)
    if subtype and not ptype:
        ptype = tax.type_of(subtype)
    if unit and unit not in UNIT_TYPES:
        return RowError(row, f"未知的 unit_type '{unit}' / unknown unit_type")
    occurred = _cell(rec, "occurred_at")
    if occurred:
        try:
            parsed = parse_when(occurred)
        except (ValueError, OverflowError):
            return RowError(row, f"无法识别的日期 '{occurred}' / unparseable occurred_at")
        if parsed.replace(tzinfo=None) > datetime.now() + timedelta(days=1):
            return RowError(row, f"occurred_at '{occurred}' 晚于今天 / occurred_at is in the future")
        occurred = parsed.isoformat()
    order_id = _cell(rec, "order_id") or stable_id(text)  # of the text as given: two callers stay two cases
    # The knowledge base shows its texts to everyone as evidence: no caller's phone or ID number goes in.
    return CaseRow(row=row, order_id=order_id, text=mask_personal_numbers(text), pollution_type=ptype,
                   subtype=subtype, unit_type=unit, unit_raw=_cell(rec, "unit_raw"),
                   reply=mask_personal_numbers(_cell(rec, "reply")), occurred_at=occurred,
                   address=_cell(rec, "address"))


_ZH_DATE = re.compile(r"^\s*(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]?\s*(.*)$")
_EXCEL_SERIAL = re.compile(r"^\s*\d{5}(\.\d+)?\s*$")


def parse_when(value: str) -> datetime:
    """A date as 12345 exports write it: ISO and its variants, 2026年3月5日 9时30分, or the day number a
    spreadsheet shows when a date cell lost its format (45000 = 2023-03-15). ValueError otherwise."""
    m = _ZH_DATE.match(value)
    if m:
        clock = re.sub(r"[时点分]", ":", m.group(4)).replace("秒", "").strip().rstrip(":")
        clock = f"{clock}:00" if clock.isdigit() else clock  # 9点 → 9:00
        value = f"{m.group(1)}-{m.group(2)}-{m.group(3)} {clock}".strip()
    elif _EXCEL_SERIAL.match(value):
        return datetime(1899, 12, 30) + timedelta(days=float(value))  # the 1900 date system, as Excel counts
    return dateparser.parse(value)


def read_cases_file(path: Path, *, max_records: int | None = None,
                    max_unpacked: int | None = None) -> tuple[list[CaseRow], list[RowError]]:
    """The file's valid rows and its rejected ones. ``max_records``: stop with TooManyRecords after that many rows,
    valid, rejected or blank (the web page's bound: it counted only valid rows, after reading the whole file, so a
    file of rejected rows cost minutes and gigabytes). ``max_unpacked``: see ``_records``."""
    path = Path(path)
    if not path.exists():
        raise CaseFileError(f"文件不存在 / file not found: {path}")
    rows: list[CaseRow] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for n, rec in _records(path, max_rows=max_records, max_unpacked=max_unpacked):
        item = validate_record(n, rec)
        if isinstance(item, RowError):
            errors.append(item)
        elif item.order_id in seen:
            errors.append(RowError(n, f"order_id {item.order_id} 与第{seen[item.order_id]}行重复 / duplicate order_id"))
        else:
            seen[item.order_id] = n
            rows.append(item)
    return rows, errors


def store_cases(rows: list[CaseRow], *, store: KnowledgeStore, embedder, source: str = "import",
                on_progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Embed and store the rows that are not stored yet; returns (added, already present)."""
    ids = [r.order_id for r in rows]
    present = store.existing_ids(CASES, ids)
    # Similar lengths in one batch waste less padding (the model pads to the longest text of a batch).
    todo = sorted((r for r in rows if r.order_id not in present), key=lambda r: len(r.text))
    for i in range(0, len(todo), EMBED_BATCH):
        batch = todo[i : i + EMBED_BATCH]
        vecs = embedder.embed_passages([complaint_for_embedding(r.text) for r in batch])
        store.upsert(CASES, [r.order_id for r in batch], vecs, [r.text for r in batch],
                     [r.metadata(source) for r in batch])
        if on_progress:
            on_progress(len(batch))
    return len(todo), len(present)


def infer_unit_types(rows: list[CaseRow], routing=None) -> int:
    """Give each row that names its handling unit (unit_raw, 承办单位) but lacks unit_type the kind that name
    denotes (`Routing.kind_of_unit_name`); names it cannot place stay without one. Platform exports carry the
    unit's name only, and routing learns from unit kinds: without this an office's own history taught routing
    nothing. Returns how many rows got one."""
    if routing is None:
        from triage.classify.routing import get_routing

        routing = get_routing()
    n = 0
    for r in rows:
        if r.unit_raw and not r.unit_type:
            kind = routing.kind_of_unit_name(r.unit_raw)
            if kind is not None:
                r.unit_type, r.unit_inferred = kind, True
                n += 1
    return n


def import_cases(path: Path, *, store: KnowledgeStore, embedder,
                 on_progress: Callable[[int], None] | None = None,
                 on_total: Callable[[int], None] | None = None, max_records: int | None = None,
                 max_unpacked: int | None = None) -> ImportReport:
    rows, errors = read_cases_file(path, max_records=max_records, max_unpacked=max_unpacked)
    inferred = infer_unit_types(rows)
    if on_total:
        on_total(len(rows))
    added, present = store_cases(rows, store=store, embedder=embedder, on_progress=on_progress)
    return ImportReport(total=len(rows) + len(errors), imported=added, already_present=present, rejected=errors,
                        units_inferred=inferred)


class CaseRejected(ValueError):
    """The case itself is unfit for the knowledge base (its text, its labels): trying again cannot help."""

    permanent = True


def upsert_case(case: dict[str, Any], *, store: KnowledgeStore, embedder) -> str:
    """Add (or refresh) one handled case, e.g. when the queue closes a complaint. Raises CaseRejected for a case
    the knowledge base refuses (an import would refuse its row too)."""
    item = validate_record(0, case)
    if isinstance(item, RowError):
        raise CaseRejected(item.reason)
    vec = embedder.embed_passages([complaint_for_embedding(item.text)])
    store.upsert(CASES, [item.order_id], vec, [item.text], [item.metadata(case.get("source", "closed"))])
    return item.order_id
