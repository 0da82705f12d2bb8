"""Working ahead on the mode's plan, so the server never waits for us.

The mode hands each call a :class:`~dream_window.values.generation.Plan`: the requests it expects
to make next. Nothing here guesses: a step is started exactly as planned, and only the mode's next
call decides whether it was right.

* A **chained** step (img2img from the frame before it) is queued the moment that frame has
  *executed* — before it is downloaded — referencing its output file by name. The step after it
  follows when it executes in turn, so a chain of two keeps the GPU busy while we download,
  publish and decide.
* **Independent** steps (keyframes from prompt and seed alone) start at once, one per healthy
  server, so every server has work.
* A call that asks for exactly the first started step takes it over. Anything else withdraws the
  whole plan as a unit: queued prompts deleted, running ones interrupted (one path,
  ``ComfyUIClient.withdraw``). A new plan that begins with steps already started keeps them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

from dream_window.backends.comfyui.client import OutputFile
from dream_window.backends.comfyui.jobs import ExecutedHook, JobHandle, JobRunner
from dream_window.backends.comfyui.pool import Server
from dream_window.errors import ComfyUIError, ExecutionFailed
from dream_window.values.generation import GeneratedImage, GenerationRequest, Plan, Step

log = logging.getLogger(__name__)

Kind = Literal["txt2img", "img2img"]


@dataclass(eq=False)
class Started:
    """One planned step on its way: its task and where its prompt is queued."""

    step: Step
    source: tuple[str, OutputFile] | None  # (server url, file) it grows from; None: independent
    task: asyncio.Task[GeneratedImage] = field(init=False)
    handle: JobHandle = field(default_factory=JobHandle)
    # Where its frame is once executed (before download): what the next chained step grows from.
    output: tuple[Server, OutputFile] | None = None

    @property
    def kind(self) -> Kind:
        return "img2img" if self.step.chained else "txt2img"


class Speculator:
    def __init__(self, runner: JobRunner, *, enabled: bool = True) -> None:
        self._runner = runner
        self._enabled = enabled
        self._started: list[Started] = []
        self._pending: list[Step] = []

    @property
    def started(self) -> list[Started]:
        """The steps on their way, in plan order (for tests and status)."""
        return list(self._started)

    # --- what a call does ----------------------------------------------------------------------

    async def claim(
        self, kind: Kind, request: GenerationRequest, image: Image.Image | None
    ) -> Started | None:
        """The first started step when it is exactly this call; otherwise the plan is withdrawn."""
        if not self._started:
            return None
        head = self._started[0]
        source = self._runner.locations.where(image) if image is not None else None
        if head.kind == kind and head.step.request == request and head.source == source:
            self._started.pop(0)
            return head
        await self.withdraw()
        return None

    async def follow(self, plan: Plan, *, after: Started | None = None) -> None:
        """Take the call's new plan: steps already started that it begins with are kept; the rest
        of what was started is withdrawn; independent steps start now, chained ones when the frame
        before them has executed (``after``: the step the call took over, whose frame may have)."""
        steps = list(plan.steps) if self._enabled else []
        keep = 0
        for started, step in zip(self._started, steps, strict=False):
            if started.step != step:
                break
            keep += 1
        dropped, self._started = self._started[keep:], self._started[:keep]
        await self._drop(dropped)
        self._pending = steps[keep:]
        self._fill()
        newest = self._started[-1] if self._started else after
        if newest is not None and newest.output is not None:  # it executed while nothing was planned
            self._chain_from(*newest.output)

    async def result(self, started: Started) -> GeneratedImage | None:
        """The claimed step's frame; None when it failed in a way a direct run may not (the caller
        then generates it itself)."""
        try:
            return await started.task
        except asyncio.CancelledError:
            # Our caller was cancelled (a stop) after the step became its own: nobody else will
            # take its prompt off the server, so do it here, then let the cancel through.
            started.task.cancel()
            await started.handle.withdraw()
            raise
        except ExecutionFailed as exc:
            if exc.interrupted:
                # Interrupted on purpose (a pause for a game): running the same work again would
                # put it right back on the player's GPU.
                await self.withdraw()
                raise
            log.debug("planned %s failed (%s); generating directly", started.kind, exc)
        except ComfyUIError as exc:
            log.debug("planned %s failed (%s); generating directly", started.kind, exc)
        await self.withdraw()
        return None

    def executed(self, link: Started | None) -> ExecutedHook:
        """The hook for a frame on its way (``link``: a started step, None: the call's own): once it
        has executed, the next chained step of the plan is queued from its output."""

        def on_executed(server: Server, ref: OutputFile) -> None:
            if link is not None:
                link.output = (server, ref)
            newest = (link is self._started[-1]) if self._started else link not in self._started
            if newest:
                self._chain_from(server, ref)

        return on_executed

    def _chain_from(self, server: Server, ref: OutputFile) -> None:
        if self._pending and self._pending[0].chained:
            self._start(self._pending.pop(0), server, (server.url, ref))

    async def withdraw(self) -> None:
        """Drop the whole plan: nothing started for it keeps running."""
        dropped, self._started, self._pending = self._started, [], []
        await self._drop(dropped)

    # --- internals -----------------------------------------------------------------------------

    def _fill(self) -> None:
        """Start independent steps while a healthy server has none of ours queued ahead."""
        capacity = max(1, self._runner.pool.up_count())
        while self._pending and not self._pending[0].chained and len(self._started) < capacity:
            self._start(self._pending.pop(0), None, None)

    def _start(self, step: Step, server: Server | None, source: tuple[str, OutputFile] | None) -> None:
        started = Started(step, source)
        image = source[1] if source is not None else None
        runner = self._runner

        async def work() -> GeneratedImage:
            return await runner.pool.run(
                lambda s: runner.generate_on(
                    s,
                    step.request,
                    image,
                    started.handle,
                    on_executed=self.executed(started),
                    meta={"speculative": True},
                ),
                prefer=server,
            )

        started.task = asyncio.create_task(work(), name=f"planned {started.kind}")
        self._started.append(started)

    @staticmethod
    async def _drop(dropped: list[Started]) -> None:
        for started in dropped:
            started.task.cancel()
            await started.handle.withdraw()
        if dropped:
            await asyncio.gather(*(s.task for s in dropped), return_exceptions=True)
