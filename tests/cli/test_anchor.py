"""`p2pfaas anchor serve`'s options (p2pfaas/cli/anchor.py): what they set in the anchor's settings, and
a clear error for each out-of-range or half-given one."""

from __future__ import annotations

import pytest

from p2pfaas.anchor.app import AnchorSettings
from p2pfaas.cli.anchor import anchor_settings
from p2pfaas.cli.main import build_parser
from p2pfaas.errors import LocalError


def settings_of(*options: str) -> AnchorSettings:
    return anchor_settings(build_parser().parse_args(["anchor", "serve", *options]))


def test_the_options_set_the_anchors_settings() -> None:
    settings = settings_of(
        "--require-accounts", "--no-signup", "--earnings-mature-hours", "1", "--channel-quiet", "30",
        "--metrics-allow", "192.0.2.0/24", "--public-url", "https://anchor.example",
    )  # fmt: skip
    assert settings.require_accounts and not settings.allow_signup
    assert settings.earnings_mature_s == 3600.0 and settings.channel_quiet_s == 30.0
    assert settings.public_url == "https://anchor.example"
    assert any(str(network) == "192.0.2.0/24" for network in settings.metrics_allow)
    defaults = settings_of()
    assert defaults.allow_signup and defaults.earnings_mature_s == 72 * 3600.0


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        (("--earnings-mature-hours", "-1"), "--earnings-mature-hours"),
        (("--channel-quiet", "0.5"), "--channel-quiet"),
        (("--metrics-allow", "nonsense"), "--metrics-allow"),
        (("--tls-cert", "cert.pem"), "--tls-cert and --tls-key go together"),
    ],
)
def test_a_bad_option_is_one_clear_error(options: tuple[str, ...], complaint: str) -> None:
    with pytest.raises(LocalError, match=complaint):
        settings_of(*options)
