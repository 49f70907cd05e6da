#!/usr/bin/env python3
"""LatentWatch IMAGE evaluation data: real activations of a small CNN trained on Fashion-MNIST.

Data (all offline):
  Fashion-MNIST (Debian `dataset-fashion-mnist`, /usr/share/datasets/fashion-mnist, MIT/Expat).
  ID   : classes 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 5 Sandal, 7 Sneaker, 8 Bag
         (model label = index in ID_CLASSES, 0..6)
  OOD  : near -> ood_heldout: Fashion-MNIST test images of held-out classes 4 Coat, 6 Shirt,
                 9 Ankle boot (labels_ood_heldout = original Fashion-MNIST class id)
         far  -> ood_digits: scikit-learn's bundled 8x8 handwritten digits (UCI optdigits),
                 resized to 20x20 and centred in 28x28 like MNIST (labels = digit)
                 ood_patches: 28x28 grayscale crops of scikit-learn's bundled photos
                 (china.jpg, flower.jpg), random scale
                 ood_inverted: 255 - ID test images (labels = ID label of source image)
                 ood_noise: uniform noise images
Model: CNN conv(1->32)-BN-ReLU-pool / conv(32->64)-BN-ReLU-pool / conv(64->128)-BN-ReLU /
       global average pool / fc(128->128)-ReLU / fc(128->7).
Layers: conv2_gap (64, GAP of block-2 output), conv3_gap (128, GAP of block-3 output),
        fc (128, penultimate ReLU), logits (7).
"""
import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import gzip
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
SEED = 0
torch.manual_seed(SEED)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "image")
FM = "/usr/share/datasets/fashion-mnist"
ID_CLASSES = [0, 1, 2, 3, 5, 7, 8]
HELDOUT = [4, 6, 9]
NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Ankle boot"]
N_TRAIN_PER_CLASS = 5000   # from FMNIST train; the remaining 1000/class -> cal
N_OOD = 1000
EPOCHS = 8
TIME_BUDGET = 9 * 60       # seconds of training, hard cap
MEAN, STD = 0.2860, 0.3530


def idx_images(path):
    b = gzip.open(path).read()
    n, r, c = np.frombuffer(b[4:16], ">u4")
    return np.frombuffer(b[16:], np.uint8).reshape(n, r, c)


def idx_labels(path):
    return np.frombuffer(gzip.open(path).read()[8:], np.uint8).astype(np.int64)


class CNN(nn.Module):
    def __init__(self, n_classes):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.c2 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2))
        self.c3 = nn.Sequential(nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU())
        self.fc = nn.Linear(128, 128)
        self.drop = nn.Dropout(0.2)
        self.out = nn.Linear(128, n_classes)

    def forward(self, x, return_acts=False):
        h2 = self.c2(self.c1(x))
        h3 = self.c3(h2)
        g3 = h3.mean((2, 3))
        f = F.relu(self.fc(g3))
        logits = self.out(self.drop(f))
        if return_acts:
            return {"conv2_gap": h2.mean((2, 3)), "conv3_gap": g3, "fc": f, "logits": logits}
        return logits


def to_tensor(u8):
    return ((torch.from_numpy(np.ascontiguousarray(u8)).float() / 255.0 - MEAN) / STD).unsqueeze(1)


def make_digits(rng):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False).clamp(0, 1)
    x = F.pad(x, (4, 4, 4, 4))
    u8 = (x.squeeze(1).numpy() * 255).round().astype(np.uint8)
    idx = np.sort(rng.permutation(len(u8))[:N_OOD])
    return u8[idx], d.target[idx].astype(np.int64)


def make_patches(rng):
    from sklearn.datasets import load_sample_images
    imgs = [im.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) for im in load_sample_images().images]
    out = np.zeros((N_OOD, 28, 28), np.uint8)
    for i in range(N_OOD):
        im = imgs[i % len(imgs)]
        s = int(rng.integers(28, 113))
        y = int(rng.integers(0, im.shape[0] - s + 1))
        x = int(rng.integers(0, im.shape[1] - s + 1))
        crop = torch.from_numpy(np.ascontiguousarray(im[y:y + s, x:x + s]))[None, None]
        out[i] = F.interpolate(crop, size=(28, 28), mode="area")[0, 0].clamp(0, 255).round().numpy().astype(np.uint8)
    return out, np.full(N_OOD, -1, np.int64)


def main():
    t0 = time.time()
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    xtr = idx_images(f"{FM}/train-images-idx3-ubyte.gz")
    ytr = idx_labels(f"{FM}/train-labels-idx1-ubyte.gz")
    xte = idx_images(f"{FM}/t10k-images-idx3-ubyte.gz")
    yte = idx_labels(f"{FM}/t10k-labels-idx1-ubyte.gz")
    remap = {c: i for i, c in enumerate(ID_CLASSES)}

    tr_idx, cal_idx = [], []
    for c in ID_CLASSES:
        ii = np.flatnonzero(ytr == c)
        ii = ii[rng.permutation(len(ii))]
        tr_idx.append(ii[:N_TRAIN_PER_CLASS])
        cal_idx.append(ii[N_TRAIN_PER_CLASS:])
    tr_idx = np.concatenate(tr_idx)
    tr_idx = tr_idx[rng.permutation(len(tr_idx))]
    cal_idx = np.concatenate(cal_idx)
    cal_idx = cal_idx[rng.permutation(len(cal_idx))]
    te_idx = np.flatnonzero(np.isin(yte, ID_CLASSES))
    ho_idx = np.flatnonzero(np.isin(yte, HELDOUT))

    u8 = {"train": xtr[tr_idx], "cal": xtr[cal_idx], "test": xte[te_idx], "ood_heldout": xte[ho_idx]}
    labels = {"train": np.array([remap[c] for c in ytr[tr_idx]], np.int64),
              "cal": np.array([remap[c] for c in ytr[cal_idx]], np.int64),
              "test": np.array([remap[c] for c in yte[te_idx]], np.int64),
              "ood_heldout": yte[ho_idx].astype(np.int64)}
    u8["ood_digits"], labels["ood_digits"] = make_digits(rng)
    u8["ood_patches"], labels["ood_patches"] = make_patches(rng)
    inv = np.sort(rng.permutation(len(te_idx))[:N_OOD])
    u8["ood_inverted"], labels["ood_inverted"] = 255 - u8["test"][inv], labels["test"][inv]
    u8["ood_noise"] = rng.integers(0, 256, size=(N_OOD, 28, 28), dtype=np.uint8)
    labels["ood_noise"] = np.full(N_OOD, -1, np.int64)
    for k in u8:
        print(f"{k:14s} n={len(u8[k])}", flush=True)

    # ---- train ----
    model = CNN(len(ID_CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    X, Y = to_tensor(u8["train"]), torch.from_numpy(labels["train"])
    g = torch.Generator().manual_seed(SEED)
    steps_per_epoch = (len(X) + 127) // 128
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=EPOCHS * steps_per_epoch)
    epochs_done = 0
    for ep in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(X), generator=g)
        tot = 0.0
        for s in range(0, len(X), 128):
            b = perm[s:s + 128]
            xb = X[b]
            flip = torch.rand(len(b), generator=g) < 0.5  # horizontal flip augmentation
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = F.cross_entropy(model(xb), Y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(b)
        epochs_done += 1
        print(f"epoch {ep} loss {tot / len(X):.4f} ({time.time() - t0:.0f}s)", flush=True)
        if time.time() - t0 > TIME_BUDGET:
            print("time budget reached, stopping")
            break
    train_seconds = time.time() - t0
    torch.save(model.state_dict(), os.path.join(OUT, "cnn_state_dict.pt"))

    # ---- extract ----
    model.eval()
    acc = {}
    with torch.no_grad():
        for k in u8:
            x = to_tensor(u8[k])
            parts = [model(x[s:s + 1000], return_acts=True) for s in range(0, len(x), 1000)]
            for layer in parts[0]:
                a = torch.cat([p[layer] for p in parts]).numpy().astype(np.float32)
                np.save(os.path.join(OUT, f"{layer}_{k}.npy"), np.ascontiguousarray(a))
            np.save(os.path.join(OUT, f"labels_{k}.npy"), labels[k])
            if k in ("train", "cal", "test"):
                pred = torch.cat([p["logits"] for p in parts]).argmax(1).numpy()
                acc[k] = float((pred == labels[k]).mean())
    np.save(os.path.join(OUT, "images_test_first100_u8.npy"), u8["test"][:100])
    print("accuracy", acc)
    meta = {"id_classes_fmnist": ID_CLASSES, "id_class_names": [NAMES[c] for c in ID_CLASSES],
            "heldout_fmnist": HELDOUT, "accuracy": acc, "epochs": epochs_done,
            "train_seconds": round(train_seconds, 1),
            "splits": {k: int(len(v)) for k, v in u8.items()},
            "layers": {"conv2_gap": 64, "conv3_gap": 128, "fc": 128, "logits": len(ID_CLASSES)},
            "versions": {"torch": torch.__version__, "numpy": np.__version__,
                         "sklearn": __import__("sklearn").__version__},
            "seconds": round(time.time() - t0, 1)}
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
