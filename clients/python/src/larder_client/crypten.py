"""A CrypTen tuple provider that takes every random tuple from Larder.

CrypTen (0.4.1) asks a *tuple provider* for the correlated randomness of its protocols: Beaver
triples for multiplications, squares, binary (AND) triples for comparisons, wraps for the
truncation after each fixed-point multiplication with three or more parties, and random bits
shared both ways (``B2A_rng``). By default its trusted first party (rank 0) makes them during
the computation. With this module each rank takes them from its own party's Larder node
instead, made ahead of time::

    import crypten, larder_client.crypten
    crypten.init()                                   # in every rank, as usual
    larder_client.crypten.install(demo="larder-demo")  # or urls=, token_files=, ca=

One call per rank after ``crypten.init()``. Rank ``p`` talks to party ``p``'s node with engine
``p``'s token over one kept-alive TLS connection. The ranks agree on a fresh run id (rank 0
draws it and broadcasts it), so every checkout id is the same across ranks and never repeats
across runs. Items are checked out in blocks that grow as the run goes (``block`` up to
``max_block``) and sliced locally, so a small multiply costs no round trip; what is left of
the last block of each kind when the run ends is burned, never reused. When a pool runs short
(``underrun``), the provider waits as long as the node's ``Retry-After`` says (trying again at
least every 10 s), up to ``max_wait`` seconds in all, then raises :class:`LarderProviderError` saying which pool and how
much; the error is also logged, since CrypTen's multiprocess launcher only says that a party
failed.

Which pool serves which request:

============================  =====================  =============================
CrypTen asks for              pool (default)         columns
============================  =====================  =============================
``generate_additive_triple``  ``triple-z64``         a, b, c = a * b (same shapes)
``generate_additive_triple``  ``matrix-triple-z64-``  A (m x k), B (k x n), C = A @ B
(``matmul``, 2-D)             ``<m>x<k>x<n>``
``generate_additive_triple``  ``conv-triple-z64-``    X, W, Y = conv2d(X, W)
(``conv2d``)                  ``<n>x<c>x<h>x<w>-``
                              ``<o>x<kh>x<kw>-s..-p..``
``square``                    ``square-z64``         r, r^2
``generate_binary_triple``    ``binary-triple-z64``  a, b, c = a & b (same shapes)
``wrap_rng``                  ``wrap-z64``           r, theta_r
``B2A_rng``                   ``dabit-z64``          bit (additive), bit (XOR)
============================  =====================  =============================

A ``matmul`` of two private matrices takes one matrix triple of exactly its shape, from the pool
named after it, which the consortium must keep (``matrix-triple-z64-1000x16x32`` for a 1000 x 16
by 16 x 32 product); a ``conv2d`` of a private batch by private kernels likewise takes one
convolution triple of its geometry (``conv-triple-z64-1x3x32x32-16x3x3-s1x1-p1x1``). Triples
Larder has no pool for (a shape the consortium does not keep, batched or 1-D matmuls, conv1d,
dilated or grouped or transposed convolutions, broadcasting products) are refused with a clear
error, or, if ``fallback`` names one of CrypTen's own providers (``"TFP"``), made by it while
Larder serves the rest; :attr:`LarderProvider.fallbacks` counts them.

Needs CrypTen (``pip install larder-client[crypten]``); the rest of ``larder_client`` does not.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

import crypten
import crypten.communicator as comm
import torch
from crypten.mpc.primitives import ArithmeticSharedTensor, BinarySharedTensor
from crypten.mpc.provider.provider import TupleProvider

from ._client import Client, LarderError

__all__ = ["LarderProvider", "LarderProviderError", "install", "uninstall", "NAME"]

#: The name the provider is registered under in CrypTen's configuration (``mpc.provider``).
NAME = "LARDER"

#: The pool each kind of request is served from, unless ``install(pools=...)`` says otherwise.
DEFAULT_POOLS: Dict[str, str] = {
    "triple": "triple-z64",
    "square": "square-z64",
    "binary-triple": "binary-triple-z64",
    "wrap": "wrap-z64",
    "dabit": "dabit-z64",
}

#: Longest sleep between two tries after an underrun, in seconds.
MAX_POLL = 10.0

log = logging.getLogger("larder_client.crypten")


class LarderProviderError(RuntimeError):
    """The provider could not serve a request: the pool stayed short past ``max_wait``, the
    node refused, or Larder has no pool for the request (see the message)."""


class _Pool:
    """The items of one pool this rank has checked out and not yet handed to CrypTen."""

    def __init__(self, provider: "LarderProvider", pool: str, block: int, max_block: int) -> None:
        self.provider = provider
        self.pool = pool
        self.rows: Optional[np.ndarray] = None  # (items, columns) int64
        self.pos = 0
        self.next_block = block
        self.max_block = max_block
        self.checkouts = 0
        self.checked_out = 0
        self.used = 0

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` records, as an ``(n, columns)`` int64 array."""
        parts: List[np.ndarray] = []
        while n > 0:
            if self.rows is None or self.pos == len(self.rows):
                self._refill(max(self.next_block, n))
                self.next_block = min(2 * self.next_block, self.max_block)
            assert self.rows is not None
            k = min(n, len(self.rows) - self.pos)
            parts.append(self.rows[self.pos : self.pos + k])
            self.pos += k
            self.used += k
            n -= k
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _refill(self, count: int) -> None:
        # Every rank makes the same requests in the same order, so the n-th block of a pool
        # has the same id (and the same items) at every party.
        cid = f"{self.provider.run}.{self.pool}.{self.checkouts}"
        self.checkouts += 1
        self.provider._checkout(cid, self.pool, count)
        shares = self.provider.client.download(cid)
        self.rows = shares.as_int64()
        self.pos = 0
        self.checked_out += count


class LarderProvider(TupleProvider):
    """CrypTen's ``TupleProvider`` served by one party's Larder node (see the module)."""

    NAME = NAME

    def __init__(
        self,
        client: Client,
        run: str,
        *,
        pools: Optional[Dict[str, str]] = None,
        block: int = 1 << 14,
        max_block: int = 1 << 20,
        max_wait: float = 60.0,
        fallback: Optional[str] = None,
    ) -> None:
        super().__init__()
        if not 0 < block <= max_block:
            raise ValueError("need 0 < block <= max_block")
        self.client = client
        self.run = run
        self.pools = dict(DEFAULT_POOLS, **(pools or {}))
        self.block = block
        self.max_block = max_block
        self.max_wait = max_wait
        self.fallback = fallback
        #: Requests handed to the fallback provider, by operation.
        self.fallbacks: Dict[str, int] = {}
        #: Time spent waiting for stock after an underrun, in seconds.
        self.waited = 0.0
        self._stock: Dict[str, _Pool] = {}
        # Matrix pools the consortium does not keep (asked once, then left to the fallback).
        self._missing: set = set()

    def __repr__(self) -> str:
        return f"LarderProvider({self.client.url!r}, run={self.run!r})"

    # --- what CrypTen calls --------------------------------------------------------------

    def generate_additive_triple(self, size0, size1, op, device=None, *args, **kwargs):
        """A Beaver triple of the given sizes for ``op``: ``mul`` of equal shapes from
        ``triple-z64``, ``matmul`` of an m x k by a k x n matrix from
        ``matrix-triple-z64-<m>x<k>x<n>``, ``conv2d`` from the conv-triple pool of its
        geometry."""
        s0, s1 = tuple(size0), tuple(size1)
        if op == "mul" and s0 == s1 and not args and not kwargs:
            abc = self._columns("triple", s0, 3, device)
            return tuple(ArithmeticSharedTensor.from_shares(x, precision=0) for x in abc)
        # A matrix or convolution triple: its pool and its three tensors' shapes.
        shaped = None
        if op == "matmul" and len(s0) == 2 and len(s1) == 2 and s0[1] == s1[0] and not args and not kwargs:
            shaped = (f"matrix-triple-z64-{s0[0]}x{s0[1]}x{s1[1]}", (s0, s1, (s0[0], s1[1])))
        elif op == "conv2d" and not args:
            geometry = _conv_geometry(s0, s1, kwargs)
            if geometry is not None:
                pool, out = geometry
                shaped = (pool, (s0, s1, out))
        abc = None if shaped is None else self._tensors(shaped[0], shaped[1], device)
        if abc is None:
            missing = "" if shaped is None else f" (no pool {shaped[0]} in this consortium)"
            return self._fallback(
                "generate_additive_triple",
                f"{op} triples of shapes {s0} and {s1}{missing}",
                size0, size1, op, device, *args, **kwargs,
            )
        return tuple(ArithmeticSharedTensor.from_shares(x, precision=0) for x in abc)

    def square(self, size, device=None):
        """(r, r^2) of the given size."""
        r, r2 = self._columns("square", size, 2, device)
        return (
            ArithmeticSharedTensor.from_shares(r, precision=0),
            ArithmeticSharedTensor.from_shares(r2, precision=0),
        )

    def generate_binary_triple(self, size0, size1, device=None):
        """An AND triple on 64-bit words, XOR-shared."""
        if tuple(size0) != tuple(size1):
            return self._fallback(
                "generate_binary_triple",
                f"binary triples of shapes {tuple(size0)} and {tuple(size1)}",
                size0, size1, device,
            )
        a, b, c = self._columns("binary-triple", size0, 3, device)
        return tuple(BinarySharedTensor.from_shares(x) for x in (a, b, c))

    def wrap_rng(self, size, device=None):
        """r and theta_r, the count of wrap-arounds of r's shares (CrypTen's ``count_wraps``)."""
        r, theta = self._columns("wrap", size, 2, device)
        return (
            ArithmeticSharedTensor.from_shares(r, precision=0),
            ArithmeticSharedTensor.from_shares(theta, precision=0),
        )

    def B2A_rng(self, size, device=None):
        """A random bit shared additively and XOR-wise (a daBit)."""
        b, b_xor = self._columns("dabit", size, 2, device)
        return (
            ArithmeticSharedTensor.from_shares(b, precision=0),
            BinarySharedTensor.from_shares(b_xor),
        )

    # --- reporting -----------------------------------------------------------------------

    def usage(self) -> Dict[str, Dict[str, int]]:
        """Per pool: items handed to CrypTen (``used``), items checked out (``checked_out``,
        the rest of the last block is burned when the run ends) and ``checkouts``."""
        return {
            p.pool: {"used": p.used, "checked_out": p.checked_out, "checkouts": p.checkouts}
            for p in self._stock.values()
        }

    def close(self) -> None:
        """Closes the connection to the node. Unused items stay checked out (burned)."""
        self.client.close()

    # --- internals -----------------------------------------------------------------------

    def _stock_of(self, pool: str, record_len: int) -> _Pool:
        stock = self._stock.get(pool)
        if stock is None:
            if record_len <= 3:
                block, most = self.block, self.max_block
            else:
                # Matrix triples: a model takes one per layer and batch, so start with one
                # and grow to at most 64 MiB.
                block = 1
                most = max(1, (64 << 20) // (8 * record_len))
            stock = self._stock[pool] = _Pool(self, pool, block, most)
        return stock

    def _tensors(self, pool: str, shapes, device) -> Optional[Tuple[torch.Tensor, ...]]:
        """One matrix or convolution triple from ``pool``, as tensors of ``shapes``; ``None``
        if the consortium does not keep the pool."""
        if pool in self._missing:
            return None
        sizes = [math.prod(t) for t in shapes]
        try:
            row = self._stock_of(pool, sum(sizes)).take(1)[0]
        except LarderProviderError as e:
            if isinstance(e.__cause__, LarderError) and e.__cause__.code == "unknown-pool":
                self._missing.add(pool)
                del self._stock[pool]
                return None
            raise
        parts, at = [], 0
        for t, size in zip(shapes, sizes):
            parts.append(row[at : at + size].reshape(t))
            at += size
        out = tuple(torch.from_numpy(x) for x in parts)
        return tuple(t.to(device) for t in out) if device is not None else out

    def _columns(self, kind: str, size: Sequence[int], ncols: int, device) -> Tuple[torch.Tensor, ...]:
        pool = self.pools[kind]
        stock = self._stock_of(pool, ncols)
        shape = tuple(size)
        try:
            rows = stock.take(math.prod(shape))
        except LarderProviderError as e:
            if isinstance(e.__cause__, LarderError) and e.__cause__.code == "unknown-pool":
                raise self._error(str(e)) from e.__cause__
            raise
        if rows.shape[1] != ncols:
            raise LarderProviderError(f"pool {pool} holds {rows.shape[1]} columns, not {ncols}")
        cols = []
        for i in range(ncols):
            t = torch.from_numpy(rows[:, i]).reshape(shape)
            cols.append(t.to(device) if device is not None else t)
        return tuple(cols)

    def _checkout(self, cid: str, pool: str, count: int) -> None:
        deadline = time.monotonic() + self.max_wait
        while True:
            try:
                self.client.checkout(cid, pool, count)
                return
            except LarderError as e:
                if e.code == "underrun":
                    left = deadline - time.monotonic()
                    if left > 0:
                        # The node's Retry-After, but looking again at least every
                        # MAX_POLL seconds: stock may come sooner than its forecast.
                        wait = min(float(e.retry_after or 1), MAX_POLL, left)
                        log.warning(
                            "%s: %s is short (%s of %d available); waiting %.0f s for stock",
                            self.client.url, pool, e.available, count, wait,
                        )
                        time.sleep(wait)
                        self.waited += wait
                        continue
                    raise self._error(
                        f"{pool} at {self.client.url} stayed short for {self.max_wait:.0f} s: "
                        f"{e.available} items available, {count} needed. Fill it (larder jobs "
                        f"create --pool {pool} --count N) or raise max_wait"
                    ) from e
                if e.code == "unknown-pool":
                    raise LarderProviderError(f"{pool} at {self.client.url}: {e}") from e
                raise self._error(f"{pool} at {self.client.url}: {e}") from e

    def _fallback(self, method: str, what: str, *args, **kwargs):
        if self.fallback is None:
            raise self._error(
                f"Larder has no pool for {what}; only elementwise products of equal shapes "
                "are served. Pass fallback='TFP' to install() to let CrypTen's trusted first "
                "party make these"
            )
        op = args[2] if method == "generate_additive_triple" else method
        self.fallbacks[op] = self.fallbacks.get(op, 0) + 1
        provider = _crypten_providers()[self.fallback]
        return getattr(provider, method)(*args, **kwargs)

    def _error(self, message: str) -> LarderProviderError:
        log.error("rank %s: %s", _rank(), message)
        return LarderProviderError(message)


def _conv_geometry(s0, s1, kwargs) -> Optional[Tuple[str, Tuple[int, ...]]]:
    """The pool and output shape of CrypTen's conv2d of an ``s0`` input by ``s1`` kernels, if
    Larder has a kind for it (4-D, integer stride and padding, no dilation, one group)."""
    if len(s0) != 4 or len(s1) != 4 or s0[1] != s1[1]:
        return None
    if kwargs.get("dilation", 1) not in (1, (1, 1)) or kwargs.get("groups", 1) != 1:
        return None
    if set(kwargs) - {"stride", "padding", "dilation", "groups"}:
        return None

    def pair(v):
        if isinstance(v, int):
            return (v, v)
        if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(x, int) for x in v):
            return tuple(v)
        return None

    stride, pad = pair(kwargs.get("stride", 1)), pair(kwargs.get("padding", 0))
    if stride is None or pad is None:
        return None
    n, c, h, w = s0
    o, _, kh, kw = s1
    oh, ow = (h + 2 * pad[0] - kh) // stride[0] + 1, (w + 2 * pad[1] - kw) // stride[1] + 1
    pool = (
        f"conv-triple-z64-{n}x{c}x{h}x{w}-{o}x{kh}x{kw}"
        f"-s{stride[0]}x{stride[1]}-p{pad[0]}x{pad[1]}"
    )
    return pool, (n, o, oh, ow)


def _rank() -> str:
    return str(comm.get().get_rank()) if comm.is_initialized() else "-"


def _crypten_providers() -> Dict[str, TupleProvider]:
    # CrypTen 0.4.1 keeps its providers in a module-level dict and looks the configured one up
    # on every request (crypten.mpc.get_default_provider); it has no registration call.
    return getattr(crypten.mpc, "__SUPPORTED_PROVIDERS")


def install(
    *,
    demo: Optional[str] = None,
    urls: Optional[Sequence[str]] = None,
    token_files: Optional[Sequence[str]] = None,
    tokens: Optional[Sequence[str]] = None,
    ca: Optional[str] = None,
    run: Optional[str] = None,
    **options,
) -> LarderProvider:
    """Makes Larder CrypTen's tuple provider in this rank (call it in every rank, after
    ``crypten.init()``); returns the provider (see :meth:`LarderProvider.usage`).

    Either ``demo``, the directory ``larder demo`` wrote (rank ``p`` uses
    ``engines/engine-p.url``, ``engines/engine-p.token`` and ``ca.pem``), or ``urls`` with
    ``token_files`` or ``tokens`` (one per rank, in rank order) and ``ca``, the consortium's
    CA certificate. ``run`` is the run id (default: drawn by rank 0 and sent to the others;
    give one only if it is new). Other options go to :class:`LarderProvider` (``pools``,
    ``block``, ``max_block``, ``max_wait``, ``fallback``).
    """
    if not comm.is_initialized():
        raise LarderProviderError("call crypten.init() before larder_client.crypten.install()")
    rank, world = comm.get().get_rank(), comm.get().get_world_size()
    if demo is not None:
        engines = os.path.join(demo, "engines")
        urls = []
        for p in range(world):
            with open(os.path.join(engines, f"engine-{p}.url"), encoding="utf-8") as f:
                urls.append(f.read().strip())
        token_files = [os.path.join(engines, f"engine-{p}.token") for p in range(world)]
        ca = os.path.join(demo, "ca.pem")
    if urls is None or ca is None or (token_files is None) == (tokens is None):
        raise ValueError("give demo=, or urls= with ca= and one of token_files= and tokens=")
    if len(urls) != world:
        raise ValueError(f"{len(urls)} node URLs for {world} CrypTen ranks")
    client = Client(
        urls[rank],
        ca_file=ca,
        token=None if tokens is None else tokens[rank],
        token_file=None if token_files is None else token_files[rank],
        keep_alive=True,
    )
    if client.health().get("party") != rank:
        raise LarderProviderError(f"{urls[rank]} is not party {rank}'s node")
    run = comm.get().broadcast_obj(run or uuid.uuid4().hex if rank == 0 else None, 0)
    provider = LarderProvider(client, run, **options)
    _crypten_providers()[NAME] = provider
    crypten.cfg.mpc.provider = NAME
    return provider


def uninstall(default: str = "TFP") -> None:
    """Gives CrypTen back its own provider (``TFP`` by default) and closes the connection."""
    provider = _crypten_providers().pop(NAME, None)
    crypten.cfg.mpc.provider = default
    if provider is not None:
        provider.close()
