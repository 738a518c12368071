"""The online phase of one secure multiplication with Larder's Beaver triples, over Z_2^64.

Each party i holds additive shares x_i, y_i of secret vectors x, y and its shares (a_i, b_i,
c_i) of triples with c = ab. The parties open d = x - a and e = y - b (each publishes
x_i - a_i and y_i - b_i; these reveal nothing, since a and b are uniformly random and used
once), then each computes its share of xy locally:

    z_i = c_i + d b_i + e a_i  (+ d e at party 0)

Run it against a consortium started with `larder demo` (it prints URLs and token files):

    python3 beaver_multiply.py --ca ca.pem URL0 TOKENFILE0 URL1 TOKENFILE1 URL2 TOKENFILE2

Here one process plays every party to show the arithmetic; a real engine runs one party per
site and exchanges only the d and e shares.
"""

from __future__ import annotations

import argparse
import uuid
from typing import List, Sequence

import numpy as np

from larder_client import Client, Shares


def share(secret: np.ndarray, parties: int, rng: np.random.Generator) -> List[np.ndarray]:
    """Additive shares of a uint64 vector modulo 2^64."""
    parts = [rng.integers(0, 2**64, size=secret.shape, dtype=np.uint64) for _ in range(parties - 1)]
    last = secret.copy()
    for p in parts:
        last -= p
    return parts + [last]


def multiply(
    x: Sequence[np.ndarray], y: Sequence[np.ndarray], triples: Sequence[Shares]
) -> List[np.ndarray]:
    """Each party's share of x*y (elementwise, modulo 2^64), using one triple per element."""
    a = [t.column("a") for t in triples]
    b = [t.column("b") for t in triples]
    c = [t.column("c") for t in triples]
    d = sum((xi - ai for xi, ai in zip(x, a)), np.zeros_like(x[0]))  # opened
    e = sum((yi - bi for yi, bi in zip(y, b)), np.zeros_like(y[0]))  # opened
    z = [ci + d * bi + e * ai for ai, bi, ci in zip(a, b, c)]
    z[0] = z[0] + d * e
    return z


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ca", required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("nodes", nargs="+", help="URL TOKENFILE, one pair per party")
    args = ap.parse_args()
    pairs = list(zip(args.nodes[::2], args.nodes[1::2]))
    nodes = [Client(u, ca_file=args.ca, token_file=t) for u, t in pairs]
    job = f"beaver-{uuid.uuid4().hex[:8]}"
    for n in nodes:
        n.checkout(job, "triple-z64", args.count)
    triples = [n.download(job) for n in nodes]
    rng = np.random.default_rng()
    x = rng.integers(0, 2**64, size=args.count, dtype=np.uint64)
    y = rng.integers(0, 2**64, size=args.count, dtype=np.uint64)
    z = multiply(share(x, len(nodes), rng), share(y, len(nodes), rng), triples)
    product = sum(z, np.zeros_like(x))
    assert np.array_equal(product, x * y), "the opened product must equal x*y"
    print(f"checkout {job}: {args.count} secure multiplications over Z_2^64 open to x*y")


if __name__ == "__main__":
    main()
