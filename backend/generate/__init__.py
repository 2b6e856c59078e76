"""backend.generate: CLIP-Forge text-to-shape generation.

- `occupancy`: `OccupancyAutoencoderConfig`, `OccupancyAutoencoder` (32^3 voxels -> latent -> occupancy
  logits), `OccupancySampler` (training points), `voxel_iou`.
- `decode`: `DecodeConfig`, `decode_latent(model, latent)` -> watertight Mesh via marching cubes.
- `train_autoencoder`: `AutoencoderTrainConfig`, `train_autoencoder(voxels, ...)`, `load_autoencoder`.

Not yet here: the latent flow conditioned on CLIP, sampling from text, ISS-style test-time refinement.
"""
