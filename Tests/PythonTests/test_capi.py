"""The ctypes declarations mirror latentwatch.h: struct sizes and field offsets equal the C compiler's."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import unittest

import lwtest  # noqa: F401  (chooses the package to test)
from lwtest import HEADER_DIR, TempDirTestCase

import latentwatch
from latentwatch import _capi

# sizeof of each struct as gcc computes it on x86_64 Linux (LP64) for latentwatch.h ABI version 5. The test
# below also asks gcc directly, so a header change is caught even where these constants are stale.
EXPECTED_SIZES = {
    "lw_model_info": 200,
    "lw_scores": 128,
    "lw_score_columns": 128,
    "lw_fit_config": 112,
    "lw_activations": 112,
    "lw_alert": 64,
    "lw_monitor_config": 200,
    "lw_inputs": 48,
    "lw_layer_assessment": 16,
    "lw_assessment": 416,
    "lw_monitor_stats": 56,
    "lw_statistics_info": 152,
}


class StructLayoutTests(TempDirTestCase):
    def test_sizes_equal_the_recorded_c_sizes(self):
        for name, cls in _capi.STRUCTS.items():
            with self.subTest(struct=name):
                self.assertEqual(ctypes.sizeof(cls), EXPECTED_SIZES[name])

    def test_sizes_and_offsets_equal_gcc(self):
        gcc = shutil.which("gcc") or shutil.which("cc")
        if gcc is None:
            self.skipTest("no C compiler (gcc) to compare the struct layouts with")
        lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "latentwatch.h"', "int main(void) {"]
        for name, cls in _capi.STRUCTS.items():
            lines.append(f'    printf("{name} sizeof %zu\\n", sizeof({name}));')
            for field, _ in cls._fields_:
                lines.append(f'    printf("{name} {field} %zu\\n", offsetof({name}, {field}));')
        lines += ["    return 0;", "}"]
        src = self.path("layout.c")
        with open(src, "w") as f:
            f.write("\n".join(lines) + "\n")
        exe = self.path("layout")
        subprocess.run([gcc, "-I", HEADER_DIR, src, "-o", exe], check=True, capture_output=True)
        out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
        c_layout = {}
        for line in out.splitlines():
            struct, what, value = line.split()
            c_layout[(struct, what)] = int(value)
        for name, cls in _capi.STRUCTS.items():
            with self.subTest(struct=name):
                self.assertEqual(ctypes.sizeof(cls), c_layout[(name, "sizeof")], f"sizeof({name})")
                self.assertEqual(c_layout[(name, "sizeof")], EXPECTED_SIZES[name], f"recorded sizeof({name})")
                for field, _ in cls._fields_:
                    self.assertEqual(getattr(cls, field).offset, c_layout[(name, field)], f"offsetof({name}, {field})")

    def test_header_defines_match_the_python_constants(self):
        """Every #define of the header has the same value in _capi (status codes, enums, flags)."""
        defines = {}
        with open(os.path.join(HEADER_DIR, "latentwatch.h")) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "#define" and parts[1].startswith("LW_") and parts[2].isdigit():
                    defines[parts[1]] = int(parts[2])
        self.assertGreaterEqual(len(defines), 50)
        for name, value in defines.items():
            with self.subTest(define=name):
                expected = value if name != "LW_ABI_VERSION" else _capi.ABI_VERSION
                py_name = "ABI_VERSION" if name == "LW_ABI_VERSION" else name
                self.assertEqual(getattr(_capi, py_name), expected)

    def test_every_header_function_is_declared(self):
        import re

        with open(os.path.join(HEADER_DIR, "latentwatch.h")) as f:
            text = f.read()
        names = set(re.findall(r"\b(lw_[a-z_0-9]+)\s*\(", text)) - {"lw_alert_callback"}
        for name in sorted(names):
            with self.subTest(function=name):
                f = getattr(_capi.lib, name)
                self.assertIsNotNone(f.argtypes, f"{name} has no argtypes")


class LibraryTests(unittest.TestCase):
    def test_abi_and_version(self):
        self.assertGreaterEqual(_capi.lib.lw_abi_version(), latentwatch.ABI_VERSION)
        self.assertRegex(latentwatch.library_version, r"^\d+\.\d+")
        self.assertTrue(os.path.isfile(latentwatch.LIBRARY_PATH))

    def test_status_names_match_the_library(self):
        from latentwatch._errors import _STATUS_NAMES, error_for_status

        for code, name in _STATUS_NAMES.items():
            self.assertEqual(_capi.status_name(code), name)
            if code:
                e = error_for_status(code, "message")
                self.assertEqual((e.status, e.status_name), (code, name))
                self.assertIsInstance(e, latentwatch.LatentWatchError)
        self.assertEqual(_capi.status_name(12345), "LW_ERR_UNKNOWN")

    def test_error_classes_derive_from_the_builtin_ones(self):
        self.assertTrue(issubclass(latentwatch.ShapeError, ValueError))
        self.assertTrue(issubclass(latentwatch.NonFiniteError, ValueError))
        self.assertTrue(issubclass(latentwatch.ModelFileError, ValueError))
        self.assertTrue(issubclass(latentwatch.LatentWatchIOError, OSError))
        self.assertTrue(issubclass(latentwatch.DTypeError, TypeError))
        self.assertTrue(issubclass(latentwatch.FlushTimeoutError, TimeoutError))


if __name__ == "__main__":
    unittest.main()
