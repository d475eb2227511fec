"""A plain `pip install .` (what an office's IT would do on an intranet machine) must carry everything the
service reads at run time: the pages inside the package, knowledge/, prompts/ and migrations/ as data files."""

from __future__ import annotations

import glob
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
