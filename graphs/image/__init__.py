"""The image graph: upscale, remove_background and pipeline (remove background, then upscale)."""
