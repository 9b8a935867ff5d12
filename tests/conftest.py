import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def demo(request, tmp_path_factory):
    """Tiny stream models (float/int8 TFLite, ONNX) shared by test_runtime.py, test_streaming.py
    and test_hardening.py: TensorFlow conversions are slow, they are built once and cached."""
    from fixtures_models import demo_artifacts
    return demo_artifacts(request, tmp_path_factory)


# The slowest test files, slowest first (a cold run on 2 cores, 2026-12-01): under `make test`
# each file runs whole on one worker, so starting these first keeps one long file from
# finishing alone at the end. Only the order matters; files not named follow in their order.
SLOWEST_FILES_FIRST = [
    "test_import_torch.py", "test_reference_e2e.py", "test_sweep.py", "test_hardening.py",
    "test_faults.py", "test_lint_export.py", "test_bidirectional_int8.py", "test_export.py",
    "test_isolate_worker.py", "test_untrusted.py", "test_quantize_search.py", "test_quant16x8.py",
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: a file's tests keep their order
