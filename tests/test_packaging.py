"""A plain `pip install .` (what an office's IT would do on an intranet machine) must carry everything the
service reads at run time: the pages inside the package, knowledge/, prompts/ and migrations/ as data files."""

from __future__ import annotations

import glob
import re
import sysconfig
import tomllib
from pathlib import Path

import pytest

from triage import settings as settings_module

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SHIPPED_DIRS = ("knowledge", "prompts", "migrations")


def _tracked_files(folder: str) -> set[str]:
    out = set()
    for p in (ROOT / folder).rglob("*"):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            out.add(p.relative_to(ROOT).as_posix())
    return out


def _data_files() -> dict[str, set[str]]:
    """Destination folder → files the wheel's data-files globs pick up."""
    table = PYPROJECT["tool"]["setuptools"]["data-files"]
    return {dest: {Path(f).relative_to(ROOT).as_posix() for pattern in patterns
                   for f in glob.glob(str(ROOT / pattern))}
            for dest, patterns in table.items()}


@pytest.mark.parametrize("folder", SHIPPED_DIRS)
def test_every_runtime_file_is_shipped(folder):
    shipped = set().union(*_data_files().values())
    missing = sorted(_tracked_files(folder) - shipped)
    assert not missing, f"add these to [tool.setuptools.data-files] in pyproject.toml: {missing}"


def test_data_files_keep_the_checkout_layout():
    # RESOURCE_ROOT/knowledge/regulations/x.md must sit where the checkout has it.
    for dest, files in _data_files().items():
        sub = dest.removeprefix("share/triage12345").strip("/")
        for f in files:
            assert Path(f).parent.as_posix() == (sub or "."), (dest, f)


def test_package_data_covers_the_templates():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["triage"]
    covered = {Path(f).relative_to(ROOT / "triage").as_posix() for p in patterns
               for f in glob.glob(str(ROOT / "triage" / p)) if Path(f).is_file()}
    needed = {p.relative_to(ROOT / "triage").as_posix() for p in (ROOT / "triage").rglob("*")
              if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts}
    assert needed <= covered, sorted(needed - covered)


def test_checkout_reads_its_own_files():
    assert settings_module.RESOURCE_ROOT == ROOT
    assert settings_module.Settings().knowledge_dir == ROOT / "knowledge"


def test_installed_copy_reads_the_data_files(monkeypatch, tmp_path):
    # Installed from a wheel, the package sits in site-packages with no knowledge/ beside it.
    monkeypatch.setattr(settings_module, "PROJECT_ROOT", tmp_path / "site-packages")
    assert settings_module._resource_root() == Path(sysconfig.get_path("data")) / "share" / "triage12345"


def test_drafting_reads_the_configured_knowledge_folder(monkeypatch, tmp_path):
    # An office that copied knowledge/ and trimmed its digest drafts from its own copy, like `triage kb` ingests it.
    import shutil

    from triage.drafting import basis

    (tmp_path / "regulations").mkdir()
    shutil.copy(ROOT / "knowledge" / "regulations" / "general.md", tmp_path / "regulations")
    monkeypatch.setattr(basis, "get_settings", lambda: settings_module.Settings(knowledge_dir=tmp_path))
    own = basis.load_digest()
    assert set(own) < set(basis.load_digest(ROOT / "knowledge" / "regulations"))
    assert own == basis.load_digest(tmp_path / "regulations")


# Run inside the environment installed from the wheel: the pages, the API and a suggestion with its articles.
SMOKE = r"""
import sys
from pathlib import Path

import triage
from triage import settings
from fastapi.testclient import TestClient
from triage.api.app import create_app

prefix = Path(sys.prefix)
assert Path(triage.__file__).is_relative_to(prefix), triage.__file__  # the wheel's copy, not the checkout
assert settings.RESOURCE_ROOT == prefix / "share" / "triage12345", settings.RESOURCE_ROOT
# Dev mode answers only to this machine's names (TRIAGE_ALLOWED_HOSTS is not set here, unlike in the suite).
with TestClient(create_app(retry_on_startup=False), base_url="http://localhost") as client:
    for page in ("/queue", "/report", "/static/app.css"):
        assert client.get(page).status_code == 200, page
    r = client.post("/api/complaints", json={"text": "楼下饭店油烟直排，熏得没法开窗，请城管核实处理"},
                    headers={"X-Actor": "wheel-test"})
    assert r.status_code == 201, r.text
    s = r.json()["suggestion"]
    assert s["pollution_type"] == "air" and s["regulations"], s
    cid = r.json()["id"]
    draft = client.post(f"/api/complaints/{cid}/draft", json={"findings": "现场核查属实", "result": "属实"},
                        headers={"X-Actor": "wheel-test"})
    assert draft.status_code == 200 and draft.json()["citations"], draft.text
print("wheel smoke ok")
"""


@pytest.mark.slow  # builds and installs the wheel into a fresh venv (about a minute on two cores)
def test_the_wheel_runs_without_a_checkout(tmp_path):
    """Build the wheel, install it (without dependencies) into an empty environment and run the service from
    a directory that is not the checkout: migrations, the digest, templates and prompts must all come along."""
    import os
    import subprocess
    import sys

    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)]
    built = subprocess.run([*build, "--no-build-isolation"], capture_output=True, text=True)
    if built.returncode != 0:  # this environment lacks the build backend: let pip fetch it
        built = subprocess.run(build, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(dist.glob("triage12345-*.whl"))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies are this environment's (installing torch & co. again takes minutes); a path in a .pth
    # file does not run that folder's own .pth files, so the checkout's editable hook stays out.
    Path(site, "test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                                str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-2000:]

    work = tmp_path / "office"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_") or k == "TRIAGE_MODEL_CACHE_DIR"}
    env.update(TRIAGE_DATA_DIR=str(work / "data"), HF_HUB_OFFLINE="1", PYTHONPATH="")
    init = subprocess.run([venv / "bin" / "triage", "init"], cwd=work, env=env, capture_output=True, text=True)
    said = init.stdout + init.stderr
    assert init.returncode == 0, said[-3000:]
    articles = re.search(r"法规 (\d+) 条", said)
    assert articles and int(articles.group(1)) > 50, said[-3000:]  # the digest shipped with the wheel
    current = subprocess.run([venv / "bin" / "triage", "db", "current"], cwd=work, env=env, capture_output=True,
                             text=True)
    assert current.returncode == 0 and "state: current" in current.stdout, current.stdout + current.stderr
    smoke = subprocess.run([python, "-c", SMOKE], cwd=work, env=env, capture_output=True, text=True)
    assert smoke.returncode == 0 and "wheel smoke ok" in smoke.stdout, smoke.stdout[-2000:] + smoke.stderr[-3000:]


def test_init_warns_when_there_is_no_digest(tmp_path):
    # An office whose TRIAGE_KNOWLEDGE_DIR lacks regulations/ would get suggestions without articles: say so.
    import io

    from rich.console import Console

    from triage.bootstrap import prepare

    out = io.StringIO()
    (tmp_path / "knowledge").mkdir()
    prepare(settings_module.Settings(data_dir=tmp_path / "data", knowledge_dir=tmp_path / "knowledge"),
            Console(file=out, width=200))
    assert "法规 0 条" in out.getvalue() and "法规知识库为空" in out.getvalue()
    assert str(tmp_path / "knowledge" / "regulations") in out.getvalue().replace("\n", "")
    out = io.StringIO()
    prepare(settings_module.Settings(data_dir=tmp_path / "data2"), Console(file=out, width=200))
    assert "法规知识库为空" not in out.getvalue()
