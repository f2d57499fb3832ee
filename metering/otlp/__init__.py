"""OTLP intake (DESIGN §12): OpenTelemetry metrics, logs and traces turned into ingest items.

`mapping` is pure: decoded Export*ServiceRequest messages in, §5 item dicts out. The
database parts (cumulative stream state, one source per Claude Code session) live beside it.
"""
