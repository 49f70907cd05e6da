"""Exports the bundled digits MLP as ONNX: digits_mlp.onnx beside this file.

The network is Samples/Data/digits-mlp/mlp_weights.npz (64 -> 128 -> 64 -> 6, ReLU; see that folder's
README.md), written with onnx.helper as MatMul/Add/Relu nodes and a final Softmax:

    pixels [n, 64] -> h1 = Relu(pixels @ W1 + b1) [n, 128] -> h2 = Relu(h1 @ W2 + b2) [n, 64]
                   -> logits = h2 @ W3 + b3 [n, 6] -> probabilities = Softmax(logits)

The graph's outputs are `probabilities` and `logits`; `h1` and `h2` are named intermediate tensors, which
latentwatch.onnx exposes for monitoring. Run it with `python3 Samples/PythonInProcess/export_onnx.py` (needs
`pip install onnx`); the output is deterministic, so rerunning rewrites the same file.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WEIGHTS = os.path.join(ROOT, "Samples", "Data", "digits-mlp", "mlp_weights.npz")
OUTPUT = os.path.join(HERE, "digits_mlp.onnx")


def build_model(weights_path: str = WEIGHTS) -> Any:
    """The digits MLP as an ``onnx.ModelProto`` (opset 17, IR version 8, readable by onnxruntime 1.14 or later)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.load(weights_path)
    initializers = [numpy_helper.from_array(np.ascontiguousarray(w[k], dtype=np.float32), name=k)
                    for k in ("W1", "b1", "W2", "b2", "W3", "b3")]
    nodes = [
        helper.make_node("MatMul", ["pixels", "W1"], ["h1_matmul"], name="fc1_matmul"),
        helper.make_node("Add", ["h1_matmul", "b1"], ["h1_linear"], name="fc1_add"),
        helper.make_node("Relu", ["h1_linear"], ["h1"], name="act1"),
        helper.make_node("MatMul", ["h1", "W2"], ["h2_matmul"], name="fc2_matmul"),
        helper.make_node("Add", ["h2_matmul", "b2"], ["h2_linear"], name="fc2_add"),
        helper.make_node("Relu", ["h2_linear"], ["h2"], name="act2"),
        helper.make_node("MatMul", ["h2", "W3"], ["logits_matmul"], name="fc3_matmul"),
        helper.make_node("Add", ["logits_matmul", "b3"], ["logits"], name="fc3_add"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        inputs=[helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 64])],
        outputs=[
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 6]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 6]),
        ],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        producer_name="latentwatch-samples",
        opset_imports=[helper.make_opsetid("", 17)],
        doc_string="Digits MLP of Samples/Data/digits-mlp (64 -> 128 -> 64 -> 6, ReLU), for LatentWatch samples",
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", default=OUTPUT, help="where to write the .onnx file")
    args = ap.parse_args()
    import onnx

    model = build_model()
    onnx.save(model, args.output)
    print(f"wrote {args.output} ({os.path.getsize(args.output)} bytes)")


if __name__ == "__main__":
    main()
