"""Headless Chromium for the tests that open a page: where it is, and whether to skip.

A test marked ``requires_browser`` skips when no Chromium is installed, unless the
environment sets ``DISTSAFE_REQUIRE_BROWSER`` (CI does once it has installed Chromium:
.ci/run); then the test runs and fails on the missing browser instead of skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest


def find_browser() -> str | None:
    """The path of a Chromium (or Chrome) executable, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser") or \
        shutil.which("google-chrome")


requires_browser = pytest.mark.skipif(
    find_browser() is None and not os.environ.get("DISTSAFE_REQUIRE_BROWSER"),
    reason="no headless Chromium here (CI installs it: .ci/run)")
