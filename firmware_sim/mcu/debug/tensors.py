"""The per-layer tensor table: each quantized tensor's int8 value against its float value.

Input, gates, cell, hidden state, weights and Dense outputs, as the integer reference holds
them, against the float emulation's values."""
import numpy as np

from export.ranges import clip_fraction, int8_range
from firmware_sim.mcu.lower import FcLayer, LstmLayer
from firmware_sim.mcu.quant import dequantize

from .figures import error_rmse_max
from .floatmodel import GATES


def _row(point, tensor, dtype, scale, rng, value, float_value, u=1.0, **extra) -> dict:
    err_rmse, err_max = error_rmse_max(value, float_value)
    return {"point": point, "tensor": tensor, "dtype": dtype, "scale": scale, "range": rng,
            "err_rmse": err_rmse * u, "err_max": err_max * u, **extra}


def _input_row(chain, x, x_raw) -> dict:
    s_in, z_in = chain[0]["q"]["in"]
    lo, hi = int8_range(s_in, z_in)
    return _row("input", "input", "int8", s_in, [lo, hi], dequantize(x_raw, s_in, z_in), x,
                float_outside_range=clip_fraction(x, lo, hi))


def _lstm_state_rows(name, r, fc, n) -> list:
    """Gates, cell and hidden state: the reference's codes r against the float capture fc."""
    sc = r["scales"]
    rows = [_row(f"{name}.gate_{gate}", f"{name} gate {gate}", "int16 Q0.15 (pre-activation Q3.12)",
                 sc[gate], [-8.0, 8.0], dequantize(r[gate], sc[gate]), fc[gate][:n], samples=n,
                 preact_saturated=float(np.mean(np.abs(r[f"pre_{gate}"].astype(np.int64)) >= 32767)))
            for gate in GATES]
    crange = [-32768 * sc["c"], 32767 * sc["c"]]
    rows.append(_row(f"{name}.cell", f"{name} cell state", "int16", sc["c"], crange,
                     dequantize(r["c"], sc["c"]), fc["c"][:n], samples=n,
                     float_outside_range=clip_fraction(fc["c"], *crange)))
    z_h = r["zero_points"]["h"]
    hrange = list(int8_range(sc["h"], z_h))
    rows.append(_row(f"{name}.hidden", f"{name} hidden state", "int8", sc["h"], hrange,
                     dequantize(r["h"], sc["h"], z_h), fc["h"][:n], samples=n,
                     float_outside_range=clip_fraction(fc["h"], *hrange)))
    return rows


def _lstm_rows(layer, lowered, ref, fcap, codes, n, u) -> list:
    q, name, U = layer["q"], layer["name"], layer["units"]
    rows = _lstm_state_rows(name, ref[lowered.name], fcap[name], n)
    for k, gate in enumerate(GATES):
        sl = slice(k * U, (k + 1) * U)
        wq = np.concatenate([q["kernel"][:, sl], q["recurrent"][:, sl]])
        wf = np.concatenate([layer["kernel"][:, sl], layer["recurrent"][:, sl]])
        rows.append(_row(f"{name}.weights_{gate}", f"{name} weights {gate}", "int8", q["w_scales"][k],
                         None, wq, wf, zeroed=float(np.mean((wq == 0) & (wf != 0)))))
    return rows


def _dense_rows(layer, lowered, ref, fcap, codes, n, u) -> list:
    q, name = layer["q"], layer["name"]
    rows = []
    if layer["activation"] in ("linear", "relu"):     # the int8 output is the layer's own
        s_o, z_o = q["out"]
        orange = list(int8_range(s_o, z_o))
        fo = fcap[name]["out"]
        oq = dequantize(codes[q["op"].outputs[0]], s_o, z_o).reshape(fo[:n].shape)
        rows.append(_row(f"{name}.output", f"{name} output", "int8", s_o, orange, oq, fo[:n], u,
                         samples=n, float_outside_range=clip_fraction(fo, *orange)))
    rows.append(_row(f"{name}.weights", f"{name} weights", "int8", None, None,
                     q["kernel"], layer["kernel"]))
    return rows


ROWS = {"lstm": _lstm_rows, "dense": _dense_rows}


def tensor_table(chain, prog, x, x_raw, fcap, ref, codes, n, u) -> list:
    """Rows {point, tensor, dtype, scale, range, err_rmse, err_max, ...} in chain order.
    fcap: the float emulation's capture; ref, codes: the integer reference's (first n windows);
    u: report units per model unit (Dense outputs only)."""
    lowered = {L.out: L for L in prog.layers if isinstance(L, (LstmLayer, FcLayer))}
    rows = [_input_row(chain, x, x_raw)]
    for layer in chain:
        L = lowered[layer["q"]["op"].outputs[0]]
        rows += ROWS[layer["kind"]](layer, L, ref, fcap, codes, n, u)
    return rows
