"""An ONNX graph (torch.onnx.export, tf2onnx, hand-built) read into a chain of layers whose
weights are already in Keras order: LSTM / GRU, Dense, activations, one time step.

How: every node whose inputs are all constants is folded (onnx's reference evaluator), which
removes the Shape / Gather / Expand glue both torch exporters put around the recurrent ops to
build zero initial states. What is left is followed tensor by tensor with the role of each
axis (T, C, a direction axis D, unit axes "1"), so that Transpose / Squeeze / Reshape / Gather /
Slice glue is checked, not guessed. The input is batch 1: batch is a unit axis like any other.
A node outside what has a faithful tf-keras rebuild raises Refusal naming the node.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from export.importers.onnx_layers import HANDLERS as _LAYER_HANDLERS, choose_direction as _choose_direction
from export.importers.onnx_layers import concat_directions as _concat_directions
from export.importers.onnx_layers import materialize as _materialize, time_step as _time_step

from export.importers.onnx_ir import Flow, Refusal, refuse_before_recurrent, const as _const, flow as _flow, node_name as _name

_PASS_THROUGH = {"Identity", "Dropout"}   # Dropout is the identity at inference


@dataclass
class ImportedGraph:
    layers: list
    input_name: str
    input_shape: tuple          # physical, as the graph takes it (batch 1)
    batch_first: bool           # False: the graph takes [T, 1, F]
    timesteps: int
    features: int
    output_perm: tuple          # physical output axes -> (unit axes, T, C) order
    output_shape: tuple         # Keras output shape, batch included
    notes: list = field(default_factory=list)
    state_inputs: tuple = ()    # (name, shape, dtype) of initial-state inputs, fed as zeros


def read_graph(model, data_shape=None) -> ImportedGraph:
    """The layer chain of an onnx ModelProto. data_shape ([N, T, F] of the user's windows)
    pins dynamic input dimensions; the batch axis is pinned to 1."""
    g = model.graph
    inputs, states = _split_inputs(g)
    if len(g.output) != 1:
        raise Refusal("(model)", "outputs", f"{len(g.output)} graph outputs: export takes one output "
                      "(return only the prediction from forward(), not (out, (h, c)))")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 3:
        raise Refusal("(model)", "input", f"input '{inputs[0].name}' has rank {len(dims)}: "
                      "windows are [batch, T, F] or [T, batch, F]")
    last_error = None
    for shape in _candidate_shapes(dims, data_shape):
        try:
            return _with_states(_walk(model, inputs[0].name, shape, dims, states), states)
        except _WrongGuess as e:
            last_error = e
    raise Refusal("(model)", "input", f"input '{inputs[0].name}' has dynamic dimensions {dims} that "
                  f"{'the data ' + str(list(data_shape)) if data_shape else 'no data'} can pin"
                  + (f" ({last_error})" if last_error else ""))


# Ops an initial-state input may pass through on its way to a recurrent node's initial_h /
# initial_c (torch's exporters Slice one layer's state out of h0 [layers * directions, 1, H]).
_STATE_GLUE = {"Slice", "Gather", "Squeeze", "Unsqueeze", "Reshape", "Transpose", "Identity", "Cast", "Split",
               "Expand", "Concat"}
_STATE_SLOTS = {"LSTM": (5, 6), "GRU": (5,)}   # ONNX input positions of initial_h (and initial_c)


def _split_inputs(g):
    """(the window input, the initial-state inputs as (name, shape, dtype)). Extra graph inputs
    are accepted only where each reaches nothing but LSTM / GRU initial states (model(x, (h0, c0))):
    the rebuild takes the window alone and starts from zero states, and the source model is run
    with zeros fed for them, so the verification compares like with like."""
    from onnx import helper
    inits = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    uses = {}
    for node in g.node:
        for slot, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, slot))
    windows = [i for i in inputs if not _feeds_only_initial_states(uses, i.name)]
    if len(windows) != 1:
        names = ", ".join(i.name for i in windows) or "none"
        raise Refusal("(model)", "inputs", f"{len(windows)} graph inputs used as data ({names}): export "
                      "feeds one input, the windows; any other input may only be an LSTM / GRU initial "
                      "state h0 / c0 (fed as zeros)")
    states = []
    for i in inputs:
        if i is not windows[0]:
            dims = [d.dim_value if d.HasField("dim_value") else 1 for d in i.type.tensor_type.shape.dim]
            dtype = helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
            states.append((i.name, tuple(dims), np.dtype(dtype).name))
    return windows, tuple(states)


def _feeds_only_initial_states(uses, name):
    """Whether every path from tensor `name` ends at an LSTM / GRU initial state (or a Shape)."""
    frontier, seen = [name], {name}
    while frontier:
        for node, slot in uses.get(frontier.pop(), []):
            if slot in _STATE_SLOTS.get(node.op_type, ()) or node.op_type == "Shape":
                continue
            if node.op_type not in _STATE_GLUE or (slot != 0 and node.op_type != "Concat"):
                return False
            fresh = [o for o in node.output if o and o not in seen]
            seen.update(fresh)
            frontier += fresh
    return name in uses


def _with_states(graph, states):
    if states:
        graph.state_inputs = states
        graph.notes.append(f"h0/c0 inputs {', '.join(repr(n) for n, _, _ in states)} fed as zeros: the rebuild "
                           "takes the window only and starts from zero states; it was verified against "
                           "the source run with zeros for them")
    return graph


class _WrongGuess(Exception):
    """A pinning of dynamic input dimensions that the graph contradicts."""


def _candidate_shapes(dims, data_shape):
    """Physical input shapes to try, batch pinned to 1. One of axes 0 / 1 is the batch, the
    other time: a static 1 beside a free axis is the batch, a static length beside one is time;
    two free axes are tried both ways (the recurrent node's layout then decides)."""
    if None not in dims:
        return [tuple(dims)]
    t = data_shape[1] if data_shape else None
    f = dims[2] if dims[2] is not None else (data_shape[2] if data_shape else None)
    free = [a for a in (0, 1) if dims[a] is None]
    if len(free) == 1:
        other = 1 - free[0]
        batch_axes = [other] if dims[other] == 1 else [free[0]]
    else:
        batch_axes = [0, 1]
    out = []
    for batch_axis in batch_axes:
        shape = list(dims[:2]) + [f]
        shape[batch_axis] = 1
        if shape[1 - batch_axis] is None:
            shape[1 - batch_axis] = t
        if None not in shape:
            out.append(tuple(shape))
    return out


class _Blocked:
    """The value of a tensor downstream of a refused node: not followed further."""


_BLOCKED = _Blocked()


def _walk(model, input_name, shape, dims, states=()):
    from onnx import numpy_helper
    g = model.graph
    values = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    values[input_name] = Flow((), (0, 1, 2), tuple(shape))
    values.update({name: np.zeros(s, dtype) for name, s, dtype in states})   # h0 / c0 inputs: zeros
    values[""] = None
    state, refused = {"layout": None}, []
    for node in g.node:
        ins = [(values[n] if n in values else _missing(node, n)) if n else None for n in node.input]
        outs = _step(node, ins, state, refused)
        for name, v in zip(node.output, outs):
            values[name] = v
    if refused:   # every refused node, not only the first: a lint names them all
        raise Refusal(*refused[0], more=refused[1:])
    out = values.get(g.output[0].name)
    if not isinstance(out, Flow):
        raise Refusal("(model)", "output", "the output does not depend on the input")
    if state["layout"] is None:
        raise Refusal("(model)", "graph", "no LSTM or GRU node: nothing recurrent to rebuild")
    out = _materialize(out, "output")
    return _finish(out, input_name, shape, state, dims)


def _step(node, ins, state, refused):
    """The node's output values; a refused node is recorded in `refused` and blocks what follows."""
    blocked = [_BLOCKED] * len(node.output)
    if any(v is _BLOCKED for v in ins):
        if node.op_type not in _HANDLERS and node.op_type not in _SUPPORTED:
            refused.append((_name(node), node.op_type, _outside(node)))
        return blocked
    handler = _HANDLERS.get(node.op_type)
    try:
        if all(isinstance(v, np.ndarray) or v is None for v in ins) and node.op_type not in _GRAPH_OPS:
            return _fold(node, ins)
        if handler is None:
            raise Refusal(_name(node), node.op_type, _outside(node))
        return handler(node, ins, _attrs(node), state)
    except Refusal as r:
        refused.extend(r.rows())
        return blocked


def _outside(node):
    return f"op {node.op_type} is outside the supported set ({', '.join(sorted(_SUPPORTED))})"


def _finish(out, input_name, shape, state, dims):
    batch_first, t_axis = state["layout"]
    if None in dims and dims[t_axis] is not None and shape[t_axis] != dims[t_axis]:
        raise _WrongGuess("time axis")
    order = [i for i, r in enumerate(out.roles) if r == "1"] + \
            [i for r in ("T", "C") for i, rr in enumerate(out.roles) if rr == r]
    if len(order) != len(out.roles) or [r for r in out.roles if r not in ("1", "T", "C")]:
        raise Refusal("(model)", "output", f"output axes {out.roles} are not [batch, (T,) C]")
    keras_shape = (1,) + tuple(out.shape[i] for i in order if out.roles[i] != "1")
    if len(keras_shape) == 1:
        keras_shape = (1, 1)
    return ImportedGraph(list(out.chain), input_name, tuple(shape), batch_first, int(shape[t_axis]),
                         int(shape[2]), tuple(order), keras_shape)


def _missing(node, name):
    raise Refusal(_name(node), node.op_type, f"input '{name}' is not produced by any earlier node")


def _attrs(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _fold(node, ins):
    """Evaluate a node on constants (the exporters' shape arithmetic, Constant nodes)."""
    from onnx.reference import ReferenceEvaluator
    try:
        feeds = {n: v for n, v in zip(node.input, ins) if n}
        outs = ReferenceEvaluator(node).run(None, feeds)
    except Exception as e:  # noqa: BLE001 - one line naming the node
        raise Refusal(_name(node), node.op_type, f"cannot evaluate on constants: {type(e).__name__}: "
                      f"{' '.join(str(e).split())[:120]}")
    return [np.asarray(o) for o in outs]


# -- glue -----------------------------------------------------------------------------------
def _on_shape(node, ins, attrs, state):
    x = _flow(node, ins[0])
    return [np.array(x.shape, np.int64)]


def _on_transpose(node, ins, attrs, state):
    x = _flow(node, ins[0])
    perm = attrs.get("perm", list(reversed(range(len(x.roles)))))
    return [replace(x, roles=tuple(x.roles[p] for p in perm), shape=tuple(x.shape[p] for p in perm))]


def _axes(node, ins, attrs, rank):
    axes = attrs.get("axes")
    if axes is None and len(ins) > 1 and ins[1] is not None:
        axes = _const(node, ins[1], "axes").tolist()
    return None if axes is None else [a % rank for a in axes]


def _on_squeeze(node, ins, attrs, state):
    x = _flow(node, ins[0])
    axes = _axes(node, ins, attrs, len(x.roles))
    if axes is None:
        axes = [i for i, s in enumerate(x.shape) if s == 1]
    for a in axes:
        if x.shape[a] != 1:
            raise Refusal(_name(node), "Squeeze", f"axis {a} has size {x.shape[a]}")
        if x.roles[a] == "D":   # a one-direction layer's directions axis
            x = _choose_direction(node, x, a, 0)
    keep = [i for i in range(len(x.roles)) if i not in axes]
    return [replace(x, roles=tuple(x.roles[i] for i in keep), shape=tuple(x.shape[i] for i in keep))]


def _input_stage(x):
    return any(isinstance(r, int) for r in x.roles)


def _on_unsqueeze(node, ins, attrs, state):
    x = _flow(node, ins[0])
    axes = sorted(_axes(node, ins, attrs, len(x.roles) + len(attrs.get("axes", ins[1] if len(ins) > 1 else []))))
    roles, shape = list(x.roles), list(x.shape)
    for a in axes:
        roles.insert(a, "1")
        shape.insert(a, 1)
    return [replace(x, roles=tuple(roles), shape=tuple(shape))]


def _on_reshape(node, ins, attrs, state):
    x = _flow(node, ins[0])
    target = [int(v) for v in _const(node, ins[1], "the shape")]
    target = [x.shape[i] if v == 0 and not attrs.get("allowzero") else v for i, v in enumerate(target)]
    if -1 in target:
        known = int(np.prod([v for v in target if v != -1]))
        target[target.index(-1)] = int(np.prod(x.shape)) // max(known, 1)
    if tuple(target) == tuple(x.shape):   # tf2onnx's [-1, T, F] on the input: keep every role (F may be 1)
        return [x]
    core = [(r, s) for r, s in zip(x.roles, x.shape) if s != 1]
    if "D" in x.roles and x.shape[x.roles.index("D")] == 1:   # one direction: drop its axis
        x = _choose_direction(node, x, x.roles.index("D"), 0)
        core = [(r, s) for r, s in zip(x.roles, x.shape) if s != 1]
    merged = _merge_directions(core)
    if merged is not None and [s for s in target if s != 1] == [s for _, s in merged]:
        x = _concat_directions(node, x)
        core = merged
    elif [s for s in target if s != 1] != [s for _, s in core]:
        raise Refusal(_name(node), "Reshape", f"reshape {list(x.shape)} -> {target} mixes axes "
                      f"{list(x.roles)}: only unit axes and the concatenation of directions are supported")
    roles, it = [], iter(core)
    for s in target:
        roles.append("1" if s == 1 else next(it)[0])
    kept = [r for r, n in zip(x.roles, x.shape) if isinstance(r, int) and n != 1]
    if _input_stage(x) and [r for r in roles if isinstance(r, int)] != kept:   # only unit axes may move
        raise Refusal(_name(node), "Reshape", "reshapes the input before the recurrent layer")
    return [replace(x, roles=tuple(roles), shape=tuple(target))]


def _merge_directions(core):
    """[(D, 2), (C, H)] adjacent -> [(C, 2H)]: torch's concatenation of the two directions."""
    roles = [r for r, _ in core]
    if "D" not in roles:
        return None
    i = roles.index("D")
    if i + 1 >= len(core) or roles[i + 1] != "C":
        return None
    return core[:i] + [("C", core[i][1] * core[i + 1][1])] + core[i + 2:]


def _on_gather(node, ins, attrs, state):
    x = _flow(node, ins[0])
    idx = _const(node, ins[1], "the indices")
    axis = attrs.get("axis", 0) % len(x.roles)
    if idx.ndim != 0:
        if idx.size == 1:   # a [1] index keeps the axis: gather, then a unit axis in its place
            y = _gather_one(node, x, axis, int(idx.reshape(-1)[0]))
            return [_insert_unit(y, axis)]
        raise Refusal(_name(node), "Gather", f"indices of shape {list(idx.shape)}: only one index is supported")
    return [_gather_one(node, x, axis, int(idx))]


def _insert_unit(x, axis):
    return replace(x, roles=x.roles[:axis] + ("1",) + x.roles[axis:], shape=x.shape[:axis] + (1,) + x.shape[axis:])


def _gather_one(node, x, axis, index):
    refuse_before_recurrent(node, x)
    role, size = x.roles[axis], x.shape[axis]
    index = index % size
    if role == "D":
        return _drop_axis(_choose_direction(node, x, axis, index), axis)
    if role == "T":
        return _drop_axis(_time_step(node, x, index), axis)
    if role == "1":
        return _drop_axis(x, axis)
    raise Refusal(_name(node), "Gather", f"selects along axis {axis} ({role}): only a time step, "
                  "a direction or a unit axis can be selected")


def _drop_axis(x, axis):
    return replace(x, roles=x.roles[:axis] + x.roles[axis + 1:], shape=x.shape[:axis] + x.shape[axis + 1:])


def _on_slice(node, ins, attrs, state):
    x = _flow(node, ins[0])
    starts, ends = (_const(node, v, "slice bounds").tolist() for v in ins[1:3])
    axes = _const(node, ins[3], "axes").tolist() if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
    steps = _const(node, ins[4], "steps").tolist() if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    for s, e, a, st in zip(starts, ends, axes, steps):
        a %= len(x.roles)
        n = x.shape[a]
        kept = range(*slice(s, e, st).indices(n))
        if len(kept) == n and st == 1:
            continue
        if len(kept) == 1 and x.roles[a] in ("T", "D"):
            x = _insert_unit(_gather_one(node, x, a, kept[0]), a)
            continue
        raise Refusal(_name(node), "Slice", f"keeps {len(kept)} of {n} along axis {a} ({x.roles[a]}): "
                      "only one time step or direction, or the whole axis")
    return [x]


def _on_concat(node, ins, attrs, state):
    """torch stacks the layers' final states (h_n) along axis 0 before indexing h_n[-1]."""
    parts = [_flow(node, v) for v in ins]
    axis = attrs["axis"] % len(parts[0].roles)
    if any(p.roles[axis] != "D" or p.roles != parts[0].roles for p in parts):
        raise Refusal(_name(node), "Concat", "only final states stacked along their direction axis")
    dirs = tuple(d for p in parts for d in p.directions)
    shape = parts[0].shape[:axis] + (len(dirs),) + parts[0].shape[axis + 1:]
    return [replace(parts[0], shape=shape, directions=dirs, chain=())]


def _on_pass(node, ins, attrs, state):
    return [_flow(node, ins[0])] + [None] * (len(node.output) - 1)


def _on_expand(node, ins, attrs, state):
    x = _flow(node, ins[0])
    target = _const(node, ins[1], "the shape").tolist()
    if int(np.prod(target)) != int(np.prod(x.shape)):
        raise Refusal(_name(node), "Expand", "broadcasts a computed tensor")
    return [x]


_HANDLERS = {"Shape": _on_shape, "Transpose": _on_transpose, "Squeeze": _on_squeeze, "Unsqueeze": _on_unsqueeze,
             "Reshape": _on_reshape, "Gather": _on_gather, "Slice": _on_slice, "Concat": _on_concat,
             "Expand": _on_expand, **{op: _on_pass for op in _PASS_THROUGH}, **_LAYER_HANDLERS}
_SUPPORTED = set(_HANDLERS) | {"Constant", "ConstantOfShape", "Cast"}
_GRAPH_OPS = {"LSTM", "GRU"}   # never folded (their weights are constants)
