"""An engine's client of its own party's Larder node (HTTPS, bearer token)."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import struct
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, List, Optional, Tuple, Union

from ._stream import (
    FormatError,
    ShareHeader,
    ShareRange,
    Shares,
    _Checked,
    _read_header,
    read_shares,
)


class LarderError(Exception):
    """A node refused a request. ``code`` is the stable problem code (``underrun``,
    ``checkout-conflict``, ``already-consumed``, ``unknown-pool``, ``unauthorized``, ...),
    ``detail`` says what was wrong, in words."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        retry_after: Optional[int] = None,
        available: Optional[int] = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        #: Seconds to wait before retrying (underrun).
        self.retry_after = retry_after
        #: Items available (underrun).
        self.available = available


class LarderConnectionError(LarderError):
    """The node could not be reached (status 0, code ``transport``)."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(0, "transport", f"cannot reach {url}: {cause}")


@dataclass(frozen=True)
class Checkout:
    """A reservation, identical at every party."""

    id: str
    pool: str
    count: int
    ranges: Tuple[ShareRange, ...]
    #: State at the answering party: ``reserved``, ``consumed``, ...
    state: str
    #: Whether every party holds it (shares can be downloaded).
    confirmed: bool
    expires_at: int
    party: int


class Client:
    """Talks to one party's node as one engine.

    ``ca_file`` is the consortium's CA certificate (PEM); the token is the engine's bearer
    token, given directly or as ``token_file`` (the file ``larder demo`` prints). The token is
    never part of ``repr`` or error messages.
    """

    def __init__(
        self,
        url: str,
        *,
        ca_file: str,
        token: Optional[str] = None,
        token_file: Optional[str] = None,
        timeout: float = 300.0,
        keep_alive: bool = False,
    ) -> None:
        if (token is None) == (token_file is None):
            raise ValueError("give exactly one of token and token_file")
        if token_file is not None:
            with open(token_file, encoding="utf-8") as f:
                token = f.read().strip()
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "https" or not parsed.hostname:
            raise ValueError(f"expected https://host:port, not {url!r}")
        self.url = url.rstrip("/")
        self._host = parsed.hostname
        self._port = parsed.port or 443
        self._token = token
        self._timeout = timeout
        self._tls = ssl.create_default_context(cafile=ca_file)
        self._keep_alive = keep_alive
        self._conn: Optional[http.client.HTTPSConnection] = None
        self._idle_since = 0.0

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self._host, self._port, context=self._tls, timeout=self._timeout
        )

    def _send(
        self, method: str, path: str, body: Optional[Dict[str, Any]] = None
    ) -> Tuple[http.client.HTTPSConnection, http.client.HTTPResponse]:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "*/*"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self._conn is not None and time.monotonic() - self._idle_since > _IDLE_REUSE_SECONDS:
            self.close()  # the node would close it (it waits 20 s for the next request)
        reused = self._conn is not None
        conn = self._conn if self._conn is not None else self._connect()
        self._conn = None
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            if reused:
                # The node closed the kept-alive connection while it was idle; try once on a
                # new one (a checkout is idempotent by id; a download that did reach the node
                # comes back as already-consumed).
                return self._send(method, path, body)
            raise LarderConnectionError(self.url + path, e) from e
        if resp.status >= 400:
            try:
                raise _problem(resp)
            finally:
                self._done(conn, resp)
        return conn, resp

    def _done(self, conn: http.client.HTTPSConnection, resp: http.client.HTTPResponse) -> None:
        """Keeps the connection for the next request if it may be reused, else closes it."""
        if self._keep_alive and resp.isclosed() and not resp.will_close and self._conn is None:
            self._conn = conn
            self._idle_since = time.monotonic()
        else:
            conn.close()

    def close(self) -> None:
        """Closes the kept-alive connection, if any."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        conn, resp = self._send(method, path, body)
        try:
            return json.loads(resp.read())
        finally:
            self._done(conn, resp)

    def health(self) -> Dict[str, Any]:
        """Who the node is: consortium, party, parties, leader, version."""
        return self._json("GET", "/v1/health")

    def stock(self) -> Dict[str, Any]:
        """Stock per pool at this party."""
        return self._json("GET", "/v1/stock")

    def checkout(self, id: str, pool: str, count: int) -> Checkout:
        """Reserves ``count`` items of ``pool`` (such as ``triple-z64``) under ``id``, the same
        id every party's engine uses; the first to ask allocates, the others get the same
        items. Raises :class:`LarderError` with code ``underrun`` (and ``available``,
        ``retry_after``) when stock is short, ``checkout-conflict`` when ``id`` was used for
        another request."""
        v = self._json("POST", "/v1/checkouts", {"id": id, "pool": pool, "count": count})
        return _checkout(v)

    def get_checkout(self, id: str) -> Checkout:
        """The checkout as this party sees it."""
        return _checkout(self._json("GET", f"/v1/checkouts/{_quote(id)}"))

    def download(self, id: str) -> Shares:
        """Downloads this party's shares of checkout ``id`` (once: a second download is
        refused with ``already-consumed``) and returns them as numpy arrays."""
        conn, resp = self._send("GET", f"/v1/checkouts/{_quote(id)}/shares")
        try:
            return read_shares(resp)  # type: ignore[arg-type]
        finally:
            self._done(conn, resp)

    def download_to(self, id: str, path: Union[str, "os.PathLike[str]"]) -> ShareHeader:
        """Streams this party's share stream for ``id`` into a file (once), without holding it
        in memory; the file is complete and checked when this returns. ``larder export``
        turns it into engine files."""
        conn, resp = self._send("GET", f"/v1/checkouts/{_quote(id)}/shares")
        tmp = f"{os.fspath(path)}.part"
        try:
            with open(tmp, "wb") as out:
                header = _copy_checked(resp, out)  # type: ignore[arg-type]
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
            return header
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        finally:
            self._done(conn, resp)


#: A kept-alive connection idle for longer is replaced rather than reused: nodes close
#: connections that send no request for 20 s.
_IDLE_REUSE_SECONDS = 15.0


def _quote(id: str) -> str:
    return urllib.parse.quote(id, safe="-._~")


def _checkout(v: Dict[str, Any]) -> Checkout:
    return Checkout(
        id=v["id"],
        pool=v["pool"],
        count=v["count"],
        ranges=tuple(ShareRange(r["batch"], r["first"], r["count"]) for r in v["ranges"]),
        state=v["state"],
        confirmed=v["confirmed"],
        expires_at=v["expires_at"],
        party=v["party"],
    )


def _problem(resp: http.client.HTTPResponse) -> LarderError:
    raw = resp.read(1 << 16)
    retry = resp.getheader("Retry-After")
    try:
        p = json.loads(raw)
        return LarderError(
            resp.status,
            str(p.get("code", "unknown")),
            str(p.get("detail", "")),
            int(retry) if retry and retry.isdigit() else None,
            p.get("available"),
        )
    except (ValueError, AttributeError):
        return LarderError(resp.status, "unknown", raw.decode("utf-8", "replace")[:500])


class _Tee:
    """Reads from a response while writing every byte to a file."""

    def __init__(self, src: BinaryIO, dst: BinaryIO) -> None:
        self.src, self.dst = src, dst

    def readinto(self, view: memoryview) -> int:
        n = self.src.readinto(view)  # type: ignore[attr-defined]
        if n:
            self.dst.write(view[:n])
        return n or 0

    def read(self, n: int = -1) -> bytes:
        b = self.src.read(n)
        self.dst.write(b)
        return b


def _copy_checked(src: BinaryIO, dst: BinaryIO) -> ShareHeader:
    """Copies a share stream, checking header, records and trailer as they pass."""
    tee = _Tee(src, dst)
    r = _Checked(tee)  # type: ignore[arg-type]
    header = _read_header(r)
    left = header.items * header.record_bytes
    r.crc = 0
    buf = bytearray(1 << 20)
    while left:
        view = memoryview(buf)[: min(left, len(buf))]
        r.read_into(view, "share records")
        left -= len(view)
    records_crc = r.crc
    (trailer,) = struct.unpack("<I", r.take(4, "share trailer"))
    if trailer != records_crc:
        raise FormatError("share records checksum mismatch")
    if tee.read(1):
        raise FormatError("trailing bytes after the share stream")
    return header


__all__: List[str] = ["Client", "Checkout", "LarderError", "LarderConnectionError"]
