"""A task's signature covers the bytes it came as (PROTOCOL §2), ``"due": null`` included."""

from __future__ import annotations

from typing import Any

from schemas.canonical import canonical_bytes
from schemas.signing import Signer, signing_bytes
from schemas.tasks import Task, sign_task

SIGNER = Signer.from_seed(b"\x01" * 32)
FIELDS: dict[str, Any] = {
    "id": "01890a5d-ac96-774b-bcce-b302099a8057",
    "issuer": "js",
    "target": "js.wx",
    "scope": "node",
    "kind": "notice",
    "payload": {"text": "hi"},
    "issued": "2026-11-21T22:33:53.123Z",
    "rev": 1,
}


def _signed(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "sig": SIGNER.sign(signing_bytes(obj))}


def test_a_task_signed_with_a_null_due_verifies_and_keeps_its_bytes() -> None:
    raw = canonical_bytes(_signed({**FIELDS, "due": None}))  # another implementation's form
    task = Task.parse(raw)
    assert task.verify(SIGNER.public_raw)
    assert task.canonical() == raw  # stored and relayed as it came


def test_a_null_due_added_after_signing_does_not_verify() -> None:
    signed = _signed(dict(FIELDS))
    tampered = Task.parse(canonical_bytes({**signed, "due": None}))
    assert tampered.canonical() != canonical_bytes(signed)
    assert not tampered.verify(SIGNER.public_raw)
    assert Task.parse(canonical_bytes(signed)).verify(SIGNER.public_raw)


def test_tasks_signed_here_omit_a_due_they_lack() -> None:
    task = sign_task(SIGNER, {**FIELDS, "due": None})
    assert b'"due"' not in task.canonical() and task.verify(SIGNER.public_raw)
