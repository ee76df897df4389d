"""Built-in qcheck suites (TOML), shipped inside the wheel as the ``qcheck.builtin_suites`` package."""
