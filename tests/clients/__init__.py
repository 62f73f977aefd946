"""Tests of the Python clients (clients/<language>/); only Python is tested with pytest
here, the others by their own tools (run by tests/interop)."""
