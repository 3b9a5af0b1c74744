"""Processes on the lab's hosts (`p2pfaas.lab.processes`): waiting polls until true, else names what
it waited for. Starting and stopping processes on hosts: the lab tests (root)."""

from __future__ import annotations

import itertools

import pytest

from p2pfaas.lab.netns import LabError
from p2pfaas.lab.processes import wait_for


def test_wait_for_returns_once_the_predicate_holds_and_fails_naming_it() -> None:
    counter = itertools.count()
    wait_for(lambda: next(counter) >= 3, timeout_s=30, what="three polls", every_s=0)
    assert next(counter) == 4
    with pytest.raises(LabError, match="not within 0 s: the node to answer"):
        wait_for(lambda: False, timeout_s=0.05, what="the node to answer", every_s=0.01)
