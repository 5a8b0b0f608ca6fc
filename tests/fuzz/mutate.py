"""Mutations of real files, as plain data so that hypothesis can draw and shrink them and a random
driver can replay them: bit flips, byte writes, insertions, deletions, truncations, splices from another
file, and integer-field tweaks (little- and big-endian, 1 to 8 bytes, boundary values) aimed at headers
and trailers (where zip keeps its directory) as often as at the middle."""

from __future__ import annotations

import random
import struct
from typing import NamedTuple

from hypothesis import strategies as st

#: Boundary values for integer fields: sizes, counts and offsets a parser must not trust.
INTERESTING = (
    0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
    2**32, 2**50, 2**62, 2**63 - 1, 2**63, 2**64 - 1,
)  # fmt: skip
KINDS = ("flip", "byte", "insert", "delete", "truncate", "splice", "int", "dup")
WIDTHS = ((1, "B"), (2, "H"), (4, "I"), (8, "Q"))


class Mutation(NamedTuple):
    kind: str
    region: int  # 0: anywhere, 1: the first 256 bytes, 2: the last 256 bytes
    pos: int
    value: int
    width: int
    payload: bytes


def _position(data: bytes | bytearray, region: int, pos: int) -> int:
    size = len(data)
    if size == 0:
        return 0
    if region == 1:
        return pos % min(size, 256)
    if region == 2:
        return max(0, size - 1 - pos % min(size, 256))
    return pos % size


def apply(data: bytes, mutations: list[Mutation], other: bytes = b"") -> bytes:
    out = bytearray(data)
    for m in mutations:
        at = _position(out, m.region, m.pos)
        if m.kind == "flip" and out:
            out[at] ^= 1 << (m.value % 8)
        elif m.kind == "byte" and out:
            out[at] = m.value % 256
        elif m.kind == "insert":
            out[at:at] = m.payload
        elif m.kind == "delete":
            del out[at : at + 1 + m.value % 64]
        elif m.kind == "truncate":
            del out[at:]
        elif m.kind == "splice" and other:
            start = m.value % len(other)
            out[at : at + len(m.payload) + 1] = other[start : start + 1 + m.width * 97]
        elif m.kind == "int":
            size, code = WIDTHS[m.width % 4]
            value = INTERESTING[m.value % len(INTERESTING)] % (1 << (8 * size))
            endian = "<" if m.value // len(INTERESTING) % 2 == 0 else ">"
            out[at : at + size] = struct.pack(endian + code, value)
        elif m.kind == "dup" and out:
            chunk = out[at : at + 1 + m.value % 512]
            out[at:at] = chunk * (1 + m.width % 8)
    return bytes(out)


mutation = st.builds(
    Mutation,
    kind=st.sampled_from(KINDS),
    region=st.integers(0, 2),
    pos=st.integers(0, 2**20),
    value=st.integers(0, 2**16),
    width=st.integers(0, 7),
    payload=st.binary(max_size=16),
)
mutations = st.lists(mutation, min_size=1, max_size=6)


def random_mutations(rng: random.Random) -> list[Mutation]:
    return [
        Mutation(
            rng.choice(KINDS),
            rng.randrange(3),
            rng.randrange(2**20),
            rng.randrange(2**16),
            rng.randrange(8),
            rng.randbytes(rng.randrange(17)),
        )
        for _ in range(rng.randint(1, 6))
    ]


def mutate_random(rng: random.Random, data: bytes, other: bytes) -> bytes:
    return apply(data, random_mutations(rng), other)
