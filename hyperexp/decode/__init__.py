"""Decoders: voxel responses -> generator latents (gradient-trained and closed-form)."""
