"""Shared fixtures: one sandbox per test session (tests create their own accounts, so they do not collide)."""

from __future__ import annotations

import os

import pytest

from tests.support import Sandbox

os.environ.setdefault("OMP_THREAD_LIMIT", "1")


@pytest.fixture(scope="session")
def sandbox():
    box = Sandbox(seed=7, speed=1.0)
    yield box
    box.close()
