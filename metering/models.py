from django.conf import settings
from django.db import models
from django.db.models import F, Q

from accounts.models import HEX_COLOUR, ApiKey, Organization, Tag, Team, User


def money_field(**kwargs) -> models.DecimalField:
    return models.DecimalField(
        max_digits=settings.MONEY_MAX_DIGITS, decimal_places=settings.MONEY_DECIMAL_PLACES, **kwargs
    )


def price_field(verbose_name: str) -> models.DecimalField:
    # USD per million tokens; six places hold any list price ($0.0375/M and the like).
    return models.DecimalField(verbose_name, max_digits=14, decimal_places=6, default=0)


class NamedPerOrg(models.Model):
    """A dimension created on first sight by name within an org."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self):
        return self.name


class Project(NamedPerOrg):
    colour = models.CharField(max_length=7, default="#0ea5e9", validators=[HEX_COLOUR])

    class Meta(NamedPerOrg.Meta):
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="project_unique_name_per_org")]


class Repository(NamedPerOrg):
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="repositories")

    class Meta(NamedPerOrg.Meta):
        verbose_name_plural = "repositories"
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="repository_unique_name_per_org")]


class Agent(NamedPerOrg):
    class Meta(NamedPerOrg.Meta):
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="agent_unique_name_per_org")]


class LLMModel(models.Model):
    """A model as clients name it (`claude-sonnet-4-5`). Prices are global, so models are too."""

    name = models.CharField(max_length=200, unique=True)
    provider = models.CharField(max_length=100, blank=True)

    class Meta:
        verbose_name = "LLM model"
        ordering = ["provider", "name"]

    def __str__(self):
        return self.name


class ModelPrice(models.Model):
    """A model's list price, in force from 00:00 UTC of `effective_from` until the next one."""

    model = models.ForeignKey(LLMModel, on_delete=models.CASCADE, related_name="prices")
    effective_from = models.DateField()
    input = price_field("input $/M")
    cached_input = price_field("cached input $/M")
    cache_write = price_field("cache write $/M")
    output = price_field("output $/M")
    source = models.CharField(max_length=200, blank=True, help_text="Where this price comes from.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-effective_from"]
        get_latest_by = "effective_from"
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="modelprice_unique_per_day"),
            models.CheckConstraint(
                condition=Q(input__gte=0, cached_input__gte=0, cache_write__gte=0, output__gte=0),
                name="modelprice_not_negative",
            ),
        ]

    def __str__(self):
        return f"{self.model} from {self.effective_from}"


class Session(models.Model):
    """An agent or chat session, named by the client's `session_id`.

    first_seen/last_seen span every record and event that carries the id, so
    its duration is last_seen - first_seen; ingestion widens them.
    """

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    session_id = models.CharField(max_length=200)
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["-first_seen"]
        constraints = [
            models.UniqueConstraint(fields=["org", "session_id"], name="session_unique_id_per_org"),
            models.CheckConstraint(condition=Q(last_seen__gte=F("first_seen")), name="session_ends_after_start"),
        ]
        indexes = [
            models.Index(fields=["org", "first_seen"], name="session_org_first_seen"),
            # The sessions that overlap a period: last_seen >= its start bounds the scan, and the
            # org's session count, duration and agents come from the index alone (30 days on the
            # benchmark: 31 ms from the table, ~8 ms from the index).
            models.Index(
                fields=["org", "last_seen"], include=["first_seen", "agent"], name="session_org_last_seen_span"
            ),
        ]

    def __str__(self):
        return self.session_id

    @property
    def duration(self):
        return self.last_seen - self.first_seen


class ServiceType(models.TextChoices):
    TEXT_GENERATION = "text_generation", "Text generation"
    EMBEDDING = "embedding", "Embedding"
    SPEECH_TO_TEXT = "speech_to_text", "Speech to text"
    TEXT_TO_SPEECH = "text_to_speech", "Text to speech"
    IMAGE = "image", "Image"
    AGENT = "agent", "Agent"


class Status(models.TextChoices):
    SUCCESS = "success", "Success"
    ERROR = "error", "Error"


class Attribution(models.Model):
    """Who and what a usage record or activity event is attributed to."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    timestamp = models.DateTimeField()
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    # The team as it was when the record was made; moving a user later does not rewrite history.
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    repository = models.ForeignKey(Repository, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    session = models.ForeignKey(Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    metadata = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["-timestamp"]


class IntakeSource(models.TextChoices):
    """Which intake made a usage record or activity event (DESIGN §12.7)."""

    API = "api", "Ingest API"
    IMPORT = "import", "Import"
    OTLP_METRICS = "otlp_metrics", "OTLP metrics"
    OTLP_LOGS = "otlp_logs", "OTLP logs"
    OTLP_TRACES = "otlp_traces", "OTLP traces"


def source_field() -> models.CharField:
    return models.CharField(max_length=20, choices=IntakeSource.choices, default=IntakeSource.API)


class CostSource(models.TextChoices):
    PRICED = "priced", "From the price table"
    CLIENT = "client", "Sent by the client"
    UNPRICED = "unpriced", "Unpriced (no price for the model)"


class UsageRecord(Attribution):
    """One billable AI request. Token convention: input includes cached reads and cache writes."""

    request_id = models.CharField(max_length=200)
    model = models.ForeignKey(LLMModel, on_delete=models.PROTECT, related_name="+")
    provider = models.CharField(max_length=100, blank=True)
    service_type = models.CharField(max_length=20, choices=ServiceType.choices, default=ServiceType.TEXT_GENERATION)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SUCCESS)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    input_tokens = models.BigIntegerField(default=0)
    cached_input_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cost = money_field(default=0)
    cost_source = models.CharField(max_length=10, choices=CostSource.choices, default=CostSource.PRICED)
    # The price this record was costed at, so a later price change never rewrites it.
    price = models.ForeignKey(ModelPrice, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    conversation_id = models.CharField(max_length=200, blank=True)
    # The API requests this record stands for: 1 for one request; an OTLP metric point joins
    # the tokens and cost of several (or of none: 0), and `requests` is the sum of these.
    request_count = models.PositiveIntegerField(default=1)
    source = source_field()
    tags = models.ManyToManyField(Tag, blank=True, related_name="+", through="UsageRecordTag")

    class Meta(Attribution.Meta):
        constraints = [
            models.UniqueConstraint(fields=["org", "request_id"], name="usage_unique_request_id_per_org"),
            models.CheckConstraint(
                condition=Q(
                    input_tokens__gte=0,
                    cached_input_tokens__gte=0,
                    cache_write_tokens__gte=0,
                    output_tokens__gte=0,
                    reasoning_tokens__gte=0,
                ),
                name="usage_tokens_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(cached_input_tokens__lte=F("input_tokens") - F("cache_write_tokens")),
                name="usage_cache_within_input",
            ),
            models.CheckConstraint(
                condition=Q(reasoning_tokens__lte=F("output_tokens")), name="usage_reasoning_within_output"
            ),
            models.CheckConstraint(condition=Q(cost__gte=0), name="usage_cost_not_negative"),
            models.CheckConstraint(condition=Q(service_type__in=ServiceType.values), name="usage_service_type_valid"),
            models.CheckConstraint(condition=Q(status__in=Status.values), name="usage_status_valid"),
            models.CheckConstraint(condition=Q(cost_source__in=CostSource.values), name="usage_cost_source_valid"),
            models.CheckConstraint(condition=Q(source__in=IntakeSource.values), name="usage_source_valid"),
        ]
        indexes = [
            # Carrying the measures charts show, a day's records can be summed per 5-minute
            # bucket from the index alone: 70 ms instead of 125 ms for an org's 24 hours of
            # 180,000 records (bench/queries.py). SQLite ignores INCLUDE. request_count is
            # there because requests are its sum, no longer COUNT(*) of the index's entries.
            models.Index(
                fields=["org", "timestamp"],
                include=["cost", "input_tokens", "output_tokens", "request_count"],
                name="usage_org_ts",
            ),
            # Member views read one user's records; without this they scan the org.
            models.Index(fields=["org", "user", "timestamp"], name="usage_org_user_ts"),
        ]

    def __str__(self):
        return self.request_id

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class UsageRecordTag(models.Model):
    record = models.ForeignKey(UsageRecord, on_delete=models.CASCADE)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["record", "tag"], name="usagerecordtag_unique")]


class ActivityKind(models.TextChoices):
    SESSION_START = "session_start", "Session started"
    SESSION_END = "session_end", "Session ended"
    AGENT_RUN = "agent_run", "Agent run"
    DIFF_ACCEPTED = "diff_accepted", "Diff accepted"
    DIFF_REJECTED = "diff_rejected", "Diff rejected"
    TASK_COMPLETED = "task_completed", "Task completed"
    THREAD_CREATED = "thread_created", "Thread created"
    MESSAGE_SENT = "message_sent", "Message sent"
    COMMIT = "commit", "Commit"
    PULL_REQUEST = "pull_request", "Pull request"
    # Lines added and removed outside any diff decision (Claude Code's lines-of-code metric):
    # lines only, quantity 0. They count in lines of code beside accepted diffs' lines.
    LINES_CHANGED = "lines_changed", "Lines changed"


# The kinds whose lines added + removed are lines of code (DESIGN §8, §12.8).
LINES_OF_CODE_KINDS = (ActivityKind.DIFF_ACCEPTED, ActivityKind.LINES_CHANGED)


class ActivityEvent(Attribution):
    event_id = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=ActivityKind.choices)
    lines_added = models.PositiveIntegerField(default=0)
    lines_removed = models.PositiveIntegerField(default=0)
    quantity = models.PositiveIntegerField(default=1)
    source = source_field()
    tags = models.ManyToManyField(Tag, blank=True, related_name="+", through="ActivityEventTag")

    class Meta(Attribution.Meta):
        constraints = [
            models.UniqueConstraint(fields=["org", "event_id"], name="activity_unique_event_id_per_org"),
            models.CheckConstraint(condition=Q(kind__in=ActivityKind.values), name="activity_kind_valid"),
            models.CheckConstraint(
                condition=Q(lines_added__gte=0, lines_removed__gte=0, quantity__gte=0),
                name="activity_counts_not_negative",
            ),
            models.CheckConstraint(condition=Q(source__in=IntakeSource.values), name="activity_source_valid"),
        ]
        indexes = [
            models.Index(fields=["org", "timestamp"], name="activity_org_ts"),
            models.Index(fields=["org", "user", "timestamp"], name="activity_org_user_ts"),
        ]

    def __str__(self):
        return self.event_id


class ActivityEventTag(models.Model):
    event = models.ForeignKey(ActivityEvent, on_delete=models.CASCADE)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event", "tag"], name="activityeventtag_unique")]


class ResourceUsage(models.Model):
    """One workload's compute and storage allocation over [start, end).

    Rollups attribute it to the buckets it spans in proportion to time.
    """

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    resource_id = models.CharField(max_length=200)
    start = models.DateTimeField()
    end = models.DateTimeField()
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    cpu_cores = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    ram_gb = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    storage_gb = models.DecimalField(max_digits=14, decimal_places=4, default=0)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "resource usage"
        ordering = ["-start"]
        constraints = [
            models.UniqueConstraint(fields=["org", "resource_id"], name="resource_unique_id_per_org"),
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="resource_ends_after_start"),
            models.CheckConstraint(
                condition=Q(cpu_cores__gte=0, ram_gb__gte=0, storage_gb__gte=0), name="resource_not_negative"
            ),
        ]
        indexes = [models.Index(fields=["org", "start"], name="resource_org_start")]

    def __str__(self):
        return self.resource_id

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


class DirtyDay(models.Model):
    """An org-local day whose rollups are stale: written by ingestion, cleared by the rollup task.

    Kept in the database rather than Redis so a restart never loses one.
    """

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    marked_at = models.DateTimeField(auto_now=True)
    # Bumped by every mark: a rebuild clears the mark only if the version is still the
    # one it started from, so writes made while it ran are rolled up next time.
    version = models.BigIntegerField(default=1)

    class Meta:
        ordering = ["org", "day"]
        constraints = [models.UniqueConstraint(fields=["org", "day"], name="dirtyday_unique")]

    def __str__(self):
        return f"{self.org_id}:{self.day}"


class OtlpUsageSource(models.TextChoices):
    """Where a Claude Code session's usage records and diff decisions come from (DESIGN §12.3.3)."""

    METRICS = "metrics", "Metrics"
    LOGS = "logs", "Logs (events)"


class OtlpSession(models.Model):
    """Which OTLP signal a Claude Code session's usage comes from: metrics until its first
    request or edit decision event arrives (`logs_seen_at`), events from then on, for good.

    The OTLP intake locks these rows (an upsert, in session_id order) inside the
    ingest transaction, so requests of one session in different processes serialize.
    """

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    session_id = models.CharField(max_length=200)
    usage_source = models.CharField(max_length=10, choices=OtlpUsageSource.choices, default=OtlpUsageSource.METRICS)
    first_seen = models.DateTimeField()
    logs_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "OTLP session"
        ordering = ["-first_seen"]
        constraints = [
            models.UniqueConstraint(fields=["org", "session_id"], name="otlpsession_unique_id_per_org"),
            models.CheckConstraint(
                condition=Q(usage_source__in=OtlpUsageSource.values), name="otlpsession_usage_source_valid"
            ),
        ]

    def __str__(self):
        return self.session_id


class OtlpStream(models.Model):
    """The last point of a cumulative OTLP metric stream, to turn the next one into a delta
    (DESIGN §12.5). In the database, not Redis or memory: every process and restart sees it.

    `last_value` is exact: token counts reach past a float's 2^53, and a cost delta taken
    between two floats would carry their rounding into stored money.
    """

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    stream_hash = models.CharField(max_length=64)
    start_time_ns = models.BigIntegerField()
    last_time_ns = models.BigIntegerField()
    last_value = models.DecimalField(max_digits=30, decimal_places=9)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "OTLP stream"
        ordering = ["org", "stream_hash"]
        constraints = [models.UniqueConstraint(fields=["org", "stream_hash"], name="otlpstream_unique_hash_per_org")]
        # The beat task deletes the streams idle for 35 days.
        indexes = [models.Index(fields=["updated_at"], name="otlpstream_updated_at")]

    def __str__(self):
        return self.stream_hash


class OtlpSignal(models.TextChoices):
    METRICS = "metrics", "Metrics"
    LOGS = "logs", "Logs"
    TRACES = "traces", "Traces"


class OtlpKeyStats(models.Model):
    """Per API key and signal, what its OTLP exports came to: shown with the key in the admin,
    so whoever sets up a client can see its data arrive (or why it was refused).
    Written by metering.services.record_otlp_export."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="otlp_stats")
    signal = models.CharField(max_length=10, choices=OtlpSignal.choices)
    last_export_at = models.DateTimeField(null=True, blank=True)
    requests = models.PositiveBigIntegerField(default=0)
    stored = models.PositiveBigIntegerField(default=0)
    duplicates = models.PositiveBigIntegerField(default=0)
    ignored = models.PositiveBigIntegerField(default=0)
    rejected = models.PositiveBigIntegerField(default=0)
    last_rejection = models.TextField(blank=True)

    class Meta:
        verbose_name = "OTLP export statistics"
        verbose_name_plural = "OTLP export statistics"
        ordering = ["api_key", "signal"]
        constraints = [
            models.UniqueConstraint(fields=["api_key", "signal"], name="otlpkeystats_unique_signal_per_key"),
            models.CheckConstraint(condition=Q(signal__in=OtlpSignal.values), name="otlpkeystats_signal_valid"),
        ]

    def __str__(self):
        return f"{self.api_key_id}:{self.signal}"


# Daily rollups, per org-local day. Each is rebuilt whole for an (org, day) from
# the raw rows (metering.rollups), so it is only ever as stale as DirtyDay says.
# They come in several grains: the query layer reads the smallest one whose
# dimensions cover a query's filters and group-by.
#
# Tables with a user are indexed by (org, day, user): an org's days are a prefix of it, and a
# person's days (day IN (...) AND user = X) one descent per day. Rebuilds write each day's rows
# person by person (metering.rollups), so those are a few pages. The tables a manager's pages
# read are also indexed by (org, day, team): a manager's scope (their teams' rows or their own)
# is then two index scans OR-ed, where it was every row of the org's days (bench/pages.py on
# 10M records: a manager's Usage page 1.5 s). Every index is paid for by every rebuild: ~2 us a
# row, and the benchmark's busiest day writes ~130,000 rows.


# Rollup rows are derived from raw rows that already passed their foreign-key checks, so the
# database does not check them again: on a 10M-record day, the deferred checks of a rebuild's
# ~60,000 rows took 2.5 s at COMMIT, more than building the rows. Deletions still reach them
# through the ORM's on_delete. And no per-column index: rollups are read by (org, day) ranges,
# and an index per dimension would slow every rebuild for nothing.


def rollup_dimension(to, **kwargs) -> models.ForeignKey:
    return models.ForeignKey(
        to, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False, db_constraint=False, **kwargs
    )


def rollup_required(to) -> models.ForeignKey:
    return models.ForeignKey(to, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)


class Rollup(models.Model):
    org = rollup_required(Organization)
    day = models.DateField()

    class Meta:
        abstract = True


class UsageMeasures(Rollup):
    requests = models.BigIntegerField()
    failed_requests = models.BigIntegerField()
    input_tokens = models.BigIntegerField()
    cached_input_tokens = models.BigIntegerField()
    cache_write_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    reasoning_tokens = models.BigIntegerField()
    cost = money_field()
    # The cost of the records that carry a session id (average cost per session).
    session_cost = money_field()

    class Meta:
        abstract = True

    @classmethod
    def measure_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in UsageMeasures._meta.fields if f.name not in ("id", "org", "day"))


class RollupDimensions(models.Model):
    """The dimensions a rollup row is attributed to, as its raw rows are: the person, their team at
    the time, the project and the agent. Mixed into a rollup after its Rollup (or UsageMeasures)
    base, these fields come after the org, day and measures."""

    user = rollup_required(User)
    team = rollup_dimension(Team)
    project = rollup_dimension(Project)
    agent = rollup_dimension(Agent)

    class Meta:
        abstract = True

    @classmethod
    def dimension_names(cls) -> tuple[str, ...]:
        """The fields of this base (not of the rollup it is mixed into), in order."""
        return tuple(f.name for f in cls._meta.fields)


class UsageDimensions(RollupDimensions):
    """A usage rollup's dimensions by person: those of RollupDimensions, the model and the service type."""

    model = rollup_required(LLMModel)
    service_type = models.CharField(max_length=20)

    class Meta:
        abstract = True


class UsageDaily(UsageMeasures, UsageDimensions):
    """Usage by every dimension but tags."""

    repository = rollup_dimension(Repository)
    api_key = rollup_dimension(ApiKey)

    class Meta:
        indexes = [
            models.Index(fields=["org", "day", "user"], name="usagedaily_org_day_user"),
            models.Index(fields=["org", "day", "team"], name="usagedaily_org_day_team"),
        ]


class UsageDailyByTag(UsageMeasures, UsageDimensions):
    """Usage per tag, by user, team, project, agent, model and service type: a record with
    several tags counts under each of them."""

    tag = rollup_required(Tag)

    class Meta:
        indexes = [models.Index(fields=["org", "day", "user"], name="usagedailybytag_org_day_user")]


class UsageDailyBy(UsageMeasures):
    """Usage by one dimension at a time (`dimension` names it, `value` is its id or value), and
    by the pairs of dimensions the pages group by ("agent,project": `value` the first's, `other`
    the second's).

    Org-wide questions about one dimension or pair (cost by team, KPI totals, who was active,
    an agent's main project) read a few hundred rows a day here instead of UsageDaily's
    thousands. Built from UsageDaily and UsageDailyByTag, so tags overlap here too.
    """

    dimension = models.CharField(max_length=40)
    value = models.CharField(max_length=200, null=True)
    other = models.CharField(max_length=200, null=True)

    class Meta:
        indexes = [
            models.Index(fields=["org", "dimension", "day"], name="usagedailyby_org_dim_day"),
            # One value's days (a filter on it), or a few people's models in a page of the Usage table.
            models.Index(fields=["org", "dimension", "value", "day"], name="usagedailyby_org_dim_value"),
        ]


class UsageHourly(UsageMeasures):
    """Usage per UTC hour by user, team and service type: sub-day charts, for any viewer.

    `day` is the org-local day whose rebuild wrote the row: in a zone whose
    offset is not whole hours, the hour that straddles midnight has a row on each side.
    """

    hour = models.DateTimeField()
    user = rollup_required(User)
    team = rollup_dimension(Team)
    service_type = models.CharField(max_length=20)

    class Meta:
        # By day first: a rebuild deletes a day's rows; reads ask for hours of clean days.
        indexes = [
            models.Index(fields=["org", "day", "user", "hour"], name="usagehourly_org_day_user_hour"),
            models.Index(fields=["org", "day", "team", "hour"], name="usagehourly_org_day_team_hour"),
        ]


class UsageHourlyBy(UsageMeasures):
    """Usage per UTC hour by one dimension at a time, or a pair, as UsageDailyBy is per day: the
    whole org's sub-day charts by project, agent, service type, model or team (30 days at 6-hour
    buckets by project: 29,000 rows here instead of 3.8M records). `day` as in UsageHourly."""

    hour = models.DateTimeField()
    dimension = models.CharField(max_length=40)
    value = models.CharField(max_length=200, null=True)
    other = models.CharField(max_length=200, null=True)

    class Meta:
        indexes = [models.Index(fields=["org", "dimension", "day", "hour"], name="usagehourlyby_org_dim_day")]


class UsageHourlyOrg(UsageMeasures):
    """The org's usage per UTC hour, with no dimension: an admin's hourly chart over a week is
    168 rows here instead of ~100,000 in UsageHourly (bench/queries.py). `day` as in UsageHourly."""

    hour = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["org", "day", "hour"], name="usagehourlyorg_org_day_hour")]


class ActivityHourlyOrg(Rollup):
    """The org's activity per UTC hour and kind, with no dimension: an admin's threads and
    messages per 6 hours over 30 days are ~700 rows here instead of ~1,000,000 events
    (bench/pages.py). `day` as in UsageHourly."""

    hour = models.DateTimeField()
    kind = models.CharField(max_length=20)
    events = models.BigIntegerField()
    quantity = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["org", "day", "hour"], name="activityhourlyorg_org_day_hour")]


class ConversationDaily(Rollup, UsageDimensions):
    """Which conversations were active on a day, and on what: distinct conversation counts."""

    conversation_id = models.CharField(max_length=200)

    class Meta:
        indexes = [
            models.Index(fields=["org", "day", "user"], name="conversationdaily_org_day_user"),
            models.Index(fields=["org", "day", "team"], name="conversationdaily_org_day_team"),
            # A conversation's days: its previous day when a day is rebuilt (ConversationDayCount),
            # and whether a raw edge's conversation was already counted on a rolled-up day.
            models.Index(fields=["org", "conversation_id", "day"], name="conversationdaily_org_conv_day"),
        ]


class ConversationDayCount(Rollup):
    """How many conversations active on `day` were last active before on `prev_day` (None: never):
    the org's (`grain` "org"), each user's own (a conversation's days as that user's) and each
    agent's (as that agent's, `agent` None for conversations without one).

    Over a run of whole days D1..Dn, the conversations with prev_day None or before D1 are the
    run's distinct conversations, each counted once, on its first day in the run: an org's
    conversations over 30 days add up a few hundred rows instead of a distinct over ~600,000 ids,
    a member's a few dozen instead of ~30,000 (bench/queries.py). Kept right by metering.rollups,
    which marks a later day dirty when a rebuild gives one of its conversations a new previous day.
    """

    grain = models.CharField(max_length=5, choices=[("org", "org"), ("user", "user"), ("agent", "agent")])
    user = rollup_dimension(User)
    agent = rollup_dimension(Agent)
    prev_day = models.DateField(null=True)
    conversations = models.BigIntegerField()

    class Meta:
        indexes = [
            models.Index(fields=["org", "day"], name="conversationdaycount_org_day"),
            models.Index(fields=["org", "user", "day"], name="conversationdaycount_user_day"),
        ]


class ActivityDaily(Rollup, RollupDimensions):
    repository = rollup_dimension(Repository)
    kind = models.CharField(max_length=20)
    events = models.BigIntegerField()
    quantity = models.BigIntegerField()
    lines_added = models.BigIntegerField()
    lines_removed = models.BigIntegerField()

    class Meta:
        indexes = [
            models.Index(fields=["org", "day", "user"], name="activitydaily_org_day_user"),
            models.Index(fields=["org", "day", "team"], name="activitydaily_org_day_team"),
        ]


class ActivityDailyBy(Rollup):
    """Activity by one dimension at a time and kind, as UsageDailyBy is for usage: an org's agent
    runs, diffs and tasks, and who was active, from a few hundred rows a day."""

    dimension = models.CharField(max_length=20)
    value = models.CharField(max_length=200, null=True)
    kind = models.CharField(max_length=20)
    events = models.BigIntegerField()
    quantity = models.BigIntegerField()
    lines_added = models.BigIntegerField()
    lines_removed = models.BigIntegerField()

    class Meta:
        indexes = [
            models.Index(fields=["org", "dimension", "day"], name="activitydailyby_org_dim_day"),
            # The leaderboard's diffs and tasks per person: a fifth of the rows of their days.
            models.Index(fields=["org", "dimension", "kind", "day"], name="activitydailyby_org_dim_kind"),
        ]


class ActiveUserDaily(Rollup):
    """Who was active on a day (a usage record or an activity event): an org's unique users over
    30 days from ~30,000 rows instead of distinct users over the activity rollup's ~180,000."""

    user = rollup_required(User)

    class Meta:
        indexes = [models.Index(fields=["org", "day"], name="activeuserdaily_org_day")]


class ResourceDaily(Rollup, RollupDimensions):
    """Allocations spread over the days they span, in proportion to time."""

    user = rollup_dimension(User)  # a workload need not be anyone's
    cpu_core_seconds = models.DecimalField(max_digits=24, decimal_places=4)
    ram_gb_seconds = models.DecimalField(max_digits=24, decimal_places=4)
    storage_gb_seconds = models.DecimalField(max_digits=24, decimal_places=4)

    class Meta:
        indexes = [models.Index(fields=["org", "day"], name="resourcedaily_org_day")]


class SessionDaily(Rollup, RollupDimensions):
    """Which sessions were active on a day, by whom and on what: distinct session counts."""

    session = rollup_required(Session)

    class Meta:
        indexes = [
            models.Index(fields=["org", "day", "user"], name="sessiondaily_org_day_user"),
            models.Index(fields=["org", "day", "team"], name="sessiondaily_org_day_team"),
        ]
