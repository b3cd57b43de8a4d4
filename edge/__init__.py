"""maskwatch on-device runtime: face detection and mask classification.

Imports numpy, OpenCV and the inference runtimes only; never TensorFlow.
"""
__version__ = "0.1.0"
