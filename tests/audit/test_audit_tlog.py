"""RFC 6962 / RFC 9162 tree hashing and proofs against published known answers, plus
property tests; C2SP checkpoint and tlog-proof formats."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lethe_audit import tlog
from lethe_audit.errors import ConsistencyProofError, FormatError, InclusionProofError

# RFC 6962 test leaves and roots as published in transparency-dev/merkle,
# testonly/constants.go (LeafInputs, RootHashes, NodeHashes) and proof/verify_test.go.
LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
PUBLISHED_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# transparency-dev/merkle proof/verify_test.go: (leaf 1-based, size, proof).
INCLUSION_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def mth(data: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written out recursively as in the RFC (independent of the package)."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(data[:k]) + mth(data[k:])).digest()


def leaf_hashes(n: int) -> list[bytes]:
    return [tlog.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_known_roots_match_published_and_recursive_reference() -> None:
    hashes = [tlog.leaf_hash(x) for x in LEAVES]
    for n in range(9):
        got = tlog.root(hashes[:n])
        assert got.hex() == PUBLISHED_ROOTS[n]
        assert got == mth(LEAVES[:n])
    assert tlog.root(hashes).hex().startswith("5dc9da79")
    assert tlog.EMPTY_ROOT.hex() == PUBLISHED_ROOTS[0]


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_vectors(leaf: int, size: int, proof: list[str]) -> None:
    hashes = [tlog.leaf_hash(x) for x in LEAVES]
    got = tlog.inclusion_proof(leaf - 1, size, hashes[:size])
    assert [p.hex() for p in got] == proof
    root = bytes.fromhex(PUBLISHED_ROOTS[size])
    tlog.verify_inclusion(hashes[leaf - 1], leaf - 1, size, got, root)
    with pytest.raises(InclusionProofError) as e:
        tlog.verify_inclusion(hashes[leaf - 1], leaf - 1, size, got, bytes(32))
    assert (e.value.index, e.value.size) == (leaf - 1, size)


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY_VECTORS)
def test_consistency_vectors(size1: int, size2: int, proof: list[str]) -> None:
    hashes = [tlog.leaf_hash(x) for x in LEAVES]
    got = tlog.consistency_proof(size1, size2, hashes[:size2])
    assert [p.hex() for p in got] == proof
    r1, r2 = bytes.fromhex(PUBLISHED_ROOTS[size1]), bytes.fromhex(PUBLISHED_ROOTS[size2])
    tlog.verify_consistency(size1, size2, got, r1, r2)
    if got:
        with pytest.raises(ConsistencyProofError) as e:
            tlog.verify_consistency(size1, size2, got, r2, r1)
        assert (e.value.size1, e.value.size2, e.value.size) == (size1, size2, size2)


def test_consistency_edge_cases() -> None:
    r = tlog.root(leaf_hashes(5))
    # Size 0: a first checkpoint is taken on trust, with an empty proof and nothing else.
    tlog.verify_consistency(0, 5, [], tlog.EMPTY_ROOT, r)
    assert tlog.consistency_proof(0, 5, leaf_hashes(5)) == []
    with pytest.raises(ConsistencyProofError):
        tlog.verify_consistency(0, 5, [r], tlog.EMPTY_ROOT, r)
    tlog.verify_consistency(5, 5, [], r, r)
    with pytest.raises(ConsistencyProofError, match="forked"):
        tlog.verify_consistency(5, 5, [], r, tlog.EMPTY_ROOT)
    with pytest.raises(ConsistencyProofError, match="backwards"):
        tlog.verify_consistency(5, 4, [], r, r)
    with pytest.raises(ConsistencyProofError, match="empty"):
        tlog.verify_consistency(4, 5, [], tlog.root(leaf_hashes(4)), r)
    with pytest.raises(ConsistencyProofError, match="bytes"):
        tlog.verify_consistency(4, 5, [b"short"], tlog.root(leaf_hashes(4)), r)


def test_inclusion_edge_cases() -> None:
    h = leaf_hashes(3)
    r = tlog.root(h)
    for index, size in [(3, 3), (0, 0), (-1, 3)]:
        with pytest.raises(InclusionProofError, match="not inside"):
            tlog.verify_inclusion(h[0], index, size, [], r)
    with pytest.raises(InclusionProofError, match="bytes"):
        tlog.verify_inclusion(b"x", 0, 3, tlog.inclusion_proof(0, 3, h), r)
    with pytest.raises(ValueError):
        tlog.inclusion_proof(3, 3, h)


def test_compact_range_matches_root_and_emits_every_stored_node() -> None:
    hashes = leaf_hashes(37)
    tree = tlog.MemoryTree(hashes)
    cr = tlog.CompactRange()
    nodes: dict[tuple[int, int], bytes] = {}
    for i, h in enumerate(hashes):
        cr.append(h, on_node=lambda lvl, idx, v: nodes.__setitem__((lvl, idx), v))
        assert cr.root() == tlog.root(hashes[: i + 1])
        again = tlog.CompactRange.from_bytes(cr.size, cr.to_bytes())
        assert again.hashes == cr.hashes
    # Every perfect subtree of level >= 1 inside 37 leaves, and nothing else.
    want = {(lvl, i) for lvl in range(1, 6) for i in range(37 >> lvl)}
    assert set(nodes) == want
    assert all(tree.node_hashes([n])[0] == v for n, v in nodes.items())
    with pytest.raises(FormatError):
        tlog.CompactRange.from_bytes(3, bytes(32))


def test_range_nodes_tile_the_range() -> None:
    for begin in range(0, 40):
        for end in range(begin, 41):
            covered = []
            for level, idx in tlog.range_nodes(begin, end):
                covered.extend(range(idx << level, (idx + 1) << level))
            assert covered == list(range(begin, end))


def _flip(b: bytes, bit: int) -> bytes:
    arr = bytearray(b)
    arr[bit // 8] ^= 1 << (bit % 8)
    return bytes(arr)


# RFC 9162 verification sees (index, size) only through the sequence of left/right steps it
# takes. Sizes with the same steps are indistinguishable to it (index 0 has the same audit path
# shape in trees of 5, 6 and 7 leaves): the *signed checkpoint* binds the size, and the receipt
# tests show that any change to a checkpoint's size breaks its signature. These mirror the
# verifier's control flow so the properties below can say exactly when a size change must fail.
def inclusion_shape(index: int, size: int, length: int) -> tuple[str, ...] | None:
    if not 0 <= index < size:
        return None
    fn, sn, shape = index, size - 1, []
    for _ in range(length):
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            shape.append("L")
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            shape.append("R")
        fn, sn = fn >> 1, sn >> 1
    return tuple(shape) if sn == 0 else None


def consistency_shape(m: int, n: int, length: int) -> tuple[object, ...] | None:
    if not 0 < m < n or length == 0:
        return None
    pow2 = m & (m - 1) == 0
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    shape: list[object] = [pow2]
    for _ in range(length + pow2 - 1):
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            shape.append("B")
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            shape.append("S")
        fn, sn = fn >> 1, sn >> 1
    return tuple(shape) if sn == 0 else None


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.data())
def test_every_inclusion_proof_verifies_and_any_bit_flip_fails(n: int, data: st.DataObject) -> None:
    hashes = leaf_hashes(n)
    tree = tlog.MemoryTree(hashes)
    r = tlog.root(hashes)
    index = data.draw(st.integers(0, n - 1))
    proof = tlog.inclusion_proof(index, n, tree)
    tlog.verify_inclusion(hashes[index], index, n, proof, r)
    for i, p in enumerate(proof):
        bit = data.draw(st.integers(0, 255), label=f"bit{i}")
        bad = [*proof[:i], _flip(p, bit), *proof[i + 1 :]]
        with pytest.raises(InclusionProofError):
            tlog.verify_inclusion(hashes[index], index, n, bad, r)
    with pytest.raises(InclusionProofError):
        tlog.verify_inclusion(
            hashes[index], index, n, proof, _flip(r, data.draw(st.integers(0, 255)))
        )
    with pytest.raises(InclusionProofError):
        tlog.verify_inclusion(
            _flip(hashes[index], data.draw(st.integers(0, 255))), index, n, proof, r
        )
    shape = inclusion_shape(index, n, len(proof))
    assert shape is not None
    for bit in range(n.bit_length() + 2):
        with pytest.raises(InclusionProofError):
            tlog.verify_inclusion(hashes[index], index ^ (1 << bit), n, proof, r)
        size2 = n ^ (1 << bit)
        if inclusion_shape(index, size2, len(proof)) == shape:
            tlog.verify_inclusion(hashes[index], index, size2, proof, r)  # indistinguishable
        else:
            with pytest.raises(InclusionProofError):
                tlog.verify_inclusion(hashes[index], index, size2, proof, r)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.data())
def test_every_consistency_proof_verifies_and_any_bit_flip_fails(
    n: int, data: st.DataObject
) -> None:
    hashes = leaf_hashes(n)
    tree = tlog.MemoryTree(hashes)
    m = data.draw(st.integers(1, n))
    r1, r2 = tlog.root(hashes[:m]), tlog.root(hashes)
    assert r1 == mth([i.to_bytes(4, "big") for i in range(m)])
    proof = tlog.consistency_proof(m, n, tree)
    tlog.verify_consistency(m, n, proof, r1, r2)
    if m == n:
        assert proof == []
        return
    for i, p in enumerate(proof):
        bad = [
            *proof[:i],
            _flip(p, data.draw(st.integers(0, 255), label=f"bit{i}")),
            *proof[i + 1 :],
        ]
        with pytest.raises(ConsistencyProofError):
            tlog.verify_consistency(m, n, bad, r1, r2)
    with pytest.raises(ConsistencyProofError):
        tlog.verify_consistency(m, n, proof, _flip(r1, data.draw(st.integers(0, 255))), r2)
    with pytest.raises(ConsistencyProofError):
        tlog.verify_consistency(m, n, proof, r1, _flip(r2, data.draw(st.integers(0, 255))))
    shape = consistency_shape(m, n, len(proof))
    assert shape is not None
    for bit in range(n.bit_length() + 2):
        for m2, n2 in ((m ^ (1 << bit), n), (m, n ^ (1 << bit))):
            if consistency_shape(m2, n2, len(proof)) == shape:
                tlog.verify_consistency(m2, n2, proof, r1, r2)  # indistinguishable
            else:
                with pytest.raises(ConsistencyProofError):
                    tlog.verify_consistency(m2, n2, proof, r1, r2)


def test_memory_tree_and_list_sources_agree() -> None:
    hashes = leaf_hashes(100)
    tree = tlog.MemoryTree(hashes)
    for index in (0, 37, 99):
        assert tlog.inclusion_proof(index, 100, tree) == tlog.inclusion_proof(index, 100, hashes)
    assert tlog.consistency_proof(33, 100, tree) == tlog.consistency_proof(33, 100, hashes)
    # A proof against an older size only uses nodes inside that size.
    assert tlog.inclusion_proof(5, 40, tree) == tlog.inclusion_proof(5, 40, hashes[:40])


# --- checkpoints and tlog-proofs ------------------------------------------------------------

# C2SP tlog-checkpoint spec example (github.com/C2SP/C2SP tlog-checkpoint.md).
C2SP_CHECKPOINT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)


def test_checkpoint_body_round_trip() -> None:
    cp = tlog.Checkpoint.parse(C2SP_CHECKPOINT)
    assert (cp.origin, cp.size) == ("example.com/behind-the-sofa", 20852163)
    assert cp.body() == C2SP_CHECKPOINT
    ext = tlog.Checkpoint("o", 1, bytes(32), ("ext line",))
    assert tlog.Checkpoint.parse(ext.body()) == ext
    for bad in [
        "o\n1\n",
        "o\n01\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "o\n1\nnot base64!\n",
        "o\n1\n" + base64.b64encode(bytes(31)).decode() + "\n",
        "o\n1\n" + base64.b64encode(bytes(32)).decode(),
        "\n1\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "o\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\n",
    ]:
        with pytest.raises(FormatError):
            tlog.Checkpoint.parse(bad)


def test_tlog_proof_format_matches_the_c2sp_layout() -> None:
    hashes = leaf_hashes(8)
    proof = tlog.inclusion_proof(3, 8, hashes)
    signed_cp = (
        "example.com/log\n8\n" + base64.b64encode(tlog.root(hashes)).decode() + "\n\n— sig\n"
    )
    p = tlog.TlogProof.create(3, proof, signed_cp, extra=b"hello")
    text = p.to_text()
    lines = text.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    assert lines[1] == "extra " + base64.b64encode(b"hello").decode()
    assert lines[2] == "index 3"
    assert lines[3 : 3 + len(proof)] == [base64.b64encode(h).decode() for h in proof]
    assert lines[3 + len(proof)] == ""
    assert text.endswith(signed_cp)
    assert tlog.TlogProof.parse(text) == p
    assert tlog.TlogProof.parse(tlog.TlogProof.create(0, [], signed_cp).to_text()).extra is None
    for bad in [
        text.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"),
        text.replace("index 3", "index 03"),
        text.replace("index 3", "idx 3"),
        text.replace("\n\n", "\n", 1),
        text.split("\n\n")[0] + "\n\n",
    ]:
        with pytest.raises(FormatError):
            tlog.TlogProof.parse(bad)
