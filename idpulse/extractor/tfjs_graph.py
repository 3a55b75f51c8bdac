"""Reading a tfjs graph model (the format of `faceres.json` + `faceres.bin`; used by `faceres_convert`).

A tfjs graph model is a JSON file with `modelTopology.node` (TensorFlow's GraphDef nodes: name, op,
inputs, attrs with strings base64-encoded) and `weightsManifest`: groups of binary files whose bytes
hold, in order, the values of every `Const` node, each described by name, shape, dtype and an
optional `quantization` (float16: 2 bytes a value; uint8/uint16: affine `q * scale + min`).
`read_tfjs_graph` decodes all of them to numpy float32/int32 arrays, checking that the bytes add up.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, UserError

FLOAT_BYTES = {"float32": 4, "int32": 4, "bool": 1}
QUANT_BYTES = {"float16": 2, "uint8": 1, "uint16": 2}


@dataclass
class TfjsGraph:
    """A tfjs graph model: its GraphDef nodes (in file order), decoded weights by Const name, and
    the signature's input and output names (may be empty)."""
    nodes: list[dict]
    weights: dict[str, np.ndarray]
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def _check_room(data: bytes, at: int, size: int, name: str) -> None:
    """Raises a one-line CheckpointError when weight `name`'s `size` bytes at `at` run past `data`."""
    if at + size > len(data):
        raise CheckpointError(f"the weight files end inside weight {name}: they hold {len(data)} bytes, "
                              "the manifest needs more (a truncated .bin, or one of another model)")


def _decode_weights(manifest: list, folder: Path) -> dict[str, np.ndarray]:
    """The manifest's groups, read from their files under `folder` -> {weight name: float32/int32/bool
    array of the weight's shape}; each group's files must hold exactly its weights' bytes."""
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        data = b""
        for p in group.get("paths", []):
            f = (folder / p).resolve()
            if folder.resolve() not in f.parents:
                raise CheckpointError(f"weight file {p!r} of the manifest is outside {folder}")
            if not f.is_file():
                raise CheckpointError(f"weight file {f} named by the manifest is missing (copy it beside the .json)")
            data += f.read_bytes()
        at = 0
        for w in group.get("weights", []):
            name, shape, dtype = w["name"], [int(s) for s in w.get("shape", [])], w.get("dtype", "float32")
            n = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q:
                qd = q.get("dtype")
                if qd not in QUANT_BYTES:
                    raise CheckpointError(f"weight {name}: quantization dtype {qd!r} is not supported "
                                          f"(float16, uint8, uint16)")
                size = n * QUANT_BYTES[qd]
                _check_room(data, at, size, name)
                raw = data[at:at + size]
                if qd == "float16":
                    v = np.frombuffer(raw, "<f2", count=n).astype(np.float32)  # fp16 -> fp32 is exact
                else:
                    v = np.frombuffer(raw, "<u1" if qd == "uint8" else "<u2", count=n).astype(np.float32)
                    v = v * np.float32(q["scale"]) + np.float32(q["min"])
                if dtype == "int32":
                    v = np.round(v).astype(np.int32)
            else:
                if dtype not in FLOAT_BYTES:
                    raise CheckpointError(f"weight {name}: dtype {dtype!r} is not supported (float32, int32, bool)")
                size = n * FLOAT_BYTES[dtype]
                _check_room(data, at, size, name)
                v = np.frombuffer(data[at:at + size], {"float32": "<f4", "int32": "<i4", "bool": "?"}[dtype], count=n)
            if name in out:
                raise CheckpointError(f"weight {name} appears twice in the manifest")
            out[name] = v.reshape(shape).copy()
            at += size
        if at != len(data):
            raise CheckpointError(f"the weight files hold {len(data)} bytes but the manifest describes {at} "
                                  "(a .bin that does not belong to this .json)")
    return out


def read_tfjs_graph(folder: str | Path, name: str = "faceres") -> TfjsGraph:
    """`<folder>/<name>.json` and the weight files its manifest names -> TfjsGraph."""
    folder = Path(folder)
    path = folder / f"{name}.json"
    if not path.is_file():
        raise UserError(f"{path} not found: give the folder holding {name}.json and {name}.bin "
                        "(package/models/ of the unpacked npm package)")
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path} as JSON ({type(e).__name__}: {e})") from None
    if not isinstance(spec, dict) or spec.get("format") != "graph-model" or "weightsManifest" not in spec:
        raise CheckpointError(f"{path} is not a tfjs graph model (format 'graph-model' with a weightsManifest)")
    nodes = spec.get("modelTopology", {}).get("node", [])
    sig = spec.get("signature") or {}
    return TfjsGraph(nodes=nodes, weights=_decode_weights(spec["weightsManifest"], folder),
                     inputs=[v.get("name", k) for k, v in (sig.get("inputs") or {}).items()],
                     outputs=[v.get("name", k) for k, v in (sig.get("outputs") or {}).items()])


def data_inputs(node: dict) -> list[str]:
    """Input node names without control inputs (^x) and output indices (x:0)."""
    return [i.split(":")[0] for i in node.get("input", []) if not i.startswith("^")]


def node_attr(node: dict, key: str, default=None):
    """A GraphDef attr of `node` as a Python value (str, list of int/str, bool, int, float), or
    `default` when absent or of another kind."""
    a = node.get("attr", {}).get(key)
    if a is None:
        return default
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "list" in a:
        lst = a["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        return []
    if "b" in a:
        return bool(a["b"])
    if "i" in a:
        return int(a["i"])
    if "f" in a:
        return float(a["f"])
    return default
