"""The control token and the access policy, without a server: ensure_token, read_token, make_policy."""

from __future__ import annotations

import base64
import errno
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dream_window.errors import ConfigError
from dream_window.web.security import (
    AccessPolicy,
    ensure_token,
    host_name,
    is_loopback,
    make_policy,
    read_token,
    token_path,
)


def test_no_token_file_reads_as_none_and_a_blank_one_too(dream_home: Path) -> None:
    assert read_token() is None
    token_path().write_text("  \n", encoding="utf-8")
    assert read_token() is None
    token_path().write_text("  abc-123\n", encoding="utf-8")
    assert read_token() == "abc-123"


def test_the_token_carries_256_random_bits() -> None:
    token, created = ensure_token()
    assert created
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert len(raw) == 32
    assert ensure_token() == (token, False)


def test_a_token_already_written_is_kept(dream_home: Path) -> None:
    token_path().write_text("mine\n", encoding="utf-8")
    assert ensure_token() == ("mine", False)
    assert token_path().read_text(encoding="utf-8") == "mine\n"


def test_the_home_folder_and_its_parents_are_made_for_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "not" / "yet" / "there"
    monkeypatch.setenv("DREAM_WINDOW_HOME", str(home))
    token, created = ensure_token()
    assert created and (home / "control-token").read_text(encoding="utf-8") == token + "\n"


def test_an_empty_token_file_is_an_error_that_says_what_to_do(dream_home: Path) -> None:
    token_path().write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="exists but is empty; delete it to make a new one"):
        ensure_token()
    assert token_path().read_text(encoding="utf-8") == ""  # never clobbered


@pytest.fixture
def eager_thread_switches() -> Iterator[None]:
    """Switch threads every microsecond (not every 5 ms): races between threads show up at once."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_first_starts_at_once_all_get_the_one_token_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, eager_thread_switches: None
) -> None:
    # The race of two first starts: one has created the token file and not yet written it, the
    # other reads it empty. Eight at once, many times over (with the file opened first and
    # written after, about one round in five went wrong here).
    def first_start(start: threading.Barrier, got: list[tuple[str, bool] | Exception]) -> None:
        start.wait()
        try:
            got.append(ensure_token())
        except Exception as exc:  # collected: the assert below shows it
            got.append(exc)

    for round_ in range(300):
        monkeypatch.setenv("DREAM_WINDOW_HOME", str(tmp_path / str(round_)))
        start = threading.Barrier(8)
        got: list[tuple[str, bool] | Exception] = []
        threads = [threading.Thread(target=first_start, args=(start, got)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        written = token_path().read_text(encoding="utf-8")
        assert sorted(got, key=repr) == [(written.strip(), False)] * 7 + [(written.strip(), True)]
        assert written.endswith("\n") and len(written.strip()) == 43
        assert os.listdir(token_path().parent) == ["control-token"]  # no temp file left behind


def test_a_home_that_cannot_be_made_is_a_config_error_naming_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("DREAM_WINDOW_HOME", str(blocker / "home"))
    with pytest.raises(ConfigError) as err:
        ensure_token()
    folder = blocker / "home"
    assert str(err.value) == (
        f"cannot make the folder {folder} for the control token: {os.strerror(errno.ENOTDIR)}"
    )


def test_a_home_that_is_a_file_is_named_as_such_not_as_an_empty_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mkdir raises FileExistsError here, which once fell into the "token file exists but is empty"
    # branch meant for a token written by another process.
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("DREAM_WINDOW_HOME", str(blocker))
    with pytest.raises(ConfigError) as err:
        ensure_token()
    assert str(err.value) == (
        f"cannot make the folder {blocker} for the control token: {os.strerror(errno.EEXIST)}"
    )


def test_a_loopback_policy_needs_no_token_and_creates_none(dream_home: Path) -> None:
    policy, created = make_policy("127.0.0.1", ["http://TV.local:8080/"])
    assert (policy, created) == (
        AccessPolicy(token=None, allowed_origins=frozenset({"http://tv.local:8080"})),
        False,
    )
    assert not token_path().exists()


def test_allowed_origins_are_normalised_on_and_off_loopback() -> None:
    own = "http://127.0.0.1:8765"
    for host in ("localhost", "0.0.0.0"):
        policy, _ = make_policy(host, ["http://BOX/", "https://Tv.Local:8080"])
        assert policy.allowed_origins == frozenset({"http://box", "https://tv.local:8080"}), host
        assert policy.origin_ok("http://box", own_origin=own)
        assert policy.origin_ok("https://tv.local:8080/", own_origin=own)
        assert not policy.origin_ok("http://bo", own_origin=own)


# --- loopback names, Host headers and origins ---------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("[::1]", True),
        ("LOCALHOST", True),
        ("dev.localhost", True),  # RFC 6761: every name under .localhost is loopback
        ("dev.LocalHost", True),
        ("localhost.evil.example", False),
        ("X127.0.0.1", False),  # nothing but brackets and spaces is trimmed from a name
        ("192.168.1.5", False),
        ("", False),
    ],
)
def test_loopback_names(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8765", "127.0.0.1"),
        ("[::1]:8765", "::1"),
        ("[::1]", "::1"),
        ("[::1]x]:80", "::1"),  # the name ends at the first closing bracket
        ("localhost", "localhost"),
        ("::1", "::1"),  # an unbracketed IPv6 address has no port to cut
    ],
)
def test_the_name_of_a_host_header(header: str, name: str) -> None:
    assert host_name(header) == name


def test_a_request_without_origin_is_refused_when_the_browser_says_it_is_cross_or_same_site() -> None:
    policy = AccessPolicy(token=None)
    own = "http://127.0.0.1:8765"
    assert policy.origin_ok(None, own_origin=own) is True  # curl, the CLI, Rainmeter
    assert policy.origin_ok(None, own_origin=own, sec_fetch_site="same-origin") is True
    assert policy.origin_ok(None, own_origin=own, sec_fetch_site="none") is True  # typed in the bar
    assert policy.origin_ok(None, own_origin=own, sec_fetch_site="same-site") is False
    assert policy.origin_ok(None, own_origin=own, sec_fetch_site="cross-site") is False


def test_an_origin_is_compared_without_its_trailing_slash_and_case() -> None:
    policy = AccessPolicy(token=None, allowed_origins=frozenset({"http://tv.local:8080"}))
    own = "http://127.0.0.1:8765"
    assert policy.origin_ok("HTTP://127.0.0.1:8765/", own_origin=own) is True
    assert policy.origin_ok("http://tv.local:8080/", own_origin=own) is True
    # Only slashes are trimmed: an origin with another character at its end is another origin.
    assert policy.origin_ok("http://tv.local:8080X", own_origin=own) is False
    assert policy.origin_ok("http://evil.example", own_origin=own) is False
