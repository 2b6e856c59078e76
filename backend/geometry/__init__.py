"""backend.geometry: meshes in, checked, normalised, unwrapped and out as GLB.

Flat modules, imported directly (this package imports nothing, so `backend.geometry.mesh` stays light):
- `mesh`: the `Mesh` dataclass and the Blender <-> glTF frame conversion.
- `load`: `load_mesh(path)` (obj, ply, stl, off, glb, gltf via trimesh), `mesh_from_arrays(...)`.
- `validate`: `validate_mesh(mesh, max_vertices, max_faces)`, `check_mesh_arrays(mesh)`.
- `normalize`: `normalize_to_unit_sphere(mesh) -> (Mesh, Similarity)`.
- `normals`: `vertex_normals`, `face_normals`.
- `unwrap`: `ensure_uv(mesh)` with xatlas.
- `glb`: `export_glb(mesh, path, morph_targets=...)`, `read_glb`, `read_accessor`.
- `voxelize`: `voxelize(mesh, R)` solid bool [R, R, R] occupancy in [-1, 1]^3 (shell + fill), `grid_centres`.
- `color`: sRGB <-> linear.
- `primitives`: `cube`, `textured_cube`, `tetrahedron`, `icosphere` for tests.
"""
