"""RFC 6962 Merkle tree hashing, inclusion and consistency proofs (pure functions, SHA-256).

* Hashes: RFC 6962 §2.1, leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right),
  the empty tree hashes to SHA-256("").
* Proof generation: RFC 6962 §2.1.1 (audit path) and §2.1.2 (consistency proof).
* Proof verification: RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency).

Leaf indices are 0-based, as in the RFCs. Roots are computed level by level over a list of hashes
(pair neighbours, carry an odd last node up), which gives the RFC 6962 tree without recursion.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from invguard.errors import InvalidParameterError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 §2.1 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``), RFC 6962 §2.1."""
    if n < 2:
        raise InvalidParameterError(f"split_point needs n >= 2, got {n}")
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Merkle tree hash over already-hashed leaves, computed iteratively level by level."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    sha256 = hashlib.sha256
    while len(level) > 1:
        nxt = [
            sha256(_NODE_PREFIX + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def mth(data: Sequence[bytes]) -> bytes:
    """RFC 6962 §2.1 Merkle Tree Hash MTH(D[n]) of the leaf inputs ``data`` (not yet hashed)."""
    return root_from_leaf_hashes([leaf_hash(d) for d in data])


def inclusion_path(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 audit path PATH(index, D[n]) over the leaf hashes ``hashes`` (n = len)."""
    n = len(hashes)
    if not 0 <= index < n:
        raise InvalidParameterError(f"leaf index must be in [0, {n}), got {index}")
    top_down: list[bytes] = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            top_down.append(root_from_leaf_hashes(hashes[lo + k : hi]))
            hi = lo + k
        else:
            top_down.append(root_from_leaf_hashes(hashes[lo : lo + k]))
            lo += k
    return top_down[::-1]


def consistency_path(old_size: int, hashes: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.2 consistency proof PROOF(m, D[n]) over the leaf hashes ``hashes``.

    Empty when ``old_size`` is 0 or n (nothing to prove).
    """
    n = len(hashes)
    if not 0 <= old_size <= n:
        raise InvalidParameterError(f"old tree size must be in [0, {n}], got {old_size}")
    if old_size in (0, n):
        return []
    m = old_size
    top_down: list[bytes] = []
    lo, hi, complete = 0, n, True
    while m != hi - lo:
        k = split_point(hi - lo)
        if m <= k:
            top_down.append(root_from_leaf_hashes(hashes[lo + k : hi]))
            hi = lo + k
        else:
            top_down.append(root_from_leaf_hashes(hashes[lo : lo + k]))
            m -= k
            lo += k
            complete = False
    head = [] if complete else [root_from_leaf_hashes(hashes[lo:hi])]
    return head + top_down[::-1]


def _well_formed(*hashes: bytes) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``path`` prove leaf hash ``leaf`` at ``index`` in tree ``root``?"""
    if not 0 <= index < size or not _well_formed(leaf, root, *path):
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: does ``path`` prove tree ``old_root`` is a prefix of ``new_root``?

    Trivial cases: size 0 to any size needs an empty proof and the empty-tree hash as old root;
    equal sizes need an empty proof and equal roots.
    """
    if not 0 <= old_size <= new_size or not _well_formed(old_root, new_root, *path):
        return False
    if old_size == 0:
        return not path and hmac.compare_digest(old_root, EMPTY_ROOT)
    if old_size == new_size:
        return not path and hmac.compare_digest(old_root, new_root)
    if not path:
        return False
    nodes = list(path)
    if old_size & (old_size - 1) == 0:
        nodes.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]
    for c in nodes[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)
