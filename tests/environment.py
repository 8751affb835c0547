"""Point the settings at a throwaway instance before pytest-django loads them.

Loaded with ``-p tests.environment`` (see pyproject.toml) because pytest-django
imports the settings before any conftest.py runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DATA_DIR = Path(tempfile.mkdtemp(prefix="sealmail-test-"))
os.environ["SEALMAIL_DATA_DIR"] = str(DATA_DIR)
os.environ.setdefault("SEALMAIL_FROM", "billing@provider.test")
os.environ.setdefault("SEALMAIL_BASE_URL", "http://testserver")
