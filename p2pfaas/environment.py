"""Where a lessee's things are, shared by the CLI and the library: `Executor()` with no arguments
finds what `p2pfaas keys new` and `p2pfaas account login` left.

    P2PFAAS_HOME     the state directory (default ~/.p2pfaas)
    P2PFAAS_ANCHOR   the anchor's URL (default http://127.0.0.1:8700, a devnet's)
    P2PFAAS_KEY      the lessee key file (default $P2PFAAS_HOME/lessee.key)
    P2PFAAS_TOKEN    an account token (default: the one `account login` saved in $P2PFAAS_HOME/token)

Standard library only (a floor module): the CLI reads it at every start.
`p2pfaas.client.Client.from_environment()` builds a client (and a wallet paying from the logged-in
account) from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from p2pfaas.errors import LocalError

if TYPE_CHECKING:
    from p2pfaas.identity import KeyPair

__all__ = [
    "DEFAULT_ANCHOR",
    "default_anchor",
    "default_key",
    "home",
    "lessee_keys",
    "load_token",
    "logs_dir",
    "saved_token",
    "token_path",
    "voucher_state_path",
]

DEFAULT_ANCHOR = "http://127.0.0.1:8700"
VOUCHER_TTL_S = 3600.0


def home() -> Path:
    return Path(os.environ.get("P2PFAAS_HOME", Path.home() / ".p2pfaas"))


def default_key() -> Path:
    return Path(os.environ.get("P2PFAAS_KEY", home() / "lessee.key"))


def default_anchor() -> str:
    return os.environ.get("P2PFAAS_ANCHOR", DEFAULT_ANCHOR)


def lessee_keys(path: Path, *, otherwise: str) -> KeyPair:
    """The lessee key at `path`, or LocalError saying how to make one (`otherwise`: the other way,
    such as "pass --key")."""
    from p2pfaas.identity import KeyPair  # its crypto is loaded only when a key is

    if not Path(path).exists():
        raise LocalError(f"no key at {path}; make one with `p2pfaas keys new` (or {otherwise})")
    return KeyPair.load(path)


def logs_dir() -> Path:
    """Where the client keeps what its calls printed (`p2pfaas.client.logbook`, `fn logs`)."""
    return home() / "logs"


def token_path() -> Path:
    return home() / "token"


def voucher_state_path(key_id: str) -> Path:
    """Where the voucher of lessee key `key_id` and what was spent from it are kept between runs."""
    return token_path().parent / f"voucher-{key_id[:16]}.json"


def saved_token() -> str | None:
    """The account token: P2PFAAS_TOKEN, else the one `account login` saved; None when neither."""
    from_env = os.environ.get("P2PFAAS_TOKEN")
    if from_env:
        return from_env.strip()
    try:
        return token_path().read_text().strip()
    except FileNotFoundError:
        return None


def load_token() -> str:
    """`saved_token()`, or LocalError saying how to log in."""
    token = saved_token()
    if token is None:
        raise LocalError("not logged in: `p2pfaas account login NAME` (or set P2PFAAS_TOKEN)")
    return token
