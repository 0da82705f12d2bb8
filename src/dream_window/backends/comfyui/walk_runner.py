"""The latent walk on ComfyUI: every frame of a segment is its own prompt, spread over the pool.

A frame at ``t`` samples from ``lerp(cond(start), cond(end), t)`` and from starting noise
``slerp(noise(start.seed), noise(end.seed), t)`` (the noise maths: :mod:`.graphs.noise`), uploaded
once per server and segment as one ``.latent`` batch into a ring of names. All frames of a segment
are issued at once, least busy server first, so N servers give ~N× frames/s. Flux cannot take our
noise (a flow model): its walk keeps the start's seed and lerps the conditioning only.

A chained step in the mode's plan is the next segment (from this one's end to the step's request,
same ``t`` values): it is queued behind this one, on every server, so no server idles between
segments. A call for anything else withdraws it; ``interrupt()`` fails every walk in flight with
``ExecutionFailed(interrupted=True)`` and queues nothing more.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from dream_window.backends.comfyui import latent_file
from dream_window.backends.comfyui.graphs import WorkflowBuilder
from dream_window.backends.comfyui.jobs import JobHandle, JobRunner
from dream_window.backends.comfyui.pool import Server
from dream_window.backends.comfyui.server_files import UploadRing
from dream_window.errors import ExecutionFailed
from dream_window.values.generation import GeneratedImage, GenerationRequest, Plan


def _interrupted(server: str | None = None) -> ExecutionFailed:
    return ExecutionFailed("ComfyUI latent walk interrupted", server=server, interrupted=True)


@dataclass(eq=False)
class Segment:
    """One segment of a latent walk in flight: a frame task per ``t``."""

    start: GenerationRequest
    end: GenerationRequest  # as the mode asked (the next segment starts from what was really used)
    ts: tuple[float, ...]
    noise: np.ndarray | None  # [len(ts), C, h, w], pre-scaled; None for flow models
    planned: bool = False
    after: Segment | None = None  # a planned segment queues behind the one before it
    tasks: list[asyncio.Task[GeneratedImage]] = field(default_factory=list)
    uploads: dict[str, asyncio.Task[str]] = field(default_factory=dict)  # server url -> LoadLatent name
    handles: list[JobHandle] = field(default_factory=list)
    # Set when every frame is queued (or failed): a planned segment queues behind it.
    queued: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False
    n_queued: int = 0


class WalkRunner:
    def __init__(self, runner: JobRunner, builder: WorkflowBuilder, *, plans: bool = True) -> None:
        self._runner = runner
        self._builder = builder
        self._plans = plans
        self._ring = UploadRing("walk", "latent")
        self._segments: list[Segment] = []  # [current?, planned?]
        self._epoch = 0  # bumped by interrupt(): work started before it must not queue after it

    @property
    def in_flight(self) -> list[Segment]:
        return list(self._segments)

    async def walk(
        self, start: GenerationRequest, end: GenerationRequest, ts: tuple[float, ...], plan: Plan
    ) -> list[GeneratedImage]:
        epoch = self._epoch
        segment = await self._claim(start, end, ts)
        if epoch != self._epoch:  # interrupted (a pause) while a stale plan was withdrawn
            raise _interrupted()
        if segment is None:
            segment = self._start(start, end, ts)
        nxt = plan.steps[0] if plan.steps and plan.steps[0].chained and self._plans else None
        alone = all(s is segment for s in self._segments)
        if nxt is not None and alone and ts[-1] == 1.0 and self._runner.pool.up_count() > 0:
            self._start(self.really_used(segment), nxt.request, nxt.ts or ts, after=segment)
        try:
            return await self._finish(segment)
        finally:
            if segment in self._segments:
                self._segments.remove(segment)

    def really_used(self, segment: Segment) -> GenerationRequest:
        """The request the segment's ``t = 1`` frame really is (a Flux walk keeps the start's seed)."""
        if self._builder.walk_noise.prescale is None:
            return dataclasses.replace(segment.end, seed=segment.start.seed)
        return segment.end

    async def interrupt(self) -> None:
        self._epoch += 1
        for segment in self._segments:
            segment.cancelled = True  # before any await: no frame of theirs queues from here on
        await self.withdraw()

    async def withdraw(self) -> None:
        for segment in list(reversed(self._segments)):  # the planned one first: it must not slip in
            await self._drop(segment)

    # --- internals -----------------------------------------------------------------------------

    def _start(
        self,
        start: GenerationRequest,
        end: GenerationRequest,
        ts: tuple[float, ...],
        *,
        after: Segment | None = None,
    ) -> Segment:
        conv = self._builder.walk_noise
        noise = None if conv.prescale is None else conv.walk(start.seed, end.seed, ts, end.width, end.height)
        segment = Segment(start, end, ts, noise, planned=after is not None, after=after)
        segment.handles = [JobHandle() for _ in ts]
        segment.tasks = [
            asyncio.create_task(self._frame(segment, k), name=f"walk frame t={t:.3f}")
            for k, t in enumerate(ts)
        ]
        self._segments.append(segment)
        return segment

    async def _claim(
        self, start: GenerationRequest, end: GenerationRequest, ts: tuple[float, ...]
    ) -> Segment | None:
        planned = next((s for s in self._segments if s.planned), None)
        if planned is None:
            return None
        if (
            planned.start == start
            and planned.end == end
            and len(planned.ts) == len(ts)
            and all(abs(a - b) < 1e-9 for a, b in zip(planned.ts, ts, strict=True))
        ):
            planned.planned = False
            return planned
        await self._drop(planned)
        return None

    async def _finish(self, segment: Segment) -> list[GeneratedImage]:
        try:
            await asyncio.wait(segment.tasks, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            await self._drop(segment)
            raise
        if segment.cancelled:
            raise _interrupted()
        errors = [
            t.exception()
            for t in segment.tasks
            if t.done() and not t.cancelled() and t.exception() is not None
        ]
        if errors:
            await self._drop(segment)
            interrupted = [e for e in errors if isinstance(e, ExecutionFailed) and e.interrupted]
            raise (interrupted or errors)[0]  # type: ignore[misc]
        return [t.result() for t in segment.tasks]

    async def _frame(self, segment: Segment, k: int) -> GeneratedImage:
        t = segment.ts[k]
        if segment.after is not None:
            await segment.after.queued.wait()  # the segment shown first is queued first, on every server
        counted = False

        def queued() -> None:
            nonlocal counted
            if not counted:
                counted = True
                segment.n_queued += 1
                if segment.n_queued == len(segment.ts):
                    segment.queued.set()

        request = self.really_used(segment) if t >= 1.0 else segment.end
        runner = self._runner

        async def work(server: Server) -> GeneratedImage:
            t0 = time.perf_counter()
            name = await self._noise_on(server, segment) if segment.noise is not None else None
            if segment.cancelled:
                raise _interrupted(server.url)
            built = self._builder.build_walk_frame(
                segment.start,
                segment.end,
                t,
                prefix=runner.prefix("walk"),
                noise=name,
                index=k,
                want_latent=segment.end.return_latent and t >= 1.0,
            )
            result = await runner.run(server, built, segment.handles[k], on_queued=queued)
            return await runner.finish(server, built, result, request, t0, meta={"walk_t": t})

        try:
            return await runner.pool.run(work)
        finally:
            queued()

    async def _noise_on(self, server: Server, segment: Segment) -> str:
        """The LoadLatent name of the segment's noise batch on ``server``: uploaded once per server
        and segment (at most two segments are alive; the ring holds four per server)."""
        task = segment.uploads.get(server.url)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            assert segment.noise is not None
            blob = latent_file.dumps(segment.noise)
            task = asyncio.create_task(
                self._runner.upload(server, blob, self._ring, mime="application/octet-stream"),
                name="walk noise upload",
            )
            segment.uploads[server.url] = task
        # shield: one frame being cancelled must not cancel the upload its siblings wait for
        return await asyncio.shield(task)

    async def _drop(self, segment: Segment) -> None:
        """Cancel a segment's frames and take its prompts off the servers. Ids are known before each
        POST, so a frame cancelled mid-POST is withdrawn too."""
        segment.cancelled = True
        for dependent in [s for s in self._segments if s.after is segment]:  # it would start from our end
            await self._drop(dependent)
        if segment in self._segments:
            self._segments.remove(segment)
        for task in (*segment.tasks, *segment.uploads.values()):
            task.cancel()
        await asyncio.gather(*segment.tasks, *segment.uploads.values(), return_exceptions=True)
        segment.queued.set()  # a planned segment waiting behind this one must not wait forever
        by_server: dict[str, tuple[Server, list[str]]] = {}
        for h in segment.handles:
            if h.server is not None and h.prompt_id is not None:
                by_server.setdefault(h.server.url, (h.server, []))[1].append(h.prompt_id)
        for server, pids in by_server.values():
            if server.up:
                await server.client.withdraw(pids)
