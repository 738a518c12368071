"""The Python client against a real local consortium (three TLS nodes and a dealer).

Run by Larder's test suite (`cargo test --release`, test `python_client`), which starts the
consortium, fills the pools and passes its description in ``LARDER_TEST_CONSORTIUM`` (a JSON
file: ``ca``, and per party ``url`` and ``token_file``). Without it these tests fail: they
are never skipped.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import unittest
import uuid
from typing import Any, Dict, List

import numpy as np

from larder_client import (
    Client,
    FormatError,
    LarderConnectionError,
    LarderError,
    read_shares,
    reconstruct,
)


def consortium() -> Dict[str, Any]:
    path = os.environ.get("LARDER_TEST_CONSORTIUM")
    if not path:
        raise RuntimeError(
            "LARDER_TEST_CONSORTIUM is not set: run these tests through `cargo test --release "
            "--test python_client`, which starts a consortium for them"
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def clients() -> List[Client]:
    c = consortium()
    return [Client(p["url"], ca_file=c["ca"], token_file=p["token_file"]) for p in c["parties"]]


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class CheckoutAcrossParties(unittest.TestCase):
    def setUp(self) -> None:
        self.nodes = clients()

    def take(self, pool: str, count: int):
        cid = fresh(pool)
        views = [n.checkout(cid, pool, count) for n in reversed(self.nodes)]
        for v in views:
            self.assertEqual(v.ranges, views[0].ranges, "every party sees the same items")
            self.assertEqual(v.count, count)
        return cid, [n.download(cid) for n in self.nodes]

    def test_z64_triples_reconstruct(self) -> None:
        cid, shares = self.take("triple-z64", 5000)
        for p, s in enumerate(shares):
            self.assertEqual(s.header.party, p)
            self.assertEqual(s.header.checkout, cid)
            self.assertEqual(s.header.items, 5000)
            self.assertEqual(s.values.dtype, np.uint64)
            self.assertEqual(s.values.shape, (5000, 3))
        opened = reconstruct(shares)
        a, b, c = opened[:, 0], opened[:, 1], opened[:, 2]
        np.testing.assert_array_equal(a * b, c)  # uint64 arithmetic wraps modulo 2^64
        self.assertGreater(len(np.unique(a)), 4900, "a is random")
        # Any one party's shares alone do not satisfy the relation.
        s0 = shares[0]
        self.assertFalse(np.array_equal(s0.column("a") * s0.column("b"), s0.column("c")))

    def test_p128_triples_reconstruct_with_python_integers(self) -> None:
        _, shares = self.take("triple-p128", 1500)
        p = shares[0].header.modulus
        self.assertEqual(p, 2**127 + 1802241)
        opened = reconstruct(shares)
        for a, b, c in opened:
            self.assertEqual(a * b % p, c)
            self.assertLess(max(a, b, c), p)

    def test_input_mask_owner_knows_the_mask(self) -> None:
        _, shares = self.take("input-mask-p61-o1", 800)
        owner = shares[1]
        self.assertEqual(owner.header.columns, ("r", "r_clear"))
        self.assertEqual(shares[0].header.columns, ("r",))
        opened = reconstruct(shares)
        self.assertEqual(list(opened[:, 0]), [int(x) for x in owner.column("r_clear")])

    def test_bits_are_bits(self) -> None:
        _, shares = self.take("bit-z64", 2000)
        bits = reconstruct(shares)[:, 0]
        self.assertTrue(set(np.unique(bits)) <= {0, 1})
        self.assertTrue(300 < int(bits.sum()) < 1700, "bits are not constant")

    def test_wraps_count_the_wrap_arounds_of_signed_shares(self) -> None:
        _, shares = self.take("wrap-z64", 2000)
        self.assertEqual(shares[0].header.columns, ("r", "theta"))
        opened = reconstruct(shares)
        r = [int(x) for x in opened[:, 0].astype(np.int64)]
        theta = [int(x) for x in opened[:, 1].astype(np.int64)]
        signed = [s.column("r").astype(np.int64) for s in shares]
        for j in range(2000):
            total = sum(int(s[j]) for s in signed)  # Python integers: no wrapping
            self.assertEqual(total, r[j] + theta[j] * 2**64)
        self.assertGreater(len(set(theta)), 1, "theta is not always 0")

    def test_binary_triples_and_dabits_open_by_xor(self) -> None:
        _, shares = self.take("binary-triple-z64", 2000)
        opened = reconstruct(shares)
        a, b, c = opened[:, 0], opened[:, 1], opened[:, 2]
        np.testing.assert_array_equal(a & b, c)
        self.assertGreater(len(np.unique(a)), 1990, "a is random")
        _, shares = self.take("dabit-z64", 2000)
        opened = reconstruct(shares)
        np.testing.assert_array_equal(opened[:, 0], opened[:, 1])
        self.assertTrue(set(np.unique(opened[:, 0])) <= {0, 1})
        self.assertTrue(300 < int(opened[:, 0].sum()) < 1700, "bits are not constant")
        _, shares = self.take("dabit-p128", 2000)
        opened = reconstruct(shares)
        self.assertEqual([int(x) for x in opened[:, 0]], [int(x) for x in opened[:, 1]])
        self.assertTrue(set(int(x) for x in opened[:, 0]) <= {0, 1})

    def test_matrix_triples_open_to_a_matrix_product(self) -> None:
        cid, shares = self.take("matrix-triple-z64-3x4x5", 1500)
        self.assertEqual(shares[0].header.shape, (3, 4, 5))
        a, b, c = shares[0].matrices()
        self.assertEqual((a.shape, b.shape, c.shape), ((1500, 3, 4), (1500, 4, 5), (1500, 3, 5)))
        with self.assertRaises(KeyError):
            shares[0].column("a")
        opened = reconstruct(shares)
        self.assertEqual(opened.shape, (1500, 3 * 4 + 4 * 5 + 3 * 5))
        a, b, c = opened[:, :12].reshape(-1, 3, 4), opened[:, 12:32].reshape(-1, 4, 5), opened[:, 32:].reshape(-1, 3, 5)
        np.testing.assert_array_equal(np.matmul(a, b), c)  # uint64 wraps modulo 2^64
        # One party's shares alone are not a product.
        a0, b0, c0 = shares[0].matrices()
        self.assertFalse(np.array_equal(np.matmul(a0, b0), c0))
        # Over a 128-bit prime, with Python integers.
        _, shares = self.take("matrix-triple-p128-2x3x2", 400)
        p = shares[0].header.modulus
        opened = reconstruct(shares)
        for row in opened[:50]:
            a = [[row[i * 3 + j] for j in range(3)] for i in range(2)]
            b = [[row[6 + i * 2 + j] for j in range(2)] for i in range(3)]
            for i in range(2):
                for j in range(2):
                    dot = sum(a[i][l] * b[l][j] for l in range(3)) % p
                    self.assertEqual(dot, row[12 + i * 2 + j])

    def test_a_second_download_is_refused(self) -> None:
        cid, _ = self.take("triple-z64", 10)
        with self.assertRaises(LarderError) as e:
            self.nodes[0].download(cid)
        self.assertEqual((e.exception.status, e.exception.code), (410, "already-consumed"))

    def test_reusing_an_id_for_another_request_is_a_conflict(self) -> None:
        cid = fresh("conflict")
        self.nodes[0].checkout(cid, "triple-z64", 10)
        with self.assertRaises(LarderError) as e:
            self.nodes[1].checkout(cid, "triple-z64", 11)
        self.assertEqual((e.exception.status, e.exception.code), (409, "checkout-conflict"))

    def test_underrun_says_how_many_are_available(self) -> None:
        with self.assertRaises(LarderError) as e:
            self.nodes[0].checkout(fresh("big"), "triple-z64", 10**9)
        err = e.exception
        self.assertEqual((err.status, err.code), (503, "underrun"))
        self.assertIsInstance(err.available, int)
        self.assertLess(err.available, 10**9)
        self.assertIsNotNone(err.retry_after)

    def test_unknown_pool_and_bad_count_are_clear_errors(self) -> None:
        with self.assertRaises(LarderError) as e:
            self.nodes[0].checkout(fresh("x"), "triple-z32", 10)
        self.assertEqual(e.exception.status // 100, 4)
        self.assertIn("z32", e.exception.detail)
        with self.assertRaises(LarderError) as e:
            self.nodes[0].checkout(fresh("x"), "triple-z64", 0)
        self.assertEqual(e.exception.status, 400)

    def test_wrong_credentials_are_refused(self) -> None:
        c = consortium()
        p0 = c["parties"][0]
        wrong = Client(p0["url"], ca_file=c["ca"], token="not-a-token")
        with self.assertRaises(LarderError) as e:
            wrong.checkout(fresh("x"), "triple-z64", 1)
        self.assertEqual((e.exception.status, e.exception.code), (401, "unauthenticated"))
        # Party 1's engine at party 0's node.
        other = Client(p0["url"], ca_file=c["ca"], token_file=c["parties"][1]["token_file"])
        with self.assertRaises(LarderError) as e:
            other.checkout(fresh("x"), "triple-z64", 1)
        self.assertEqual(e.exception.status, 403)

    def test_the_token_never_shows(self) -> None:
        c = consortium()
        with open(c["parties"][0]["token_file"], encoding="utf-8") as f:
            token = f.read().strip()
        node = self.nodes[0]
        self.assertNotIn(token, repr(node))
        with self.assertRaises(LarderError) as e:
            node.download(fresh("missing"))
        self.assertNotIn(token, str(e.exception))
        self.assertEqual(e.exception.status, 404)
        cid, shares = self.take("triple-z64", 5)
        self.assertNotIn(str(int(shares[0].values[0, 0])), repr(shares[0]), "no share values")

    def test_an_unreachable_node_is_a_connection_error(self) -> None:
        c = consortium()
        dead = Client("https://127.0.0.1:1", ca_file=c["ca"], token="t", timeout=5)
        with self.assertRaises(LarderConnectionError):
            dead.health()

    def test_a_kept_alive_connection_serves_many_requests(self) -> None:
        c = consortium()
        p = c["parties"][0]
        with Client(p["url"], ca_file=c["ca"], token_file=p["token_file"], keep_alive=True) as node:
            node.health()
            conn = node._conn
            self.assertIsNotNone(conn, "the connection is kept after a complete response")
            for _ in range(3):
                cid = fresh("keep")
                node.checkout(cid, "triple-z64", 10)
                self.assertEqual(node.download(cid).header.items, 10)
                with self.assertRaises(LarderError):  # an error answer keeps it usable too
                    node.checkout(fresh("keep"), "no-such-pool-z64", 1)
            self.assertIs(node._conn, conn, "every request went over the first connection")
            # A connection the node closed is replaced without the caller noticing.
            conn.sock.close()
            self.assertEqual(node.health()["party"], 0)
        self.assertIsNone(node._conn, "closed on leaving the with block")

    def test_health_names_the_party(self) -> None:
        for p, n in enumerate(self.nodes):
            h = n.health()
            self.assertEqual((h["party"], h["parties"]), (p, 3))


class BeaverExample(unittest.TestCase):
    """The documented example (examples/beaver_multiply.py) multiplies correctly, and a triple
    with a wrong c would show."""

    def test_secure_multiplication_opens_to_the_product(self) -> None:
        import importlib.util
        import sys

        path = os.path.join(os.path.dirname(__file__), "..", "examples", "beaver_multiply.py")
        spec = importlib.util.spec_from_file_location("beaver_multiply", path)
        assert spec and spec.loader
        ex = importlib.util.module_from_spec(spec)
        sys.modules["beaver_multiply"] = ex
        spec.loader.exec_module(ex)
        nodes = clients()
        cid = fresh("beaver")
        for n in nodes:
            n.checkout(cid, "triple-z64", 4000)
        triples = [n.download(cid) for n in nodes]
        rng = np.random.default_rng(7)
        x = rng.integers(0, 2**64, size=4000, dtype=np.uint64)
        y = rng.integers(0, 2**64, size=4000, dtype=np.uint64)
        z = ex.multiply(ex.share(x, 3, rng), ex.share(y, 3, rng), triples)
        np.testing.assert_array_equal(sum(z, np.zeros_like(x)), x * y)
        # Negative control: shift one party's c by one and the product is off by one.
        triples[2].limbs[:, 2, 0] += np.uint64(1)
        z = ex.multiply(ex.share(x, 3, rng), ex.share(y, 3, rng), triples)
        np.testing.assert_array_equal(sum(z, np.zeros_like(x)), x * y + np.uint64(1))


class StreamsOnDisk(unittest.TestCase):
    """download_to streams to a file; read_shares refuses damaged streams."""

    def setUp(self) -> None:
        self.nodes = clients()
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self) -> None:
        self.dir.cleanup()

    def download_all(self, pool: str, count: int) -> List[str]:
        cid = fresh("disk")
        for n in self.nodes:
            n.checkout(cid, pool, count)
        paths = []
        for p, n in enumerate(self.nodes):
            path = os.path.join(self.dir.name, f"p{p}.shares")
            header = n.download_to(cid, path)
            self.assertEqual(header.items, count)
            paths.append(path)
        return paths

    def test_files_reconstruct(self) -> None:
        paths = self.download_all("square-p61", 3000)
        shares = []
        for path in paths:
            with open(path, "rb") as f:
                shares.append(read_shares(f))
        opened = reconstruct(shares)
        p = shares[0].header.modulus
        self.assertEqual(p, 2**61 - 1)
        a = opened[:, 0].astype(object)
        self.assertEqual(list(a * a % p), list(opened[:, 1]))

    def test_damaged_streams_are_refused(self) -> None:
        path = self.download_all("triple-z64", 2000)[0]
        with open(path, "rb") as f:
            data = f.read()
        for name, bad in [
            ("truncated", data[:-10]),
            ("trailing byte", data + b"\0"),
            ("flipped record byte", data[:-50] + bytes([data[-50] ^ 1]) + data[-49:]),
            ("flipped header byte", data[:40] + bytes([data[40] ^ 1]) + data[41:]),
            ("foreign", b"PK\x03\x04" + data[4:]),
            ("empty", b""),
        ]:
            with self.subTest(name):
                with self.assertRaises(FormatError):
                    read_shares(io.BytesIO(bad))


if __name__ == "__main__":
    unittest.main()
