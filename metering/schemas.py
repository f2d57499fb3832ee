"""The shapes of ingested items (DESIGN §5), validated one item at a time.

Each item is checked on its own so one bad item never sinks its batch:
`parse_item` returns either a validated item or a `{field: [messages]}` dict.
The same models describe the request body in the OpenAPI schema.
"""

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.utils import timezone
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator

from metering.models import ActivityKind, ServiceType, Status

MAX_ITEMS = 1000
MAX_AGE = timedelta(days=400)
MAX_FUTURE = timedelta(minutes=5)
# The ids the OTLP intake derives start with this (DESIGN §12.6); a client's may not, or one of
# its ids could collide with a derived one and silently drop it as a duplicate.
RESERVED_ID_PREFIX = "otlp:"
RESERVED_ID_MESSAGE = "ids starting 'otlp:' are reserved for the OTLP intake"

Count = Annotated[int, Strict(), Field(ge=0, le=10**15)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
ShortName = Annotated[str, Field(min_length=1, max_length=100)]
Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")]
TOKEN_FIELDS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
Quantity = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=4, allow_inf_nan=False)]  # as the columns


class Item(BaseModel):
    # Unknown fields are refused: a misspelt `input_token` must not become a silent zero.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    user: Annotated[str, Field(min_length=1, max_length=254)]
    team: ShortName | None = None
    project: Name | None = None
    tags: Annotated[list[ShortName], Field(max_length=50)] = []

    @field_validator("*", mode="after")
    @classmethod
    def storable_text(cls, value):
        # PostgreSQL text and jsonb hold neither U+0000 nor lone surrogates; refuse them here.
        if _unstorable(value):
            raise ValueError("Must be valid UTF-8 text without NUL (U+0000) characters.")
        return value

    def problems(self) -> dict[str, list[str]]:
        """Checks across fields that pydantic's per-field rules cannot express.

        Usage items also settle their token fields here (from a provider usage
        object, or zeros for those not sent), so call it once after validation.
        """
        errors: dict[str, list[str]] = {}
        if "@" in self.user:
            try:
                validate_email(self.user)
            except DjangoValidationError:
                errors["user"] = ["Enter a valid email address, or an external id without '@'."]
        return errors


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def loads_exact(text):
    """json.loads with numbers as Decimal, not float, so a cost arrives to its last digit; NaN refused."""
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


def _unstorable(value) -> bool:
    """True for text PostgreSQL cannot store: NUL characters, or lone surrogates (not UTF-8)."""
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable(v) for v in value)
    return False


def check_time(errors: dict, field: str, value: datetime) -> None:
    now = timezone.now()
    if value > now + MAX_FUTURE:
        errors.setdefault(field, []).append("Must not be more than 5 minutes in the future.")
    elif value < now - MAX_AGE:
        errors.setdefault(field, []).append("Must not be more than 400 days old.")


class UsageItem(Item):
    request_id: Identifier
    timestamp: AwareDatetime
    model: Name
    provider: ShortName | None = None
    repository: Name | None = None
    agent: Name | None = None
    service_type: ServiceType = ServiceType.TEXT_GENERATION
    status: Status = Status.SUCCESS
    input_tokens: Count | None = None
    cached_input_tokens: Count | None = None
    cache_write_tokens: Count | None = None
    output_tokens: Count | None = None
    reasoning_tokens: Count | None = None
    usage: dict[str, Any] | None = Field(
        None, description="The provider's usage object as returned (OpenAI or Anthropic); converted on the way in."
    )
    cost: Annotated[Decimal, Field(ge=0, max_digits=22, decimal_places=10, allow_inf_nan=False)] | None = None
    duration_ms: Annotated[int, Strict(), Field(ge=0, le=2**31 - 1)] | None = None
    request_count: Annotated[int, Strict(), Field(ge=0, le=2**31 - 1)] = Field(
        1, description="The API requests this item stands for (requests are the sum of these)."
    )
    session_id: Identifier | None = None
    conversation_id: Identifier | None = None
    metadata: dict[str, Any] = {}

    def problems(self) -> dict[str, list[str]]:
        errors = super().problems()
        check_time(errors, "timestamp", self.timestamp)
        if self.usage is not None:
            given = [f for f in TOKEN_FIELDS if getattr(self, f) is not None]
            if given:
                errors["usage"] = [
                    f"Send either the token fields or a provider usage object, not both ({', '.join(given)})."
                ]
                return errors
            try:
                for field, value in tokens_from_provider_usage(self.usage, self.provider).items():
                    setattr(self, field, value)
            except ValueError as exc:
                errors["usage"] = [str(exc)]
                return errors
        tokens = {f: getattr(self, f) or 0 for f in TOKEN_FIELDS}
        for f, value in tokens.items():
            setattr(self, f, value)
        if tokens["cached_input_tokens"] + tokens["cache_write_tokens"] > tokens["input_tokens"]:
            errors["cached_input_tokens"] = [
                "Cached reads plus cache writes cannot exceed input_tokens, which includes them."
            ]
        if tokens["reasoning_tokens"] > tokens["output_tokens"]:
            errors["reasoning_tokens"] = ["Reasoning tokens are part of output_tokens and cannot exceed them."]
        return errors


class ActivityItem(Item):
    event_id: Identifier
    timestamp: AwareDatetime
    kind: ActivityKind
    repository: Name | None = None
    agent: Name | None = None
    session_id: Identifier | None = None
    lines_added: Annotated[int, Strict(), Field(ge=0, le=2**31 - 1)] = 0
    lines_removed: Annotated[int, Strict(), Field(ge=0, le=2**31 - 1)] = 0
    quantity: Annotated[int, Strict(), Field(ge=0, le=2**31 - 1)] = 1
    metadata: dict[str, Any] = {}

    def problems(self) -> dict[str, list[str]]:
        errors = super().problems()
        check_time(errors, "timestamp", self.timestamp)
        if self.kind == ActivityKind.LINES_CHANGED:  # lines only (DESIGN §12.8)
            if "quantity" not in self.model_fields_set:
                self.quantity = 0
            elif self.quantity:
                errors["quantity"] = ["A lines_changed event carries lines only: its quantity is 0."]
        return errors


class ResourceItem(Item):
    user: Annotated[str, Field(min_length=1, max_length=254)] | None = None  # workloads may have no person
    resource_id: Identifier
    start: AwareDatetime
    end: AwareDatetime
    agent: Name | None = None
    cpu_cores: Quantity = Decimal(0)
    ram_gb: Quantity = Decimal(0)
    storage_gb: Quantity = Decimal(0)

    def problems(self) -> dict[str, list[str]]:
        errors = super().problems() if self.user else {}
        check_time(errors, "start", self.start)
        check_time(errors, "end", self.end)
        if self.end <= self.start:
            errors.setdefault("end", []).append("Must be after start.")
        return errors


ITEM_SCHEMAS = {"usage": UsageItem, "activity": ActivityItem, "resources": ResourceItem}
ID_FIELDS = {"usage": "request_id", "activity": "event_id", "resources": "resource_id"}
RESERVED_ID_KINDS = ("usage", "activity")  # the kinds the OTLP intake derives


def parse_item(kind: str, raw: Any, *, allow_reserved_ids: bool = False) -> tuple[Item | None, dict[str, list[str]]]:
    """(item, {}) when valid, else (None, errors by field). Ids starting RESERVED_ID_PREFIX are
    refused for usage and activity unless `allow_reserved_ids` (the OTLP intake, which derives
    them)."""
    if not isinstance(raw, dict):
        return None, {"__all__": [f"Each item of '{kind}' must be a JSON object."]}
    try:
        item = ITEM_SCHEMAS[kind].model_validate(raw)
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for error in exc.errors(include_url=False):
            field = ".".join(str(part) for part in error["loc"]) or "__all__"
            errors.setdefault(field, []).append(error["msg"])
        return None, errors
    errors = item.problems()
    id_field = ID_FIELDS[kind]
    reserved = kind in RESERVED_ID_KINDS and getattr(item, id_field).startswith(RESERVED_ID_PREFIX)
    if reserved and not allow_reserved_ids:
        errors.setdefault(id_field, []).append(RESERVED_ID_MESSAGE)
    return (None, errors) if errors else (item, {})


def _count(usage: dict, *path: str) -> int:
    value: Any = usage
    for key in path:
        if not isinstance(value, dict):
            return 0
        value = value.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"usage.{'.'.join(path)} must be a non-negative integer.")
    return value


def tokens_from_provider_usage(usage: dict, provider: str | None) -> dict[str, int]:
    """Our token fields from a provider's usage object (mapping documented in the README).

    Our convention (OpenTelemetry GenAI): input includes cached reads and cache
    writes. OpenAI already counts that way; Anthropic reports cache reads and
    writes outside `input_tokens`, so they are added back.
    """
    if "prompt_tokens" in usage or "completion_tokens" in usage:  # OpenAI Chat Completions
        return {
            "input_tokens": _count(usage, "prompt_tokens"),
            "cached_input_tokens": _count(usage, "prompt_tokens_details", "cached_tokens"),
            "cache_write_tokens": 0,
            "output_tokens": _count(usage, "completion_tokens"),
            "reasoning_tokens": _count(usage, "completion_tokens_details", "reasoning_tokens"),
        }
    anthropic = (provider or "").lower() == "anthropic" or any(
        key in usage for key in ("cache_read_input_tokens", "cache_creation_input_tokens")
    )
    if anthropic:  # Anthropic Messages
        cache_read = _count(usage, "cache_read_input_tokens")
        cache_write = _count(usage, "cache_creation_input_tokens")
        return {
            "input_tokens": _count(usage, "input_tokens") + cache_read + cache_write,
            "cached_input_tokens": cache_read,
            "cache_write_tokens": cache_write,
            "output_tokens": _count(usage, "output_tokens"),
            "reasoning_tokens": 0,
        }
    if "input_tokens" in usage or "output_tokens" in usage:  # OpenAI Responses
        return {
            "input_tokens": _count(usage, "input_tokens"),
            "cached_input_tokens": _count(usage, "input_tokens_details", "cached_tokens"),
            "cache_write_tokens": 0,
            "output_tokens": _count(usage, "output_tokens"),
            "reasoning_tokens": _count(usage, "output_tokens_details", "reasoning_tokens"),
        }
    raise ValueError(
        "Unrecognised usage object: expected OpenAI (prompt_tokens / input_tokens) or Anthropic "
        "(input_tokens with cache_read_input_tokens / cache_creation_input_tokens) fields."
    )


class IngestBody(BaseModel):
    """The request body, for the OpenAPI schema; the view validates items one by one."""

    usage: list[UsageItem] = []
    activity: list[ActivityItem] = []
    resources: list[ResourceItem] = []


class Rejection(BaseModel):
    kind: Literal["usage", "activity", "resources"] = Field(
        description="The list the item came from: body[kind][index] is the rejected item."
    )
    index: int
    id: str | None
    errors: dict[str, list[str]]


class IngestResult(BaseModel):
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = []
