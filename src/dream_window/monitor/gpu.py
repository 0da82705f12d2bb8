"""Is the watched GPU busy with someone else's work? NVML, smoothed, with hysteresis.

The seed read one instantaneous ``nvmlDeviceGetUtilizationRates`` sample against one threshold:
a loading screen's spike paused the dream, the next quiet frame resumed it, and — when generation
shares the GPU — our own Flux run (90 % busy) paused us. Here:

* **Window average.** Samples from the last ``window_seconds`` are averaged.
* **Hysteresis.** Busy above ``threshold``; free again only after the average stays below
  ``resume_threshold`` for ``hold_seconds``.
* **Own-load discounting.** Dream Window's process and the local ComfyUI server's (found by the
  port it listens on) are "ours". Where NVML reports per-process utilisation, our share is taken
  off the device total. Where it does not (many consumer boards, WDDM), and our processes hold a
  context on the watched GPU, samples taken while our own prompt executes are skipped: they cannot
  tell our load from a game's. When generation runs on another GPU nothing is discounted.

NVML is read through the small :class:`GpuReader` interface so the logic is tested with a fake;
:class:`NvmlReader` is the thin real one. No NVML (no NVIDIA GPU, no driver, package missing)
→ the detector answers UNAVAILABLE and never pauses.
"""

from __future__ import annotations

import ipaddress
import os
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import urlsplit

from dream_window.monitor.detector import CheckContext, Condition, Reading


class GpuReader(Protocol):
    def device_count(self) -> int: ...

    def device_name(self, index: int) -> str: ...

    def utilization(self, index: int) -> float:
        """Whole-device utilisation, percent, over NVML's last sample period."""
        ...

    def process_utilization(self, index: int) -> dict[int, float] | None:
        """pid → SM utilisation (percent) since the previous call; None when NVML cannot say."""
        ...

    def compute_pids(self, index: int) -> set[int] | None:
        """Processes holding a compute context on the device; None when NVML cannot say."""
        ...

    def close(self) -> None: ...


class NvmlReader:
    """The real reader (``nvidia-ml-py``). Build it with :func:`open_nvml`."""

    def __init__(self, nvml: Any) -> None:
        self._nv = nvml
        self._handles: dict[int, Any] = {}
        self._last_seen: dict[int, int] = {}

    def _handle(self, index: int) -> Any:
        if index not in self._handles:
            self._handles[index] = self._nv.nvmlDeviceGetHandleByIndex(index)
        return self._handles[index]

    def device_count(self) -> int:
        return int(self._nv.nvmlDeviceGetCount())

    def device_name(self, index: int) -> str:
        name = self._nv.nvmlDeviceGetName(self._handle(index))
        return name.decode() if isinstance(name, bytes) else str(name)

    def utilization(self, index: int) -> float:
        return float(self._nv.nvmlDeviceGetUtilizationRates(self._handle(index)).gpu)

    def process_utilization(self, index: int) -> dict[int, float] | None:
        nv = self._nv
        try:
            samples = nv.nvmlDeviceGetProcessUtilization(self._handle(index), self._last_seen.get(index, 0))
        except nv.NVMLError as exc:
            value = getattr(exc, "value", None)
            # NOT_FOUND (and, from this binding, SUCCESS with zero samples): nobody used the GPU lately.
            if value in (nv.NVML_ERROR_NOT_FOUND, nv.NVML_SUCCESS):
                return {}
            if value in (nv.NVML_ERROR_NOT_SUPPORTED, nv.NVML_ERROR_NO_PERMISSION):
                return None
            raise
        out: dict[int, float] = {}
        newest = self._last_seen.get(index, 0)
        for s in samples:
            out[int(s.pid)] = max(out.get(int(s.pid), 0.0), float(s.smUtil))
            newest = max(newest, int(s.timeStamp))
        self._last_seen[index] = newest
        return out

    def compute_pids(self, index: int) -> set[int] | None:
        nv = self._nv
        try:
            procs = nv.nvmlDeviceGetComputeRunningProcesses(self._handle(index))
        except nv.NVMLError as exc:
            if getattr(exc, "value", None) in (nv.NVML_ERROR_NOT_SUPPORTED, nv.NVML_ERROR_NO_PERMISSION):
                return None
            raise
        return {int(p.pid) for p in procs}

    def close(self) -> None:
        self._handles.clear()
        try:
            self._nv.nvmlShutdown()
        except self._nv.NVMLError:
            pass


def open_nvml() -> NvmlReader | str:
    """An initialised NVML reader, or one line saying why there is none."""
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py not installed (pip install 'dream-window[monitor]')"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"NVML not available: {exc} (no NVIDIA GPU or driver)"
    except OSError as exc:  # a broken driver install can fail while loading the library
        return f"NVML not available: {exc}"
    return NvmlReader(pynvml)


# --- whose load is it ------------------------------------------------------------------------


def _is_local_host(host: str) -> bool:
    if host in ("localhost", "", "0.0.0.0", "::"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_ports(urls: Iterable[str]) -> set[int]:
    """Ports of the ComfyUI URLs that point at this machine (a remote server's load is not on our GPU)."""
    ports: set[int] = set()
    for url in urls:
        parts = urlsplit(url)
        if _is_local_host(parts.hostname or ""):
            ports.add(parts.port or (443 if parts.scheme == "https" else 80))
    return ports


def listening_pids(ports: set[int]) -> set[int]:
    """PIDs of the processes listening on ``ports`` here (the local ComfyUI server)."""
    if not ports:
        return set()
    import psutil

    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):  # macOS without root; NVML is not there anyway
        return set()
    return {
        c.pid for c in conns if c.pid and c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in ports
    }


class OwnProcesses:
    """Our PID plus the local ComfyUI server's, looked up again now and then (ComfyUI restarts)."""

    def __init__(
        self,
        urls: Iterable[str],
        *,
        refresh_seconds: float = 60.0,
        finder: Callable[[set[int]], set[int]] = listening_pids,
        own_pid: int | None = None,
    ) -> None:
        self.ports = local_ports(urls)
        self.refresh_seconds = refresh_seconds
        self._finder = finder
        self._own = own_pid if own_pid is not None else os.getpid()
        self._pids: set[int] = set()
        self._at: float | None = None

    def pids(self, now: float) -> set[int]:
        if self._at is None or now - self._at >= self.refresh_seconds:
            self._pids = self._finder(self.ports)
            self._at = now
        return {self._own, *self._pids}


# --- the detector ----------------------------------------------------------------------------


class GpuDetector:
    name = "gpu"

    def __init__(
        self,
        reader: GpuReader,
        *,
        index: int = 0,
        threshold: float = 85.0,
        resume_threshold: float = 60.0,
        hold_seconds: float = 10.0,
        window_seconds: float = 6.0,
        own: Callable[[float], set[int]] | None = None,
    ) -> None:
        if resume_threshold > threshold:
            raise ValueError(
                f"resume_threshold ({resume_threshold}) must not be above threshold ({threshold})"
            )
        self.reader = reader
        self.index = index
        self.threshold = threshold
        self.resume_threshold = resume_threshold
        self.hold_seconds = hold_seconds
        self.window_seconds = window_seconds
        self._own = own or (lambda now: {os.getpid()})
        self._samples: deque[tuple[float, float]] = deque()
        self._active = False
        self._reason: str | None = None
        self._below_since: float | None = None
        self.last_average: float | None = None
        self.discounting = "none"  # how own load was handled last time: per-process | skipped | not shared

    def describe(self) -> str:
        per = "yes" if self.reader.process_utilization(self.index) is not None else "no"
        return f"{self.reader.device_name(self.index)} (GPU {self.index}), per-process utilisation: {per}"

    def _sample(self, ctx: CheckContext) -> float | None:
        """Someone else's load on the device now, or None when it cannot be told apart from ours."""
        total = self.reader.utilization(self.index)
        own = self._own(ctx.now)
        per_process = self.reader.process_utilization(self.index)
        if per_process is not None:
            ours = sum(v for pid, v in per_process.items() if pid in own)
            self.discounting = f"per-process (ours {ours:.0f}%)"
            return max(0.0, total - ours)
        on_device = self.reader.compute_pids(self.index)
        shared = on_device is None or bool(on_device & own)
        if not shared:
            self.discounting = "not shared"
            return total
        if ctx.generating:
            self.discounting = "sample skipped: our prompt was executing"
            return None
        self.discounting = "idle"
        return total

    def _average(self, now: float) -> float | None:
        while self._samples and now - self._samples[0][0] > self.window_seconds:
            self._samples.popleft()
        if not self._samples:
            return None
        return sum(v for _, v in self._samples) / len(self._samples)

    def check(self, ctx: CheckContext) -> Reading:
        try:
            load = self._sample(ctx)
        except Exception as exc:  # NVML errors (GPU lost, driver reloaded): hold, say why
            return Reading(
                Condition.UNKNOWN, self._reason if self._active else None, f"NVML read failed: {exc}"
            )
        if load is not None:
            self._samples.append((ctx.now, load))
        avg = self._average(ctx.now)
        self.last_average = avg
        if avg is not None:
            self._decide(avg, ctx.now)
        if avg is None:
            detail = f"gpu {self.index}: no recent sample ({self.discounting})"
        else:
            detail = f"gpu {self.index} at {avg:.0f}% from other programs ({self.discounting})"
        if self._active:
            assert self._reason is not None
            return Reading.active(self._reason, detail)
        return Reading.clear(detail)

    def _decide(self, avg: float, now: float) -> None:
        if not self._active:
            if avg > self.threshold:
                self._active = True
                self._below_since = None
                # Fixed for the episode: a reason that changed every check would churn status.
                self._reason = f"gpu {self.index} at {avg:.0f}%"
            return
        if avg < self.resume_threshold:
            if self._below_since is None:
                self._below_since = now
            if now - self._below_since >= self.hold_seconds:
                self._active = False
                self._reason = None
                self._below_since = None
        else:
            self._below_since = None

    def close(self) -> None:
        self.reader.close()
