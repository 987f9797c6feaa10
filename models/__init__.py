"""Face models in PyTorch: detectors (RetinaFace, YuNet), alignment, gender/age, face embeddings, weights.

The entry point is ``models.face_analyzer.FaceAnalyzer``. This library never imports ``analyzer``;
its errors are ``models.errors``'s.
"""
