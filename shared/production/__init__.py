"""Lesson 07's experiments: what breaks once a Dramatiq app runs for real, measured.

One module per section of the lesson. Like every experiment package, the
product (app, modes, runtime, infrastructure) never imports it.
"""
