"""A short soak of the HTTP backend against the fault-injecting server: every request is answered or
recorded, and nothing is left behind (benchmarks/faults/soak.py; its timing is not tested here)."""

from __future__ import annotations

import pytest

from benchmarks.faults.soak import run_soak


@pytest.mark.slow
def test_a_short_soak_accounts_for_every_request_and_leaks_nothing():
    figures = run_soak(8, in_flight=32)
    assert figures["requests"] > 0 and figures["outages"] >= 1
    assert figures["unaccounted"] == 0, figures
    assert figures["answers"] + figures["failures"] == figures["requests"]
    assert (figures["task_leak"], figures["thread_leak"], figures["fd_leak"]) == (0, 0, 0), figures
