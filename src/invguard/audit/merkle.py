"""RFC 6962 Merkle tree hashing, inclusion and consistency proofs (pure functions, SHA-256).

* Hashes: RFC 6962 §2.1, leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right),
  the empty tree hashes to SHA-256("").
* Proof generation: RFC 6962 §2.1.1 (audit path) and §2.1.2 (consistency proof).
* Proof verification: RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency).

Leaf indices are 0-based, as in the RFCs. Roots are computed level by level over a list of hashes
(pair neighbours, carry an odd last node up), which gives the RFC 6962 tree without recursion.

Stored subtrees: a *node* ``(level, index)`` is the perfect subtree of the ``2**level`` leaves
``[index * 2**level, (index + 1) * 2**level)``. Every subtree that an RFC 6962 proof names is
the right fold of a few such nodes (:func:`perfect_nodes`), so a log that keeps the node hashes
(:class:`TreeEdge`) answers proofs with O(log n) reads (:func:`inclusion_ranges`,
:func:`consistency_ranges`, :func:`fold_nodes`) instead of rehashing every leaf.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator, Mapping, Sequence

from invguard.errors import InvalidParameterError

Node = tuple[int, int]
"""``(level, index)``: the perfect subtree over leaves ``[index << level, (index + 1) << level)``."""
Range = tuple[int, int]
"""``(lo, hi)``: the leaves ``[lo, hi)`` of a subtree that a proof names."""

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
    top = hashes[0]
    for level in tree_levels(hashes):
        top = level[0]
    return top


def mth(data: Sequence[bytes]) -> bytes:
    """RFC 6962 §2.1 Merkle Tree Hash MTH(D[n]) of the leaf inputs ``data`` (not yet hashed)."""
    return root_from_leaf_hashes([leaf_hash(d) for d in data])


def inclusion_path(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 audit path PATH(index, D[n]) over the leaf hashes ``hashes`` (n = len)."""
    return [root_from_leaf_hashes(hashes[lo:hi]) for lo, hi in inclusion_ranges(index, len(hashes))]


def consistency_path(old_size: int, hashes: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.2 consistency proof PROOF(m, D[n]) over the leaf hashes ``hashes``.

    Empty when ``old_size`` is 0 or n (nothing to prove).
    """
    ranges = consistency_ranges(old_size, len(hashes))
    return [root_from_leaf_hashes(hashes[lo:hi]) for lo, hi in ranges]


def tree_levels(hashes: Sequence[bytes]) -> Iterator[list[bytes]]:
    """The levels above the leaves, bottom up, as :func:`root_from_leaf_hashes` computes them.

    In level ``l`` (the first one yielded is level 1) the element ``i < n >> l`` is the hash of
    node ``(l, i)``; an odd last element carried up from below is not a perfect subtree.
    """
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
        yield level


def perfect_nodes(lo: int, hi: int) -> list[Node]:
    """The nodes, left to right (largest first), whose right fold is MTH(D[lo:hi]).

    ``[lo, hi)`` must be a subtree of an RFC 6962 tree (``lo`` a multiple of a power of two
    that is at least ``hi - lo``), as every range of :func:`inclusion_ranges` and
    :func:`consistency_ranges` is; one node per set bit of ``hi - lo``.
    """
    if not 0 <= lo < hi:
        raise InvalidParameterError(f"a subtree needs 0 <= lo < hi, got [{lo}, {hi})")
    nodes: list[Node] = []
    start, rest = lo, hi - lo
    while rest:
        level = rest.bit_length() - 1
        if start % (1 << level):
            raise InvalidParameterError(f"[{lo}, {hi}) is not a subtree of an RFC 6962 tree")
        nodes.append((level, start >> level))
        start += 1 << level
        rest -= 1 << level
    return nodes


def fold_nodes(nodes: Sequence[Node], hashes: Mapping[Node, bytes]) -> bytes:
    """MTH of the range that :func:`perfect_nodes` split into ``nodes``: their right fold."""
    result = hashes[nodes[-1]]
    for node in reversed(nodes[:-1]):
        result = node_hash(hashes[node], result)
    return result


def inclusion_ranges(index: int, n: int) -> list[Range]:
    """The subtrees whose hashes make up PATH(index, D[n]) (RFC 6962 §2.1.1), bottom up."""
    if not 0 <= index < n:
        raise InvalidParameterError(f"leaf index must be in [0, {n}), got {index}")
    top_down: list[Range] = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            top_down.append((lo + k, hi))
            hi = lo + k
        else:
            top_down.append((lo, lo + k))
            lo += k
    return top_down[::-1]


def consistency_ranges(old_size: int, n: int) -> list[Range]:
    """The subtrees whose hashes make up PROOF(old_size, D[n]) (RFC 6962 §2.1.2), in order."""
    if not 0 <= old_size <= n:
        raise InvalidParameterError(f"old tree size must be in [0, {n}], got {old_size}")
    if old_size in (0, n):
        return []
    m = old_size
    top_down: list[Range] = []
    lo, hi, complete = 0, n, True
    while m != hi - lo:
        k = split_point(hi - lo)
        if m <= k:
            top_down.append((lo + k, hi))
            hi = lo + k
        else:
            top_down.append((lo, lo + k))
            m -= k
            lo += k
            complete = False
    head: list[Range] = [] if complete else [(lo, hi)]
    return head + top_down[::-1]


class TreeEdge:
    """The right edge of an RFC 6962 tree, grown leaf by leaf: O(log n) hashes.

    ``nodes[l]`` is the hash of node ``(l, (size >> l) - 1)`` for the set bits ``l`` of ``size``
    that are known; an edge taken over from a stored tree may start empty and learn the nodes it
    needs from ``fetch`` (asked at most once per node, only for the merges an append does).
    """

    def __init__(self, size: int = 0, nodes: dict[int, bytes] | None = None) -> None:
        self.size = size
        self.nodes: dict[int, bytes] = {} if nodes is None else nodes

    def copy(self) -> TreeEdge:
        return TreeEdge(self.size, dict(self.nodes))

    def _node(self, level: int, fetch: Callable[[Node], bytes] | None) -> bytes:
        value = self.nodes.pop(level, None)
        if value is not None:
            return value
        if fetch is None:
            raise InvalidParameterError(f"node at level {level} of a tree of {self.size} unknown")
        return fetch((level, (self.size >> level) - 1))

    def push(self, leaf: bytes, fetch: Callable[[Node], bytes] | None = None) -> list[bytes]:
        """Append a leaf hash; return the hashes of the nodes it completes, levels 1, 2, ...

        Leaf ``k`` completes the nodes ``(l, ((k + 1) >> l) - 1)`` for ``l = 1 .. t``, ``t``
        the number of trailing one bits of ``k``.
        """
        h, n, level = leaf, self.size, 0
        made: list[bytes] = []
        while (n >> level) & 1:
            h = node_hash(self._node(level, fetch), h)
            made.append(h)
            level += 1
        self.nodes[level] = h
        self.size += 1
        return made

    def root(self, fetch: Callable[[Node], bytes] | None = None) -> bytes:
        """MTH of the tree: the right fold of the edge's nodes."""
        result: bytes | None = None
        for level in range(self.size.bit_length()):
            if (self.size >> level) & 1:
                value = self.nodes.get(level)
                if value is None:
                    if fetch is None:
                        raise InvalidParameterError(f"node at level {level} unknown")
                    value = fetch((level, (self.size >> level) - 1))
                result = value if result is None else node_hash(value, result)
        return EMPTY_ROOT if result is None else result


def inclusion_root(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes | None:
    """The root that an audit path implies (RFC 9162 §2.1.3.2 steps), None if it cannot."""
    if not 0 <= index < size:
        return None
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def consistency_roots(
    old_size: int, new_size: int, path: Sequence[bytes], old_root: bytes
) -> tuple[bytes, bytes] | None:
    """The (old, new) roots that a consistency proof implies (RFC 9162 §2.1.4.2 steps).

    Needs ``0 < old_size < new_size`` and a non-empty path; ``old_root`` is used only when
    ``old_size`` is a power of two (the proof then leaves the old root out). None if the
    proof does not fit the sizes.
    """
    if not 0 < old_size < new_size or not path:
        return None
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
            return None
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
    return (fr, sr) if sn == 0 else None


def _well_formed(*hashes: bytes) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``path`` prove leaf hash ``leaf`` at ``index`` in tree ``root``?"""
    if not 0 <= index < size or not _well_formed(leaf, root, *path):
        return False
    r = inclusion_root(index, size, leaf, path)
    return r is not None and hmac.compare_digest(r, root)


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
    roots = consistency_roots(old_size, new_size, path, old_root)
    return (
        roots is not None
        and hmac.compare_digest(roots[0], old_root)
        and hmac.compare_digest(roots[1], new_root)
    )
