"""Login throttling (sans-I/O): lockouts grow with failures, expire, stay per pair, and stay bounded."""

from __future__ import annotations

from p2pfaas.anchor.throttle import LoginThrottle, Throttle


def test_a_key_is_locked_out_after_its_threshold_and_longer_each_time() -> None:
    throttle = Throttle(threshold=3, base_s=1.0, max_s=8.0, window_s=100.0)
    for t in range(3):
        assert throttle.wait_s("k", float(t)) == 0.0
        throttle.failed("k", float(t))
    assert throttle.wait_s("k", 2.0) == 1.0  # 3rd failure at t=2: locked until t=3
    assert throttle.wait_s("k", 3.0) == 0.0
    throttle.failed("k", 3.0)
    assert throttle.wait_s("k", 3.0) == 2.0
    for later in (4.0, 5.0, 6.0, 7.0):
        throttle.failed("k", later)
    assert throttle.wait_s("k", 7.0) == 8.0  # capped at max_s
    assert throttle.wait_s("k", 7.0 + 100.0) == 0.0  # the window passed: forgotten


def test_state_is_bounded() -> None:
    throttle = Throttle(threshold=1, capacity=10)
    for n in range(1000):
        throttle.failed(f"user{n}", 0.0)
    assert len(throttle._keys) == 10
    assert throttle.wait_s("user999", 0.0) > 0 and throttle.wait_s("user0", 0.0) == 0.0


def test_a_stranger_cannot_lock_a_user_out_before_a_large_attack() -> None:
    logins = LoginThrottle()
    for _ in range(20):
        logins.failed("alice", "10.0.0.66", 0.0)
    assert logins.wait_s("alice", "10.0.0.66", 0.0) > 0  # the guesser is locked out
    assert logins.wait_s("alice", "10.0.0.7", 0.0) == 0.0  # alice, elsewhere, is not
    for n in range(200):  # a distributed attack on one name slows that name down everywhere
        logins.failed("alice", f"10.1.{n // 256}.{n % 256}", 0.0)
    assert logins.wait_s("alice", "10.0.0.7", 0.0) > 0


def test_success_clears_the_pair() -> None:
    logins = LoginThrottle()
    for _ in range(4):
        logins.failed("bob", "ip", 0.0)
    logins.succeeded("bob", "ip")
    logins.failed("bob", "ip", 0.0)
    assert logins.wait_s("bob", "ip", 0.0) == 0.0


def test_attempts_count_before_the_password_check_and_success_takes_it_back() -> None:
    logins = LoginThrottle()
    # Ten concurrent guesses: each is counted as it starts, so the sixth already waits.
    waits = [logins.attempt("carol", "ip", 0.0) for _ in range(10)]
    assert waits[:5] == [0.0] * 5 and all(w > 0 for w in waits[5:])
    honest = LoginThrottle()
    for _ in range(100):  # a user who logs in all day is never locked out
        assert honest.attempt("dave", "ip", 0.0) == 0.0
        honest.succeeded("dave", "ip")
    assert honest.address._keys == {} and honest.user._keys == {}
