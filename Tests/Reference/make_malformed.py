"""Makes the malformed input files the regression tests read (Tests/Fixtures/malformed): each once crashed or
exhausted a host process. Run from the repository root: python3 Tests/Reference/make_malformed.py"""
import io
import os
import struct
import zipfile

import numpy as np

OUT = "Tests/Fixtures/malformed"


def npy_with_header(header: str) -> bytes:
    """A format 1.0 .npy with `header` (padded to a multiple of 64 bytes) and 16 data bytes."""
    h = header.encode("latin1")
    total = 10 + len(h) + 1
    pad = (64 - total % 64) % 64
    h = h + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + b"\x00" * 16


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    # ')' before '(' in the shape value.
    with open(f"{OUT}/shape_reversed.npy", "wb") as f:
        f.write(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': )4, 1(, }"))
    # No element, but rows of 10^13 elements.
    with open(f"{OUT}/zero_rows_huge_width.npy", "wb") as f:
        f.write(npy_with_header("{'descr': '<i8', 'fortran_order': False, 'shape': (0, 9999999999999), }"))
    # A deflated member whose local and central headers declare 1.7 GB uncompressed; it holds a few bytes.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        b = io.BytesIO()
        np.save(b, np.arange(8, dtype=np.float32))
        z.writestr("x.npy", b.getvalue())
    data = bytearray(buf.getvalue())
    declared = 1_700_000_000
    local = data.find(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 22, declared)
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, declared)
    with open(f"{OUT}/deflated_declares_huge.npz", "wb") as f:
        f.write(bytes(data))


if __name__ == "__main__":
    main()
