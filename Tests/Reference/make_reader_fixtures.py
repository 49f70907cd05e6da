"""Reader and metric fixtures for LatentWatchTests (ReaderTests, MetricTests).

Writes Tests/Fixtures/readers/: the first 300 rows of the bundled digits-MLP h2 training activations and their
labels, as .npy, .npz (numpy.savez: stored members), .npz (numpy.savez_compressed: deflated members) and
safetensors (the `safetensors` package's own writer), plus float16 and float64 copies; and metrics.json with
scikit-learn's roc_auc_score, average_precision_score and roc_curve-based FPR at 95 % TPR on seeded scores.

Run from the repository root:  python3 Tests/Reference/make_reader_fixtures.py
Needs numpy, scikit-learn, safetensors (pip install numpy scikit-learn safetensors).
"""
import json
import os

import numpy as np
from safetensors.numpy import save_file
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

root = os.path.join(os.path.dirname(__file__), "..", "..")
src = os.path.join(root, "Samples", "Data", "digits-mlp")
out = os.path.join(root, "Tests", "Fixtures", "readers")
os.makedirs(out, exist_ok=True)

x = np.load(os.path.join(src, "train_h2.npy"))[:300].astype(np.float32)
y = np.load(os.path.join(src, "train_labels.npy"))[:300].astype(np.int64)
np.save(os.path.join(out, "h2.npy"), x)
np.save(os.path.join(out, "labels.npy"), y)
np.save(os.path.join(out, "h2_f16.npy"), x.astype(np.float16))
np.save(os.path.join(out, "h2_f64.npy"), x.astype(np.float64))
np.savez(os.path.join(out, "stored.npz"), h2=x, labels=y)
np.savez_compressed(os.path.join(out, "deflated.npz"), h2=x, labels=y)
save_file({"h2": x, "labels": y}, os.path.join(out, "h2.safetensors"))

rng = np.random.default_rng(7)
cases = []
for n_neg, n_pos, shift, ties in [(500, 300, 1.0, False), (200, 400, 0.3, True), (50, 50, 2.5, False)]:
    neg = rng.normal(0, 1, n_neg)
    pos = rng.normal(shift, 1, n_pos)
    if ties:
        neg = np.round(neg, 1)
        pos = np.round(pos, 1)
    s = np.concatenate([neg, pos])
    t = np.concatenate([np.zeros(n_neg), np.ones(n_pos)])
    fpr, tpr, _ = roc_curve(t, s)
    cases.append({
        "negatives": neg.tolist(),
        "positives": pos.tolist(),
        "auroc": roc_auc_score(t, s),
        "aupr": average_precision_score(t, s),
        "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
    })
with open(os.path.join(out, "metrics.json"), "w") as f:
    json.dump({"generator": "Tests/Reference/make_reader_fixtures.py", "cases": cases}, f)
print("wrote", sorted(os.listdir(out)))

# Output summaries (maximum softmax probability, softmax entropy, energy) of the bundled MLP's test logits, by scipy.
from scipy.special import logsumexp, softmax
from scipy.stats import entropy

logits = np.load(os.path.join(src, "test_logits.npy")).astype(np.float32)[:50]
p = softmax(logits.astype(np.float64), axis=1)
with open(os.path.join(out, "outputs.json"), "w") as f:
    json.dump({
        "generator": "Tests/Reference/make_reader_fixtures.py",
        "logits": logits.astype(np.float64).tolist(),
        "predicted": np.argmax(logits, axis=1).tolist(),
        "confidence": p.max(axis=1).tolist(),
        "entropy": entropy(p, axis=1).tolist(),
        "energy": (-logsumexp(logits.astype(np.float64), axis=1)).tolist(),
    }, f)
print("wrote outputs.json")
