"""Configuration: defaults load, bad values give one clear line, unknown keys suggest a fix."""

from __future__ import annotations

import codecs
import subprocess
import sys
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import TypeAdapter, ValidationError

from dream_window.config import (
    DreamConfig,
    _not_a_bool,
    _one_of,
    _set_folder,
    _ValueRepr,
    default_config_text,
    load_config,
    user_config_text,
)
from dream_window.errors import ConfigError
from dream_window.user_dirs import UserDirs
from tests.conftest import write_config

REPO = Path(__file__).resolve().parents[1]

# (yaml text, a fragment the first problem line must contain)
BAD_CONFIGS: list[tuple[str, str]] = [
    ("generation:\n  denoise: 1.7\n", "generation.denoise must be between 0 and 1, got 1.7"),
    ("generation:\n  denoise: -0.1\n", "generation.denoise must be between 0 and 1, got -0.1"),
    (
        "generation:\n  mode: dreamy\n",
        "generation.mode must be one of 'img2img', 'interpolate' or 'hybrid', got 'dreamy'",
    ),
    ("generation:\n  model: flux-dev\n", "generation.model must be one of"),
    ("generation:\n  width: 250\n", "generation.width must be a multiple of 8, got 250"),
    ("generation:\n  height: 32\n", "generation.height must be between 64 and 4096, got 32"),
    ("generation:\n  steps: 0\n", "generation.steps must be between 1 and 200, got 0"),
    ("generation:\n  steps: many\n", "generation.steps must be a whole number, got 'many'"),
    ("generation:\n  cfg: hot\n", "generation.cfg must be a number, got 'hot'"),
    ("generation:\n  seed_policy: lucky\n", "generation.seed_policy must be one of"),
    ("generation:\n  frame_interval: -1\n", "generation.frame_interval must be between 0 and 3600, got -1"),
    ("generation:\n  buffer_size: 0\n", "generation.buffer_size must be between 1 and 1000, got 0"),
    (
        "generation:\n  cache:\n    max_size: 0\n",
        "generation.cache.max_size must be between 1 and 1000000, got 0",
    ),
    (
        "generation:\n  cache:\n    injection_probability: 2\n",
        "generation.cache.injection_probability must be between 0 and 1, got 2",
    ),
    (
        "generation:\n  cache:\n    max_sise: 10\n",
        "unknown key 'generation.cache.max_sise' (did you mean 'generation.cache.max_size'?)",
    ),
    ("generaton:\n  mode: hybrid\n", "unknown key 'generaton' (did you mean 'generation'?)"),
    ("system:\n  comfyui_url: localhost:8188\n", "must be an http:// or https:// URL, got 'localhost:8188'"),
    ("system:\n  comfyui_url: []\n", "system.comfyui_url must name at least one URL"),
    ("system:\n  backend: gpu\n", "system.backend must be one of"),
    (
        "game_detection:\n  gpu_threshold: 150\n",
        "game_detection.gpu_threshold must be between 1 and 100, got 150",
    ),
    (
        "game_detection:\n  gpu_threshold: 50\n  gpu_resume_threshold: 70\n",
        "gpu_resume_threshold must not be above gpu_threshold",
    ),
    (
        "game_detection:\n  known_games: eldenring.exe\n",
        "game_detection.known_games must be a list, got 'eldenring.exe'",
    ),
    ("game_detection:\n  check_interval: 0\n", "game_detection.check_interval must be greater than 0"),
    ("game_detection:\n  enabled: maybe\n", "game_detection.enabled must be true or false, got 'maybe'"),
    (
        "prompts:\n  rotate_every_frames: -5\n",
        "prompts.rotate_every_frames must be between 0 and 1000000000, got -5",
    ),
    (
        "comfyui:\n  request_timeout: 1.0e+300\n",
        "comfyui.request_timeout must be greater than 0 and at most 86400, got 1e+300",
    ),
    ("viewer:\n  port: 70000\n", "viewer.port must be between 0 and 65535, got 70000"),
    ("generation: 5\n", "generation must be a mapping of keys to values, got 5"),
    ("- just\n- a list\n", "the config must be a mapping of sections"),
    ("generation:\n  mode: [hybrid\n", "invalid YAML"),
    # true is not 1, 4.5 is not 4, nothing is infinite, and 1e-3 (text to PyYAML) is a number.
    ("generation:\n  steps: true\n", "generation.steps must be a whole number, got true"),
    ("generation:\n  steps: 4.5\n", "generation.steps must be a whole number, got 4.5"),
    ("generation:\n  cfg: false\n", "generation.cfg must be a number, got false"),
    ("generation:\n  cfg: .inf\n", "generation.cfg must be a finite number, got inf"),
    ("generation:\n  denoise: .nan\n", "generation.denoise must be a finite number, got nan"),
    ("prompts:\n  rotate_every_minutes: .inf\n", "prompts.rotate_every_minutes must be a finite number"),
    ("generation:\n  denoise: 1e-3\n  cfg: 4e1\n", "generation.cfg must be between 0 and 30, got '4e1'"),
    ("1: 2\n", "keys must be text, got 1 in the top level"),
    ("generation:\n  mode: a\x01b\n", "line 2: invalid YAML: unacceptable character '\\x01'"),
    ("generation:\n  seed: 2024-13-01\n", "invalid YAML value: month must be in 1..12"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS, ids=[e[1][:40] for e in BAD_CONFIGS])
def test_bad_config_names_key_value_and_allowed(tmp_path: Path, text: str, expected: str) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert expected in str(info.value), info.value.problems


def test_a_valid_config_in_the_encodings_windows_writes_loads(tmp_path: Path) -> None:
    text = "generation:\n  steps: 7\nprompts:\n  list: ['café au lait, 夢']\n"
    path = tmp_path / "config.yaml"
    for encoded in (
        text.encode("utf-8"),
        codecs.BOM_UTF8 + text.encode("utf-8"),  # Notepad, PowerShell 7 -Encoding utf8BOM
        text.encode("utf-16"),  # Windows PowerShell 5: `Get-Content a.yaml > config.yaml`
        text.encode("utf-16-le"),  # UTF-16 without a BOM
        text.encode("utf-16-be"),
        codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
        text.replace("\n", "\r\n").encode("utf-16"),
    ):
        path.write_bytes(encoded)
        cfg = load_config(path)
        assert (cfg.generation.steps, cfg.prompts.list) == (7, ["café au lait, 夢"]), encoded[:8]


# (file bytes, the whole first problem line after "<path> ")
UNREADABLE: list[tuple[bytes, str]] = [
    (
        "prompts:\n  list: ['café']\n".encode("latin-1"),
        "is not UTF-8 text (byte 0xE9 on line 2, at position 22: it looks like Latin-1/Windows-1252 "
        "or another legacy encoding); save it as UTF-8",
    ),
    (
        "prompts:\n  list: ['“quoted”']\n".encode("cp1252"),
        "is not UTF-8 text (byte 0x93 on line 2, at position 19: it looks like Latin-1/Windows-1252 "
        "or another legacy encoding); save it as UTF-8",
    ),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", "is not a text file (it holds NUL bytes)"),
    (
        bytes(range(1, 256)) * 3,
        "is not UTF-8 text (byte 0x80 on line 2, at position 127: it looks like a binary file); save it as UTF-8",
    ),
    (codecs.BOM_UTF16_LE + b"\x00\xd8a\x00", "is not valid UTF-16-LE text; save it as UTF-8"),
    (b"a: 1\n" * 300_000, "is larger than 1024 KiB; is it the right file?"),
]


@pytest.mark.parametrize(
    ("data", "expected"), UNREADABLE, ids=["latin-1", "cp1252", "png", "binary", "bad-utf-16", "huge"]
)
def test_a_config_that_is_not_text_is_refused_in_one_line_naming_the_file(
    tmp_path: Path, data: bytes, expected: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"config file {path} {expected}"]


def _billion_laughs(levels: int = 10) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]")
    return "\n".join(lines) + f"\nprompts:\n  list: *l{levels - 1}\n"


# (yaml text, the message after "<path> ")
HOSTILE: list[tuple[str, str]] = [
    (
        "generation:\n  steps: 3\nsystem: {}\ngeneration:\n  steps: 4\n",
        "line 4, column 1: duplicate key 'generation' (first at line 1)",
    ),
    (
        "generation:\n  steps: 3\n  denoise: 0.5\n  steps: 4\n",
        "line 4, column 3: duplicate key 'steps' (first at line 2)",
    ),
    ("viewer: {port: 1, port: 2}\n", "line 1, column 19: duplicate key 'port' (first at line 1)"),
    ("a: " + "[" * 10_000 + "]" * 10_000 + "\n", "line 1, column 53: nested more than 50 levels deep"),
    (
        "".join("  " * i + f"k{i}:\n" for i in range(60)),
        "line 50, column 99: nested more than 50 levels deep",
    ),
    (_billion_laughs(), "line 5, column 5: more than 50000 values once aliases are expanded"),
    ("a: &a [*a]\n", "line 1, column 4: an alias refers to the value that holds it"),
    (
        "a: &a [1]\n" + "".join(f"b{i}: &b{i} [*{'a' if i == 0 else f'b{i - 1}'}]\n" for i in range(60)),
        "line 48, column 6: nested more than 50 levels deep (through aliases)",
    ),
    ("generation:\n  seed: " + "9" * 5000 + "\n", "line 2, column 9: a number of more than 100 characters"),
    (
        "generation:\n  seed: 1" + ":2" * 5000 + "\n",
        "line 2, column 9: a number of more than 100 characters",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), HOSTILE, ids=[e[1][e[1].index(":") + 2 :][:30] for e in HOSTILE]
)
def test_hostile_yaml_is_refused_before_validation_in_one_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write_config(tmp_path, text)
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as info:
            load_config(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.problems == [f"{path} {expected}"]
    assert peak < 64 * 1024 * 1024  # the bomb is measured, never expanded


def test_yaml_merge_keys_may_override_what_they_merge(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "generation: &g\n  steps: 3\nviewer:\n  port: 9000\n"))
    assert cfg.generation.steps == 3
    text = "generation:\n  <<: {steps: 3, denoise: 0.25}\n  steps: 5\n"
    cfg = load_config(write_config(tmp_path, text))
    assert (cfg.generation.steps, cfg.generation.denoise) == (5, 0.25)


def test_long_values_are_cut_short_in_error_lines(tmp_path: Path) -> None:
    text = f"generation:\n  mode: {'x' * 100_000}\n  seed: 0x{'f' * 90}\n? {'k' * 5000}\n: 1\n"  # an explicit key: simple ones stop at 1024
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, text))
    mode, seed, key = info.value.problems
    assert mode.endswith(f"got '{'x' * 79}… (100000 characters)")
    assert seed.endswith("got a number of about 109 digits")
    assert key.startswith(f"unknown key '{'k' * 80}… (5000 characters)'")
    assert all(len(p) < 300 for p in info.value.problems)


def test_the_number_of_problems_listed_is_bounded(tmp_path: Path) -> None:
    items = ", ".join(["1"] * 1000)
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, f"game_detection:\n  known_games: [{items}]\n"))
    assert len(info.value.problems) == 21
    assert info.value.problems[0] == "game_detection.known_games.0 must be text, got 1"
    assert info.value.problems[-1] == "... and 980 more problems"


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    path = write_config(tmp_path, "generation:\n  denoise: 3\n  steps: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    joined = "\n".join(info.value.problems)
    assert "generation.denoise" in joined and "generation.steps" in joined


def test_shipped_config_is_valid_and_matches_the_packaged_default() -> None:
    repo_cfg = REPO / "config.yaml"
    packaged = REPO / "src" / "dream_window" / "data" / "config.yaml"
    assert repo_cfg.read_text() == packaged.read_text(), (
        "run: cp config.yaml src/dream_window/data/config.yaml"
    )
    cfg = load_config(repo_cfg)
    assert cfg.generation.mode == "hybrid"
    assert (cfg.generation.width, cfg.generation.height) == (256, 512)
    # Every key of the model is documented in the shipped file (the file sets all of them).
    assert cfg.model_dump(exclude={"base_dir"}) == DreamConfig(base_dir=cfg.base_dir).model_dump(
        exclude={"base_dir"}
    )


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    cfg = load_config(write_config(sub, "system:\n  output_dir: out\n"))
    assert cfg.output_dir == sub.resolve() / "out"


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "{}"))
    with pytest.raises(ValidationError, match="Instance is frozen") as section:
        cfg.generation.denoise = 0.9  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Instance is frozen") as whole:
        cfg.generation = cfg.generation  # type: ignore[misc]
    assert [(e["type"], e["loc"]) for e in section.value.errors()] == [("frozen_instance", ("denoise",))]
    assert [(e["type"], e["loc"]) for e in whole.value.errors()] == [("frozen_instance", ("generation",))]
    assert cfg.generation.denoise == load_config(write_config(tmp_path, "{}")).generation.denoise


def test_overrides_are_validated(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "{}"))
    assert cfg.with_overrides(**{"generation.mode": "img2img"}).generation.mode == "img2img"
    with pytest.raises(ConfigError, match=r"generation\.mode must be one of"):
        cfg.with_overrides(**{"generation.mode": "nope"})


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dream-window init"):
        load_config(tmp_path / "nope.yaml")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dream_window", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_cli_bad_config_exits_2_with_one_clear_line_and_no_traceback(tmp_path: Path) -> None:
    path = write_config(tmp_path, "generation:\n  denoise: 1.7\n")
    r = _cli("run", "--config", str(path), "--max-frames", "1", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == "config error: generation.denoise must be between 0 and 1, got 1.7"
    assert "Traceback" not in r.stderr + r.stdout


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("prompts:\n  list: ['café']\n".encode("latin-1"), "is not UTF-8 text (byte 0xE9 on line 2"),
        (_billion_laughs().encode(), "more than 50000 values once aliases are expanded"),
        (b"generation:\n  steps: 1\ngeneration:\n  steps: 2\n", "duplicate key 'generation'"),
        (b"generation:\n  steps: true\n", "generation.steps must be a whole number, got true"),
    ],
    ids=["latin-1", "billion-laughs", "duplicate-key", "steps-true"],
)
def test_cli_unreadable_config_exits_2_with_one_line(tmp_path: Path, data: bytes, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(data)
    r = _cli("run", "-c", str(path), "--max-frames", "1", cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr + r.stdout
    assert len(r.stderr.strip().splitlines()) == 1 and expected in r.stderr, r.stderr


def test_cli_valid_utf16_config_written_by_powershell_runs(tmp_path: Path) -> None:
    text = "system:\n  backend: builtin\ngeneration:\n  width: 64\n  height: 64\n  frame_interval: 0\nviewer:\n  enabled: false\n"
    (tmp_path / "config.yaml").write_bytes(text.encode("utf-16"))
    r = _cli("run", "-c", "config.yaml", "--max-frames", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_init_writes_a_valid_default_and_refuses_to_overwrite(tmp_path: Path) -> None:
    r = _cli("init", "my.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = load_config(tmp_path / "my.yaml")
    assert cfg.generation.mode == "hybrid"
    r2 = _cli("init", "my.yaml", cwd=tmp_path)
    assert r2.returncode == 2 and "already exists" in r2.stderr


def test_overrides_left_unset_are_skipped_and_the_rest_applied(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "{}"))
    # The CLI passes every option, None for those not given: a None must not stop the ones after it.
    again = cfg.with_overrides(**{"generation.mode": None, "generation.steps": 7, "viewer.port": 9000})
    assert (again.generation.mode, again.generation.steps, again.viewer.port) == ("hybrid", 7, 9000)
    assert again.base_dir == cfg.base_dir


def test_a_bad_override_is_blamed_on_the_command_line(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "{}"))
    with pytest.raises(ConfigError) as info:
        cfg.with_overrides(**{"generation.steps": 0})
    assert info.value.path == "command line"
    assert info.value.problems == ["generation.steps must be between 1 and 200, got 0"]


def test_init_writes_the_shipped_config() -> None:
    assert default_config_text() == (REPO / "config.yaml").read_text(encoding="utf-8")


def _dirs(root: Path) -> UserDirs:
    return UserDirs(
        config=root / "conf",
        data=root / "data",
        cache=root / "cache",
        logs=root / "logs",
        runtime=root / "run",
    )


def test_the_user_config_sends_frames_and_cache_to_the_user_folders(tmp_path: Path) -> None:
    dirs = _dirs(tmp_path / "it's a \\ home")  # a quote YAML must double, a backslash it must keep
    path = dirs.config_file
    path.parent.mkdir(parents=True)
    path.write_text(user_config_text(dirs), encoding="utf-8")
    cfg = load_config(path)
    assert (cfg.output_dir, cfg.cache_dir) == (dirs.output, dirs.cache)
    assert cfg.system.output_dir == dirs.output  # absolute: not beside the config file
    # Apart from those two folders, the user's config is the shipped one, comments and all.
    changed = [
        (a, b)
        for a, b in zip(default_config_text().splitlines(), user_config_text(dirs).splitlines(), strict=True)
        if a != b
    ]
    home = f"{tmp_path}/it''s a \\ home"
    assert changed == [
        ('  output_dir: "output"', f"  output_dir: '{home}/data/output'"),
        ('  cache_dir: "cache"', f"  cache_dir: '{home}/cache'"),
    ]


def test_only_the_first_line_setting_the_folder_is_pointed_at_it() -> None:
    text = 'system:\n  output_dir: "output"\nother:\n  output_dir: "output"\n'
    assert _set_folder(text, "output_dir", "output", Path("/frames")) == (
        "system:\n  output_dir: '/frames'\nother:\n  output_dir: \"output\"\n"
    )


def test_a_packaged_config_without_the_folder_line_fails_naming_the_line() -> None:
    text = "system:\n  output_dir: somewhere_else\n"
    with pytest.raises(RuntimeError) as info:
        _set_folder(text, "output_dir", "output", Path("/frames"))
    assert str(info.value) == 'the packaged config has no line `output_dir: "output"` to point at /frames'


def test_a_choice_of_one_or_two_names_reads_as_a_sentence() -> None:
    assert _one_of(["img2img"]) == "'img2img'"
    assert _one_of(["img2img", "hybrid"]) == "'img2img' or 'hybrid'"
    assert _one_of(["a", "b", "c"]) == "'a', 'b' or 'c'"


def test_a_yaml_boolean_is_not_taken_for_a_number() -> None:
    # A guard built now, not the one built at import: what each kind of number says.
    for kind, annotated in (("a whole number", int), ("a number", float)):
        adapter = TypeAdapter(Annotated[annotated, _not_a_bool(kind)])
        assert adapter.validate_python(3) == 3
        with pytest.raises(ValidationError) as info:
            adapter.validate_python(True)
        assert info.value.errors()[0]["msg"] == f"Value error, must be {kind}, got true"


def test_values_in_error_lines_show_only_the_start_of_long_or_deep_structures() -> None:
    r = _ValueRepr()
    assert r.repr(list(range(5))) == "[0, 1, 2, 3, 4]"
    assert r.repr(list(range(6))) == "[0, 1, 2, 3, 4, ...]"
    assert r.repr({i: i for i in range(5)}) == "{0: 0, 1: 1, 2: 2, 3: 3, 4: 4}"
    assert r.repr({i: i for i in range(6)}) == "{0: 0, 1: 1, 2: 2, 3: 3, 4: 4, ...}"
    assert r.repr([[[1]]]) == "[[[1]]]"
    assert r.repr([[[[1]]]]) == "[[[[...]]]]"
    assert r.repr(["a" * 38]) == f"['{'a' * 38}']"  # 40 characters with its quotes: shown whole
    assert r.repr(["a" * 39]) == "['aaaaaaaaaaaaaaaaa...aaaaaaaaaaaaaaaaaa']"  # 41: cut
    assert r.repr(Decimal("1." + "1" * 27)) == repr(Decimal("1." + "1" * 27))  # 40 characters
    assert r.repr(Decimal("1." + "1" * 28)) == "Decimal('1.1111111...11111111111111111')"  # 41: cut


ORIGINS = "{" + ", ".join(f"{k}: {k * 30}" for k in "abc") + "}"  # shown: 117 characters
# (yaml text, the one whole problem line)
EXACT: list[tuple[str, str]] = [
    (
        "zzz: 1\n",
        "unknown key 'zzz'; allowed in the top level: system, generation, prompts, game_detection, "
        "comfyui, interpolation, viewer",
    ),
    (
        "generation:\n  cache:\n    max_sise: 10\n",
        "unknown key 'generation.cache.max_sise' (did you mean 'generation.cache.max_size'?); allowed in "
        "generation.cache: enabled, max_size, injection_probability, similarity_threshold, top_k, "
        "temperature, reinject_cooldown_frames, embedder, clip_model, like_boost",
    ),
    (
        "system:\n  log_level: verbose\n",
        "system.log_level must be one of 'debug', 'info', 'warning' or 'error', got 'verbose'",
    ),
    ("system:\n  backend: gpu\n", "system.backend must be one of 'auto', 'comfyui' or 'builtin', got 'gpu'"),
    (
        "generation:\n  cache:\n    temperature: 11\n",
        "generation.cache.temperature must be greater than 0 and at most 10, got 11",
    ),
    ("generation:\n  negative_prompt: 5\n", "generation.negative_prompt must be text, got 5"),
    ("comfyui:\n  workflow_mapping: {a: 1}\n", "comfyui.workflow_mapping.a must be text, got 1"),
    ("generation:\n  denoise: null\n", "generation.denoise must be a number, got null"),
    ("generation:\n  denoise: 1.23456789\n", "generation.denoise must be between 0 and 1, got 1.23457"),
    ("generation:\n  steps: 1.0e+400\n", "generation.steps must be a finite number, got inf"),
    ("generation:\n  cache: [1]\n", "generation.cache must be a mapping of keys to values, got [1]"),
    (
        "interpolation:\n  encoder: local\n",
        "interpolation.vae_path must be set when interpolation.encoder is 'local' (a VAE .safetensors file)",
    ),
    (
        "system:\n  output_dir: 5\n",
        "system.output_dir: Input is not a valid path for <class 'pathlib.Path'>, got 5",
    ),
    (
        f"viewer:\n  allowed_origins: {ORIGINS}\n",
        "viewer.allowed_origins must be a list, got {'a': 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'b': "
        "'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', '… (117 characters)",
    ),
    # A whole number is shown whole up to 200 bits; past that, how long it is.
    (
        f"generation:\n  seed: {2**200 - 1}\n",
        f"generation.seed must be between 0 and {2**63 - 1}, got {2**200 - 1}",
    ),
    (
        f"generation:\n  seed: {2**200}\n",
        f"generation.seed must be between 0 and {2**63 - 1}, got a number of about 61 digits",
    ),
    # Text is shown whole up to 80 characters, then cut to 79 and its length.
    (
        f"generation:\n  mode: {'x' * 80}\n",
        f"generation.mode must be one of 'img2img', 'interpolate' or 'hybrid', got '{'x' * 80}'",
    ),
    (
        f'generation:\n  mode: "{"x" * 81}\'"\n',  # the quote past the cut does not change the quoting
        f"generation.mode must be one of 'img2img', 'interpolate' or 'hybrid', got '{'x' * 79}… "
        "(82 characters)",
    ),
]


@pytest.mark.parametrize(("text", "expected"), EXACT, ids=[e[1][:40] for e in EXACT])
def test_each_problem_is_one_whole_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, text))
    assert info.value.problems == [expected]
    assert str(info.value) == expected and info.value.path == str(tmp_path / "config.yaml")


def test_a_config_that_is_not_a_mapping_names_what_it_is(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, "- just\n- a list\n"))
    assert (
        str(info.value) == f"{tmp_path / 'config.yaml'}: the config must be a mapping of sections, got list"
    )


def test_base_dir_is_not_a_key_a_config_may_set(tmp_path: Path) -> None:
    path = write_config(tmp_path, "base_dir: /elsewhere\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (str(info.value), info.value.path) == ("unknown key 'base_dir'", str(path))


def test_an_empty_config_file_gives_the_defaults(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "# nothing set\n"))
    assert cfg == DreamConfig(base_dir=tmp_path.resolve())


def test_no_config_file_gives_the_defaults_under_the_current_folder() -> None:
    assert load_config(None) == DreamConfig(base_dir=Path.cwd())


def test_twenty_problems_are_listed_and_the_rest_counted(tmp_path: Path) -> None:
    items = ", ".join(["1"] * 21)
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, f"game_detection:\n  known_games: [{items}]\n"))
    assert info.value.problems[19:] == [
        "game_detection.known_games.19 must be text, got 1",
        "... and 1 more problems",
    ]
    items = ", ".join(["1"] * 20)
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, f"game_detection:\n  known_games: [{items}]\n"))
    assert len(info.value.problems) == 20


def test_paths_are_resolved_against_the_config_folder_unless_absolute(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    text = f"system:\n  output_dir: {tmp_path / 'frames'}\n  cache_dir: ~/dream-cache\n"
    cfg = load_config(write_config(conf, text))
    assert cfg.output_dir == tmp_path / "frames"  # absolute: as written
    assert cfg.cache_dir == Path("~/dream-cache").expanduser()  # the home folder, not conf/~
