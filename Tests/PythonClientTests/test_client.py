"""Tests of the Python sidecar client (latentwatch.sidecar) against the real `latentwatch serve` process.

Run: python3 -m unittest discover -s Tests/PythonClientTests -v   (after `swift build`)
The binary is $LATENTWATCH_BIN, else .build/debug/latentwatch. numpy is used when installed (it is optional for
the client); the tests that need it skip without it.
"""

import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The client is latentwatch.sidecar (Sources/Python). Importing the package loads its native library: the one
# bundled by `pip install`, else $LATENTWATCH_LIBRARY, which defaults here to the debug build's.
_DEBUG_LIBRARY = os.path.join(ROOT, ".build", "debug", "libLatentWatchC.so")
if os.path.exists(_DEBUG_LIBRARY):
    os.environ.setdefault("LATENTWATCH_LIBRARY", _DEBUG_LIBRARY)
sys.path.insert(0, os.path.join(ROOT, "Sources", "Python"))
try:
    from latentwatch import sidecar as lw  # noqa: E402
    import latentwatch  # noqa: E402
except ImportError:  # no numpy or no library: the same sidecar.py through the standard-library-only shim
    latentwatch = None
    sys.path.insert(0, os.path.join(ROOT, "Sources", "PythonClient"))
    import latentwatch_client as lw  # noqa: E402

BIN = os.environ.get("LATENTWATCH_BIN", os.path.join(ROOT, ".build", "debug", "latentwatch"))
DATA = os.path.join(ROOT, "Samples", "Data", "digits-mlp")
# Loopback HTTP must not go through a proxy from the environment (http_proxy without no_proxy).
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

try:
    import numpy as np
except ImportError:  # the client works without numpy
    np = None


def read_npy_f32(path):
    """Reads a little-endian float32 C-order .npy without numpy: (rows, columns, flat list)."""
    from array import array
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == b"\x93NUMPY"
    hlen = struct.unpack_from("<H", data, 8)[0] if data[6] == 1 else struct.unpack_from("<I", data, 8)[0]
    start = 10 + hlen if data[6] == 1 else 12 + hlen
    header = data[10 if data[6] == 1 else 12:start].decode("latin1")
    assert "'<f4'" in header and "False" in header, header
    shape = eval(header[header.index("(") : header.index(")") + 1])  # noqa: S307 (a tuple literal we wrote)
    values = array("f")
    values.frombytes(data[start:])
    return shape[0], shape[1], list(values)


def read_npy_f64(path):
    """Reads a little-endian float64 one-dimensional .npy without numpy: a list."""
    from array import array
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == b"\x93NUMPY" and data[6] == 1
    start = 10 + struct.unpack_from("<H", data, 8)[0]
    assert "'<f8'" in data[10:start].decode("latin1")
    values = array("d")
    values.frombytes(data[start:])
    return list(values)


def need_binary():
    """Skips without the built binary, except in CI, where a missing binary is an error."""
    if not os.path.exists(BIN):
        if os.environ.get("CI"):
            raise RuntimeError(f"{BIN} not built: CI must not skip these tests")
        raise unittest.SkipTest(f"{BIN} not built")


class SidecarTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        need_binary()
        # Under /tmp, not $TMPDIR: a Unix socket path must stay under 108 bytes.
        cls.dir = tempfile.mkdtemp(prefix="lwpy-", dir="/tmp")
        cls.models = []
        for layer in ("h1", "h2"):
            out = os.path.join(cls.dir, f"{layer}.lwm")
            subprocess.run(
                [BIN, "fit", "--activations", f"{DATA}/train_{layer}.npy", "--labels", f"{DATA}/train_labels.npy",
                 "--calibration", f"{DATA}/calibration_{layer}.npy", "--family", "gda", "--layer", layer,
                 "--output", out],
                check=True, capture_output=True)
            cls.models.append(out)
        cls.socket = os.path.join(cls.dir, "s.sock")
        cls.token = "py-token"
        with open(os.path.join(cls.dir, "token"), "w") as f:
            f.write(cls.token)
        cls.out = open(os.path.join(cls.dir, "serve.out"), "w+")
        cls.proc = subprocess.Popen(
            [BIN, "serve", "--model", cls.models[0], "--model", cls.models[1], "--socket", cls.socket,
             "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--token-file", os.path.join(cls.dir, "token")],
            stdout=cls.out, stderr=subprocess.DEVNULL)
        cls.addresses = {}
        deadline = time.time() + 60
        while time.time() < deadline and len(cls.addresses) < 3:
            cls.out.seek(0)
            text = cls.out.read()
            for line in text[:text.rfind("\n") + 1].splitlines():  # complete lines only: the server is writing
                if line.startswith("listening "):
                    kind, _, rest = line[len("listening "):].partition(":")
                    cls.addresses[kind] = rest
            time.sleep(0.05)
        if len(cls.addresses) < 3:
            cls.proc.kill()
            raise RuntimeError("latentwatch serve did not start")
        cls.h1 = read_npy_f32(f"{DATA}/test_h1.npy")
        cls.h2 = read_npy_f32(f"{DATA}/test_h2.npy")

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.status = cls.proc.wait(timeout=60)
        cls.out.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def client(self, **kw):
        kw.setdefault("token", self.token)
        return lw.Client(path=self.socket, **kw)

    def rows(self, start, n):
        (r1, c1, v1), (r2, c2, v2) = self.h1, self.h2
        return [v1[start * c1:(start + n) * c1], v2[start * c2:(start + n) * c2]]

    def test_welcome_describes_the_layers(self):
        with self.client() as c:
            self.assertEqual([l.name for l in c.layers], ["h1", "h2"])
            self.assertEqual([l.elements for l in c.layers], [self.h1[1], self.h2[1]])
            self.assertEqual(c.version, (1, 2))

    def test_surprise_matches_latentwatch_score(self):
        """The sidecar's per-layer surprise equals what `latentwatch score` writes for the same rows."""
        n = 40
        with self.client() as c:
            rows = c.observe(self.rows(0, n), request_ids=[f"py-{i}" for i in range(n)])
        self.assertEqual(len(rows), n)
        for k, layer in enumerate(("h1", "h2")):
            out = os.path.join(self.dir, f"score_{layer}.csv")
            subprocess.run([BIN, "score", "--model", self.models[k], "--input", f"{DATA}/test_{layer}.npy",
                            "--score", "surprise", "--output", out], check=True, capture_output=True)
            with open(out) as f:
                lines = f.read().split()
            expected = [float(x.split(",")[-1]) for x in lines[1:1 + n]]
            # `score` uses the batched (GEMM) kernel, the monitor the one-input kernel; both accumulate float32
            # products, so they agree to float32 round-off: 1e-5 relative (seen: 6e-8; the margin is for CPUs whose
            # BLAS or SIMD kernels sum in another order).
            for i in range(n):
                self.assertAlmostEqual(rows[i].surprise[k], expected[i], delta=1e-5 * max(1.0, abs(expected[i])))
        self.assertTrue(all(r.valid for r in rows))
        self.assertTrue(all(0 < r.fused_p_value <= 1 for r in rows))

    def test_fire_and_forget_then_sync(self):
        with self.client() as c:
            last = 0
            for f in range(30):
                last = c.send(self.rows(f, 2))
            ack = c.sync()
            self.assertEqual(ack.through, last)
            self.assertEqual(ack.assessed, 60)
            self.assertEqual((ack.dropped, ack.rejected), (0, 0))
            final = c.bye()
            self.assertEqual(final.through, last)

    def test_tcp_and_nan_inputs(self):
        port = int(self.addresses["tcp"].rsplit(":", 1)[1])
        with lw.Client(port=port, token=self.token) as c:
            bad = self.rows(0, 2)
            bad[0] = list(bad[0])
            bad[0][3] = float("nan")
            rows = c.observe(bad)
            self.assertEqual([r.status for r in rows], [1, 0])
            self.assertTrue(math.isnan(rows[0].surprise[0]))

    def test_errors(self):
        with self.assertRaises(lw.ServerError) as e:
            lw.Client(path=self.socket, token="wrong")
        self.assertEqual(e.exception.name, "unauthorized")
        self.assertTrue(e.exception.fatal)
        with self.client() as c:
            with self.assertRaises(ValueError):
                c.observe([[0.0] * 5, [0.0] * 64])
            # A frame with a wrong element count, written by hand: non-fatal, the connection goes on.
            body = struct.pack("<QIH", 1, 1, 2) + struct.pack("<H", 0) + struct.pack("<I", 7) + b"\0" * 28
            body += struct.pack("<I", 64) + b"\0" * 256
            c._write(lw.T_OBSERVE, lw.F_REPLY, body)
            with self.assertRaises(lw.ServerError) as e:
                c.observe(self.rows(0, 1))
            self.assertIn(e.exception.name, ("shapeMismatch",))
            self.assertEqual(len(c.observe(self.rows(0, 1))), 1)

    @unittest.skipIf(np is None, "numpy not installed")
    def test_numpy_arrays(self):
        h1 = np.load(f"{DATA}/test_h1.npy")
        h2 = np.load(f"{DATA}/test_h2.npy")
        with self.client() as c:
            a = c.observe([h1[:3], h2[:3]])
            b = c.observe([h1[0], h2[0]])
        self.assertEqual(len(a), 3)
        self.assertEqual(a[0].surprise, b[0].surprise)

    def test_same_assessment_type_as_in_process_monitor(self):
        """The sidecar returns the in-process Monitor's Assessment, with the same values for the same input."""
        if latentwatch is None:
            self.skipTest("the latentwatch package (numpy and its library) is not importable")
        x = self.rows(7, 1)
        with self.client() as c:
            remote = c.assess(x[0], x[1], request_id="same")
        self.assertIsInstance(remote, latentwatch.Assessment)
        with latentwatch.Monitor(self.models, window=None, shift=None) as m:
            local = m.assess(np.asarray(x[0], dtype=np.float32) if np else x[0],
                             np.asarray(x[1], dtype=np.float32) if np else x[1], request_id="same")
        self.assertEqual(remote.request_id, local.request_id)
        self.assertEqual(remote.layers, local.layers)  # names, surprise and p-values, exactly
        self.assertEqual(remote.fused_p_value, local.fused_p_value)
        self.assertEqual(remote.entropy, local.entropy)
        self.assertEqual(remote.predicted_label, local.predicted_label)
        self.assertEqual(remote.out_of_distribution, local.out_of_distribution)

    def test_torch_attach_feeds_the_sidecar(self):
        """latentwatch.torch.attach takes the sidecar client where it takes an in-process Monitor."""
        if latentwatch is None or np is None:
            self.skipTest("the latentwatch package (numpy and its library) is not importable")
        try:
            import torch
            from torch import nn
        except ImportError:
            self.skipTest("PyTorch is not importable (pip install torch)")
        import latentwatch.torch as lwt

        w = np.load(f"{DATA}/mlp_weights.npz")
        net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        with torch.no_grad():
            for k, fc in ((1, net[0]), (2, net[2])):
                fc.weight.copy_(torch.from_numpy(w[f"W{k}"].T.copy()))
                fc.bias.copy_(torch.from_numpy(w[f"b{k}"]))
        pixels = torch.from_numpy(np.load(f"{DATA}/test_pixels.npy")[:24])
        seen = []
        with self.client() as c:
            with lwt.attach(net, c, layer=["1", "3"], on_assessment=seen.append) as att:
                with torch.no_grad():
                    for start in range(0, 24, 8):
                        net(pixels[start:start + 8])
        self.assertEqual((att.assessed, att.errors, att.dropped), (24, 0, 0))
        self.assertEqual(len(seen), 24)
        self.assertTrue(all(isinstance(a, latentwatch.Assessment) and a.valid for a in seen))
        self.assertEqual([layer.name for layer in seen[0].layers], ["h1", "h2"])

    def test_http(self):
        port = int(self.addresses["http"].rsplit(":", 1)[1])
        base = f"http://127.0.0.1:{port}"
        with NO_PROXY.open(f"{base}/healthz") as r:
            self.assertEqual(json.load(r)["status"], "ok")
        with self.assertRaises(urllib.error.HTTPError) as e:
            NO_PROXY.open(f"{base}/metrics")
        self.assertEqual(e.exception.code, 401)
        x = self.rows(5, 1)
        req = urllib.request.Request(
            f"{base}/v1/observe", data=json.dumps({"request_id": "http", "layers": {"h1": x[0], "h2": x[1]}}).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}, method="POST")
        with NO_PROXY.open(req) as r:
            body = json.load(r)
        with self.client() as c:
            direct = c.observe(x)[0]
        self.assertEqual([l["surprise"] for l in body["layers"]], direct.surprise)
        req = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {self.token}"})
        with NO_PROXY.open(req) as r:
            text = r.read().decode()
        self.assertIn("latentwatch_serve_inputs_total", text)


class RegressionSidecarTestCase(unittest.TestCase):
    """A regression model behind the sidecar: its rows carry the prediction, spread, spread p-value and the
    server's 90 % prediction interval, equal to the in-process monitor's and Model.prediction_interval's."""

    @classmethod
    def setUpClass(cls):
        need_binary()
        data = os.path.join(ROOT, "Samples", "Data", "digits-rotation")
        cls.dir = tempfile.mkdtemp(prefix="lwpyr-", dir="/tmp")
        cls.model = os.path.join(cls.dir, "h2.lwm")
        subprocess.run(
            [BIN, "fit", "--activations", f"{data}/train_h2.npy", "--targets", f"{data}/train_targets.npy",
             "--calibration", f"{data}/calibration_h2.npy", "--calibration-targets",
             f"{data}/calibration_targets.npy", "--calibration-predictions", f"{data}/calibration_predictions.npy",
             "--layer", "h2", "--output", cls.model],
            check=True, capture_output=True)
        cls.socket = os.path.join(cls.dir, "s.sock")
        cls.out = open(os.path.join(cls.dir, "serve.out"), "w+")
        cls.proc = subprocess.Popen([BIN, "serve", "--model", cls.model, "--socket", cls.socket],
                                    stdout=cls.out, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            cls.out.seek(0)
            if "listening unix:" in cls.out.read():
                break
            time.sleep(0.05)
        else:
            cls.proc.kill()
            raise RuntimeError("latentwatch serve did not start")
        cls.x = read_npy_f32(f"{data}/test_h2.npy")
        cls.host = read_npy_f64(f"{data}/test_predictions.npy")

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(timeout=60)
        cls.out.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_rows_carry_predictions(self):
        rows, columns, values = self.x
        n = 8
        with lw.Client(path=self.socket) as c:
            remote = c.observe([values[: n * columns]])
        self.assertEqual(len(remote), n)
        for a in remote:
            self.assertIsNotNone(a.prediction)
            self.assertGreater(a.predictive_spread, 0)
            self.assertIsNotNone(a.spread_p_value)
            low, high = a.prediction_interval
            self.assertLess(low, a.prediction)
            self.assertLess(a.prediction, high)
        # A row with NaN is refused alone: no prediction, no interval; the others keep theirs.
        bad = list(values[: 3 * columns])
        bad[columns + 2] = float("nan")
        with lw.Client(path=self.socket) as c:
            mixed = c.observe([bad])
        self.assertFalse(mixed[1].valid)
        self.assertIsNone(mixed[1].prediction)
        self.assertIsNone(mixed[1].prediction_interval)
        self.assertEqual(mixed[0].prediction, remote[0].prediction)
        self.assertIsNotNone(mixed[2].prediction_interval)
        if latentwatch is None or np is None:
            return
        model = latentwatch.load(self.model)
        with latentwatch.Monitor([self.model], window=None, shift=None) as m:
            for k, a in enumerate(remote):
                local = m.assess(np.asarray(values[k * columns:(k + 1) * columns], dtype=np.float32))
                self.assertEqual(a.prediction, local.prediction)
                self.assertEqual(a.predictive_spread, local.predictive_spread)
                self.assertEqual(a.spread_p_value, local.spread_p_value)
                self.assertEqual(a.prediction_interval, model.prediction_interval(a.prediction, a.predictive_spread))

    def test_host_predictions_get_their_disagreement(self):
        """Protocol 1.2: the host's predictions travel with the activations; each row carries the host
        prediction, its distance from the bins' prediction and the distance's p-value (the model was calibrated
        with --calibration-predictions), equal to the in-process monitor's given the same predictions."""
        rows, columns, values = self.x
        n = 40
        host = self.host[:n]
        with lw.Client(path=self.socket) as c:
            self.assertEqual(tuple(c.version), (1, 2))
            remote = c.observe([values[: n * columns]], predictions=host)
            one = c.assess(values[:columns], outputs=host[0])
            with self.assertRaises(ValueError):
                c.observe([values[: n * columns]], predictions=host[:3])
            with self.assertRaises(ValueError):
                c.assess(values[:columns], outputs=[1.0, 2.0])
        for a, h in zip(remote, host):
            self.assertAlmostEqual(a.host_prediction, h, places=4)  # sent as binary32
            self.assertAlmostEqual(a.disagreement_distance, abs(a.host_prediction - a.prediction), places=9)
            self.assertTrue(0 < a.disagreement_p_value <= 1)
        self.assertEqual(one.host_prediction, remote[0].host_prediction)
        if latentwatch is None or np is None:
            return
        with latentwatch.Monitor([self.model], outputs="prediction", window=None, shift=None) as m:
            local = m.assess_batch(np.asarray(values[: n * columns], dtype=np.float32).reshape(n, columns),
                                   outputs=np.asarray(host, dtype=np.float32))
        for k, a in enumerate(remote):
            self.assertEqual(a.host_prediction, local[k].host_prediction)
            self.assertEqual(a.disagreement_distance, local[k].disagreement_distance)
            self.assertEqual(a.disagreement_p_value, local[k].disagreement_p_value)
            self.assertEqual(a.disagreement, local[k].disagreement)


    def test_torch_attach_sends_the_host_predictions(self):
        """latentwatch.torch.attach with outputs= sends a torch regression head's predictions with its activations
        to the sidecar."""
        if latentwatch is None or np is None:
            self.skipTest("the latentwatch package (numpy and its library) is not importable")
        try:
            import torch
            from torch import nn
        except ImportError:
            self.skipTest("PyTorch is not importable (pip install torch)")
        import latentwatch.torch as lwt

        rows, columns, values = self.x
        x = np.asarray(values, dtype=np.float32).reshape(rows, columns)[:32]
        net = nn.Sequential(nn.Identity(), nn.Linear(columns, 1), nn.Flatten(0))
        with torch.no_grad():
            net[1].weight.fill_(1.0)
            net[1].bias.fill_(0.0)
            want = net(torch.from_numpy(x)).numpy()
        seen = []
        with lw.Client(path=self.socket) as c:
            with lwt.attach(net, c, layer="0", outputs="", on_assessment=seen.append) as att:
                with torch.no_grad():
                    for start in range(0, 32, 8):
                        net(torch.from_numpy(x[start:start + 8]))
        self.assertEqual((att.assessed, att.errors), (32, 0))
        np.testing.assert_array_equal([a.host_prediction for a in seen], want.astype(np.float64))
        self.assertTrue(all(a.disagreement_p_value is not None for a in seen))


if __name__ == "__main__":
    unittest.main()
