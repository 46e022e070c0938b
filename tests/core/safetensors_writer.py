#!/usr/bin/env python3
"""Writes the safetensors fixture that Strata must read exactly: Python's standard library
only (struct and json), sharing no code with Strata.

    safetensors_writer.py OUTPUT     (the committed copy: data/python_written.safetensors)

Every dtype Strata reads, a scalar, an empty tensor, extreme integers, a name that JSON
escapes (\\u03b3) and metadata. The data follows the reference layout (by dtype alignment,
then name), but the header lists names and fields sorted alphabetically, so a reader must
not take header order for data order. tests/core/safetensors_test.cpp holds the same values.
"""
import json
import struct
import sys

TENSORS = [  # name, dtype, shape, values
    ("conv.weight", "F32", [2, 3], [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]),
    ("conv.bias", "F32", [2], [0.25, -0.125]),
    ("scale", "F32", [], [3.25]),
    ("empty", "F32", [0, 4], []),
    ("half", "F16", [2, 2], [1.0, -2.5, 65504.0, 2.0 ** -14]),
    ("brain", "BF16", [3], [1.0, -0.5, 3.140625]),
    ("labels", "I32", [2, 2], [-2147483648, -1, 0, 2147483647]),
    ("steps", "I64", [], [12345678901]),
    ("counts", "I64", [3], [-9223372036854775808, 0, 9223372036854775807]),
    ("mask", "U8", [5], [0, 1, 127, 128, 255]),
    ("norm.\u03b3", "F32", [1], [2.0]),
]
METADATA = {"format": "pt", "writer": "tests/core/safetensors_writer.py"}
# The reference implementation's dtype order (alignment); its writer lays out by descending rank.
RANK = {"U8": 1, "F16": 7, "BF16": 8, "I32": 9, "F32": 11, "I64": 13}


def encode(dtype, values):
    if dtype == "BF16":  # exact for these values: the upper half of each float32
        return b"".join(struct.pack("<f", value)[2:] for value in values)
    code = {"F32": "f", "F16": "e", "I32": "i", "I64": "q", "U8": "B"}[dtype]
    return struct.pack("<%d%s" % (len(values), code), *values)


def main(output):
    header = {"__metadata__": METADATA}
    data = b""
    for name, dtype, shape, values in sorted(TENSORS, key=lambda t: (-RANK[t[1]], t[0].encode())):
        raw = encode(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(output, "wb") as file:
        file.write(struct.pack("<Q", len(text)) + text + data)


if __name__ == "__main__":
    main(sys.argv[1])
