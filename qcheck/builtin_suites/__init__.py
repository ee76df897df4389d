"""Built-in qcheck suites (TOML), read through importlib.resources, from the source tree and the wheel alike."""
