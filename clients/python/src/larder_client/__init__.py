"""Python client for Larder nodes: check out MPC preprocessing material (Beaver triples,
squares, bits, inverses, input masks, double sharings) and download this party's shares as
numpy arrays.

Example::

    from larder_client import Client

    node = Client("https://127.0.0.1:7301", ca_file="ca.pem", token_file="engine-0.token")
    node.checkout("run-42", "triple-z64", 100_000)   # same id at every party's engine
    shares = node.download("run-42")                 # once
    a, b, c = shares.column("a"), shares.column("b"), shares.column("c")
"""

from ._client import Checkout, Client, LarderConnectionError, LarderError
from ._stream import (
    COLUMNS,
    XOR_COLUMNS,
    FormatError,
    ShareHeader,
    ShareRange,
    Shares,
    read_shares,
    reconstruct,
)

__all__ = [
    "COLUMNS",
    "XOR_COLUMNS",
    "Checkout",
    "Client",
    "FormatError",
    "LarderConnectionError",
    "LarderError",
    "ShareHeader",
    "ShareRange",
    "Shares",
    "read_shares",
    "reconstruct",
]
__version__ = "0.1.0"
