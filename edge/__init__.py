"""lstm-edge: take trained Keras LSTMs to edge devices."""
__version__ = "0.1.0"
