"""Rate limits counted in the database, so every process and host shares them."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from sealmail.contacts.models import RateLimitHit

# The length of the bucket column. A longer bucket name is stored shortened.
BUCKET_MAX_LENGTH = RateLimitHit._meta.get_field("bucket").max_length
_DIGEST_LENGTH = 64


def user_key(name: str) -> str:
    """Return the rate-limit key of a user name or email address.

    Every spelling that Django resolves to one account gets the same key.
    Django's login form strips the user name and normalizes it with NFKC
    (``AbstractBaseUser.normalize_username``) before it authenticates, so
    fullwidth and other compatibility forms log in as the plain name. The
    password reset form matches email addresses case-insensitively after
    NFKC with ``casefold()``, and PostgreSQL's comparison also equates the
    Greek final and medial sigma. The key is the NFKC form case-folded,
    which maps both sigmas to one, so all of these spellings share a count.
    """
    return get_user_model().normalize_username(name.strip()).casefold()


def _stored(bucket: str) -> str:
    """Return ``bucket`` as stored: unchanged when it fits the column, else shortened.

    A shortened name keeps its start for the reader and ends in the SHA-256
    of the whole name, so two long names do not share a bucket.
    """
    if len(bucket) <= BUCKET_MAX_LENGTH:
        return bucket
    digest = hashlib.sha256(bucket.encode()).hexdigest()
    return bucket[: BUCKET_MAX_LENGTH - _DIGEST_LENGTH - 1] + "#" + digest


def count(bucket: str, window: timedelta) -> int:
    """Return how many hits ``bucket`` had within the last ``window``."""
    since = timezone.now() - window
    return RateLimitHit.objects.filter(bucket=_stored(bucket), time__gt=since).count()


def exceeded(bucket: str, limit: int, window: timedelta) -> bool:
    """Return whether ``bucket`` already used up ``limit`` hits within ``window``."""
    return count(bucket, window) >= limit


def hit(bucket: str, window: timedelta) -> None:
    """Count one hit for ``bucket`` and drop its hits older than ``window``."""
    now = timezone.now()
    bucket = _stored(bucket)
    RateLimitHit.objects.filter(bucket=bucket, time__lte=now - window).delete()
    RateLimitHit.objects.create(bucket=bucket, time=now)


def clear(bucket: str) -> None:
    """Forget every hit of ``bucket``, for example after a successful login."""
    RateLimitHit.objects.filter(bucket=_stored(bucket)).delete()


def purge(older_than: timedelta) -> int:
    """Delete hits older than ``older_than`` in every bucket and return how many."""
    deleted, _ = RateLimitHit.objects.filter(
        time__lte=timezone.now() - older_than
    ).delete()
    return deleted
