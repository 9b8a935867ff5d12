"""The sha256 seal every model file the toolkit writes carries inside it, so a file that lost
its manifest still tells a flipped bit from the file the export wrote.

Where: TFLite, a Model.metadata entry named SEAL_KEY whose buffer holds the 64 hex digits;
ONNX, a metadata_props entry SEAL_KEY = the 64 hex digits. Both formats ignore metadata they
do not know, so every runtime runs a sealed file as before.

What the digest covers: the whole file as written, with the 64 digest bytes replaced by a fixed
64-byte FILLER. Sealing writes the file with FILLER in the seal entry, hashes it and writes the
digest over FILLER; checking finds the stored digest, writes FILLER over it, hashes, compares.
The seal tells corruption, not authorship: anyone can re-seal a file they changed.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from groundfloor import tflite_file
from groundfloor.errors import BadInput
from groundfloor.fileio import write_bytes

SEAL_KEY = "lstm_edge.sha256"
FILLER = b"lstm-edge seal: sha256 of this file with these 64 bytes as they are"[:64].ljust(64, b".")
DIGEST_LEN = 64


def _digest(data_with_filler: bytes) -> bytes:
    return hashlib.sha256(data_with_filler).hexdigest().encode("ascii")


def _fill(data: bytes) -> bytes:
    """Write the digest over the one FILLER in the file."""
    at = data.find(FILLER)
    if at < 0 or data.find(FILLER, at + 1) >= 0:
        raise ValueError("the seal filler must occur exactly once in the file")
    return data[:at] + _digest(data) + data[at + DIGEST_LEN:]


# ------------------------------------------------------------------ TFLite

def _seal_tflite(data: bytes) -> bytes:
    s = tflite_file.schema()
    model = tflite_file.read(None, data)
    model.metadata = list(model.metadata or [])
    model.buffers = list(model.buffers or [])
    entry = next((m for m in model.metadata if _name(m.name) == SEAL_KEY), None)
    if entry is None:   # a new buffer at the end; resealing reuses it, so sealing is idempotent
        entry = s.MetadataT()
        entry.name, entry.buffer = SEAL_KEY, len(model.buffers)
        model.buffers.append(s.BufferT())
        model.metadata.append(entry)
    model.buffers[entry.buffer].data = list(FILLER)
    return _fill(tflite_file.pack(model))


def _stored_tflite(data: bytes) -> bytes | None:
    """The digest a .tflite stores, from the flatbuffer's own accessors (the file has passed
    groundfloor.verify's structure check before this runs)."""
    m = tflite_file.schema().Model.GetRootAsModel(bytearray(data), 0)
    for i in range(m.MetadataLength()):
        entry = m.Metadata(i)
        if _name(entry.Name()) == SEAL_KEY and 0 <= entry.Buffer() < m.BuffersLength():
            buf = m.Buffers(entry.Buffer())
            return buf.DataAsNumpy().tobytes() if buf.DataLength() else b""   # no vector: no digest
    return None


def _name(raw) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")


# ------------------------------------------------------------------ ONNX

def _seal_onnx(data: bytes) -> bytes:
    import onnx
    proto = onnx.load_from_string(data)
    keep = [p for p in proto.metadata_props if p.key != SEAL_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    proto.metadata_props.add(key=SEAL_KEY, value=FILLER.decode("ascii"))
    return _fill(proto.SerializeToString())


def _stored_onnx(data: bytes) -> bytes | None:
    import onnx
    proto = onnx.load_from_string(data)
    value = next((p.value for p in proto.metadata_props if p.key == SEAL_KEY), None)
    return value.encode("utf-8", "replace") if isinstance(value, str) else value   # bytes: not UTF-8


_FORMATS = {".tflite": (_seal_tflite, _stored_tflite), ".onnx": (_seal_onnx, _stored_onnx)}


# ------------------------------------------------------------------ the API

def sealed(data: bytes, suffix: str) -> bytes:
    """The model bytes with their seal (an earlier seal is replaced)."""
    return _FORMATS[suffix][0](bytes(data))


def write_model(path, data: bytes):
    """Seal and write atomically (temporary file, then rename)."""
    return write_bytes(path, sealed(data, Path(path).suffix))


def seal_file(path):
    """Seal a model file in place (atomically)."""
    return write_model(path, Path(path).read_bytes())


def check(path, data: bytes | None = None) -> bool:
    """True when the file carries a seal and it matches; False when it carries none; BadInput
    when the stored digest is not the file's."""
    path = Path(path)
    if data is None:
        data = path.read_bytes()
    try:
        stored = _FORMATS[path.suffix][1](data)
    except Exception as e:  # noqa: BLE001 - a seal entry the readers cannot decode is a corrupt file
        raise BadInput(path, f"its sha256 seal cannot be read ({type(e).__name__}): the file is corrupt") from None
    if stored is None:
        return False
    at = data.find(stored) if len(stored) == DIGEST_LEN else -1
    if at < 0 or data.find(stored, at + 1) >= 0:
        raise BadInput(path, "its sha256 seal is malformed: the file was changed or corrupted after export")
    want = _digest(data[:at] + FILLER + data[at + DIGEST_LEN:])
    if stored != want:
        raise BadInput(path, f"sha256 {want[:16].decode()}... differs from the seal inside the file "
                             f"({stored[:16].decode('ascii', 'replace')}...): the file was changed or corrupted "
                             "after export (pass verify_hash=False to load it anyway)")
    return True
