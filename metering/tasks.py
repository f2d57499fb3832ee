"""Celery tasks: a thin interface over metering services (ids and ISO strings in, one call each)."""

from celery import shared_task

from metering.otlp import streams
from metering.rollups import dirty_days_rebuild


@shared_task(acks_late=True)
def rebuild_dirty_days(limit: int = 500) -> int:
    """Rebuild the rollups of days ingestion marked dirty (beat runs it every minute)."""
    return dirty_days_rebuild(limit=limit)


@shared_task
def forget_idle_otlp_streams() -> int:
    """Drop the state of cumulative OTLP streams idle for 35 days (beat runs it daily; DESIGN §12.5)."""
    return streams.forget_idle_streams()
