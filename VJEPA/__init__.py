"""Phase 2: temporal structure of the rectified clips from V-JEPA 2 window embeddings."""
