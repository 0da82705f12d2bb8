"""Generation backends: they execute what modes ask for (pixels and latents), nothing more."""
