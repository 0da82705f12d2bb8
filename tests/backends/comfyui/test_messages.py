"""WebSocket message parsing against the recorded frames (both binary header layouts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from comfyui_fake.protocol import preview_frame
from dream_window.backends.comfyui import latent_file
from dream_window.backends.comfyui.messages import MessageError, parse_binary, parse_text
from tests.conftest import load_json


@pytest.mark.parametrize("scenario,event", [("02_txt2img", 1), ("03_txt2img_warm_feature_flags", 4)])
def test_recorded_preview_frames_parse(recorded: Path, scenario: str, event: int) -> None:
    frames = sorted((recorded / scenario / "binary").glob("*.bin"))
    assert frames
    transcript = load_json(recorded / scenario / "transcript.json")
    pid = next(
        e["json"]["data"]["prompt_id"]
        for e in transcript
        if e["dir"] == "ws_in" and e.get("kind") == "text" and e["json"]["type"] == "execution_start"
    )
    for f in frames:
        p = parse_binary(f.read_bytes())
        assert p is not None and p.event == event
        assert p.mime == "image/jpeg" and p.image[:3] == b"\xff\xd8\xff"
        if event == 4:
            assert p.prompt_id == pid and p.meta["node_id"] == "3"


def test_preview_round_trip_both_layouts() -> None:
    jpeg = b"\xff\xd8\xff" + bytes(range(50))
    # Frames as the fake server builds them, with its own encoder (anchored to the recordings).
    one = parse_binary(preview_frame(jpeg, "image/jpeg", prompt_id="p", node_id="3", with_metadata=False))
    four = parse_binary(preview_frame(jpeg, "image/jpeg", prompt_id="p", node_id="3", with_metadata=True))
    assert one is not None and one.event == 1 and one.image == jpeg and one.meta == {}
    assert four is not None and four.event == 4 and four.image == jpeg and four.prompt_id == "p"
    assert parse_binary(b"\x00\x00\x00\x09" + b"\x00" * 8) is None  # unknown events are ignored
    with pytest.raises(MessageError):
        parse_binary(b"\x00\x00")
    with pytest.raises(MessageError):
        parse_binary(b"\x00\x00\x00\x04\x00\x00\xff\xff{}")


def test_text_messages(recorded: Path) -> None:
    transcript = load_json(recorded / "02_txt2img" / "transcript.json")
    texts = [e["json"] for e in transcript if e["dir"] == "ws_in" and e.get("kind") == "text"]
    import json

    msgs = [parse_text(json.dumps(t)) for t in texts]
    assert msgs[-1].is_done and msgs[-1].prompt_id
    assert [m for m in msgs if m.is_done] == [msgs[-1]]
    with pytest.raises(MessageError):
        parse_text("nope")
    with pytest.raises(MessageError):
        parse_text('{"data": {}}')


def test_latent_file_round_trip_and_legacy_scale() -> None:
    z = np.random.default_rng(0).standard_normal((3, 16, 8, 4)).astype(np.float32)
    assert np.array_equal(latent_file.loads(latent_file.dumps(z)), z)
    # Without the version marker, LoadLatent treats the file as the legacy format (scaled by 1/0.18215).
    import json
    import struct

    header = json.dumps(
        {"latent_tensor": {"dtype": "F32", "shape": [1, 1, 1, 1], "data_offsets": [0, 4]}}
    ).encode()
    legacy = struct.pack("<Q", len(header)) + header + np.float32(0.18215).tobytes()
    assert latent_file.loads(legacy)[0, 0, 0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        latent_file.loads(b"\x01")
    with pytest.raises(ValueError):
        latent_file.dumps(z[0])
