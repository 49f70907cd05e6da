"""Sharded fitting and model replacement through the Python package: statistics gathered per shard, merged,
pickled and fitted equal a single-pass fit; a monitor's models swapped while threads assess."""

from __future__ import annotations

import os
import pickle
import threading
import unittest

import lwtest
import numpy as np
from lwtest import DATA, TempDirTestCase, require_binary, run_tool

import latentwatch as lw


def load(name):
    return np.load(os.path.join(DATA, name))


class StatisticsTests(TempDirTestCase):
    @classmethod
    def setUpClass(cls):
        cls.x = load("train_h1.npy")
        cls.y = load("train_labels.npy")
        cls.cal = load("calibration_h1.npy")
        cls.cal_y = load("calibration_labels.npy")
        cls.test = load("test_h1.npy")

    def shards(self, cuts=(0, 200, 450)):
        cuts = list(cuts) + [len(self.x)]
        return [
            lw.gather_statistics(self.x[a:b], self.y[a:b], first_index=a, layer_name="h1")
            for a, b in zip(cuts[:-1], cuts[1:])
        ]

    def test_sharded_fit_equals_one_pass(self):
        parts = self.shards()
        self.assertEqual([p.samples for p in parts], [200, 250, len(self.x) - 450])
        merged = lw.merge_statistics(parts)
        self.assertEqual((merged.samples, merged.rows, merged.contiguous), (len(self.x), (0, len(self.x)), True))
        self.assertEqual((merged.layer, merged.family, merged.input_shape), ("h1", "gda", (128,)))
        self.assertEqual(parts[0].samples, 200, "merge_statistics leaves its parts as they were")
        sharded = merged.fit(self.cal, self.cal_y)
        single = lw.fit(self.x, self.y, layer_name="h1", calibration=self.cal, calibration_labels=self.cal_y)
        a, b = sharded.score(self.test), single.score(self.test)
        # Float64 moments merged in another order, then float32 parameters: 1e-5 relative.
        np.testing.assert_allclose(a.surprise, b.surprise, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a.entropy, b.entropy, rtol=1e-4, atol=1e-9)
        self.assertAlmostEqual(sharded.posterior_temperature, single.posterior_temperature, places=5)

    def test_pickle_files_and_bytes_round_trip(self):
        s = self.shards((0,))[0]
        back = pickle.loads(pickle.dumps(s))
        self.assertEqual((back.samples, back.rows, back.layer), (s.samples, s.rows, s.layer))
        self.assertEqual(back.to_bytes(), s.to_bytes())
        path = self.path("s.lws")
        s.save(path)
        self.assertEqual(lw.Statistics.load(path).to_bytes(), s.to_bytes())
        self.assertIn("649 rows", repr(s))

    def test_close_while_other_threads_read_properties(self):
        """Readers racing a close get the value or InvalidHandleError, never freed strings."""
        data = self.shards((0,))[0].to_bytes()
        unexpected = []
        for _ in range(20):
            s = lw.Statistics.from_bytes(data)
            start = threading.Barrier(3)

            def read():
                start.wait()
                for _ in range(50):
                    try:
                        if (s.layer, s.family, s.fingerprint) != ("h1", "gda", ""):
                            unexpected.append("wrong values")
                    except lw.InvalidHandleError:
                        return
                    except Exception as e:  # noqa: BLE001 - any other error is the failure this test looks for
                        unexpected.append(repr(e))
                        return

            readers = [threading.Thread(target=read) for _ in range(2)]
            for t in readers:
                t.start()
            start.wait()
            s.close()
            for t in readers:
                t.join()
        self.assertEqual(unexpected, [])

    def test_python_statistics_merge_with_the_command_line_tool(self):
        binary = require_binary(self)
        a, b = self.shards((0, 300))
        a.save(self.path("a.lws"))
        b.save(self.path("b.lws"))
        run_tool(binary, ["merge", self.path("a.lws"), self.path("b.lws"),
                          "--calibration", os.path.join(DATA, "calibration_h1.npy"),
                          "--calibration-labels", os.path.join(DATA, "calibration_labels.npy"),
                          "--output", self.path("m.lwm")])
        merged = lw.merge_statistics([self.path("a.lws"), b.to_bytes()]).fit(self.cal, self.cal_y)
        np.testing.assert_allclose(lw.load(self.path("m.lwm")).score(self.test).surprise,
                                   merged.score(self.test).surprise, rtol=1e-6, atol=1e-6)

    def test_refusals(self):
        a, b = self.shards((0, 300))
        with self.assertRaisesRegex(lw.FitError, "in two"):
            a.merge(lw.gather_statistics(self.x[100:200], self.y[100:200], first_index=100, layer_name="h1"))
        self.assertEqual(a.samples, 300, "a refused merge changes nothing")
        with self.assertRaisesRegex(lw.FitError, "another fit"):
            a.merge(lw.gather_statistics(self.x[300:], self.y[300:], first_index=300, layer_name="h2"))
        with self.assertRaises(lw.ConfigurationError):
            lw.gather_statistics(self.x, self.y, family="no-such-family")
        with self.assertRaises(lw.ConfigurationError):
            lw.gather_statistics(self.x, None)
        with self.assertRaises(lw.ShapeError):
            a.fit(self.cal[:, :64])
        with self.assertRaises(lw.ModelFileError):
            lw.Statistics.from_bytes(a.to_bytes()[:100])
        model_bytes = lw.fit(self.x, self.y).to_bytes()
        with self.assertRaisesRegex(lw.ModelFileError, "model file"):
            lw.Statistics.from_bytes(model_bytes)
        with self.assertRaises(TypeError):
            a.merge("not statistics")
        a.close()
        with self.assertRaises(lw.InvalidHandleError):
            a.samples
        with self.assertRaises(lw.ConfigurationError):
            lw.merge_statistics([])


class ShardedMixtureTests(TempDirTestCase):
    """A mixture fitted in EM rounds across three shards, in process: the rounds of one pass, and its model."""

    options = dict(family="gmm-diag", mixture_components=4, pca_components=16, layer_name="h1")

    @classmethod
    def setUpClass(cls):
        cls.x = load("train_h1.npy")
        cls.cal = load("calibration_h1.npy")
        cls.test = load("test_h1.npy")
        cls.cuts = [(0, 200), (200, 450), (450, len(cls.x))]

    def start(self):
        parts = [lw.gather_statistics(self.x[a:b], first_index=a, **self.options) for a, b in self.cuts]
        return lw.merge_statistics(parts).start_mixture()

    def steps(self, em):
        return [em.expectation(self.x[a:b], first_index=a) for a, b in self.cuts]

    def test_rounds_equal_one_pass(self):
        em = self.start()
        self.assertEqual((em.kind, em.round, em.finished, em.family), ("mixture-round", 0, False, "gmm-diag"))
        self.assertEqual(len(em.fingerprint), 8)
        while not em.finished:
            steps = self.steps(em)
            self.assertEqual((steps[0].kind, steps[0].round, steps[0].fingerprint), ("mixture-step", em.round,
                                                                                     em.fingerprint))
            # Pickled, as a Dask result would travel.
            em = em.advance(pickle.loads(pickle.dumps(s)) for s in steps)
            self.assertLess(em.round, 100)
        self.assertTrue(em.converged)
        sharded = em.fit(self.cal)
        single = lw.fit(self.x, calibration=self.cal, **self.options)
        self.assertEqual(sharded.fit_notes.split(",")[0], single.fit_notes.split(",")[0])
        self.assertEqual(sharded.fit_notes.split(",")[0], f"em: {em.round} iterations")
        np.testing.assert_allclose(sharded.score(self.test).surprise, single.score(self.test).surprise, rtol=1e-9,
                                   atol=1e-9)

    def test_round_files_work_with_the_command_line_tool(self):
        binary = require_binary(self)
        em = self.start()
        em.save(self.path("r0.lws"))
        for i, s in enumerate(self.steps(em)):
            s.save(self.path(f"e{i}.lws"))
        out = run_tool(binary, ["merge", *(self.path(f"e{i}.lws") for i in range(3)), "--mixture-round",
                                self.path("r0.lws"), "--output", self.path("r1.lws")])
        self.assertIn("round 1: mean log-likelihood", out.stdout)
        here = em.advance(self.steps(em))
        there = lw.Statistics.load(self.path("r1.lws"))
        self.assertEqual((there.round, there.fingerprint, there.log_likelihood),
                         (here.round, here.fingerprint, here.log_likelihood))

    def test_mistakes_are_refused(self):
        em = self.start()
        steps = self.steps(em)
        with self.assertRaisesRegex(lw.FitError, "cover rows"):
            em.advance(steps[:2])
        with self.assertRaisesRegex(lw.FitError, "in two"):
            em.advance(steps + steps[:1])
        with self.assertRaisesRegex(lw.FitError, "not converged"):
            em.fit(self.cal)
        with self.assertRaises(TypeError):
            em.advance(self.path("steps.lws"))
        nxt = em.advance(steps)
        with self.assertRaisesRegex(lw.FitError, "against round 0"):
            nxt.advance(steps)
        with self.assertRaises(lw.LatentWatchError):
            em.merge(steps[0])
        with self.assertRaises(lw.LatentWatchError):
            steps[0].expectation(self.x[:10])
        with self.assertRaises(lw.ShapeError):
            em.expectation(self.x[:10, :64])
        with self.assertRaises(lw.LatentWatchError):
            lw.gather_statistics(self.x[:50], load("train_labels.npy")[:50], first_index=0,
                                 layer_name="h1").start_mixture()


class ReplaceModelsTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.models = lwtest.fit_digits_models()
        labels = load("train_labels.npy")
        cls.tied = [
            lw.fit(load(f"train_{layer}.npy"), labels, family="tied", layer_name=layer,
                   calibration=load(f"calibration_{layer}.npy"))
            for layer in ("h1", "h2")
        ]
        cls.h1, cls.h2, _ = lwtest.stream()

    def test_replace_while_threads_assess(self):
        m = lw.Monitor(self.models)
        self.addCleanup(m.close)
        errors, results = [], []

        def work(k):
            try:
                for i in range(k, 400, 2):
                    results.append((i, m.assess(self.h1[i], self.h2[i])))
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        swaps = 0
        while any(t.is_alive() for t in threads) and swaps < 10:
            m.replace_models(self.tied if swaps % 2 == 0 else self.models)
            swaps += 1
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(sorted(a.index for _, a in results), list(range(400)))
        self.assertEqual(m.stats()["replacements"], swaps)
        # Each input's two layers were scored by one set: its surprise is that set's, on both layers.
        sets = [self.models, self.tied]
        used = [0, 0]
        for i, a in results:
            origin = [
                k for k, s in enumerate(sets)
                if all(abs(a.layers[l].surprise - s[l].score(x).surprise) <= 1e-9 * max(1.0, abs(a.layers[l].surprise))
                       for l, x in enumerate((self.h1[i], self.h2[i])))
            ]
            self.assertEqual(len(origin), 1, f"input {a.index} mixes model sets")
            used[origin[0]] += 1
        self.assertGreaterEqual(swaps, 2)
        self.assertTrue(used[0] > 0 and used[1] > 0, f"inputs by set: {used} after {swaps} swaps")

    def test_unfit_replacements_are_refused(self):
        m = lw.Monitor(self.models)
        self.addCleanup(m.close)
        before = m.assess(self.h1[0], self.h2[0])
        with self.assertRaises(lw.ConfigurationError):
            m.replace_models(self.models[:1])
        with self.assertRaisesRegex(lw.ConfigurationError, "takes 64 values"):
            m.replace_models([self.models[1], self.models[1]])
        self.assertEqual(m.stats()["replacements"], 0)
        after = m.assess(self.h1[0], self.h2[0])
        self.assertEqual([l.surprise for l in after.layers], [l.surprise for l in before.layers])


if __name__ == "__main__":
    unittest.main()
