"""The job request dataclasses: one definition of every job's params, read the same way on both sides."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared_protocol import limits
from shared_protocol.errors import ParamError
from shared_protocol.params import Choice, Float, Int, JobRequest, Text
from shared_protocol.requests import (REQUESTS, GenerateRequest, PhotoTo3DRequest, RestyleRequest, SearchRequest,
                                      StylizeRequest)

# The least each kind needs: required params and blobs.
MINIMAL = {
    "render": ({}, ()),
    "stylize": ({"prompt": "a red chair"}, ()),
    "restyle": ({}, ("style_0",)),
    "index": ({"library": "lib", "db": "db"}, ()),
    "search": ({"db": "db", "text": "a chair"}, ()),
    "fetch_shape": ({"db": "db", "shape_id": 3}, ()),
    "segment": ({"prompt": "the chair"}, ("image",)),
    "photo_to_3d": ({"prompt": "the chair", "db": "db"}, ("image",)),
    "generate": ({"prompt": "a chair"}, ()),
}


def test_every_job_kind_has_a_request():
    assert set(REQUESTS) == set(MINIMAL)
    for kind, cls in REQUESTS.items():
        assert cls.KIND == kind


@pytest.mark.parametrize("kind", sorted(MINIMAL))
def test_params_round_trip(kind):
    params, blobs = MINIMAL[kind]
    cls = REQUESTS[kind]
    request = cls.from_params(params, blobs)
    assert cls.from_params(request.to_params(), blobs) == request
    # Defaults are what the request holds when a param is not sent.
    for name, default in cls.defaults().items():
        if name not in params:
            assert getattr(request, name) == default


@pytest.mark.parametrize("kind", sorted(MINIMAL))
def test_unknown_param_is_named_with_the_ones_taken(kind):
    params, blobs = MINIMAL[kind]
    with pytest.raises(ParamError, match="has no param 'colour'") as err:
        REQUESTS[kind].from_params({**params, "colour": 1}, blobs)
    assert err.value.param == "colour"
    assert all(name in err.value.hint for name in REQUESTS[kind].specs())


@pytest.mark.parametrize("kind", sorted(MINIMAL))
def test_unknown_blob_is_refused(kind):
    params, blobs = MINIMAL[kind]
    with pytest.raises(ParamError, match="takes no blob 'junk'|unexpected blob names"):
        REQUESTS[kind].from_params(params, (*blobs, "junk"))


@pytest.mark.parametrize("kind", sorted(MINIMAL))
def test_every_bound_is_enforced_on_both_sides(kind):
    """Each numeric param one past its bounds, and each choice param off its list, is refused from the wire
    (the server) and from code (the add-on and the CLI) with the same message."""
    params, blobs = MINIMAL[kind]
    cls = REQUESTS[kind]
    for name, spec in cls.specs().items():
        bad_values = []
        if isinstance(spec, Int):
            bad_values = [spec.lo - 1, spec.hi + 1, 1.5, True, "3"]
        elif isinstance(spec, Float):
            bad_values = [spec.lo - 1e-3, spec.hi * 2 + 1, float("nan"), "0.5"]
        elif isinstance(spec, Choice):
            bad_values = ["nonsense", 3]
        elif isinstance(spec, Text):
            bad_values = [5, "x" * (spec.max_chars + 1)]
        for value in bad_values:
            if spec.unset == value:
                continue
            with pytest.raises(ParamError) as wire:
                cls.from_params({**params, name: value}, blobs)
            message = str(wire.value)
            assert f"'{name}'" in message or (getattr(spec, "what", "") and spec.what in message), message
            with pytest.raises(ParamError) as code:
                cls(**{**params, name: value})
            assert str(code.value) == str(wire.value)


@pytest.mark.parametrize("kind", sorted(MINIMAL))
def test_missing_required_param(kind):
    params, blobs = MINIMAL[kind]
    for name in params:
        if name in REQUESTS[kind].defaults():
            continue
        rest = {k: v for k, v in params.items() if k != name}
        with pytest.raises(ParamError, match=f"param '{name}' is missing"):
            REQUESTS[kind].from_params(rest, blobs)


def test_unset_means_not_sent():
    request = StylizeRequest(prompt="  a red chair ", steps=0, clip="")
    params = request.to_params()
    assert params["prompt"] == "a red chair"
    assert "steps" not in params and "clip" not in params and "preview_every" not in params
    # On the wire 0 steps is not "the preset's": it is out of range.
    with pytest.raises(ParamError, match=r"param 'steps' must be an integer in \[1, 100000\], got 0"):
        StylizeRequest.from_params({"prompt": "a", "steps": 0})
    assert StylizeRequest.from_params({"prompt": "a", "steps": 7}).steps == 7


def test_prompt_checks_say_the_fix():
    with pytest.raises(ParamError, match="the prompt is empty") as err:
        StylizeRequest.from_params({"prompt": "   "})
    assert "wooden chair" in err.value.hint
    with pytest.raises(ParamError, match="501 characters long, more than 500"):
        StylizeRequest(prompt="x" * 501)


def test_palette_is_normalised_and_bad_colours_named():
    assert RestyleRequest(palette=" #ABC, 112233").palette == "#aabbcc,#112233"
    assert RestyleRequest(palette="").palette == "auto"
    assert RestyleRequest(palette="None").palette == "none"
    with pytest.raises(ParamError, match="palette colour 2 of 2 'red' is not a hex colour"):
        RestyleRequest(palette="#fff,red")
    with pytest.raises(ParamError, match="17 colours, over the 16 limit"):
        RestyleRequest(palette=",".join(["#fff"] * 17))


def test_restyle_blobs_are_numbered_without_gaps():
    assert RestyleRequest.from_params({}, ["style_0", "style_1"]).quality == "standard"
    with pytest.raises(ParamError, match="at least one style image"):
        RestyleRequest.from_params({}, [])
    with pytest.raises(ParamError, match="unexpected blob names"):
        RestyleRequest.from_params({}, ["style_0", "style_2"])
    too_many = [f"style_{i}" for i in range(limits.MAX_STYLE_IMAGES + 1)]
    with pytest.raises(ParamError, match="17 style images were given; at most 16 are used"):
        RestyleRequest.from_params({}, too_many)


def test_generate_needs_a_prompt_or_a_picture():
    assert GenerateRequest.from_params({"checkpoint": "g.pt"}, ["image"]).prompt == ""
    with pytest.raises(ParamError, match="the prompt is empty"):
        GenerateRequest.from_params({"checkpoint": "g.pt"})
    with pytest.raises(ParamError, match="'auto' style splits the prompt"):
        GenerateRequest.from_params({"checkpoint": "g.pt", "style": "auto"}, ["image"])


def test_generate_without_a_checkpoint_means_the_shipped_generator():
    # No checkpoint (or a blank one) is sent as none: the backend loads its shipped generator.
    for params in ({"prompt": "a chair"}, {"prompt": "a chair", "checkpoint": " "}):
        request = GenerateRequest.from_params(params)
        assert request.checkpoint == "" and "checkpoint" not in request.to_params()
    named = GenerateRequest.from_params({"prompt": "a chair", "checkpoint": " /srv/gen.pt "})
    assert named.checkpoint == "/srv/gen.pt" and named.to_params()["checkpoint"] == "/srv/gen.pt"
    assert GenerateRequest.specs()["checkpoint"].path == "file"  # a named one is still confined by the server


def test_search_and_photo_rules():
    with pytest.raises(ParamError, match="both a sketch blob and strokes"):
        SearchRequest.from_params({"db": "d", "strokes": [[[0, 0], [1, 1]]]}, ["sketch"])
    with pytest.raises(ParamError, match="no strokes"):
        SearchRequest.from_params({"db": "d", "strokes": []})
    with pytest.raises(ParamError, match="must be polylines"):
        SearchRequest.from_params({"db": "d", "strokes": "a line"})
    with pytest.raises(ParamError, match="prompt applies to a photo query"):
        SearchRequest.from_params({"db": "d", "text": "a chair", "prompt": "the red chair"})
    with pytest.raises(ParamError, match="raw_photo applies to a photo query"):
        SearchRequest.from_params({"db": "d", "raw_photo": True}, ["sketch"])
    photo = SearchRequest.from_params({"db": "d", "prompt": "the red chair", "raw_photo": False}, ["photo"])
    assert (photo.prompt, photo.raw_photo) == ("the red chair", False)
    with pytest.raises(ParamError, match="needs a photo"):
        PhotoTo3DRequest.from_params({"prompt": "p", "db": "d"})
    with pytest.raises(ParamError, match="pick 5 is not among the 5 matches"):
        PhotoTo3DRequest.from_params({"prompt": "p", "db": "d", "pick": 5}, ["image"])


def test_fields_are_documented_for_the_cli():
    for cls in REQUESTS.values():
        assert cls.__doc__
        for name, spec in cls.specs().items():
            assert spec.help, f"{cls.KIND}.{name} has no help text"


def test_a_request_class_is_a_plain_dataclass():
    for cls in REQUESTS.values():
        assert issubclass(cls, JobRequest) and dataclasses.is_dataclass(cls)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(MINIMAL)), extra=st.dictionaries(st.text(max_size=12), _JSON, max_size=4),
       override=st.dictionaries(st.sampled_from(["k", "steps", "prompt", "quality", "seed", "palette", "db",
                                                 "threshold", "strokes", "style"]), _JSON, max_size=3))
def test_junk_params_only_ever_raise_param_error(kind, extra, override):
    params, blobs = MINIMAL[kind]
    try:
        REQUESTS[kind].from_params({**params, **extra, **override}, blobs)
    except ParamError as exc:
        assert exc.message
