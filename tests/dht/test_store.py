"""The record store: many publishers per key, no overwriting of others, expiry, quotas (defects 5, 6, 8)."""

from __future__ import annotations

from kademlia.storage import ForgetfulStorage

from p2pfaas.dht.records import make_record, provider_key
from p2pfaas.dht.store import PutResult, RecordStore, StoreLimits
from p2pfaas.dht.wire import Record
from p2pfaas.identity import KeyPair

NOW = 1_000_000.0
KEY = provider_key(b"\x01" * 32)
ALICE, BOB = KeyPair.from_seed(b"alice"), KeyPair.from_seed(b"bob")


def _record(keys: KeyPair, seq: int = 1, ttl_s: float = 600.0, key: bytes = KEY, port: int = 8000) -> Record:
    return make_record(keys, key=key, seq=seq, expires_at=NOW + ttl_s, host="10.0.0.1", port=port)


def _store(**limits: int) -> RecordStore:
    return RecordStore(lambda: NOW, StoreLimits(**limits))


def test_many_publishers_share_a_key_one_record_each() -> None:
    store = _store()
    assert store.put(_record(ALICE), NOW) is PutResult.ACCEPTED
    assert store.put(_record(BOB), NOW) is PutResult.ACCEPTED
    assert store.put(_record(ALICE, seq=2, port=9000), NOW) is PutResult.ACCEPTED  # supersedes alice's
    found = store.get_records(KEY, NOW)
    assert sorted(r.port for r in found) == [8000, 9000] and len(store) == 2


def test_the_stock_storage_keeps_one_value_per_key_last_writer_wins() -> None:
    stock = ForgetfulStorage()
    stock[KEY] = b"alice's"
    stock[KEY] = b"mallory's"
    assert stock.get(KEY) == b"mallory's"  # defect 6/8: anyone overwrites anyone


def test_an_older_or_equal_sequence_number_is_refused() -> None:
    store = _store()
    store.put(_record(ALICE, seq=5), NOW)
    assert store.put(_record(ALICE, seq=5, port=1), NOW) is PutResult.STALE
    assert store.put(_record(ALICE, seq=4, port=1), NOW) is PutResult.STALE
    assert store.get_records(KEY, NOW)[0].port == 8000


def test_records_expire_and_holders_never_republish() -> None:
    store = _store()
    store.put(_record(ALICE, ttl_s=60.0), NOW)
    store.put(_record(BOB, ttl_s=600.0), NOW)
    assert store.iter_older_than(0) == []  # only the publisher republishes (defect 5)
    assert len(store.get_records(KEY, NOW + 61)) == 1
    assert store.expire(NOW + 61) == 1 and len(store) == 1
    assert store.expire(NOW + 601) == 1 and len(store) == 0 and store.keys() == []


def test_the_stock_storage_hands_every_value_back_for_republishing() -> None:
    stock = ForgetfulStorage()
    stock[KEY] = b"v"
    assert stock.iter_older_than(0) == [(KEY, b"v")]  # every holder republishes: values never die


def test_expired_and_too_long_records_are_refused() -> None:
    store = _store(max_ttl_s=3600)
    assert store.put(_record(ALICE, ttl_s=-1), NOW) is PutResult.EXPIRED
    assert store.put(_record(ALICE, ttl_s=7200), NOW) is PutResult.TOO_LONG


def test_quotas_bound_one_publisher_and_one_key() -> None:
    store = _store(max_records_per_publisher=2, max_publishers_per_key=2)
    keys = [provider_key(bytes([i]) * 32) for i in range(3)]
    assert [store.put(_record(ALICE, key=k), NOW) for k in keys] == [
        PutResult.ACCEPTED,
        PutResult.ACCEPTED,
        PutResult.QUOTA,
    ]
    store.put(_record(BOB), NOW)
    assert store.put(_record(KeyPair.from_seed(b"carol")), NOW) is PutResult.QUOTA
    assert store.put(_record(ALICE, seq=9), NOW) is PutResult.ACCEPTED  # an update is not a new record


def test_paging_starts_after_the_given_publisher_and_wraps() -> None:
    store = _store()
    publishers = [KeyPair.from_seed(bytes([i])) for i in range(5)]
    for keys in publishers:
        store.put(_record(keys), NOW)
    ordered = store.get_records(KEY, NOW)
    ids = [r.signer for r in ordered]
    from_middle = store.get_records(KEY, NOW, after=bytes(20))
    assert [r.signer for r in from_middle] == ids
    start = store.get_records(KEY, NOW, after=b"\xff" * 20)
    assert [r.signer for r in start] == ids  # wraps around the ring
