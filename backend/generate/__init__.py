"""backend.generate: CLIP-Forge text-to-shape generation with ISS-style test-time refinement.

- `occupancy`: `OccupancyAutoencoderConfig`, `OccupancyAutoencoder` (32^3 voxels -> latent -> occupancy
  logits), `OccupancySampler` (training points), `voxel_iou`.
- `decode`: `DecodeConfig`, `decode_grid`, `decode_grid_coarse_to_fine`, `decode_latent(model, latent)` -> a
  watertight Mesh via marching cubes on a padded grid, cleaned by `cleanup` (floating pieces dropped by volume,
  Taubin smoothing; `CleanupReport`, `floating_fractions(mesh)`).
- `train_autoencoder`, `train_flow`: the two training stages (checkpoints, resume, progress, cancel).
- `flow`: `FlowConfig`, `ConditionalRealNVP` (latent <-> Gaussian given a CLIP embedding).
- `library`: a mesh folder read for training (`read_library`: voxels, categories, fingerprint) and the CLIP
  embeddings of its rendered views (`view_embeddings`, or a retrieval index's: `index_view_embeddings`).
- `train_generator`: both stages on a library into one file; `generator`: that file (`load_generator`, CLIP and
  library checks).
- `refine`: ISS-style refinement of a latent by CLIP consistency of renders of its differentiable iso-surface.
- `generate`: text or image -> N meshes ranked best first by CLIP score (`generate`), `split_prompt`, `stylize_shapes` (Text2Mesh on the results).
"""
