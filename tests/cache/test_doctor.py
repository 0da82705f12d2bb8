"""doctor: which embedder is active and why; the database healthy, or damaged with the fix."""

from __future__ import annotations

from pathlib import Path

from dream_window.cache import FrameCacheService
from tests.conftest import fast_config


async def test_doctor_reports_embedder_and_healthy_database(tmp_path: Path) -> None:
    cfg = fast_config(tmp_path, generation={"cache": {"enabled": True, "clip_model": str(tmp_path / "none")}})
    checks = {c.name: c for c in await FrameCacheService(cfg).doctor_checks()}
    assert checks["cache embedder"].level == "warn" and "does not exist" in checks["cache embedder"].detail
    assert checks["cache database"].level == "ok" and "healthy, 0 frame(s)" in checks["cache database"].detail


async def test_doctor_names_the_fix_for_a_damaged_database(tmp_path: Path, tiny_clip: Path) -> None:
    cfg = fast_config(tmp_path, generation={"cache": {"enabled": True, "clip_model": str(tiny_clip)}})
    cfg.cache_dir.mkdir(parents=True)
    (cfg.cache_dir / "cache.db").write_bytes(b"garbage" * 100)
    checks = {c.name: c for c in await FrameCacheService(cfg).doctor_checks()}
    assert checks["cache embedder"].level == "ok" and "local folder" in checks["cache embedder"].detail
    db = checks["cache database"]
    assert db.level == "fail" and "dream-window cache rebuild" in db.detail and "cache.db" in db.detail
