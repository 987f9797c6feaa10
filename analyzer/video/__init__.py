"""Video in: probing, timestamp sampling, the readers (OpenCV, PyAV, NVDEC) and the batcher."""
