"""EgoClean's shared core: what both phases use. `fisheye` and `VJEPA` import it, never each other."""
