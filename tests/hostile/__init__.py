"""Hostile input: files, specs and requests that must be refused with a message, never a crash."""
