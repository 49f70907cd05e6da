"""latentwatch.torch: forward hooks feeding a monitor, on the real digits MLP as a torch.nn.Module.

Skipped when PyTorch is not importable (`pip install torch`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import unittest

import lwtest
import numpy as np
from lwtest import DATA

import latentwatch as lw
import latentwatch.torch as lwt

try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

NO_TORCH = "PyTorch is not importable (pip install torch); the latentwatch.torch tests need it"


def digits_mlp():
    """The bundled digits MLP (Samples/Data/digits-mlp/mlp_weights.npz) as a torch module."""

    class DigitsMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.act1 = nn.Linear(64, 128), nn.ReLU()
            self.fc2, self.act2 = nn.Linear(128, 64), nn.ReLU()
            self.fc3 = nn.Linear(64, 6)

        def forward(self, x):
            return self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))

    w = np.load(os.path.join(DATA, "mlp_weights.npz"))
    net = DigitsMLP()
    with torch.no_grad():
        for k, fc in ((1, net.fc1), (2, net.fc2), (3, net.fc3)):
            fc.weight.copy_(torch.from_numpy(w[f"W{k}"].T.copy()))
            fc.bias.copy_(torch.from_numpy(w[f"b{k}"]))
    return net.eval()


class ImportWithoutTorchTests(unittest.TestCase):
    def test_module_imports_without_torch(self):
        code = (
            "import sys; sys.modules['torch'] = None\n"
            "import latentwatch.torch as t\n"
            "try:\n    t.attach(object(), object())\nexcept ImportError as e:\n    print('ImportError', e)\n"
        )
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("ImportError", out.stdout)
        self.assertIn("pip install torch", out.stdout)


@unittest.skipIf(torch is None, NO_TORCH)
class TorchAttachTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.models = lwtest.fit_digits_models()
        cls.h1, cls.h2, cls.ood_start = lwtest.stream()
        cls.pixels = torch.from_numpy(np.load(os.path.join(DATA, "stream_pixels.npy")))
        cls.net = digits_mlp()

    def test_hooks_feed_the_monitor_per_forward_call(self):
        net = self.net
        with torch.no_grad():
            a1 = net.act1(net.fc1(self.pixels)).numpy()
            a2 = net.act2(net.fc2(torch.from_numpy(a1))).numpy()
        self.assertLess(np.abs(a1 - self.h1).max(), 1e-5)
        self.assertLess(np.abs(a2 - self.h2).max(), 1e-5)

        alerts, seen = [], []
        monitor = lw.Monitor(self.models, on_alert=alerts.append)
        ids = iter(range(1000))
        with lwt.attach(net, monitor, layer=["act1", "act2"], request_id=lambda: f"batch{next(ids)}",
                        on_assessment=seen.append, keep_last=5) as att:
            self.assertEqual(att.layer_names, ["act1", "act2"])
            outputs = []
            with torch.no_grad():
                for start in range(0, 400, 8):
                    outputs.append(net(self.pixels[start:start + 8]))
            self.assertTrue(att.flush(30))
        monitor.flush()
        self.assertEqual((att.assessed, att.dropped, att.errors, att.incomplete), (400, 0, 0, 0))
        self.assertEqual([a.index for a in seen], list(range(400)))
        self.assertEqual(seen[9].request_id, "batch1/1")
        self.assertEqual(att.last_assessment.index, 399)
        self.assertEqual([a.index for a in att.assessments], [395, 396, 397, 398, 399])
        # The hooks did not change the forward pass.
        with torch.no_grad():
            self.assertTrue(torch.equal(torch.cat(outputs), net(self.pixels)))

        reference = []
        with lw.Monitor(self.models, on_alert=reference.append) as ref:
            for start in range(0, 400, 8):
                ref.assess_batch(a1[start:start + 8], a2[start:start + 8])
        monitor.close()
        self.assertEqual([(a.kind, a.index) for a in alerts], [(a.kind, a.index) for a in reference])
        inputs = [a.index for a in alerts if a.kind == "input"]
        self.assertGreaterEqual(len(inputs), 20)
        self.assertGreaterEqual(min(inputs), self.ood_start)
        # Detached: the hooks are gone.
        with torch.no_grad():
            net(self.pixels[:8])
        self.assertEqual(att.assessed, 400)

    def test_modules_given_directly_and_grad_mode(self):
        net = self.net
        monitor = lw.Monitor(self.models)
        att = lwt.attach([net.act1, net.act2], monitor)
        self.assertEqual(att.layer_names, ["h1", "h2"])
        x = self.pixels[:4].clone().requires_grad_(True)
        net(x).sum().backward()  # hooks detach; autograd is unaffected
        self.assertIsNotNone(x.grad)
        att.detach()
        self.assertEqual(monitor.stats()["assessed"], 4)
        monitor.close()

    def test_full_queue_drops_and_never_blocks_the_forward_pass(self):
        net = self.net
        monitor = lw.Monitor(self.models)
        slow = lambda a: time.sleep(0.02)  # noqa: E731  a slow consumer
        att = lwt.attach(net, monitor, layer=["act1", "act2"], queue_size=2, on_assessment=slow)
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in range(200):
                net(self.pixels[i:i + 1])
        elapsed = time.perf_counter() - t0
        att.detach(timeout=30)
        self.assertGreater(att.dropped, 100)
        self.assertEqual(att.dropped + att.assessed, 200)
        self.assertLess(elapsed, 200 * 0.02)  # the forward loop did not wait for the consumer
        monitor.close()

    def test_errors_are_counted_not_raised(self):
        net = self.net
        monitor = lw.Monitor(self.models)

        def broken(t):
            raise RuntimeError("bad reduction")

        with self.assertLogs("latentwatch", level="WARNING"):
            att = lwt.attach(net, monitor, layer=["act1", "act2"], reduce=["mean", broken])
            with torch.no_grad():
                y = net(self.pixels[:3])
            att.detach()
        self.assertEqual(y.shape, (3, 6))
        self.assertEqual((att.errors, att.assessed), (1, 0))
        # Wrong features for the model: the monitor refuses them on the worker; counted, logged.
        with self.assertLogs("latentwatch", level="WARNING") as logs:
            att = lwt.attach(net, monitor, layer=["act1", "act2"], reduce=lambda t: t[:, :10])
            with torch.no_grad():
                net(self.pixels[:3])
            att.detach()
        self.assertIn("(3, 10)", "\n".join(logs.output))
        self.assertEqual((att.errors, att.assessed), (1, 0))
        monitor.close()

    def test_grouped_delivery_isolates_a_bad_forward_call(self):
        """Forward calls queued behind a slow one reach the monitor in one assess_batch; when one of them holds
        NaN, only that one is refused (counted), and the others are assessed in order."""
        net = self.net
        monitor = lw.Monitor(self.models)
        seen = []

        def slow_first(a):
            if not seen:
                time.sleep(0.3)  # the forward calls below queue up meanwhile
            seen.append(a.index)

        bad = self.pixels[:2].clone()
        bad[1, 3] = float("nan")
        with self.assertLogs("latentwatch", level="WARNING"):
            with lwt.attach(net, monitor, layer=["act1", "act2"], on_assessment=slow_first) as att:
                with torch.no_grad():
                    for i in range(10):
                        net(bad if i == 5 else self.pixels[2 * i:2 * i + 2])
        self.assertEqual((att.assessed, att.errors, att.dropped), (18, 1, 0))
        self.assertEqual(seen, list(range(18)))
        stats = monitor.stats()
        self.assertEqual(stats["assessed"], 18)
        # Refused, in inputs: every input of the grouped batch (nothing of it assessed), then the bad call's two
        # inputs alone. How many calls were grouped depends on timing; each has 2 inputs, and the group held the
        # bad call and at least one other.
        grouped = stats["refused"] - 2
        self.assertTrue(grouped >= 4 and grouped % 2 == 0, stats)
        monitor.close()

    def test_background_monitor_gets_submits(self):
        net = self.net
        monitor = lw.Monitor(self.models, mode="background")
        with lwt.attach(net, monitor, layer=["act1", "act2"]) as att:
            with torch.no_grad():
                net(self.pixels[:50])
        monitor.flush(30)
        self.assertEqual(monitor.stats()["assessed"], 50)
        self.assertEqual(att.assessed, 50)
        monitor.close()

    def test_reductions(self):
        conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()).eval()
        images = torch.randn(300, 3, 6, 6, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            feats = conv(images)
        pooled = lw.fit(feats.numpy(), family="gmm-diag", pooling="global-average", mixture_components=2,
                        l2_normalize=False)  # the model itself pools (C, H, W) -> C
        flat_model = lw.fit(feats.mean(dim=(2, 3)).numpy(), family="gmm-diag", mixture_components=2,
                            l2_normalize=False)
        for model, reduce in ((pooled, "flatten"), (flat_model, "mean"), (flat_model, "max")):
            with lw.Monitor(model) as monitor, lwt.attach(conv, monitor, layer="1", reduce=reduce) as att:
                with torch.no_grad():
                    conv(images[:5])
                att.flush()
                self.assertEqual((att.assessed, att.errors), (5, 0), reduce)
        tokens = torch.randn(4, 7, 5)
        self.assertEqual(tuple(lwt.reduce_output(tokens, "cls").shape), (4, 5))
        self.assertEqual(tuple(lwt.reduce_output(tokens, "mean").shape), (4, 5))
        self.assertEqual(tuple(lwt.reduce_output(tokens, "flatten").shape), (4, 35))
        with self.assertRaises(ValueError):
            lwt.attach(conv, lw.Monitor(pooled), layer="1", reduce="median")

    def test_model_outputs_ride_along(self):
        """outputs=: the classifier's logits reach the monitor with the activations, as a direct assess_batch with
        outputs would pass them."""
        net = self.net
        with torch.no_grad():
            logits = net(self.pixels[:64]).numpy()
        seen = []
        with lw.Monitor(self.models, outputs="logits", output_count=6) as monitor:
            with lwt.attach(net, monitor, layer=["act1", "act2"], outputs="", on_assessment=seen.append) as att:
                with torch.no_grad():
                    for start in range(0, 64, 16):
                        net(self.pixels[start:start + 16])
                self.assertTrue(att.flush(30))
            self.assertEqual((att.assessed, att.errors), (64, 0))
        with lw.Monitor(self.models, outputs="logits", output_count=6) as ref:
            want = ref.assess_batch(self.h1[:64], self.h2[:64], outputs=logits)
        self.assertEqual([a.output_predicted for a in seen], list(want.output_predicted))
        self.assertEqual([a.flags for a in seen], [want[i].flags for i in range(64)])
        # Only an inline monitor takes them; a name needs layer=.
        with lw.Monitor(self.models, mode="background", outputs="logits", output_count=6) as bg:
            with self.assertRaises(ValueError):
                lwt.attach(net, bg, layer=["act1", "act2"], outputs="")
        with lw.Monitor(self.models) as monitor, self.assertRaises(ValueError):
            lwt.attach([net.act1, net.act2], monitor, outputs="fc3")

    def test_regression_host_prediction_rides_along(self):
        """A regression head in torch over the digits-rotation MLP's real activations: with outputs=, each
        prediction (shape (batch,)) reaches a monitor created with outputs="prediction", which reports its
        disagreement with the bins' prediction exactly as a direct assess_batch does."""
        rot = os.path.join(lwtest.ROOT, "Samples", "Data", "digits-rotation")

        def load(n):
            return np.load(os.path.join(rot, n))

        train, cal, test = load("train_h2.npy"), load("calibration_h2.npy"), load("test_h2.npy")
        # A linear head fitted by least squares on the training activations: the host model's output.
        design = np.hstack([train, np.ones((len(train), 1), np.float32)]).astype(np.float64)
        coef = np.linalg.lstsq(design, load("train_targets.npy"), rcond=None)[0]

        class Head(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.features = nn.Identity()
                self.out = nn.Linear(32, 1)

            def forward(self, x):
                return self.out(self.features(x)).squeeze(1)

        net = Head().eval()
        with torch.no_grad():
            net.out.weight.copy_(torch.tensor(coef[:32][None, :], dtype=torch.float32))
            net.out.bias.fill_(float(coef[32]))
            cal_pred = net(torch.from_numpy(cal)).numpy().astype(np.float64)
            test_pred = net(torch.from_numpy(test)).numpy()
        model = lw.fit(train, targets=load("train_targets.npy"), calibration=cal,
                       calibration_targets=load("calibration_targets.npy"), layer_name="h2")
        model = model.calibrate_disagreement(cal, cal_pred)
        seen = []
        with lw.Monitor([model], outputs="prediction", window=None, shift="off") as monitor:
            with lwt.attach(net, monitor, layer="features", outputs="", on_assessment=seen.append) as att:
                with torch.no_grad():
                    for start in range(0, len(test), 40):
                        net(torch.from_numpy(test[start:start + 40]))
                self.assertTrue(att.flush(30))
            self.assertEqual((att.assessed, att.errors), (len(test), 0))
        with lw.Monitor([model], outputs="prediction", window=None, shift="off") as ref:
            want = ref.assess_batch(test, outputs=test_pred)
        np.testing.assert_array_equal([a.host_prediction for a in seen], want.host_prediction)
        np.testing.assert_array_equal([a.disagreement_p_value for a in seen], want.disagreement_p_value)
        self.assertTrue(any(a.disagreement for a in seen))

    def test_layer_count_must_match(self):
        with lw.Monitor(self.models) as monitor:
            with self.assertRaises(ValueError) as e:
                lwt.attach(self.net, monitor, layer="act1")
            self.assertIn("2 layers", str(e.exception))
            with self.assertRaises(AttributeError):
                lwt.attach(self.net, monitor, layer=["act1", "nope"])


if __name__ == "__main__":
    unittest.main()
