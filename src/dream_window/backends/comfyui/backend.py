"""ComfyUIBackend: the GenerationBackend that makes real frames on one or more ComfyUI servers.

What it does beyond "queue, wait, download":

* **Nothing piles up on the server.** Frames come back through PreviewImage into ComfyUI's temp/
  folder, which ComfyUI wipes at every start (``comfyui.keep_outputs`` switches to SaveImage).
  ComfyUI has no delete API, so uploads overwrite a small ring of names, and latents (SaveLatent:
  ``output/latents``, no temp variant) are asked for only where a mode uses them.
* **No re-uploads.** The image a mode feeds back is nearly always the one we just returned; the
  backend remembers where it lives and references it in LoadImage as ``"name [temp]"``. When that
  file is gone (a server restart wiped temp/), the rejected prompt is rebuilt with an upload.
* **Latents from the same prompt.** When keyframe latents are needed (hybrid, and interpolate
  without the latent walk, with the backend's own VAE) the generation graph has a SaveLatent branch;
  the ``.latent`` file comes back with the frame, so ``encode`` is not needed for keyframes.
  ``encode``/``decode`` run on the server's own VAE (no second copy in our process): decode uploads
  one ``[N, C, H, W]`` latent file and gets N frames from one prompt.
* **The server never waits for us.** As soon as frame n has executed, the frame the mode will most
  likely ask for next (same prompt and settings, next seed, grown from frame n) is queued
  speculatively, referencing n's output by name — before n is even downloaded. If the mode asks for
  something else (a new prompt, an injected frame), the speculation is interrupted and dropped. For
  independent frames (interpolate mode's keyframes) one speculation per healthy server keeps every
  server busy.
* **Latent walks** (interpolate mode, :class:`~dream_window.interpolation.latent_walk.SupportsLatentWalk`):
  every frame of a segment is its own prompt (conditioning lerped, starting noise slerped and
  uploaded once per server as one ``.latent`` batch), all issued at once across the pool, least busy
  server first, so N servers give ~N× frames/s. While the mode consumes segment k, segment k+1
  (same prompt, next seed) is already queued behind it; a different request drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import io
import logging
import random
import socket
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

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
from dream_window.config import DreamConfig, Mode, SeedPolicy, home_dir
from dream_window.errors import ComfyUIError, ConfigError, ExecutionFailed, WorkflowRejected
from dream_window.values.generation import (
    BackendHealth,
    GeneratedImage,
    GenerationRequest,
    PreviewCallback,
    ProgressCallback,
)

log = logging.getLogger(__name__)

_UPLOAD_SLOTS = 4


def _images_of(
    server: Server, built: BuiltGraph, result: PromptResult, *, what: str, expect: int | None = None
) -> list[OutputFile]:
    """The images ``built``'s output node produced: at least one, or exactly ``expect``."""
    refs = result.files(built.image_node) if built.image_node else []
    if (expect is None and not refs) or (expect is not None and len(refs) != expect):
        wanted = "an image" if expect is None else f"{expect} images"
        raise ExecutionFailed(
            f"ComfyUI at {server.url}: {what} gave {len(refs)} image(s), expected {wanted}",
            server=server.url,
            prompt_id=result.prompt_id,
        )
    return refs


def _install_tag() -> str:
    """Names this installation on the server. Stable across restarts, so each start overwrites the
    same ring of ``input/`` names (a fresh name per start would grow the folder without bound:
    ComfyUI has no delete API); distinct between machines and homes that share one server."""
    key = f"{socket.gethostname()}|{home_dir().resolve()}"
    return hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass
class _Known:
    image: weakref.ref[Image.Image]
    server: str
    ref: OutputFile


@dataclass(eq=False)
class _Walk:
    """One segment of a latent walk in flight: a frame task per ``t``."""

    start: GenerationRequest
    end: GenerationRequest  # as the mode asked (its seed chains the next speculative segment)
    ts: tuple[float, ...]
    noise: np.ndarray | None  # [len(ts), C, h, w], pre-scaled; None for flow models
    speculative: bool = False
    tasks: list[asyncio.Task[GeneratedImage]] = field(default_factory=list)
    uploads: dict[str, asyncio.Task[str]] = field(default_factory=dict)  # server url -> LoadLatent name
    prompts: list[dict[str, Any]] = field(default_factory=list)  # per frame {"server", "id"} once queued
    # Set when every frame is queued (or failed): a speculative segment queues behind it.
    queued: asyncio.Event = field(default_factory=asyncio.Event)
    after: _Walk | None = None
    cancelled: bool = False
    n_queued: int = 0


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
        self._tag = _install_tag()
        self._counter = 0
        self._slot = 0
        self._known: dict[int, _Known] = {}
        self._progress: ProgressCallback | None = None
        self._preview: PreviewCallback | None = None
        self._speculate = speculate
        self._specs: list[_Speculation] = []
        c = config.comfyui
        self._timeout = c.generation_timeout
        self._extra: dict[str, Any] = (
            {} if c.preview_method == "none" else {"preview_method": c.preview_method}
        )
        mode = config.generation.mode
        self._mode = mode
        # interpolation.walk: auto/on use the walk when the graphs can express it (not a custom workflow).
        self.latent_walk_available = config.interpolation.walk != "off" and not isinstance(
            builder, CustomWorkflow
        )
        self._want_latent = self._keyframe_latents_used(config)
        self._walks: list[_Walk] = []  # [current?, speculative?]
        self._walk_slot = 0
        self._epoch = 0  # bumped by interrupt(): work started before it must not queue after it

    def _keyframe_latents_used(self, config: DreamConfig) -> bool:
        """Whether a mode will slerp our keyframes' latents. Each one is a SaveLatent file in the
        server's output/latents, which nothing ever deletes, so ask only then: hybrid with
        in-betweens, or interpolate without the walk, and only when the in-betweens use the
        backend's own VAE (a local VAE encodes for itself). The walk's keyframes need none (an
        injected frame, rare, costs one encode instead)."""
        if config.interpolation.encoder not in ("auto", "backend"):
            return False
        if self._mode is Mode.HYBRID:
            return config.generation.keyframe_interval > 1
        return self._mode is Mode.INTERPOLATE and not self.latent_walk_available

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (fast failure when nothing answers), then check our graphs against each server's
        live object_info so a missing model file is named now, not at the first frame."""
        if self.config.interpolation.walk == "on" and isinstance(self.builder, CustomWorkflow):
            raise ConfigError(
                "interpolation.walk is 'on' but a custom comfyui.workflow cannot express a latent "
                "walk; set it to 'auto' (slerp keyframe latents instead) or use a built-in model"
            )
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
        probe = GenerationRequest(
            prompt="probe",
            seed=0,
            width=self.config.generation.width,
            height=self.config.generation.height,
            steps=self.config.generation.steps,
            cfg=self.config.generation.cfg,
        )
        graphs = [
            self.builder.build_txt2img(
                probe, prefix="dream-window/probe", want_latent=self._want_latent
            ).graph
        ]
        if (
            self._mode is Mode.INTERPOLATE
            and self.latent_walk_available
            and not isinstance(self.builder, CustomWorkflow)
        ):
            other = dataclasses.replace(probe, prompt="probe b", seed=1)
            graphs.append(
                self.builder.build_walk_frame(
                    probe, other, 0.5, prefix="dream-window/probe", noise="probe.latent", want_latent=True
                ).graph
            )
        problems = check_model_files(graphs[0], info)
        if problems:
            return problems
        for graph in graphs:
            result = validate_graph(graph, info, file_exists=lambda kind, name: True)
            if not result.ok:
                from dream_window.backends.comfyui.validation import render_error

                return [render_error(result.error, result.node_errors, info, graph)]
        return []

    async def close(self) -> None:
        await self._drop_speculations()
        await self._drop_walks()
        await self.pool.close()

    async def health(self) -> BackendHealth:
        return BackendHealth(self.pool.up_count() > 0, self.pool.describe())

    def set_progress_callback(self, callback: ProgressCallback | None) -> None:
        self._progress = callback

    def set_preview_callback(self, callback: PreviewCallback | None) -> None:
        self._preview = callback

    async def interrupt(self) -> None:
        """Interrupt our prompts only (other users of the server keep theirs); speculations are dropped,
        and every walk in flight fails with ``ExecutionFailed(interrupted=True)`` without queueing more."""
        self._epoch += 1
        for w in self._walks:
            w.cancelled = True  # before any await: no frame of theirs queues from here on
        await self._drop_speculations()
        await self._drop_walks()
        for s in self.pool.servers:
            ids = s.client.in_flight_ids()
            if not s.up or not ids:
                continue
            with contextlib.suppress(ComfyUIError):
                await s.client.delete_queued(ids)
            for pid in ids:
                with contextlib.suppress(ComfyUIError):
                    await s.client.interrupt(pid)

    async def free_memory(self) -> None:
        await self._drop_speculations()
        await self._drop_walks()
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

    def _forget(self, server: Server) -> None:
        """``server`` lost our files (a restart wipes temp/): stop referencing them by name."""
        for key in [k for k, v in self._known.items() if v.server == server.url]:
            del self._known[key]

    def _server_for(self, image: Image.Image | None) -> Server | None:
        k = self._where(image) if image is not None else None
        return next((s for s in self.pool.servers if k is not None and s.url == k.server and s.up), None)

    async def _image_on(self, server: Server, image: Image.Image) -> str:
        """A LoadImage name for ``image`` on ``server``: its own (temp) output when it came from
        there, else an upload into a small ring of names (overwritten, never accumulating)."""
        k = self._where(image)
        if k is not None and k.server == server.url:
            return k.ref.annotated()
        buf = io.BytesIO()
        await asyncio.to_thread(image.convert("RGB").save, buf, "PNG", compress_level=1)
        self._slot = (self._slot + 1) % (_UPLOAD_SLOTS * max(1, len(self.pool.servers)))
        ref = await server.client.upload_image(
            buf.getvalue(), f"in_{self._slot}.png", overwrite=True, subfolder=f"dream-window/{self._tag}"
        )
        return ref.annotated()

    async def _run_fed(
        self,
        server: Server,
        images: Sequence[Image.Image | OutputFile],
        build: Callable[[list[str]], BuiltGraph],
        holder: dict[str, Any] | None = None,
        *,
        front: bool = False,
    ) -> tuple[BuiltGraph, PromptResult]:
        """:meth:`_run` for a graph that loads ``images`` by name. Our frames live in the server's
        temp/, which a restart wipes: when the server rejects a LoadImage input, forget what we
        knew was there, upload the pictures and run once more. (A server file we hold no pixels
        for, i.e. a speculation's source, cannot be re-sent: that rejection goes to the caller.)"""
        retried = False
        while True:
            names = [
                im.annotated() if isinstance(im, OutputFile) else await self._image_on(server, im)
                for im in images
            ]
            built = build(names)
            try:
                return built, await self._run(server, built, holder, front=front)
            except WorkflowRejected as exc:
                lost = any(
                    built.graph.get(nid, {}).get("class_type") == "LoadImage" for nid in exc.node_errors
                )
                if retried or not lost or not all(isinstance(im, Image.Image) for im in images):
                    raise
                retried = True
                log.info(
                    "ComfyUI at %s no longer has our previous frame (restarted: temp/ is wiped); "
                    "uploading it",
                    server.url,
                )
                self._forget(server)

    async def _run(
        self,
        server: Server,
        built: BuiltGraph,
        holder: dict[str, Any] | None = None,
        *,
        front: bool = False,
        on_queued: Callable[[], None] | None = None,
    ) -> PromptResult:
        """Queue and wait; ``holder`` learns the server and prompt id (to cancel a speculation) —
        before the POST, since the id is ours, so a cancel racing the POST still knows what to delete.
        ``front``: encode/decode jump ahead of queued speculative frames (the display waits on them)."""
        client = server.client
        pid = str(uuid.uuid4())
        if holder is not None:
            holder.update(server=server, id=pid)
        pid = await client.queue_prompt(
            built.graph,
            prompt_id=pid,
            extra_data=self._extra,
            on_progress=self._on_progress,
            on_preview=self._on_preview,
            front=front,
        )
        if holder is not None:
            holder.update(server=server, id=pid)
        if on_queued is not None:
            on_queued()
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
        return await asyncio.gather(
            *(asyncio.to_thread(self._png, b, r.filename) for b, r in zip(blobs, refs, strict=True))
        )

    async def _latents(
        self, server: Server, result: PromptResult, nodes: tuple[str, ...]
    ) -> np.ndarray | None:
        refs = [ref for nid in nodes for ref in result.files(nid, "latents")]
        if not refs:
            return None
        blobs = await asyncio.gather(*(server.client.download(r) for r in refs))
        try:
            return np.concatenate([latent_file.loads(b) for b in blobs], axis=0)
        except ValueError as exc:
            raise ComfyUIError(
                f"ComfyUI returned an unreadable latent file: {exc}", server=server.url
            ) from exc

    # --- generation ---------------------------------------------------------------------------

    async def _generate_on(
        self,
        server: Server,
        request: GenerationRequest,
        image: Image.Image | OutputFile | None,
        spec: _Speculation | None = None,
    ) -> GeneratedImage:
        """One frame on ``server``. ``image`` is a PIL image, or (for speculation) the server file of
        a frame that has not been downloaded yet."""
        t0 = time.perf_counter()
        holder = spec.prompt if spec is not None else None
        if image is None:
            if isinstance(self.builder, CustomWorkflow) and self.builder.needs_image:
                grey = Image.new("RGB", (request.width, request.height), (128, 128, 128))
                built = self.builder.build_txt2img(
                    request, prefix=self._prefix("frame"), image=await self._image_on(server, grey)
                )
            else:
                built = self.builder.build_txt2img(
                    request, prefix=self._prefix("frame"), want_latent=self._want_latent
                )
            result = await self._run(server, built, holder)
        else:

            def build(names: list[str]) -> BuiltGraph:
                return self.builder.build_img2img(
                    request, names[0], prefix=self._prefix("frame"), want_latent=self._want_latent
                )

            built, result = await self._run_fed(server, [image], build, holder)
        refs = _images_of(server, built, result, what=f"prompt {result.prompt_id}")
        # The server is free now: queue the likely next frame before we download this one.
        follow = self._plan_after(request, image is not None, server, refs[0], spec)
        images, latent = await asyncio.gather(
            self._images(server, refs[:1]), self._latents(server, result, built.latent_nodes)
        )
        out = images[0]
        self._remember(out, server, refs[0])
        if follow is not None:
            follow.source = id(out)
        meta: dict[str, Any] = {
            "server": server.url,
            "prompt_id": result.prompt_id,
            "file": refs[0].annotated(),
        }
        if spec is not None:
            meta["speculative"] = True
        return GeneratedImage(out, request, (time.perf_counter() - t0) * 1000.0, latent, meta)

    async def txt2img(self, request: GenerationRequest) -> GeneratedImage:
        if self._mode is Mode.INTERPOLATE and self.latent_walk_available:
            # Interpolate's keyframes are walk endpoints: the same noise convention as the walk
            # frames (ours, slerpable), so the walk out of this keyframe starts exactly on it.
            return (await self.latent_walk(request, request, [1.0]))[0]
        hit = await self._take_speculation("txt2img", request, None)
        if hit is not None:
            return hit
        return await self.pool.run(lambda s: self._generate_on(s, request, None))

    async def img2img(self, image: Image.Image, request: GenerationRequest) -> GeneratedImage:
        hit = await self._take_speculation("img2img", request, image)
        if hit is not None:
            return hit
        return await self.pool.run(
            lambda s: self._generate_on(s, request, image), prefer=self._server_for(image)
        )

    async def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            raise ValueError("encode needs at least one image")

        async def work(server: Server) -> np.ndarray:
            built, result = await self._run_fed(
                server,
                images,
                lambda names: self.builder.build_encode(names, prefix=self._prefix("latent")),
                front=True,
            )
            z = await self._latents(server, result, built.latent_nodes)
            if z is None or z.shape[0] != len(images):
                raise ExecutionFailed(
                    f"ComfyUI at {server.url}: encode returned no latents", server=server.url
                )
            return z

        return await self.pool.run(work, prefer=self._server_for(images[0]))

    async def decode(self, latents: np.ndarray) -> list[Image.Image]:
        z = np.asarray(latents, dtype=np.float32)
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected latents shaped [N, {self.latent_channels}, H, W], got {list(z.shape)}"
            )
        blob = latent_file.dumps(z)

        async def work(server: Server) -> list[Image.Image]:
            self._slot = (self._slot + 1) % (_UPLOAD_SLOTS * max(1, len(self.pool.servers)))
            ref = await server.client.upload_image(
                blob,
                f"lat_{self._slot}.latent",
                overwrite=True,
                subfolder=f"dream-window/{self._tag}",
                mime="application/octet-stream",
            )
            built = self.builder.build_decode(ref.annotated(), prefix=self._prefix("inbetween"))
            result = await self._run(server, built, front=True)
            refs = _images_of(
                server, built, result, what=f"decode of {z.shape[0]} latents", expect=z.shape[0]
            )
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

    def _matches(
        self, spec: _Speculation, kind: str, request: GenerationRequest, image: Image.Image | None
    ) -> bool:
        if spec.kind != kind or (image is not None and spec.source != id(image)):
            return False
        want = request
        if self.config.generation.seed_policy is SeedPolicy.RANDOM:
            want = dataclasses.replace(
                request, seed=spec.request.seed
            )  # any fresh seed is as good as another
        return want == spec.request

    async def _take_speculation(
        self, kind: str, request: GenerationRequest, image: Image.Image | None
    ) -> GeneratedImage | None:
        if not self._specs:
            return None
        spec = self._specs[0]
        if not self._matches(spec, kind, request, image):
            await self._drop_speculations()
            return None
        self._specs.pop(0)
        try:
            return await spec.task
        except asyncio.CancelledError:
            # Our caller was cancelled (a stop) after the speculation became ours: _drop_speculations
            # no longer sees it, so take its prompt off the server here, then let the cancel through.
            spec.task.cancel()
            await self._unqueue(spec.prompt)
            raise
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

    def _plan_after(
        self,
        request: GenerationRequest,
        was_img2img: bool,
        server: Server,
        ref: OutputFile,
        spec: _Speculation | None,
    ) -> _Speculation | None:
        """Queue what the mode will most likely ask for next; returns the img2img follow-up whose
        source image is this frame (bound once it is downloaded)."""
        if not self._speculate:
            return None
        newest = (spec is self._specs[-1]) if self._specs else True
        if self._mode in (Mode.IMG2IMG, Mode.HYBRID):
            # A feedback chain: n+1 needs n. Keep the next one or two queued behind the running one.
            if not newest or len(self._specs) >= 2:
                return None
            nxt = dataclasses.replace(
                request, seed=self._next_seed(request.seed), denoise=self.config.generation.denoise
            )
            return self._start_spec("img2img", nxt, server, ref)
        if self._mode is Mode.INTERPOLATE and not was_img2img and not self.latent_walk_available:
            # Independent keyframes: one in flight per healthy server.
            depth = max(1, self.pool.up_count())
            last = self._specs[-1].request if self._specs else request
            while len(self._specs) < depth:
                last = dataclasses.replace(last, seed=self._next_seed(last.seed))
                self._start_spec("txt2img", last, None, None)
        return None

    def _start_spec(
        self, kind: str, request: GenerationRequest, server: Server | None, ref: OutputFile | None
    ) -> _Speculation:
        spec = _Speculation(kind, request, None, None)  # type: ignore[arg-type]

        async def work() -> GeneratedImage:
            return await self.pool.run(lambda s: self._generate_on(s, request, ref, spec), prefer=server)

        spec.task = asyncio.create_task(work(), name=f"speculative {kind}")
        self._specs.append(spec)
        return spec

    @staticmethod
    async def _unqueue(holder: dict[str, Any]) -> None:
        """Take a prompt off its server: deleted if queued, interrupted if running (each attempted
        on its own, so one failing request does not leave the prompt to run)."""
        server, pid = holder.get("server"), holder.get("id")
        if server is None or pid is None or not server.up:
            return
        with contextlib.suppress(ComfyUIError):
            await server.client.delete_queued([pid])
        with contextlib.suppress(ComfyUIError):
            await server.client.interrupt(pid)

    async def _drop_speculations(self) -> None:
        specs, self._specs = self._specs, []
        for spec in specs:
            spec.task.cancel()
            await self._unqueue(spec.prompt)
        if specs:
            await asyncio.gather(*(s.task for s in specs), return_exceptions=True)

    # --- latent walk (SupportsLatentWalk) -------------------------------------------------------

    async def latent_walk(
        self, start: GenerationRequest, end: GenerationRequest, ts: Sequence[float]
    ) -> list[GeneratedImage]:
        """One real generation per ``t``: conditioning ``lerp(cond(start), cond(end), t)``, starting
        noise ``slerp(noise(start.seed), noise(end.seed), t)`` (Flux: one seed, ``start.seed``, for
        the whole walk). Frames are independent prompts spread over the pool at once. The returned
        images carry the request really used (for Flux, the walk's seed)."""
        if not self.latent_walk_available:
            raise ConfigError(
                "this ComfyUI setup cannot do a latent walk (interpolation.walk is off, or a "
                "custom workflow is configured)"
            )
        tvals = tuple(float(t) for t in ts)
        if not tvals or any(not 0.0 <= t <= 1.0 for t in tvals):
            raise ValueError(f"latent_walk needs t values in [0, 1], got {list(tvals)}")
        if (start.width, start.height) != (end.width, end.height):
            raise ValueError(
                f"latent_walk: start is {start.width}x{start.height} but end is {end.width}x{end.height}"
            )
        epoch = self._epoch
        walk = await self._take_walk(start, end, tvals)
        if epoch != self._epoch:  # interrupted (a pause) while we dropped a stale speculation
            raise ExecutionFailed("ComfyUI latent walk interrupted", interrupted=True)
        if walk is None:
            walk = self._start_walk(start, end, tvals)
        if self._speculate:
            self._speculate_walk(walk)
        try:
            return await self._finish_walk(walk)
        finally:
            if walk in self._walks:
                self._walks.remove(walk)

    @property
    def _walker(self) -> WorkflowBuilder:
        if isinstance(self.builder, CustomWorkflow):
            raise ConfigError("a custom comfyui.workflow cannot express a latent walk")
        return self.builder

    def _walk_request(self, walk: _Walk) -> GenerationRequest:
        """The request the walk's ``t = 1`` frame really is (a Flux walk keeps the start's seed)."""
        if self._walker.walk_noise.prescale is None:
            return dataclasses.replace(walk.end, seed=walk.start.seed)
        return walk.end

    def _start_walk(
        self,
        start: GenerationRequest,
        end: GenerationRequest,
        ts: tuple[float, ...],
        *,
        after: _Walk | None = None,
    ) -> _Walk:
        conv = self._walker.walk_noise
        noise = None if conv.prescale is None else conv.walk(start.seed, end.seed, ts, end.width, end.height)
        walk = _Walk(start, end, ts, noise, speculative=after is not None, after=after)
        walk.prompts = [{} for _ in ts]
        walk.tasks = [
            asyncio.create_task(self._walk_frame(walk, k), name=f"walk frame t={t:.3f}")
            for k, t in enumerate(ts)
        ]
        self._walks.append(walk)
        return walk

    def _speculate_walk(self, walk: _Walk) -> None:
        """Queue the segment the mode will most likely ask for next (from this one's end to the same
        prompt with the next seed), behind this one, so no server idles between segments."""
        if any(w is not walk for w in self._walks) or walk.ts[-1] != 1.0 or self.pool.up_count() == 0:
            return
        n = self.config.generation.interpolation_frames
        ts = (*(np.arange(1, n + 1, dtype=np.float64) / (n + 1)).tolist(), 1.0)
        nxt = dataclasses.replace(walk.end, seed=self._next_seed(walk.end.seed))
        self._start_walk(self._walk_request(walk), nxt, ts, after=walk)

    async def _take_walk(
        self, start: GenerationRequest, end: GenerationRequest, ts: tuple[float, ...]
    ) -> _Walk | None:
        spec = next((w for w in self._walks if w.speculative), None)
        if spec is None:
            return None
        want = end
        if self.config.generation.seed_policy is SeedPolicy.RANDOM:
            want = dataclasses.replace(end, seed=spec.end.seed)  # any fresh seed is as good as another
        if (
            spec.start == start
            and want == spec.end
            and len(spec.ts) == len(ts)
            and all(abs(a - b) < 1e-9 for a, b in zip(spec.ts, ts, strict=True))
        ):
            spec.speculative = False
            return spec
        await self._drop_walk(spec)
        return None

    async def _finish_walk(self, walk: _Walk) -> list[GeneratedImage]:
        try:
            await asyncio.wait(walk.tasks, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            await self._drop_walk(walk)
            raise
        if walk.cancelled:
            raise ExecutionFailed("ComfyUI latent walk interrupted", interrupted=True)
        errors = [
            t.exception() for t in walk.tasks if t.done() and not t.cancelled() and t.exception() is not None
        ]
        if errors:
            await self._drop_walk(walk)
            interrupted = [e for e in errors if isinstance(e, ExecutionFailed) and e.interrupted]
            raise (interrupted or errors)[0]  # type: ignore[misc]
        return [t.result() for t in walk.tasks]

    async def _walk_frame(self, walk: _Walk, k: int) -> GeneratedImage:
        t = walk.ts[k]
        if walk.after is not None:
            await walk.after.queued.wait()  # the segment shown first is queued first, on every server
        counted = False

        def queued() -> None:
            nonlocal counted
            if not counted:
                counted = True
                walk.n_queued += 1
                if walk.n_queued == len(walk.ts):
                    walk.queued.set()

        request = self._walk_request(walk) if t >= 1.0 else walk.end
        want_latent = self._want_latent and t >= 1.0

        async def work(server: Server) -> GeneratedImage:
            t0 = time.perf_counter()
            name = await self._walk_noise_on(server, walk) if walk.noise is not None else None
            if walk.cancelled:
                raise ExecutionFailed("ComfyUI latent walk interrupted", server=server.url, interrupted=True)
            built = self._walker.build_walk_frame(
                walk.start,
                walk.end,
                t,
                prefix=self._prefix("walk"),
                noise=name,
                index=k,
                want_latent=want_latent,
            )
            result = await self._run(server, built, walk.prompts[k], on_queued=queued)
            refs = _images_of(server, built, result, what=f"walk frame {result.prompt_id}")
            images, latent = await asyncio.gather(
                self._images(server, refs[:1]), self._latents(server, result, built.latent_nodes)
            )
            self._remember(images[0], server, refs[0])
            meta: dict[str, Any] = {
                "server": server.url,
                "prompt_id": result.prompt_id,
                "file": refs[0].annotated(),
                "walk_t": t,
            }
            return GeneratedImage(images[0], request, (time.perf_counter() - t0) * 1000.0, latent, meta)

        try:
            return await self.pool.run(work)
        finally:
            queued()

    async def _walk_noise_on(self, server: Server, walk: _Walk) -> str:
        """The LoadLatent name of the walk's noise batch on ``server``: uploaded once per server and
        segment into a small ring of names (at most two segments are alive, the ring holds four)."""
        task = walk.uploads.get(server.url)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            assert walk.noise is not None
            self._walk_slot = (self._walk_slot + 1) % (4 * max(1, len(self.pool.servers)))
            blob = latent_file.dumps(walk.noise)

            async def upload(name: str) -> str:
                ref = await server.client.upload_image(
                    blob,
                    name,
                    overwrite=True,
                    subfolder=f"dream-window/{self._tag}",
                    mime="application/octet-stream",
                )
                return ref.annotated()

            task = asyncio.create_task(upload(f"walk_{self._walk_slot}.latent"), name="walk noise upload")
            walk.uploads[server.url] = task
        # shield: one frame being cancelled must not cancel the upload its siblings wait for
        return await asyncio.shield(task)

    async def _drop_walk(self, walk: _Walk) -> None:
        """Cancel a walk's frames and take its prompts off the server (queued: deleted; running:
        interrupted). Ids are known before each POST, so a frame cancelled mid-POST is deleted too."""
        walk.cancelled = True
        for dependent in [w for w in self._walks if w.after is walk]:  # it would start from this walk's end
            await self._drop_walk(dependent)
        if walk in self._walks:
            self._walks.remove(walk)
        for task in (*walk.tasks, *walk.uploads.values()):
            task.cancel()
        await asyncio.gather(*walk.tasks, *walk.uploads.values(), return_exceptions=True)
        walk.queued.set()  # a speculative segment waiting behind this one must not wait forever
        by_server: dict[str, tuple[Server, list[str]]] = {}
        for holder in walk.prompts:
            server, pid = holder.get("server"), holder.get("id")
            if server is not None and pid is not None:
                by_server.setdefault(server.url, (server, []))[1].append(pid)
        for server, pids in by_server.values():
            if server.up:
                with contextlib.suppress(ComfyUIError):
                    await server.client.delete_queued(pids)
                for pid in pids:  # running ones; a failed delete must not skip them
                    with contextlib.suppress(ComfyUIError):
                        await server.client.interrupt(pid)

    async def _drop_walks(self) -> None:
        for walk in list(reversed(self._walks)):  # the speculative one first: it must not slip in
            await self._drop_walk(walk)
