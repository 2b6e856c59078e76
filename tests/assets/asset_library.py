"""A real Blender asset library for tests, built with the bpy module (tests/blender_scripts/make_asset_library.py).

`build_asset_library(root, bpy_python, spec=None, extras=False)` writes under `root`:
- `blender_assets.cats.txt` with the spec's catalogs (and their parents, as Blender writes them);
- the spec's .blend files (marked objects and collections with catalog, tags, description, author, licence,
  preview), unmarked meshes, and FBX / USD / Alembic files exported by Blender;
- `corrupt.blend`: a real .blend with its block data garbled (header intact, so Blender itself has to fail);
- with `extras=True` the bad inputs of BAD_INPUTS: a .blend "from Blender 9.9" (header patched), a truncated
  .blend, an encrypted zip saved as .usdz, a .blend with no assets and no objects, and a valid asset file under
  a folder and file name with spaces and non-ASCII letters.
Returns a `Library` naming what a reader should find. Pure Python: runs from the torch venv's tests.
"""

from __future__ import annotations

import json
import struct
import subprocess
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "blender_scripts" / "make_asset_library.py"
CATALOG_NAMESPACE = uuid.UUID("6f1d3c1e-6a2b-4b7e-9a53-0c1f4e6d2a10")

RED, GREEN, BLUE = [0.8, 0.05, 0.05, 1.0], [0.05, 0.6, 0.1, 1.0], [0.05, 0.1, 0.8, 1.0]
OAK, WALNUT, BRASS, WHITE = [0.55, 0.35, 0.15, 1.0], [0.25, 0.12, 0.05, 1.0], [0.8, 0.6, 0.2, 1.0], [0.9] * 3 + [1.0]


def catalog_uuid(path: str) -> str:
    """A stable UUID per catalog path, so two builds of the library agree."""
    return str(uuid.uuid5(CATALOG_NAMESPACE, path))


def _asset(name, catalog, tags, description, source="primitive:cube", color=WHITE, kind="object", **more):
    spec = dict(name=name, kind=kind, source=source, material=f"{name}_Mat", color=color, catalog=catalog,
                tags=tags, description=description, author="Atelier Tests", license="CC-BY-4.0",
                copyright="(c) Atelier", preview=color[:3], modifiers=["BEVEL", "SUBSURF"])
    spec.update(more)
    return spec


def _part(name, source, color, location=(0.0, 0.0, 0.0), **more):
    return dict(name=name, source=source, material=f"{name}_Mat", color=color, location=list(location), **more)


def _chair(name, color, wood, in_scene=True):
    return _asset(name, "Furniture/Chairs", ["chair", wood, "seat"], f"A {wood} chair with four legs",
                  color=color, in_scene=in_scene)


DEFAULT_SPEC = {
    "catalogs": ["Furniture/Chairs", "Furniture/Tables", "Props/Lighting/Lamps", "Props/Decor"],
    "blends": [
        {"path": "furniture/chairs.blend", "assets": [
            _chair("Chair_Oak", OAK, "oak"),
            _chair("Chair_Walnut", WALNUT, "walnut", in_scene=False),
            _chair("Chair_Red", RED, "red", in_scene=False),
            _chair("Chair_Green", GREEN, "green"),
            _chair("Chair_Blue", BLUE, "blue"),
            _asset("Stool_Textured", "Furniture/Chairs", ["stool", "checker"], "A stool with a checker texture",
                   source="primitive:cylinder", color=RED, texture=True),
            _asset("Chair_Hidden", "Furniture/Chairs", ["chair", "hidden"], "A chair hidden in the viewport",
                   color=GREEN, hidden=True),
            _asset("Armchair_Set", "Furniture/Chairs", ["armchair", "set"], "An armchair built from parts",
                   kind="collection", members=[_part("Armchair_Seat", "primitive:cube", RED),
                                               _part("Armchair_Back", "primitive:cube", RED, (0, 0.5, 0.5))],
                   children=[[_part("Armchair_Cushion", "primitive:uv_sphere", WHITE, (0, 0, 0.6))]]),
        ]},
        {"path": "furniture/tables.blend", "assets": [
            _asset(f"Table_{wood}", "Furniture/Tables", ["table", wood.lower()], f"A {wood.lower()} dining table",
                   color=color, source="primitive:cube")
            for wood, color in (("Oak", OAK), ("Walnut", WALNUT), ("White", WHITE), ("Red", RED))
        ] + [
            _asset("Side_Table", "Furniture/Tables", ["table", "side", "round"], "A small round side table",
                   source="primitive:cylinder", color=WALNUT),
            _asset("Coffee_Table", "Furniture/Tables", ["table", "coffee", "low"], "A low coffee table",
                   color=OAK, in_scene=False),
            _asset("Desk_Set", "Furniture/Tables", ["desk", "set", "office"], "A desk with a lamp on it",
                   kind="collection", members=[_part("Desk_Top", "primitive:cube", WHITE),
                                               _part("Desk_Lamp", "primitive:cone", BRASS, (0.3, 0, 0.8))]),
        ] + [
            _asset("Dining_Set", "Furniture/Tables", ["table", "set", "dining"], "A table with two stools",
                   kind="collection", members=[_part("Set_Table", "primitive:cube", OAK),
                                               _part("Set_Stool_A", "primitive:cylinder", WALNUT, (1, 0, 0)),
                                               _part("Set_Stool_B", "primitive:cylinder", WALNUT, (-1, 0, 0))],
                   in_scene=False),
        ]},
        {"path": "props/lighting.blend", "assets": [
            _asset("Lamp_Brass", "Props/Lighting/Lamps", ["lamp", "brass", "light"], "A brass desk lamp",
                   source="primitive:cone", color=BRASS),
            _asset("Lamp_Green", "Props/Lighting/Lamps", ["lamp", "green"], "A green banker's lamp",
                   source="primitive:cone", color=GREEN),
            _asset("Lamp_Globe", "Props/Lighting/Lamps", ["lamp", "globe"], "A white globe lamp",
                   source="primitive:uv_sphere", color=WHITE),
            _asset("Floor_Lamp", "Props/Lighting/Lamps", ["lamp", "floor"], "A floor lamp: pole and shade",
                   kind="collection", members=[_part("Floor_Lamp_Pole", "primitive:cylinder", BRASS),
                                               _part("Floor_Lamp_Shade", "primitive:cone", WHITE, (0, 0, 1))]),
            _asset("Vase_Blue", "Props/Decor", ["vase", "blue", "decor"], "A blue ceramic vase",
                   source="primitive:uv_sphere", color=BLUE),
            _asset("Donut_Red", "Props/Decor", ["torus", "red", "decor"], "A red ring ornament",
                   source="primitive:torus", color=RED),
            _asset("Monkey_Bust", "Props/Decor", ["monkey", "bust", "statue"], "A monkey head statue",
                   source="primitive:monkey", color=BRASS),
            _asset("Bookend_Pair", "Props/Decor", ["bookend", "pair"], "Two bookends",
                   kind="collection", members=[_part("Bookend_L", "primitive:cube", WALNUT, (-0.5, 0, 0)),
                                               _part("Bookend_R", "primitive:cube", WALNUT, (0.5, 0, 0))]),
        ]},
        {"path": "scans/unmarked_rock.blend", "meshes": [_part("Rock_Scan", "primitive:ico_sphere", WHITE)]},
    ],
    "exports": [
        {"path": "downloads/stool_red.fbx", "format": "fbx",
         "meshes": [_part("Stool_Red", "primitive:cylinder", RED)]},
        {"path": "downloads/shelf.fbx", "format": "fbx",
         "meshes": [_part("Shelf_Board", "primitive:cube", OAK), _part("Shelf_Side", "primitive:cube", OAK, (1, 0, 0))]},
        {"path": "downloads/vase.usdc", "format": "usd",
         "meshes": [_part("Vase_Green", "primitive:uv_sphere", GREEN)]},
        {"path": "downloads/ring.abc", "format": "abc",
         "meshes": [_part("Ring", "primitive:torus", BRASS)]},
    ],
    "corrupt": ["broken/corrupt.blend"],
}
"""The default library: 24 marked assets (19 objects, 5 collections) in 3 .blend files and 4 nested catalogs,
one .blend with an unmarked mesh only, 2 FBX, 1 USD and 1 Alembic file, and one corrupt .blend."""

BAD_INPUTS = {
    "newer": "bad/from_newer_blender.blend",
    "truncated": "bad/truncated.blend",
    "encrypted": "bad/locked.usdz",
    "empty": "bad/no_assets.blend",
    "non_ascii": "Möbel Sammlung/Stühle Ä.blend",
}
"""The extras' paths under the root; every one but non_ascii must fail (or, for `empty`, give 0 entries)."""


@dataclass
class Library:
    """What `build_asset_library` wrote and what a reader should find in it."""

    root: Path
    catalogs: dict[str, str]
    """catalog path -> UUID, as in blender_assets.cats.txt."""
    assets: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    """(relative .blend path, "Object"|"Collection", name) -> the asset's spec (tags, catalog, description...)."""
    unmarked: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    """Mesh objects no asset mark: found only with blend_objects "all"."""
    exports: dict[str, dict] = field(default_factory=dict)
    """relative path -> spec, for FBX / USD / Alembic files (one "File" entry each)."""
    corrupt: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)
    """BAD_INPUTS key -> relative path (extras only)."""

    def files(self) -> list[Path]:
        names = {key[0] for key in self.assets} | {key[0] for key in self.unmarked}
        names |= set(self.exports) | set(self.corrupt) | set(self.bad.values())
        return sorted(self.root / name for name in names)


def _extras_spec() -> dict:
    return {
        "blends": [
            {"path": BAD_INPUTS["newer"], "assets": [_chair("Chair_Future", RED, "future")]},
            {"path": BAD_INPUTS["truncated"], "assets": [_chair("Chair_Cut", GREEN, "cut")]},
            {"path": BAD_INPUTS["empty"]},
            {"path": BAD_INPUTS["non_ascii"], "assets": [
                _asset("Stuhl_Möbel", "Furniture/Chairs", ["stuhl", "möbel"], "Ein Stuhl aus Eiche", color=OAK)]},
        ],
        "exports": [{"path": "bad/_source.usdz", "format": "usd", "meshes": [_part("Locked", "primitive:cube", RED)]}],
    }


def write_catalogs(path: Path, catalogs: list[str]) -> dict[str, str]:
    """blender_assets.cats.txt as Blender writes it: every catalog and each of its parents."""
    full = sorted({"/".join(c.split("/")[:i]) for c in catalogs for i in range(1, len(c.split("/")) + 1)})
    table = {c: catalog_uuid(c) for c in full}
    lines = ["# This is an Asset Catalog Definition file for Blender.", "#", "# Empty lines and lines starting with "
             "`#` will be ignored.", "# The first non-ignored line should be the version indicator.",
             "# Other lines are of the format \"UUID:catalog/path/for/assets:simple catalog name\"", "",
             "VERSION 1", ""]
    lines += [f"{table[c]}:{c}:{c.replace('/', '-')}" for c in full]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return table


def _resolve(spec: dict, table: dict[str, str]) -> dict:
    spec = json.loads(json.dumps(spec))
    for entry in spec.get("blends", []):
        for asset in entry.get("assets", []):
            if asset.get("catalog"):
                asset["catalog_id"] = table[asset["catalog"]]
    return spec


def _run_builder(bpy_python: Path, spec: dict, root: Path, work: Path) -> None:
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    result = subprocess.run([str(bpy_python), str(SCRIPT), str(spec_path), str(root)], capture_output=True,
                            text=True, encoding="utf-8", errors="replace", timeout=600)
    if result.returncode != 0 or "ASSET-LIBRARY-OK" not in result.stdout:
        raise RuntimeError(f"make_asset_library.py failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                           f"{result.stderr[-3000:]}")


def _garble(path: Path) -> None:
    """Keep the 17-byte header (so it passes as a .blend) and overwrite the blocks after it with noise."""
    data = bytearray(path.read_bytes())
    for i in range(64, len(data) - 64, 7):
        data[i] = (data[i] * 31 + 17 + i) & 0xFF
    path.write_bytes(bytes(data))


def _patch_version(path: Path, version: str) -> None:
    data = bytearray(path.read_bytes())
    if data[:9] == b"BLENDER17":  # 5.0 header "BLENDER17-01v0500"
        data[13:17] = version.encode()
    else:  # older header "BLENDER_v405"
        data[9:12] = version[-3:].encode()
    path.write_bytes(bytes(data))


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


def _zipcrypto(members: list[tuple[str, bytes]], password: bytes) -> bytes:
    """A zip of stored members encrypted with the traditional PKWARE cipher: a real password-protected archive
    (`zipfile` reads it back with the password), written by hand because the stdlib cannot encrypt."""
    table = _crc_table()
    local, central = bytearray(), bytearray()
    for name, data in members:
        keys = [0x12345678, 0x23456789, 0x34567890]

        def update(byte: int) -> None:
            keys[0] = (keys[0] >> 8) ^ table[(keys[0] ^ byte) & 0xFF]
            keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
            keys[2] = (keys[2] >> 8) ^ table[(keys[2] ^ (keys[1] >> 24)) & 0xFF]

        for byte in password:
            update(byte)
        crc = zlib.crc32(data) & 0xFFFFFFFF
        plain = bytes(range(11)) + bytes([crc >> 24]) + data
        cipher = bytearray()
        for byte in plain:
            temp = (keys[2] | 2) & 0xFFFF
            cipher.append(byte ^ (((temp * (temp ^ 1)) >> 8) & 0xFF))
            update(byte)
        raw = name.encode()
        offset = len(local)
        fields = struct.pack("<HHHHHIII", 20, 1, 0, 0, 0, crc, len(cipher), len(data))
        local += b"PK\x03\x04" + fields + struct.pack("<HH", len(raw), 0) + raw + cipher
        central += (b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<HHHHHII", len(raw), 0, 0, 0, 0, 0, offset)
                    + raw)
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, len(members), len(members), len(central), len(local), 0)
    return bytes(local + central + end)


def _encrypt(zip_path: Path, out: Path, password: bytes = b"atelier") -> None:
    with zipfile.ZipFile(zip_path) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    out.write_bytes(_zipcrypto(members, password))
    with zipfile.ZipFile(out) as archive:  # the archive is valid and really needs the password
        assert all(info.flag_bits & 0x1 for info in archive.infolist())
        assert [archive.read(name, pwd=password) for name, _ in members] == [data for _, data in members]


def build_asset_library(root: Path, bpy_python: Path, spec: dict | None = None, extras: bool = False) -> Library:
    """Build the library under `root` (created) with the bpy interpreter `bpy_python`; see the module doc."""
    spec = DEFAULT_SPEC if spec is None else spec
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    work = root / ".build"
    work.mkdir(exist_ok=True)
    catalogs = list(spec.get("catalogs", []))
    if extras:
        catalogs.append("Furniture/Chairs")
    table = write_catalogs(root / "blender_assets.cats.txt", catalogs)
    full = _resolve(spec, table)
    corrupt = list(spec.get("corrupt", []))
    # Each corrupt file starts as a real .blend holding one asset, so only the garbling makes it unreadable.
    full["blends"] = full.get("blends", []) + [
        {"path": name, "assets": [_asset("Chair_Corrupt", "Furniture/Chairs", ["chair"], "garbled")]}
        for name in corrupt]
    if extras:
        extra = _resolve(_extras_spec(), table)
        full["blends"] += extra["blends"]
        full["exports"] = full.get("exports", []) + extra["exports"]
    _run_builder(Path(bpy_python), full, root, work)
    for name in corrupt:
        _garble(root / name)
    library = Library(root=root, catalogs=table, corrupt=corrupt)
    for entry in spec.get("blends", []):
        for asset in _resolve({"blends": [entry]}, table)["blends"][0].get("assets", []):
            kind = "Collection" if asset.get("kind") == "collection" else "Object"
            library.assets[(entry["path"], kind, asset["name"])] = asset
        for mesh in entry.get("meshes", []):
            library.unmarked[(entry["path"], "Object", mesh["name"])] = mesh
    library.exports = {entry["path"]: entry for entry in spec.get("exports", [])}
    if extras:
        _patch_version(root / BAD_INPUTS["newer"], "0909")
        truncated = root / BAD_INPUTS["truncated"]
        truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size * 2 // 5])
        source = root / "bad/_source.usdz"
        _encrypt(source, root / BAD_INPUTS["encrypted"])
        source.unlink()
        library.bad = dict(BAD_INPUTS)
        for asset in _extras_spec()["blends"][3]["assets"]:
            library.assets[(BAD_INPUTS["non_ascii"], "Object", asset["name"])] = _resolve(
                {"blends": [{"assets": [asset]}]}, table)["blends"][0]["assets"][0]
    return library
