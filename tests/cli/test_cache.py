"""`dream-window cache ...` end to end through click, on a real cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dream_window.cache.embedders import FeatureEmbedder
from dream_window.cache.manager import CacheManager
from dream_window.cli import main
from tests.cache.conftest import BLUE, RED, picture
from tests.conftest import write_config


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, list[str]]:
    cfg = write_config(
        tmp_path,
        {"system": {"cache_dir": "cache"}, "generation": {"cache": {"embedder": "features", "max_size": 10}}},
    )
    m = CacheManager(tmp_path / "cache", max_size=10, fsync=False)
    e = FeatureEmbedder()
    ids = []
    for i, hue in enumerate([RED, RED, BLUE, BLUE]):
        img = picture(i, hue=hue)
        ids.append(
            m.add(img, prompt=f"prompt {i}", embedding=e.embed([img])[0], embedder=e.id).entry.cache_id
        )
    m.set_score(ids[3], -1)
    m.add(picture(2, hue=BLUE), score=1)  # a rating through add (a frame rated again) is kept in the PNG too
    m.close()
    return cfg, ids


def run(*args: str) -> object:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_stats_and_list(filled: tuple[Path, list[str]]) -> None:
    cfg, ids = filled
    r = run("cache", "stats", "-c", str(cfg), "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert (data["entries"], data["liked"], data["disliked"], data["embedders"]) == (
        4,
        1,
        1,
        {"features-v1": 4},
    )
    assert data["image_bytes"] > 0 and data["schema_version"] == 2
    r = run("cache", "list", "-c", str(cfg), "-n", "2")
    lines = r.output.strip().splitlines()
    assert len(lines) == 2 and ids[2][:12] in lines[0] and " + " in lines[0] and ids[3][:12] in lines[1]


def test_similar_ranks_alike_frames_first(filled: tuple[Path, list[str]], tmp_path: Path) -> None:
    cfg, ids = filled
    query = tmp_path / "q.png"
    picture(99, hue=RED).save(query)
    r = run("cache", "similar", str(query), "-c", str(cfg), "--top", "4")
    assert r.exit_code == 0, r.output
    hits = [line.split()[1] for line in r.output.strip().splitlines()[1:]]
    assert {hits[0], hits[1]} == {ids[0][:12], ids[1][:12]}
    r = CliRunner().invoke(main, ["cache", "similar", str(tmp_path / "nope.png"), "-c", str(cfg)])
    assert r.exit_code == 1 and "nope.png does not exist" in r.output


def test_prune_keeps_the_most_recently_used(filled: tuple[Path, list[str]]) -> None:
    cfg, ids = filled
    m = CacheManager(cfg.parent / "cache", max_size=10, fsync=False)
    m.touch(ids[0])  # the first added is now the most recently used: use order 1, 3, 2, 0
    m.close()
    r = run("cache", "prune", "-c", str(cfg), "--keep", "2")
    assert r.exit_code == 0 and "removed 2 frame(s); 2 left" in r.output
    left = [e.cache_id for e in CacheManager(cfg.parent / "cache", max_size=10).get_all()]
    assert left == [ids[0], ids[2]], "oldest-added-first (FIFO) would keep ids[2] and ids[3]"


def test_export_writes_the_seed_format_and_images(filled: tuple[Path, list[str]], tmp_path: Path) -> None:
    cfg, _ids = filled
    out = tmp_path / "export"
    r = run("cache", "export", str(out), "-c", str(cfg))
    assert r.exit_code == 0 and "exported 4" in r.output
    index = json.loads((out / "cache_index.json").read_text(encoding="utf-8"))
    assert index["entry_count"] == 4 and [e["prompt"] for e in index["entries"]] == [
        "prompt 0",
        "prompt 1",
        "prompt 3",
        "prompt 2",
    ]
    for e in index["entries"]:
        assert (out / e["image_path"]).is_file() and len(e["embedding"]) == FeatureEmbedder.dim


def test_damaged_database_one_line_exit_1_then_rebuild(filled: tuple[Path, list[str]]) -> None:
    cfg, ids = filled
    db = cfg.parent / "cache" / "cache.db"
    db.write_bytes(b"\x00garbage" * 1000)
    r = CliRunner().invoke(main, ["cache", "stats", "-c", str(cfg)])
    assert r.exit_code == 1
    assert r.output.count("\n") == 1 and str(db) in r.output and "dream-window cache rebuild" in r.output
    assert "Traceback" not in r.output

    r = run("cache", "rebuild", "-c", str(cfg))
    assert r.exit_code == 0, r.output
    assert "indexed 4 frame(s)" in r.output and "old index kept as" in r.output
    assert list(db.parent.glob("cache.db.bak-*"))  # the damaged file is kept, not deleted
    m = CacheManager(db.parent, max_size=10)
    entries = {e.cache_id: e for e in m.get_all()}
    assert set(entries) == set(ids)
    assert (
        entries[ids[3]].score == -1 and entries[ids[2]].score == 1 and entries[ids[0]].prompt == "prompt 0"
    )  # from the PNG metadata
    assert m.embedder_counts() == {"features-v1": 4}


def test_config_error_exits_2(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"generation": {"cache": {"top_kk": 3}}})
    r = CliRunner().invoke(main, ["cache", "stats", "-c", str(cfg)])
    assert r.exit_code == 2 and "config error: unknown key 'generation.cache.top_kk'" in r.output


def test_no_cache_yet(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"system": {"cache_dir": "cache"}})
    r = run("cache", "list", "-c", str(cfg))
    assert r.exit_code == 0 and "no frame cache at" in r.output
    assert not (tmp_path / "cache").exists()
