"""The GPU duty cycle's arithmetic (backends/comfyui/duty.py) on a fake clock: busy intervals from
the server's timestamps, merged, cut to the rolling window, a prompt still running counted to now,
and the server's clock placed on ours by the least-delayed message."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dream_window.backends.comfyui.duty import DutyCycle
from dream_window.backends.comfyui.messages import Message
from tests.conftest import FakeClock

# The server's wall clock is nowhere near our monotonic one.
SERVER_AHEAD_S = 1_764_000_000.0


class Server:
    """Sends execution messages stamped with its own clock; ``delay``: how late they arrive."""

    def __init__(self, clock: FakeClock, duty: DutyCycle) -> None:
        self.clock = clock
        self.duty = duty

    def send(
        self, kind: str, pid: str, *, at: float | None = None, delay: float = 0.0, ours: bool = True
    ) -> None:
        """``at``: the server's time of the event, on our clock (default now - delay)."""
        when = self.clock.t - delay if at is None else at
        msg = Message(kind, {"prompt_id": pid, "timestamp": round((when + SERVER_AHEAD_S) * 1000)})
        self.duty.on_message(msg, ours=ours)


@pytest.fixture
def setup() -> tuple[FakeClock, DutyCycle, Server]:
    clock = FakeClock(start=100.0)
    duty = DutyCycle(clock)
    return clock, duty, Server(clock, duty)


def test_back_to_back_prompts_over_a_full_window(setup: tuple[FakeClock, DutyCycle, Server]) -> None:
    clock, duty, server = setup
    clock.advance(30)
    server.send("execution_start", "a")
    clock.advance(10)
    server.send("execution_success", "a")
    server.send("execution_start", "b")
    clock.advance(5)
    server.send("execution_error", "b")
    clock.advance(15)  # 60 s since we connected
    d = duty.measure()
    assert d.window_s == pytest.approx(60)
    assert d.busy_s == pytest.approx(15)
    assert d.fraction == pytest.approx(15 / 60)
    assert not d.running


def test_the_window_is_the_time_since_connecting_until_a_minute_has_passed(
    setup: tuple[FakeClock, DutyCycle, Server],
) -> None:
    clock, duty, server = setup
    server.send("execution_start", "a")
    clock.advance(4)
    server.send("execution_success", "a")
    clock.advance(4)
    d = duty.measure()
    assert (d.busy_s, d.window_s) == (pytest.approx(4), pytest.approx(8))
    assert d.describe() == {"fraction": 0.5, "busy_s": 4.0, "window_s": 8.0, "running": False}


def test_overlapping_intervals_count_once(setup: tuple[FakeClock, DutyCycle, Server]) -> None:
    clock, duty, server = setup
    clock.advance(60)
    server.send("execution_start", "reference", ours=False)  # a message with no delay: the offset
    t0 = clock.t - 50
    server.send("execution_start", "a", at=t0)
    server.send("execution_success", "a", at=t0 + 10)
    # Stamped out of order (a server clock step): b began before a ended.
    server.send("execution_start", "b", at=t0 + 5)
    server.send("execution_interrupted", "b", at=t0 + 12)
    # And one wholly inside a.
    server.send("execution_start", "c", at=t0 + 2)
    server.send("execution_success", "c", at=t0 + 3)
    assert duty.measure().busy_s == pytest.approx(12)


def test_an_interval_straddling_the_window_edge_counts_its_part_inside(
    setup: tuple[FakeClock, DutyCycle, Server],
) -> None:
    clock, duty, server = setup
    clock.advance(30)
    server.send("execution_start", "a")
    clock.advance(30)
    server.send("execution_success", "a")
    clock.advance(40)  # 30 s busy, of which the last 20 s lie in the last minute
    assert duty.measure().busy_s == pytest.approx(20)
    clock.advance(15)
    assert duty.measure().busy_s == pytest.approx(5)
    clock.advance(15)  # it ended 70 s ago: none of it
    assert duty.measure().busy_s == pytest.approx(0)


def test_a_prompt_still_running_counts_up_to_now(setup: tuple[FakeClock, DutyCycle, Server]) -> None:
    clock, duty, server = setup
    clock.advance(60)
    server.send("execution_start", "a")
    clock.advance(12)
    d = duty.measure()
    assert d.running and d.busy_s == pytest.approx(12)
    clock.advance(70)  # running for 82 s: the whole window
    assert duty.measure().fraction == pytest.approx(1.0)
    server.send("execution_success", "a")
    clock.advance(30)
    d = duty.measure()
    assert not d.running and d.busy_s == pytest.approx(30)


def test_only_our_prompts_count_and_a_start_ends_the_one_before(
    setup: tuple[FakeClock, DutyCycle, Server],
) -> None:
    clock, duty, server = setup
    clock.advance(60)
    server.send("execution_start", "theirs", ours=False)
    clock.advance(5)
    server.send("execution_success", "theirs", ours=False)
    server.send("execution_start", "a")
    clock.advance(3)
    # a's end was lost with the socket; the server (one prompt at a time) has started another.
    server.send("execution_start", "b")
    clock.advance(2)
    server.send("execution_success", "b")
    server.send("execution_success", "a")  # late, and a is already closed: nothing changes
    clock.advance(1)
    assert duty.measure().busy_s == pytest.approx(5)


def test_the_least_delayed_message_sets_the_clock_offset(setup: tuple[FakeClock, DutyCycle, Server]) -> None:
    clock, duty, server = setup
    clock.advance(60)
    # The first message arrives 2 s late: on it alone the prompt seems to have started 2 s later.
    server.send("execution_start", "a", delay=2.0)
    clock.advance(10)
    server.send("execution_success", "a", delay=0.0)
    clock.advance(10)
    # 12 s of the server's time, placed by the prompt-free (least delayed) message.
    assert duty.measure().busy_s == pytest.approx(12)


@pytest.mark.parametrize("stamp", [None, "soon", float("nan"), True])
def test_a_message_without_a_usable_timestamp_is_ignored(
    stamp: object, setup: tuple[FakeClock, DutyCycle, Server]
) -> None:
    clock, duty, _ = setup
    duty.on_message(Message("execution_start", {"prompt_id": "a", "timestamp": stamp}), ours=True)
    clock.advance(5)
    d = duty.measure()
    assert d.busy_s == 0 and not d.running


def test_before_any_message_nothing_is_busy(setup: tuple[FakeClock, DutyCycle, Server]) -> None:
    clock, duty, _ = setup
    assert duty.measure().fraction == 0.0  # no time has passed: no division by zero
    clock.advance(10)
    assert duty.measure().describe() == {"fraction": 0.0, "busy_s": 0.0, "window_s": 10.0, "running": False}


def coverage(intervals: list[tuple[float, float]], lo: float, hi: float, step: float = 0.001) -> float:
    """The union's length inside [lo, hi], counted on a grid: a reference independent of duty.py."""
    grid = np.arange(lo, hi, step) + step / 2
    covered = np.zeros(grid.shape, dtype=bool)
    for s, e in intervals:
        covered |= (grid >= s) & (grid < e)
    return float(covered.sum() * step)


@pytest.mark.parametrize("seed", range(5))
def test_random_prompts_match_a_grid_count(seed: int) -> None:
    rng = random.Random(seed)
    clock = FakeClock(start=0.0)
    duty = DutyCycle(clock)
    server = Server(clock, duty)
    clock.advance(1)
    intervals: list[tuple[float, float]] = []
    for i in range(40):
        # Stamped out of order at times: starts may fall inside earlier intervals.
        start = clock.t - rng.uniform(0, 3) if rng.random() < 0.3 else clock.t
        end = clock.t + rng.uniform(0.1, 4)
        clock.t = max(clock.t, end)
        server.send("execution_start", f"p{i}", at=start)
        server.send("execution_success", f"p{i}", at=end)
        intervals.append((start, end))
        clock.advance(rng.uniform(0, 3))
    now = clock.t
    window = min(60.0, now)
    d = duty.measure()
    assert d.window_s == pytest.approx(window)
    assert d.busy_s == pytest.approx(coverage(intervals, now - window, now), abs=0.05)  # ms timestamps
