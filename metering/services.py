"""Writes of usage data. Ingestion is shared by the HTTP API and `import_usage`.

A batch is validated item by item, then written in one transaction with a
fixed number of queries whatever its size: every dimension (users, teams,
projects, ...) is found or created in bulk, each table gets one bulk insert.
Duplicates are found by the database's unique keys, so they hold across
processes and restarts.
"""

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import TypeVar

from django.contrib.auth.hashers import make_password
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import ApiKey, Membership, Organization, Role, Tag, Team, User
from metering import live
from metering.bulk import insert_rows, reserve_ids, select_in
from metering.models import (
    ActivityEvent,
    ActivityEventTag,
    Agent,
    CostSource,
    IntakeSource,
    LLMModel,
    OtlpKeyStats,
    Project,
    Repository,
    ResourceUsage,
    Session,
    UsageRecord,
    UsageRecordTag,
)
from metering.pricing import PriceBook, Tokens, cost_of, quantize_money
from metering.rollups import mark_days_dirty
from metering.schemas import ID_FIELDS, IngestResult, Item, Rejection, parse_item

logger = logging.getLogger(__name__)

# A concurrent writer can insert one of our ids between our duplicate check
# and our insert; the unique key then refuses the batch and we try again,
# seeing its row this time.
CONFLICT_RETRIES = 3

T = TypeVar("T")


@dataclass
class Batch:
    """The valid, not-yet-seen items of one request, by kind, with their original indices."""

    usage: list[tuple[int, Item]] = field(default_factory=list)
    activity: list[tuple[int, Item]] = field(default_factory=list)
    resources: list[tuple[int, Item]] = field(default_factory=list)

    def items(self) -> Iterable[Item]:
        for kind in ("usage", "activity", "resources"):
            for _, item in getattr(self, kind):
                yield item


def ingest_batch(
    *,
    org: Organization,
    api_key: ApiKey | None = None,
    usage: Sequence = (),
    activity: Sequence = (),
    resources: Sequence = (),
    source: str = IntakeSource.API,
    allow_reserved_ids: bool = False,
    in_transaction: Callable[[Batch], Batch] | None = None,
    retry: bool = True,
) -> IngestResult:
    """Validate and store one batch of raw items (DESIGN §5).

    `source` is stored on every usage record and activity event of the batch. Ids starting
    "otlp:" are refused unless `allow_reserved_ids`. `in_transaction`, when given, is called
    inside the write transaction (again on each retry) with the valid items, before duplicates
    are dropped, and returns the batch to write: the OTLP intake locks its sessions' rows there,
    drops items and deletes the records they supersede, all in the same transaction. It is not
    called when no item is valid. `retry=False` is for a caller whose own transaction holds
    this one and is retried whole by retry_on_conflict: no savepoint then, a conflict is its.
    """
    if source not in IntakeSource.values:
        raise ValueError(f"Unknown source {source!r}; expected one of {IntakeSource.values}.")
    result = IngestResult()
    batch = Batch()
    for kind, raws in (("usage", usage), ("activity", activity), ("resources", resources)):
        for index, raw in enumerate(raws):
            item, errors = parse_item(kind, raw, allow_reserved_ids=allow_reserved_ids)
            if item is None:
                item_id = raw.get(ID_FIELDS[kind]) if isinstance(raw, dict) else None
                result.rejected.append(
                    Rejection(
                        kind=kind,
                        index=index,
                        id=item_id if isinstance(item_id, str) else None,
                        errors=errors,
                    )
                )
            else:
                getattr(batch, kind).append((index, item))
    if not any(batch.items()):
        return result

    def write() -> tuple[int, int]:
        todo = in_transaction(batch) if in_transaction is not None else batch
        return _write(org, api_key, todo, source)

    if retry:
        accepted, duplicates = retry_on_conflict(write)
    else:
        with transaction.atomic(savepoint=False):
            accepted, duplicates = write()
    result.accepted, result.duplicates = accepted, duplicates
    return result


def retry_on_conflict(work: Callable[[], T]) -> T:
    """`work()` in a transaction, run again from the start (CONFLICT_RETRIES runs at most)
    when a unique key refuses a row a concurrent writer inserted first."""
    for attempt in range(CONFLICT_RETRIES):
        try:
            with transaction.atomic():
                return work()
        except IntegrityError:
            if attempt == CONFLICT_RETRIES - 1:
                raise
            logger.info("ingest: a concurrent writer took one of our ids; retrying the batch")
    raise AssertionError("unreachable")


def _write(org: Organization, api_key: ApiKey | None, batch: Batch, source: str) -> tuple[int, int]:
    fresh, duplicates = _drop_duplicates(org, batch)
    if not any(fresh.items()):
        return 0, duplicates
    dims = Dimensions(org, fresh)
    usage = _build_usage(api_key, fresh.usage, dims, source)
    activity = _build_activity(api_key, fresh.activity, dims, source)
    resources = _build_resources(api_key, fresh.resources, dims)
    record_tags = [
        (record, [dims.tags[name] for name in set(item.tags)])
        for record, (_, item) in zip(usage, fresh.usage, strict=True)
    ]
    event_tags = [
        (event, [dims.tags[name] for name in set(item.tags)])
        for event, (_, item) in zip(activity, fresh.activity, strict=True)
    ]
    # Only rows that tag links point at need their keys before they are written.
    bulk_insert(UsageRecord, usage, keys=any(tags for _, tags in record_tags))
    bulk_insert(ActivityEvent, activity, keys=any(tags for _, tags in event_tags))
    bulk_insert(ResourceUsage, resources)
    bulk_insert(UsageRecordTag, [UsageRecordTag(record=r, tag_id=tag) for r, tags in record_tags for tag in tags])
    bulk_insert(ActivityEventTag, [ActivityEventTag(event=e, tag_id=tag) for e, tags in event_tags for tag in tags])
    mark_days_dirty(org, _days_touched(org, fresh))
    # Announced once the rows are durable; a retried batch (see ingest_batch) registers anew.
    transaction.on_commit(partial(live.announce_usage, org, record_tags))
    return len(usage) + len(activity) + len(resources), duplicates


def bulk_insert(model, objs: list, *, keys: bool = False) -> None:
    """Insert `objs` as bulk_create does, on PostgreSQL by COPY. With `keys`, their primary keys
    are drawn from the table's sequence first and set on them, for other rows to point at;
    without, the database numbers the rows and the objects keep no key.

    COPY raised HTTP ingest from 17 % to 30 % of a bare COPY's rate (bench/ingest.py).
    SQLite keeps bulk_create (which sets keys either way): reserving ids there needs the
    write lock, which a batch whose users, teams, ... all exist does not hold yet.
    """
    if not objs:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objs)
        return
    fields = model._meta.concrete_fields
    if keys:
        for obj, pk in zip(objs, reserve_ids(model, len(objs)), strict=True):
            obj.pk = pk
    else:
        fields = [f for f in fields if not f.primary_key]
    # pre_save fills auto_now_add fields (received_at) and returns the attribute otherwise.
    insert_rows(model, fields, ([f.pre_save(obj, add=True) for f in fields] for obj in objs))


def _drop_duplicates(org: Organization, batch: Batch) -> tuple[Batch, int]:
    """The items not stored before and not repeated earlier in this batch (one query)."""
    kinds = (("usage", UsageRecord), ("activity", ActivityEvent), ("resources", ResourceUsage))
    parts = [
        (table._meta.db_table, ID_FIELDS[kind], {getattr(item, ID_FIELDS[kind]) for _, item in getattr(batch, kind)})
        for kind, table in kinds
    ]
    seen: list[set[str]] = [set() for _ in kinds]
    for i, item_id in select_in([(table, key, ids, {"org_id": org.pk}, ()) for table, key, ids in parts]):
        seen[i].add(item_id)
    fresh, duplicates = Batch(), 0
    for (kind, _), (_, id_field, _), stored in zip(kinds, parts, seen, strict=True):
        for index, item in getattr(batch, kind):
            item_id = getattr(item, id_field)
            if item_id in stored:
                duplicates += 1
            else:
                stored.add(item_id)
                getattr(fresh, kind).append((index, item))
    return fresh, duplicates


class Dimensions:
    """Ids of every user, team, project, ... the batch names, found or created in bulk."""

    def __init__(self, org: Organization, batch: Batch):
        self.org = org
        items = list(batch.items())

        def names(attr):
            return {getattr(item, attr) for item in items if getattr(item, attr, None)}

        users = {item.user for item in items if item.user}
        repo_project = {item.repository: item.project for item in items if getattr(item, "repository", None)}
        providers = {item.model: item.provider for _, item in batch.usage}
        found = self._found(
            {
                User: {v.lower() for v in users if "@" in v},
                Team: names("team"),
                Project: names("project"),
                Repository: set(repo_project),
                Agent: names("agent"),
                Tag: {tag for item in items for tag in item.tags},
                LLMModel: set(providers),
            }
        )
        self.users, self.user_teams = self._users(users, found[User])
        self.teams = self._named(Team, found[Team])
        self.projects = self._named(Project, found[Project])
        self.repositories = self._named(
            Repository,
            found[Repository],
            lambda name: Repository(org=org, name=name, project_id=self.projects.get(repo_project[name])),
        )
        self.agents = self._named(Agent, found[Agent])
        self.tags = self._named(Tag, found[Tag])
        self.models = self._named(
            LLMModel, found[LLMModel], lambda name: LLMModel(name=name, provider=providers[name] or "")
        )
        self.sessions = self._sessions(items)

    def _rows(self, table, names: set[str]) -> dict[str, int]:
        """{name: id} of the rows of `table` the batch names: users by email in any case,
        models of every org, the rest the org's own by name."""
        return {name: pk for _, name, pk in select_in([self._part(table, names)])}

    def _part(self, table, names: set[str]) -> tuple:
        if table is User:
            return (User._meta.db_table, "LOWER(email)", names, {}, ["id"])
        return (table._meta.db_table, "name", names, {} if table is LLMModel else {"org_id": self.org.pk}, ["id"])

    def _found(self, wanted: dict[type, set[str]]) -> dict[type, tuple[set[str], dict[str, int]]]:
        """{table: (the names wanted, {name: id} of those that exist)}, all found in one query."""
        tables = list(wanted)
        found = {table: (names, {}) for table, names in wanted.items()}
        for i, name, pk in select_in([self._part(table, wanted[table]) for table in tables]):
            found[tables[i]][1][name] = pk
        return found

    def _named(self, table, wanted_found: tuple[set[str], dict[str, int]], build=None) -> dict[str, int]:
        """{name: id} of every row wanted, those missing created."""
        wanted, found = wanted_found
        missing = wanted - found.keys()
        if missing:
            build = build or (lambda name: table(org=self.org, name=name))
            table.objects.bulk_create([build(name) for name in sorted(missing)], ignore_conflicts=True)
            found.update(self._rows(table, missing))
        return found

    def _users(self, values: set[str], by_email: tuple[set[str], dict[str, int]]) -> tuple[dict, dict[int, int]]:
        """Users by the value items name them with (an email, or an external id without '@'),
        given the emails' (wanted, found); and {user id: their default team}.

        Unknown users become members of the org with no usable password: they
        appear in the data and can log in only once an admin invites them.
        """
        emails, by_email = by_email
        external_ids = {v for v in values if "@" not in v}
        missing = emails - by_email.keys()
        if missing:
            User.objects.bulk_create(
                [User(email=email, password=make_password(None)) for email in sorted(missing)], ignore_conflicts=True
            )
            by_email.update(self._rows(User, missing))
        memberships = Membership.objects.filter(org=self.org)
        # A record's team defaults to its user's team: the first of their teams.
        team_of: dict[int, int] = {}

        def members(lookup: str, wanted) -> dict:
            """{value of `lookup`: user id} of the org's memberships that have one of `wanted`."""
            found = {}
            rows = memberships.filter(**{f"{lookup}__in": wanted}).order_by("teams")
            for value, user_id, team_id in rows.values_list(lookup, "user_id", "teams"):
                found[value] = user_id
                if team_id is not None:
                    team_of.setdefault(user_id, team_id)
            return found

        joined = members("user_id", by_email.values())
        Membership.objects.bulk_create(
            [Membership(org=self.org, user_id=uid, role=Role.MEMBER) for uid in set(by_email.values()) - joined.keys()],
            ignore_conflicts=True,
        )
        by_external = members("external_id", external_ids)
        missing = sorted(external_ids - by_external.keys())
        if missing:
            new_users = User.objects.bulk_create(
                [User(email=None, name=ext, password=make_password(None)) for ext in missing]
            )
            Membership.objects.bulk_create(
                [Membership(org=self.org, user=user, role=Role.MEMBER, external_id=user.name) for user in new_users],
                ignore_conflicts=True,
            )
            by_external.update(memberships.filter(external_id__in=missing).values_list("external_id", "user_id"))
        ids = {value: by_email[value.lower()] if "@" in value else by_external[value] for value in values}
        return ids, team_of

    def _sessions(self, items: list[Item]) -> dict[str, int]:
        """Upsert the batch's sessions, widening first_seen/last_seen to cover its items."""
        spans: dict[str, list] = {}
        for item in items:
            sid = getattr(item, "session_id", None)
            if not sid:
                continue
            span = spans.get(sid)
            if span is None:
                spans[sid] = [
                    item.timestamp,
                    item.timestamp,
                    self.users[item.user],
                    self.agents.get(item.agent),
                    self.projects.get(item.project),
                ]
            else:
                span[0], span[1] = min(span[0], item.timestamp), max(span[1], item.timestamp)
        if not spans:
            return {}
        ops = connection.ops
        least, greatest = ("LEAST", "GREATEST") if connection.vendor == "postgresql" else ("MIN", "MAX")
        table = Session._meta.db_table
        rows, params = [], []
        for sid, (first, last, user_id, agent_id, project_id) in spans.items():
            rows.append("(%s, %s, %s, %s, %s, %s, %s)")
            params += [
                self.org.pk,
                sid,
                user_id,
                agent_id,
                project_id,
                ops.adapt_datetimefield_value(first),
                ops.adapt_datetimefield_value(last),
            ]
        # Django's upsert can only overwrite; widening needs LEAST/GREATEST against the stored row.
        sql = (
            f"INSERT INTO {table} (org_id, session_id, user_id, agent_id, project_id, first_seen, last_seen) "
            f"VALUES {', '.join(rows)} ON CONFLICT (org_id, session_id) DO UPDATE SET "
            f"first_seen = {least}({table}.first_seen, excluded.first_seen), "
            f"last_seen = {greatest}({table}.last_seen, excluded.last_seen), "
            f"agent_id = COALESCE({table}.agent_id, excluded.agent_id), "
            f"project_id = COALESCE({table}.project_id, excluded.project_id) "
            f"RETURNING session_id, id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return dict(cursor.fetchall())

    def attribution(self, item: Item, api_key: ApiKey | None) -> dict:
        user_id = self.users[item.user] if item.user else (api_key.owner_id if api_key else None)
        team_id = self.teams.get(item.team) if item.team else None
        project_id = self.projects.get(item.project) if item.project else None
        if api_key is not None:
            team_id = team_id or api_key.default_team_id
            project_id = project_id or api_key.default_project_id
        return {
            "org": self.org,
            "user_id": user_id,
            "team_id": team_id or self.user_teams.get(user_id),
            "project_id": project_id,
            "agent_id": self.agents.get(getattr(item, "agent", None)),
        }


def _build_usage(api_key, items, dims: Dimensions, source: str) -> list[UsageRecord]:
    unpriced = {dims.models[item.model] for _, item in items if item.cost is None}
    book = PriceBook.load(unpriced) if unpriced else None
    records = []
    for _, item in items:
        model_id = dims.models[item.model]
        if item.cost is not None:
            cost, cost_source, price = quantize_money(item.cost), CostSource.CLIENT, None
        else:
            price = book.price_at(model_id, item.timestamp)
            tokens = Tokens(item.input_tokens, item.cached_input_tokens, item.cache_write_tokens, item.output_tokens)
            cost, cost_source = (cost_of(tokens, price), CostSource.PRICED) if price else (0, CostSource.UNPRICED)
        records.append(
            UsageRecord(
                **dims.attribution(item, api_key),
                request_id=item.request_id,
                timestamp=item.timestamp,
                model_id=model_id,
                provider=item.provider or "",
                service_type=item.service_type,
                status=item.status,
                api_key=api_key,
                repository_id=dims.repositories.get(item.repository),
                session_id=dims.sessions.get(item.session_id),
                input_tokens=item.input_tokens,
                cached_input_tokens=item.cached_input_tokens,
                cache_write_tokens=item.cache_write_tokens,
                output_tokens=item.output_tokens,
                reasoning_tokens=item.reasoning_tokens,
                cost=cost,
                cost_source=cost_source,
                price=price,
                duration_ms=item.duration_ms,
                conversation_id=item.conversation_id or "",
                request_count=item.request_count,
                source=source,
                metadata=item.metadata,
            )
        )
    return records


def _rows(model, api_key: ApiKey | None, items, dims: Dimensions, fields) -> list:
    """One `model` per item: attributed as dims.attribution says, with `fields(item)` besides."""
    return [model(**dims.attribution(item, api_key), **fields(item)) for _, item in items]


def _build_activity(api_key, items, dims: Dimensions, source: str) -> list[ActivityEvent]:
    return _rows(
        ActivityEvent,
        api_key,
        items,
        dims,
        lambda item: {
            "event_id": item.event_id,
            "timestamp": item.timestamp,
            "kind": item.kind,
            "repository_id": dims.repositories.get(item.repository),
            "session_id": dims.sessions.get(item.session_id),
            "lines_added": item.lines_added,
            "lines_removed": item.lines_removed,
            "quantity": item.quantity,
            "source": source,
            "metadata": item.metadata,
        },
    )


def _build_resources(api_key, items, dims: Dimensions) -> list[ResourceUsage]:
    return _rows(
        ResourceUsage,
        api_key,
        items,
        dims,
        lambda item: {
            "resource_id": item.resource_id,
            "start": item.start,
            "end": item.end,
            "cpu_cores": item.cpu_cores,
            "ram_gb": item.ram_gb,
            "storage_gb": item.storage_gb,
        },
    )


def record_otlp_export(
    api_key: ApiKey, signal: str, *, stored: int, duplicates: int, ignored: int, rejected: int, message: str = ""
) -> None:
    """Count one OTLP export request of `api_key` for `signal` in its OtlpKeyStats (the admin
    shows them with the key). `message`, when given, becomes the last rejection.

    The counters grow in the database (F() increments), never from values read first, so
    concurrent exports of one key all count. The first export of a signal creates its row,
    ignoring a concurrent creator's; the increment then finds that row either way.
    """
    changes = {
        "last_export_at": timezone.now(),
        "requests": F("requests") + 1,
        "stored": F("stored") + stored,
        "duplicates": F("duplicates") + duplicates,
        "ignored": F("ignored") + ignored,
        "rejected": F("rejected") + rejected,
        **({"last_rejection": message} if message else {}),
    }
    stats = OtlpKeyStats.objects.filter(api_key=api_key, signal=signal)
    if not stats.update(**changes):
        OtlpKeyStats.objects.bulk_create([OtlpKeyStats(api_key=api_key, signal=signal)], ignore_conflicts=True)
        stats.update(**changes)


def local_day(org: Organization, moment: datetime) -> date:
    return moment.astimezone(org.tzinfo).date()


def _days_touched(org: Organization, batch: Batch) -> set[date]:
    days = {local_day(org, item.timestamp) for _, item in batch.usage + batch.activity}
    for _, item in batch.resources:
        day, last = local_day(org, item.start), local_day(org, item.end)
        while day <= last:
            days.add(day)
            day += timedelta(days=1)
    return days
