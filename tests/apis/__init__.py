"""Tests of the pure app-facing shapes in ``sidecar.apis`` (the chat cache's canonical form)."""
