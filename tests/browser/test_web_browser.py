"""The pages in a real browser: Playwright for Python driving Debian's Chromium (never `playwright install`).

The app runs under uvicorn in a background thread on 127.0.0.1 (ephemeral port) with the fakes of conftest.py
and web_support.py (no model), SQLite in tmp_path and the demo set loaded, as a new user would see it.
Screenshots of each page go to test-artifacts/screenshots/<page>.png (git-ignored).
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"),
                                 reason="Debian chromium is not installed (apt-get install -y chromium)")]

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                              args=ARGS)
        yield b
        b.close()


class LiveServer:
    def __init__(self, app):
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live(tmp_path):
    from web_support import make_app

    from triage.settings import Settings

    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'browser.db'}", demo_data=True)
    app = make_app(settings)
    with LiveServer(app) as server:
        server.app = app
        yield server


@pytest.fixture
def page(browser, live):
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai")
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # First view: the demo set loads in the background and the page refreshes itself until it is there.
    pg.goto(live.url + "/")
    live.app.state.web_demo_thread.join(timeout=30)
    pg.goto(live.url + "/")
    pg.wait_for_selector("table.queue")
    yield pg
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def shot(pg, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def kpi(pg, key: str) -> str:
    return pg.locator(f'[data-kpi="{key}"]').inner_text().strip()


def flash_texts(pg) -> list[str]:
    return [t.strip() for t in pg.locator(".flash").all_inner_texts()]


def test_intake_accept_draft_close_moves_the_closure_rate(page, live):
    pg, base = page, live.url
    assert "演示数据" in pg.inner_text("body") and pg.locator("table.queue tbody tr").count() == 11
    shot(pg, "queue")

    pg.goto(base + "/dashboard")
    before_closed = pg.locator('[data-kpi="closure_rate"] + .sub').inner_text()
    before_rate = kpi(pg, "closure_rate")
    assert before_rate == "26.7%" and before_closed == "办结 4 件"  # 4 of the 15 demo complaints
    assert pg.locator("svg.trend rect.bar-received").count() >= 8
    shot(pg, "dashboard")

    pg.click("text=受理投诉")
    pg.fill("textarea[name=text]", "市民来电反映：均禾街石湖村二巷3号楼下的大排档油烟直排进住户窗户，晚上尤其严重，请核实处理。")
    pg.fill("input[name=address]", "均禾街石湖村二巷3号")
    shot(pg, "intake")
    pg.click("button:has-text('保存并分拣')")
    pg.wait_for_url(re.compile(r"/complaints/\d+$"))
    cid = int(pg.url.rsplit("/", 1)[1])
    assert f"已受理，投诉编号 #{cid}" in flash_texts(pg)[0]
    assert "餐饮油烟" in pg.inner_text("#suggestion")

    pg.click("button:has-text('采纳建议并派单')")
    assert "已采纳建议，派至测试区urban_management" in flash_texts(pg)[0]
    assert pg.locator("#work").is_visible() and pg.locator("#draft").is_visible()

    pg.fill("textarea[name=findings]", "经现场核查，该大排档未安装油烟净化设施，油烟经排风扇直排。")
    pg.select_option("#draft form[action$='/draft'] select[name=result]", "属实")
    pg.click("button:has-text('生成答复草稿')")
    assert "已生成答复草稿" in flash_texts(pg)[0]
    draft = pg.locator("textarea[name=reply]")
    assert draft.input_value().startswith("您好！您反映的")
    assert pg.locator(".score").inner_text() == "90"
    assert "现行有效" in pg.inner_text("#draft .citations")
    draft.fill(draft.input_value() + "我局已责令其限期安装油烟净化设施。感谢您的监督！")
    pg.locator("#draft .editor select[name=result]").select_option("属实")
    shot(pg, "case-draft")
    pg.click("button:has-text('审核通过并办结')")
    assert "已审核通过并办结（属实，按时办结）" in flash_texts(pg)[0]
    assert "已办结" in pg.inner_text("h1")
    assert "我局已责令其限期安装油烟净化设施" in pg.inner_text(".reply-final")
    timeline = pg.inner_text("#timeline")
    for step in ("受理", "分拣", "派单", "起草答复", "办结", "纳入历史案例库"):
        assert step in timeline, step
    shot(pg, "case-closed")

    pg.goto(base + "/dashboard")
    assert kpi(pg, "received") == "16" and kpi(pg, "closure_rate") == "31.2%"  # 5 of 16
    assert live.app.state.test_sink and live.app.state.test_sink[-1]["order_id"] == f"triage-{cid}"

    pg.click("text=生成本期工作报告")
    assert pg.locator("article.report h1").count() == 1
    assert "共受理12345环境类投诉16件" in pg.inner_text("article.report")
    shot(pg, "report")


def test_override_return_and_reassign(page, live):
    pg, base = page, live.url
    pg.goto(base + "/complaints/new")
    pg.fill("textarea[name=text]", "市民反映：均禾大道旁的河涌最近发黑发臭，还有死鱼漂在水面上，请尽快查一下是谁在排污。")
    pg.click("button:has-text('保存并分拣')")
    pg.wait_for_url(re.compile(r"/complaints/\d+$"))
    cid = int(pg.url.rsplit("/", 1)[1])

    form = pg.locator("form[data-override]")
    form.locator("select[name=pollution_type]").select_option("water")
    # the subtype list now offers the water subtypes only
    assert form.locator("optgroup[data-type=noise]").evaluate("g => g.hidden") is True
    form.locator("select[name=subtype]").select_option("water.river")
    form.locator("select[name=unit_type]").select_option("ecology_environment")
    form.locator("input[name=note]").fill("河涌黑臭、疑似偷排，由生态环境分局查处")
    shot(pg, "case")
    form.locator("button[type=submit]").click()
    assert "已改判并派至测试区ecology_environment" in flash_texts(pg)[0]
    assert "调度员改判" in pg.inner_text("#timeline")

    pg.fill("#work textarea[name=reason] >> nth=0", "经核查为市政排水管网雨污混流，属水务部门职责，申请改派。")
    pg.click("button:has-text('退回调度员')")
    assert "已退单" in flash_texts(pg)[0] and "已退单" in pg.inner_text("h1")

    pg.goto(base + "/")
    row = pg.locator(f'tr[data-id="{cid}"]')
    assert "退单 1 次" in row.inner_text() and "已退单" in row.inner_text()
    row.locator("a").first.click()
    form = pg.locator("form[data-override]")
    form.locator("select[name=unit_type]").select_option("water_affairs")
    form.locator("button[type=submit]").click()
    assert "派至测试区water_affairs" in flash_texts(pg)[0]
    timeline = pg.inner_text("#timeline")
    assert "退单" in timeline and "改派" in timeline and "雨污混流" in timeline

    # 延期 with a reason and a new date
    pg.fill("#work form[action$='/extend'] textarea[name=reason]", "需等待水质检测报告")
    pg.fill("#work form[action$='/extend'] input[name=working_days]", "3")
    pg.click("#work form[action$='/extend'] button")  # dev mode: the direct extension (a unit's request is beside it)
    assert "已延期，新的办理期限" in flash_texts(pg)[0]
    shot(pg, "case-extended")


def test_bulk_accept_with_select_all(page, live):
    pg = page
    boxes = pg.locator("input[name=ids]")
    n = boxes.count()
    assert n >= 3
    button = pg.locator("[data-bulk-button]")
    assert button.is_disabled()
    pg.check("[data-select-all]")
    assert button.inner_text().endswith(f"（{n} 件）") and not button.is_disabled()
    shot(pg, "queue-bulk")
    button.click()
    pg.wait_for_load_state()
    assert f"已采纳建议并派单 {n} 件" in flash_texts(pg)[0]
    assert pg.locator("input[name=ids]").count() == 0


def test_import_with_bad_rows_and_knowledge_search(page, live, tmp_path):
    from web_support import BAD_ROWS_CSV

    pg, base = page, live.url
    path = tmp_path / "12345导出.csv"
    path.write_bytes(BAD_ROWS_CSV.encode("utf-8"))
    pg.goto(base + "/import")
    pg.set_input_files("input[type=file]", str(path))
    pg.click("button:has-text('上传并导入')")
    pg.wait_for_selector("#result")
    assert kpi(pg, "imported") == "2" and kpi(pg, "rejected") == "4"
    rows = pg.locator("table.rejected tbody tr").all_inner_texts()
    assert [r.split("\t")[0] for r in rows] == ["第 3 行", "第 5 行", "第 6 行", "第 7 行"]
    shot(pg, "import")

    pg.goto(base + "/knowledge")
    pg.fill("input[name=q]", "夜间建筑施工噪声扰民")
    pg.click("button:has-text('检索')")
    pg.wait_for_selector("ol.results li")
    text = pg.inner_text("ol.results")
    assert "第五百七十二条" in text and "现行有效" in text and "已废止" in text
    shot(pg, "knowledge")

    pg.goto(base + "/complaints/99999")
    assert "投诉 99999 不存在" in pg.inner_text("main")
    shot(pg, "error")


def test_a_refused_action_shows_its_reason_beside_the_form_and_pages_fit_a_phone(page, live):
    """A refused contact log re-rendered the page at the form's POST address, scrolled to the top, with the reason
    only in the flash up there; at 390px the case page was 510px wide and the queue 635px."""
    pg, base = page, live.url
    pg.goto(base + "/complaints/new")
    pg.fill("textarea[name=text]", "市民反映：石潭路88号楼下烧烤店油烟直排，熏得无法开窗，晚上尤其严重。")
    pg.click("button:has-text('保存并分拣')")
    pg.wait_for_url(re.compile(r"/complaints/\d+$"))
    cid = int(pg.url.rsplit("/", 1)[1])
    pg.click("button:has-text('采纳建议并派单')")
    pg.fill("#contact input[name=note]", "电话联系来电人")
    pg.fill("#contact input[name=contacted_at]", "2099-01-01T09:00")
    pg.click("#contact button[type=submit]")
    near = pg.locator("#contact [data-near-form]")
    assert "联系时间不能晚于现在" in near.inner_text()
    assert pg.url.endswith(f"/complaints/{cid}#contact")  # a reload shows the page, it does not post again
    assert pg.input_value("#contact input[name=note]") == "电话联系来电人"

    pg.set_viewport_size({"width": 390, "height": 844})
    for path in ("/", f"/complaints/{cid}", "/dashboard"):
        pg.goto(base + path)
        width = pg.evaluate("document.documentElement.scrollWidth")
        wide = pg.evaluate("""Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect()
            .right > 392 && !e.closest('.table-wrap')).slice(-4).map(e => e.tagName + '.' + e.className + ' '
            + Math.round(e.getBoundingClientRect().right))""")
        assert width <= 390, (path, width, wide)
    shot(pg, "case-phone")
