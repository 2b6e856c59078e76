"""Photo to 3D by reconstruction (seed 004, DreamGaussian): 3D Gaussians fitted to a segmented photo, then a
textured mesh.

- `reference_view`: the photo's object framed for a camera; the camera estimated from a prior's silhouette.
- `priors`: where the Gaussians start: a retrieved library shape, the generator's sample, or a sphere.
- `gaussian_model`: the optimised Gaussians, their activations, densification and pruning.
- `guidance`: the novel-view losses: CLIP similarity to the photo, Zero123 score distillation (weights permitting).
- `fit_gaussians`: stage 1, the Gaussians against the reference view and the guidance.
- `extract`: stage 2, mesh from the Gaussians' density, UVs, baked and refined texture.
- `reconstruct`: the whole reconstruction and its config.
"""
