"""Shape library retrieval: index a folder of meshes, search it by text, sketch, photo or sketch + text.

The product path (`atelier index` / `atelier search`, the `index`, `search` and `fetch_shape` jobs):
- `views.py`: what the index sees of a shape: K fixed shaded views, K clean line drawings, a thumbnail
  (`IndexViewConfig`, `render_index_views`).
- `sketch.py`: a user's sketch (PNG of any size and mode, or stroke polylines) into a framed grey drawing.
- `query.py`: `QueryEncoder`: queries and index images into unit embeddings with one CLIP or a TASK-former
  checkpoint; which index vectors each query mode is compared with.
- `descriptors.py`: what describes a shape (`--descriptor views|points|both`): the views' 2K vectors, one point-
  encoder vector, or both with their scores fused; loading the point encoder (`PointDescriptor`).
- `vector_index.py`: FAISS indexes (exact below a size, HNSW above), shape scores = best view.
- `database.py`: `LibraryDB`: SQLite (shapes, vectors, meta) plus the FAISS files as derived caches.
- `milvus_store.py` (+ `milvus_schema.py`): `MilvusStore`: the same methods over Milvus (a Milvus Lite file or
  a server), each write made visible at one commit point.
- `stores.py`: `--store embedded|milvus` and the `--db` URI: `open_store`, `create_store`, `parse_store_uri`.
- `indexer.py`: `index_library`: incremental, resumable indexing with a report.
- `ray_indexing.py`: the loose meshes of a run embedded by Ray tasks on a cluster (`--ray`), committed here.
- `search.py`: `search`: top-k hits with thumbnails and an optional category filter.
- `service.py`: what the CLI and the jobs share (choosing the encoder, open databases, a shape as GLB).

The point-cloud shape encoder (issue 23; seed 002):
- `point_encoder.py`: a Point-BERT-style encoder of coloured surface samples into the CLIP's space, its checkpoints.
- `train_points.py`: training it against a frozen CLIP (InfoNCE or HCL; the shipped one: `python build.py points`).
- `finetune_points.py`: fine-tuning it on an indexed library (`atelier finetune-points`).

TASK-former (training and evaluation):
- `taskformer.py`: the model (sketch and text encoders fused by addition, auxiliary heads) and checkpoints.
- `losses.py`, `data.py`, `train.py`, `evaluate.py`: its losses, world-dataset loading, training and Recall@K.
"""
