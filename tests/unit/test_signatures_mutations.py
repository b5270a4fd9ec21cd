"""Published signatures with random bytes changed: the verifier answers every one with a reason
of its own (never its last-resort "could not be checked", which would mean an unexpected
exception), and never verifies a change to signed bytes."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.signatures.verify import (
    SignatureArtifact,
    SignatureLayer,
    TrustedKey,
    Verdict,
    describe_key,
    verify,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "signatures"
ROUNDS = 150


def _mutations(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(ROUNDS):
        mutated = bytearray(data)
        position = rng.randrange(len(mutated))
        choice = rng.random()
        if choice < 0.6:
            mutated[position] ^= 1 << rng.randrange(8)
        elif choice < 0.8:
            del mutated[position : position + rng.randrange(1, 64)]
        else:
            mutated[position:position] = bytes(
                rng.randrange(256) for _ in range(rng.randrange(1, 8))
            )
        out.append(bytes(mutated))
    return out


def _own_reason(verdict: Verdict) -> None:
    assert not verdict.reason.startswith("signature could not be checked"), verdict.reason


def test_simple_signing_payload_mutations() -> None:
    raw = (DATA / "containers-image" / "dir-img-cosign-valid_signature-1").read_bytes()[15:]
    document = json.loads(raw)
    payload = base64.b64decode(document["payload"])
    key = TrustedKey(1, "cosign", (DATA / "containers-image" / "cosign.pub").read_text())
    subject = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"
    for mutated in _mutations(payload, 1):
        layer = SignatureLayer(document["mimeType"], mutated, document["annotations"])
        verdict = verify(SignatureArtifact("cosign", "d", b"{}", (layer,)), subject, [key])
        _own_reason(verdict)
        assert not verdict.verified


def _whole_blob_case(
    media_type: str, path: Path, key: TrustedKey, subject: str, kind: str
) -> Callable[[bytes], Verdict]:
    def judge(data: bytes) -> Verdict:
        artifact = SignatureArtifact(kind, "d", b"{}", (SignatureLayer(media_type, data),))  # type: ignore[arg-type]
        return verify(artifact, subject, [key])

    return judge


CASES = {
    "notation-jws": (
        "application/jose+json",
        DATA / "notation-go" / "ca_valid_sig_env.json",
        TrustedKey(1, "notation", (DATA / "notation-go" / "NotationTestRoot.pem").read_text()),
        "sha256:60043cf45eaebc4c0867fea485a039b598f52fd09fd5b07b0b2d2f88fad9d74e",
        "notation",
    ),
    "notation-cose": (
        "application/cose",
        DATA / "notation-go" / "cose_signature.sig",
        TrustedKey(1, "notation", (DATA / "notation-go" / "alpine-root.pem").read_text()),
        "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0",
        "notation",
    ),
    "cosign-bundle": (
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        DATA / "cosign-v3" / "bundle-sigstore.json",
        TrustedKey(1, "cosign", (DATA / "cosign-v3" / "bundle-cosign.pub").read_text()),
        "sha256:d7d5640c741c60b47fa4b5530daa20a6469b55754a89dd42adbadadb59f9093c",
        "cosign",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_envelope_mutations_are_answered(case: str) -> None:
    media_type, path, key, subject, kind = CASES[case]
    judge = _whole_blob_case(media_type, path, key, subject, kind)
    original = path.read_bytes()
    assert judge(original).verified
    for mutated in _mutations(original, 2):
        _own_reason(judge(mutated))


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("cosign", "containers-image/cosign.pub"),
        ("cosign", "containers-image/some-rsa-key.pub"),
        ("notation", "notation-go/NotationTestRoot.pem"),
        ("notation", "notation-go/alpine-root.pem"),
    ],
)
def test_describe_key_refuses_mutated_keys_with_value_error(kind: str, name: str) -> None:
    """What the trusted-keys API is given: a mutated PEM is either still a key or a ValueError
    with a reason (a 400), never another exception (a 500)."""
    identities = ["*"] if kind == "notation" else []
    reasons = []
    for mutated in _mutations((DATA / name).read_bytes(), 3):
        try:
            describe_key(kind, mutated.decode("utf-8", "replace"), identities)  # type: ignore[arg-type]
        except ValueError as exc:
            reasons.append(str(exc))
    assert reasons and all(reasons)
    with pytest.raises(ValueError, match="not a string"):
        describe_key("notation", (DATA / name).read_text(), [3])  # type: ignore[list-item]
