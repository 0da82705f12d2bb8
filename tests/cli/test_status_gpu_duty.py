"""``dream-window status`` shows ComfyUI's GPU duty (status.json's ``comfyui``): one line, one per
server when there are several, nothing without the section, and no traceback for a damaged one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_status import status, write_status


def duty(fraction: float, busy: float, window: float, *, running: bool = False) -> dict[str, Any]:
    return {"fraction": fraction, "busy_s": busy, "window_s": window, "running": running}


def gpu_lines(output: str) -> list[str]:
    return [" ".join(line.split()[2:]) for line in output.splitlines() if line.startswith("GPU duty")]


def test_one_server_is_one_line(tmp_path: Path) -> None:
    d = duty(0.4167, 25.0, 60.0, running=True)
    out = write_status(
        tmp_path / "out",
        state="stopped",
        comfyui={"servers": [{"url": "http://a:8188", "gpu_duty": d}], "gpu_duty": d},
    )
    r = status("-o", str(out))
    assert r.exit_code == 0, r.output
    assert gpu_lines(r.output) == ["42% of the last 60 s (25.0 s on our prompts, one running now)"]


def test_several_servers_are_a_line_each(tmp_path: Path) -> None:
    a, b = duty(0.1, 6.0, 60.0), duty(0.75, 45.0, 60.0)
    servers = [{"url": "http://a:8188", "gpu_duty": a}, {"url": "http://b:8188", "gpu_duty": b}]
    out = write_status(tmp_path / "out", state="stopped", comfyui={"servers": servers, "gpu_duty": b})
    r = status("-o", str(out))
    assert gpu_lines(r.output) == [
        "http://a:8188: 10% of the last 60 s (6.0 s on our prompts)",
        "http://b:8188: 75% of the last 60 s (45.0 s on our prompts)",
    ]


@pytest.mark.parametrize("section", [None, "broken", {"gpu_duty": "x"}, {"gpu_duty": {"fraction": "half"}}])
def test_no_section_or_a_damaged_one_shows_no_line(tmp_path: Path, section: object) -> None:
    fields = {} if section is None else {"comfyui": section}
    out = write_status(tmp_path / "out", state="stopped", **fields)
    r = status("-o", str(out))
    assert r.exit_code == 0, r.output
    assert gpu_lines(r.output) == []
