"""Loopback simulators of Discord and of the three video providers, shared by the tests and ``make demo``.

The bot itself never imports this package; only the demo entry and the tests do.
"""
