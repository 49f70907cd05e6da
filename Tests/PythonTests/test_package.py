"""The package as a whole: its exports, the library lookup, the sidecar client's shared types, help()."""

from __future__ import annotations

import os
import pydoc
import shutil
import subprocess
import sys
import unittest

import lwtest  # noqa: F401  (chooses the package to test)
from lwtest import TempDirTestCase

import latentwatch
import latentwatch.sidecar


class PackageTests(TempDirTestCase):
    def test_exports(self):
        for name in latentwatch.__all__:
            self.assertTrue(hasattr(latentwatch, name), name)
        self.assertEqual(latentwatch.__version__, "0.1.0")

    def test_sidecar_returns_the_monitors_types(self):
        self.assertIs(latentwatch.sidecar.Assessment, latentwatch.Assessment)
        a = latentwatch.Assessment(
            index=3, request_id=None, flags=latentwatch.Flags.OUT_OF_DISTRIBUTION | latentwatch.Flags.SHIFT_ALARM,
            fused_p_value=0.001, entropy=0.1, entropy_p_value=None, predicted_label=None, shift_log_evidence=2.0,
            layers=(latentwatch.LayerAssessment("h1", 5.0, 0.001),))
        self.assertEqual(a.flag_names, ["out_of_distribution", "shift_alarm"])
        self.assertTrue(a.out_of_distribution and a.shift_alarm and not a.ambiguous)
        self.assertEqual((a.surprise, a.p_values, a.predicted, a.valid), ([5.0], [0.001], -1, True))
        with self.assertRaises(Exception):
            a.index = 4  # frozen

    def test_help_reads_well(self):
        text = pydoc.render_doc(latentwatch.Monitor, renderer=pydoc.plaintext)
        for needle in ("Assesses inputs of one or more layers", "assess_batch", "GIL", "on_alert", "Raises"):
            self.assertIn(needle, text)
        self.assertIn("Scores one activation or a batch", pydoc.render_doc(latentwatch.Model, renderer=pydoc.plaintext))

    def test_missing_library_raises_import_error_with_a_remedy(self):
        package = os.path.join(self.tmp, "latentwatch")
        shutil.copytree(os.path.dirname(latentwatch.__file__), package,
                        ignore=shutil.ignore_patterns("_lib", "__pycache__"))
        env = {k: v for k, v in os.environ.items() if k != "LATENTWATCH_LIBRARY"}
        env["PYTHONPATH"] = self.tmp
        out = subprocess.run([sys.executable, "-c", "import latentwatch"], capture_output=True, text=True, env=env,
                             cwd=self.tmp)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("ImportError", out.stderr)
        self.assertIn("LATENTWATCH_LIBRARY", out.stderr)
        self.assertIn("pip install", out.stderr)
        env["LATENTWATCH_LIBRARY"] = latentwatch.LIBRARY_PATH  # the fallback
        out = subprocess.run([sys.executable, "-c", "import latentwatch; print(latentwatch.LIBRARY_PATH)"],
                             capture_output=True, text=True, env=env, cwd=self.tmp)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), latentwatch.LIBRARY_PATH)
        env["LATENTWATCH_LIBRARY"] = os.path.join(self.tmp, "nope.so")
        out = subprocess.run([sys.executable, "-c", "import latentwatch"], capture_output=True, text=True, env=env,
                             cwd=self.tmp)
        self.assertIn("not a file", out.stderr)


if __name__ == "__main__":
    unittest.main()
