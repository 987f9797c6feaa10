"""Decoding backends behind one interface (``base.FrameReader``): OpenCV, PyAV, NVDEC."""
