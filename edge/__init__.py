"""The app: the `edge` CLI, its config, the reference tasks, the reports, the CI gate, the on-device API.

lstm-edge takes trained Keras LSTMs to edge devices; `from edge import runtime` is the public
on-device API."""
from groundfloor import __version__  # noqa: F401
