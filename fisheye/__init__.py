"""EgoClean phase 1: fetch Egocentric-10K clips and rectify their fisheye to a pinhole camera.

    python -m fisheye --help

From Python, the pieces are plain modules:
    fisheye.camera    the Kannala-Brandt lens, the rectified pinhole camera, remap maps (pure numpy/OpenCV)
    egoclean.video     the one streaming reader (iter_frames) and encoder (VideoWriter) both phases use
    fisheye.rectify   rectify_video(src, dst, calib, camera, encoder) -> RectifyStats
    fisheye.fetch     HubSource / LocalSource, extract_clips, verify_clip
    fisheye.pipeline  run_phase1(Phase1Settings, source) -> manifest: all of the above, resumable
    fisheye.sample    write_sample_hub(root): the built-in synthetic worker
"""
