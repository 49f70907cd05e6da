"""latentwatch.onnx: intermediate tensors exposed as outputs and monitored on every run, on the real digits MLP
exported as ONNX (MatMul/Add/Relu).

Skipped when onnx or onnxruntime is not importable (`pip install onnx onnxruntime`)."""

from __future__ import annotations

import os
import subprocess
import sys
import unittest

import lwtest
import numpy as np
from lwtest import DATA, TempDirTestCase

import latentwatch as lw
import latentwatch.onnx as lwo

try:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # pragma: no cover - depends on the machine
    onnx = None

NO_ONNX = "onnx or onnxruntime is not importable (pip install onnx onnxruntime); the latentwatch.onnx tests need them"


def digits_onnx():
    """The digits MLP (mlp_weights.npz) as an ONNX ModelProto: pixels -> h1 -> h2 -> logits -> probabilities."""
    w = np.load(os.path.join(DATA, "mlp_weights.npz"))
    inits = [numpy_helper.from_array(w[k].astype(np.float32), name=k) for k in ("W1", "b1", "W2", "b2", "W3", "b3")]
    nodes = [
        helper.make_node("MatMul", ["pixels", "W1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["h1"]),
        helper.make_node("MatMul", ["h1", "W2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["a2"]),
        helper.make_node("Relu", ["a2"], ["h2"]),
        helper.make_node("MatMul", ["h2", "W3"], ["m3"]),
        helper.make_node("Add", ["m3", "b3"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "digits", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 6])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


class ImportWithoutOnnxTests(unittest.TestCase):
    def test_module_imports_without_onnx(self):
        code = (
            "import sys; sys.modules['onnx'] = None; sys.modules['onnxruntime'] = None\n"
            "import latentwatch.onnx as o\n"
            "try:\n    o.expose_outputs('x.onnx', ['h1'])\nexcept ImportError as e:\n    print('ImportError', e)\n"
        )
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("pip install onnx", out.stdout)


@unittest.skipIf(onnx is None, NO_ONNX)
class OnnxTests(TempDirTestCase):
    @classmethod
    def setUpClass(cls):
        cls.models = lwtest.fit_digits_models()
        cls.h1, cls.h2, cls.ood_start = lwtest.stream()
        cls.pixels = np.load(os.path.join(DATA, "stream_pixels.npy"))
        cls.model = digits_onnx()

    def test_expose_outputs(self):
        exposed = lwo.expose_outputs(self.model, ["h1", "h2", "probabilities"])
        self.assertEqual([o.name for o in self.model.graph.output], ["probabilities"])  # the input is untouched
        self.assertEqual([o.name for o in exposed.graph.output], ["probabilities", "h1", "h2"])
        dims = [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in exposed.graph.output[1:]]
        self.assertEqual(dims, [["n", 128], ["n", 64]])  # from shape inference
        self.assertEqual(exposed.graph.output[1].type.tensor_type.elem_type, TensorProto.FLOAT)
        path = self.path("digits.onnx")
        onnx.save(self.model, path)
        from_file = lwo.expose_outputs(path, ["h2"])
        session = ort.InferenceSession(from_file.SerializeToString(), providers=["CPUExecutionProvider"])
        probabilities, h2 = session.run(None, {"pixels": self.pixels})
        self.assertLess(np.abs(h2 - self.h2).max(), 1e-5)
        with self.assertRaises(ValueError):
            lwo.expose_outputs(self.model, ["no_such_tensor"])

    def test_intermediate_tensors_equal_the_recorded_activations(self):
        session = ort.InferenceSession(lwo.expose_outputs(self.model, ["h1", "h2"]).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        _, h1, h2 = session.run(None, {"pixels": self.pixels})
        np.testing.assert_allclose(h1, self.h1, rtol=0, atol=1e-5)
        np.testing.assert_allclose(h2, self.h2, rtol=0, atol=1e-5)

    def test_monitored_session_returns_the_original_outputs_and_monitors(self):
        plain = ort.InferenceSession(self.model.SerializeToString(), providers=["CPUExecutionProvider"])
        alerts = []
        monitor = lw.Monitor(self.models, on_alert=alerts.append)
        session = lwo.MonitoredSession(self.model, monitor, layers=["h1", "h2"])
        self.assertEqual([o.name for o in session.get_outputs()], ["probabilities"])
        flagged = []
        for start in range(0, 400, 20):
            feed = {"pixels": self.pixels[start:start + 20]}
            got = session.run(None, feed)
            want = plain.run(None, feed)
            self.assertEqual(len(got), 1)
            self.assertTrue(np.array_equal(got[0], want[0]))
            batch = session.last_assessments
            self.assertIsInstance(batch, lw.AssessmentBatch)
            self.assertEqual(batch.index.tolist(), list(range(start, start + 20)))
            flagged += (start + np.flatnonzero(batch.out_of_distribution)).tolist()
        by_name = session.run(["probabilities"], {"pixels": self.pixels[:3]})
        self.assertEqual(len(by_name), 1)
        monitor.close()
        inputs = [a.index for a in alerts if a.kind == "input"]
        self.assertEqual(inputs, flagged)
        self.assertGreaterEqual(len(inputs), 20)
        self.assertGreaterEqual(min(inputs), self.ood_start)
        self.assertEqual(session.errors, 0)

    def test_monitor_errors_do_not_fail_the_run(self):
        monitor = lw.Monitor(self.models)
        session = lwo.MonitoredSession(self.model, monitor, layers=["h1", "h2"])
        bad = self.pixels[:4].copy()
        bad[2, 0] = np.nan
        with self.assertLogs("latentwatch", level="WARNING"):
            out = session.run(None, {"pixels": bad})
        self.assertEqual(out[0].shape, (4, 6))
        self.assertIsNone(session.last_assessments)
        self.assertEqual(session.errors, 1)
        strict = lwo.MonitoredSession(self.model, monitor, layers=["h1", "h2"], raise_errors=True)
        with self.assertRaises(lw.NonFiniteError):
            strict.run(None, {"pixels": bad})
        self.assertEqual(len(strict.run(None, {"pixels": self.pixels[:4]})), 1)
        with self.assertRaises(ValueError):
            lwo.MonitoredSession(self.model, monitor, layers=["h1"])
        monitor.close()

    def test_outputs_and_background(self):
        exported = lwo.expose_outputs(self.model, ["logits"])  # a model whose outputs include the logits
        monitor = lw.Monitor(self.models, outputs="logits", output_count=6)
        session = lwo.MonitoredSession(exported, monitor, layers=["h1", "h2"], outputs_name="logits")
        probabilities, logits = session.run(None, {"pixels": self.pixels[:10]})
        self.assertEqual(session.last_assessments.output_predicted.tolist(), np.argmax(logits, 1).tolist())
        monitor.close()
        background = lw.Monitor(self.models, mode="background")
        session = lwo.MonitoredSession(self.model, background, layers=["h1", "h2"])
        session.run(None, {"pixels": self.pixels[:30]})
        background.flush(30)
        self.assertEqual(background.stats()["assessed"], 30)
        self.assertIsNone(session.last_assessments)
        background.close()

    def test_reduce_array(self):
        a = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
        self.assertEqual(lwo.reduce_array(a, "mean").shape, (2, 3))
        self.assertEqual(lwo.reduce_array(a, "flatten").shape, (2, 48))
        self.assertEqual(lwo.reduce_array(a[:, 0], "cls").shape, (2, 4))
        self.assertEqual(lwo.reduce_array(a, "max")[0, 0], a[0, 0].max())
        with self.assertRaises(ValueError):
            lwo.reduce_array(a, "median")


if __name__ == "__main__":
    unittest.main()
