"""backend.segment: text-guided segmentation (seed 004) and photo to 3D.

The object a text prompt names in a photo, as a mask at the photo's size and an RGBA cut-out:

- `relevance.py`: where the prompt is, a map in [0, 1] (CLIPSeg when installed and cached, else dense CLIP);
- `sam.py`: Segment Anything checkpoints (catalogue names `sam_vit_b/l/h` or a file), its automatic mask
  proposals, and its predictor for point and box prompts;
- `superpixels.py`: the offline proposer that stands in when no SAM weights are here (labelled so);
- `merge.py`: the seed's rule: a proposal's IoU with the relevance region, constrained by the proposal
  (|S ∩ R| / |S|), above 0.5 -> merged by union;
- `segment.py`: `segment(image, prompt, clip, config, points, box)`, the whole path, used by the `segment` job
  and `atelier segment`;
- `photo_to_3d.py`: the segmented object found in the shape library and restyled after the photo.

Modules are imported where used (they pull in torch and the models), not from this package.
"""
