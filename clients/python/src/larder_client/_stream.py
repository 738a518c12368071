"""Larder's share stream: what an engine downloads for one checkout at one party.

Layout (all integers little-endian; see ``docs/protocol.md`` in the Larder repository)::

    magic "LARDERSH" | version u16 | kind u8 | domain: tag u8 + modulus u128 | threshold u8
    | owner u8 (255: none) | parties u8 | party u8 | checkout id length u16
    | [version 2 only: shape, 48 bytes: tag u8 (1 matrix, 2 convolution), 3 zero bytes,
       sides as u32 (m, k, n; or n, c, h, w, o, kh, kw, sh, sw, ph, pw), zero-filled]
    | checkout id
    | items u64 | range count u32 | ranges (batch id 16 B, first item u64, count u64)...
    | CRC-32 of the header so far
    records: items x record length x element bytes, canonical little-endian elements
    trailer: CRC-32 of the records

Version 2 is written for matrix and convolution triples only: a matrix triple's records hold
A (m x k), B (k x n) and C = A·B (m x n); a convolution triple's hold X (n x c x h x w),
W (o x c x kh x kw) and Y = conv2d(X, W) (n x o x oh x ow, torch's conv2d with the stride and
zero padding), each row-major. Every other stream is version 1. The reader checks both
checksums and refuses truncated, foreign or trailing bytes.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Dict, List, Optional, Tuple

import numpy as np

MAGIC = b"LARDERSH"
#: The newest share stream version this client reads (it reads 1 too).
FORMAT_VERSION = 2
MAX_CHECKOUT_ID = 256
# In a share header, in bytes: 256 characters of up to 4 bytes each in UTF-8.
MAX_CHECKOUT_ID_BYTES = 4 * MAX_CHECKOUT_ID
MAX_RANGES = 1 << 16

KINDS = {
    1: "triple",
    2: "square",
    3: "bit",
    4: "inverse",
    5: "input-mask",
    6: "double",
    7: "wrap",
    8: "binary-triple",
    9: "dabit",
    10: "matrix-triple",
    11: "conv-triple",
}

#: Names of the elements of one record, per kind (an input mask's owner also holds ``r_clear``).
COLUMNS: Dict[str, Tuple[str, ...]] = {
    "triple": ("a", "b", "c"),
    "square": ("a", "a2"),
    "bit": ("b",),
    "inverse": ("a", "a_inv"),
    "input-mask": ("r",),
    "double": ("r_t", "r_2t"),
    # r and theta_r, the count of wrap-arounds of r's shares added as signed 64-bit integers.
    "wrap": ("r", "theta"),
    # 64-bit words, XOR-shared: c = a AND b.
    "binary-triple": ("a", "b", "c"),
    # One bit, shared additively (b) and XOR-wise in a word (b_xor: 64 bits over z64; over a
    # prime field, one bit fewer than p has, at most 64).
    "dabit": ("b", "b_xor"),
    # A, B and C = A·B of the pool's shape, row-major: see Shares.matrices().
    "matrix-triple": ("a", "b", "c"),
    # X, W and Y = conv2d(X, W), NCHW and OIHW: see Shares.tensors().
    "conv-triple": ("x", "w", "y"),
}

#: The columns of each kind that are XOR-shared (they open by XOR, not by summing).
XOR_COLUMNS: Dict[str, Tuple[int, ...]] = {"binary-triple": (0, 1, 2), "dabit": (1,)}


class FormatError(ValueError):
    """The bytes are not a complete, intact Larder share stream."""


@dataclass(frozen=True)
class ShareRange:
    batch: str
    first: int
    count: int


@dataclass(frozen=True)
class ShareHeader:
    kind: str
    #: ``z64``, ``z128`` or ``fp``.
    domain: str
    #: 2^64, 2^128 or the prime.
    modulus: int
    threshold: Optional[int]
    owner: Optional[int]
    parties: int
    party: int
    checkout: str
    items: int
    ranges: Tuple[ShareRange, ...]
    #: A matrix triple's (m, k, n); a convolution triple's
    #: (n, c, h, w, o, kh, kw, stride h, stride w, padding h, padding w).
    shape: Optional[Tuple[int, ...]] = None

    @property
    def tensor_shapes(self) -> Optional[Tuple[Tuple[int, ...], ...]]:
        """The shapes of a matrix or convolution triple's three tensors, else ``None``."""
        if self.shape is None:
            return None
        if len(self.shape) == 3:
            m, k, n = self.shape
            return ((m, k), (k, n), (m, n))
        n, c, h, w, o, kh, kw, sh, sw, ph, pw = self.shape
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        return ((n, c, h, w), (o, c, kh, kw), (n, o, oh, ow))

    @property
    def record_len(self) -> int:
        """Elements in one record at this party."""
        shapes = self.tensor_shapes
        if shapes is not None:
            return sum(math.prod(t) for t in shapes)
        return len(self.columns)

    @property
    def shared_len(self) -> int:
        """Elements of a record that are shares (all but an input-mask owner's ``r_clear``)."""
        return self.record_len if self.shape is not None else len(COLUMNS[self.kind])

    @property
    def columns(self) -> Tuple[str, ...]:
        cols = COLUMNS[self.kind]
        if self.kind == "input-mask" and self.owner == self.party:
            cols = cols + ("r_clear",)
        return cols

    @property
    def element_bytes(self) -> int:
        return 8 if self.modulus <= 1 << 64 else 16

    @property
    def record_bytes(self) -> int:
        return self.record_len * self.element_bytes

    @property
    def additive(self) -> bool:
        """Whether shares open by summing (every kind but Shamir doubles)."""
        return self.kind != "double"


class _Checked:
    """Reads exact byte counts from a stream, hashing what it reads."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.crc = 0

    def read_into(self, view: memoryview, what: str) -> None:
        got = 0
        while got < len(view):
            n = self.stream.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                raise FormatError(f"{what}: truncated after {got} of {len(view)} bytes")
            got += n
        self.crc = zlib.crc32(view, self.crc)

    def take(self, n: int, what: str) -> bytes:
        buf = bytearray(n)
        self.read_into(memoryview(buf), what)
        return bytes(buf)


def _read_header(r: _Checked) -> ShareHeader:
    fixed = r.take(8 + 2 + 1 + 17 + 4 + 2, "share header")
    if fixed[:8] != MAGIC:
        raise FormatError("not a Larder share stream (bad magic)")
    (version,) = struct.unpack_from("<H", fixed, 8)
    if not 1 <= version <= FORMAT_VERSION:
        raise FormatError(f"share stream version {version}; this client reads 1 to {FORMAT_VERSION}")
    kind = KINDS.get(fixed[10])
    if kind is None:
        raise FormatError(f"unknown kind code {fixed[10]}")
    tag = fixed[11]
    modulus = int.from_bytes(fixed[12:28], "little")
    if tag == 1 and modulus == 0:
        domain, modulus = "z64", 1 << 64
    elif tag == 2 and modulus == 0:
        domain, modulus = "z128", 1 << 128
    elif tag == 3 and modulus > 2 and modulus % 2 == 1:
        domain = "fp"
    else:
        raise FormatError("unknown domain")
    threshold = fixed[28] or None
    owner = None if fixed[29] == 255 else fixed[29]
    parties, party = fixed[30], fixed[31]
    if party >= parties:
        raise FormatError("party number out of range")
    (id_len,) = struct.unpack_from("<H", fixed, 32)
    if not 0 < id_len <= MAX_CHECKOUT_ID_BYTES:
        raise FormatError("checkout id length out of range")
    shape = None
    if version == 2:
        raw = r.take(48, "share header")
        used = {1: 3, 2: 11}.get(raw[0])
        if used is None or raw[1:4] != b"\0\0\0" or any(raw[4 + 4 * used :]):
            raise FormatError("unknown shape")
        shape = struct.unpack_from(f"<{used}I", raw, 4)
        wanted = "matrix-triple" if used == 3 else "conv-triple"
        if kind != wanted or max(shape) > 0xFFFF or min(shape[: 3 if used == 3 else 9]) < 1:
            raise FormatError("a shape out of range, or on a kind without one")
    elif kind in ("matrix-triple", "conv-triple"):
        raise FormatError(f"a {kind} stream without its shape")
    try:
        checkout = r.take(id_len, "share header").decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError("checkout id is not UTF-8") from e
    items, n_ranges = struct.unpack("<QI", r.take(12, "share header"))
    if not 0 < n_ranges <= MAX_RANGES or n_ranges > items:
        raise FormatError("range count out of range")
    raw = r.take(32 * n_ranges, "share header")
    ranges = tuple(
        ShareRange(raw[i : i + 16].hex(), *struct.unpack_from("<QQ", raw, i + 16))
        for i in range(0, len(raw), 32)
    )
    expected = r.crc
    crc = r.take(4, "share header")
    if struct.unpack("<I", crc)[0] != expected:
        raise FormatError("share header checksum mismatch")
    if any(x.count == 0 for x in ranges) or sum(x.count for x in ranges) != items:
        raise FormatError("ranges do not add up to the item count")
    return ShareHeader(
        kind, domain, modulus, threshold, owner, parties, party, checkout, items, ranges, shape
    )


@dataclass
class Shares:
    """One party's shares of one checkout.

    ``limbs`` has shape ``(items, elements per record, limbs)`` and dtype ``uint64``: each
    element's canonical value as little-endian 64-bit limbs (one limb for Z_2^64 and primes
    below 2^64, two otherwise).
    """

    header: ShareHeader
    limbs: np.ndarray

    @property
    def values(self) -> np.ndarray:
        """Elements as an ``(items, elements per record)`` array: ``uint64`` where elements fit
        in 64 bits, otherwise Python integers (dtype ``object``)."""
        if self.limbs.shape[2] == 1:
            return self.limbs[:, :, 0]
        lo = self.limbs[:, :, 0].astype(object)
        hi = self.limbs[:, :, 1].astype(object)
        return lo + (hi << 64)

    def column(self, name: str) -> np.ndarray:
        """One element of every record by name, such as ``a``, ``b`` and ``c`` of triples."""
        if self.header.shape is not None:
            raise KeyError(f"{self.header.kind} records hold tensors: use tensors()")
        try:
            i = self.header.columns.index(name)
        except ValueError:
            raise KeyError(f"{self.header.kind} records hold {self.header.columns}, not {name!r}")
        return self.values[:, i]

    def tensors(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A matrix or convolution triple's shares as three arrays of shapes ``(items, *t)``
        for each tensor shape ``t`` in ``header.tensor_shapes``: A, B, C = A·B, or X, W,
        Y = conv2d(X, W) (views of ``values``, no copy where elements fit in 64 bits)."""
        shapes = self.header.tensor_shapes
        if shapes is None:
            raise ValueError(f"{self.header.kind} records are not tensors")
        v, items, at, out = self.values, self.header.items, 0, []
        for t in shapes:
            size = math.prod(t)
            out.append(v[:, at : at + size].reshape(items, *t))
            at += size
        return out[0], out[1], out[2]

    def matrices(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A matrix triple's A, B and C: :meth:`tensors` of shapes ``(items, m, k)``,
        ``(items, k, n)`` and ``(items, m, n)``."""
        if self.header.kind != "matrix-triple":
            raise ValueError(f"{self.header.kind} records are not matrices")
        return self.tensors()

    def as_int64(self) -> np.ndarray:
        """Z_2^64 shares as an ``(items, elements per record)`` ``int64`` array: the same bits
        as ``values``, without a copy, read as two's complement (how CrypTen and most engines
        keep ring elements; ``torch.from_numpy`` refuses ``uint64``)."""
        if self.header.modulus != 1 << 64:
            raise ValueError(f"int64 holds Z_2^64 elements, not {self.header.domain} ones")
        return self.limbs[:, :, 0].view(np.int64)

    def to_torch(self) -> "torch.Tensor":  # type: ignore[name-defined] # noqa: F821
        """Z_2^64 shares as a torch ``int64`` tensor of shape ``(items, elements per
        record)`` that shares memory with ``limbs`` (see :meth:`as_int64`). Needs torch."""
        import torch

        return torch.from_numpy(self.as_int64())

    def __repr__(self) -> str:  # never the shares themselves
        h = self.header
        return (
            f"Shares(checkout={h.checkout!r}, kind={h.kind}, domain={h.domain}, "
            f"items={h.items}, party={h.party}/{h.parties})"
        )


def read_shares(stream: BinaryIO) -> Shares:
    """Reads a whole share stream (from a file or a download) into arrays, checking it."""
    r = _Checked(stream)
    header = _read_header(r)
    limbs_per = header.element_bytes // 8
    cols = header.record_len
    out = np.empty((header.items, cols, limbs_per), dtype="<u8")
    r.crc = 0
    r.read_into(memoryview(out.reshape(-1).view(np.uint8)), "share records")
    records_crc = r.crc
    trailer = r.take(4, "share trailer")
    if struct.unpack("<I", trailer)[0] != records_crc:
        raise FormatError("share records checksum mismatch")
    if stream.read(1):
        raise FormatError("trailing bytes after the share stream")
    if header.domain == "fp" and not _below(out, header.modulus):
        raise FormatError("an element is not below the modulus")
    return Shares(header, out.astype(np.uint64, copy=False))


def _below(limbs: np.ndarray, m: int) -> bool:
    """Whether every element (as little-endian limbs) is below ``m``."""
    if limbs.shape[2] == 1:
        return not bool((limbs[:, :, 0] >= np.uint64(m)).any())
    lo, hi = limbs[:, :, 0], limbs[:, :, 1]
    m_lo, m_hi = np.uint64(m & (2**64 - 1)), np.uint64(m >> 64)
    return not bool(((hi > m_hi) | ((hi == m_hi) & (lo >= m_lo))).any())


def reconstruct(parties: List[Shares]) -> np.ndarray:
    """Opens additive shares of the same checkout from every party: the sum of each element
    modulo the domain's modulus (the XOR of the XOR-shared columns, see ``XOR_COLUMNS``). For
    checking and tests; an engine never sees all shares."""
    if not parties:
        raise ValueError("no shares")
    h0 = parties[0].header
    for s in parties:
        h = s.header
        if (h.checkout, h.kind, h.modulus, h.ranges, h.shape) != (
            h0.checkout, h0.kind, h0.modulus, h0.ranges, h0.shape
        ):
            raise ValueError("shares of different checkouts")
    if not h0.additive:
        raise ValueError("Shamir double sharings open by interpolation, not by summing")
    if sorted(s.header.party for s in parties) != list(range(h0.parties)):
        raise ValueError("need exactly one share stream per party")
    n = h0.shared_len
    m = h0.modulus
    if m == 1 << 64:
        total = np.zeros((h0.items, n), dtype=np.uint64)
        xor = list(XOR_COLUMNS.get(h0.kind, ()))
        add = [c for c in range(n) if c not in xor]
        for s in parties:
            v = s.values[:, :n]
            if xor:
                total[:, add] += v[:, add]  # wraps modulo 2^64
                total[:, xor] ^= v[:, xor]
            else:
                total += v
        return total
    total = np.zeros((h0.items, n), dtype=object)
    xor = list(XOR_COLUMNS.get(h0.kind, ()))
    add = [c for c in range(n) if c not in xor]
    for s in parties:
        v = s.values[:, :n].astype(object)
        total[:, add] = (total[:, add] + v[:, add]) % m
        total[:, xor] = total[:, xor] ^ v[:, xor]
    return total
