"""Writes the fuzzers' seed corpora (Tests/Fuzz/seeds/<target>/): small valid inputs of every format, so the
fuzzer starts inside each parser. Model and recording seeds are written by the `latentwatch` binary given as the
first argument; the rest by numpy. Run from the repository root:
    python3 Tests/Fuzz/make_seeds.py .build/debug/latentwatch"""
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

ROOT = "Tests/Fuzz/seeds"


def write(target: str, name: str, data: bytes) -> None:
    os.makedirs(f"{ROOT}/{target}", exist_ok=True)
    with open(f"{ROOT}/{target}/{name}", "wb") as f:
        f.write(data)


def npy(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def npz(arrays: dict, compressed: bool) -> bytes:
    b = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(b, **arrays)
    return b.getvalue()


def safetensors(arrays: dict) -> bytes:
    header, data = {}, b""
    codes = {np.float32: "F32", np.float16: "F16", np.float64: "F64", np.int64: "I64", np.int32: "I32"}
    for k, a in arrays.items():
        raw = np.ascontiguousarray(a).tobytes()
        header[k] = {"dtype": codes[a.dtype.type], "shape": list(a.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def frame(t: int, body: bytes, flags: int = 0) -> bytes:
    return struct.pack("<IBBH", len(body), t, flags, 0) + body


def string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<H", len(b)) + b


def wire_host_seed(hello: bytes, layers: bytes) -> bytes:
    """Protocol 1.2: an OBSERVE of 2 inputs with the host's predictions (flags reply | predictions), and an
    ASSESSMENT of one row with the prediction and host fields (flags 3) of 2 layers."""
    observe = frame(0x10, struct.pack("<QIH", 3, 2, 2) + string("") + string("") + layers
                    + np.array([1.5, -2.0], dtype="<f4").tobytes(), flags=5)
    row = struct.pack("<BBHiQddddd", 0, 16, 0, -1, 9, 0.5, 0.1, 0.2, float("nan"), 0.0)
    row += np.array([1.0, 0.5, 0.3, 0.0, 2.0, 1.5, 0.5, 0.004, 3.0, 0.2, 4.0, 0.1], dtype="<f8").tobytes()
    assessment = frame(0x82, struct.pack("<QIH", 3, 1, 2) + row, flags=3)
    return hello + observe + assessment


def main() -> None:
    latentwatch = sys.argv[1]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    labels = np.array([0, 1, 0, 1, 2, 2], dtype=np.int64)
    write("tensor", "f32.npy", npy(x))
    write("tensor", "f16.npy", npy(x.astype(np.float16)))
    write("tensor", "f64_3d.npy", npy(rng.normal(size=(2, 2, 3))))
    write("tensor", "labels_i64.npy", npy(labels))
    write("tensor", "i32.npy", npy(labels.astype(np.int32)))
    write("tensor", "stored.npz", npz({"x": x, "labels": labels}, compressed=False))
    write("tensor", "deflated.npz", npz({"x": x, "labels": labels}, compressed=True))
    write("tensor", "mixed.safetensors", safetensors({"x": x, "labels": labels, "h": x.astype(np.float16)}))

    with tempfile.TemporaryDirectory() as d:
        train = rng.normal(size=(60, 3)).astype(np.float32) + np.repeat(np.eye(3, dtype=np.float32) * 3, 20, axis=0)
        np.save(f"{d}/train.npy", train)
        np.save(f"{d}/labels.npy", np.repeat(np.arange(3), 20).astype(np.int64))
        for family, extra in [("gda", []), ("tied", []), ("gmm-diag", ["--components", "2"])]:
            lab = [] if family.startswith("gmm") else ["--labels", f"{d}/labels.npy"]
            subprocess.run([latentwatch, "fit", "--activations", f"{d}/train.npy", *lab, "--family", family,
                            *extra, "--output", f"{d}/m.lwm"], check=True, capture_output=True)
            write("model", f"{family}.lwm", open(f"{d}/m.lwm", "rb").read())
        subprocess.run([latentwatch, "fit", "--activations", f"{d}/train.npy", "--labels", f"{d}/labels.npy",
                        "--precision", "float16", "--pca", "2", "--output", f"{d}/h.lwm"], check=True,
                       capture_output=True)
        write("model", "gda_f16_pca.lwm", open(f"{d}/h.lwm", "rb").read())
        # A neighbour index (integer codes in 4 cells) and its combined calibration.
        np.save(f"{d}/cal.npy", train[::3] + 0.1)
        subprocess.run([latentwatch, "fit", "--activations", f"{d}/train.npy", "--labels", f"{d}/labels.npy",
                        "--calibration", f"{d}/cal.npy", "--neighbours", "16", "--output", f"{d}/n.lwm"],
                       check=True, capture_output=True)
        write("model", "gda_neighbours.lwm", open(f"{d}/n.lwm", "rb").read())
        # Shards' statistics (`fit --statistics-only`): class Gaussians with a fixed shrinkage and PCA, tied.
        for name, extra in [("gda_pca", ["--family", "gda", "--pca", "2", "--regularization", "0.1"]),
                            ("tied", ["--family", "tied", "--first-index", "7"])]:
            subprocess.run([latentwatch, "fit", "--activations", f"{d}/train.npy", "--labels", f"{d}/labels.npy",
                            "--statistics-only", *extra, "--output", f"{d}/s.lws"], check=True, capture_output=True)
            write("statistics", f"{name}.lws", open(f"{d}/s.lws", "rb").read())
        # A regression model's shard: targets binned on all of them (4 bins).
        np.save(f"{d}/targets.npy", train[:, 0].astype(np.float64) * 10)
        subprocess.run([latentwatch, "fit", "--activations", f"{d}/train.npy", "--targets", f"{d}/targets.npy",
                        "--binning-targets", f"{d}/targets.npy", "--target-bins", "4", "--statistics-only",
                        "--output", f"{d}/t.lws"], check=True, capture_output=True)
        write("statistics", "regression.lws", open(f"{d}/t.lws", "rb").read())
        # A sharded mixture fit: a shard's statistics (with its reservoir sample), round 1, and an E-step against it.
        lw = lambda *a: subprocess.run([latentwatch, *a], check=True, capture_output=True)
        lw("fit", "--activations", f"{d}/train.npy", "--family", "gmm-diag", "--components", "2", "--pca", "2",
           "--layer", "z", "--statistics-only", "--output", f"{d}/g.lws")
        write("statistics", "gmm_diag_pca.lws", open(f"{d}/g.lws", "rb").read())
        lw("merge", f"{d}/g.lws", "--output", f"{d}/r.lws")
        lw("fit", "--activations", f"{d}/train.npy", "--mixture-round", f"{d}/r.lws", "--output", f"{d}/e.lws")
        lw("merge", f"{d}/e.lws", "--mixture-round", f"{d}/r.lws", "--output", f"{d}/r.lws")
        write("statistics", "mixture_round.lws", open(f"{d}/r.lws", "rb").read())
        lw("fit", "--activations", f"{d}/train.npy", "--mixture-round", f"{d}/r.lws", "--output", f"{d}/e.lws")
        write("statistics", "mixture_step.lws", open(f"{d}/e.lws", "rb").read())
        write("capi", "load-mixture-round", bytes([4]) + open(f"{d}/r.lws", "rb").read())
        # The C interface's statistics operation (4), on the tied statistics.
        write("capi", "load-statistics", bytes([4]) + open(f"{d}/s.lws", "rb").read())
        # The C interface's target: an operation byte, then its operands (Sources/latentwatch-fuzz/FuzzCAPI.swift).
        write("capi", "load-model", bytes([0]) + open(f"{d}/h.lwm", "rb").read())
        np.save(f"{d}/small.npy", train[:5])
        subprocess.run([latentwatch, "record", "--input", f"z={d}/small.npy", "--output", f"{d}/r.lwr",
                        "--chunk", "2"], check=True, capture_output=True)
        write("recording", "three_chunks.lwr", open(f"{d}/r.lwr", "rb").read())
        subprocess.run([latentwatch, "record", "--input", f"z={d}/small.npy", "--output", f"{d}/h.lwr",
                        "--dtype", "float16"], check=True, capture_output=True)
        write("recording", "f16.lwr", open(f"{d}/h.lwr", "rb").read())

    hello = frame(0x01, b"LWP1" + struct.pack("<HH", 1, 0) + string("") + string("seed"))
    layers = struct.pack("<I", 4) + np.ones(8, dtype=np.float32).tobytes() + struct.pack("<I", 3) + np.ones(6, dtype=np.float32).tobytes()
    observe = frame(0x10, struct.pack("<QIH", 1, 2, 2) + string("a") + string("") + layers, flags=1)
    half = struct.pack("<I", 4) + np.ones(4, dtype=np.float16).tobytes() + struct.pack("<I", 3) + np.ones(3, dtype=np.float16).tobytes()
    observe_half = frame(0x10, struct.pack("<QIH", 2, 1, 2) + string("") + half, flags=2)
    write("wire", "hello_observe_sync_bye", hello + observe + observe_half + frame(0x11, struct.pack("<Q", 7)) + frame(0x12, b""))
    write("wire", "hello_only", hello)
    write("wire", "observe_predictions_assessment_host", wire_host_seed(hello, layers))

    # `latentwatch serve --config FILE`: JSON objects of the serve options.
    write("config", "full.json", json.dumps({
        "model": ["a.lwm", "b.lwm"], "layer": ["h1", "h2"], "socket": "/tmp/lw.sock", "tcp": "127.0.0.1:7000",
        "http": "127.0.0.1:9464", "alerts": "alerts.jsonl", "log-alerts": True, "max-frame-bytes": 1048576,
        "max-rows": 64, "ack-every": 16, "queue-bytes": 67108864, "connection-queue-bytes": 8388608,
        "when-full": "reject", "max-reply-bytes": 1048576, "max-connections": 64, "handshake-timeout": 10,
        "alpha": 0.01, "aleatoric-alpha": 0.01, "window": 200, "window-level": 0.0001, "shift": "anytime",
        "delta": 0.01, "fusion": "cauchy", "verbose": False}).encode())
    write("config", "minimal.json", json.dumps({"model": "m.lwm", "no-socket": True, "http": "127.0.0.1:0"}).encode())
    write("config", "change.json", json.dumps({"model": ["m.lwm"], "shift": "change", "mean-run-length": 10000,
                                                "window": 0, "when-full": "drop"}).encode())

    floats = np.array([0.1, 0.2, 0.3, 0.4, 0.5, np.nan, 0.7, 0.8], dtype="<f4").tobytes()
    write("capi", "score-batch", bytes([1, 0, 2, 8, 0]) + floats + bytes([0, 0]))
    l0 = np.array([0.1, 0.2, 0.3, 0.4], dtype="<f4").tobytes()
    l1 = np.array([1, 2, 3], dtype="<f4").tobytes()
    write("capi", "assess", bytes([2, 2, 1, 1, 4, 1]) + l0 + bytes([3, 1]) + l1 + bytes([1, 5]) + b"req-1" + bytes([0]))
    write("capi", "fit", bytes([3, 1, 4, 30, 1]) + bytes((i * 37) % 256 for i in range(120)) + bytes(range(30))
          + bytes([1, 0, 0, 0, 0, 0, 8, 1]))


if __name__ == "__main__":
    main()
