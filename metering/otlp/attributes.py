"""OTLP attributes as Python values, and the who / team / project / tags of DESIGN §12.4."""

import json
import math
from decimal import Decimal, InvalidOperation

# Content behind Claude Code's OTEL_LOG_* switches and what the GenAI conventions flag as
# sensitive: never copied into tags or metadata, whatever else happens (§12.4).
NEVER_STORED = frozenset(
    {
        "prompt",
        "response",
        "body",
        "tool_input",
        "tool_parameters",
        "user_prompt",
        "user_system_prompt",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
    }
)

USER_KEYS = ("user.email", "enduser.id")
TEAM_KEYS = ("team.name", "team.id", "team")
PROJECT_KEYS = ("project.name", "project")
REPOSITORY_KEYS = ("repository", "vcs.repository.name")
SESSION_KEY = "session.id"

# Resource attributes read as dimensions (or standard Claude Code attributes), hence not tags.
_NOT_TAGS = frozenset({"enduser.id", "session.id", "organization.id", "repository", "vcs.repository.name"})
_NOT_TAG_PREFIXES = ("user.", "team", "project", "terminal.type", "app.")
_INFRA_PREFIXES = ("service.", "telemetry.", "os.", "host.", "process.", "container.", "k8s.", "cloud.", "wsl.")

MAX_TAGS = 20
MAX_TAG_LENGTH = 100  # schemas.ShortName: a longer tag would sink its whole item, so it goes to metadata
MAX_METADATA_KEYS = 64
MAX_METADATA_VALUE = 1024


def value_of(any_value):
    """An AnyValue as a plain Python value: str, bool, int, float, bytes, list, dict, or None when unset."""
    which = any_value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [value_of(v) for v in any_value.array_value.values]
    if which == "kvlist_value":
        return attributes(any_value.kvlist_value.values)
    return getattr(any_value, which)


def attributes(key_values) -> dict:
    """Repeated KeyValue as a dict (keys are unique in valid OTLP; a repeated key keeps its last value)."""
    return {kv.key: value_of(kv.value) for kv in key_values}


def typed(any_value):
    """An AnyValue as JSON that keeps its type, so `5` and `"5"` hash apart whatever the encoding."""
    which = any_value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return {"array": [typed(v) for v in any_value.array_value.values]}
    if which == "kvlist_value":
        return {"kvlist": typed_attributes(any_value.kvlist_value.values)}
    if which == "bytes_value":
        return {"bytes": any_value.bytes_value.hex()}
    if which == "double_value":
        value = any_value.double_value
        return {"double": value if math.isfinite(value) else repr(value)}
    return {which.removesuffix("_value"): getattr(any_value, which)}


def typed_attributes(key_values) -> list:
    """Attributes as [key, typed value] pairs sorted by key: the canonical form hashed by ids.h."""
    return sorted([kv.key, typed(kv.value)] for kv in {kv.key: kv for kv in key_values}.values())


def text(value) -> str | None:
    """A value as text for a name, tag or id; None for no value or an empty string."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (list, dict)):
        return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def number(value) -> int | float | Decimal | None:
    """A numeric attribute: intValue and doubleValue as sent, a numeric stringValue as Decimal.

    Third-party captures of Claude Code events show numbers as strings (§12.3, unconfirmed).
    Booleans, other strings, NaN and infinities are not numbers.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            return None
        return parsed if parsed.is_finite() else None
    return None


def whole(value) -> int | None:
    """A number that is a whole number as an int (1.0 and "3" count), else None."""
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return None


def decimal(value) -> Decimal:
    """A number as Decimal, a float by its shortest text (0.1 is 0.1, not 0.1000000000000000055…)."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def jsonable(value):
    """A decoded value as JSON-storable data: bytes as hex, non-finite floats as text."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


class Lookup:
    """Attribute lookup of §12.3: keys in the order given; for each, the item's own attribute, then the resource's.

    Remembers which keys were read, so metadata can leave them out.
    """

    def __init__(self, item: dict, resource: dict):
        self.item, self.resource = item, resource
        self.read: set[str] = set()

    def raw(self, *keys: str):
        for key in keys:
            for source in (self.item, self.resource):
                value = source.get(key)
                if value is not None and value != "":
                    self.read.add(key)
                    return value
        return None

    def text(self, *keys: str) -> str | None:
        return text(self.raw(*keys))

    def number(self, *keys: str):
        return number(self.raw(*keys))


def user_of(lookup: Lookup, owner: str | None) -> str | None:
    """§12.4: user.email, enduser.id, the key's owner, anthropic:<user.account_uuid>, install:<user.id>."""
    found = lookup.text(*USER_KEYS) or owner
    if found:
        return found.lower() if "@" in found else found
    if account := lookup.text("user.account_uuid"):
        return f"anthropic:{account}"
    if install := lookup.text("user.id"):
        return f"install:{install}"
    return None


def dimensions(lookup: Lookup) -> dict:
    """team, project and repository when an attribute names them (the ingest layer applies key defaults)."""
    found = {
        "team": lookup.text(*TEAM_KEYS),
        "project": lookup.text(*PROJECT_KEYS),
        "repository": lookup.text(*REPOSITORY_KEYS),
    }
    return {field: value for field, value in found.items() if value}


def _is_tag_key(key: str) -> bool:
    return not (
        key in _NOT_TAGS or key in NEVER_STORED or key.startswith(_NOT_TAG_PREFIXES) or key.startswith(_INFRA_PREFIXES)
    )


def resource_tags(resource: dict) -> tuple[list[str], dict]:
    """The resource's own labels as `key:value` tags (at most 20, by key), and the rest as metadata."""
    tags, overflow = [], {}
    for key in sorted(resource):
        if not _is_tag_key(key):
            continue
        value = text(resource[key])
        if value is None:
            continue
        tag = f"{key}:{value}"
        if len(tags) < MAX_TAGS and len(tag) <= MAX_TAG_LENGTH:
            tags.append(tag)
        else:
            overflow[key] = resource[key]
    return tags, overflow


def metadata(item: dict, resource: dict, read: set[str], extra: dict | None = None) -> dict:
    """The item's attributes not read into fields, nor repeated from the resource, nor sensitive.

    At most 64 keys (by key order), text values cut at 1,024 characters.
    """
    chosen = dict(extra or {})
    for key, value in item.items():
        if key in read or key in NEVER_STORED or value is None:
            continue
        if key in resource and resource[key] == value:
            continue  # Claude Code copies OTEL_RESOURCE_ATTRIBUTES onto every point: a tag already
        chosen[key] = value
    out = {}
    for key in sorted(chosen)[:MAX_METADATA_KEYS]:
        value = jsonable(chosen[key])
        if isinstance(value, str):
            value = value[:MAX_METADATA_VALUE]
        elif isinstance(value, (list, dict)):
            dumped = json.dumps(value, ensure_ascii=False)
            if len(dumped) > MAX_METADATA_VALUE:
                value = dumped[:MAX_METADATA_VALUE]
        out[key] = value
    return out
