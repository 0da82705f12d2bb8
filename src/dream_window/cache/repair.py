"""The repair pass at start: rows and image files made to agree after a crash.

The manager orders its writes so a crash leaves at most an image without a row (written first) or
a row whose image was being deleted, plus a temp file; this pass removes all three kinds of
leftovers, so the index never points at a missing picture and no image is kept that nothing names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from dream_window.cache.images import ImageStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ReconcileReport:
    temps_removed: int = 0
    rows_without_image: int = 0
    orphan_images: int = 0

    def __bool__(self) -> bool:
        return bool(self.temps_removed or self.rows_without_image or self.orphan_images)


class Indexed(Protocol):
    """What the pass needs of the manager: its image store and its rows."""

    store: ImageStore

    def row_ids(self) -> set[str]: ...

    def delete_rows(self, cache_ids: list[str]) -> None: ...


def reconcile(manager: Indexed) -> ReconcileReport:
    """No row without image, no orphan image, no temp file."""
    report = ReconcileReport(temps_removed=manager.store.clean_temps())
    rows = manager.row_ids()
    files = set(manager.store.ids())
    missing = sorted(rows - files)
    if missing:
        manager.delete_rows(missing)
        report.rows_without_image = len(missing)
    orphans = sorted(files - rows)
    for cid in orphans:
        manager.store.delete(cid)
    report.orphan_images = len(orphans)
    if report:
        log.info(
            "cache repaired: %d temp file(s), %d row(s) without image, %d orphan image(s) removed",
            report.temps_removed,
            report.rows_without_image,
            report.orphan_images,
        )
    return report
