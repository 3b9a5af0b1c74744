"""Where a node's worker processes keep their state (`p2pfaas.node.workers.paths`), and the primary
taking over the receipts they left unanswered."""

from __future__ import annotations

from pathlib import Path

from p2pfaas.identity import KeyPair
from p2pfaas.node.payments.receipts import ReceiptJournal
from p2pfaas.node.workers.paths import adopt_worker_journals, worker_dir, worker_owner_id
from tests.hostile import kit

NODE, LESSEE = KeyPair.from_seed(b"n" * 32), KeyPair.from_seed(b"l" * 32)


def test_each_worker_has_its_directory_and_owner_label(tmp_path: Path) -> None:
    assert worker_dir(tmp_path, 2) == tmp_path / "worker-2"
    assert worker_owner_id(NODE.key_id, 0) == NODE.key_id
    label = worker_owner_id(NODE.key_id, 3)
    assert label == f"w3-{NODE.key_id}" and len(label) <= 64
    assert worker_owner_id(NODE.key_id, 1) != worker_owner_id(NODE.key_id, 2)


def test_the_primary_adopts_the_receipts_its_workers_left(tmp_path: Path) -> None:
    receipts = [
        kit.paid_receipt(f"i{n}", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=5, issued_at=1.0)
        for n in range(3)
    ]
    assert adopt_worker_journals(tmp_path) == 0  # nothing left by anyone
    ReceiptJournal(tmp_path / "receipts.journal").append(receipts[0])
    for index, receipt in ((1, receipts[1]), (2, receipts[2])):
        worker_dir(tmp_path, index).mkdir()
        ReceiptJournal(worker_dir(tmp_path, index) / "receipts.journal").append(receipt)
    assert adopt_worker_journals(tmp_path) == 2
    assert ReceiptJournal(tmp_path / "receipts.journal").load() == receipts
    assert list(tmp_path.glob("worker-*/receipts.journal")) == []
    assert adopt_worker_journals(tmp_path) == 0  # taken over once
