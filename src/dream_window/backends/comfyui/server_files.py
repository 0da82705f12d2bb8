"""Our files on the ComfyUI servers: where each picture we returned lives, and the upload names.

* **Where each image lives.** The image a mode feeds back is nearly always one we just returned;
  :class:`ImageLocations` remembers the server file behind it, so LoadImage can name it
  (``"name [temp]"``) instead of uploading the pixels again. Keyed by the image object itself
  (a weak reference guards against a recycled ``id``); only the last few frames are ever fed back.
* **Upload names.** ComfyUI has no delete API, so every upload overwrites one of a small ring of
  names (:class:`UploadRing`) under a folder named for this installation (:func:`install_tag`):
  ``input/`` stays bounded however long the dream runs and however often it restarts.
"""

from __future__ import annotations

import hashlib
import socket
import weakref
from dataclasses import dataclass

from PIL import Image

from dream_window.backends.comfyui.client import OutputFile
from dream_window.user_dirs import home_dir

# Remembered frames: only the last one or two are ever fed back; the rest is slack for speculation.
_REMEMBER = 32
_KEEP_AFTER_TRIM = 16


def install_tag() -> str:
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


class ImageLocations:
    """Which server file each picture we handed out came from."""

    def __init__(self) -> None:
        self._known: dict[int, _Known] = {}

    def remember(self, image: Image.Image, server_url: str, ref: OutputFile) -> None:
        self._known[id(image)] = _Known(weakref.ref(image), server_url, ref)
        if len(self._known) > _REMEMBER:
            for key in list(self._known)[:-_KEEP_AFTER_TRIM]:
                del self._known[key]

    def where(self, image: Image.Image) -> tuple[str, OutputFile] | None:
        """(server url, file) of ``image`` when it is one of ours, else None."""
        k = self._known.get(id(image))
        return (k.server, k.ref) if k is not None and k.image() is image else None

    def forget(self, server_url: str) -> None:
        """``server_url`` lost our files (a restart wipes temp/): stop referencing them by name."""
        for key in [k for k, v in self._known.items() if v.server == server_url]:
            del self._known[key]


class UploadRing:
    """Upload names that are reused: ``{stem}_{n}.{ext}`` for n in a ring sized per server count,
    so a file is overwritten only after every slot was used (by then nothing refers to it)."""

    def __init__(self, stem: str, ext: str, *, slots_per_server: int = 4) -> None:
        self._stem, self._ext = stem, ext
        self._per_server = slots_per_server
        self._slot = 0

    def next_name(self, servers: int) -> str:
        self._slot = (self._slot + 1) % (self._per_server * max(1, servers))
        return f"{self._stem}_{self._slot}.{self._ext}"
