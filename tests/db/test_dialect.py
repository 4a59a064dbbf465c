"""Array literals for PostgreSQL's hot statements read back exactly what was written."""

from __future__ import annotations

import math
import random
import struct

from modelyard.db.dialect import pg_array
from modelyard.db.engine import Database


def _random_doubles(count: int) -> list[float]:
    rng = random.Random(17)
    found: list[float] = []
    while len(found) < count:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            found.append(value)
    return found


def test_numbers_text_and_booleans_round_trip(make_backend) -> None:  # type: ignore[no-untyped-def]
    db = Database(make_backend("postgresql").url)
    doubles = [
        *_random_doubles(5000),
        0.0,
        -0.0,
        5e-324,
        -1.7976931348623157e308,
        0.1,
        1e16,
        math.inf,
        -math.inf,
    ]
    texts = ["a,b", 'x"y', "back\\slash", '\\"', "{}", " padded ", "NULL", "", "ünï ☃", None]
    texts += ["loss", None, "loss", 'x"y']  # repeated values (quoted once each)
    integers = [0, -1, 2**63 - 1, -(2**63), 7]
    try:
        with db.read() as conn:
            read = conn.exec_driver_sql(
                "SELECT %s::float8[], %s::text[], %s::bigint[], %s::bool[]",
                (
                    pg_array(doubles, "float8"),
                    pg_array(texts, "text"),
                    pg_array(integers, "bigint"),
                    pg_array([True, False], "bool"),
                ),
            ).one()
            assert [struct.pack("<d", v) for v in read[0]] == [
                struct.pack("<d", v) for v in doubles
            ]
            assert read[1] == texts
            assert read[2] == integers
            assert read[3] == [True, False]
    finally:
        db.dispose()
