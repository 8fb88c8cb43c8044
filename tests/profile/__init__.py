"""Tests of `profile`."""
