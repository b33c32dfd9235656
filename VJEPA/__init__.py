"""EgoClean phase 2: V-JEPA 2 window embeddings (encode.py) and their temporal structure (analyze.py).

    python VJEPA/encode.py --help
    python VJEPA/analyze.py --help

From Python:
    VJEPA.phase2      run_phase2(folder, EncodeSettings, StructureParams): embed, then analyse a folder
    VJEPA.settings    EncodeSettings: every encoding setting, with its default, help and check (no torch)
    VJEPA.windows     window count and start frames (pure)
    VJEPA.preprocess  the V-JEPA 2 video processor as batched torch ops (pure)
    VJEPA.stream      decode once: frames -> batches of whole windows
    VJEPA.embedder    load_encoder(model_id), embed_frames(...) -> embeddings, start times
    VJEPA.encode      encode_clip(video, encoder, settings) -> X_emb.npy, X_ts.npy, X_emb.json
    VJEPA.structure   analyze(emb, ts) -> period, boundaries, repeats, anomalies (pure numpy)
    VJEPA.plots       the diagnostics figure
    VJEPA.analyze     analyze_clip / analyze_clips_jointly: read embeddings, write JSON and figures
    VJEPA.synthetic   embedding sequences with known structure, for tests and benchmarks
"""
