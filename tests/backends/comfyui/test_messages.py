"""WebSocket message parsing against the recorded frames (both binary header layouts)."""

from __future__ import annotations

import json
import struct
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
    header = json.dumps(
        {"latent_tensor": {"dtype": "F32", "shape": [1, 1, 1, 1], "data_offsets": [0, 4]}}
    ).encode()
    legacy = struct.pack("<Q", len(header)) + header + np.float32(0.18215).tobytes()
    assert latent_file.loads(legacy)[0, 0, 0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        latent_file.loads(b"\x01")
    with pytest.raises(ValueError):
        latent_file.dumps(z[0])


# --- binary frames, byte by byte ------------------------------------------------------------
# Built with struct from the layout the recordings show (big-endian u32 event, then a format code
# or a metadata length), so these run without shared/ beside the repository.

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(12))


def frame(event: int, word: int, rest: bytes = b"") -> bytes:
    return struct.pack(">II", event, word) + rest


def with_meta(meta: bytes, image: bytes = JPEG) -> bytes:
    return frame(4, len(meta), meta + image)


@pytest.mark.parametrize(
    ("fmt", "mime"), [(1, "image/jpeg"), (2, "image/png"), (3, "application/octet-stream")]
)
def test_type_1_frames_name_their_format_and_unknown_codes_are_octet_stream(fmt: int, mime: str) -> None:
    p = parse_binary(frame(1, fmt, JPEG))
    assert p is not None and (p.event, p.mime, p.image, p.meta) == (1, mime, JPEG, {})


def test_a_format_code_with_the_high_bit_set_is_unknown_not_negative() -> None:
    p = parse_binary(frame(1, 0xFFFFFFFE, JPEG))
    assert p is not None and p.mime == "application/octet-stream" and p.image == JPEG


def test_a_header_only_frame_is_a_preview_with_no_image_bytes() -> None:
    # 8 bytes is a whole header: the shortest frame that parses.
    one = parse_binary(frame(1, 1))
    assert one is not None and one.image == b"" and one.mime == "image/jpeg"
    with pytest.raises(MessageError, match=r"too short \(7 bytes\)"):
        parse_binary(frame(1, 1)[:7])


def test_type_4_metadata_names_the_mime_and_the_prompt() -> None:
    meta = json.dumps({"image_type": "image/png", "prompt_id": "p-1", "node_id": "3"}).encode()
    p = parse_binary(with_meta(meta))
    assert p is not None and (p.event, p.mime, p.image, p.prompt_id) == (4, "image/png", JPEG, "p-1")
    assert p.meta["node_id"] == "3"


@pytest.mark.parametrize(
    ("meta", "kept"),
    [
        (b"{}", {}),
        (b'{"image_type": 5}', {"image_type": 5}),
        (b'{"image_type": null}', {"image_type": None}),
        (b"[1, 2]", {}),  # metadata that is not an object is dropped, the image kept
        (b'"image/png"', {}),
    ],
)
def test_type_4_without_a_usable_image_type_is_jpeg(meta: bytes, kept: dict[str, object]) -> None:
    p = parse_binary(with_meta(meta))
    assert p is not None and (p.mime, p.image, p.meta, p.prompt_id) == ("image/jpeg", JPEG, kept, None)


def test_type_4_metadata_may_fill_the_frame_exactly() -> None:
    p = parse_binary(with_meta(b'{"prompt_id": "p"}', image=b""))
    assert p is not None and p.image == b"" and p.prompt_id == "p"


def test_type_4_metadata_longer_than_the_frame_is_refused() -> None:
    meta = b'{"prompt_id": "p"}'
    with pytest.raises(MessageError, match=r"metadata length 19 exceeds the frame \(26 bytes\)"):
        parse_binary(frame(4, len(meta) + 1, meta))


def test_a_huge_metadata_length_is_refused_not_read_as_negative() -> None:
    # 0xFFFFFFF0 read as a signed int is -16, which would slice the metadata from the middle.
    image = bytes(8)
    huge = frame(4, 2**32 - (8 + len(image)), b"{}" + image)
    with pytest.raises(MessageError, match="exceeds the frame"):
        parse_binary(huge)


def test_type_4_metadata_that_is_not_json_names_itself() -> None:
    with pytest.raises(MessageError, match=r"^preview metadata is not JSON"):
        parse_binary(with_meta(b"{nope"))


def test_an_event_with_the_high_bit_set_is_ignored() -> None:
    assert parse_binary(frame(0x80000001, 1, JPEG)) is None


# --- text messages: what is checked before anything acts on them ---------------------------------


def test_a_status_message_carries_its_queue_and_may_leave_fields_out() -> None:
    full = parse_text(
        json.dumps({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 2}}}})
    )
    assert (full.type, full.data) == ("status", {"status": {"exec_info": {"queue_remaining": 2}}})
    for data in (
        {},
        {"status": {}},
        {"status": {"exec_info": {}}},
        {"status": {"exec_info": {"queue_remaining": None}}},
    ):
        assert parse_text(json.dumps({"type": "status", "data": data})).data == data


@pytest.mark.parametrize(
    "exec_info",
    [[], "busy", {"queue_remaining": "2"}, {"queue_remaining": [1]}, "b" * 100],
)
def test_a_status_message_with_a_bad_exec_info_is_refused_naming_it(exec_info: object) -> None:
    text = json.dumps({"type": "status", "data": {"status": {"exec_info": exec_info}}})
    with pytest.raises(MessageError) as err:
        parse_text(text)
    assert str(err.value) == f"status message with a bad exec_info: {str(exec_info)[:80]!r}"


def test_a_message_field_of_the_wrong_type_is_refused_naming_the_type_the_field_and_the_value() -> None:
    long = "x" * 100
    with pytest.raises(MessageError) as err:
        parse_text(json.dumps({"type": "progress", "data": {"value": long, "max": 4}}))
    assert str(err.value) == f"progress message with a bad 'value': {long[:80]!r}"
    with pytest.raises(MessageError) as err:
        parse_text(json.dumps({"type": "status", "data": {"status": "up"}}))
    assert str(err.value) == "status message with a bad 'status': 'up'"


def test_counts_are_finite_numbers() -> None:
    assert parse_text(json.dumps({"type": "progress", "data": {"value": 1.5, "max": 4}})).data["value"] == 1.5
    for bad in ("NaN", "Infinity"):  # Python's json reads both
        with pytest.raises(MessageError, match="bad 'value'"):
            parse_text('{"type": "progress", "data": {"value": ' + bad + ', "max": 4}}')


def test_messages_we_do_not_act_on_are_not_checked_and_data_that_is_not_an_object_is_empty() -> None:
    assert parse_text(json.dumps({"type": "crystools.monitor", "data": {"value": "x"}})).data == {
        "value": "x"
    }
    assert parse_text(json.dumps({"type": "progress", "data": [1, 2]})).data == {}


def test_a_frame_without_a_message_type_is_refused_with_its_start() -> None:
    text = json.dumps({"data": {"pad": "y" * 100}})
    with pytest.raises(MessageError) as err:
        parse_text(text)
    assert str(err.value) == f"no message type in {text[:80]!r}"
    for text, message in (("[1]", "no message type in '[1]'"), ("nope", "text frame is not JSON: 'nope'")):
        with pytest.raises(MessageError) as err:
            parse_text(text)
        assert str(err.value) == message


def test_a_frame_that_is_not_json_is_named_with_its_first_80_characters() -> None:
    text = "<html>" + "z" * 200
    with pytest.raises(MessageError) as err:
        parse_text(text)
    assert str(err.value) == f"text frame is not JSON: {text[:80]!r}"


def test_a_frame_nested_deeper_than_the_parser_goes_is_refused_not_a_crash() -> None:
    text = "[" * 200_000 + "]" * 200_000  # (no ComfyUI message is; a broken or hostile peer's)
    with pytest.raises(MessageError) as err:
        parse_text(text)
    assert str(err.value) == "text frame is nested too deeply"
