"""ComfyUIBackend: the GenerationBackend that makes real frames on one or more ComfyUI servers.

A thin facade: it executes what the mode asks for and knows nothing of modes. The work is done by

* :mod:`.jobs` — one job on one server: graph, feed our pictures, queue, wait, download;
* :mod:`.speculation` — working ahead on the mode's :class:`~dream_window.values.generation.Plan`;
* :mod:`.walk_runner` — the latent walk (:class:`~dream_window.backends.base.SupportsLatentWalk`);
* :mod:`.probe` — the start-up check of our graphs against each server;
* :mod:`.graphs` — the graph builders, one module per model family;
* :mod:`.pool` — several servers as one, least busy first, failover, probing back.

What a user notices: frames come back through PreviewImage into ComfyUI's temp/, which ComfyUI
wipes at every start (``comfyui.keep_outputs`` switches to SaveImage); a frame fed back is named,
not uploaded again; a latent the mode will slerp comes back with its frame
(``GenerationRequest.return_latent``), so keyframes are never encoded again; encode/decode run on
the server's own VAE (no second copy in our process).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from dream_window.backends.comfyui import latent_file
from dream_window.backends.comfyui.graphs import CustomWorkflow, WorkflowBuilder
from dream_window.backends.comfyui.jobs import JobRunner, images_of
from dream_window.backends.comfyui.pool import Server, ServerPool
from dream_window.backends.comfyui.probe import check_request, check_server
from dream_window.backends.comfyui.server_files import install_tag
from dream_window.backends.comfyui.speculation import Kind, Speculator
from dream_window.backends.comfyui.validation import model_files
from dream_window.backends.comfyui.walk_runner import WalkRunner
from dream_window.config import ComfyUIConfig, WalkSwitch
from dream_window.errors import (
    ComfyUIError,
    ConfigError,
    ExecutionFailed,
    ModelUnavailable,
    WorkflowRejected,
)
from dream_window.values.generation import (
    NO_PLAN,
    BackendHealth,
    GeneratedImage,
    GenerationRequest,
    Plan,
    PreviewCallback,
    ProgressCallback,
)

log = logging.getLogger(__name__)


class ComfyUIBackend:
    is_ai = True

    def __init__(
        self,
        comfyui: ComfyUIConfig,
        pool: ServerPool,
        builder: WorkflowBuilder | CustomWorkflow,
        *,
        probe: GenerationRequest,
        walk: WalkSwitch = "auto",
        speculate: bool = True,
    ) -> None:
        """``probe``: a request shaped like the dream's, for the start-up check; ``walk``: whether
        this backend offers the latent walk (``interpolation.walk``)."""
        self.pool = pool
        self.builder = builder
        self.name = f"ComfyUI ({builder.family})"
        self.latent_channels = builder.latent_channels
        self._probe = probe
        self._checks = int(time.time())  # model checks made: each its own seed
        self._walk = walk
        self.jobs = JobRunner(
            pool,
            builder,
            tag=install_tag(),
            timeout=comfyui.generation_timeout,
            preview_method=comfyui.preview_method,
        )
        self.plans = Speculator(self.jobs, enabled=speculate)
        self.walks = (
            WalkRunner(self.jobs, builder, plans=speculate)
            if not isinstance(builder, CustomWorkflow)
            else None
        )
        # The walk is offered when the switch allows it and the graphs can express it; start() may
        # still take it away when this server cannot run the walk's graph.
        self.latent_walk_available = walk != "off" and self.walks is not None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (fast failure when nothing answers), then check our graphs against each server's
        live object_info so a missing model file is named now, not at the first frame."""
        if self._walk == "on" and self.walks is None:
            raise ConfigError(
                "interpolation.walk is 'on' but a custom comfyui.workflow cannot express a latent "
                "walk; set it to 'auto' (slerp keyframe latents instead) or use a built-in model"
            )
        await self.pool.start()
        for s in self.pool.servers:
            if not s.up:
                continue
            found = await check_server(s.client, self.builder, self._probe, walk=self.latent_walk_available)
            problems = found.problems or (found.walk_problems if self._walk == "on" else [])
            if problems:
                await self.pool.close()
                error = ModelUnavailable if found.models_missing else WorkflowRejected
                raise error(f"ComfyUI at {s.url}: " + "; ".join(problems), server=s.url)
            if found.walk_problems and self.latent_walk_available:
                self.latent_walk_available = False
                log.warning(
                    "ComfyUI at %s cannot run the latent walk (%s): interpolate slerps keyframe latents",
                    s.url,
                    "; ".join(found.walk_problems),
                )
        log.info("ComfyUI backend ready: %s, model %s", self.pool.describe(), self.builder.family)

    async def check_model(self) -> float:
        """Prove the configured model loads: the smallest generation it can make (one step, 64x64,
        nothing kept) on every server that is up. Returns the seconds to the first image; raises
        ModelUnavailable with the server's own words when the model does not load."""
        # A new seed each time: ComfyUI answers an identical prompt from its cache without running it.
        self._checks += 1
        request = dataclasses.replace(check_request(self._probe), seed=self._checks)
        files = ", ".join(model_files(self.builder.build_txt2img(request, prefix="check").graph)) or "?"
        t0 = time.perf_counter()
        first: float | None = None
        for s in [s for s in self.pool.servers if s.up]:
            try:
                await self.jobs.generate_on(s, request, None)
            except (ExecutionFailed, WorkflowRejected) as exc:
                raise ModelUnavailable(
                    f"ComfyUI at {s.url} failed the model check with {files} (one step at 64x64): {exc}",
                    server=s.url,
                ) from exc
            first = first if first is not None else time.perf_counter() - t0
        return first if first is not None else 0.0

    async def close(self) -> None:
        await self.withdraw()
        # Work a mode asked for ahead (hybrid's keyframe chain) has nobody to wait for it now.
        await self._withdraw_in_flight()
        await self.pool.close()

    async def health(self) -> BackendHealth:
        return BackendHealth(self.pool.up_count() > 0, self.pool.describe())

    def status_sections(self) -> dict[str, object]:
        return {"comfyui": self.describe()}

    def describe(self) -> dict[str, object]:
        """status.json's ``comfyui`` section: each server, and the share of the last minute it
        spent executing our prompts by its own timestamps (``gpu_duty``, see duty.py); the
        section's own ``gpu_duty`` is the busiest server's, the GPU the widget costs most."""
        duties = [(s, s.client.duty.measure()) for s in self.pool.servers]
        busiest = max((d for _, d in duties), key=lambda d: d.fraction)
        servers = [{"url": s.url, "up": s.up, "gpu_duty": d.describe()} for s, d in duties]
        return {"servers": servers, "gpu_duty": busiest.describe()}

    def set_progress_callback(self, callback: ProgressCallback | None) -> None:
        self.jobs.progress = callback

    def set_preview_callback(self, callback: PreviewCallback | None) -> None:
        self.jobs.preview = callback

    async def withdraw(self) -> None:
        await self.plans.withdraw()
        if self.walks is not None:
            await self.walks.withdraw()

    async def interrupt(self) -> None:
        """Interrupt our prompts only (other users of the server keep theirs); the plan is withdrawn
        and every walk in flight fails with ``ExecutionFailed(interrupted=True)``."""
        if self.walks is not None:
            await self.walks.interrupt()
        await self.plans.withdraw()
        await self._withdraw_in_flight()

    async def _withdraw_in_flight(self) -> None:
        """Every prompt of ours still queued or running, on every server that is up."""
        for s in self.pool.servers:
            ids = s.client.in_flight_ids()
            if s.up and ids:
                await s.client.withdraw(ids)

    async def free_memory(self) -> None:
        await self.withdraw()
        for s in self.pool.servers:
            if s.up:
                try:
                    await s.client.free()
                except ComfyUIError as exc:
                    log.debug("ComfyUI at %s did not free memory: %s", s.url, exc)

    # --- generation -----------------------------------------------------------------------------

    async def _generate(
        self, kind: Kind, request: GenerationRequest, image: Image.Image | None, plan: Plan
    ) -> GeneratedImage:
        claimed = await self.plans.claim(kind, request, image)
        await self.plans.follow(plan, after=claimed)
        if claimed is not None:
            result = await self.plans.result(claimed)
            if result is not None:
                return result
            await self.plans.follow(plan)  # the failed step took the plan down with it: start afresh
        on_executed = self.plans.executed(None)
        return await self.pool.run(
            lambda s: self.jobs.generate_on(s, request, image, on_executed=on_executed),
            prefer=self.jobs.server_for(image),
        )

    async def txt2img(self, request: GenerationRequest, *, plan: Plan = NO_PLAN) -> GeneratedImage:
        return await self._generate("txt2img", request, None, plan)

    async def img2img(
        self, image: Image.Image, request: GenerationRequest, *, plan: Plan = NO_PLAN
    ) -> GeneratedImage:
        return await self._generate("img2img", request, image, plan)

    async def latent_walk(
        self,
        start: GenerationRequest,
        end: GenerationRequest,
        ts: Sequence[float],
        *,
        plan: Plan = NO_PLAN,
    ) -> list[GeneratedImage]:
        """One real generation per ``t``: conditioning ``lerp(cond(start), cond(end), t)``, starting
        noise ``slerp(noise(start.seed), noise(end.seed), t)`` (Flux: one seed, ``start.seed``, for
        the whole walk). The returned images carry the request really used."""
        if not self.latent_walk_available or self.walks is None:
            raise ConfigError(
                "this ComfyUI setup cannot do a latent walk (interpolation.walk is off, a custom "
                "workflow is configured, or the server cannot run the walk's graph)"
            )
        tvals = tuple(float(t) for t in ts)
        if not tvals or any(not 0.0 <= t <= 1.0 for t in tvals):
            raise ValueError(f"latent_walk needs t values in [0, 1], got {list(tvals)}")
        if (start.width, start.height) != (end.width, end.height):
            raise ValueError(
                f"latent_walk: start is {start.width}x{start.height} but end is {end.width}x{end.height}"
            )
        await self.plans.withdraw()  # a walk is never what a txt2img/img2img plan expected
        return await self.walks.walk(start, end, tvals, plan)

    async def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            raise ValueError("encode needs at least one image")

        async def work(server: Server) -> np.ndarray:
            built, result = await self.jobs.run_fed(
                server,
                images,
                lambda names: self.builder.build_encode(names, prefix=self.jobs.prefix("latent")),
                front=True,
            )
            z = await self.jobs.latents(server, result, built.latent_nodes)
            if z is None or z.shape[0] != len(images):
                raise ExecutionFailed(
                    f"ComfyUI at {server.url}: encode returned no latents", server=server.url
                )
            return z

        return await self.pool.run(work, prefer=self.jobs.server_for(images[0]))

    async def decode(self, latents: np.ndarray) -> list[Image.Image]:
        z = np.asarray(latents, dtype=np.float32)
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected latents shaped [N, {self.latent_channels}, H, W], got {list(z.shape)}"
            )
        # Spread over the servers with none of our work in flight, a slice of the batch each, in
        # order: on several servers the keyframe being made (hybrid asks for the next one before
        # decoding) keeps its server, and the in-betweens decode beside it on the others. The
        # latents travel as .latent files; one server idle or none: the least busy takes it all.
        idle = self.pool.idle()[: z.shape[0]]
        if len(idle) < 2:
            return await self.pool.run(lambda s: self._decode_on(s, z))
        slices = [
            asyncio.create_task(self.pool.run(functools.partial(self._decode_on, latents=part), prefer=s))
            for part, s in zip(np.array_split(z, len(idle)), idle, strict=True)
        ]
        try:
            parts = await asyncio.gather(*slices)
        except (Exception, asyncio.CancelledError):
            # One slice failed for good (or the caller left): the others are not waited for.
            for task in slices:
                task.cancel()
            await asyncio.gather(*slices, return_exceptions=True)
            raise
        return [image for part in parts for image in part]

    async def _decode_on(self, server: Server, latents: np.ndarray) -> list[Image.Image]:
        """``latents`` decoded on ``server``: uploaded as one .latent batch, LoadLatent → VAEDecode."""
        name = await self.jobs.upload_latents(server, latent_file.dumps(latents))
        built = self.builder.build_decode(name, prefix=self.jobs.prefix("inbetween"))
        result = await self.jobs.run(server, built, front=True)
        n = latents.shape[0]
        refs = images_of(server, built, result, what=f"decode of {n} latents", expect=n)
        return await self.jobs.images(server, refs)


__all__ = ["ComfyUIBackend"]
