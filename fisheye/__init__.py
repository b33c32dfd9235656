"""EgoClean phase 1: fetch Egocentric-10K clips and rectify their fisheye to a pinhole camera.

    python -m fisheye --help

From Python, the pieces are plain modules:
    fisheye.settings  Phase1Settings: every phase-1 setting, with its default, help and check
    fisheye.dataset   the dataset's names (WorkerRef, shard and clip names) and sidecar schema (pure)
    fisheye.sources   HubSource(token) / LocalSource(root): where shards and calibration come from
    fisheye.shards    extract_clips (stream a tar once), verify_clip (against its sidecar)
    fisheye.camera    the Kannala-Brandt lens, the rectified pinhole camera, remap maps (pure numpy/OpenCV)
    fisheye.rectify   rectify_video(src, dst, calib, camera, encoder) -> RectifyStats
    fisheye.pipeline  run_phase1(Phase1Settings, source) -> manifest: all of the above, resumable
    fisheye.sample    write_sample_hub(root): the built-in synthetic worker
"""
