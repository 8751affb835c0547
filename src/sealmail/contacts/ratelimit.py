"""Rate limits counted in the database, so every process and host shares them."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from sealmail.contacts.models import RateLimitHit


def count(bucket: str, window: timedelta) -> int:
    """Return how many hits ``bucket`` had within the last ``window``."""
    since = timezone.now() - window
    return RateLimitHit.objects.filter(bucket=bucket, time__gt=since).count()


def exceeded(bucket: str, limit: int, window: timedelta) -> bool:
    """Return whether ``bucket`` already used up ``limit`` hits within ``window``."""
    return count(bucket, window) >= limit


def hit(bucket: str, window: timedelta) -> None:
    """Count one hit for ``bucket`` and drop its hits older than ``window``."""
    now = timezone.now()
    RateLimitHit.objects.filter(bucket=bucket, time__lte=now - window).delete()
    RateLimitHit.objects.create(bucket=bucket, time=now)


def clear(bucket: str) -> None:
    """Forget every hit of ``bucket``, for example after a successful login."""
    RateLimitHit.objects.filter(bucket=bucket).delete()


def purge(older_than: timedelta) -> int:
    """Delete hits older than ``older_than`` in every bucket and return how many."""
    deleted, _ = RateLimitHit.objects.filter(
        time__lte=timezone.now() - older_than
    ).delete()
    return deleted
