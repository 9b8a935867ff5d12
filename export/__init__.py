"""Keras to TFLite/ONNX export, quantization, calibration and compatibility checks."""
