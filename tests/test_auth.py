"""Roles and tokens (TRIAGE_AUTH_MODE=token): every boundary of triage/auth/permissions.py, token life cycle,
hashed storage, the CLI, and dev mode unchanged. Fakes for the triager and drafter (conftest)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from conftest import fake_drafter
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from triage.auth import service
from triage.auth.models import ApiToken, User
from triage.auth.permissions import PERMISSIONS, ROUTES
from triage.settings import Settings

FUMES = "市民来电反映：石潭路88号楼下烧烤店油烟直排，熏得无法开窗。"  # fake triager → urban_management
SEWAGE = "市民反映：清湖村河涌边有污水直排，气味很大。"  # fake triager → water_affairs
PASSWORD = "correct horse battery"
USERS = {  # name → (role, unit)
    "disp": ("dispatcher", None), "boss": ("manager", None), "root": ("admin", None),
    "cg": ("unit_staff", "urban_management"), "sw": ("unit_staff", "water_affairs"),
}


@pytest.fixture(autouse=True)
def _fresh_throttle():
    service.login_throttle._fails.clear()
    yield
    service.login_throttle._fails.clear()


@pytest.fixture
def token_app(tmp_path, triager, clock, sink):
    from triage.api import deps
    from triage.api.app import create_app

    app = create_app(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'auth.db'}",
                              auth_mode="token", demo_data=False), retry_on_startup=False)
    app.dependency_overrides[deps.get_triager] = lambda: triager
    app.dependency_overrides[deps.get_drafter] = lambda: fake_drafter
    app.dependency_overrides[deps.get_case_sink] = lambda: sink.append
    app.dependency_overrides[deps.get_unit_namer] = lambda: (lambda ut: f"测试区{ut}")
    app.dependency_overrides[deps.get_now] = clock
    with app.state.session_factory() as s:
        for name, (role, unit) in USERS.items():
            service.create_user(s, username=name, password=PASSWORD, role=role, unit_type=unit)
        s.commit()
    return app


@pytest.fixture
def anon(token_app):
    return TestClient(token_app)


def login(client: TestClient, name: str) -> dict[str, str]:
    r = client.post("/api/auth/token", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def h(anon):
    """Headers per user name, logged in once."""
    return {name: login(anon, name) for name in USERS}


def _intake_assigned(anon, h, text=FUMES) -> int:
    cid = anon.post("/api/complaints", json={"text": text}, headers=h["disp"]).json()["id"]
    assert anon.post(f"/api/complaints/{cid}/assign", headers=h["disp"]).status_code == 200
    return cid


# ------------------------------------------------------------------------------------ authentication
def test_no_token_is_401_except_health_and_login(anon):
    for method, path in (("GET", "/api/queue"), ("POST", "/api/complaints"), ("GET", "/api/complaints/1"),
                         ("GET", "/api/metrics"), ("GET", "/api/users"), ("GET", "/api/knowledge/search?q=x"),
                         ("GET", "/open311/v2/requests.json"), ("POST", "/open311/v2/requests.json")):
        r = anon.request(method, path, json={"text": "x"} if method == "POST" else None)
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers.get("www-authenticate") == "Bearer"
    assert anon.get("/api/health").status_code == 200
    assert anon.get("/open311/v2/services.json").status_code == 200  # the service list is public
    assert anon.post("/api/auth/token", json={"username": "disp", "password": PASSWORD}).status_code == 200


def test_wrong_password_unknown_user_and_garbage_tokens(anon):
    bad = anon.post("/api/auth/token", json={"username": "disp", "password": "wrong password!"})
    unknown = anon.post("/api/auth/token", json={"username": "nobody", "password": "wrong password!"})
    assert bad.status_code == unknown.status_code == 401
    assert bad.json()["detail"] == unknown.json()["detail"]  # does not reveal which names exist
    for token in ("", "trg_", "trg_" + "A" * 43, "Bearer", "x" * 5000):
        r = anon.get("/api/queue", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code in (401, 403), token
    assert anon.get("/api/queue", headers={"Authorization": "Basic ZGlzcDp4"}).status_code == 401
    assert anon.post("/api/auth/token", content=b"not json", headers={"content-type": "application/json"}
                     ).status_code == 422
    form = anon.post("/api/auth/token", data={"username": "disp", "password": PASSWORD})  # the /docs form
    assert form.status_code == 200 and form.json()["token_type"] == "bearer"


def test_failed_logins_are_throttled(anon, token_app, caplog):
    for _ in range(5):
        assert anon.post("/api/auth/token", json={"username": "boss", "password": "nope nope nope"}
                         ).status_code == 401
    r = anon.post("/api/auth/token", json={"username": "boss", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert anon.post("/api/auth/token", json={"username": "disp", "password": PASSWORD}).status_code == 200
    assert "failed login for 'boss' from testclient" in caplog.text
    # Whoever guessed from that address cannot lock the account for its owner at another (five wrong passwords
    # for any name locked it out for everyone, the admin's included).
    owner = TestClient(token_app, client=("10.0.0.7", 50000))
    assert owner.post("/api/auth/token", json={"username": "boss", "password": PASSWORD}).status_code == 200
    # One address trying many names is slowed too (a password sprayed across accounts never was).
    sprayer = TestClient(token_app, client=("10.0.0.66", 50000))
    codes = [sprayer.post("/api/auth/token", json={"username": f"user{i}", "password": "Spring2026!!"}).status_code
             for i in range(51)]
    assert codes[:50] == [401] * 50 and codes[50] == 429
    assert sprayer.post("/api/auth/token", json={"username": "disp", "password": PASSWORD}).status_code == 429


def test_simultaneous_guesses_count_before_they_are_checked(token_app):
    """Forty guesses sent at once for one name all got 401, none 429: each passed the check before any failed."""
    from concurrent.futures import ThreadPoolExecutor

    def guess(_):
        with token_app.state.session_factory() as session:
            try:
                service.authenticate(session, username="boss", password="wrong wrong wrong", client="10.0.0.9")
            except service.DomainError as exc:
                return exc.status_code
            return 200

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(guess, range(20)))
    assert codes.count(401) == 5 and codes.count(429) == 15
    with token_app.state.session_factory() as session:  # the owner, elsewhere, is not locked out
        assert service.authenticate(session, username="boss", password=PASSWORD, client="10.0.0.7").username == "boss"


def test_a_login_refused_as_busy_counts_for_nothing(token_app, monkeypatch):
    import threading

    monkeypatch.setattr(service, "_hashing", threading.BoundedSemaphore(1))
    monkeypatch.setattr(service, "HASH_WAIT_S", 0.01)
    service._hashing.acquire()  # every slot taken
    with token_app.state.session_factory() as session:
        for _ in range(8):
            with pytest.raises(service.TooManyAttempts, match="登录请求过多"):
                service.authenticate(session, username="boss", password=PASSWORD, client="10.0.0.8")
        service._hashing.release()
        assert service.authenticate(session, username="boss", password=PASSWORD, client="10.0.0.8").username == "boss"


def test_token_lifecycle_logout_expiry_deactivation(anon, token_app, clock):
    hd = login(anon, "disp")
    me = anon.get("/api/auth/me", headers=hd).json()
    assert (me["username"], me["role"]) == ("disp", "dispatcher")
    assert anon.delete("/api/auth/token", headers=hd).status_code == 204
    assert anon.get("/api/queue", headers=hd).status_code == 401  # revoked

    hd = login(anon, "disp")
    with token_app.state.session_factory() as s:  # expire it
        for t in s.scalars(select(ApiToken)):
            t.expires_at = t.created_at - timedelta(seconds=1)
        s.commit()
    assert anon.get("/api/queue", headers=hd).status_code == 401

    hs = login(anon, "sw")
    root = login(anon, "root")
    assert anon.patch("/api/users/sw", json={"active": False}, headers=root).status_code == 200
    assert anon.get("/api/queue", headers=hs).status_code == 401  # deactivation revokes every token
    assert anon.post("/api/auth/token", json={"username": "sw", "password": PASSWORD}).status_code == 401


def test_passwords_and_tokens_are_stored_hashed(anon, token_app):
    hd = login(anon, "disp")
    token = hd["Authorization"].split()[1]
    with token_app.state.session_factory() as s:
        user = s.scalar(select(User).where(User.username == "disp"))
        assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
        stored = [t.token_hash for t in s.scalars(select(ApiToken))]
    assert token not in stored and service.token_digest(token) in stored


# ------------------------------------------------------------------------------------------------ roles
def test_dispatcher_cannot_manage_users(anon, h, caplog):
    assert anon.get("/api/users", headers=h["disp"]).status_code == 403
    r = anon.post("/api/users", json={"username": "x", "password": PASSWORD, "role": "admin"}, headers=h["disp"])
    assert r.status_code == 403 and "dispatcher" in r.json()["detail"]
    assert anon.patch("/api/users/disp", json={"role": "admin"}, headers=h["disp"]).status_code == 403
    # … the admin can
    r = anon.post("/api/users", json={"username": "新派单员", "password": PASSWORD, "role": "dispatcher"},
                  headers=h["root"])
    assert r.status_code == 201 and r.json()["role"] == "dispatcher"
    assert anon.post("/api/users", json={"username": "新派单员", "password": PASSWORD, "role": "dispatcher"},
                     headers=h["root"]).status_code == 409
    assert anon.post("/api/users", json={"username": "u2", "password": "short", "role": "dispatcher"},
                     headers=h["root"]).status_code == 422
    for weak in ("1111111111", "1234567890", "aaaaabbbbb", "password123", "qwertyuiop", "zhangwei2026"):
        # long enough, and among the first guesses of anyone (the last is the user's own name and the year)
        r = anon.post("/api/users", json={"username": "zhangwei", "password": weak, "role": "dispatcher"},
                      headers=h["root"])
        assert r.status_code == 422 and "过于简单" in r.json()["detail"], weak
    assert anon.post("/api/users", json={"username": "u3", "password": PASSWORD, "role": "unit_staff"},
                     headers=h["root"]).status_code == 422  # unit staff need a unit
    assert [u["username"] for u in anon.get("/api/users", headers=h["root"]).json()][-1] == "新派单员"
    # Who gave whom which access stays in the log (there was no trace but the access line).
    with caplog.at_level(logging.INFO, logger="triage.auth.service"):
        anon.patch("/api/users/新派单员", json={"role": "manager", "password": PASSWORD + "!"}, headers=h["root"])
    assert "user created: 新派单员 (role dispatcher) by root" in caplog.text
    assert "user changed: 新派单员 (role 'dispatcher' → 'manager'; password reset) by root" in caplog.text
    assert PASSWORD not in caplog.text


def test_manager_reads_everything_but_cannot_assign_or_take_complaints(anon, h):
    cid = anon.post("/api/complaints", json={"text": FUMES}, headers=h["disp"]).json()["id"]
    assert anon.get(f"/api/complaints/{cid}", headers=h["boss"]).status_code == 200
    assert anon.get("/api/queue", headers=h["boss"]).json()[0]["id"] == cid
    assert anon.get("/api/metrics", headers=h["boss"]).status_code == 200
    assert anon.get("/api/report", headers=h["boss"]).status_code == 200
    r = anon.post(f"/api/complaints/{cid}/assign", headers=h["boss"])
    assert r.status_code == 403 and "manager" in r.json()["detail"]
    assert anon.post("/api/complaints", json={"text": FUMES}, headers=h["boss"]).status_code == 403
    assert anon.post(f"/api/complaints/{cid}/close", json={"reply": "x", "result": "属实"},
                     headers=h["boss"]).status_code == 403
    assert anon.get("/api/users", headers=h["boss"]).status_code == 403
    detail = anon.get(f"/api/complaints/{cid}", headers=h["boss"]).json()
    assert detail["complaint"]["status"] == "triaged"  # nothing happened


def test_unit_staff_see_and_act_only_on_their_own_units_cases(anon, h):
    mine = _intake_assigned(anon, h, FUMES)  # → urban_management (cg)
    theirs = _intake_assigned(anon, h, SEWAGE)  # → water_affairs (sw)
    waiting = anon.post("/api/complaints", json={"text": FUMES + "另一处"}, headers=h["disp"]).json()["id"]

    assert anon.get(f"/api/complaints/{mine}", headers=h["cg"]).status_code == 200
    for path in (f"/api/complaints/{theirs}", f"/api/complaints/{waiting}", "/api/complaints/999999"):
        r = anon.get(path, headers=h["cg"])
        assert r.status_code == 404, path  # another unit's case looks like no case at all
    for action, body in (("return", {"reason": "不归我们管"}), ("extension-request", {"reason": "r", "working_days": 3}),
                         ("draft", {}), ("reply", {"reply": "已处理", "result": "属实"})):
        r = anon.post(f"/api/complaints/{theirs}/{action}", json=body, headers=h["cg"])
        assert r.status_code == 404, (action, r.text)
    assert anon.get(f"/api/complaints/{theirs}", headers=h["disp"]).json()["complaint"]["status"] == "assigned"
    # A duplicate merged into the unit's case is the unit's to read (its caller gets the unit's reply); the case
    # page links it and it answered 404.
    assert anon.post(f"/api/complaints/{waiting}/merge", json={"parent_id": mine},
                     headers=h["disp"]).status_code == 200
    assert anon.get(f"/api/complaints/{waiting}", headers=h["cg"]).status_code == 200
    assert anon.get(f"/api/complaints/{waiting}", headers=h["sw"]).status_code == 404

    queue = anon.get("/api/queue", headers=h["cg"]).json()
    assert [i["id"] for i in queue] == [mine]
    leak = anon.get("/api/queue?unit_type=water_affairs&status=assigned,triaged", headers=h["cg"]).json()
    assert [i["id"] for i in leak] == [mine]  # the filter cannot widen the scope
    assert anon.get("/api/queue?status=triaged", headers=h["cg"]).json() == []

    # Staff do the unit's work on their own case, but not the dispatcher's or the manager's.
    assert anon.post(f"/api/complaints/{mine}/draft", json={}, headers=h["cg"]).status_code == 200
    assert anon.post(f"/api/complaints/{mine}/assign", json={}, headers=h["cg"]).status_code == 403
    assert anon.get("/api/metrics", headers=h["cg"]).status_code == 403
    assert anon.post("/api/complaints", json={"text": FUMES}, headers=h["cg"]).status_code == 403
    r = anon.post(f"/api/complaints/{mine}/return", json={"reason": "店在商场里，属市场监管"}, headers=h["cg"])
    assert r.status_code == 200
    # Returned: still readable as the unit's history, no longer theirs to act on.
    assert anon.get(f"/api/complaints/{mine}", headers=h["cg"]).status_code == 200
    assert anon.post(f"/api/complaints/{mine}/extend", json={"reason": "r", "working_days": 2},
                     headers=h["cg"]).status_code == 403
    assert anon.get("/api/queue", headers=h["cg"]).json() == []
    # Open311 reads are scoped the same way.
    ids = [x["service_request_id"] for x in anon.get("/open311/v2/requests.json", headers=h["sw"]).json()]
    assert ids == [str(theirs)]
    assert anon.get(f"/open311/v2/requests/{mine}.json", headers=h["sw"]).status_code == 404


class _HashEmbedder:
    """Deterministic unit vectors from the text's hash: enough for a store query, without the model."""

    model_id, dim = "hash", 16

    def embed_passages(self, texts, progress=False):
        import hashlib

        import numpy as np

        rows = [np.random.default_rng(int.from_bytes(hashlib.sha1(t.encode()).digest()[:4], "little"))
                .standard_normal(self.dim) for t in texts]
        return np.stack([r / np.linalg.norm(r) for r in rows]).astype("float32")

    def embed_query(self, text):
        return self.embed_passages([text])[0]


def test_unit_staff_read_only_their_own_units_past_cases(anon, h, token_app, triager, tmp_path):
    """A past case's text and reply hold its caller's name and number and another unit's findings: unit staff see
    those of their own unit only, beside a suggestion and in knowledge search (they saw every unit's)."""
    from triage.api import knowledge
    from triage.classify.types import SimilarCase
    from triage.kb.cases import CaseRow, store_cases
    from triage.kb.store import KnowledgeStore, make_client

    theirs = {"id": "p1", "text": "化工厂偷排废气，来电人王五电话13912345678", "pollution_type": "air",
              "subtype": "air.industrial", "unit_type": "ecology_environment", "reply": "已立案处罚五万元",
              "similarity": 0.93}
    ours = {"id": "p2", "text": "烧烤店油烟直排，来电人李四", "pollution_type": "air", "subtype": "air.cooking_fumes",
            "unit_type": "urban_management", "reply": "已责令安装净化器", "similarity": 0.91}
    plain = triager.suggest
    triager.suggest = lambda text, **kw: plain(text, **kw).model_copy(update={"similar_cases": [
        SimilarCase(**theirs), SimilarCase(**ours)]})
    cid = _intake_assigned(anon, h, FUMES)  # → urban_management, cg's unit
    seen = lambda who: [sc["id"] for sc in anon.get(f"/api/complaints/{cid}", headers=h[who]  # noqa: E731
                                                    ).json()["suggestion"]["similar_cases"]]
    assert seen("disp") == ["p1", "p2"] and seen("boss") == ["p1", "p2"]
    assert seen("cg") == ["p2"]
    page = anon.get(f"/complaints/{cid}", headers=h["cg"]).text
    assert "烧烤店油烟直排" in page and "13912345678" not in page and "五万元" not in page
    assert "13912345678" in anon.get(f"/complaints/{cid}", headers=h["disp"]).text
    replied = anon.post(f"/api/complaints/{cid}/reply", json={"reply": "经核查已整改。", "result": "属实"}, headers=h["cg"])
    assert replied.status_code == 200, replied.text
    assert [sc["id"] for sc in replied.json()["suggestion"]["similar_cases"]] == ["p2"]

    store = KnowledgeStore(make_client(Settings(data_dir=tmp_path, chroma=str(tmp_path / "kb"))))
    embedder = _HashEmbedder()
    store_cases([CaseRow(row=2, order_id="p1", text=theirs["text"], pollution_type="air", subtype="air.industrial",
                         unit_type="ecology_environment"),
                 CaseRow(row=3, order_id="p2", text=ours["text"], pollution_type="air", subtype="air.cooking_fumes",
                         unit_type="urban_management")], store=store, embedder=embedder)
    token_app.dependency_overrides[knowledge.get_kb_store] = lambda: store
    token_app.dependency_overrides[knowledge.get_kb_embedder] = lambda: embedder
    found = lambda who: sorted(r["id"] for r in anon.get(  # noqa: E731
        "/api/knowledge/search", params={"q": "废气", "collection": "cases", "k": 5}, headers=h[who]).json()["results"])
    assert found("disp") == ["p1", "p2"]
    assert found("cg") == ["p2"]


def test_dispatcher_approves_a_units_reply(anon, h):
    cid = _intake_assigned(anon, h, SEWAGE)
    r = anon.post(f"/api/complaints/{cid}/reply", json={"reply": "经核查已封堵排口。", "result": "属实"},
                  headers=h["sw"])
    assert r.status_code == 200 and r.json()["complaint"]["status"] == "replied"
    assert anon.post(f"/api/complaints/{cid}/reply", json={"reply": "x", "result": "属实"},
                     headers=h["disp"]).status_code == 403  # replying is the unit's work
    # The unit cannot approve its own reply: that would skip the review.
    for body in ({}, {"reply": "经核查已封堵排口。", "result": "属实"}):
        r = anon.post(f"/api/complaints/{cid}/close", json=body, headers=h["sw"])
        assert r.status_code == 403 and "complaints.close" in r.json()["detail"]
    # The dispatcher sends a thin reply back (驳回); the unit works on under the same deadline.
    before = anon.get(f"/api/complaints/{cid}", headers=h["disp"]).json()["complaint"]
    assert anon.post(f"/api/complaints/{cid}/reject", json={"reason": "未写明核查时间"},
                     headers=h["sw"]).status_code == 403
    r = anon.post(f"/api/complaints/{cid}/reject", json={"reason": "未写明核查时间，请补充"}, headers=h["disp"])
    assert r.status_code == 200, r.text
    after = r.json()["complaint"]
    assert (after["status"], after["deadline"], after["reply"]) == ("assigned", before["deadline"], None)
    # The dispatcher may grant more time too; the unit replies again; the dispatcher approves.
    assert anon.post(f"/api/complaints/{cid}/extend", json={"reason": "补充监测", "working_days": 2},
                     headers=h["disp"]).status_code == 200
    assert anon.post(f"/api/complaints/{cid}/reply", json={"reply": "11月3日现场核查，已封堵排口。", "result": "属实"},
                     headers=h["sw"]).status_code == 200
    closed = anon.post(f"/api/complaints/{cid}/close", json={}, headers=h["disp"])
    assert closed.status_code == 200 and closed.json()["complaint"]["status"] == "closed"
    events = closed.json()["events"]
    assert [(e["kind"], e["actor"]) for e in events if e["kind"] in ("reply", "reject_reply", "extend", "close")] == [
        ("reply", "sw"), ("reject_reply", "disp"), ("extend", "disp"), ("reply", "sw"), ("close", "disp")]
    assert closed.json()["complaint"]["reply"] == "11月3日现场核查，已封堵排口。"


def test_every_route_has_a_permission_rule(token_app):
    """A new route (API, Open311 or web page) must be classified in permissions.ROUTES: token mode refuses an
    unclassified one, so this test names it first."""
    from fastapi.routing import APIRoute

    missing = []
    for route in token_app.routes:
        if isinstance(route, APIRoute):
            for method in route.methods - {"HEAD", "OPTIONS"}:
                if (method, route.path) not in ROUTES:
                    missing.append(f"{method} {route.path}")
    assert missing == []
    assert all(p is None or p in PERMISSIONS for p in ROUTES.values())


def test_web_pages_follow_the_same_roles(anon, h, token_app):
    """The web pages ask get_actor; in token mode that checks the page's permission and the unit."""
    mine = _intake_assigned(anon, h, FUMES)  # urban_management
    theirs = _intake_assigned(anon, h, SEWAGE)  # water_affairs
    waiting = anon.post("/api/complaints", json={"text": FUMES + "另一处"}, headers=h["disp"]).json()["id"]
    assert anon.get("/queue").status_code == 401
    assert anon.get("/queue", headers=h["disp"]).status_code == 200
    staff_queue = anon.get("/queue", headers=h["cg"])  # unit staff: only what their unit works now
    assert staff_queue.status_code == 200
    assert f'data-id="{mine}"' in staff_queue.text
    assert f'data-id="{theirs}"' not in staff_queue.text and f'data-id="{waiting}"' not in staff_queue.text
    assert anon.get(f"/complaints/{mine}", headers=h["cg"]).status_code == 200
    assert anon.get(f"/complaints/{theirs}", headers=h["cg"]).status_code == 404
    assert anon.get("/dashboard", headers=h["boss"]).status_code == 200
    assert anon.get("/import", headers=h["disp"]).status_code == 403
    r = anon.post(f"/complaints/{waiting}/assign", data={"action": "accept"}, headers=h["boss"],
                  follow_redirects=False)
    assert r.status_code == 403
    r = anon.post(f"/complaints/{theirs}/return", data={"reason": "不归我们"}, headers=h["cg"],
                  follow_redirects=False)
    assert r.status_code == 404
    state = {cid: anon.get(f"/api/complaints/{cid}", headers=h["boss"]).json()["complaint"]["status"]
             for cid in (waiting, theirs)}
    assert state == {waiting: "triaged", theirs: "assigned"}  # nothing happened
    r = anon.post(f"/complaints/{waiting}/assign", data={"action": "accept"}, headers=h["disp"],
                  follow_redirects=False)
    assert r.status_code in (200, 303)
    assert anon.get(f"/api/complaints/{waiting}", headers=h["disp"]).json()["complaint"]["status"] == "assigned"


def test_the_case_page_offers_each_role_only_what_it_may_do(anon, h, token_app):
    mine = _intake_assigned(anon, h, FUMES)  # → urban_management (cg)
    forms = lambda who: {a for a in ("assign", "draft", "reply", "close", "reject", "return", "extend",  # noqa: E731
                                     "extension-request", "extension-decision", "merge", "acknowledge", "contact")
                         if f'action="/complaints/{mine}/{a}"' in anon.get(f"/complaints/{mine}", headers=h[who]).text
                         or f'formaction="/complaints/{mine}/{a}"' in anon.get(f"/complaints/{mine}",
                                                                              headers=h[who]).text}
    # the unit signs for it, logs its first call, works it and asks for time
    assert forms("cg") == {"acknowledge", "contact", "draft", "reply", "return", "extension-request"}
    assert forms("disp") == {"close", "extend", "merge"}  # the dispatcher may approve, grant time, merge
    assert forms("boss") == set()  # the manager reads
    # The unit asks for more time; the dispatcher decides on the page.
    r = anon.post(f"/complaints/{mine}/extension-request", data={"reason": "需等待检测报告", "working_days": "3"},
                  headers=h["cg"], follow_redirects=False)
    assert r.status_code == 303
    assert forms("cg") == {"contact", "draft", "reply", "return"}  # one request at a time; asking was a receipt
    assert forms("disp") == {"close", "extend", "extension-decision", "merge"}
    assert "延期待审批" in anon.get("/queue", headers=h["disp"]).text
    r = anon.post(f"/complaints/{mine}/extension-decision", data={"decision": "approve"}, headers=h["cg"],
                  follow_redirects=False)
    assert r.status_code == 403  # a unit cannot grant itself time
    before = anon.get(f"/api/complaints/{mine}", headers=h["disp"]).json()["complaint"]["deadline"]
    r = anon.post(f"/complaints/{mine}/extension-decision", data={"decision": "approve"}, headers=h["disp"],
                  follow_redirects=False)
    assert r.status_code == 303
    after = anon.get(f"/api/complaints/{mine}", headers=h["disp"]).json()["complaint"]
    assert after["deadline"] > before and after["extension_count"] == 1
    assert anon.post(f"/api/complaints/{mine}/reply", json={"reply": "已取缔。", "result": "属实"},
                     headers=h["cg"]).status_code == 200
    assert forms("cg") == set()  # waiting for review
    assert "已提交答复，等待调度员审核" in anon.get(f"/complaints/{mine}", headers=h["cg"]).text  # it sees its reply
    assert 'action="/queue/accept"' not in anon.get("/queue", headers=h["boss"]).text  # a manager reads the queue
    assert 'action="/queue/accept"' in anon.get("/queue", headers=h["disp"]).text
    assert forms("disp") == {"close", "reject", "merge"}
    r = anon.post(f"/complaints/{mine}/reject", data={"reason": "请写明核查时间"}, headers=h["disp"],
                  follow_redirects=False)
    assert r.status_code == 303
    detail = anon.get(f"/api/complaints/{mine}", headers=h["disp"]).json()
    assert detail["complaint"]["status"] == "assigned"
    assert [e["reason"] for e in detail["events"] if e["kind"] == "reject_reply"] == ["请写明核查时间"]
    assert "驳回答复" in anon.get(f"/complaints/{mine}", headers=h["cg"]).text  # the trail says why
    empty = anon.post(f"/complaints/{mine}/reject", data={"reason": " "}, headers=h["disp"])
    assert empty.status_code == 409  # not in review any more: refused with the page, nothing changed
    refused = anon.post(f"/complaints/{mine}/merge", data={"parent_id": "1"}, headers=h["cg"])
    assert refused.status_code == 403
    assert 'data-user="cg"' in refused.text and 'href="/import"' not in refused.text  # still the user's own nav


def test_web_login_cookie_logout(anon, h, token_app):
    """The browser logs in on /login: the token lives in an HttpOnly cookie that only the pages read."""
    cid = _intake_assigned(anon, h, FUMES)
    denied = anon.get("/dashboard?from=2026-11-01")
    assert denied.status_code == 401 and 'href="/login?next=%2Fdashboard%3Ffrom%3D2026-11-01"' in denied.text
    assert "请先登录" in denied.text and "Bearer" not in denied.text  # the page's words, not the API's
    assert anon.get("/login").status_code == 200 and 'name="password"' in anon.get("/login").text

    wrong = anon.post("/login", data={"username": "boss", "password": "not it at all", "next": "/dashboard"},
                      follow_redirects=False)
    assert wrong.status_code == 401 and "用户名或密码错误" in wrong.text and "triage_session" not in wrong.cookies
    ok = anon.post("/login", data={"username": "boss", "password": PASSWORD, "next": "/dashboard"},
                   follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"
    cookie = ok.headers["set-cookie"]
    assert "triage_session=trg_" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    page = anon.get("/dashboard")
    assert page.status_code == 200 and 'data-user="boss"' in page.text and "管理人员" in page.text
    assert anon.get("/api/queue").status_code == 401  # the API never takes the cookie
    assert anon.post(f"/complaints/{cid}/close", data={"reply": "x", "result": "属实"},
                     follow_redirects=False).status_code == 403  # the manager's role still applies

    out = anon.post("/logout", follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert anon.get("/dashboard").status_code == 401
    token = cookie.split("triage_session=", 1)[1].split(";", 1)[0]
    stale = anon.get("/dashboard", cookies={"triage_session": token})
    assert stale.status_code == 401 and "登录已过期或已退出" in stale.text  # revoked, not just dropped

    away = anon.post("/login", data={"username": "cg", "password": PASSWORD, "next": "//evil.example/x"},
                     follow_redirects=False)
    assert away.status_code == 303 and away.headers["location"] == "/"  # never off-site
    staff = anon.get("/")
    assert staff.status_code == 200 and f'data-id="{cid}"' in staff.text and "承办单位 · " in staff.text
    # Unit staff are shown only what they may use: no bulk dispatch, no unit filter, no manager pages.
    assert "data-staff-queue" in staff.text and 'action="/queue/accept"' not in staff.text
    assert 'name="unit"' not in staff.text
    assert 'href="/dashboard"' not in staff.text and 'href="/knowledge"' in staff.text


def test_web_login_is_throttled_like_the_api(anon):
    for _ in range(5):
        assert anon.post("/login", data={"username": "disp", "password": "nope nope nope"}).status_code == 401
    r = anon.post("/login", data={"username": "disp", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 429 and "triage_session" not in r.headers.get("set-cookie", "")


# ------------------------------------------------------------------------------------- dev mode, CLI
def test_dev_mode_keeps_x_actor_and_allows_every_role(client):
    from urllib.parse import quote

    r = client.post("/api/complaints", json={"text": FUMES}, headers={"X-Actor": quote("调度员甲")})
    assert r.status_code == 201
    detail = client.get(f"/api/complaints/{r.json()['id']}").json()
    assert detail["events"][0]["actor"] == "调度员甲"
    assert client.get("/api/users").status_code == 200
    assert client.get("/api/auth/me").json()["dev"] is True


def test_cli_users_add_then_login(tmp_path, monkeypatch, caplog):
    from triage.api.app import create_app
    from triage.cli import app as cli
    from triage.settings import get_settings

    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TRIAGE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        r = runner.invoke(cli, ["users", "add", "石井城管", "--role", "unit_staff", "--unit", "urban_management",
                                "--password-stdin"], input=PASSWORD + "\n")
        assert r.exit_code == 0, r.output
        again = runner.invoke(cli, ["users", "add", "石井城管", "--role", "dispatcher", "--password-stdin"],
                              input=PASSWORD + "\n")
        assert again.exit_code == 1
        assert runner.invoke(cli, ["users", "add", "x", "--role", "boss", "--password-stdin"],
                             input=PASSWORD + "\n").exit_code == 2
        assert runner.invoke(cli, ["users", "add", "y", "--role", "unit_staff", "--password-stdin"],
                             input=PASSWORD + "\n").exit_code == 2
        assert runner.invoke(cli, ["users", "add", "z", "--role", "manager", "--password-stdin"],
                             input="short\n").exit_code == 2
        listed = runner.invoke(cli, ["users", "list"])
        assert "石井城管" in listed.output and "urban_management" in listed.output
        tok = runner.invoke(cli, ["users", "token", "石井城管", "--hours", "1"])
        assert tok.exit_code == 0 and tok.stdout.strip().splitlines()[-1].startswith("trg_")
        assert runner.invoke(cli, ["users", "set", "石井城管", "--role", "dispatcher"]).exit_code == 0
        # Account changes from the shell reach the security log as the web's do, naming the system user.
        lines = [r.getMessage() for r in caplog.records if r.name == "triage.auth.service"]
        assert any(x.startswith("user created: 石井城管 (role unit_staff, unit urban_management) by cli")
                   for x in lines), lines
        assert any(x.startswith("token issued: for 石井城管 (label cli") for x in lines), lines
        assert any("user changed: 石井城管 (role 'unit_staff' → 'dispatcher'; unit 'urban_management' → None) by cli"
                   in x for x in lines), lines
        assert not any(tok.stdout.strip().splitlines()[-1] in x for x in lines)  # the token itself never
        runner.invoke(cli, ["users", "set", "石井城管", "--role", "unit_staff", "--unit", "urban_management"])

        settings = get_settings().model_copy(update={"auth_mode": "token"})
        c = TestClient(create_app(settings, retry_on_startup=False))
        r = c.post("/api/auth/token", json={"username": "石井城管", "password": PASSWORD})
        assert r.status_code == 200 and r.json()["user"]["unit_type"] == "urban_management"
        bearer = {"Authorization": "Bearer " + tok.stdout.strip().splitlines()[-1]}
        assert c.get("/api/auth/me", headers=bearer).json()["username"] == "石井城管"
    finally:
        get_settings.cache_clear()
