"""Where a video comes from: local paths and S3 objects, fetched and fingerprinted."""
