"""What the artist does: the operators that turn Blender data into jobs (`job_ops`, `segment_ops`, with
`meshio` and `sketch_input` reading meshes, images and strokes) and bring results back (`importers`).
Imports `engine` and `core`, never `ui`."""
