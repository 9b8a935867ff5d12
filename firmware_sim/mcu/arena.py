"""The static memory plan of the generated C: its steps, buffer lifetimes and arena offsets.

The steps group stacked LSTMs into chains that run step by step together; each buffer lives
from the first to the last step using it and gets an offset in one byte arena.

Activations, LSTM state and scratch share one static byte arena: buffers whose lifetimes do
not overlap share bytes (greedy placement, biggest first). An LSTM read only through a
last-step slice writes no sequence: the slice output is its hidden state.
"""
from __future__ import annotations

from dataclasses import dataclass

from groundfloor.errors import BadInput

from .lower import CopyLayer, FcLayer, LstmLayer, Program, SoftmaxLayer


def ceil4(n):
    return (n + 3) // 4 * 4


@dataclass
class Buffer:
    name: str
    size: int
    first: int
    last: int
    offset: int = -1


@dataclass
class Plan:
    steps: list                       # [("chain", [LstmLayer, ...]) | ("layer", layer)]
    buffers: dict                     # name -> Buffer
    tensor_buf: dict                  # tensor index -> buffer name
    arena_bytes: int = 0
    bits: int = 8                     # activation width (16: a 16x8 model, 2-byte codes)


def schedule(prog: Program):
    """Group consecutive stacked LSTMs into chains that run step by step together."""
    g = prog.graph
    consumers = {}
    for L in prog.layers:
        consumers.setdefault(L.x, []).append(L)
    steps = []
    for L in prog.layers:
        if isinstance(L, LstmLayer) and steps and steps[-1][0] == "chain":
            prev = steps[-1][1][-1]
            if (L.x == prev.out and len(consumers.get(prev.out, [])) == 1
                    and prev.out not in g.outputs):
                steps[-1][1].append(L)
                continue
        if isinstance(L, LstmLayer):
            steps.append(("chain", [L]))
        else:
            steps.append(("layer", L))
    return steps


class _Lifetimes:
    """Buffers by name with the first and last step using them; graph tensors map to buffers."""

    def __init__(self, graph):
        self.graph = graph
        self.bufs: dict[str, Buffer] = {}
        self.tensor_buf: dict[int, str] = {}

    def use(self, name, size, s):
        b = self.bufs.get(name)
        if b is None:
            self.bufs[name] = Buffer(name, max(int(size), 1), s, s)
        else:
            b.first, b.last = min(b.first, s), max(b.last, s)

    def tensor(self, i, s):
        name = self.tensor_buf.get(i)
        if name is None:
            name = f"t{i}"
            self.tensor_buf[i] = name
        self.use(name, self.graph.tensors[i].nbytes, s)
        return name


def _chain_buffers(life: _Lifetimes, s, chain, steps):
    life.tensor(chain[0].x, s)
    hmax = max(L.H for L in chain)
    life.use(f"gates{s}", 4 * hmax * 2, s)
    life.use(f"x16_{s}", ceil4(chain[0].I) * 2, s)        # >= codegen.simd_ipad(I)
    for L in chain:
        # 16x8: h is the DSP step's matrix input itself, zero-padded to 4
        life.use(f"h_{L.name}", L.H if L.bits == 8 else ceil4(L.H) * 2, s)
        if L.bits == 8:                               # the DSP build's doubled int16 copy
            life.use(f"h16_{L.name}", ceil4(L.H) * 2, s)
        # int8: c, then the DSP step's new h16 held until every unit has read the old one
        life.use(f"c_{L.name}", (4 if L.bits == 8 else 2) * L.H, s)
    if chain[-1].keep_sequence:
        life.tensor(chain[-1].out, s)


def _copy_buffers(life: _Lifetimes, s, L: CopyLayer, steps):
    src_lstm = next((M for kind, item in steps if kind == "chain" for M in item
                     if M.out == L.x and not M.keep_sequence), None)
    if src_lstm is not None:          # last-step slice: alias the hidden state
        life.tensor_buf[L.out] = f"h_{src_lstm.name}"
        life.use(f"h_{src_lstm.name}", src_lstm.H * src_lstm.bits // 8, s)
    elif L.alias:
        life.tensor_buf[L.out] = life.tensor(L.x, s)
    else:
        life.tensor(L.x, s)
        life.tensor(L.out, s)


def _fc_buffers(life: _Lifetimes, s, L: FcLayer, steps):
    life.tensor(L.x, s)
    life.tensor(L.out, s)
    if L.bits == 8:                                   # mcu_fc's scratch (mcu_fc16 needs none)
        life.use(f"acc{s}", ceil4(L.N) * 4, s)
        life.use(f"x16_{s}", ceil4(L.K) * 2, s)


def _softmax_buffers(life: _Lifetimes, s, L: SoftmaxLayer, steps):
    life.tensor(L.x, s)
    life.tensor(L.out, s)


# what one step needs in the arena, by the step's layer type ("chain" steps: _chain_buffers)
STEP_BUFFERS = {CopyLayer: _copy_buffers, FcLayer: _fc_buffers, SoftmaxLayer: _softmax_buffers}


def _extend_lifetimes(life: _Lifetimes, prog: Program, steps):
    """A tensor read by a later step must live until then; outputs live to the end."""
    for s, (kind, item) in enumerate(steps):
        read = item[0].x if kind == "chain" else item.x
        if read in life.tensor_buf:
            life.use(life.tensor_buf[read], 0, s)
    for i in prog.outputs:
        if i not in life.tensor_buf:
            raise BadInput(prog.graph.path, f"model output tensor {i} is not produced by a supported op")
        life.use(life.tensor_buf[i], 0, len(steps))


def _place(bufs: dict) -> int:
    """Greedy placement: biggest first, at the lowest offset that does not clash with a buffer
    live at the same time. Sets every offset; returns the arena size."""
    placed = []
    for b in sorted(bufs.values(), key=lambda b: (-b.size, b.first, b.name)):
        offset = 0
        clashes = sorted((p for p in placed if not (p.last < b.first or b.last < p.first)),
                         key=lambda p: p.offset)
        for p in clashes:
            if offset + b.size <= p.offset:
                break
            offset = max(offset, ceil4(p.offset + p.size))
        b.offset = offset
        placed.append(b)
    return max((ceil4(b.offset + b.size) for b in bufs.values()), default=4)


def plan(prog: Program) -> Plan:
    steps = schedule(prog)
    life = _Lifetimes(prog.graph)
    for i in prog.inputs:
        life.tensor(i, 0)
    for s, (kind, item) in enumerate(steps):
        fill = _chain_buffers if kind == "chain" else STEP_BUFFERS[type(item)]
        fill(life, s, item, steps)
    _extend_lifetimes(life, prog, steps)
    arena = _place(life.bufs)
    return Plan(steps, life.bufs, life.tensor_buf, arena, prog.bits)
