"""``prewarm``'s entry point (``scaler.__main__.run``) turns every Ctrl-C into exit 130, also one
that the code running at that instant swallowed (a ``__del__`` or a bare ``except:`` in an
import: CPython raises the KeyboardInterrupt wherever the main thread is)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from scaler.__main__ import run
from tests.support.process import ctrl_c_reaches_children


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(1.0)  # the handler runs at the next bytecode; the sleep is cut short by it


def test_a_swallowed_ctrl_c_still_exits_130() -> None:
    def swallowing() -> int:
        with contextlib.suppress(BaseException):  # what a careless library does
            _ctrl_c()
        return 0

    with ctrl_c_reaches_children():
        assert run(swallowing) == 130


def test_a_ctrl_c_exits_130_and_a_run_without_one_keeps_its_code() -> None:
    with ctrl_c_reaches_children():
        assert run(_ctrl_c_and_return) == 130
        assert run(lambda: 3) == 3
        assert run(lambda: 0) == 0


def _ctrl_c_and_return() -> int:
    _ctrl_c()
    pytest.fail("the Ctrl-C did not interrupt")


def test_a_ctrl_c_the_parent_ignores_stays_ignored() -> None:
    """``nohup prewarm ... &`` starts the command with SIGINT ignored: it must stay so."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert run(lambda: 0) == 0
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
