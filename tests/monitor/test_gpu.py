"""GPU detector: window average, hysteresis, own-load discounting; NVML missing never pauses."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dream_window.monitor import build_detectors
from dream_window.monitor.detector import CheckContext, Condition
from dream_window.monitor.gpu import GpuDetector, NvmlReader, OwnProcesses, local_ports, open_nvml
from dream_window.monitor.system_monitor import SystemMonitor
from tests.conftest import FakeClock, fast_config
from tests.monitor.conftest import FakeGpuReader

OURS, COMFY, GAME = 100, 200, 300


def detector(reader: FakeGpuReader, **kw: Any) -> GpuDetector:
    opts: dict[str, Any] = {"threshold": 85, "resume_threshold": 60, "hold_seconds": 10, "window_seconds": 6}
    opts.update(kw)
    return GpuDetector(reader, own=lambda now: {OURS, COMFY}, **opts)


def feed(
    det: GpuDetector, reader: FakeGpuReader, t: float, util: float, generating: bool = False
) -> Condition:
    reader.util = util
    return det.check(CheckContext(now=t, generating=generating)).condition


def test_a_single_spike_does_not_pause_the_window_average_does() -> None:
    r = FakeGpuReader()
    d = detector(r)
    assert feed(d, r, 0, 20) is Condition.CLEAR
    assert feed(d, r, 2, 20) is Condition.CLEAR
    assert feed(d, r, 4, 100) is Condition.CLEAR  # loading-screen spike: average 47 %
    assert feed(d, r, 6, 100) is Condition.CLEAR  # window (6 s) still holds one 20 %: 73 %
    assert feed(d, r, 8, 100) is Condition.CLEAR  # 20, 100, 100, 100 within 6 s: 80 %
    reading = d.check(CheckContext(now=10))  # the 20 % samples have left the window
    assert reading.condition is Condition.ACTIVE and reading.reason == "gpu 0 at 100%"


def test_hysteresis_resumes_only_after_staying_low_for_the_hold_time() -> None:
    r = FakeGpuReader()
    d = detector(r, window_seconds=0)  # no smoothing: watch the hysteresis alone
    assert feed(d, r, 0, 90) is Condition.ACTIVE
    assert feed(d, r, 2, 70) is Condition.ACTIVE  # below the pause line, above the resume line
    assert feed(d, r, 4, 50) is Condition.ACTIVE  # low since t=4
    assert feed(d, r, 10, 50) is Condition.ACTIVE
    assert feed(d, r, 12, 65) is Condition.ACTIVE  # back above 60: the hold starts over
    assert feed(d, r, 14, 40) is Condition.ACTIVE
    assert feed(d, r, 23, 40) is Condition.ACTIVE
    assert feed(d, r, 24, 40) is Condition.CLEAR  # 10 s below 60


def test_the_reason_stays_fixed_during_one_episode() -> None:
    r = FakeGpuReader()
    d = detector(r, window_seconds=0)
    reasons = set()
    for t, u in enumerate([87, 93, 99, 88]):
        r.util = u
        reasons.add(d.check(CheckContext(now=t)).reason)
    assert reasons == {"gpu 0 at 87%"}


def test_per_process_utilisation_discounts_our_own_and_comfyuis_load() -> None:
    r = FakeGpuReader(per_process=True)
    d = detector(r, window_seconds=0)
    r.procs = {OURS: 5, COMFY: 88}
    assert feed(d, r, 0, 95, generating=True) is Condition.CLEAR  # 95 % busy, 93 of it ours
    r.procs = {COMFY: 40, GAME: 55}
    assert feed(d, r, 2, 95, generating=True) is Condition.CLEAR  # others: 55 %, below 85


def test_per_process_discounting_pauses_for_a_game_beside_our_generation() -> None:
    r = FakeGpuReader(per_process=True)
    d = detector(r, window_seconds=0)
    r.procs = {COMFY: 10, GAME: 88}
    r.util = 98
    reading = d.check(CheckContext(now=0, generating=True))
    assert reading.condition is Condition.ACTIVE
    assert reading.reason == "gpu 0 at 88%"  # 98 % minus our 10 %


def test_without_per_process_data_samples_are_skipped_while_our_prompt_runs() -> None:
    r = FakeGpuReader(per_process=False, compute_pids={COMFY})  # ComfyUI shares the watched GPU
    d = detector(r, window_seconds=0)
    for t in range(0, 20, 2):
        assert feed(d, r, t, 99, generating=True) is Condition.CLEAR  # our own Flux run
    assert "skipped" in d.check(CheckContext(now=21, generating=True)).detail
    assert feed(d, r, 22, 99, generating=False) is Condition.ACTIVE  # idle, yet busy: someone else


def test_when_generation_runs_on_another_gpu_nothing_is_discounted() -> None:
    r = FakeGpuReader(per_process=False, compute_pids={GAME})  # our processes are not on this GPU
    d = detector(r, window_seconds=0)
    assert feed(d, r, 0, 95, generating=True) is Condition.ACTIVE
    assert "not shared" in d.check(CheckContext(now=1, generating=True)).detail


def test_unknown_sharing_is_treated_as_shared() -> None:
    r = FakeGpuReader(per_process=False, compute_pids=None)  # NVML says neither
    d = detector(r, window_seconds=0)
    assert feed(d, r, 0, 95, generating=True) is Condition.CLEAR


def test_an_nvml_error_holds_the_state_and_says_why() -> None:
    r = FakeGpuReader()
    d = detector(r, window_seconds=0)
    assert feed(d, r, 0, 95) is Condition.ACTIVE
    r.fail = RuntimeError("GPU is lost")
    reading = d.check(CheckContext(now=2))
    assert reading.condition is Condition.UNKNOWN and "GPU is lost" in reading.detail


def test_resume_threshold_above_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be above"):
        GpuDetector(FakeGpuReader(), threshold=50, resume_threshold=70)


async def test_gpu_hysteresis_through_the_monitor_with_a_fake_clock(tmp_path: Path, clock: FakeClock) -> None:
    from dream_window.app import build_controller
    from dream_window.backends.builtin import BuiltinEngine

    r = FakeGpuReader()
    d = GpuDetector(
        r, threshold=85, resume_threshold=60, hold_seconds=10, window_seconds=0, own=lambda n: {OURS}
    )
    controller = build_controller(
        fast_config(tmp_path), BuiltinEngine(offload=False), clock=clock, fsync=False
    )
    monitor = SystemMonitor([d], controller, clock=clock, interval=2, cooldown=4)
    timeline: list[tuple[float, bool]] = []
    for t, u in [
        (0, 30),
        (2, 92),
        (4, 50),
        (6, 50),
        (8, 50),
        (10, 50),
        (12, 50),
        (14, 50),
        (16, 50),
        (18, 50),
        (20, 50),
    ]:
        clock.t = 1000 + t
        r.util = u
        await monitor.check_once()
        timeline.append((t, bool(controller.pause_reasons)))
    # paused at 2; below 60 from 4; GPU hold ends at 14; monitor cooldown (4 s) ends at 18
    assert [t for t, paused in timeline if paused] == [2, 4, 6, 8, 10, 12, 14, 16]


# --- NVML missing, and the real reader's error mapping ----------------------------------------


def test_nvml_missing_means_unavailable_and_never_pauses(tmp_path: Path) -> None:
    reader = open_nvml()
    if not isinstance(reader, str):
        reader.close()
        pytest.skip("this machine has a working NVML")
    cfg = fast_config(tmp_path, game_detection={"enabled": True, "fullscreen": False})
    gpu = next(d for d in build_detectors(cfg) if d.name == "gpu")
    reading = gpu.check(CheckContext(now=0))
    assert reading.condition is Condition.UNAVAILABLE
    assert "NVML" in reading.detail


class FakeNvmlError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"nvml error {value}")
        self.value = value


class FakePynvml:
    """The parts of the pynvml module NvmlReader calls, answering per the test."""

    NVMLError = FakeNvmlError
    NVML_SUCCESS, NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_NO_PERMISSION, NVML_ERROR_NOT_FOUND = 0, 3, 4, 6

    def __init__(self) -> None:
        self.samples: list[Any] | int = []
        self.timestamps: list[int] = []
        self.shutdown = False

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return f"handle{i}"

    def nvmlDeviceGetProcessUtilization(self, handle: str, ts: int) -> list[Any]:
        self.timestamps.append(ts)
        if isinstance(self.samples, int):
            raise FakeNvmlError(self.samples)
        return self.samples

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[Any]:
        return [SimpleNamespace(pid=7), SimpleNamespace(pid=9)]

    def nvmlShutdown(self) -> None:
        self.shutdown = True


def test_nvml_reader_maps_process_utilisation_answers() -> None:
    nv = FakePynvml()
    reader = NvmlReader(nv)
    nv.samples = [
        SimpleNamespace(pid=7, smUtil=30, timeStamp=5),
        SimpleNamespace(pid=7, smUtil=50, timeStamp=9),
        SimpleNamespace(pid=8, smUtil=10, timeStamp=7),
    ]
    assert reader.process_utilization(0) == {7: 50.0, 8: 10.0}
    nv.samples = nv.NVML_ERROR_NOT_FOUND  # no process used the GPU since last time
    assert reader.process_utilization(0) == {}
    assert nv.timestamps == [0, 9]  # asks only for samples newer than the last one seen
    nv.samples = nv.NVML_SUCCESS  # this binding raises "Success" when there are zero samples
    assert reader.process_utilization(0) == {}
    nv.samples = nv.NVML_ERROR_NOT_SUPPORTED
    assert reader.process_utilization(0) is None
    nv.samples = 999
    with pytest.raises(FakeNvmlError):
        reader.process_utilization(0)
    assert reader.compute_pids(0) == {7, 9}
    reader.close()
    assert nv.shutdown


def test_own_processes_are_ours_plus_the_local_comfyui_listener_refreshed_now_and_then() -> None:
    asked: list[set[int]] = []

    def finder(ports: set[int]) -> set[int]:
        asked.append(ports)
        return {COMFY}

    own = OwnProcesses(
        ["http://127.0.0.1:8188", "http://gpu-box:8188", "http://localhost:9000"],
        refresh_seconds=60,
        finder=finder,
        own_pid=OURS,
    )
    assert own.pids(0) == {OURS, COMFY}
    assert own.pids(30) == {OURS, COMFY}
    assert own.pids(61) == {OURS, COMFY}
    assert asked == [{8188, 9000}, {8188, 9000}]  # the remote server's port is not ours


def test_local_ports_only_for_this_machine() -> None:
    assert local_ports(["http://127.0.0.1:8188", "https://[::1]", "http://10.0.0.5:8188"]) == {8188, 443}


async def test_listening_pids_finds_a_real_listener() -> None:
    import asyncio

    from dream_window.monitor.gpu import listening_pids

    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert os.getpid() in listening_pids({port})
    finally:
        server.close()
        await server.wait_closed()
