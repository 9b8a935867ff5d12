import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """Tiny stream models (float/int8 TFLite, ONNX) shared by test_runtime.py and
    test_streaming.py: built once per session, TensorFlow conversions are slow."""
    from fixtures_models import build_demo_artifacts
    return build_demo_artifacts(tmp_path_factory.mktemp("stream_demo"))
