"""From frames to events: the pipeline, tracking, events' calibration, contact sheet, progress."""
