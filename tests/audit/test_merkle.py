"""RFC 6962 Merkle math: known-answer vectors, exhaustive proofs up to 64 leaves, tampering.

Known answers are the reference test data of transparency-dev/merkle (the successor of the
google/certificate-transparency and google/trillian Merkle code):
https://github.com/transparency-dev/merkle/blob/main/testonly/constants.go (LeafInputs,
NodeHashes, RootHashes, EmptyRootHash) and proof/verify_test.go (inclusionProofs,
consistencyProofs; their leaf numbers there are 1-based).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invguard.audit.merkle import (
    EMPTY_ROOT,
    consistency_path,
    inclusion_path,
    leaf_hash,
    mth,
    node_hash,
    root_from_leaf_hashes,
    split_point,
    verify_consistency,
    verify_inclusion,
)
from invguard.errors import InvalidParameterError

h = bytes.fromhex

LEAF_INPUTS = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]
LEAF_HASHES = [
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
    h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
    h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
    h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
    h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
]
ROOTS = [  # tree sizes 0..8
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
# (0-based leaf index, tree size, audit path) from proof/verify_test.go inclusionProofs.
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
# (old size, new size, proof) from proof/verify_test.go consistencyProofs.
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]


# ---------------------------------------------------------------------------------------------
# a naive reference: the recursive definitions of RFC 6962 §2.1, §2.1.1 and §2.1.2 over the data


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class NaiveTree:
    """MTH, PATH and PROOF exactly as RFC 6962 writes them (recursion over data slices)."""

    def __init__(self, data: Sequence[bytes]) -> None:
        self.data = tuple(data)

    @functools.cache  # noqa: B019 - per-instance cache in a short-lived test object
    def mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return hashlib.sha256(b"\x00" + self.data[lo]).digest()
        k = _k(n)
        return hashlib.sha256(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi)).digest()

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _k(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = _k(n)
        if m <= k:
            return [*self.subproof(m, lo, lo + k, b), self.mth(lo + k, hi)]
        return [*self.subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        return [] if m in (0, n) else self.subproof(m, 0, n, True)


DATA64 = [i.to_bytes(2, "big") + b"leaf" for i in range(64)]
NAIVE64 = NaiveTree(DATA64)
HASHES64 = [leaf_hash(d) for d in DATA64]


def flip(b: bytes, bit: int = 0) -> bytes:
    return bytes([b[0] ^ (1 << bit)]) + b[1:]


# ---------------------------------------------------------------------------------------------
# known answers


def test_empty_tree_and_empty_leaf_known_answers() -> None:
    assert mth([]) == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


def test_leaf_hashes_and_roots_of_the_reference_inputs() -> None:
    assert [leaf_hash(d) for d in LEAF_INPUTS] == LEAF_HASHES
    for size, root in enumerate(ROOTS):
        assert mth(LEAF_INPUTS[:size]) == root, size
        assert root_from_leaf_hashes(LEAF_HASHES[:size]) == root, size
    assert ROOTS[8].hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def test_node_hash_is_rfc6962_interior_hash() -> None:
    assert node_hash(LEAF_HASHES[0], LEAF_HASHES[1]) == ROOTS[2]
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_VECTORS)
def test_inclusion_known_answers(index: int, size: int, path: list[bytes]) -> None:
    assert inclusion_path(index, LEAF_HASHES[:size]) == path
    assert verify_inclusion(index, size, LEAF_HASHES[index], path, ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS)
def test_consistency_known_answers(old: int, new: int, proof: list[bytes]) -> None:
    assert consistency_path(old, LEAF_HASHES[:new]) == proof
    assert verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


def test_split_point() -> None:
    assert [split_point(n) for n in (2, 3, 4, 5, 8, 9, 64, 65)] == [1, 2, 2, 4, 4, 8, 32, 64]
    with pytest.raises(InvalidParameterError):
        split_point(1)


# ---------------------------------------------------------------------------------------------
# exhaustive: every tree size up to 64


def test_roots_match_the_recursive_definition_up_to_64() -> None:
    for n in range(65):
        assert root_from_leaf_hashes(HASHES64[:n]) == NAIVE64.mth(0, n), n


def test_every_inclusion_proof_up_to_64_matches_and_verifies() -> None:
    for n in range(1, 65):
        root = NAIVE64.mth(0, n)
        for i in range(n):
            path = inclusion_path(i, HASHES64[:n])
            assert path == NAIVE64.path(i, 0, n), (i, n)
            assert verify_inclusion(i, n, HASHES64[i], path, root), (i, n)


def test_every_consistency_proof_up_to_64_matches_and_verifies() -> None:
    for n in range(65):
        new_root = NAIVE64.mth(0, n)
        for m in range(n + 1):
            proof = consistency_path(m, HASHES64[:n])
            assert proof == NAIVE64.proof(m, n), (m, n)
            assert verify_consistency(m, n, NAIVE64.mth(0, m), new_root, proof), (m, n)


def _tampered_inclusions(
    i: int, n: int, path: list[bytes], leaf: bytes, root: bytes
) -> list[tuple[str, int, int, bytes, list[bytes], bytes]]:
    """Probes after transparency-dev's corruptInclusionProof; each must fail verification."""
    probes = [
        ("index - 1", i - 1, n, leaf, path, root),
        ("index + 1", i + 1, n, leaf, path, root),
        ("wrong leaf", i, n, leaf_hash(b"WrongLeaf"), path, root),
        ("empty root", i, n, leaf, path, EMPTY_ROOT),
        ("random root", i, n, leaf, path, flip(root)),
        ("trailing hash", i, n, leaf, [*path, root], root),
        ("preceding hash", i, n, leaf, [root, *path], root),
        ("short hash", i, n, leaf, [*path[:-1], path[-1][:31]] if path else [b"x"], root),
    ]
    for j in range(len(path)):
        bad = list(path)
        bad[j] = flip(bad[j], 3)
        probes.append((f"flipped path[{j}]", i, n, leaf, bad, root))
    if path:
        probes.append(("removed last", i, n, leaf, path[:-1], root))
    return probes


def test_tampered_inclusion_proofs_fail_up_to_64() -> None:
    for n in range(1, 65):
        root = NAIVE64.mth(0, n)
        for i in range(n):
            path = inclusion_path(i, HASHES64[:n])
            for desc, pi, pn, leaf, ppath, proot in _tampered_inclusions(
                i, n, path, HASHES64[i], root
            ):
                assert not verify_inclusion(pi, pn, leaf, ppath, proot), (desc, i, n)


def test_tampered_consistency_proofs_fail_up_to_64() -> None:
    for n in range(1, 65):
        new_root = NAIVE64.mth(0, n)
        for m in range(1, n):
            old_root = NAIVE64.mth(0, m)
            proof = consistency_path(m, HASHES64[:n])
            probes: list[tuple[str, int, int, bytes, bytes, list[bytes]]] = [
                ("old - 1", m - 1, n, old_root, new_root, proof),
                ("old + 1", m + 1, n, old_root, new_root, proof),
                ("wrong old root", m, n, flip(old_root), new_root, proof),
                ("wrong new root", m, n, old_root, flip(new_root), proof),
                ("swapped roots", m, n, new_root, old_root, proof),
                ("empty proof", m, n, old_root, new_root, []),
                ("trailing old root", m, n, old_root, new_root, [*proof, old_root]),
                ("trailing new root", m, n, old_root, new_root, [*proof, new_root]),
                ("preceding new root", m, n, old_root, new_root, [new_root, *proof]),
                ("removed last", m, n, old_root, new_root, proof[:-1]),
            ]
            for j in range(len(proof)):
                bad = list(proof)
                bad[j] = flip(bad[j], 4)
                probes.append((f"flipped proof[{j}]", m, n, old_root, new_root, bad))
            for desc, pm, pn, r1, r2, p in probes:
                assert not verify_consistency(pm, pn, r1, r2, p), (desc, m, n)


def test_trivial_consistency_cases() -> None:
    r = NAIVE64.mth(0, 5)
    assert verify_consistency(0, 5, EMPTY_ROOT, r, [])
    assert not verify_consistency(0, 5, r, r, [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, r, [r])
    assert verify_consistency(5, 5, r, r, [])
    assert not verify_consistency(5, 5, r, flip(r), [])
    assert not verify_consistency(5, 5, r, r, [r])
    assert not verify_consistency(6, 5, r, r, [])
    assert not verify_consistency(-1, 5, r, r, [])


def test_invalid_proof_requests_raise() -> None:
    with pytest.raises(InvalidParameterError):
        inclusion_path(3, HASHES64[:3])
    with pytest.raises(InvalidParameterError):
        inclusion_path(-1, HASHES64[:3])
    with pytest.raises(InvalidParameterError):
        consistency_path(4, HASHES64[:3])
    assert not verify_inclusion(0, 0, HASHES64[0], [], EMPTY_ROOT)
    assert not verify_inclusion(0, 1, HASHES64[0][:31], [], HASHES64[0][:31])


# ---------------------------------------------------------------------------------------------
# properties on larger trees


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 600), data=st.data())
def test_inclusion_property(n: int, data: st.DataObject) -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    root = root_from_leaf_hashes(hashes)
    i = data.draw(st.integers(0, n - 1))
    path = inclusion_path(i, hashes)
    assert len(path) <= max(1, (n - 1).bit_length())
    assert verify_inclusion(i, n, hashes[i], path, root)
    if path:
        j = data.draw(st.integers(0, len(path) - 1))
        byte = data.draw(st.integers(0, 31))
        bad = list(path)
        bad[j] = bad[j][:byte] + bytes([bad[j][byte] ^ 0x80]) + bad[j][byte + 1 :]
        assert not verify_inclusion(i, n, hashes[i], bad, root)
    other = data.draw(st.integers(0, n - 1))
    if other != i:
        assert not verify_inclusion(other, n, hashes[i], path, root)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 600), data=st.data())
def test_consistency_property(n: int, data: st.DataObject) -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    m = data.draw(st.integers(1, n - 1))
    old_root, new_root = root_from_leaf_hashes(hashes[:m]), root_from_leaf_hashes(hashes)
    proof = consistency_path(m, hashes)
    assert verify_consistency(m, n, old_root, new_root, proof)
    j = data.draw(st.integers(0, len(proof) - 1))
    bad = list(proof)
    bad[j] = flip(bad[j], data.draw(st.integers(0, 7)))
    assert not verify_consistency(m, n, old_root, new_root, bad)
    # a changed leaf anywhere before m breaks consistency with the original new root
    k = data.draw(st.integers(0, m - 1))
    changed = list(hashes)
    changed[k] = leaf_hash(b"changed")
    forged_old = root_from_leaf_hashes(changed[:m])
    assert not verify_consistency(m, n, forged_old, new_root, consistency_path(m, changed))
