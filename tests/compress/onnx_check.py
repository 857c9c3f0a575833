#!/usr/bin/env python3
"""Checks an ONNX file written by `shardlm export --format onnx` (compress).

1. onnx.checker.check_model(full_check=True): the graph is valid ONNX (opset,
   types and shapes inferred end to end).
2. A numpy evaluator for exactly the operators the exporter emits runs the graph
   on each case of a JSON file written by the C++ test and compares the logits
   with LibTorch's (max abs diff <= tol). python3-onnx 1.12 has no reference
   evaluator and onnxruntime is not packaged for Debian 12, hence this one.

usage: onnx_check.py MODEL.onnx CASES.json     (exit 0 = pass; prints the diffs)
"""
import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper

try:
    from math import erf as _erf
    _verf = np.vectorize(_erf, otypes=[np.float64])
except ImportError:  # pragma: no cover
    _verf = None


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def run(model, feeds):
    env = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    env.update(feeds)
    for n in model.graph.node:
        a = attrs(n)
        x = [env[i] if i else None for i in n.input]
        op = n.op_type
        if op == "Gather":
            y = np.take(x[0], x[1], axis=a.get("axis", 0))
        elif op == "Add":
            y = x[0] + x[1]
        elif op == "Mul":
            y = x[0] * x[1]
        elif op == "MatMul":
            y = np.matmul(x[0], x[1])
        elif op == "Shape":
            y = np.array(x[0].shape, dtype=np.int64)
        elif op == "Slice":
            starts, ends = x[1], x[2]
            axes = x[3] if len(x) > 3 and x[3] is not None else range(len(starts))
            sl = [slice(None)] * x[0].ndim
            for s, e, ax in zip(starts, ends, axes):
                sl[int(ax)] = slice(int(s), int(e))
            y = x[0][tuple(sl)]
        elif op == "Concat":
            y = np.concatenate(x, axis=a["axis"])
        elif op == "Reshape":
            shape = [x[0].shape[i] if d == 0 else int(d) for i, d in enumerate(x[1])]
            y = x[0].reshape(shape)
        elif op == "Transpose":
            y = np.transpose(x[0], a["perm"])
        elif op == "Softmax":
            ax = a.get("axis", -1)
            z = x[0] - x[0].max(axis=ax, keepdims=True)
            e = np.exp(z)
            y = e / e.sum(axis=ax, keepdims=True)
        elif op == "LayerNormalization":
            ax = a.get("axis", -1)
            axes = tuple(range(ax % x[0].ndim, x[0].ndim))
            mu = x[0].mean(axis=axes, keepdims=True)
            var = ((x[0] - mu) ** 2).mean(axis=axes, keepdims=True)
            y = (x[0] - mu) / np.sqrt(var + a.get("epsilon", 1e-5)) * x[1]
            if len(x) > 2 and x[2] is not None:
                y = y + x[2]
        elif op == "Tanh":
            y = np.tanh(x[0])
        elif op == "Erf":
            y = _verf(x[0]).astype(x[0].dtype)
        elif op == "Relu":
            y = np.maximum(x[0], 0)
        elif op == "Sigmoid":
            y = 1 / (1 + np.exp(-x[0]))
        else:
            raise SystemExit(f"onnx_check: operator {op} is not in the evaluator")
        if isinstance(y, np.ndarray) and y.dtype == np.float64 and x[0].dtype == np.float32:
            y = y.astype(np.float32)
        env[n.output[0]] = y
    return env[model.graph.output[0].name]


def main():
    model = onnx.load(sys.argv[1])
    onnx.checker.check_model(model, full_check=True)
    ops = sorted({n.op_type for n in model.graph.node})
    print("check_model: ok; opset", model.opset_import[0].version, "ops", " ".join(ops))
    cases = json.load(open(sys.argv[2]))
    worst = 0.0
    for c in cases["cases"]:
        ids = np.array(c["ids"], dtype=np.int64)
        want = np.array(c["logits"], dtype=np.float32).reshape(c["shape"])
        got = run(model, {"input_ids": ids})
        if got.shape != want.shape:
            print(f"shape {got.shape} != {want.shape}")
            return 1
        diff = float(np.abs(got.astype(np.float64) - want).max())
        print(f"ids {ids.shape}: max abs diff {diff:.3g}")
        worst = max(worst, diff)
    return 0 if worst <= cases["tol"] else 1


if __name__ == "__main__":
    sys.exit(main())
