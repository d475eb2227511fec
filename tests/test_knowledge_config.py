"""An office's own copy of knowledge/ (TRIAGE_KNOWLEDGE_DIR): mistakes in its files are named with the file and
the line or entry, before the service starts, and a typo saved while it runs loses no complaint."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from conftest import bj
from fastapi.testclient import TestClient

from triage.settings import Settings
from triage.taxonomy import KnowledgeConfigError

KNOWLEDGE = Path(__file__).resolve().parents[1] / "knowledge"


@pytest.fixture
def office(tmp_path) -> Path:
    """A copy of the project's knowledge folder, as an office makes one."""
    return Path(shutil.copytree(KNOWLEDGE, tmp_path / "office-knowledge"))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize("old, new, says", [
    ("regions: [广东省, 广州市, 白云区]", "regions: [广东省, 广州市, 白云区", "第"),  # YAML: the line is named
    ("    unit: \"@construction_noise_unit\"", "    unit: \"@construction_noise_unit\"\n    subtypes: noise.other",
     "unknown key subtypes"),
    ("construction_noise_unit: urban_management\n  hk_longhua",
     "construction_noise_unit: urban_managment\n  hk_longhua", "unknown unit kind urban_managment"),
    ("      ecology_environment: 广州市生态环境局白云区分局",
     "      ecology_environment: 广州市生态环境局白云区分局\n      housing_constrution: 某局", "housing_constrution"),
])
def test_routing_mistakes_are_named_not_ignored(office, old, new, says):
    from triage.classify.routing import load_routing

    _edit(office / "routing.yaml", old, new)
    with pytest.raises(KnowledgeConfigError) as err:
        load_routing(office / "routing.yaml")
    assert says in str(err.value) and "routing.yaml" in str(err.value)


def test_a_rule_on_an_unknown_subtype_or_with_a_vague_night_is_refused(office):
    from triage.classify.routing import load_routing

    routing = (office / "routing.yaml").read_text(encoding="utf-8")
    rule = "\n  - id: R0\n    why: 试\n    subtype: noise.constructoin\n    unit: housing_construction\n"
    (office / "routing.yaml").write_text(routing.replace("\nrules:\n", "\nrules:" + rule, 1), encoding="utf-8")
    with pytest.raises(KnowledgeConfigError, match="unknown subtype noise.constructoin"):
        load_routing(office / "routing.yaml")
    rule = "\n  - id: R0\n    why: 试\n    night: yes please\n    unit: housing_construction\n"
    (office / "routing.yaml").write_text(routing.replace("\nrules:\n", "\nrules:" + rule, 1), encoding="utf-8")
    with pytest.raises(KnowledgeConfigError, match="night must be true or false"):
        load_routing(office / "routing.yaml")


def test_a_keyword_weight_that_is_not_a_number_names_the_file(office):
    from triage.taxonomy import load_taxonomy

    _edit(office / "taxonomy.yaml", "keywords: [", "keywords: [焗炉:高, ")
    with pytest.raises(KnowledgeConfigError, match="taxonomy.yaml.*焗炉:高"):
        load_taxonomy(office / "taxonomy.yaml")


def test_sla_rules_take_lists_and_refuse_unknown_conditions(office):
    from triage.queue.sla import SlaConfigError, get_sla

    sla_file = office / "sla.yaml"
    text = sla_file.read_text(encoding="utf-8")
    rules = ("rules:\n  - name: fumes_tianhe\n    when: {subtype: [air.cooking_fumes, air.odour]}\n"
             "    close_working_days: 7\n")
    sla_file.write_text(text.replace("rules:\n", rules, 1), encoding="utf-8")
    sla = get_sla(office)
    due = sla.compute(bj(2026, 11, 2, 9), urgency="normal", pollution_type="air", subtype="air.odour")
    assert due.rule == "fumes_tianhe"
    other = sla.compute(bj(2026, 11, 2, 9), urgency="normal", pollution_type="noise", subtype="noise.construction")
    assert other.rule != "fumes_tianhe"
    # `type: air` (not a condition) used to be ignored: the rule matched every complaint.
    time.sleep(0.01)
    sla_file.write_text(text.replace("rules:\n", "rules:\n  - name: air_tianhe\n    when: {type: air}\n"
                                     "    close_working_days: 10\n", 1), encoding="utf-8")
    with pytest.raises(SlaConfigError, match="unknown condition type"):
        from triage.queue.sla import _last_good

        _last_good.clear()  # as a fresh process would meet it
        get_sla(office)


@pytest.fixture
def office_env(office, monkeypatch):
    """TRIAGE_KNOWLEDGE_DIR pointing at the office's copy, as a deployment sets it."""
    from triage.settings import get_settings

    monkeypatch.setenv("TRIAGE_KNOWLEDGE_DIR", str(office))
    get_settings.cache_clear()
    yield office
    get_settings.cache_clear()


def test_a_typo_saved_into_sla_yaml_while_running_loses_no_complaint(tmp_path, office_env, triager, clock):
    """One bad character in sla.yaml made intake answer 500 and the complaint was not stored."""
    from triage.api import deps
    from triage.api.app import create_app

    office = office_env
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'q.db'}", knowledge_dir=office)
    app = create_app(settings, retry_on_startup=False)
    app.dependency_overrides[deps.get_triager] = lambda: triager
    app.dependency_overrides[deps.get_now] = clock
    with TestClient(app) as client:
        first = client.post("/api/complaints", json={"text": "楼下饭店油烟直排"})
        assert first.status_code == 201
        time.sleep(0.01)
        with (office / "sla.yaml").open("a", encoding="utf-8") as f:
            f.write("  close_working_days: [3\n")
        second = client.post("/api/complaints", json={"text": "工地夜间施工噪声扰民"})
        assert second.status_code == 201 and second.json()["deadline"]  # the version loaded before is kept
        # A process that never loaded it (a restart) stores the complaint all the same, untriaged, and says why.
        from triage.queue.sla import _last_good

        _last_good.clear()
        third = client.post("/api/complaints", json={"text": "河涌发黑发臭"})
        assert third.status_code == 201, third.text
        body = third.json()
        assert body["status"] == "received" and "sla.yaml" in body["triage_error"]
        assert client.get(f"/api/complaints/{body['id']}").status_code == 200


def test_the_service_does_not_start_on_a_broken_file_or_an_unknown_jurisdiction(tmp_path, office, caplog):
    from triage.api.app import create_app
    from triage.classify import routing
    from triage.queue.sla import _last_good

    _edit(office / "sla.yaml", "rules:", "rules: [")
    _last_good.clear()
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'q.db'}", knowledge_dir=office)
    with pytest.raises(KnowledgeConfigError, match="sla.yaml"):
        create_app(settings, retry_on_startup=False)
    assert any("cannot start" in r.message and "sla.yaml" in r.message for r in caplog.records)
    shutil.copy(KNOWLEDGE / "sla.yaml", office / "sla.yaml")
    routing._cached.cache_clear()
    with pytest.raises(KnowledgeConfigError, match="TRIAGE_JURISDICTION=tianhe_nowhere"):
        create_app(settings.model_copy(update={"jurisdiction": "tianhe_nowhere"}), retry_on_startup=False)
