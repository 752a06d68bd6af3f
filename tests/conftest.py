"""Test-wide settings: quiet logs, and the encodings every test assumes."""

from __future__ import annotations

import os

os.environ.setdefault("LIENTHONG_LOG_JSON", "false")
os.environ.setdefault("LIENTHONG_LOG_LEVEL", "WARNING")
os.environ.setdefault("PYTHONUTF8", "1")


# Some library entry points are synchronous and run their own loop with asyncio.run(), which
# leaves the main thread with no current loop; pytest-asyncio's session loop must survive that.
import asyncio  # noqa: E402

import pytest  # noqa: E402


def _current_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item):  # type: ignore[no-untyped-def]
    loop = _current_loop()
    yield
    if loop is not None and not loop.is_closed() and _current_loop() is None:
        asyncio.set_event_loop(loop)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):  # type: ignore[no-untyped-def]
    loop = _current_loop()
    yield
    if loop is not None and not loop.is_closed() and _current_loop() is None:
        asyncio.set_event_loop(loop)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item):  # type: ignore[no-untyped-def]
    loop = _current_loop()
    yield
    if loop is not None and not loop.is_closed() and _current_loop() is None:
        asyncio.set_event_loop(loop)
