"""Battery: pause on battery power when asked; no battery never pauses."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from dream_window.monitor.battery import BatteryDetector
from dream_window.monitor.detector import CheckContext, Condition, Reading

CTX = CheckContext(now=0)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (
            SimpleNamespace(percent=55.4, power_plugged=False, secsleft=3600),
            Reading(Condition.ACTIVE, "on battery", "on battery (55%)"),
        ),
        (
            SimpleNamespace(percent=100.0, power_plugged=True, secsleft=-2),
            Reading(Condition.CLEAR, None, "on mains power (100%)"),
        ),
        (
            SimpleNamespace(percent=80.0, power_plugged=None, secsleft=-1),
            Reading(Condition.UNAVAILABLE, None, "power source unknown"),
        ),
        (None, Reading(Condition.UNAVAILABLE, None, "no battery")),  # a desktop PC
    ],
    ids=["on-battery", "on-mains", "source-unknown", "no-battery"],
)
def test_battery_states(state: Any, expected: Reading) -> None:
    assert BatteryDetector(lambda: state).check(CTX) == expected


def test_platform_without_sensors_is_unsupported() -> None:
    def missing() -> Any:
        raise AttributeError("sensors_battery")

    assert BatteryDetector(missing).check(CTX).condition is Condition.UNSUPPORTED


def test_the_real_reading_is_decided_from_psutils_battery() -> None:
    # What this machine's battery says, decided as the table above decides it (CI: no battery).
    battery = psutil.sensors_battery()
    r = BatteryDetector().check(CTX)
    if battery is None:
        assert r == Reading(Condition.UNAVAILABLE, None, "no battery")
    elif battery.power_plugged is None:
        assert r == Reading(Condition.UNAVAILABLE, None, "power source unknown")
    elif battery.power_plugged:
        assert (r.condition, r.reason, r.detail.startswith("on mains power (")) == (
            Condition.CLEAR,
            None,
            True,
        )
    else:
        assert (r.condition, r.reason, r.detail.startswith("on battery (")) == (
            Condition.ACTIVE,
            "on battery",
            True,
        )
