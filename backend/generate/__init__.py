"""backend.generate: CLIP-Forge text-to-shape generation.

- `occupancy`: `OccupancyAutoencoderConfig`, `OccupancyAutoencoder` (32^3 voxels -> latent -> occupancy
  logits), `OccupancySampler` (training points), `voxel_iou`.
- `decode`: `DecodeConfig`, `decode_latent(model, latent)` -> watertight Mesh via marching cubes.
- `train_autoencoder`: `AutoencoderTrainConfig`, `train_autoencoder(voxels, ...)`, `load_autoencoder`.
- `flow`: `FlowConfig`, `ConditionalRealNVP` (latent <-> Gaussian given a CLIP embedding: `forward`,
  `inverse`, `log_prob`, `sample`).
- `train_flow`: `FlowTrainConfig`, `train_flow(latents, conditions, ...)` by NLL, `load_flow`.

Not yet here: CLIP embeddings of rendered views as training conditions, sampling from text, ISS-style
test-time refinement.
"""
