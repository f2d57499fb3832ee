"""The tables of the scope matrix (issue 17): who asks, what they ask for, and what each may get.

VIEWERS: who asks (the roles of DESIGN §3, a user of another org, a superuser, anonymous, and
the API keys of §5: ingest-only, revoked, read keys bound to a user or to nobody, another org's).
SURFACES: what they ask for (each page, each htmx partial, each API operation, the CSV export,
OTLP, the sign-in pages, the admin; SOCKET, the websocket), each with how to request it, its
gate (a column of GATES: each viewer's outcome) and which facts its answer shows (people's
emails, cost, tokens, requests), read off the answer the way a person or a client reads it.

A viewer the gate lets in must see exactly the facts `expected` computes in plain Python from
the items sent here (ACME_ITEMS), never through the selectors under test; a viewer it refuses
must get exactly the refusal (404, 401, 403, a redirect to a login page) and no Acme email.
test_matrix.py runs SURFACES and checks that every route has a row; test_websocket.py SOCKET.
"""

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from asgiref.sync import async_to_sync
from django.contrib import admin as django_admin
from django.test import Client
from django.utils import timezone

from accounts.admin import OrgScopedAdminMixin
from accounts.models import Membership, Organization, Role, Team, User
from accounts.services import api_key_create
from metering.rollups import dirty_days_rebuild
from metering.services import ingest_batch
from tests.conftest import logged_in
from tests.dashboards.data import hooks, usage

# --- The data: who is who, and what each of them sent ------------------------------------------

ADMIN, MANAGER, MEMBER, WEB = "admin@acme.test", "manager@acme.test", "member@acme.test", "web@acme.test"
OUTSIDER, ROOT = "outsider@globex.test", "root@tally.test"
TEAM_OF = {ADMIN: None, MANAGER: "Platform", MEMBER: "Platform", WEB: "Web"}  # each person's team today


def item(n: int, user: str, model: str, cost: str, **fields) -> dict:
    """A usage item (tests.dashboards.data.usage) whose request id holds no email: only people are
    found by their emails in an answer."""
    return usage(n, user, model, cost, request_id=f"req-{user.split('@')[0]}-{n}", **fields)


# Costs with one digit each, in its own place, so any subset of records has a total of its own.
ACME_ITEMS = [
    item(0, ADMIN, "gpt-5", "1000", agent="Coder", session_id="s-admin", project="Atlas"),
    item(0, MANAGER, "claude-sonnet-4-5", "200", day=18, agent="Coder", session_id="s-max", project="Atlas"),
    item(1, MANAGER, "claude-sonnet-4-5", "0.0008", day=20, hour=9, agent="Coder"),  # today: raw rows
    item(0, MEMBER, "gpt-5", "30", agent="Reviewer", session_id="s-mia", project="Borealis"),
    # Made while the member was still in Web: history keeps its team, so Web's records include it.
    item(1, MEMBER, "gpt-5-mini", "4", day=18, team="Web", agent="Reviewer"),
    item(0, WEB, "gpt-5-mini", "0.5", day=18, agent="Reviewer", project="Atlas"),
    # A Web member's request made for Platform: the Platform manager sees it, and so its author.
    item(1, WEB, "gpt-5-mini", "0.06", team="Platform", status="error"),
]
LATE_ITEM = item(2, MEMBER, "gpt-5", "0.007", hour=18)  # after the rollup: the 19th is dirty again
GLOBEX_ITEM = item(0, OUTSIDER, "gpt-5", "7000")
RANGE = "range=7d"


def team_of(item: dict) -> str | None:
    return item.get("team", TEAM_OF[item["user"]])


def visible_items(scope: str) -> list[dict]:
    """The Acme items a scope may see, by DESIGN §3: the org all of them; a manager (of Platform)
    those of Platform and their own; a member their own, whatever the team."""
    items = [*ACME_ITEMS, LATE_ITEM]
    if scope == "org":
        return items
    if scope == "manager":
        return [i for i in items if team_of(i) == "Platform" or i["user"] == MANAGER]
    if scope == "member":
        return [i for i in items if i["user"] == MEMBER]
    raise AssertionError(scope)


def members_in_scope(scope: str) -> set[str]:
    """The people a page's filter bar offers: the org's members a scope may see (by membership,
    not by records: the Web member whose record Platform's manager sees is not offered to them)."""
    if scope == "org":
        return set(TEAM_OF)
    if scope == "manager":
        return {email for email, team in TEAM_OF.items() if team == "Platform"} | {MANAGER}
    return {MEMBER}


def facts_of(items: list[dict]) -> dict:
    return {
        "emails": {i["user"] for i in items},
        "cost": sum((Decimal(i["cost"]) for i in items), Decimal(0)),
        "tokens": sum(i["input_tokens"] + i["output_tokens"] for i in items),
        "requests": len(items),
    }


# --- Viewers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    name: str
    scope: str | None  # what they see in Acme when let in: "org", "manager", "member"
    email: str | None = None  # a session's user
    key: str | None = None  # an API key: what it is a key of (see `world`)


VIEWERS = [
    Viewer("admin", "org", email=ADMIN),  # staff: an org admin runs their org in the Django admin
    Viewer("manager", "manager", email=MANAGER),  # staff too, but no org to run there
    Viewer("member", "member", email=MEMBER),
    Viewer("outsider", None, email=OUTSIDER),  # admin (and staff) of Globex
    Viewer("superuser", "org", email=ROOT),
    Viewer("anonymous", None),
    Viewer("ingest key", None, key="ingest"),
    Viewer("revoked key", None, key="revoked"),  # had both scopes: revocation alone refuses it
    Viewer("read key", "org", key="read"),  # no --user: the whole org
    Viewer("manager's read key", "manager", key="read manager"),
    Viewer("member's read key", "member", key="read member"),
    Viewer("globex read key", None, key="read globex"),
]


class World:
    """Acme's people, data and keys (and Globex's), and a client per viewer."""

    def __init__(self, people: dict, keys: dict[str, str]):
        self.people, self.keys = people, keys

    def client(self, viewer: Viewer) -> tuple[Client, dict]:
        if viewer.email:
            return logged_in(self.people[viewer.email]), {}
        if viewer.key:
            return Client(), {"HTTP_AUTHORIZATION": f"Bearer {self.keys[viewer.key]}"}
        return Client(), {}


def build_world() -> World:
    """Acme (two teams, a person of each role and a Web member), Globex (the outsider), a
    superuser, the keys, and the data of ACME_ITEMS: the 18th rolled up, the 19th dirty again
    (LATE_ITEM) and the 20th raw, so the answers read rollups and raw rows alike. No password
    for anyone: every session is made with force_login, and hashing is the slow part."""
    acme = Organization.objects.create(name="Acme", slug="acme", timezone="Europe/Berlin")
    globex = Organization.objects.create(name="Globex", slug="globex", timezone="America/New_York")
    teams = {name: Team.objects.create(org=acme, name=name) for name in ("Platform", "Web")}

    def person(email, org, role, team=None, **fields):
        user = User.objects.create_user(email, **fields)
        if org is not None:
            Membership.objects.create(user=user, org=org, role=role).teams.set([teams[team]] if team else [])
        return user

    people = {
        ADMIN: person(ADMIN, acme, Role.ADMIN, is_staff=True),
        MANAGER: person(MANAGER, acme, Role.MANAGER, "Platform", is_staff=True),
        MEMBER: person(MEMBER, acme, Role.MEMBER, "Platform"),
        WEB: person(WEB, acme, Role.MEMBER, "Web"),
        OUTSIDER: person(OUTSIDER, globex, Role.ADMIN, is_staff=True),
        ROOT: person(ROOT, None, None, is_staff=True, is_superuser=True),
    }
    revoked, revoked_secret = api_key_create(org=acme, name="old", scopes={"ingest", "read"})
    revoked.revoked_at = timezone.now()
    revoked.save()
    keys = {
        "ingest": api_key_create(org=acme, name="gateway", scopes={"ingest"})[1],
        "revoked": revoked_secret,
        "read": api_key_create(org=acme, name="reader", scopes={"read"})[1],
        "read manager": api_key_create(org=acme, name="max", scopes={"read"}, owner=people[MANAGER])[1],
        "read member": api_key_create(org=acme, name="mia", scopes={"read"}, owner=people[MEMBER])[1],
        "read globex": api_key_create(org=globex, name="theirs", scopes={"read"})[1],
    }
    assert not ingest_batch(org=acme, usage=ACME_ITEMS).rejected
    assert not ingest_batch(org=globex, usage=[GLOBEX_ITEM]).rejected
    dirty_days_rebuild()
    assert not ingest_batch(org=acme, usage=[LATE_ITEM]).rejected
    return World(people, keys)


# --- Gates: the outcome of each viewer ------------------------------------------------------------

SEES = "sees"  # let in: the answer must show exactly the viewer's scope
LOGIN, ADMIN_LOGIN, HOME = "→ /login/", "→ /admin/login/", "→ /"
REFUSED = 4403  # the websocket's close code (dashboards.consumers)
SESSIONS = ("admin", "manager", "member", "outsider", "superuser")
KEYS = tuple(v.name for v in VIEWERS if v.key)
READ_KEYS = ("read key", "manager's read key", "member's read key", "globex read key")


def gate(default, **outcomes) -> dict:
    outcomes = {name.replace("_", " ").replace("s read", "'s read"): value for name, value in outcomes.items()}
    return {v.name: outcomes.get(v.name, default) for v in VIEWERS}


def each(names, outcome) -> dict:
    return {name.replace(" ", "_").replace("'", ""): outcome for name in names}


GATES = {
    # login_required, then the access gate (404 for another org); an API key is nobody here.
    "page": gate(LOGIN, admin=SEES, manager=SEES, member=SEES, superuser=SEES, outsider=404),
    # Session or read key (DESIGN §8); no credentials 401, a key without `read` 403.
    "read api": gate(
        SEES, outsider=404, globex_read_key=404, anonymous=401, ingest_key=403, revoked_key=401
    ),
    # Ingest keys only (§5, §12): a session is no credential there.
    "ingest": gate(401, ingest_key=SEES, **each(READ_KEYS, 403)),
    "public": gate(SEES),  # the schema and its browser: no org data in them
    "login": gate(SEES, **each(SESSIONS, HOME)),  # someone signed in goes home
    "logout": gate(LOGIN),
    "home": gate(LOGIN, **each(SESSIONS, SEES)),  # everyone signed in has a home, the outsider their own
    "live toggle": gate(LOGIN, admin="→ /acme/usage/", manager="→ /acme/usage/", member="→ /acme/usage/",
                        superuser="→ /acme/usage/", outsider=404),
    # Staff only: an org admin runs their org (the outsider theirs), a superuser everything; staff
    # without an org to run (the manager) are refused, non-staff sent to the admin's login.
    "admin": gate(ADMIN_LOGIN, admin=SEES, outsider=SEES, superuser=SEES, manager=403),
    # The admin's index: staff may open it, and see what they may run (the manager: nothing).
    "admin index": gate(ADMIN_LOGIN, admin=SEES, outsider=SEES, superuser=SEES, manager=SEES),
    "admin app": gate(ADMIN_LOGIN, admin=SEES, outsider=SEES, superuser=SEES, manager=404),
    # Django's own model permissions (axes, groups): superusers only.
    "superuser admin": gate(ADMIN_LOGIN, superuser=SEES, admin=403, outsider=403, manager=403),
    # Live Mode: a session's user, through the access gate; a key means nothing to a browser socket.
    "socket": gate(REFUSED, admin=SEES, manager=SEES, member=SEES, superuser=SEES),
}  # fmt: skip


# --- Surfaces -----------------------------------------------------------------------------------

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.test\b")
ACME_EMAILS = {ADMIN, MANAGER, MEMBER, WEB}


def emails_in(text: str) -> set[str]:
    return set(EMAIL.findall(text))


@dataclass(frozen=True)
class Surface:
    name: str
    gate: str
    path: str
    method: str = "get"
    params: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    body: str | None = None
    content_type: str = "application/json"
    shows: tuple[str, ...] = ("emails",)  # the facts its answer shows (see `facts_of`)
    read: Callable | None = None  # response -> its facts; None: the emails in its body
    self_email: bool = False  # shows the viewer's own email (the top bar), whatever their scope
    filter_bar: bool = False  # lists the people the viewer may filter on (members_in_scope)

    def request(self, client: Client, headers: dict):
        if self.method == "get":
            return client.get(self.path, self.params, **self.headers, **headers)
        return client.post(self.path, self.body or "", content_type=self.content_type, **self.headers, **headers)


def body_text(response) -> str:
    if response.streaming:
        return streamed(response).decode()
    return response.content.decode()


def streamed(response) -> bytes:
    """A streamed answer read the way daphne reads it (the CSV export's iterator is asynchronous)."""

    async def read():
        return b"".join([part async for part in response.streaming_content])

    return async_to_sync(read)() if response.is_async else b"".join(response.streaming_content)


def kpis(response) -> dict:
    """A page's KPI cards (DESIGN §7's data-kpi hooks) as facts."""
    found = hooks(response).kpis
    facts = {"emails": emails_in(response.content.decode())}
    if "cost" in found:
        facts["cost"] = Decimal(found["cost"])
    if "total_tokens" in found:
        facts["tokens"] = int(found["total_tokens"])
    elif "input_tokens" in found:  # the Resources page: input and output apart
        facts["tokens"] = int(found["input_tokens"]) + int(found["output_tokens"])
    if "requests" in found:
        facts["requests"] = int(found["requests"])
    return facts


def chart_total(element_id: str, fact: str):
    """The sum of every series of a chart (its Chart.js spec in a json_script) as `fact`."""

    def read(response):
        html = response.content.decode()
        match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
        assert match, f"no chart #{element_id}"
        spec = json.loads(match.group(1))
        total = sum(Decimal(str(v)) for dataset in spec["datasets"] for v in dataset["data"] if v is not None)
        return {"emails": emails_in(html), fact: total if fact == "cost" else int(total)}

    return read


def csv_facts(response) -> dict:
    rows = list(csv.DictReader(io.StringIO(streamed(response).decode())))
    return {
        "emails": {r["user"] for r in rows},
        "cost": sum((Decimal(r["cost"]) for r in rows), Decimal(0)),
        "tokens": sum(int(r["input_tokens"]) + int(r["output_tokens"]) for r in rows),
        "requests": len(rows),
    }


def api_summary(response) -> dict:
    body = response.json()
    return {"emails": emails_in(response.content.decode()), "cost": Decimal(body["cost"]),
            "tokens": body["total_tokens"], "requests": body["requests"]}  # fmt: skip


def api_timeseries(response) -> dict:
    points = response.json()["points"]
    return {"emails": emails_in(response.content.decode()), "cost": sum(Decimal(p["value"]) for p in points)}


def api_by_agent(response) -> dict:
    rows = response.json()["agents"]
    return {
        "emails": emails_in(response.content.decode()),
        "cost": sum((Decimal(r["cost"]) for r in rows), Decimal(0)),
        "tokens": sum(r["total_tokens"] for r in rows),
        "requests": sum(r["requests"] for r in rows),
    }


def api_cost_breakdown(response) -> dict:
    body = response.json()
    return {
        "emails": {r["name"] for r in body["by_user"]} | emails_in(response.content.decode()),
        "cost": Decimal(body["total"]),
        "tokens": sum(r["total_tokens"] for r in body["by_user"]),
        "requests": sum(r["requests"] for r in body["by_user"]),
    }


def ingest_facts(response) -> dict:
    return {"emails": emails_in(response.content.decode()), "accepted": response.json()["accepted"]}


PAGE_SHOWS = {  # what each page's answer shows, whole (the top bar adds the viewer's own email)
    "overview": ("emails", "cost", "tokens"),
    "usage": ("emails", "cost", "tokens", "requests"),
    "analytics": ("emails", "tokens", "requests"),
    "agents": ("tokens",),  # people only in the filter bar
    "resources": ("emails", "tokens", "requests"),
}
# Each htmx section (dashboards.views' *_SECTIONS) and what it shows on its own: its KPI cards,
# the people in its table, or the sum of its chart. "emails" alone: it shows no one (and must not).
SECTION_SHOWS = {
    ("overview", "kpis"): (("cost", "tokens"), kpis),
    ("overview", "tokens-chart"): (("tokens",), chart_total("tokens-by-project-data", "tokens")),
    ("overview", "leaderboard"): (("emails",), None),
    ("usage", "kpis"): (("cost", "tokens", "requests"), kpis),
    ("usage", "activity"): ((), None),
    ("usage", "table"): (("emails",), None),
    ("analytics", "body"): (("emails", "tokens", "requests"), kpis),
    ("analytics", "kpis"): (("tokens", "requests"), kpis),
    ("analytics", "cost"): (("cost",), chart_total("cost-by-day-data", "cost")),
    ("analytics", "projects"): ((), None),
    ("analytics", "agents"): ((), None),
    ("analytics", "services"): ((), None),
    ("analytics", "requests"): (("emails",), None),
    ("agents", "kpis"): (("tokens",), kpis),
    ("agents", "chart"): (("cost",), chart_total("agents-chart-data", "cost")),
    ("agents", "table"): ((), None),
    ("resources", "llm"): (("emails", "tokens", "requests"), kpis),
    ("resources", "consumers"): (("emails",), None),
    ("resources", "compute"): ((), None),
    ("resources", "storage"): ((), None),
    ("resources", "platform"): ((), None),
}
HTMX = {"HTTP_HX_REQUEST": "true"}


def page_surfaces() -> list[Surface]:
    rows = []
    for page, shows in PAGE_SHOWS.items():
        path = f"/acme/{page}/"
        rows.append(
            Surface(
                page, "page", path, params={"range": "7d"}, shows=shows, read=kpis, self_email=True, filter_bar=True
            )
        )
        for (owner, section), (section_shows, read) in SECTION_SHOWS.items():
            if owner == page:
                rows.append(
                    Surface(f"{page} #{section}", "page", path, params={"range": "7d", "section": section},
                            headers=HTMX, shows=section_shows, read=read)
                )  # fmt: skip
    return rows


API = "/api/v1/acme/sessions/analytics"
OTLP_EMPTY = "{}"  # an empty export request: 200 for a key that may ingest (DESIGN §12.2)


# The changelists that list people (by email): everyone of the orgs the viewer runs has a row in
# each, since every one of them sent usage (ACME_ITEMS, GLOBEX_ITEM).
ADMIN_LISTS_PEOPLE = {"accounts.user", "accounts.membership", "metering.usagerecord"}
# Whose people an admin viewer runs: an org admin their org's, a superuser everyone's. On the
# other changelists (API keys' owners, sessions' users, rollups, axes' and the audit log's
# entries) who appears depends on the rows, so there the fact is the emails of anyone else.
ADMIN_RUNS = {
    "admin": ACME_EMAILS,
    "outsider": {OUTSIDER},
    "manager": {MANAGER},  # runs nothing: sees only themselves
    "superuser": ACME_EMAILS | {OUTSIDER, ROOT},
}
ADMIN_GATES = ("admin", "admin index", "admin app", "superuser admin")


def admin_surfaces() -> list[Surface]:
    """A changelist per registered model. Tally's admins (OrgScopedAdminMixin) let an org admin
    run their orgs; the others (axes, auth's groups) keep Django's model permissions."""
    rows = []
    for model, model_admin in django_admin.site._registry.items():
        label = model._meta.label_lower
        gate_name = "admin" if isinstance(model_admin, OrgScopedAdminMixin) else "superuser admin"
        path = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        shows = ("emails",) if label in ADMIN_LISTS_PEOPLE else ()
        rows.append(Surface(f"admin {label}", gate_name, path, shows=shows, self_email=True))
    return rows


SURFACES = [
    Surface("home", "home", "/", self_email=True),
    Surface("login", "login", "/login/"),
    Surface("logout", "logout", "/logout/", method="post"),
    Surface("live toggle", "live toggle", "/acme/live/", method="post", body="live=1",
            content_type="application/x-www-form-urlencoded"),
    *page_surfaces(),
    Surface("analytics CSV", "page", "/acme/analytics/", params={"range": "7d", "export": "csv"},
            shows=("emails", "cost", "tokens", "requests"), read=csv_facts),
    Surface("api summary", "read api", f"{API}/summary", params={"range": "7d"},
            shows=("cost", "tokens", "requests"), read=api_summary),
    Surface("api timeseries", "read api", f"{API}/timeseries", params={"range": "7d", "interval": "day"},
            shows=("cost",), read=api_timeseries),
    Surface("api by-agent", "read api", f"{API}/by-agent", params={"range": "7d"},
            shows=("cost", "tokens", "requests"), read=api_by_agent),
    Surface("api cost-breakdown", "read api", f"{API}/cost-breakdown", params={"range": "7d"},
            shows=("emails", "cost", "tokens", "requests"), read=api_cost_breakdown),
    Surface("api ingest", "ingest", "/api/v1/ingest", method="post",
            body=json.dumps({"usage": [item(7, WEB, "gpt-5", "0.25")]}), shows=("accepted",),
            read=ingest_facts),
    Surface("api openapi.json", "public", "/api/v1/openapi.json"),
    Surface("api docs", "public", "/api/v1/docs"),
    Surface("otlp metrics", "ingest", "/v1/metrics", method="post", body=OTLP_EMPTY, shows=()),
    Surface("otlp logs", "ingest", "/v1/logs", method="post", body=OTLP_EMPTY, shows=()),
    Surface("otlp traces", "ingest", "/v1/traces", method="post", body=OTLP_EMPTY, shows=()),
    Surface("admin index", "admin index", "/admin/", shows=(), self_email=True),
    Surface("admin app list", "admin app", "/admin/accounts/", shows=(), self_email=True),
    # The membership form's user picker: it lists people by email, so it must list only the viewer's org's.
    Surface("admin autocomplete", "admin", "/admin/autocomplete/",
            params={"term": "", "app_label": "accounts", "model_name": "membership", "field_name": "user"},
            shows=("emails",)),
    *admin_surfaces(),
]  # fmt: skip
SOCKET = Surface("live websocket", "socket", "/ws/acme/live/", shows=("emails", "cost", "tokens", "requests"))


# --- The matrix -----------------------------------------------------------------------------------


def outcome_of(response):
    if response.status_code in (301, 302):
        return "→ " + response["Location"].split("?")[0]
    return SEES if response.status_code == 200 else response.status_code


def observe(surface: Surface, viewer_name: str, client: Client, headers: dict) -> tuple:
    """What a viewer got: the outcome and, let in, the facts the answer shows; refused, the Acme
    emails in the body (none, or the refusal leaks)."""
    response = surface.request(client, headers)
    outcome = outcome_of(response)
    if outcome != SEES:
        return outcome, {"emails": emails_in(body_text(response)) & ACME_EMAILS}
    facts = surface.read(response) if surface.read else {"emails": emails_in(body_text(response))}
    if surface.gate in ADMIN_GATES and "emails" not in surface.shows:
        return outcome, {"others": facts["emails"] - ADMIN_RUNS[viewer_name]}
    return outcome, {name: facts.get(name) for name in ("emails", *surface.shows)}


def expected(surface: Surface, viewer: Viewer) -> tuple:
    outcome = GATES[surface.gate][viewer.name]
    if outcome != SEES:
        return outcome, {"emails": set()}
    if surface.gate in ADMIN_GATES and "emails" not in surface.shows:
        return outcome, {"others": set()}
    facts = {"emails": set()}
    if surface.gate in ("page", "read api", "socket"):
        facts.update(
            {name: value for name, value in facts_of(visible_items(viewer.scope)).items() if name in surface.shows}
        )
    elif surface.gate in ADMIN_GATES:
        facts["emails"] = set(ADMIN_RUNS[viewer.name])
    elif surface.gate == "ingest":
        facts.update({"accepted": 1} if "accepted" in surface.shows else {})
    if surface.filter_bar:
        facts["emails"] = facts["emails"] | members_in_scope(viewer.scope)
    if surface.self_email and viewer.email:
        facts["emails"] = facts["emails"] | {viewer.email}
    return outcome, facts
