"""Running one job on one server: build the graph, feed it our pictures, queue it, wait, download.

Everything between "this request on that server" and "a GeneratedImage in hand" lives here:

* **Feeding pictures.** A picture that came from the server is named in LoadImage
  (``"name [temp]"``, see :mod:`.server_files`); any other is uploaded into a ring of names. Our
  frames live in ComfyUI's temp/, which a restart wipes: when the server rejects a LoadImage
  input, :meth:`JobRunner.run_fed` forgets what it knew was there, uploads and runs once more.
* **Knowing the prompt id before the POST.** The id is ours (a uuid), so whoever may have to
  withdraw the job (a dropped plan, a walk, a cancelled caller) learns it through a
  :class:`JobHandle` before the request leaves, and a cancel racing the POST still knows what to
  delete.
* **Executed before downloaded.** ``on_executed`` fires as soon as the server has the frame, before
  we download it, so the next planned frame can be queued referencing it by name: the server never
  waits for our download.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from dream_window.backends.comfyui import latent_file
from dream_window.backends.comfyui.client import OutputFile, PromptResult
from dream_window.backends.comfyui.graphs import BuiltGraph, CustomWorkflow, WorkflowBuilder
from dream_window.backends.comfyui.messages import Preview
from dream_window.backends.comfyui.pool import Server, ServerPool
from dream_window.backends.comfyui.server_files import ImageLocations, UploadRing
from dream_window.errors import ComfyUIProtocolError, ExecutionFailed, WorkflowRejected
from dream_window.values.generation import (
    GeneratedImage,
    GenerationRequest,
    PreviewCallback,
    ProgressCallback,
)

log = logging.getLogger(__name__)

# (server, the image file just executed): the hook that queues the next planned frame.
ExecutedHook = Callable[[Server, OutputFile], None]


@dataclass
class JobHandle:
    """Where a job was queued, known before its POST: what withdrawing it needs."""

    server: Server | None = None
    prompt_id: str | None = None

    async def withdraw(self) -> None:
        if self.server is not None and self.prompt_id is not None and self.server.up:
            await self.server.client.withdraw([self.prompt_id])


def images_of(
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


def _png(data: bytes, what: str) -> Image.Image:
    """Decode a downloaded image in memory; anything unreadable (or a decompression bomb: a header
    claiming a gigantic size) is a protocol error."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ComfyUIProtocolError(f"ComfyUI returned an unreadable image for {what}: {exc}") from exc


class JobRunner:
    """Runs single jobs on the pool's servers; owns the knowledge of which server holds which file."""

    def __init__(
        self,
        pool: ServerPool,
        builder: WorkflowBuilder | CustomWorkflow,
        *,
        tag: str,
        timeout: float,
        preview_method: str,
    ) -> None:
        self.pool = pool
        self.builder = builder
        self.tag = tag
        self.locations = ImageLocations()
        self._images_ring = UploadRing("in", "png")
        self._latents_ring = UploadRing("lat", "latent")
        self._timeout = timeout
        self._extra: dict[str, Any] = {} if preview_method == "none" else {"preview_method": preview_method}
        self.progress: ProgressCallback | None = None
        self.preview: PreviewCallback | None = None

    # --- names on the server --------------------------------------------------------------------

    def prefix(self, kind: str) -> str:
        return f"dream-window/{self.tag}/{kind}"

    @property
    def subfolder(self) -> str:
        return f"dream-window/{self.tag}"

    def server_for(self, image: Image.Image | None) -> Server | None:
        """The up server that holds ``image`` (feeding it there needs no upload)."""
        where = self.locations.where(image) if image is not None else None
        return next((s for s in self.pool.servers if where is not None and s.url == where[0] and s.up), None)

    async def upload(self, server: Server, blob: bytes, ring: UploadRing, *, mime: str) -> str:
        ref = await server.client.upload_image(
            blob, ring.next_name(len(self.pool.servers)), overwrite=True, subfolder=self.subfolder, mime=mime
        )
        return ref.annotated()

    async def image_on(self, server: Server, image: Image.Image) -> str:
        """A LoadImage name for ``image`` on ``server``: its own (temp) output when it came from
        there, else an upload into the ring."""
        where = self.locations.where(image)
        if where is not None and where[0] == server.url:
            return where[1].annotated()
        buf = io.BytesIO()
        await asyncio.to_thread(image.convert("RGB").save, buf, "PNG", compress_level=1)
        return await self.upload(server, buf.getvalue(), self._images_ring, mime="image/png")

    async def upload_latents(self, server: Server, blob: bytes) -> str:
        return await self.upload(server, blob, self._latents_ring, mime="application/octet-stream")

    # --- run ------------------------------------------------------------------------------------

    async def run(
        self,
        server: Server,
        built: BuiltGraph,
        handle: JobHandle | None = None,
        *,
        front: bool = False,
        on_queued: Callable[[], None] | None = None,
    ) -> PromptResult:
        """Queue and wait. ``front``: encode/decode jump ahead of planned frames (the display
        waits on them). A caller cancelled while its prompt is queued or running takes the prompt
        off the server on its way out: nothing runs on the GPU for a frame nobody waits for."""
        client = server.client
        handle = handle if handle is not None else JobHandle()
        pid = str(uuid.uuid4())
        handle.server, handle.prompt_id = server, pid
        try:
            pid = await client.queue_prompt(
                built.graph,
                prompt_id=pid,
                extra_data=self._extra,
                on_progress=self._on_progress,
                on_preview=self._on_preview,
                front=front,
            )
            handle.prompt_id = pid
            if on_queued is not None:
                on_queued()
            return await client.wait_for_completion(pid, timeout=self._timeout)
        except asyncio.CancelledError:
            # Shielded: the withdrawal itself must not be cut short by the cancellation it serves.
            await asyncio.shield(handle.withdraw())
            raise

    async def run_fed(
        self,
        server: Server,
        images: Sequence[Image.Image | OutputFile],
        build: Callable[[list[str]], BuiltGraph],
        handle: JobHandle | None = None,
        *,
        front: bool = False,
    ) -> tuple[BuiltGraph, PromptResult]:
        """:meth:`run` for a graph that loads ``images`` by name, re-fed once after a server restart
        wiped them. (A server file we hold no pixels for, i.e. a planned frame's source, cannot be
        re-sent: that rejection goes to the caller.)"""
        retried = False
        while True:
            names = [
                im.annotated() if isinstance(im, OutputFile) else await self.image_on(server, im)
                for im in images
            ]
            built = build(names)
            try:
                return built, await self.run(server, built, handle, front=front)
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
                self.locations.forget(server.url)

    async def images(self, server: Server, refs: list[OutputFile]) -> list[Image.Image]:
        blobs = await asyncio.gather(*(server.client.download(r) for r in refs))
        return await asyncio.gather(
            *(asyncio.to_thread(_png, b, r.filename) for b, r in zip(blobs, refs, strict=True))
        )

    async def latents(
        self, server: Server, result: PromptResult, nodes: tuple[str, ...]
    ) -> np.ndarray | None:
        refs = [ref for nid in nodes for ref in result.files(nid, "latents")]
        if not refs:
            return None
        blobs = await asyncio.gather(*(server.client.download(r) for r in refs))
        try:
            return np.concatenate([latent_file.loads(b) for b in blobs], axis=0)
        except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
            # A header of the wrong shape: offsets missing or not a pair, a shape that does not fit.
            raise ComfyUIProtocolError(
                f"ComfyUI returned an unreadable latent file: {exc}", server=server.url
            ) from exc

    async def finish(
        self,
        server: Server,
        built: BuiltGraph,
        result: PromptResult,
        request: GenerationRequest,
        t0: float,
        *,
        on_executed: ExecutedHook | None = None,
        meta: dict[str, Any] | None = None,
    ) -> GeneratedImage:
        """Download the frame ``result`` holds (and its latent), remembering where it lives."""
        refs = images_of(server, built, result, what=f"prompt {result.prompt_id}")
        if on_executed is not None:
            on_executed(server, refs[0])  # the server is free now: the next planned frame can queue
        images, latent = await asyncio.gather(
            self.images(server, refs[:1]), self.latents(server, result, built.latent_nodes)
        )
        self.locations.remember(images[0], server.url, refs[0])
        info = {
            "server": server.url,
            "prompt_id": result.prompt_id,
            "file": refs[0].annotated(),
            **(meta or {}),
        }
        return GeneratedImage(images[0], request, (time.perf_counter() - t0) * 1000.0, latent, info)

    async def generate_on(
        self,
        server: Server,
        request: GenerationRequest,
        image: Image.Image | OutputFile | None,
        handle: JobHandle | None = None,
        *,
        on_executed: ExecutedHook | None = None,
        meta: dict[str, Any] | None = None,
    ) -> GeneratedImage:
        """One frame on ``server``: txt2img, or img2img from ``image`` (a picture, or the server file
        of a planned frame that has not been downloaded yet)."""
        t0 = time.perf_counter()
        builder = self.builder
        if image is None:
            if isinstance(builder, CustomWorkflow) and builder.needs_image:
                grey = Image.new("RGB", (request.width, request.height), (128, 128, 128))
                built = builder.build_txt2img(
                    request, prefix=self.prefix("frame"), image=await self.image_on(server, grey)
                )
            else:
                built = builder.build_txt2img(
                    request, prefix=self.prefix("frame"), want_latent=request.return_latent
                )
            result = await self.run(server, built, handle)
        else:

            def build(names: list[str]) -> BuiltGraph:
                return builder.build_img2img(
                    request, names[0], prefix=self.prefix("frame"), want_latent=request.return_latent
                )

            built, result = await self.run_fed(server, [image], build, handle)
        return await self.finish(server, built, result, request, t0, on_executed=on_executed, meta=meta)

    # --- callbacks --------------------------------------------------------------------------------

    def _on_progress(self, value: int, maximum: int) -> None:
        if self.progress is not None:
            self.progress(value, maximum)

    def _on_preview(self, preview: Preview) -> None:
        if self.preview is not None:
            self.preview(preview.image, preview.mime)
