"""blender_assets.cats.txt parsing and lookup."""

from __future__ import annotations

from backend.retrieve.catalogs import CATS_FILE, find_catalog_file, in_catalog, parse_catalogs, read_catalogs

CHAIRS = "884f487f-6664-5a96-aed4-c09db0445b89"
TEXT = f"""# This is an Asset Catalog Definition file for Blender.
#
VERSION 1

23ded89f-0057-505a-ad6b-525290268216:Furniture:Furniture
{CHAIRS.upper()}:Furniture/Chairs:Furniture-Chairs
8661ffe4-0f5d-54d0-bbd5-f196080887d4:Props/Lighting/Lamps:Props-Lighting-Lamps
not-a-uuid:Broken/Path:Broken
just some words
"""


def test_parse_maps_uuids_to_paths_and_warns_on_malformed_lines():
    catalogs = parse_catalogs(TEXT)
    assert catalogs.paths == {"23ded89f-0057-505a-ad6b-525290268216": "Furniture", CHAIRS: "Furniture/Chairs",
                              "8661ffe4-0f5d-54d0-bbd5-f196080887d4": "Props/Lighting/Lamps"}
    assert catalogs.path_of(CHAIRS.upper()) == "Furniture/Chairs"
    assert catalogs.simple_names[CHAIRS] == "Furniture-Chairs"
    assert len(catalogs.warnings) == 2
    assert "not a UUID" in catalogs.warnings[0] and ":8:" in catalogs.warnings[0]
    assert "not 'UUID:path:name'" in catalogs.warnings[1]


def test_unknown_version_and_unreadable_file_are_warnings(tmp_path):
    assert "version 2" in parse_catalogs("VERSION 2\n").warnings[0]
    missing = read_catalogs(tmp_path / CATS_FILE)
    assert missing.paths == {} and "cannot read" in missing.warnings[0]


def test_find_catalog_file_takes_the_nearest_up_to_the_library_root(tmp_path):
    library = tmp_path / "library"
    deep = library / "furniture" / "chairs"
    deep.mkdir(parents=True)
    (tmp_path / CATS_FILE).write_text("VERSION 1\n")  # above the root: another library's, never used
    blend = deep / "chairs.blend"
    assert find_catalog_file(blend, library) is None
    (library / CATS_FILE).write_text("VERSION 1\n")
    assert find_catalog_file(blend, library) == (library / CATS_FILE).resolve()
    (deep / CATS_FILE).write_text("VERSION 1\n")
    assert find_catalog_file(blend, library) == (deep / CATS_FILE).resolve()
    assert find_catalog_file(library / "x.blend") == (library / CATS_FILE).resolve()


def test_in_catalog_is_a_subtree_match():
    assert in_catalog("Furniture/Chairs", "Furniture") and in_catalog("Furniture", "Furniture/")
    assert not in_catalog("Furniture2/Chairs", "Furniture") and not in_catalog(None, "Furniture")
