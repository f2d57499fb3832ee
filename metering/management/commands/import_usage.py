"""manage.py import_usage FILE [--org ORG]: load usage records from CSV or JSON Lines.

Lines go through `ingest_batch`, the API's own validation and bulk write, a
batch at a time, so a file of any size takes a bounded amount of memory and
a number of queries proportional to its batches, not its lines. Each batch
commits on its own: an interrupted import is finished by running it again,
as the lines already stored come back as duplicates.
"""

import contextlib
import csv
import json
import re
import sys
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.models import Organization
from metering.management.orgs import command_org
from metering.models import IntakeSource
from metering.schemas import MAX_ITEMS, TOKEN_FIELDS, UsageItem, loads_exact
from metering.services import ingest_batch

MAX_LISTED = 50
INTEGER_FIELDS = (*TOKEN_FIELDS, "duration_ms", "request_count")
JSON_FIELDS = ("metadata", "usage")
REQUIRED_COLUMNS = ("request_id", "timestamp", "user", "model")
INTEGER = re.compile(r"^[+-]?\d+$")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass
class Tally:
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    listed: list[str] = field(default_factory=list)

    def reject(self, line: int, item_id: str | None, errors: dict[str, list[str]]) -> None:
        self.rejected += 1
        if len(self.listed) < MAX_LISTED:
            reasons = "; ".join(
                " ".join(messages) if name == "__all__" else f"{name}: {' '.join(messages)}"
                for name, messages in errors.items()
            )
            self.listed.append(f"line {line}{f' ({item_id})' if item_id else ''}: {reasons}")


class StreamForTqdm:
    """tqdm redraws its bar with \\r; a command's OutputWrapper would add a newline to every write."""

    def __init__(self, out):
        self.out = out

    def write(self, text):
        self.out.write(text, ending="")

    def flush(self):
        self.out.flush()


def jsonl_items(lines):
    """(line number, item or None, reason it is unreadable or None) per non-blank line."""
    for number, raw in lines:
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            yield number, None, "not UTF-8 text"
            continue
        if not text.strip():
            continue
        try:
            yield number, loads_exact(text), None
        except json.JSONDecodeError as exc:
            yield number, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
        except ValueError as exc:
            yield number, None, f"not valid JSON ({exc})"


def csv_items(lines):
    """(line number where the row starts, item, None) per non-blank row, the header naming the fields."""

    def text_lines():
        for number, raw in lines:
            try:
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise CommandError(f"Line {number} is not UTF-8 text; save the CSV as UTF-8.") from None

    reader = csv.reader(text_lines())
    try:
        header = [name.strip() for name in next(reader, [])]
        if not header:
            return
        unknown = [name for name in header if name not in UsageItem.model_fields]
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if unknown or missing or len(set(header)) != len(header):
            raise CommandError(
                f"The CSV header must name usage fields, each once, including {', '.join(REQUIRED_COLUMNS)}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + "."
            )
        end_of_previous = reader.line_num
        for row in reader:
            number, end_of_previous = end_of_previous + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                yield number, None, f"{len(row)} cells but the header has {len(header)} columns"
            else:
                yield number, item_from_cells(dict(zip(header, row, strict=False))), None
    except csv.Error as exc:
        raise CommandError(f"Line {reader.line_num} is not readable CSV: {exc}") from None


def item_from_cells(cells: dict[str, str]) -> dict:
    """A usage item from CSV cells. What does not convert is passed on as it is, for the validator to name."""
    item = {}
    for name, cell in cells.items():
        value = cell.strip()
        if not value:
            continue
        if name in INTEGER_FIELDS and INTEGER.match(value):
            item[name] = int(value)
        elif name == "cost":
            with contextlib.suppress(InvalidOperation):
                value = Decimal(value)
            item[name] = value
        elif name == "tags":
            item[name] = [tag.strip() for tag in re.split(r"[;|]", value) if tag.strip()]
        elif name in JSON_FIELDS:
            with contextlib.suppress(ValueError):
                value = loads_exact(value)
            item[name] = value
        else:
            item[name] = value
    return item


class Command(BaseCommand):
    help = (
        "Import usage records from a CSV file (a header row of usage field names; tags separated by ; or |, "
        "metadata as JSON) or a JSON Lines file (.jsonl/.ndjson, or - for standard input), with the "
        "ingestion API's validation. Lines already imported are reported as duplicates, so re-running is safe."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="a .csv, .jsonl or .ndjson file, or - to read JSON Lines from standard input")
        parser.add_argument("--org", help="org slug (needed when there is more than one org)")

    def handle(self, *args, file, org, verbosity, **options):
        org_row = command_org(org)
        kind = "jsonl" if file == "-" else FORMATS.get(Path(file).suffix.lower())
        if kind is None:
            raise CommandError(f"Cannot tell the format of {file!r}: name it .csv, .jsonl or .ndjson.")
        if file == "-":
            stream, size = contextlib.nullcontext(sys.stdin.buffer), None
        else:
            try:
                stream, size = open(file, "rb"), Path(file).stat().st_size
            except OSError as exc:
                raise CommandError(f"Cannot read {file}: {exc.strerror}.") from None
        tally = Tally()
        with (
            stream as lines,
            tqdm(
                total=size,
                unit="B",
                unit_scale=True,
                desc="import_usage",
                file=StreamForTqdm(self.stderr),
                disable=verbosity == 0,
                leave=False,
            ) as bar,
        ):

            def numbered():
                for number, raw in enumerate(lines, 1):
                    bar.update(len(raw))
                    yield number, raw

            pending = []
            for entry in (csv_items if kind == "csv" else jsonl_items)(numbered()):
                tally.read += 1
                pending.append(entry)
                if len(pending) == MAX_ITEMS:
                    self._ingest(org_row, pending, tally)
                    pending = []
            self._ingest(org_row, pending, tally)
        self._report(file, org_row, tally)

    def _ingest(self, org: Organization, pending: list, tally: Tally) -> None:
        """Send one batch's readable lines to ingestion and tally every line, in file order."""
        readable = [(number, item) for number, item, reason in pending if reason is None]
        result = ingest_batch(org=org, usage=[item for _, item in readable], source=IntakeSource.IMPORT)
        refused = {readable[r.index][0]: r for r in result.rejected}
        for number, _, reason in pending:
            if reason is not None:
                tally.reject(number, None, {"__all__": [reason]})
            elif number in refused:
                tally.reject(number, refused[number].id, refused[number].errors)
        tally.accepted += result.accepted
        tally.duplicates += result.duplicates

    def _report(self, file: str, org: Organization, tally: Tally) -> None:
        def n(count, word):
            return f"{count:,} {word}{'' if count == 1 else 's'}"

        style = self.style.WARNING if tally.rejected else self.style.SUCCESS
        self.stdout.write(
            style(
                f"Imported {'standard input' if file == '-' else file} into {org.slug}: {n(tally.read, 'line')} read, "
                f"{tally.accepted:,} accepted, {n(tally.duplicates, 'duplicate')}, {tally.rejected:,} rejected."
            )
        )
        if tally.rejected:
            self.stdout.write("Rejected lines:")
            for line in tally.listed:
                self.stdout.write(f"  {line}")
            if tally.rejected > len(tally.listed):
                self.stdout.write(f"  … and {tally.rejected - len(tally.listed):,} more.")
