"""Face models in PyTorch: detectors (RetinaFace, YuNet), alignment, gender/age, weights.

The entry point is ``models.face_analyzer.FaceAnalyzer``. This library never imports ``analyzer``;
its errors are ``models.errors``'s.
"""
