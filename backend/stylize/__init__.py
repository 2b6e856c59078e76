"""backend.stylize: restyling meshes with CLIP guidance.

Flat modules, imported directly:
- `text2mesh`: `StyleFieldConfig`, `NeuralStyleField`, `Text2MeshConfig`, `preset(quality)`, `stylize(...)`
  -> `StylizeResult`, `score_views` (CLIP score of held-out views), `held_out_cameras`.
- `augment`: `AugmentConfig`, `augment(images, config, size, count, generator)` (random resized crop +
  random perspective, batched, differentiable, seeded).
- `losses`: `check_prompt`, `encode_prompts`, `cosine_loss`, `clip_scores`.
- `surface`: `check_size`, `subdivide_to`, `weld` (what the per-vertex optimisation runs on).
- `bake`: `bake_vertex_colors` into a UV texture.
- `output`: `stylized_mesh`, `export_stylized_glb` (vertex colours + the displacement as a morph target).
"""
