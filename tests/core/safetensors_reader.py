#!/usr/bin/env python3
"""An independent safetensors reader for Strata's tests: Python's standard library only
(struct and json), written from the format's description, sharing no code with Strata.

    safetensors_reader.py FILE

Checks the layout (8-byte little-endian header length, padded JSON header, tensors tiling
the data section in offset order) and prints one line per tensor in data order,
"NAME DTYPE SHAPE SUM", then "metadata KEY=VALUE" lines. Exits non-zero on a bad file.
"""
import json
import math
import struct
import sys

# dtype: (struct code, bytes per element); BF16 is the upper half of a float32.
FORMATS = {"F32": ("f", 4), "F16": ("e", 2), "BF16": (None, 2), "I32": ("i", 4), "I64": ("q", 8), "U8": ("B", 1)}


def elements(dtype, raw):
    code, size = FORMATS[dtype]
    if code is None:
        return [struct.unpack("<f", b"\0\0" + raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
    return list(struct.unpack("<%d%s" % (len(raw) // size, code), raw))


def main(path):
    with open(path, "rb") as file:
        data = file.read()
    (header_length,) = struct.unpack("<Q", data[:8])
    assert header_length % 8 == 0, "header length %d is not a multiple of 8" % header_length
    header = json.loads(data[8:8 + header_length].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    body = data[8 + header_length:]
    end = 0
    for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"]):
        begin, stop = info["data_offsets"]
        dtype, shape = info["dtype"], info["shape"]
        assert begin == end, "%s begins at %d, the previous tensor ends at %d" % (name, begin, end)
        assert stop - begin == math.prod(shape) * FORMATS[dtype][1], "%s: shape and offsets disagree" % name
        values = elements(dtype, body[begin:stop])
        total = math.fsum(values) if dtype in ("F32", "F16", "BF16") else sum(values)
        print(name, dtype, json.dumps(shape), repr(total))
        end = stop
    assert end == len(body), "the tensors end at %d, the data section at %d" % (end, len(body))
    for key in sorted(metadata):
        print("metadata %s=%s" % (key, metadata[key]))


if __name__ == "__main__":
    main(sys.argv[1])
