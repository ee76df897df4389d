"""Everything that touches the TFLite format.

- :mod:`qcheck.tflite.inspect` reads a flatbuffer into plain dataclasses (LiteRT schema).
- :mod:`qcheck.tflite.census` says what in a model is still float.
- :mod:`qcheck.tflite.convert` is the only module that imports TensorFlow.
- :mod:`qcheck.tflite.run` runs a model with the LiteRT interpreter.
"""
