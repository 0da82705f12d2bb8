"""``dream-window cache stats | list | similar IMAGE | prune [--keep N] | export DIR | rebuild``.

Errors are one line on stderr: a config problem exits 2 (``config error: ...``), a cache problem
(a damaged database names the file and ``dream-window cache rebuild``) exits 1. No tracebacks.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from PIL import Image, UnidentifiedImageError

from dream_window.cache import AestheticMatcher, CacheManager, open_cache, select_embedder
from dream_window.cache.db import DB_FILE
from dream_window.cache.rebuild import rebuild as rebuild_index
from dream_window.cli.common import config_option, fail, load
from dream_window.config import DreamConfig
from dream_window.errors import CacheError, DreamWindowError


@contextmanager
def _manager(cfg: DreamConfig, *, reconcile: bool = False, create: bool = False) -> Iterator[CacheManager]:
    if not create and not (cfg.cache_dir / DB_FILE).exists():
        click.echo(f"no frame cache at {cfg.cache_dir} yet (it fills while dream-window runs)")
        sys.exit(0)
    try:
        manager = open_cache(cfg, reconcile=reconcile)
    except DreamWindowError as exc:
        fail(str(exc))
    try:
        yield manager
    except DreamWindowError as exc:
        fail(str(exc))
    finally:
        try:
            manager.close()
        except CacheError:
            pass


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@click.group("cache")
def cache_group() -> None:
    """Inspect and maintain the frame cache (the past frames the dream can bring back)."""


@cache_group.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(config_path: Path | None, as_json: bool) -> None:
    """Size, embedders, ratings and health of the cache."""
    cfg = load(config_path)
    with _manager(cfg) as m:
        m.check()
        scores = m.score_counts()
        entries = m.get_all()
        image_bytes = m.store.total_bytes()
        embedders = m.embedder_counts()
        data: dict[str, object] = {
            "database": str(m.db_path),
            "schema_version": m.schema_version(),
            "entries": len(entries),
            "max_size": cfg.generation.cache.max_size,
            "image_bytes": image_bytes,
            "embedders": embedders,
            "liked": scores.get(1, 0),
            "disliked": scores.get(-1, 0),
            "oldest": min((e.timestamp for e in entries), default=None),
            "newest": max((e.timestamp for e in entries), default=None),
        }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    shown = {
        **data,
        "image_bytes": _human(float(image_bytes)),
        "embedders": ", ".join(f"{name}: {n}" for name, n in embedders.items()) or "none",
    }
    for k, v in shown.items():
        click.echo(f"{k.replace('_', ' '):>15}: {v}")


@cache_group.command("list")
@config_option
@click.option("--limit", "-n", type=click.IntRange(min=1), default=20, show_default=True)
def list_(config_path: Path | None, limit: int) -> None:
    """Cached frames, most recently used first."""
    cfg = load(config_path)
    with _manager(cfg) as m:
        entries = m.get_all(limit=limit)
    if not entries:
        click.echo("the cache is empty")
        return
    mark = {1: "+", -1: "-", 0: " "}
    for e in entries:
        click.echo(
            f"{e.cache_id[:12]}  {mark[e.score]}  uses {e.use_count:>3}  {e.last_used_at}  {e.prompt[:60]}"
        )


@cache_group.command()
@config_option
@click.argument("image", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--top",
    "-k",
    type=click.IntRange(min=1, max=100),
    default=None,
    help="How many (default: generation.cache.top_k).",
)
def similar(config_path: Path | None, image: Path, top: int | None) -> None:
    """Cached frames most like IMAGE (cosine similarity with the active embedder)."""
    cfg = load(config_path)
    try:
        with Image.open(image) as img:
            img.load()
            picture = img.convert("RGB")
    except FileNotFoundError:
        fail(f"{image} does not exist")
    except (OSError, UnidentifiedImageError) as exc:
        fail(f"cannot read {image} as an image: {exc}")
    c = cfg.generation.cache
    embedder, reason = select_embedder(c.embedder, c.clip_model)
    with _manager(cfg) as m:
        ids, matrix, scores = m.load_embeddings(embedder.id)
        total = m.count()
        matcher = AestheticMatcher(temperature=c.temperature)
        matcher.load(ids, matrix, scores)
        if len(matcher) == 0:
            fail(
                f"no cached frame has a {embedder.label} embedding yet "
                f"({total} frame(s) cached; `dream-window cache rebuild` embeds them)"
            )
        try:
            target = embedder.embed([picture])[0]
        except DreamWindowError as exc:
            fail(str(exc))
        hits = matcher.find_similar(target, -1.0, top or c.top_k, include_disliked=True)
        click.echo(f"embedder: {embedder.label} ({reason}); searched {len(matcher)} of {total}")
        for cid, sim in hits:
            e = m.get(cid)
            click.echo(f"{sim:6.3f}  {cid[:12]}  {e.image_path if e else ''}  {(e.prompt if e else '')[:50]}")


@cache_group.command()
@config_option
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    default=None,
    help="Frames to keep (default: generation.cache.max_size).",
)
def prune(config_path: Path | None, keep: int | None) -> None:
    """Remove the least recently used frames (and repair leftovers of a crash)."""
    cfg = load(config_path)
    keep = cfg.generation.cache.max_size if keep is None else keep
    with _manager(cfg, reconcile=True) as m:
        removed = m.evict_to(keep)
        left = m.count()
    click.echo(f"removed {len(removed)} frame(s); {left} left")


@cache_group.command()
@config_option
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
def export(config_path: Path | None, directory: Path) -> None:
    """Copy every cached frame to DIRECTORY, with a cache_index.json in the seed's format."""
    cfg = load(config_path)
    with _manager(cfg) as m:
        entries = m.get_all()
        try:
            (directory / "images").mkdir(parents=True, exist_ok=True)
            records = []
            for rank, e in enumerate(reversed(entries), start=1):
                dest = directory / "images" / f"{rank:05d}_{e.cache_id[:12]}.png"
                shutil.copyfile(e.image_path, dest)
                rec = e.to_dict()
                rec["image_path"] = str(Path("images") / dest.name)
                records.append(rec)
            index = {
                "version": "1.0",
                "last_updated": max((e.last_used_at for e in entries), default=None),
                "entry_count": len(records),
                "entries": records,
            }
            (directory / "cache_index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
        except OSError as exc:
            fail(f"cannot export to {directory}: {exc.strerror or exc}")
    click.echo(f"exported {len(entries)} frame(s) to {directory}")


@cache_group.command()
@config_option
def rebuild(config_path: Path | None) -> None:
    """Re-create the index from the images on disk (the old database is kept aside)."""
    cfg = load(config_path)
    c = cfg.generation.cache
    embedder, reason = select_embedder(c.embedder, c.clip_model)
    click.echo(f"embedding with {embedder.label} ({reason})")

    def progress(done: int, total: int) -> None:
        return click.echo(f"  {done}/{total}", err=True)

    try:
        report = rebuild_index(cfg.cache_dir, embedder, max_size=c.max_size, progress=progress)
    except DreamWindowError as exc:
        fail(str(exc))
    if report.backup:
        click.echo(f"old index kept as {report.backup}")
    click.echo(
        f"indexed {report.indexed} frame(s)"
        + (
            f"; {report.unreadable} unreadable image(s) moved to {cfg.cache_dir / 'quarantine'}"
            if report.unreadable
            else ""
        )
    )
