"""Monitors through the Python package: the digits stream inline and in the background, alerts equal to
`latentwatch replay`, sinks, bad inputs, lifetime."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import unittest

import lwtest
import numpy as np
from lwtest import DATA, TempDirTestCase, require_binary, run_tool

import latentwatch as lw


class MonitorTests(TempDirTestCase):
    @classmethod
    def setUpClass(cls):
        cls.models = lwtest.fit_digits_models()
        cls.h1, cls.h2, cls.ood_start = lwtest.stream()

    def monitor(self, **kw):
        m = lw.Monitor(self.models, **kw)
        self.addCleanup(m.close)
        return m

    # ---- the stream ---------------------------------------------------------------------------------------------

    def test_stream_inline_alerts_start_after_the_shift(self):
        alerts = []
        m = self.monitor(on_alert=alerts.append)
        self.assertEqual(m.layer_names, ["h1", "h2"])
        flagged = []
        for i in range(400):
            a = m.assess(self.h1[i], self.h2[i], request_id=f"img-{i}")
            self.assertIsInstance(a, lw.Assessment)
            self.assertEqual(a.index, i)
            self.assertEqual(a.request_id, f"img-{i}")
            self.assertEqual([layer.name for layer in a.layers], ["h1", "h2"])
            self.assertTrue(0 < a.fused_p_value <= 1)
            if a.out_of_distribution:
                flagged.append(i)
        m.flush()
        inputs = [x for x in alerts if x.kind == "input"]
        self.assertGreaterEqual(len(inputs), 20)
        self.assertGreaterEqual(min(x.index for x in inputs), self.ood_start)
        self.assertEqual([x.index for x in inputs], flagged)
        self.assertTrue(all(x.request_id == f"img-{x.index}" for x in alerts))
        self.assertTrue(all(x.p_value is not None and x.p_value <= 0.01 for x in inputs))
        shift = [x for x in alerts if x.kind == "shift"]
        self.assertEqual(len(shift), 1)
        self.assertGreaterEqual(shift[0].index, self.ood_start)
        stats = m.stats()
        self.assertEqual((stats["assessed"], stats["alerts"], stats["refused"]), (400, len(alerts), 0))
        self.assertIsInstance(alerts[0], lw.Alert)
        self.assertIsInstance(alerts[0].time, float)

    def cli_models(self, binary):
        """gda models of h1 and h2 fitted by `latentwatch fit` (calibration without labels: Bayes' posterior)."""
        paths = []
        for layer in ("h1", "h2"):
            out = self.path(f"{layer}.lwm")
            run_tool(binary, ["fit", "--activations", f"{DATA}/train_{layer}.npy", "--labels",
                              f"{DATA}/train_labels.npy", "--calibration", f"{DATA}/calibration_{layer}.npy",
                              "--family", "gda", "--layer", layer, "--output", out])
            paths.append(out)
        return paths

    def test_same_alerts_as_latentwatch_replay(self):
        """Models fitted by `latentwatch fit`; the stream replayed by `latentwatch replay --alerts` and assessed in
        process with the default policy: the same alerts, kind and index, in the same order."""
        binary = require_binary(self)
        paths = self.cli_models(binary)
        replay = self.path("replay.jsonl")
        run_tool(binary, ["replay", "--model", paths[0], "--model", paths[1], "--input", f"{DATA}/stream_h1.npy",
                          "--input", f"{DATA}/stream_h2.npy", "--alerts", replay])
        with open(replay) as f:
            expected = [lw.Alert.from_json(json.loads(line)) for line in f if line.strip()]
        self.assertGreater(len(expected), 40)

        one_by_one, batched = [], []
        in_process_file = self.path("in-process.jsonl")
        with lw.Monitor(paths, on_alert=one_by_one.append, alerts_path=in_process_file) as m:
            for i in range(400):
                m.assess(self.h1[i], self.h2[i])
        with lw.Monitor([lw.load(p) for p in paths], on_alert=batched.append) as m:
            for start in range(0, 400, 50):
                m.assess_batch(self.h1[start:start + 50], self.h2[start:start + 50])
        key = [(a.kind, a.index) for a in expected]
        self.assertEqual([(a.kind, a.index) for a in one_by_one], key)
        self.assertEqual([(a.kind, a.index) for a in batched], key)
        self.assertEqual([a.p_value for a in one_by_one], [a.p_value for a in expected])
        with open(in_process_file) as f:
            written = [lw.Alert.from_json(json.loads(line)) for line in f if line.strip()]
        self.assertEqual([(a.kind, a.index, a.p_value) for a in written],
                         [(a.kind, a.index, a.p_value) for a in expected])

    def test_joint_calibration_matches_latentwatch_calibrate_fusion(self):
        """calibrate_jointly in process and `latentwatch calibrate-fusion` on the same model files give models whose
        monitors raise the same alerts (here and in `latentwatch replay`); the fused p-value is the joint
        calibration's; the refusals are clear."""
        binary = require_binary(self)
        paths = self.cli_models(binary)
        cal = [np.load(os.path.join(DATA, f"calibration_{layer}.npy")) for layer in ("h1", "h2")]
        joint = lw.calibrate_jointly([lw.load(p) for p in paths], cal)
        self.assertEqual([m.joint_count for m in joint], [217, 217])
        self.assertEqual(lw.load(paths[0]).joint_count, 0)
        out_dir = self.path("joint")
        run_tool(binary, ["calibrate-fusion", "--model", paths[0], "--calibration", f"{DATA}/calibration_h1.npy",
                          "--model", paths[1], "--calibration", f"{DATA}/calibration_h2.npy",
                          "--output-directory", out_dir])
        written = [os.path.join(out_dir, os.path.basename(p)) for p in paths]
        self.assertEqual([lw.load(p).joint_count for p in written], [217, 217])
        replay = self.path("replay.jsonl")
        run_tool(binary, ["replay", "--model", written[0], "--model", written[1], "--input",
                          f"{DATA}/stream_h1.npy", "--input", f"{DATA}/stream_h2.npy", "--alerts", replay])
        with open(replay) as f:
            expected = [(a.kind, a.index, a.p_value) for a in
                        (lw.Alert.from_json(json.loads(line)) for line in f if line.strip())]
        got = []
        with lw.Monitor(joint, on_alert=got.append, fusion="calibrated") as m:
            fused = m.assess_batch(self.h1[:400], self.h2[:400]).fused_p_value
        self.assertEqual([(a.kind, a.index, a.p_value) for a in got], expected)
        with lw.Monitor(paths) as m:
            bonferroni = m.assess_batch(self.h1[:400], self.h2[:400]).fused_p_value
        self.assertFalse(np.array_equal(fused, bonferroni))
        self.assertGreaterEqual(fused.min(), 1 / 218 - 1e-12)
        with self.assertRaises(lw.ConfigurationError) as e:
            lw.Monitor(paths, fusion="calibrated")
        self.assertIn("calibrate", str(e.exception))
        with self.assertRaises(lw.ConfigurationError) as e:
            lw.calibrate_jointly(joint, [np.load(os.path.join(DATA, f"test_{layer}.npy")) for layer in ("h1", "h2")])
        self.assertIn("not the ones its model was calibrated on", str(e.exception))
        with self.assertRaises(lw.ShapeError):
            lw.calibrate_jointly(joint, cal[::-1])
        with self.assertRaises(lw.ConfigurationError):
            lw.calibrate_jointly(joint[:1], cal[:1])
        with self.assertRaises(lw.ConfigurationError):
            lw.calibrate_jointly(joint, cal, statistic="harmonic")

    def test_shift_detector_settings_match_latentwatch_replay(self):
        """Betting, jump rate, the reference and the calibration correction reach the library: the in-process alerts
        equal `latentwatch replay` with the same flags, and differ from the defaults' (so the settings were read)."""
        binary = require_binary(self)
        paths = self.cli_models(binary)
        flags = ["--betting", "linear", "--jump-rate", "0.01", "--no-calibration-correction",
                 "--shift-reference", "calibration-set"]
        replay = self.path("replay.jsonl")
        run_tool(binary, ["replay", "--model", paths[0], "--model", paths[1], "--input", f"{DATA}/stream_h1.npy",
                          "--input", f"{DATA}/stream_h2.npy", "--alerts", replay] + flags)
        with open(replay) as f:
            expected = [(a.kind, a.index, a.p_value) for a in
                        (lw.Alert.from_json(json.loads(line)) for line in f if line.strip())]
        got = []
        with lw.Monitor(paths, on_alert=got.append, shift_betting="linear", jump_rate=0.01,
                        calibration_correction=False, shift_reference="calibration-set") as m:
            evidence = m.assess_batch(self.h1[:400], self.h2[:400]).shift_log_evidence
        self.assertEqual([(a.kind, a.index, a.p_value) for a in got], expected)
        self.assertEqual(len([a for a in got if a.kind == "shift"]), 1)
        # Each setting alone changes the detector's evidence.
        for kw in ({}, {"shift_betting": "power"}, {"jump_rate": 0.1}, {"shift_reference": "calibration-set"}):
            with lw.Monitor(paths, **kw) as m:
                other = m.assess_batch(self.h1[:400], self.h2[:400]).shift_log_evidence
            self.assertFalse(np.array_equal(other[:250], evidence[:250]), kw)
            if kw:
                self.assertFalse(np.array_equal(other[:250], default[:250]), kw)
            else:
                default = other
        # Against the calibration set alone, the correction changes the evidence too.
        evidence = {}
        for correction in (True, False):
            with lw.Monitor(paths, shift_reference="calibration-set", calibration_correction=correction) as m:
                evidence[correction] = m.assess_batch(self.h1[:400], self.h2[:400]).shift_log_evidence
        self.assertFalse(np.array_equal(evidence[True][:250], evidence[False][:250]))
        with self.assertRaises(lw.ConfigurationError):
            lw.Monitor(paths, shift_reference="stream")
        with self.assertRaises(lw.ConfigurationError):
            lw.Monitor(paths, shift_betting="martingale")
        with self.assertRaises(lw.ConfigurationError):
            lw.Monitor(paths, jump_rate=1.5)

    def test_recording_replays_to_the_same_alerts(self):
        binary = require_binary(self)
        rec = self.path("stream.lwr")
        alerts = []
        with self.monitor(on_alert=alerts.append, record_path=rec) as m:
            m.assess_batch(self.h1, self.h2)
        self.assertTrue(os.path.getsize(rec) > 0)
        paths = []
        for k, model in enumerate(self.models):
            paths.append(self.path(f"m{k}.lwm"))
            model.save(paths[-1])
        out = self.path("replayed.jsonl")
        run_tool(binary, ["replay", "--model", paths[0], "--model", paths[1], "--input", rec, "--alerts", out])
        with open(out) as f:
            replayed = [json.loads(line) for line in f if line.strip()]
        self.assertEqual([(r["kind"], r["index"]) for r in replayed], [(a.kind, a.index) for a in alerts])

    def test_assess_batch_columns(self):
        m1 = self.monitor()
        m2 = self.monitor()
        rows = [m1.assess(self.h1[i], self.h2[i]) for i in range(400)]
        batch = m2.assess_batch(self.h1, self.h2, request_ids=[f"r{i}" for i in range(400)])
        self.assertIsInstance(batch, lw.AssessmentBatch)
        self.assertEqual(len(batch), 400)
        self.assertEqual(batch.index.tolist(), list(range(400)))
        self.assertEqual(batch.layer_surprise.shape, (400, 2))
        self.assertEqual(batch.layer_p_value.shape, (400, 2))
        self.assertEqual(batch.flags.tolist(), [int(a.flags) for a in rows])
        self.assertEqual(batch.out_of_distribution.tolist(), [a.out_of_distribution for a in rows])
        self.assertEqual(batch.ambiguous.tolist(), [a.ambiguous for a in rows])
        self.assertEqual(batch.fused_p_value.tolist(), [a.fused_p_value for a in rows])
        self.assertEqual(batch.predicted_label.tolist(), [a.predicted_label for a in rows])
        surprise = np.array([[layer.surprise for layer in a.layers] for a in rows])
        np.testing.assert_allclose(batch.layer_surprise, surprise, rtol=1e-5, atol=1e-3)
        self.assertTrue(np.all(batch.shift_alarm[250:]))
        self.assertEqual(batch[7].request_id, "r7")
        self.assertEqual(batch[-1].index, 399)
        self.assertEqual(batch[3].flags, rows[3].flags)
        self.assertEqual(len(list(batch)), 400)
        self.assertEqual(batch.raw.dtype.itemsize, 416)
        empty = m2.assess_batch(np.zeros((0, 128), np.float32), np.zeros((0, 64), np.float32))
        self.assertEqual(len(empty), 0)

    def test_float16_passes_as_binary16(self):
        a = self.monitor()
        b = self.monitor()
        for i in (0, 1, 250):
            x1, x2 = self.h1[i].astype(np.float16), self.h2[i].astype(np.float16)
            half = a.assess(x1, x2)
            full = b.assess(x1.astype(np.float32), x2.astype(np.float32))
            self.assertEqual(half.layers, full.layers)
        # Mixed float16 and float32 layers are converted to float32.
        self.assertEqual(a.assess(self.h1[3].astype(np.float16), self.h2[3]).index, 3)
        batch = a.assess_batch(self.h1[:20].astype(np.float16), self.h2[:20].astype(np.float16))
        self.assertEqual(len(batch), 20)

    def test_read_only_and_writable_arrays_give_the_same_assessment(self):
        a = self.monitor()
        b = self.monitor()
        for i in (0, 1, 250):
            x1 = np.ascontiguousarray(self.h1[i], dtype=np.float32)
            x2 = np.ascontiguousarray(self.h2[i], dtype=np.float32)
            r1 = np.frombuffer(x1.tobytes(), dtype=np.float32)
            r2 = np.frombuffer(x2.tobytes(), dtype=np.float32)
            self.assertFalse(r1.flags.writeable)
            self.assertEqual(a.assess(r1, r2), b.assess(x1, x2))

    # ---- bad inputs ---------------------------------------------------------------------------------------------

    def test_bad_inputs_raise_clear_errors_and_later_calls_work(self):
        m = self.monitor()
        good = lambda: m.assess(self.h1[0], self.h2[0])  # noqa: E731
        self.assertEqual(good().index, 0)
        with self.assertRaises(lw.ShapeError) as e:
            m.assess(self.h1[0])
        self.assertIn("2 layers", str(e.exception))
        self.assertIn("h1, h2", str(e.exception))
        self.assertEqual(good().index, 1)
        with self.assertRaises(lw.ShapeError) as e:
            m.assess(self.h1[0][:100], self.h2[0])
        self.assertIsInstance(e.exception, ValueError)
        self.assertIn("(128,)", str(e.exception))
        self.assertIn("(100,)", str(e.exception))
        with self.assertRaises(lw.ShapeError) as e:
            m.assess(self.h1[:2], self.h2[:2])
        self.assertIn("assess_batch", str(e.exception))
        with self.assertRaises(TypeError):
            m.assess(self.h1[0].astype(np.complex128), self.h2[0])
        with self.assertRaises(TypeError):
            m.assess(np.array([None] * 128, dtype=object), self.h2[0])
        bad = self.h1[0].copy()
        bad[9] = np.nan
        with self.assertRaises(lw.NonFiniteError) as e:
            m.assess(bad, self.h2[0])
        self.assertEqual(e.exception.status_name, "LW_ERR_NON_FINITE")
        self.assertTrue(e.exception.message)
        with self.assertRaises(lw.ShapeError):
            m.assess_batch(self.h1[:5], self.h2[:4])
        with self.assertRaises(lw.ShapeError):
            m.assess_batch(self.h1[:5], self.h2[:5], request_ids=["a"])
        rows = self.h2[:10].copy()
        rows[6, 1] = np.inf
        with self.assertRaises(lw.NonFiniteError) as e:
            m.assess_batch(self.h1[:10], rows)
        self.assertIn("[6]", str(e.exception))
        with self.assertRaises(lw.InvalidArgumentError):
            m.assess(self.h1[0], self.h2[0], request_id="a\0b")
        with self.assertRaises(lw.InvalidArgumentError):
            m.assess(self.h1[0], self.h2[0], outputs=np.zeros(6, np.float32))  # not configured for outputs
        # Non-contiguous views and float64 are accepted (copied): the same as contiguous float32.
        wide = np.zeros((2, 256), np.float32)
        wide[0, ::2] = self.h1[5]
        view = wide[0, ::2]
        self.assertFalse(view.flags.c_contiguous)
        a = m.assess(view, self.h2[5].astype(np.float64))
        # The refused inputs left the stream untouched: this is the third input assessed.
        self.assertEqual(a.index, 2)
        ref = self.monitor()
        self.assertEqual(ref.assess(self.h1[5], self.h2[5]).layers, a.layers)
        # What the library refused, counted in inputs: the NaN input and the 10 inputs of the batch holding Inf
        # (shape errors are caught in Python first and not counted).
        self.assertEqual(m.stats()["refused"], 11)

    def test_outputs(self):
        logits = np.load(os.path.join(DATA, "test_logits.npy"))
        t1, t2 = np.load(os.path.join(DATA, "test_h1.npy")), np.load(os.path.join(DATA, "test_h2.npy"))
        m = self.monitor(outputs="logits", output_count=6)
        a = m.assess(t1[0], t2[0], outputs=logits[0])
        self.assertEqual(a.output_predicted, int(np.argmax(logits[0])))
        self.assertTrue(0 < a.output_confidence <= 1)
        self.assertIsNotNone(a.output_energy)
        batch = m.assess_batch(t1[:30], t2[:30], outputs=logits[:30])
        self.assertEqual(batch.output_predicted.tolist(), np.argmax(logits[:30], axis=1).tolist())
        swapped = logits[:30, ::-1].copy()  # outputs that disagree with p(y | z)
        self.assertTrue(m.assess_batch(t1[:30], t2[:30], outputs=swapped).disagreement.any())
        with self.assertRaises(lw.ShapeError):
            m.assess(t1[0], t2[0], outputs=logits[0, :5])
        self.assertIsNone(m.assess(t1[0], t2[0]).output_predicted)

    # ---- configuration ------------------------------------------------------------------------------------------

    def test_configuration(self):
        with self.assertRaises(lw.ConfigurationError):
            lw.Monitor(self.models, input_alpha=1.5)
        with self.assertRaises(lw.ConfigurationError):
            lw.Monitor(self.models, shift="sometimes")
        with self.assertRaises(lw.ConfigurationError):
            lw.Monitor(self.models, primary_layer="h3")
        with self.assertRaises(lw.ConfigurationError):
            lw.Monitor([])
        with self.assertRaises(lw.ConfigurationError):
            lw.Monitor(self.models, outputs="logits")  # output_count missing
        m = self.monitor(layer_names=["first", None], primary_layer="first", fusion="cauchy", shift="change",
                         aleatoric_alpha=None, window=None, log_level=None)
        a = m.assess(self.h1[0], self.h2[0])
        self.assertEqual([layer.name for layer in a.layers], ["first", "h2"])
        self.assertEqual(m.layer_names, ["first", "h2"])
        single = self.monitor(shift=None)
        self.assertIsNone(lw.Monitor(self.models[0], shift=None).assess(self.h1[0]).shift_log_evidence)
        self.assertEqual(single.input_shapes, [(128,), (64,)])
        self.assertIn("h1(128,)", repr(single))

    # ---- sinks --------------------------------------------------------------------------------------------------

    def test_log_level_writes_alerts_to_stderr(self):
        code = (
            "import lwtest, latentwatch as lw\n"
            "h1, h2, start = lwtest.stream()\n"
            "with lw.Monitor(lwtest.fit_digits_models(), log_level='warning') as m:\n"
            "    m.assess_batch(h1[190:215], h2[190:215])\n"
        )
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("out of distribution", out.stderr)
        self.assertIn("warning", out.stderr)

    def test_assessment_objects_are_ordinary_frozen_dataclasses(self):
        a = self.monitor().assess(self.h1[0], self.h2[0])
        self.assertEqual(dataclasses.replace(a), a)  # the fast construction equals the dataclass's own
        self.assertEqual(hash(dataclasses.replace(a)), hash(a))
        with self.assertRaises(dataclasses.FrozenInstanceError):
            a.index = 3

    def test_callback_exceptions_are_caught_logged_and_counted(self):
        calls = []

        def broken(alert):
            calls.append(alert)
            raise RuntimeError("host bug")

        m = self.monitor(on_alert=broken)
        with self.assertLogs("latentwatch", level="ERROR") as logs:
            m.assess_batch(self.h1, self.h2)
            m.flush()
        stats = m.stats()
        self.assertGreater(len(calls), 10)
        self.assertEqual(stats["callback_errors"], len(calls))
        self.assertEqual(stats["alerts"], len(calls))
        self.assertIn("host bug", "\n".join(logs.output))
        self.assertEqual(m.assess(self.h1[0], self.h2[0]).index, 400)

    def test_logger_receives_alerts(self):
        logger = logging.getLogger("lwtest.alerts")
        with self.assertLogs(logger, level="INFO") as logs:
            m = self.monitor(logger=logger)
            m.assess_batch(self.h1, self.h2)
            m.flush()
        self.assertTrue(any(r.levelno == logging.WARNING for r in logs.records))
        alerts = [r.latentwatch_alert for r in logs.records]
        self.assertTrue(all(isinstance(a, lw.Alert) for a in alerts))
        self.assertIn("input", {a.kind for a in alerts})

    def test_flush_and_close_from_the_callback_are_refused(self):
        seen = []
        holder = {}

        def callback(alert):
            if not seen:
                for call in (holder["m"].flush, holder["m"].close):
                    try:
                        call()
                    except lw.WrongStateError as e:
                        seen.append(e.status_name)

        holder["m"] = m = self.monitor(on_alert=callback)
        m.assess_batch(self.h1, self.h2)
        m.flush()
        self.assertEqual(seen, ["LW_ERR_WRONG_STATE", "LW_ERR_WRONG_STATE"])
        self.assertFalse(m.closed)

    # ---- background ---------------------------------------------------------------------------------------------

    def test_background_submit_flush_stats(self):
        inline_alerts, background_alerts = [], []
        with lw.Monitor(self.models, on_alert=inline_alerts.append) as inline:
            inline.assess_batch(self.h1, self.h2)
        m = self.monitor(mode="background", on_alert=background_alerts.append, queue_capacity=512, batch_size=16)
        self.assertEqual(m.mode, "background")
        for i in range(400):
            self.assertTrue(m.submit(self.h1[i], self.h2[i], request_id=f"b{i}"))
        m.flush(timeout=60)
        stats = m.stats()
        self.assertEqual((stats["assessed"], stats["queued"], stats["dropped"]), (400, 0, 0))
        self.assertEqual([(a.kind, a.index) for a in background_alerts], [(a.kind, a.index) for a in inline_alerts])
        self.assertTrue(all(a.request_id == f"b{a.index}" for a in background_alerts))
        bad = self.h1[0].copy()
        bad[0] = np.nan
        with self.assertRaises(lw.NonFiniteError):
            m.submit(bad, self.h2[0])
        self.assertTrue(m.submit(self.h1[0], self.h2[0]))
        m.flush()
        self.assertEqual(m.stats()["assessed"], 401)
        with self.assertRaises(lw.WrongStateError):
            self.monitor().submit(self.h1[0], self.h2[0])

    def test_background_overflow(self):
        for overflow in ("drop", "reject"):
            m = self.monitor(mode="background", queue_capacity=1, batch_size=1, overflow=overflow)
            accepted = refused = 0
            for i in range(2000):
                try:
                    if m.submit(self.h1[i % 400], self.h2[i % 400]):
                        accepted += 1
                    else:
                        refused += 1
                except lw.QueueFullError:
                    self.assertEqual(overflow, "reject")
                    refused += 1
            m.flush(timeout=60)
            stats = m.stats()
            self.assertEqual(stats["assessed"], accepted)
            self.assertEqual(stats["dropped"], refused)

    def test_threads_share_one_monitor(self):
        m = self.monitor()
        errors = []

        def work(k):
            try:
                for i in range(k, 400, 4):
                    m.assess(self.h1[i], self.h2[i])
                m.assess_batch(self.h1[:25], self.h2[:25])
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(m.stats()["assessed"], 500)

    # ---- lifetime -----------------------------------------------------------------------------------------------

    def test_closed_monitor_raises(self):
        with lw.Monitor(self.models) as m:
            m.assess(self.h1[0], self.h2[0])
        self.assertTrue(m.closed)
        for call in (lambda: m.assess(self.h1[0], self.h2[0]), lambda: m.assess_batch(self.h1[:2], self.h2[:2]),
                     lambda: m.submit(self.h1[0], self.h2[0]), m.flush, m.stats):
            with self.assertRaises(lw.MonitorClosedError) as e:
                call()
            self.assertIsInstance(e.exception, RuntimeError)
        m.close()  # idempotent

    def test_models_may_be_freed_before_the_monitor(self):
        models = [lw.Model.from_bytes(x.to_bytes()) for x in self.models]
        m = self.monitor()
        m2 = lw.Monitor(models)
        for x in models:
            x.close()
        self.assertEqual(m2.assess(self.h1[0], self.h2[0]).layers, m.assess(self.h1[0], self.h2[0]).layers)
        m2.close()


if __name__ == "__main__":
    unittest.main()
