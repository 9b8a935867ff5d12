"""The sha256 seal inside every model file: sealing leaves what runtimes compute unchanged,
a flipped bit in a sealed file is refused without any manifest, and an unsealed file is
neither refused nor called sealed."""
import shutil

import numpy as np
import pytest

from fixtures_models import tiny_models  # noqa: F401
from groundfloor import seal, tflite_file
from groundfloor.errors import BadInput

MODEL_FILES = ["float32.tflite", "int8.tflite", "float32.onnx"]


@pytest.fixture(scope="module")
def sealed_dir(tiny_models, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("sealed")
    for name in MODEL_FILES:
        seal.write_model(out / name, (tiny_models / name).read_bytes())
    shutil.copy2(tiny_models / "data.npz", out / "data.npz")
    return out


@pytest.mark.parametrize("name", MODEL_FILES)
def test_a_sealed_file_checks_and_an_unsealed_one_has_no_seal(sealed_dir, tiny_models, name):  # noqa: F811
    assert seal.check(sealed_dir / name) is True
    assert seal.check(tiny_models / name) is False


@pytest.mark.parametrize("name", MODEL_FILES)
def test_sealing_does_not_change_outputs(sealed_dir, tiny_models, name):  # noqa: F811
    from groundfloor import runtime
    x = np.load(tiny_models / "data.npz")["x_eval"][:8]
    plain = runtime.load(tiny_models / name, verify_hash=False)
    sealed = runtime.load(sealed_dir / name)
    for w in x:
        assert np.array_equal(plain.predict(w[None]), sealed.predict(w[None]))


def test_resealing_keeps_one_seal(sealed_dir, tmp_path):
    again = tmp_path / "int8.tflite"
    seal.write_model(again, (sealed_dir / "int8.tflite").read_bytes())
    entries = [m for m in tflite_file.read(again).metadata if m.name.decode() == seal.SEAL_KEY]
    assert len(entries) == 1 and seal.check(again)
    assert again.read_bytes() == (sealed_dir / "int8.tflite").read_bytes()   # sealing is idempotent


@pytest.mark.parametrize("name", MODEL_FILES)
def test_a_flipped_weight_bit_is_refused_without_a_manifest(sealed_dir, tmp_path, name):
    from groundfloor import runtime
    data = bytearray((sealed_dir / name).read_bytes())
    data[len(data) // 2] ^= 0x01       # the middle of the file: weights, in these models
    bad = tmp_path / name
    bad.write_bytes(bytes(data))
    assert not (tmp_path / "manifest.json").exists()
    with pytest.raises(BadInput, match="seal"):
        seal.check(bad)
    with pytest.raises(runtime.ModelRejected):   # by the seal, or earlier by the structure check
        runtime.load(bad)


def test_a_forged_digest_is_refused(sealed_dir, tmp_path):
    data = (sealed_dir / "float32.onnx").read_bytes()
    stored = seal._stored_onnx(data)
    forged = data.replace(stored, b"0" * 64)
    (tmp_path / "float32.onnx").write_bytes(forged)
    with pytest.raises(BadInput, match="differs from the seal"):
        seal.check(tmp_path / "float32.onnx")


def test_verify_hash_false_loads_a_changed_sealed_file(sealed_dir, tmp_path):
    """The documented escape hatch: the user says they changed the file on purpose."""
    from groundfloor import runtime
    data = (sealed_dir / "float32.onnx").read_bytes()
    stored = seal._stored_onnx(data)
    (tmp_path / "float32.onnx").write_bytes(data.replace(stored, b"f" * 64))
    with pytest.raises(runtime.ModelRejected):
        runtime.load(tmp_path / "float32.onnx")
    assert runtime.load(tmp_path / "float32.onnx", verify_hash=False).predict(
        np.zeros((1, 8, 2), np.float32)).shape[0] == 1


def test_a_seal_entry_that_does_not_decode_is_refused_not_raised(sealed_dir, tmp_path):
    """Found by `make fuzz`: a seal whose value is not UTF-8 (ONNX) or whose buffer lost its data
    vector (TFLite) must be a one-line refusal, not an AttributeError."""
    data = (sealed_dir / "float32.onnx").read_bytes()
    stored = seal._stored_onnx(data)
    (tmp_path / "float32.onnx").write_bytes(data.replace(stored, b"\xff" * 64))
    with pytest.raises(BadInput, match="seal"):
        seal.check(tmp_path / "float32.onnx")
    model = tflite_file.read(sealed_dir / "int8.tflite")
    entry = next(m for m in model.metadata if m.name.decode() == seal.SEAL_KEY)
    model.buffers[entry.buffer].data = None
    (tmp_path / "int8.tflite").write_bytes(tflite_file.pack(model))
    with pytest.raises(BadInput, match="seal"):
        seal.check(tmp_path / "int8.tflite")
