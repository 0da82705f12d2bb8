"""``POST /upload/image`` and ``GET /view``: files in and out of the server's folders.

Recorded in ``04_img2img`` and ``10_history_after_runs``: an upload with the same name and the same
bytes keeps its name (no new file); different bytes get ``"name (1).png"``; ``overwrite`` is
``"true"`` or ``"1"``; ``type`` picks input/, temp/ or output/. /view answers ``image/png`` with a
``Content-Disposition: filename="…"`` header, and a missing file is 404 with an empty body.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from aiohttp import web

from comfyui_fake.faults import Faults
from comfyui_fake.records import Folders


def _folder(folders: Folders, kind: str) -> Path | None:
    return {"input": folders.input, "temp": folders.temp, "output": folders.output}.get(kind)


def _inside(base: Path, path: Path) -> bool:
    base = base.resolve()
    return path == base or base in path.parents


async def upload_image(request: web.Request, folders: Folders) -> web.Response:
    form = await request.post()
    image = form.get("image")
    kind = str(form.get("type") or "input")
    folder = _folder(folders, kind)
    if not isinstance(image, web.FileField) or folder is None:
        return web.Response(status=400)
    subfolder = str(form.get("subfolder") or "")
    overwrite = str(form.get("overwrite") or "").lower() in ("true", "1")
    target = (folder / subfolder).resolve()
    if not _inside(folder, target):
        return web.Response(status=400)
    target.mkdir(parents=True, exist_ok=True)
    data = image.file.read()
    filename = Path(image.filename).name
    path = target / filename
    if not overwrite:
        stem, ext = Path(filename).stem, Path(filename).suffix
        digest = hashlib.sha256(data).digest()
        n = 1
        while path.exists() and hashlib.sha256(path.read_bytes()).digest() != digest:
            filename = f"{stem} ({n}){ext}"
            path = target / filename
            n += 1
    path.write_bytes(data)
    return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})


async def view(request: web.Request, folders: Folders, faults: Faults) -> web.Response:
    q = request.query
    folder = _folder(folders, q.get("type", "output"))
    if folder is None or "filename" not in q:
        return web.Response(status=400)
    path = (folder / q.get("subfolder", "") / q["filename"]).resolve()
    if not _inside(folder, path) or not path.is_file():
        return web.Response(status=404)
    if faults.slow_view:
        await asyncio.sleep(faults.slow_view)
    return web.Response(
        body=path.read_bytes(),
        content_type="image/png" if path.suffix == ".png" else "application/octet-stream",
        headers={"Content-Disposition": f'filename="{path.name}"'},
    )
