"""Float values to and from an artifact's integer input/output, through its I/O record
({"dtype", "scale", "zero_point", ...}, as tflite_file.io_record and the manifests give it)."""
import numpy as np

INTEGER_DTYPES = ("int8", "uint8", "int16")


def io_from_details(details: dict) -> dict:
    """The I/O record of one of a LiteRT interpreter's inputs or outputs (its tensor details)."""
    scale, zero_point = details["quantization"]
    return {"dtype": np.dtype(details["dtype"]).name, "scale": scale, "zero_point": zero_point}


def is_integer(io: dict) -> bool:
    return io["dtype"] in INTEGER_DTYPES and bool(io.get("scale"))


def _codes(x, io: dict) -> np.ndarray:
    """The integer codes of float values, before they are clipped to the dtype's range."""
    return np.round(x / io["scale"]) + (io.get("zero_point") or 0)


def quantize_input(x: np.ndarray, io: dict) -> np.ndarray:
    """Float values to the artifact's input dtype (integers use its scale and zero point)."""
    if is_integer(io):
        info = np.iinfo(io["dtype"])
        return np.clip(_codes(x, io), info.min, info.max).astype(io["dtype"])
    return x.astype(io["dtype"])


def quantize_clipped(x: np.ndarray, io: dict):
    """quantize_input plus where values fell outside the integer range and were clipped: a boolean
    mask shaped like x (0 for a float input)."""
    if not is_integer(io):
        return x.astype(io["dtype"]), 0
    info = np.iinfo(io["dtype"])
    codes = _codes(x, io)
    return np.clip(codes, info.min, info.max).astype(io["dtype"]), (codes < info.min) | (codes > info.max)


def quantize_counting(x: np.ndarray, io: dict) -> tuple[np.ndarray, int]:
    """quantize_input plus how many values fell outside the integer range (and were clipped)."""
    q, clipped = quantize_clipped(x, io)
    return q, int(np.count_nonzero(clipped))


def dequantize_output(y: np.ndarray, io: dict) -> np.ndarray:
    if is_integer(io):
        return (y.astype(np.float32) - (io.get("zero_point") or 0)) * io["scale"]
    return y.astype(np.float32)
