"""The classifier: the model and its losses, training, baselines, metrics, calibration,
evaluation, inference backends and the ONNX export."""
