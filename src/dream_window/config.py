"""Configuration: a frozen pydantic model per section, loaded from YAML, with clear errors.

Every problem is reported as one line naming the key, the bad value and what is allowed, e.g.
``generation.denoise must be between 0 and 1, got 1.7``. Unknown keys are errors with a
"did you mean" suggestion: a typo silently ignored is a setting silently not applied.

Config is data: it is loaded once and passed down; nothing reads it from a global.
"""

from __future__ import annotations

import builtins
import difflib
import re
import reprlib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dream_window.errors import ConfigError
from dream_window.text_files import clip, load_yaml, read_text_file
from dream_window.user_dirs import UserDirs, user_dirs

# The names ``generation.mode`` accepts. The modes themselves live in ``dream/modes`` (above this
# module); each registers its name here through ``dream.modes.register_mode`` so a config naming an
# unknown mode fails at load like any other bad value. The built-in names are seeded here because a
# config is often loaded before the modes are imported; a test checks both lists agree.
MODE_NAMES: list[str] = ["img2img", "interpolate", "hybrid"]


def _one_of(names: list[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


# interpolation.walk: auto (walk where the backend can), on (and an error where it cannot), off.
WalkSwitch = Literal["auto", "on", "off"]


class BackendChoice(StrEnum):
    AUTO = "auto"
    COMFYUI = "comfyui"
    BUILTIN = "builtin"


class ModelFamily(StrEnum):
    FLUX_SCHNELL = "flux-schnell"
    SD15 = "sd15"
    SDXL_TURBO = "sdxl-turbo"


class SeedPolicy(StrEnum):
    RANDOM = "random"  # a fresh random seed every frame (ComfyUI caches identical prompts)
    INCREMENT = "increment"  # seed, seed+1, seed+2 ... reproducible yet new every frame
    FIXED = "fixed"  # the same seed every frame


# YAML's true/false are not numbers: `steps: true` is an error, not 1 step. (pydantic's strict
# mode would also refuse `cfg: 1e-3`, which PyYAML reads as text.) No number is inf or nan, and
# each has an upper bound: a timeout of 1e300 seconds overflows asyncio's clock.
def _not_a_bool(kind: str) -> BeforeValidator:
    def check(v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"must be {kind}, got {_fmt(v)}")
        return v

    return BeforeValidator(check)


Int = Annotated[int, _not_a_bool("a whole number")]
Float = Annotated[float, _not_a_bool("a number")]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False, allow_inf_nan=False)


class SystemConfig(_Section):
    # One URL or a list: frames are spread over every healthy server.
    comfyui_url: str | list[str] = "http://127.0.0.1:8188"
    output_dir: Path = Path("output")
    cache_dir: Path = Path("cache")
    backend: BackendChoice = BackendChoice.AUTO
    # backend auto: when ComfyUI goes away mid-dream, the last frame stays on screen this long,
    # then the built-in engine fills in until ComfyUI answers again.
    fallback_after_seconds: Float = Field(30.0, ge=0.0, le=86_400.0)
    # Where the rotating log file goes; empty means <home>/logs.
    log_dir: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("comfyui_url")
    @classmethod
    def _urls(cls, v: str | list[str]) -> str | list[str]:
        urls = [v] if isinstance(v, str) else v
        if not urls:
            raise ValueError("must name at least one URL")
        for u in urls:
            if not (u.startswith("http://") or u.startswith("https://")):
                raise ValueError(f"must be an http:// or https:// URL, got {_fmt(u)}")
        return v

    @property
    def comfyui_urls(self) -> list[str]:
        return [self.comfyui_url] if isinstance(self.comfyui_url, str) else list(self.comfyui_url)


class CacheConfig(_Section):
    enabled: bool = True
    max_size: Int = Field(200, ge=1, le=1_000_000)
    injection_probability: Float = Field(0.15, ge=0.0, le=1.0)
    similarity_threshold: Float = Field(0.7, ge=-1.0, le=1.0)
    top_k: Int = Field(5, ge=1, le=100)
    # Softmax temperature for picking among similar frames: low = always the closest.
    temperature: Float = Field(0.1, gt=0.0, le=10.0)
    # A frame re-injected is not re-injected again within this many frames.
    reinject_cooldown_frames: Int = Field(50, ge=0, le=1_000_000_000)
    # Which embedder: clip (falls back when torch/weights are missing), or the built-in colour/layout features.
    embedder: Literal["auto", "clip", "features"] = "auto"
    clip_model: str = "openai/clip-vit-base-patch32"
    # A liked frame is this many times as likely to be picked as an equally similar unrated one.
    like_boost: Float = Field(3.0, ge=1.0, le=100.0)


# generation.size: named frame sizes in aspects the models handle well (16:9 landscape for a
# wallpaper or a widescreen viewer, 1:2 portrait for a tall widget). Every one is a multiple of 16,
# so it suits every model family. "WIDTHxHEIGHT" (e.g. "640x360") works too.
SIZE_PRESETS: dict[str, tuple[int, int]] = {
    "portrait": (256, 512),
    "landscape": (512, 288),
    "landscape-large": (768, 432),
    "square": (512, 512),
}
# What a model's latent needs of the picture's sides: SD 1.5 / SDXL latents are 1/8 of the picture;
# Flux's latent is also patched 2x2, so its sides must be multiples of 16 (ComfyUI's
# EmptySD3LatentImage steps by 16).
SIZE_MULTIPLE: dict[ModelFamily, int] = {
    ModelFamily.FLUX_SCHNELL: 16,
    ModelFamily.SD15: 8,
    ModelFamily.SDXL_TURBO: 8,
}


def _parse_size(v: Any) -> tuple[int, int]:
    if not isinstance(v, str):
        raise ValueError(f"generation.size must be a name or WIDTHxHEIGHT text, got {_fmt(v)}")
    name = v.strip().lower()
    if name in SIZE_PRESETS:
        return SIZE_PRESETS[name]
    w, sep, h = name.partition("x")
    # isascii too: str.isdigit() also accepts digits int() refuses ("²"), which would then fail
    # with int()'s message instead of this function's one line.
    if sep and all(part.strip().isascii() and part.strip().isdigit() for part in (w, h)):
        return int(w), int(h)
    names = ", ".join(repr(n) for n in SIZE_PRESETS)
    raise ValueError(f"generation.size must be {names} or WIDTHxHEIGHT (e.g. '768x432'), got {_fmt(v)}")


# generation.history_interval: auto keeps a history frame every AUTO_HISTORY_S seconds at a cadence
# faster than LIVE_CADENCE_S (more than 20 frames a second: a live view, not a slow dream).
LIVE_CADENCE_S = 0.05
AUTO_HISTORY_S = 0.5


class GenerationConfig(_Section):
    mode: str = "hybrid"
    model: ModelFamily = ModelFamily.FLUX_SCHNELL
    # A named size (SIZE_PRESETS) or "WIDTHxHEIGHT"; sets width and height (give one or the other).
    size: str | None = None
    width: Int = Field(256, ge=64, le=4096)
    height: Int = Field(512, ge=64, le=4096)
    steps: Int = Field(4, ge=1, le=200)
    cfg: Float = Field(1.0, ge=0.0, le=30.0)
    denoise: Float = Field(0.4, ge=0.0, le=1.0)
    seed_policy: SeedPolicy = SeedPolicy.RANDOM
    seed: Int = Field(0, ge=0, le=2**63 - 1)
    negative_prompt: str = ""
    # Hybrid: one keyframe by img2img, then this many slerped in-betweens before the next keyframe.
    keyframe_interval: Int = Field(8, ge=1, le=1000)
    # Interpolate: in-betweens between two keyframes of the latent walk.
    interpolation_frames: Int = Field(12, ge=1, le=1000)
    # Seconds between published frames (the display cadence). 0 publishes as fast as frames come.
    frame_interval: Float = Field(1.5, ge=0.0, le=3600.0)
    # The most frames generated ahead of display. How many are kept ahead is sized by need: enough
    # to hide how long generations take (p95 plus one interval), up to this.
    buffer_size: Int = Field(16, ge=1, le=1000)
    # Hybrid and interpolate: frames of the short slerp from the picture on screen to the first
    # keyframe after you change the prompt, skip or switch mode.
    transition_frames: Int = Field(4, ge=1, le=100)
    # Numbered copies kept under output/frames/ (oldest deleted first).
    history_size: Int = Field(300, ge=1, le=1_000_000)
    # Seconds between two frames kept in that history (every frame is still published). A live
    # cadence (1/60 s) would write and delete 60 files a second and its history would span five
    # seconds. auto: a frame every AUTO_HISTORY_S at a frame_interval under LIVE_CADENCE_S, else
    # every frame (frame_interval 0 too: as fast as a GPU makes frames). 0 keeps every frame.
    history_interval: float | Literal["auto"] = "auto"
    # status.json is rewritten after a published frame at most this often (seconds); the newest
    # frame's status follows within this time. Pauses and other state changes are written at once.
    status_interval: Float = Field(0.25, ge=0.0, le=60.0)
    # Colour coherence: each prompt's frames are held to the colours of its first frame (matched
    # in LAB, stronger the further they drift; dream/coherence.py), for every backend.
    colour_coherence: bool = True
    # The most a drifting frame is pulled back toward that reference, 0..1.
    colour_coherence_strength: Float = Field(1.0, ge=0.0, le=1.0)
    # Detail floor: frames softer than this fraction of their prompt's first frame's sharpness are
    # sharpened up to it (unsharp mask; dream/coherence.py). 0 turns it off.
    detail_floor: Float = Field(0.6, ge=0.0, le=1.0)
    cache: CacheConfig = CacheConfig()

    @property
    def history_every_s(self) -> float:
        """``history_interval`` in seconds, auto resolved against the cadence."""
        if self.history_interval != "auto":
            return float(self.history_interval)
        live = 0.0 < self.frame_interval < LIVE_CADENCE_S
        return AUTO_HISTORY_S if live else 0.0

    @field_validator("history_interval", mode="before")
    @classmethod
    def _seconds_or_auto(cls, v: Any) -> Any:
        if v == "auto":
            return v
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 86_400.0:
            raise ValueError(f"must be auto or seconds from 0 to 86400, got {_fmt(v)}")
        return float(v)

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, v: str) -> str:
        if v not in MODE_NAMES:
            raise ValueError(f"generation.mode must be one of {_one_of(MODE_NAMES)}, got {_fmt(v)}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _size_sets_width_and_height(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("size") is None:
            return data
        width, height = _parse_size(data["size"])
        # A config dumped and loaded again (with_overrides) carries both: they agree.
        if data.get("width", width) != width or data.get("height", height) != height:
            raise ValueError(
                "generation.size sets width and height: give size, or width and height, not both"
            )
        return {**data, "width": width, "height": height}

    @model_validator(mode="after")
    def _multiple_for_the_model(self) -> GenerationConfig:
        for name in ("width", "height"):
            v = getattr(self, name)
            if v % 8:
                raise ValueError(f"generation.{name} must be a multiple of 8, got {v}")
            step = SIZE_MULTIPLE[self.model]
            if v % step:
                raise ValueError(
                    f"generation.{name} must be a multiple of {step} for {self.model.value} "
                    f"(its latent is patched 2x2), got {v}; e.g. {v - v % step} or {v + step - v % step}"
                )
        return self


class PromptsConfig(_Section):
    # Prompts, one per entry; "text :: 2.0" gives a weight. Used when no file is given.
    list: builtins.list[str] = Field(
        default_factory=lambda: [
            "ethereal angel made of light, flowing robes, cosmic nebula, dreamy, soft glow",
            "bioluminescent ocean at night, glowing waves, deep blue and cyan",
            "ancient forest in mist, golden sun rays, moss, tranquil",
            "crystal cathedral, prismatic light, geometric, iridescent",
            "sunset over lavender fields, warm orange and purple sky, impressionist",
        ]
    )
    # A text file, one prompt per line, "#" comments, optional "text :: weight"; overrides `list`.
    file: Path | None = None
    # Move to another prompt every N frames (0 = never by count) ...
    rotate_every_frames: Int = Field(40, ge=0, le=1_000_000_000)
    # ... or every N minutes (0 = never by time); whichever comes first.
    rotate_every_minutes: Float = Field(0.0, ge=0.0, le=525_600.0)
    # A prompt you type (viewer, `dream-window prompt`) holds this long before rotation resumes
    # (0 = until you skip). Skipping always moves on at once.
    hold_minutes: Float = Field(10.0, ge=0.0, le=525_600.0)
    # Optional prompts by time of day; keys morning (5-12), afternoon (12-17), evening (17-22), night (22-5).
    themes: dict[Literal["morning", "afternoon", "evening", "night"], builtins.list[str]] = Field(
        default_factory=dict
    )


class GameDetectionConfig(_Section):
    enabled: bool = True
    known_games: list[str] = Field(default_factory=list)
    # Also watch a built-in list of popular game executables.
    use_default_games: bool = True
    # Any process whose executable lives under one of these folders counts as a game.
    game_library_paths: list[str] = Field(
        default_factory=lambda: ["steamapps/common", "Epic Games", "GOG Galaxy/Games", "GOG Games"]
    )
    # Executables that never count as games, on top of a built-in list of launchers and helpers.
    ignore_processes: list[str] = Field(default_factory=list)
    gpu_threshold: Float = Field(85.0, ge=1.0, le=100.0)
    # Resume only after utilisation stays below this for `gpu_hold_seconds`.
    gpu_resume_threshold: Float = Field(60.0, ge=0.0, le=100.0)
    gpu_hold_seconds: Float = Field(10.0, ge=0.0, le=86_400.0)
    gpu_window_seconds: Float = Field(6.0, ge=0.0, le=86_400.0)
    gpu_index: Int = Field(0, ge=0, le=1024)
    fullscreen: bool = True
    pause_on_battery: bool = False
    # Pause while nobody can see the dream: session locked, screensaver running, displays off.
    pause_when_unseen: bool = True
    check_interval: Float = Field(2.0, gt=0.0, le=600.0)
    # Pausing is immediate; a condition must stay clear this long before we resume (no thrashing).
    cooldown_seconds: Float = Field(5.0, ge=0.0, le=86_400.0)
    free_vram_on_pause: bool = True

    @model_validator(mode="after")
    def _hysteresis(self) -> GameDetectionConfig:
        if self.gpu_resume_threshold > self.gpu_threshold:
            raise ValueError(
                "game_detection.gpu_resume_threshold must not be above gpu_threshold "
                f"({self.gpu_threshold:g}), got {self.gpu_resume_threshold:g}"
            )
        return self


class FluxModelFiles(_Section):
    # "checkpoint": one all-in-one file (CheckpointLoaderSimple); "split": unet + two text encoders + vae.
    layout: Literal["checkpoint", "split"] = "checkpoint"
    checkpoint: str = "flux1-schnell-fp8.safetensors"
    unet: str = "flux1-schnell.safetensors"
    unet_weight_dtype: Literal["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"] = "default"
    clip_l: str = "clip_l.safetensors"
    t5: str = "t5xxl_fp8_e4m3fn.safetensors"
    vae: str = "ae.safetensors"


class ComfyUIConfig(_Section):
    flux: FluxModelFiles = FluxModelFiles()
    sd15_checkpoint: str = "v1-5-pruned-emaonly.safetensors"
    sdxl_turbo_checkpoint: str = "sd_xl_turbo_1.0_fp16.safetensors"
    sampler: str = "euler"
    scheduler: str = "simple"
    # Seconds a prompt may run before it is interrupted.
    generation_timeout: Float = Field(120.0, gt=0.0, le=86_400.0)
    request_timeout: Float = Field(30.0, gt=0.0, le=86_400.0)
    # Seconds to wait for a TCP connection: a server that is down is given up on this fast.
    connect_timeout: Float = Field(3.0, gt=0.0, le=60.0)
    max_retries: Int = Field(4, ge=0, le=20)
    # Seconds between checks for a ComfyUI that is down (or not started yet): it is found again
    # this soon after it answers.
    probe_interval: Float = Field(1.0, gt=0.0, le=60.0)
    # The same generation error this many times in a row opens the circuit breaker: no more
    # retries (the dream falls back with backend auto) until a check every breaker_retry_seconds passes.
    breaker_threshold: Int = Field(3, ge=1, le=100)
    breaker_retry_seconds: Float = Field(20.0, gt=0.0, le=3600.0)
    # Queue the frame the mode will most likely ask for next while this one downloads
    # (keeps the GPU busy; a wrong guess is interrupted and dropped).
    speculate: bool = True
    # Live previews while sampling: none, latent2rgb, taesd, auto.
    preview_method: Literal["none", "latent2rgb", "taesd", "auto"] = "none"
    # Frames go to ComfyUI's temp/ (PreviewImage; wiped at every server start), not output/, which
    # ComfyUI never cleans. True: SaveImage, so ComfyUI keeps a copy of every frame (grows forever).
    keep_outputs: bool = False
    # Bring your own workflow: an API-format JSON file plus where our values go.
    workflow: Path | None = None
    workflow_mapping: dict[str, str] = Field(default_factory=dict)


class InterpolationConfig(_Section):
    # Where latents are made and decoded: auto / backend (the backend's own VAE: ComfyUI's loaded model
    # on the server, or the built-in engine's latent), local (a diffusers VAE in this process).
    encoder: Literal["auto", "backend", "local"] = "auto"
    # Local VAE: one .safetensors file (a VAE, or a full checkpoint holding one), and its family.
    vae_path: Path | None = Field(None, validate_default=True)
    vae_family: Literal["sd", "sdxl", "flux", "taesd", "taesdxl", "taef1"] = "flux"
    decode_batch_size: Int = Field(4, ge=1, le=64)
    # Interpolate mode: a latent walk (every frame sampled from slerped noise and lerped prompt
    # conditioning) where the backend can do it (ComfyUI): auto / on (same, and an error when the
    # configured ComfyUI workflow cannot) / off (slerp keyframe latents and decode them).
    walk: WalkSwitch = "auto"

    @field_validator("vae_path")
    @classmethod
    def _local_needs_a_file(cls, v: Path | None, info: Any) -> Path | None:
        if v is None and info.data.get("encoder") == "local":
            raise ValueError("must be set when interpolation.encoder is 'local' (a VAE .safetensors file)")
        return v


class ViewerConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Int = Field(8765, ge=0, le=65535)
    crossfade_ms: Int = Field(1200, ge=0, le=60_000)
    show_previews: bool = False
    # Extra origins allowed to POST to the control API (the viewer's own origin always is).
    allowed_origins: list[str] = Field(default_factory=list)


class DreamConfig(_Section):
    system: SystemConfig = SystemConfig()
    generation: GenerationConfig = GenerationConfig()
    prompts: PromptsConfig = PromptsConfig()
    game_detection: GameDetectionConfig = GameDetectionConfig()
    comfyui: ComfyUIConfig = ComfyUIConfig()
    interpolation: InterpolationConfig = InterpolationConfig()
    viewer: ViewerConfig = ViewerConfig()

    # Directory relative paths are resolved against (the config file's folder); not a config key.
    base_dir: Path = Field(default=Path("."), exclude=True)

    def resolve(self, p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def output_dir(self) -> Path:
        return self.resolve(self.system.output_dir)

    @property
    def cache_dir(self) -> Path:
        return self.resolve(self.system.cache_dir)

    @property
    def log_dir(self) -> Path:
        return self.resolve(self.system.log_dir) if self.system.log_dir else user_dirs().logs

    def with_overrides(self, **dotted: Any) -> DreamConfig:
        """Return a copy with ``{"generation.mode": "img2img"}``-style overrides, validated again."""
        data = self.model_dump(mode="python", exclude={"base_dir"})
        for key, value in dotted.items():
            if value is None:
                continue
            node = data
            *parents, leaf = key.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
        return _validate(data, base_dir=self.base_dir, source="command line")


# --- loading and error messages ---------------------------------------------------------------


def _field_bounds(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, Any, bool, bool]:
    """The (lower, upper, lower_exclusive, upper_exclusive) bounds declared on the field at ``loc``."""
    cls: Any = model
    info = None
    for part in loc:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return None, None, False, False
        info = cls.model_fields[part]
        cls = info.annotation
    lo: Any = None
    hi: Any = None
    lo_ex = hi_ex = False
    for m in info.metadata if info else []:
        if isinstance(m, annotated_types.Ge):
            lo = m.ge
        elif isinstance(m, annotated_types.Gt):
            lo, lo_ex = m.gt, True
        if isinstance(m, annotated_types.Le):
            hi = m.le
        elif isinstance(m, annotated_types.Lt):
            hi, hi_ex = m.lt, True
    return lo, hi, lo_ex, hi_ex


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    cls: Any = model
    for part in loc:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return []
        cls = cls.model_fields[part].annotation
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return [k for k in cls.model_fields if k != "base_dir"]
    return []


# What a config error shows of a value, and how many problems it lists: a bad value can be a
# megabyte of text, and a list of 100,000 wrong items is 100,000 problems.
MAX_VALUE_CHARS = 80
MAX_PROBLEMS = 20


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "null"}[v]
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        shown = repr(v[: MAX_VALUE_CHARS + 1])
        return shown if len(v) <= MAX_VALUE_CHARS else f"{shown[:MAX_VALUE_CHARS]}… ({len(v)} characters)"
    return clip(_VALUE_REPR.repr(v), MAX_VALUE_CHARS)


class _ValueRepr(reprlib.Repr):
    """repr() that shows only the start of long or deep lists and mappings."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxdict, self.maxstring, self.maxother = 3, 5, 5, 40, 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() <= 200:
            return repr(x)
        # str() of a huge int is slow, and refused past 4300 digits.
        return f"a number of about {int(x.bit_length() * 0.30103) + 1} digits"


_VALUE_REPR = _ValueRepr()


def _describe(err: Mapping[str, Any]) -> str:
    loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
    key = clip(".".join(str(p) for p in loc), MAX_VALUE_CHARS)
    typ = err["type"]
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if typ == "extra_forbidden":
        parent, leaf = loc[:-1], str(loc[-1])
        allowed = _allowed_keys(DreamConfig, parent)
        close = difflib.get_close_matches(leaf, allowed, n=1, cutoff=0.6)
        hint = f" (did you mean '{'.'.join([*map(str, parent), close[0]])}'?)" if close else ""
        where = ".".join(map(str, parent)) or "the top level"
        return f"unknown key '{key}'{hint}; allowed in {where}: {', '.join(allowed)}"
    if typ in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        lo, hi, lo_ex, hi_ex = _field_bounds(DreamConfig, loc)
        if lo is not None and hi is not None:
            if not (lo_ex or hi_ex):
                return f"{key} must be between {_fmt(lo)} and {_fmt(hi)}, got {_fmt(got)}"
            low = f"greater than {_fmt(lo)}" if lo_ex else f"at least {_fmt(lo)}"
            high = f"less than {_fmt(hi)}" if hi_ex else f"at most {_fmt(hi)}"
            return f"{key} must be {low} and {high}, got {_fmt(got)}"
        bound = next(iter(ctx.values()), None)
        word = {
            "greater_than_equal": "at least",
            "greater_than": "greater than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[typ]
        return f"{key} must be {word} {_fmt(bound)}, got {_fmt(got)}"
    if typ == "enum" or typ == "literal_error":
        expected = ctx.get("expected", "")
        return f"{key} must be one of {expected}, got {_fmt(got)}"
    if typ == "invalid_key":
        where = ".".join(map(str, loc[:-1])) or "the top level"
        return f"keys must be text, got {_fmt(got)} in {where}"
    if typ in ("int_parsing", "int_type", "int_from_float"):
        return f"{key} must be a whole number, got {_fmt(got)}"
    if typ in ("float_parsing", "float_type"):
        return f"{key} must be a number, got {_fmt(got)}"
    if typ == "finite_number":
        return f"{key} must be a finite number, got {_fmt(got)}"
    if typ in ("bool_parsing", "bool_type"):
        return f"{key} must be true or false, got {_fmt(got)}"
    if typ in ("string_type",):
        return f"{key} must be text, got {_fmt(got)}"
    if typ in ("list_type",):
        return f"{key} must be a list, got {_fmt(got)}"
    if typ in ("model_type", "model_attributes_type", "dict_type"):
        return f"{key or 'the config'} must be a mapping of keys to values, got {_fmt(got)}"
    if typ == "value_error":
        msg = str(ctx.get("error", err["msg"]))
        # Our own validators already name the full key.
        if msg.startswith(("generation.", "game_detection.", "system.", "comfyui.", "prompts.")):
            return msg
        return f"{key} {msg}" if key else msg
    return f"{key}: {err['msg']}, got {_fmt(got)}"


def _validate(data: Any, *, base_dir: Path, source: str) -> DreamConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a mapping of sections, got {type(data).__name__}")
    if "base_dir" in data:
        raise ConfigError("unknown key 'base_dir'", path=source)
    try:
        return DreamConfig.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        errors = exc.errors()
        # One line each, of bounded length, whatever the values held.
        problems = [clip(_describe(e), 300) for e in errors[:MAX_PROBLEMS]]
        if len(errors) > MAX_PROBLEMS:
            problems.append(f"... and {len(errors) - MAX_PROBLEMS} more problems")
        raise ConfigError(problems[0], problems=problems, path=source) from None


def load_config(path: Path | None) -> DreamConfig:
    """Load and validate ``path``; ``None`` gives the defaults (relative paths under the CWD)."""
    if path is None:
        return _validate({}, base_dir=Path.cwd(), source="defaults")
    path = Path(path)
    text = read_text_file(
        path,
        what="config file",
        missing=f"config file {path} does not exist (create one with: dream-window init {path})",
    )
    data = load_yaml(text, label=str(path), path=str(path))
    return _validate(data, base_dir=path.resolve().parent, source=str(path))


def default_config_text() -> str:
    """The commented default config.yaml shipped with the package (what `dream-window init` writes)."""
    from importlib.resources import files

    return (files("dream_window") / "data" / "config.yaml").read_text(encoding="utf-8")


def user_config_text(dirs: UserDirs) -> str:
    """The packaged config with absolute per-user folders: what ``dream-window init`` writes as the
    user's config (``dirs.config_file``).

    ``output_dir`` is ``dirs.output`` and ``cache_dir`` ``dirs.cache``: a config in the user's config
    folder must not send frames beside it (on macOS and Windows that is the app's own data folder,
    on Linux ~/.config), nor beside wherever the command ran.
    """
    text = _set_folder(default_config_text(), "output_dir", "output", dirs.output)
    return _set_folder(text, "cache_dir", "cache", dirs.cache)


def _set_folder(text: str, key: str, default: str, folder: Path) -> str:
    # Single-quoted YAML: a Windows path's backslashes stay backslashes; a quote is doubled.
    quoted = "'" + str(folder).replace("'", "''") + "'"
    line = re.compile(rf'^(?P<lead>\s+{key}:\s*)"{default}"[ \t]*$', re.MULTILINE)
    text, n = line.subn(lambda m: m.group("lead") + quoted, text, count=1)
    if n != 1:  # the packaged config changed shape: a test catches it before a user does
        raise RuntimeError(f'the packaged config has no line `{key}: "{default}"` to point at {folder}')
    return text
