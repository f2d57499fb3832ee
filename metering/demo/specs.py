"""The demo's catalogue: the data tables and constants that say who and what the demo org is made of."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from datetime import timezone as dt_timezone

from accounts.models import Role

UTC = dt_timezone.utc
DEMO_SLUG = "demo"
DEMO_NAME = "Demo Robotics"
DEMO_TIMEZONE = "Europe/Berlin"
DEMO_CURRENCY = "USD"
DEMO_EMAIL_DOMAIN = "demo.example"
# Sessions a day for a user of weight 1 on an ordinary weekday; with the
# weights below, 60 people over 90 days make about 230,000 usage records.
SESSIONS_PER_DAY = 3.1


@dataclass(frozen=True)
class LoginSpec:
    email: str
    password: str
    role: str
    name: str
    teams: tuple[str, ...]
    is_staff: bool = False


LOGINS = (
    LoginSpec("admin@example.com", "admin", Role.ADMIN, "Alex Morgan", ("Platform",), is_staff=True),
    LoginSpec("manager@example.com", "manager", Role.MANAGER, "Maria Schneider", ("Platform", "Web")),
    LoginSpec("member@example.com", "member", Role.MEMBER, "Tom Becker", ("Web",)),
)


@dataclass(frozen=True)
class TeamSpec:
    name: str
    colour: str
    headcount: int  # relative size
    projects: dict[str, int]  # where its people work, weighted
    agents: dict[str, int]  # which agents they use, weighted
    batch_jobs: bool = False  # runs embedding jobs


TEAMS = (
    TeamSpec(
        "Platform",
        "#2563eb",
        12,
        {"Fleet Manager": 4, "Infrastructure": 4, "Data Platform": 1, "Navigation Stack": 1},
        {"Code Assistant": 6, "QA": 2, "Scan & Review": 2, "SecOps": 1, "Docs": 1},
    ),
    TeamSpec(
        "Web",
        "#db2777",
        12,
        {"Customer Portal": 5, "Fleet Manager": 3, "Developer Portal": 1},
        {"Code Assistant": 6, "QA": 3, "Scan & Review": 2, "Docs": 1},
    ),
    TeamSpec(
        "Mobile",
        "#f59e0b",
        9,
        {"Operator App": 6, "Customer Portal": 1},
        {"Code Assistant": 6, "QA": 4, "Scan & Review": 1, "Docs": 1},
    ),
    TeamSpec(
        "Data & ML",
        "#10b981",
        11,
        {"Perception": 4, "Data Platform": 4, "Navigation Stack": 3},
        {"Data Analyst": 5, "Code Assistant": 4, "QA": 1, "Docs": 1},
        batch_jobs=True,
    ),
    TeamSpec(
        "Security",
        "#dc2626",
        6,
        {"Infrastructure": 3, "Fleet Manager": 2, "Customer Portal": 1, "Operator App": 1},
        {"SecOps": 6, "Scan & Review": 4, "Code Assistant": 1},
    ),
    TeamSpec(
        "Developer Experience",
        "#7c3aed",
        7,
        {"Developer Portal": 5, "Infrastructure": 2},
        {"Docs": 5, "Code Assistant": 3, "Scan & Review": 1, "QA": 1},
        batch_jobs=True,
    ),
)

PROJECTS = (
    ("Fleet Manager", "#0ea5e9", ("fleet-api", "fleet-console")),
    ("Navigation Stack", "#22c55e", ("nav-planner", "nav-sim")),
    ("Perception", "#a855f7", ("perception-models", "labeling-tools")),
    ("Customer Portal", "#f97316", ("portal-web", "portal-bff")),
    ("Operator App", "#eab308", ("operator-ios", "operator-android")),
    ("Data Platform", "#14b8a6", ("pipelines", "warehouse")),
    ("Infrastructure", "#64748b", ("infra-terraform", "k8s-platform")),
    ("Developer Portal", "#ec4899", ("dev-portal", "docs-site")),
)
# The refactor spike lands on two of these: big codebases where a rename fans out.
SPIKE_CANDIDATES = ("Fleet Manager", "Customer Portal", "Navigation Stack", "Operator App")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    provider: str
    # List prices, USD per million tokens: input, cached input, cache write, output.
    prices: tuple[str, str, str, str]
    source: str
    caching: str  # "explicit" (cache writes billed), "implicit" (automatic), "" (none)
    ms_per_token: float  # output speed, for durations
    reasoning: tuple[float, float] = (0.0, 0.0)  # share of output spent reasoning, when it reasons


ANTHROPIC_PRICING = "https://docs.claude.com/en/docs/about-claude/pricing"
OPENAI_PRICING = "https://openai.com/api/pricing/"
GOOGLE_PRICING = "https://ai.google.dev/gemini-api/docs/pricing"

MODELS = (
    ModelSpec("claude-sonnet-4-5", "anthropic", ("3", "0.30", "3.75", "15"), ANTHROPIC_PRICING, "explicit", 16),
    ModelSpec("claude-haiku-4-5", "anthropic", ("1", "0.10", "1.25", "5"), ANTHROPIC_PRICING, "explicit", 6),
    ModelSpec("gpt-5", "openai", ("1.25", "0.125", "0", "10"), OPENAI_PRICING, "implicit", 18, (0.4, 0.8)),
    ModelSpec("gpt-5-mini", "openai", ("0.25", "0.025", "0", "2"), OPENAI_PRICING, "implicit", 8, (0.3, 0.7)),
    ModelSpec("gemini-2.5-pro", "google", ("1.25", "0.125", "0", "10"), GOOGLE_PRICING, "implicit", 12, (0.3, 0.6)),
    ModelSpec("text-embedding-3-small", "openai", ("0.02", "0", "0", "0"), OPENAI_PRICING, "", 0),
)
EMBEDDING_MODEL = "text-embedding-3-small"
# Base prices are in force from well before any demo period.
BASE_PRICE_DATE = date(2025, 1, 1)
# One price change inside the period, so the demo shows history priced at the
# old rate: Gemini 2.5 Pro's cached input was $0.31/M before Google cut it to
# $0.125/M. The date of the cut is moved into the demo period.
PRICE_CHANGE_MODEL = "gemini-2.5-pro"
PRICE_BEFORE_CHANGE = ("1.25", "0.31", "0", "10")
PRICE_CHANGE_SOURCE = f"{GOOGLE_PRICING} (cached input cut from $0.31/M; date moved into the demo period)"


@dataclass(frozen=True)
class AgentSpec:
    name: str
    models: dict[str, int]  # weighted
    turns: float  # mean turns per session after the first
    calls: float  # mean model calls per turn after the first
    context: int  # tokens of system prompt and repository context at the start
    step: int  # mean tokens a message or tool result adds to the context
    output: int  # median visible output tokens of a call
    diff: float  # chance a turn ends in a diff
    lines: int  # median lines added by a diff
    accept: float  # chance a diff is accepted
    chat: bool  # a chat assistant: every call is a chat completion, none is an agent step
    retrieves: bool  # embeds the question each turn to search the codebase or docs
    # The sandbox each session runs in (allocation, not utilisation).
    cpu: int
    ram: int
    storage: int


AGENTS = (
    AgentSpec(
        "Code Assistant",
        {"claude-sonnet-4-5": 6, "gpt-5": 2, "claude-haiku-4-5": 1, "gemini-2.5-pro": 1},
        turns=2.5,
        calls=4,
        context=18_000,
        step=3_500,
        output=600,
        diff=0.6,
        lines=45,
        accept=0.75,
        chat=False,
        retrieves=False,
        cpu=4,
        ram=8,
        storage=20,
    ),
    AgentSpec(
        "QA",
        {"claude-sonnet-4-5": 3, "gpt-5-mini": 3, "claude-haiku-4-5": 2},
        turns=1.5,
        calls=5,
        context=12_000,
        step=3_500,
        output=500,
        diff=0.45,
        lines=70,
        accept=0.8,
        chat=False,
        retrieves=False,
        cpu=4,
        ram=8,
        storage=10,
    ),
    AgentSpec(
        "SecOps",
        {"gpt-5": 3, "claude-sonnet-4-5": 2, "gemini-2.5-pro": 1},
        turns=1.5,
        calls=4,
        context=18_000,
        step=4_500,
        output=600,
        diff=0.25,
        lines=12,
        accept=0.6,
        chat=False,
        retrieves=False,
        cpu=2,
        ram=4,
        storage=10,
    ),
    AgentSpec(
        "Scan & Review",
        {"claude-haiku-4-5": 4, "gpt-5-mini": 3, "claude-sonnet-4-5": 2},
        turns=1,
        calls=5,
        context=25_000,
        step=4_000,
        output=400,
        diff=0.15,
        lines=8,
        accept=0.5,
        chat=False,
        retrieves=True,
        cpu=2,
        ram=4,
        storage=30,
    ),
    AgentSpec(
        "Docs",
        {"claude-sonnet-4-5": 3, "gemini-2.5-pro": 3, "gpt-5-mini": 2},
        turns=2,
        calls=2,
        context=10_000,
        step=2_500,
        output=1_100,
        diff=0.5,
        lines=80,
        accept=0.85,
        chat=True,
        retrieves=True,
        cpu=1,
        ram=2,
        storage=20,
    ),
    AgentSpec(
        "Data Analyst",
        {"gemini-2.5-pro": 4, "gpt-5": 3, "claude-sonnet-4-5": 2},
        turns=2.5,
        calls=2.5,
        context=12_000,
        step=3_500,
        output=800,
        diff=0.2,
        lines=35,
        accept=0.7,
        chat=True,
        retrieves=False,
        cpu=8,
        ram=32,
        storage=100,
    ),
)

TAGS = ("prod", "ci", "experiment", "refactor", "batch")

API_KEYS = (
    # name, owner's team (the first person of that team owns it), default project
    ("Agent gateway", None, None),
    ("CI", "Platform", None),
    ("Data jobs", "Data & ML", "Data Platform"),
    ("Fleet production", "Platform", "Fleet Manager"),
    ("Sandbox", None, None),
)

FIRST_NAMES = (
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Elif",
    "Felix",
    "Greta",
    "Hannah",
    "Ilya",
    "Jana",
    "Kai",
    "Lena",
    "Malte",
    "Nora",
    "Oskar",
    "Paula",
    "Rosa",
    "Samir",
    "Tara",
    "Ugo",
    "Vera",
    "Wim",
    "Yara",
    "Zoe",
    "Aisha",
    "Bruno",
    "Chiara",
    "Dmitri",
    "Emma",
    "Farid",
    "Gabriel",
    "Hiro",
    "Ines",
    "Jakob",
    "Kofi",
    "Lina",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Rahul",
    "Sofia",
    "Tobias",
    "Valentina",
    "Wei",
    "Yusuf",
    "Zofia",
    "Lukas",
    "Mia",
    "Noah",
    "Leonie",
    "Finn",
    "Sara",
    "Jonas",
    "Amelie",
    "Leon",
    "Clara",
    "Max",
    "Julia",
    "Erik",
    "Mara",
    "Timo",
    "Selin",
    "Pedro",
    "Ana",
    "Marek",
    "Eva",
    "Liam",
    "Ida",
    "Arjun",
)
LAST_NAMES = (
    "Schmidt",
    "Fischer",
    "Wagner",
    "Becker",
    "Hoffmann",
    "Schulz",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Hartmann",
    "Lange",
    "Rossi",
    "Kowalski",
    "Novak",
    "Yilmaz",
    "Kaya",
    "Nguyen",
    "Chen",
    "Tanaka",
    "Silva",
    "Santos",
    "Garcia",
    "Martin",
    "Dubois",
    "Jensen",
    "Nielsen",
    "Andersson",
    "Okafor",
    "Mensah",
    "Haddad",
    "Patel",
    "Singh",
    "Ivanova",
    "Petrov",
    "Costa",
    "Moreau",
    "Larsen",
    "Horvat",
    "Kim",
    "Park",
    "Ahmed",
    "Lopez",
    "Weber",
    "Vogel",
    "Berger",
)

# Relative chance that a session starts in each local hour: office hours with
# a lunch dip, a thinner evening, almost nothing at night.
HOUR_WEIGHTS = (
    0.15,
    0.08,
    0.04,
    0.03,
    0.03,
    0.06,
    0.25,
    0.9,
    3.0,
    7.0,
    9.0,
    9.0,
    5.0,
    6.5,
    8.5,
    8.5,
    7.5,
    5.0,
    2.6,
    1.8,
    1.5,
    1.1,
    0.7,
    0.35,
)
# Monday .. Sunday
WEEKDAY_FACTOR = (1.0, 1.05, 1.05, 1.0, 0.8, 0.1, 0.06)
