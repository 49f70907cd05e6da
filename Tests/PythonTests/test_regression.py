"""A regression model's layer through the Python package: fit with targets, scores with predictions, the interval,
the monitor's regression fields, and bad targets (Samples/Data/digits-rotation, made by Tests/Reference/
make_regression_fixtures.py). The numbers themselves are checked against numpy in the Swift tests
(RegressionFamilyTests) and the C interface against the SDK bit for bit (CAPITests); here, the package's plumbing."""

from __future__ import annotations

import os
import unittest

import lwtest  # noqa: F401  (chooses the package under test)
import numpy as np

import latentwatch as lw

ROTATION = os.path.join(lwtest.ROOT, "Samples", "Data", "digits-rotation")


def load(name: str) -> np.ndarray:
    return np.load(os.path.join(ROTATION, name))


class RegressionTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.train, cls.train_y = load("train_h2.npy"), load("train_targets.npy")
        cls.cal, cls.cal_y = load("calibration_h2.npy"), load("calibration_targets.npy")
        cls.test, cls.test_y = load("test_h2.npy"), load("test_targets.npy")
        cls.model = lw.fit(
            cls.train, targets=cls.train_y, calibration=cls.cal, calibration_targets=cls.cal_y, target_bins=8,
            family="regression-tied", layer_name="h2",
        )

    def test_model_describes_its_bins_and_interval(self):
        m = self.model
        self.assertEqual(m.family, "regression-tied")
        self.assertEqual(m.target_bins, 8)
        self.assertTrue(m.has_prediction_interval)
        self.assertIsNone(m.class_labels)
        # With targets, the default family is the per-bin one.
        d = lw.fit(self.train, targets=self.train_y)
        self.assertEqual(d.family, "regression")
        self.assertEqual(d.target_bins, 10)
        self.assertTrue(d.has_prediction_interval)  # the carved rows' own targets

    def test_scores_and_interval_cover_the_targets(self):
        s = self.model.score(self.test)
        self.assertTrue(np.all(s.valid))
        self.assertTrue(np.all(np.isfinite(s.prediction)) and np.all(s.predictive_spread > 0))
        self.assertTrue(np.all(s.predicted_label == -1))
        one = self.model.score(self.test[3])
        self.assertEqual(one.prediction, s.prediction[3])
        self.assertEqual(one.predictive_spread, s.predictive_spread[3])
        low, high = self.model.prediction_interval(s.prediction, s.predictive_spread, level=0.9)
        covered = np.mean((low <= self.test_y) & (self.test_y <= high))
        # One split of 360 inputs at level 0.9 (0.85 on this split; 0.90 on average over re-splits).
        self.assertGreater(covered, 0.8)
        self.assertLess(covered, 0.97)
        lo1, hi1 = self.model.prediction_interval(one.prediction, one.predictive_spread)
        self.assertEqual((lo1, hi1), (low[3], high[3]))
        # The bins' prediction is close to the true angle on average (the MLP itself is within 5.7 degrees).
        self.assertLess(float(np.mean(np.abs(s.prediction - self.test_y))), 8.0)

    def test_monitor_reports_predictions_and_spread_alerts(self):
        mon = lw.Monitor([self.model], aleatoric_alpha=0.05, window=None, shift="off")
        a = mon.assess(self.test[0])
        self.assertIsNotNone(a.prediction)
        self.assertIsNotNone(a.predictive_spread)
        self.assertIsNotNone(a.spread_p_value)
        self.assertIsNone(a.predicted_label)
        self.assertAlmostEqual(a.prediction, float(self.model.score(self.test[0]).prediction), places=12)
        b = mon.assess_batch(self.test)
        flagged = int(np.sum(b.ambiguous))
        self.assertTrue(np.array_equal(b.ambiguous, b.spread_p_value <= 0.05))
        self.assertGreater(flagged, 4)
        self.assertLess(flagged, 37)
        self.assertEqual(b[5].prediction, float(b.prediction[5]))
        # Every assessment carries the 90 % prediction interval, equal to Model.prediction_interval's.
        self.assertEqual(a.prediction_interval, self.model.prediction_interval(a.prediction, a.predictive_spread))
        low, high = self.model.prediction_interval(b.prediction, b.predictive_spread)
        np.testing.assert_array_equal(b.interval_low, low)
        np.testing.assert_array_equal(b.interval_high, high)
        self.assertEqual(b[5].prediction_interval, (float(low[5]), float(high[5])))
        mon.close()
        with lw.Monitor([self.model], interval_level=None, window=None, shift="off") as plain:
            self.assertIsNone(plain.assess(self.test[0]).prediction_interval)
        with lw.Monitor([self.model], interval_level=0.5, window=None, shift="off") as half:
            c = half.assess(self.test[0])
            self.assertEqual(c.prediction_interval, self.model.prediction_interval(c.prediction, c.predictive_spread, 0.5))
        with self.assertRaises(lw.ConfigurationError):
            lw.Monitor([self.model], interval_level=1.0)

    def test_disagreement_with_the_host_prediction(self):
        """The MLP's own predictions: Model.calibrate_disagreement, then a monitor given them (one input and a
        batch), its alerts, and the bad-input cases."""
        cal_p, test_p = load("calibration_predictions.npy"), load("test_predictions.npy")
        self.assertFalse(self.model.has_disagreement_calibration)
        d = self.model.calibrate_disagreement(self.cal, cal_p)
        self.assertTrue(d.has_disagreement_calibration)
        self.assertFalse(self.model.has_disagreement_calibration)  # unchanged
        # It survives the model file.
        d = lw.Model.from_bytes(d.to_bytes())
        self.assertTrue(d.has_disagreement_calibration)
        alerts = []
        with lw.Monitor([d], outputs="prediction", disagreement_alpha=0.05, input_alpha=1e-9, aleatoric_alpha=None,
                        window=None, shift="off", on_alert=alerts.append) as mon:
            a = mon.assess(self.test[0], outputs=np.float32(test_p[0]))
            self.assertEqual(a.host_prediction, float(np.float32(test_p[0])))
            self.assertAlmostEqual(a.disagreement_distance, abs(a.host_prediction - a.prediction), places=12)
            self.assertIsNotNone(a.disagreement_p_value)
            b = mon.assess_batch(self.test, outputs=test_p.astype(np.float32))
            np.testing.assert_array_equal(b.host_prediction, test_p.astype(np.float32).astype(np.float64))
            np.testing.assert_array_equal(b.disagreement_distance, np.abs(b.host_prediction - b.prediction))
            np.testing.assert_array_equal(b.disagreement, b.disagreement_p_value <= 0.05)
            flagged = int(np.sum(b.disagreement))
            self.assertGreater(flagged, 4)
            self.assertLess(flagged, 37)
            self.assertEqual(b[7].disagreement_p_value, float(b.disagreement_p_value[7]))
            # The flagged inputs are where the MLP errs most.
            err = np.abs(test_p - self.test_y)
            self.assertGreater(err[b.disagreement].mean(), 2 * err[~b.disagreement].mean())
            with self.assertRaises(lw.ShapeError):
                mon.assess(self.test[0], outputs=np.zeros(2, np.float32))
            with self.assertRaises(lw.NonFiniteError):
                mon.assess(self.test[0], outputs=np.float32("nan"))
            mon.flush()
        kinds = [x.kind for x in alerts]
        self.assertEqual(kinds.count("disagreement"), flagged + bool(a.disagreement))
        with self.assertRaises(lw.ConfigurationError):
            lw.Monitor([d], outputs="prediction", output_count=3)
        with self.assertRaises(lw.ConfigurationError):
            lw.Monitor([d], outputs="prediction", disagreement_alpha=2.0)
        classifier = lw.fit(self.cal, labels=np.arange(len(self.cal)) % 3, family="tied")
        with self.assertRaises(lw.ConfigurationError):
            lw.Monitor([classifier], outputs="prediction")
        with self.assertRaises(lw.ConfigurationError):
            classifier.calibrate_disagreement(self.cal, cal_p)
        with self.assertRaises(lw.ShapeError):
            self.model.calibrate_disagreement(self.cal, cal_p[:-1])
        with self.assertRaises(lw.NonFiniteError):
            bad = cal_p.copy()
            bad[2] = np.inf
            self.model.calibrate_disagreement(self.cal, bad)
        with self.assertRaises(lw.DTypeError):
            self.model.calibrate_disagreement(self.cal, np.array(["x"] * len(self.cal)))

    def test_sharded_statistics_fit_the_same_model(self):
        """Three shards gathered with the whole training set's targets as binning, merged through their file bytes,
        fit the model one process fits (predictions and intervals to 1e-6 relative)."""
        cuts = [0, 300, 700, len(self.train)]
        parts = [
            lw.gather_statistics(
                self.train[a:b], targets=self.train_y[a:b], binning=self.train_y, first_index=a, target_bins=8,
                family="regression-tied", layer_name="h2",
            ).to_bytes()
            for a, b in zip(cuts, cuts[1:])
        ]
        merged = lw.merge_statistics(parts)
        self.assertEqual(merged.family, "regression-tied")
        self.assertEqual(merged.samples, len(self.train))
        sharded = merged.fit(self.cal, calibration_targets=self.cal_y)
        self.assertTrue(sharded.has_prediction_interval)
        a, b = self.model.score(self.test), sharded.score(self.test)
        np.testing.assert_allclose(b.prediction, a.prediction, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(b.predictive_spread, a.predictive_spread, rtol=1e-6, atol=1e-6)
        with self.assertRaises(lw.ConfigurationError):
            lw.gather_statistics(self.train[:10], targets=self.train_y[:10], family="regression")
        with self.assertRaises(lw.FitError):
            merged.merge(lw.gather_statistics(
                self.train[:10], targets=self.train_y[:10], binning=self.train_y[:10], first_index=len(self.train),
                target_bins=8, family="regression-tied", layer_name="h2",
            ))

    def test_unaligned_targets_are_taken(self):
        """Targets and binning at an address that is not a multiple of 8 (as arrays unpickled from another process,
        for example by Dask, can be) are copied, not refused: the same statistics as aligned ones."""
        def unaligned(a):
            raw = np.zeros(a.nbytes + 1, np.uint8)[1:]
            out = raw.view(a.dtype)
            out[:] = a
            self.assertFalse(out.flags.aligned)
            return out

        options = dict(target_bins=8, family="regression-tied", layer_name="h2")
        want = lw.gather_statistics(self.train, targets=self.train_y, binning=self.train_y, **options)
        got = lw.gather_statistics(self.train, targets=unaligned(self.train_y), binning=unaligned(self.train_y),
                                   **options)
        self.assertEqual(want.to_bytes()[:64], got.to_bytes()[:64])
        a, b = want.fit(self.cal, calibration_targets=self.cal_y), got.fit(self.cal, calibration_targets=unaligned(self.cal_y))
        np.testing.assert_array_equal(a.score(self.test).prediction, b.score(self.test).prediction)

    def test_bad_targets_are_refused(self):
        with self.assertRaises(lw.NonFiniteError):
            y = self.train_y.copy()
            y[4] = np.nan
            lw.fit(self.train, targets=y)
        with self.assertRaises(lw.ShapeError):
            lw.fit(self.train, targets=self.train_y[:-1])
        with self.assertRaises(lw.DTypeError):
            lw.fit(self.train, targets=np.array(["a"] * len(self.train)))
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(self.train, targets=self.train_y, family="tied")
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(self.train, family="regression")
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(self.train, targets=self.train_y, family="gda")  # an explicit class family is not overridden
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(self.train, labels=np.zeros(len(self.train), np.int64), targets=self.train_y)
        with self.assertRaises(lw.ConfigurationError):
            lw.fit(self.train, targets=self.train_y, target_bins=0)
        with self.assertRaises(lw.ConfigurationError):
            self.model.prediction_interval(1.0, 1.0, level=1.5)
        classifier = lw.fit(self.train, labels=(self.train_y > 0).astype(np.int64))
        with self.assertRaises(lw.ConfigurationError):
            classifier.prediction_interval(1.0, 1.0)
        self.assertTrue(np.all(np.isnan(classifier.score(self.test).prediction)))


if __name__ == "__main__":
    unittest.main()
