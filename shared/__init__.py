"""Helpers for the course "Defer the expensive job".

One module, one concern: ``redis_server`` finds or starts a real Redis,
``smtp_sink`` is a slow local mail server, ``jobs`` holds the expensive work,
``app`` is the running example, ``web`` serves it, ``load`` measures it,
``plots`` draws what was measured and ``grading`` checks the exercises.
"""
