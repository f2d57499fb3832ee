"""The demo's planned rows (`_Rows`) and the `_Writer` that writes them a batch at a time, below the ORM."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from metering.bulk import insert_rows, reserve_ids
from metering.models import ActivityEvent, ActivityEventTag, ResourceUsage, Session, UsageRecord, UsageRecordTag

# Rows are written in batches this large: big enough that round trips do not
# matter, small enough that a batch's objects stay a few MB.
BATCH_SIZE = 5_000


@dataclass
class _Rows:
    """One day's planned rows, as field values by attname. Records and events
    point at their session's values, which get a primary key when written."""

    sessions: list[dict] = field(default_factory=list)
    records: list[tuple[dict, dict | None, tuple[int, ...]]] = field(default_factory=list)
    events: list[tuple[dict, dict | None, tuple[int, ...]]] = field(default_factory=list)
    resources: list[dict] = field(default_factory=list)


class _Writer:
    """Writes planned rows a batch at a time, below the ORM.

    bulk_create spends most of its time building and preparing model
    instances (over a minute for the default demo); writing value rows
    directly is several times faster. Rows get their primary keys before they
    are written, so tag links and sessions in the same batch can point at them.
    """

    def __init__(self, now: datetime):
        self.now = now
        self.records: list[tuple[dict, tuple[int, ...]]] = []
        self.events: list[tuple[dict, tuple[int, ...]]] = []
        self.resources: list[dict] = []
        self.counts = {"usage records": 0, "activity events": 0, "sessions": 0, "resource allocations": 0}

    def add(self, rows: _Rows) -> None:
        self.write(Session, [(values, ()) for values in rows.sessions])  # gives them their ids
        self.counts["sessions"] += len(rows.sessions)
        for kind, buffer in (("records", self.records), ("events", self.events)):
            for values, session, tags in getattr(rows, kind):
                if session is not None:
                    values["session_id"] = session["id"]
                buffer.append((values, tags))
        self.resources.extend(rows.resources)
        if len(self.records) + len(self.events) + len(self.resources) >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        self.counts["usage records"] += len(self.records)
        self.counts["activity events"] += len(self.events)
        self.counts["resource allocations"] += len(self.resources)
        self.write(UsageRecord, self.records, UsageRecordTag, "record_id")
        self.write(ActivityEvent, self.events, ActivityEventTag, "event_id")
        self.write(ResourceUsage, [(values, ()) for values in self.resources])
        self.records, self.events, self.resources = [], [], []

    def write(self, model, rows: list[tuple[dict, tuple[int, ...]]], through=None, through_fk: str = "") -> None:
        if not rows:
            return
        for (values, _), pk in zip(rows, reserve_ids(model, len(rows)), strict=True):
            values["id"] = pk
        self.insert(model, [values for values, _ in rows])
        links = [{through_fk: values["id"], "tag_id": tag} for values, tags in rows for tag in tags]
        if links:
            for values, pk in zip(links, reserve_ids(through, len(links)), strict=True):
                values["id"] = pk
            self.insert(through, links)

    def insert(self, model, rows: list[dict]) -> None:
        """Every concrete column of each row: its planned value, else the field's default, as the database takes it."""
        fields = model._meta.concrete_fields
        defaults = [
            self.now if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False) else f.get_default()
            for f in fields
        ]
        insert_rows(
            model,
            fields,
            ([row.get(f.attname, default) for f, default in zip(fields, defaults, strict=True)] for row in rows),
        )
