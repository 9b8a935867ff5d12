"""lstm-edge: take trained Keras LSTMs to edge devices (the app: CLI, config, reference tasks,
reports, the CI gate and the public on-device API `edge.runtime`)."""
from groundfloor import __version__  # noqa: F401
