"""Where a lessee's things are (`p2pfaas.environment`): P2PFAAS_HOME, _ANCHOR, _KEY and _TOKEN, their
defaults, and the errors that say how to make what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pfaas import environment
from p2pfaas.errors import LocalError
from p2pfaas.identity import KeyPair


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("P2PFAAS_HOME", "P2PFAAS_ANCHOR", "P2PFAAS_KEY", "P2PFAAS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("P2PFAAS_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def test_everything_lives_under_the_home_unless_the_environment_says_otherwise(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert environment.home() == home
    assert environment.default_key() == home / "lessee.key"
    assert environment.token_path() == home / "token"
    assert environment.logs_dir() == home / "logs"
    assert environment.voucher_state_path("0123456789abcdef" * 3) == home / "voucher-0123456789abcdef.json"
    assert environment.default_anchor() == environment.DEFAULT_ANCHOR
    monkeypatch.setenv("P2PFAAS_KEY", str(tmp_path / "elsewhere.key"))
    monkeypatch.setenv("P2PFAAS_ANCHOR", "https://anchor.example")
    assert environment.default_key() == tmp_path / "elsewhere.key"
    assert environment.default_anchor() == "https://anchor.example"
    monkeypatch.delenv("P2PFAAS_HOME")
    assert environment.home() == Path.home() / ".p2pfaas"


def test_the_token_comes_from_the_environment_else_the_saved_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert environment.saved_token() is None
    with pytest.raises(LocalError, match="not logged in"):
        environment.load_token()
    home.mkdir()
    environment.token_path().write_text("saved-token\n")
    assert environment.load_token() == "saved-token"
    monkeypatch.setenv("P2PFAAS_TOKEN", " from-env ")
    assert environment.load_token() == "from-env"


def test_a_missing_key_says_how_to_make_one(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "lessee.key"
    with pytest.raises(LocalError, match=r"no key at .*p2pfaas keys new.*pass --key"):
        environment.lessee_keys(path, otherwise="pass --key")
    keys = KeyPair.generate()
    keys.save(path)
    assert environment.lessee_keys(path, otherwise="pass --key").key_id == keys.key_id
