"""Models through the Python package: load, info, score (one and batch), fit, bytes and files, bad inputs."""

from __future__ import annotations

import os
import unittest

import lwtest
import numpy as np
from lwtest import DATA, TempDirTestCase, require_binary, run_tool

import latentwatch as lw


class ModelTests(TempDirTestCase):
    @classmethod
    def setUpClass(cls):
        cls.h1_model, cls.h2_model = lwtest.fit_digits_models()
        cls.h1, cls.h2, cls.ood_start = lwtest.stream()

    def test_info(self):
        m = self.h1_model
        self.assertEqual(m.layer, "h1")
        self.assertEqual(m.family, "gda")
        self.assertEqual(m.input_shape, (128,))
        self.assertEqual(m.input_count, 128)
        self.assertEqual(m.latent_dimension, 128)
        self.assertEqual(m.component_count, 6)
        self.assertEqual(m.class_labels, [0, 1, 2, 3, 4, 5])
        self.assertEqual(m.calibration_count, 217)  # the calibration split
        self.assertEqual(m.fit_samples, 649)  # all of the train split
        self.assertIsNone(m.fingerprint)  # fitted in process, never read back
        self.assertEqual(m.precision, "float32")
        self.assertIn("shrinkage", m.fit_notes)
        self.assertIn("h1", repr(m))

    def test_bytes_and_files_round_trip(self):
        m = self.h1_model
        data = m.to_bytes()
        back = lw.Model.from_bytes(data)
        self.assertIsNotNone(back.fingerprint)
        self.assertEqual(back.input_shape, m.input_shape)
        self.assertEqual(back.score(self.h1[:50]).surprise.tolist(), m.score(self.h1[:50]).surprise.tolist())
        path = self.path("h1.lwm")
        m.save(path)
        loaded = lw.load(path)
        self.assertEqual(loaded.fingerprint, back.fingerprint)
        self.assertEqual(loaded.to_bytes(), data)
        half = self.path("h1-f16.lwm")
        m.save(half, precision="float16", compression_level=3)
        self.assertLess(os.path.getsize(half), os.path.getsize(path))
        self.assertEqual(lw.load(half).precision, "float16")
        self.assertEqual(lw.Model.from_bytes(bytearray(m.to_bytes(precision="float16"))).precision, "float16")
        with self.assertRaises(lw.ConfigurationError):
            m.to_bytes(precision="float64")

    def test_bad_files(self):
        with self.assertRaises(lw.LatentWatchIOError) as e:
            lw.load(self.path("missing.lwm"))
        self.assertIsInstance(e.exception, OSError)
        self.assertIn("missing.lwm", str(e.exception))
        self.assertEqual(e.exception.status_name, "LW_ERR_IO")
        with self.assertRaises(lw.ModelFileError):
            lw.Model.from_bytes(b"definitely not a model file")
        data = self.h1_model.to_bytes()
        with self.assertRaises(lw.ModelFileError):
            lw.Model.from_bytes(data[: len(data) // 2])
        damaged = bytearray(data)
        damaged[len(damaged) // 2] ^= 0x5A
        with self.assertRaises(lw.ModelFileError) as e:
            lw.Model.from_bytes(damaged)
        self.assertEqual(e.exception.status, 4)
        with self.assertRaises(lw.LatentWatchIOError):
            self.h1_model.save("/nonexistent-dir/x.lwm")
        with self.assertRaises(TypeError):
            lw.Model(None)

    def test_score_one_and_batch_agree(self):
        """One input (lw_model_score) and a batch (lw_model_score_batch, BLAS from 16 rows) agree to the rounding
        of float32 accumulation, relative to the Mahalanobis term the surprise is computed from."""
        for model, rows in ((self.h1_model, self.h1), (self.h2_model, self.h2)):
            batch = model.score(rows)
            self.assertIsInstance(batch, lw.Scores)
            self.assertEqual(batch.surprise.shape, (400,))
            self.assertTrue(np.all(batch.status == 0))
            ones = [model.score(r) for r in rows]
            self.assertIsInstance(ones[0], lw.Score)
            surprise = np.array([s.surprise for s in ones])
            scale = np.maximum(1.0, np.maximum(np.abs(batch.surprise), batch.mahalanobis))
            self.assertLess(np.max(np.abs(surprise - batch.surprise) / scale), 1e-5)
            # Below 16 rows the batch uses the one-input kernel: bit for bit equal.
            small = model.score(rows[:8])
            self.assertEqual(small.surprise.tolist(), surprise[:8].tolist())
            for name in ("surprise_p_value", "entropy_p_value"):  # conformal ranks: equal for this data
                self.assertEqual(getattr(batch, name).tolist(), [getattr(s, name) for s in ones], name)
            self.assertEqual(batch.predicted_label.tolist(), [s.predicted_label for s in ones])
            np.testing.assert_allclose(batch.max_posterior, [s.max_posterior for s in ones], rtol=1e-4, atol=1e-6)

    def test_batch_equals_latentwatch_score_bit_for_bit(self):
        binary = require_binary(self)
        model_path = self.path("h1.lwm")
        self.h1_model.save(model_path)
        out = self.path("surprise.npy")
        run_tool(binary, ["score", "--model", model_path, "--input", os.path.join(DATA, "stream_h1.npy"),
                          "--score", "surprise", "--output", out])
        expected = np.load(out)
        got = lw.load(model_path).score(self.h1).surprise
        self.assertEqual(expected.dtype, np.float64)
        self.assertTrue(np.array_equal(got, expected), f"max difference {np.max(np.abs(got - expected))}")

    def test_input_shapes_and_dtypes(self):
        m = self.h1_model
        x = self.h1[3]
        base = m.score(x).surprise
        self.assertEqual(m.score(x.reshape(1, 128)).surprise.tolist(), [base])
        self.assertEqual(m.score(x.astype(np.float64)).surprise, base)  # converted (a copy)
        self.assertEqual(m.score(x.tolist()).surprise, base)
        wide = np.zeros((400, 256), dtype=np.float32)
        wide[:, ::2] = self.h1
        strided = wide[:, ::2]  # non-contiguous: copied
        self.assertFalse(strided.flags.c_contiguous)
        self.assertTrue(np.array_equal(m.score(strided).surprise, m.score(self.h1).surprise))
        big_endian = self.h1[:20].astype(">f4")
        self.assertTrue(np.array_equal(m.score(big_endian).surprise, m.score(self.h1[:20]).surprise))
        half = x.astype(np.float16)
        self.assertEqual(m.score(half).surprise, m.score(half.astype(np.float32)).surprise)

        with self.assertRaises(lw.ShapeError) as e:
            m.score(np.zeros(127, dtype=np.float32))
        self.assertIsInstance(e.exception, ValueError)
        self.assertIn("(128,)", str(e.exception))
        self.assertIn("(127,)", str(e.exception))
        with self.assertRaises(lw.ShapeError):
            m.score(np.zeros((4, 64), dtype=np.float32))
        with self.assertRaises(TypeError):
            m.score(x.astype(np.complex64))
        with self.assertRaises(TypeError):
            m.score(np.array([object()] * 128))
        with self.assertRaises(TypeError):
            m.score(["a"] * 128)
        # After every refused call, a good call works.
        self.assertEqual(m.score(x).surprise, base)

    def test_non_finite(self):
        m = self.h1_model
        x = self.h1[0].copy()
        x[5] = np.nan
        with self.assertRaises(lw.NonFiniteError) as e:
            m.score(x)
        self.assertEqual(e.exception.status_name, "LW_ERR_NON_FINITE")
        self.assertIsInstance(e.exception, ValueError)
        rows = self.h1[:20].copy()
        rows[3, 7] = np.nan
        rows[11, 0] = np.inf
        s = m.score(rows)  # a batch reports bad rows instead of raising
        self.assertEqual(np.flatnonzero(s.status).tolist(), [3, 11])
        self.assertEqual(int(s.status[3]), 7)
        self.assertTrue(np.isnan(s.surprise[3]) and np.isnan(s.mahalanobis[11]))
        self.assertEqual(int(s.predicted_label[3]), -1)
        good = m.score(self.h1[:20])
        keep = s.valid
        self.assertTrue(np.array_equal(s.surprise[keep], good.surprise[keep]))
        self.assertEqual(m.score(self.h1[0]).surprise, m.score(self.h1[0]).surprise)

    def test_empty_batch(self):
        s = self.h1_model.score(np.zeros((0, 128), dtype=np.float32))
        self.assertEqual(s.surprise.shape, (0,))

    def test_fit_from_numpy(self):
        rng = np.random.default_rng(0)
        centers = rng.normal(size=(3, 16)) * 4
        labels = np.repeat(np.arange(3), 200)
        x = (centers[labels] + rng.normal(size=(600, 16))).astype(np.float32)
        m = lw.fit(x, labels, family="tied", layer_name="synthetic", l2_normalize=False, split_seed=3)
        self.assertEqual((m.layer, m.family, m.input_shape), ("synthetic", "tied", (16,)))
        self.assertEqual(m.fit_samples + m.calibration_count, 600)
        near = m.score(x[:5].astype(np.float64))
        far = m.score(np.full((5, 16), 40.0))
        self.assertTrue(np.all(far.surprise > near.surprise.max()))
        self.assertTrue(np.all(far.surprise_p_value < 0.01))
        # An unsupervised mixture on images, pooled and projected.
        images = rng.normal(size=(300, 4, 3, 3)).astype(np.float32)
        g = lw.fit(images, family="gmm-full", pooling="global-average", mixture_components=2,
                   pca_components=3, precision="float16", l2_normalize=False)
        self.assertEqual((g.input_shape, g.latent_dimension, g.component_count), ((4, 3, 3), 3, 2))
        self.assertIsNone(g.class_labels)
        self.assertEqual(g.precision, "float16")
        self.assertEqual(g.score(images[0]).predicted_label, -1)
        self.assertEqual(g.score(images[:3]).surprise.shape, (3,))
        # A flat activation of an image layer is accepted too.
        self.assertEqual(g.score(images[0].ravel()).surprise, g.score(images[0]).surprise)

    def test_calibrated_posterior(self):
        """Fitted with calibration labels, the class posterior is calibrated (Docs/Statistics.md): a temperature,
        kept by the model file, readable entropies, and the same surprise and class as Bayes' posterior."""
        m = self.h2_model
        self.assertIsNotNone(m.posterior_temperature)
        self.assertIn("posterior calibrated on 217 labelled inputs", m.fit_notes)
        back = lw.Model.from_bytes(m.to_bytes())
        self.assertEqual(back.posterior_temperature, m.posterior_temperature)
        bayes = lw.fit(np.load(os.path.join(DATA, "train_h2.npy")), np.load(os.path.join(DATA, "train_labels.npy")),
                       calibration=np.load(os.path.join(DATA, "calibration_h2.npy")),
                       calibration_labels=np.load(os.path.join(DATA, "calibration_labels.npy")),
                       calibrate_posterior=False)
        self.assertIsNone(bayes.posterior_temperature)
        x = np.load(os.path.join(DATA, "test_h2.npy"))
        a, b = m.score(x), bayes.score(x)
        np.testing.assert_array_equal(a.surprise, b.surprise)
        np.testing.assert_array_equal(a.predicted_label, b.predicted_label)
        self.assertGreater(np.median(a.entropy), 1e-3)
        self.assertLess(np.median(b.entropy), 1e-3)
        # Without calibration labels the posterior stays Bayes'; mixtures have no classes to calibrate.
        no_labels = lw.fit(np.load(os.path.join(DATA, "train_h2.npy")),
                           np.load(os.path.join(DATA, "train_labels.npy")),
                           calibration=np.load(os.path.join(DATA, "calibration_h2.npy")))
        self.assertIsNone(no_labels.posterior_temperature)

    def test_neighbour_index(self):
        """fit(neighbours=) keeps an index of fitting rows: its distance and the combined epistemic p-value come
        back on every score, survive the model file, and a Monitor alarms on the combined p-value."""
        train = np.load(os.path.join(DATA, "train_h2.npy"))
        labels = np.load(os.path.join(DATA, "train_labels.npy"))
        cal = np.load(os.path.join(DATA, "calibration_h2.npy"))
        m = lw.fit(train, labels, layer_name="h2", calibration=cal, neighbours=400, neighbour_cells=8)
        self.assertEqual(m.neighbour_count, 400)
        self.assertEqual(self.h2_model.neighbour_count, 0)
        back = lw.Model.from_bytes(m.to_bytes())
        self.assertEqual(back.neighbour_count, 400)
        one = back.score(self.h2[0])
        batch = back.score(self.h2[:64])
        self.assertGreaterEqual(one.neighbour_distance, 0)
        self.assertAlmostEqual(batch.neighbour_distance[0], one.neighbour_distance, places=5)
        self.assertEqual(batch.epistemic_p_value[0], one.epistemic_p_value)
        self.assertTrue(np.all((batch.epistemic_p_value > 0) & (batch.epistemic_p_value <= 1)))
        # Without an index the distance is NaN and the epistemic p-value is the surprise's.
        plain = self.h2_model.score(self.h2[:64])
        self.assertTrue(np.all(np.isnan(plain.neighbour_distance)))
        np.testing.assert_array_equal(plain.epistemic_p_value, plain.surprise_p_value)
        # The monitor's layer p-value is the combined one.
        with lw.Monitor([back]) as mon:
            a = mon.assess(self.h2[5])
        self.assertAlmostEqual(a.layers[0].p_value, back.score(self.h2[5]).epistemic_p_value, places=12)
        # The default keeps an index only where the calibration can resolve the combined p-value (1,000 rows):
        # these 217 are too few, and the model says why; "off" (or 0) keeps none.
        self.assertIn("no neighbour index: 217 calibration inputs", self.h2_model.fit_notes)
        self.assertEqual(lw.fit(train, labels, calibration=cal, neighbours="off").neighbour_count, 0)
        self.assertEqual(lw.fit(train, labels, calibration=cal, neighbours=0).neighbour_count, 0)
        self.assertEqual(lw.fit(train, labels, calibration=cal, neighbours=np.int64(300)).neighbour_count, 300)
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(train, labels, neighbours=(1 << 20) + 1)
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(train, labels, neighbours=300, neighbour_cells=True)
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(train, labels, neighbours="off", neighbour_probes=3)
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(train, labels, neighbours="some")
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(train, labels, neighbours=True)
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(train, labels, neighbours="off", neighbour_cells=4)
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(train, labels, neighbours=100, neighbour_probes=0)

    def test_fit_errors(self):
        x = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(x)  # gda needs labels
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(x, family="no-such-family")
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(x, pooling="median")
        with self.assertRaises(lw.ShapeError):
            lw.fit(x[0])
        with self.assertRaises(lw.ShapeError):
            lw.fit(x, np.zeros(49, dtype=np.int64))
        with self.assertRaises(lw.ShapeError):
            lw.fit(x, family="gmm-diag", calibration=np.zeros((10, 5), dtype=np.float32))
        with self.assertRaises(TypeError):
            lw.fit(x, np.array(["a"] * 50))
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(x, family="gmm-diag", calibration_fraction=1.5)
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(x, family="gmm-diag", pca_components=2, pca_variance_fraction=0.5)
        bad = x.copy()
        bad[2, 2] = np.nan
        with self.assertRaises(lw.LatentWatchError):
            lw.fit(bad, family="gmm-diag")
        # float labels with integer values are accepted
        m = lw.fit(np.vstack([x, x + 5]), np.repeat([0.0, 1.0], 50), family="tied")
        self.assertEqual(m.class_labels, [0, 1])

    def test_close(self):
        m = lw.Model.from_bytes(self.h2_model.to_bytes())
        with m:
            m.score(self.h2[0])
        with self.assertRaises(lw.InvalidHandleError):
            m.score(self.h2[0])
        m.close()  # idempotent


if __name__ == "__main__":
    unittest.main()
