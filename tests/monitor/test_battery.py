"""Battery: pause on battery power when asked; no battery never pauses."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from dream_window.monitor.battery import BatteryDetector
from dream_window.monitor.detector import CheckContext, Condition

CTX = CheckContext(now=0)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (SimpleNamespace(percent=55.0, power_plugged=False, secsleft=3600), Condition.ACTIVE),
        (SimpleNamespace(percent=100.0, power_plugged=True, secsleft=-2), Condition.CLEAR),
        (SimpleNamespace(percent=80.0, power_plugged=None, secsleft=-1), Condition.UNAVAILABLE),
        (None, Condition.UNAVAILABLE),  # a desktop PC
    ],
)
def test_battery_states(state: Any, expected: Condition) -> None:
    r = BatteryDetector(lambda: state).check(CTX)
    assert r.condition is expected
    if expected is Condition.ACTIVE:
        assert r.reason == "on battery" and "55%" in r.detail


def test_platform_without_sensors_is_unsupported() -> None:
    def missing() -> Any:
        raise AttributeError("sensors_battery")

    assert BatteryDetector(missing).check(CTX).condition is Condition.UNSUPPORTED


def test_the_real_reading_does_not_crash() -> None:
    assert BatteryDetector().check(CTX).condition in set(Condition)
