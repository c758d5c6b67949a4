"""Video decoding behind one function (decord by default, PyAV as the alternative)."""
