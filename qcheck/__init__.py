"""qcheck: quantize Keras models to full-integer TFLite and gate CI on the result.

The pytest plugin lives in :mod:`qcheck.plugin`; everything heavy (TensorFlow, LiteRT,
Vela, pandas) is imported only where it is used.
"""

__version__ = "0.1.0"
