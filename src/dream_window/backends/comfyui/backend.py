"""ComfyUIBackend: the GenerationBackend that makes real frames on one or more ComfyUI servers.

What it does beyond "queue, wait, download":

* **No re-uploads.** The image a mode feeds back is nearly always the one we just returned; the
  backend remembers where it lives and references it in LoadImage as ``"name [output]"``. Other
  images go to a small ring of upload names with ``overwrite`` (ComfyUI has no delete API, so
  ``input/`` never grows without bound).
* **Latents from the same prompt.** In hybrid/interpolate mode the generation graph has a SaveLatent
  branch; the ``.latent`` file comes back with the frame, so ``encode`` is not needed for keyframes.
  ``encode``/``decode`` run on the server's own VAE (no second copy in our process): decode uploads
  one ``[N, C, H, W]`` latent file and gets N frames from one prompt.
* **The server never waits for us.** As soon as frame n has executed, the frame the mode will most
  likely ask for next (same prompt and settings, next seed, grown from frame n) is queued
  speculatively, referencing n's output by name — before n is even downloaded. If the mode asks for
  something else (a new prompt, an injected frame), the speculation is interrupted and dropped. For
  independent frames (interpolate mode's keyframes) one speculation per healthy server keeps every
  server busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import random
import time
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from dream_window.backends.base import (
    BackendHealth,
    GeneratedImage,
    GenerationRequest,
    PreviewCallback,
    ProgressCallback,
)
from dream_window.backends.comfyui import latent_file
from dream_window.backends.comfyui.client import ComfyUIClient, OutputFile, PromptResult
from dream_window.backends.comfyui.messages import Preview
from dream_window.backends.comfyui.pool import Server, ServerPool
from dream_window.backends.comfyui.validation import check_model_files, validate_graph
from dream_window.backends.comfyui.workflows import (
    BuiltGraph,
    CustomWorkflow,
    WorkflowBuilder,
)
from dream_window.clock import Clock, SystemClock
from dream_window.config import DreamConfig, Mode, SeedPolicy
from dream_window.errors import ComfyUIError, ExecutionFailed, WorkflowRejected

log = logging.getLogger(__name__)

_UPLOAD_SLOTS = 4


@dataclass
class _Known:
    image: weakref.ref[Image.Image]
    server: str
    ref: OutputFile


@dataclass
class _Speculation:
    kind: str  # "txt2img" | "img2img"
    request: GenerationRequest
    source: int | None  # id() of the source image for img2img
    task: asyncio.Task[GeneratedImage]
    prompt: dict[str, Any] = field(default_factory=dict)  # {"server": Server, "id": prompt_id}


class ComfyUIBackend:
    is_ai = True

    def __init__(
        self,
        config: DreamConfig,
        pool: ServerPool,
        builder: WorkflowBuilder | CustomWorkflow,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        speculate: bool = True,
    ) -> None:
        self.config = config
        self.pool = pool
        self.builder = builder
        self.name = f"ComfyUI ({builder.family})"
        self.latent_channels = builder.latent_channels
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._tag = uuid.uuid4().hex[:8]
        self._counter = 0
        self._slot = 0
        self._known: dict[int, _Known] = {}
        self._progress: ProgressCallback | None = None
        self._preview: PreviewCallback | None = None
        self._speculate = speculate
        self._specs: list[_Speculation] = []
        c = config.comfyui
        self._timeout = c.generation_timeout
        self._extra: dict[str, Any] = {} if c.preview_method == "none" else {"preview_method": c.preview_method}
        mode = config.generation.mode
        self._want_latent = mode in (Mode.HYBRID, Mode.INTERPOLATE)
        self._mode = mode

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (fast failure when nothing answers), then check our graphs against each server's
        live object_info so a missing model file is named now, not at the first frame."""
        await self.pool.start()
        for s in self.pool.servers:
            if s.up:
                problems = await self._check_server(s.client)
                if problems:
                    await self.pool.close()
                    raise WorkflowRejected(f"ComfyUI at {s.url}: " + "; ".join(problems), server=s.url)
        log.info("ComfyUI backend ready: %s, model %s", self.pool.describe(), self.builder.family)

    async def _check_server(self, client: ComfyUIClient) -> list[str]:
        info = await client.get_object_info()
        probe = GenerationRequest(prompt="probe", seed=0, width=self.config.generation.width,
                                  height=self.config.generation.height, steps=self.config.generation.steps,
                                  cfg=self.config.generation.cfg)
        graph = self.builder.build_txt2img(probe, prefix="dream-window/probe", want_latent=self._want_latent).graph
        problems = check_model_files(graph, info)
        if problems:
            return problems
        result = validate_graph(graph, info, file_exists=lambda kind, name: True)
        if not result.ok:
            from dream_window.backends.comfyui.validation import render_error

            return [render_error(result.error, result.node_errors, info, graph)]
        return []

    async def close(self) -> None:
        await self._drop_speculations()
        await self.pool.close()

    async def health(self) -> BackendHealth:
        return BackendHealth(self.pool.up_count() > 0, self.pool.describe())

    def set_progress_callback(self, callback: ProgressCallback | None) -> None:
        self._progress = callback

    def set_preview_callback(self, callback: PreviewCallback | None) -> None:
        self._preview = callback

    async def interrupt(self) -> None:
        """Interrupt our prompts only (other users of the server keep theirs); speculations are dropped."""
        await self._drop_speculations()
        for s in self.pool.servers:
            ids = s.client.in_flight_ids()
            if not s.up or not ids:
                continue
            with contextlib.suppress(ComfyUIError):
                await s.client.delete_queued(ids)
                for pid in ids:
                    await s.client.interrupt(pid)

    async def free_memory(self) -> None:
        await self._drop_speculations()
        for s in self.pool.servers:
            if s.up:
                with contextlib.suppress(ComfyUIError):
                    await s.client.free()

    # --- helpers ------------------------------------------------------------------------------

    def _prefix(self, kind: str) -> str:
        return f"dream-window/{self._tag}/{kind}"

    def _on_progress(self, value: int, maximum: int) -> None:
        if self._progress is not None:
            self._progress(value, maximum)

    def _on_preview(self, preview: Preview) -> None:
        if self._preview is not None:
            self._preview(preview.image, preview.mime)

    def _remember(self, image: Image.Image, server: Server, ref: OutputFile) -> None:
        self._known[id(image)] = _Known(weakref.ref(image), server.url, ref)
        if len(self._known) > 32:  # only the last few frames are ever fed back
            for key in list(self._known)[:-16]:
                del self._known[key]

    def _where(self, image: Image.Image) -> _Known | None:
        k = self._known.get(id(image))
        return k if k is not None and k.image() is image else None

    def _server_for(self, image: Image.Image | None) -> Server | None:
        k = self._where(image) if image is not None else None
        return next((s for s in self.pool.servers if k is not None and s.url == k.server and s.up), None)

    async def _image_on(self, server: Server, image: Image.Image) -> str:
        """A LoadImage name for ``image`` on ``server``: its own output when it came from there,
        else an upload into a small ring of names (overwritten, never accumulating)."""
        k = self._where(image)
        if k is not None and k.server == server.url:
            return k.ref.annotated()
        buf = io.BytesIO()
        await asyncio.to_thread(image.convert("RGB").save, buf, "PNG", compress_level=1)
        self._slot = (self._slot + 1) % (_UPLOAD_SLOTS * max(1, len(self.pool.servers)))
        ref = await server.client.upload_image(buf.getvalue(), f"in_{self._slot}.png", overwrite=True,
                                               subfolder=f"dream-window/{self._tag}")
        return ref.annotated()

    async def _run(self, server: Server, built: BuiltGraph, holder: dict[str, Any] | None = None, *,
                   front: bool = False) -> PromptResult:
        """Queue and wait; ``holder`` learns the server and prompt id (to cancel a speculation).
        ``front``: encode/decode jump ahead of queued speculative frames (the display waits on them)."""
        client = server.client
        pid = await client.queue_prompt(built.graph, extra_data=self._extra, on_progress=self._on_progress,
                                        on_preview=self._on_preview, front=front)
        if holder is not None:
            holder.update(server=server, id=pid)
        return await client.wait_for_completion(pid, timeout=self._timeout)

    @staticmethod
    def _png(data: bytes, what: str) -> Image.Image:
        try:
            with Image.open(io.BytesIO(data)) as img:
                return img.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise ComfyUIError(f"ComfyUI returned an unreadable image for {what}: {exc}") from exc

    async def _images(self, server: Server, refs: list[OutputFile]) -> list[Image.Image]:
        blobs = await asyncio.gather(*(server.client.download(r) for r in refs))
        return await asyncio.gather(*(asyncio.to_thread(self._png, b, r.filename) for b, r in zip(blobs, refs,
                                                                                                  strict=True)))

    async def _latents(self, server: Server, result: PromptResult, nodes: tuple[str, ...]) -> np.ndarray | None:
        refs = [ref for nid in nodes for ref in result.files(nid, "latents")]
        if not refs:
            return None
        blobs = await asyncio.gather(*(server.client.download(r) for r in refs))
        try:
            return np.concatenate([latent_file.loads(b) for b in blobs], axis=0)
        except ValueError as exc:
            raise ComfyUIError(f"ComfyUI returned an unreadable latent file: {exc}", server=server.url) from exc

    # --- generation ---------------------------------------------------------------------------

    async def _generate_on(self, server: Server, request: GenerationRequest, image: Image.Image | OutputFile | None,
                           spec: _Speculation | None = None) -> GeneratedImage:
        """One frame on ``server``. ``image`` is a PIL image, or (for speculation) the server file of
        a frame that has not been downloaded yet."""
        t0 = time.perf_counter()
        if image is None:
            if isinstance(self.builder, CustomWorkflow) and self.builder.needs_image:
                grey = Image.new("RGB", (request.width, request.height), (128, 128, 128))
                built = self.builder.build_txt2img(request, prefix=self._prefix("frame"),
                                                   image=await self._image_on(server, grey))
            else:
                built = self.builder.build_txt2img(request, prefix=self._prefix("frame"), want_latent=self._want_latent)
        else:
            name = image.annotated() if isinstance(image, OutputFile) else await self._image_on(server, image)
            built = self.builder.build_img2img(request, name, prefix=self._prefix("frame"),
                                               want_latent=self._want_latent)
        result = await self._run(server, built, spec.prompt if spec is not None else None)
        refs = result.files(built.image_node) if built.image_node else []
        if not refs:
            raise ExecutionFailed(f"ComfyUI at {server.url}: prompt {result.prompt_id} produced no image",
                                  server=server.url, prompt_id=result.prompt_id)
        # The server is free now: queue the likely next frame before we download this one.
        follow = self._plan_after(request, image is not None, server, refs[0], spec)
        images, latent = await asyncio.gather(self._images(server, refs[:1]),
                                              self._latents(server, result, built.latent_nodes))
        out = images[0]
        self._remember(out, server, refs[0])
        if follow is not None:
            follow.source = id(out)
        meta: dict[str, Any] = {"server": server.url, "prompt_id": result.prompt_id, "file": refs[0].annotated()}
        if spec is not None:
            meta["speculative"] = True
        return GeneratedImage(out, request, (time.perf_counter() - t0) * 1000.0, latent, meta)

    async def txt2img(self, request: GenerationRequest) -> GeneratedImage:
        hit = await self._take_speculation("txt2img", request, None)
        if hit is not None:
            return hit
        return await self.pool.run(lambda s: self._generate_on(s, request, None))

    async def img2img(self, image: Image.Image, request: GenerationRequest) -> GeneratedImage:
        hit = await self._take_speculation("img2img", request, image)
        if hit is not None:
            return hit
        return await self.pool.run(lambda s: self._generate_on(s, request, image), prefer=self._server_for(image))

    async def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            raise ValueError("encode needs at least one image")

        async def work(server: Server) -> np.ndarray:
            names = [await self._image_on(server, im) for im in images]
            built = self.builder.build_encode(names, prefix=self._prefix("latent"))
            result = await self._run(server, built, front=True)
            z = await self._latents(server, result, built.latent_nodes)
            if z is None or z.shape[0] != len(images):
                raise ExecutionFailed(f"ComfyUI at {server.url}: encode returned no latents", server=server.url)
            return z

        return await self.pool.run(work, prefer=self._server_for(images[0]))

    async def decode(self, latents: np.ndarray) -> list[Image.Image]:
        z = np.asarray(latents, dtype=np.float32)
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(f"expected latents shaped [N, {self.latent_channels}, H, W], got {list(z.shape)}")
        blob = latent_file.dumps(z)

        async def work(server: Server) -> list[Image.Image]:
            self._slot = (self._slot + 1) % (_UPLOAD_SLOTS * max(1, len(self.pool.servers)))
            ref = await server.client.upload_image(blob, f"lat_{self._slot}.latent", overwrite=True,
                                                   subfolder=f"dream-window/{self._tag}",
                                                   mime="application/octet-stream")
            built = self.builder.build_decode(ref.annotated(), prefix=self._prefix("inbetween"))
            result = await self._run(server, built, front=True)
            refs = result.files(built.image_node) if built.image_node else []
            if len(refs) != z.shape[0]:
                raise ExecutionFailed(f"ComfyUI at {server.url}: decode gave {len(refs)} images for {z.shape[0]} "
                                      "latents", server=server.url, prompt_id=result.prompt_id)
            return await self._images(server, refs)

        return await self.pool.run(work)

    # --- speculation --------------------------------------------------------------------------

    def _next_seed(self, seed: int) -> int:
        policy = self.config.generation.seed_policy
        if policy is SeedPolicy.FIXED:
            return seed
        if policy is SeedPolicy.INCREMENT:
            return (seed + 1) % 2**63
        return self._rng.randrange(0, 2**63)

    def _matches(self, spec: _Speculation, kind: str, request: GenerationRequest, image: Image.Image | None) -> bool:
        if spec.kind != kind or (image is not None and spec.source != id(image)):
            return False
        want = request
        if self.config.generation.seed_policy is SeedPolicy.RANDOM:
            want = dataclasses.replace(request, seed=spec.request.seed)  # any fresh seed is as good as another
        return want == spec.request

    async def _take_speculation(self, kind: str, request: GenerationRequest,
                                image: Image.Image | None) -> GeneratedImage | None:
        if not self._specs:
            return None
        spec = self._specs[0]
        if not self._matches(spec, kind, request, image):
            await self._drop_speculations()
            return None
        self._specs.pop(0)
        try:
            return await spec.task
        except ExecutionFailed as exc:
            if exc.interrupted:
                # We were interrupted on purpose (a pause for a game): queuing the same work again
                # would put it right back on the player's GPU.
                await self._drop_speculations()
                raise
            log.debug("speculative %s failed (%s); generating directly", kind, exc)
            await self._drop_speculations()
            return None
        except ComfyUIError as exc:
            log.debug("speculative %s failed (%s); generating directly", kind, exc)
            await self._drop_speculations()
            return None

    def _plan_after(self, request: GenerationRequest, was_img2img: bool, server: Server, ref: OutputFile,
                    spec: _Speculation | None) -> _Speculation | None:
        """Queue what the mode will most likely ask for next; returns the img2img follow-up whose
        source image is this frame (bound once it is downloaded)."""
        if not self._speculate:
            return None
        newest = (spec is self._specs[-1]) if self._specs else True
        if self._mode in (Mode.IMG2IMG, Mode.HYBRID):
            # A feedback chain: n+1 needs n. Keep the next one or two queued behind the running one.
            if not newest or len(self._specs) >= 2:
                return None
            nxt = dataclasses.replace(request, seed=self._next_seed(request.seed),
                                      denoise=self.config.generation.denoise)
            return self._start_spec("img2img", nxt, server, ref)
        if self._mode is Mode.INTERPOLATE and not was_img2img:
            # Independent keyframes: one in flight per healthy server.
            depth = max(1, self.pool.up_count())
            last = self._specs[-1].request if self._specs else request
            while len(self._specs) < depth:
                last = dataclasses.replace(last, seed=self._next_seed(last.seed))
                self._start_spec("txt2img", last, None, None)
        return None

    def _start_spec(self, kind: str, request: GenerationRequest, server: Server | None,
                    ref: OutputFile | None) -> _Speculation:
        spec = _Speculation(kind, request, None, None)  # type: ignore[arg-type]

        async def work() -> GeneratedImage:
            return await self.pool.run(lambda s: self._generate_on(s, request, ref, spec), prefer=server)

        spec.task = asyncio.create_task(work(), name=f"speculative {kind}")
        self._specs.append(spec)
        return spec

    async def _drop_speculations(self) -> None:
        specs, self._specs = self._specs, []
        for spec in specs:
            server, pid = spec.prompt.get("server"), spec.prompt.get("id")
            spec.task.cancel()
            if server is not None and pid is not None and server.up:
                with contextlib.suppress(ComfyUIError):
                    await server.client.delete_queued([pid])
                    await server.client.interrupt(pid)
        if specs:
            await asyncio.gather(*(s.task for s in specs), return_exceptions=True)
