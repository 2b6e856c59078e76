"""The weights manager: where weights live, what is present and `pull` (download); `import_file` is in importer.py.

Weights are looked for in three places, on this machine only (no network call, ever, outside `pull`):

- the Atelier weights dir: `$ATELIER_HOME/weights`, default `~/.cache/atelier/weights` (imported files, SAM);
- the Hugging Face Hub cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`), where
  open_clip and `atelier models pull` put open_clip weights;
- open_clip's URL cache, `~/.cache/clip` (weights fetched from a URL by open_clip or OpenAI's `clip`).

The environment is read at each call, not at import, so a test or a server can point it elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tqdm import tqdm

from backend import __version__
from backend.errors import WeightsMissingError
from backend.models.catalogue import CATALOGUE, WeightsInfo, human_size, lookup

PULL_TIMEOUT_S = 10.0
"""Seconds to wait for a server to answer before a download gives up (no retries)."""

CLIP_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
"""Suffixes an imported CLIP file keeps in the store; open_clip reads .safetensors by suffix, the rest with torch."""

_CHUNK = 1 << 20


def atelier_home() -> Path:
    """`$ATELIER_HOME`, default `~/.cache/atelier`."""
    return Path(os.environ.get("ATELIER_HOME") or Path.home() / ".cache" / "atelier").expanduser()


def weights_dir() -> Path:
    """The Atelier weights dir, `atelier_home()/weights` (may not exist yet)."""
    return atelier_home() / "weights"


def hf_hub_cache() -> Path:
    """The Hugging Face Hub cache dir, resolved the way huggingface_hub does but at call time."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        return Path(hf_home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def open_clip_cache_dir() -> Path:
    """Where open_clip keeps weights fetched from a URL (its default, `~/.cache/clip`)."""
    return Path.home() / ".cache" / "clip"


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def store_candidates(info: WeightsInfo) -> list[Path]:
    """The paths in the Atelier weights dir where `info`'s file may be, preferred first."""
    if info.kind == "clip":
        return [weights_dir() / f"{info.filename}{suffix}" for suffix in CLIP_SUFFIXES]
    return [weights_dir() / info.filename]


def find_weights(name: str) -> Path | None:
    """The local file holding weights `name`, or None. Looks in the caches only; never touches the network.

    Raises InvalidInputError for a name that is neither in the catalogue nor an open_clip MODEL:TAG pair.
    """
    info = lookup(name)
    for path in store_candidates(info):
        if path.is_file():
            return path
    if info.source.hf_repo:
        # try_to_load_from_cache reads the cache's refs/snapshots layout; it makes no request.
        from huggingface_hub import try_to_load_from_cache

        for filename in info.source.hf_filenames:
            hit = try_to_load_from_cache(info.source.hf_repo, filename, cache_dir=str(hf_hub_cache()))
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
    if info.kind == "clip" and info.source.url:
        path = open_clip_cache_dir() / info.source.url.rsplit("/", 1)[-1]
        if path.is_file():
            return path
    return None


def list_models(kind: str | None = None) -> list[dict[str, Any]]:
    """Every catalogue entry with whether it is here.

    Returns dicts with `name`, `kind`, `present` (bool), `path` (str or None), `size` (bytes: the file's
    when present, else the catalogue's estimate), `size_human` ('605 MB'), `licence`, `description`, `url`.
    """
    rows = []
    for info in CATALOGUE.values():
        if kind is not None and info.kind != kind:
            continue
        path = find_weights(info.name)
        size = path.stat().st_size if path is not None else info.approx_bytes
        rows.append({
            "name": info.name,
            "kind": info.kind,
            "present": path is not None,
            "path": str(path) if path is not None else None,
            "size": size,
            "size_human": human_size(size),
            "licence": info.licence,
            "description": info.description,
            "url": info.source.download_url,
        })
    return rows


def present_weights() -> list[str]:
    """Names of the catalogue weights that are on this machine (for the server's `welcome`)."""
    return [row["name"] for row in list_models() if row["present"]]


def missing_weights_error(info: WeightsInfo) -> WeightsMissingError:
    """The error for weights that are not on this machine: names the file, its size and the fetch command."""
    hint = f"run `atelier models pull {info.name}`"
    if info.kind == "clip":
        hint += f", pass --allow-download, or give a local file: --clip {info.source.open_clip_model}:/path/to/weights"
    else:
        hint += f", or pass a local checkpoint (`atelier models import {info.name} FILE`)"
    return WeightsMissingError(
        f"weights {info.name} are not on this machine ({info.display_file}, {human_size(info.approx_bytes)}, "
        f"licence {info.licence}); looked in {weights_dir()} and {hf_hub_cache()}",
        hint=hint,
    )


# ---------------------------------------------------------------------------------------------- pull


def pull(name: str, progress: bool = True, timeout_s: float = PULL_TIMEOUT_S) -> Path:
    """Downloads weights `name` into the local cache and returns the file's path.

    Prints the file, size and licence first (to stderr). Open-CLIP weights go to the Hugging Face cache
    (where open_clip finds them too), SAM checkpoints to the Atelier weights dir. A server that does not
    answer within `timeout_s` fails the pull at once, with the URL in a WeightsMissingError; no retries.
    """
    info = lookup(name)
    found = find_weights(info.name)
    if found is not None:
        if progress:
            print(f"{info.name} is already here: {found}", file=sys.stderr)
        return found
    url = info.source.download_url
    if not url:
        raise WeightsMissingError(
            f"no download source is known for {info.name} in open_clip {_open_clip_version()}",
            hint="upgrade open-clip-torch, or download the file by hand and run "
                 f"`atelier models import {info.name} FILE`",
        )
    if progress:
        print(f"{info.name}: {info.display_file}, {human_size(info.approx_bytes)}, licence {info.licence}\n"
              f"  from {url}", file=sys.stderr)
    if info.source.hf_repo and info.source.hf_filenames:
        return _pull_hf(info, progress, timeout_s)
    dest_dir = weights_dir() if info.kind == "sam" else open_clip_cache_dir()
    dest = dest_dir / (info.filename if info.kind == "sam" else url.rsplit("/", 1)[-1])
    return download_url(url, dest, name=info.name, progress=progress, timeout_s=timeout_s,
                        md5_prefix=info.md5_prefix)


def _open_clip_version() -> str:
    import open_clip

    return open_clip.__version__


def _fetch_hint(name: str, url: str) -> str:
    return (f"check the network or proxy (HTTPS_PROXY), or download {url} by hand and run "
            f"`atelier models import {name} FILE`")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A probe only asks whether the server answers: a redirect already says the file is there."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102
        return None


def _probe(url: str, timeout_s: float) -> int:
    """HTTP status of a HEAD request to `url` (redirects not followed). Raises OSError when unreachable."""
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": f"atelier/{__version__}"})
    try:
        with opener.open(request, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _pull_hf(info: WeightsInfo, progress: bool, timeout_s: float) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    first_url = info.source.download_url
    if _hf_offline():
        raise WeightsMissingError(f"cannot download {first_url}: HF_HUB_OFFLINE is set",
                                  hint="unset HF_HUB_OFFLINE to download, or " + _fetch_hint(info.name, first_url))
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    for filename in info.source.hf_filenames:
        url = f"{endpoint}/{info.source.hf_repo}/resolve/main/{filename}"
        # huggingface_hub retries an unreachable server for ~25 s; one short probe fails fast instead.
        try:
            status = _probe(url, timeout_s)
        except OSError as exc:  # URLError, socket timeout, DNS failure
            raise WeightsMissingError(f"could not reach {url}: {_reason(exc)}",
                                      hint=_fetch_hint(info.name, url)) from exc
        if status == 404:
            continue
        if status >= 400:
            raise WeightsMissingError(f"download of {url} was refused: HTTP {status}",
                                      hint=_fetch_hint(info.name, url))
        tqdm_class = None if progress else _SilentTqdm
        try:
            path = hf_hub_download(info.source.hf_repo, filename, cache_dir=str(hf_hub_cache()), endpoint=endpoint,
                                   etag_timeout=timeout_s, tqdm_class=tqdm_class)
        except (HfHubHTTPError, OSError, ValueError) as exc:
            raise WeightsMissingError(f"download of {url} failed: {_reason(exc)}",
                                      hint=_fetch_hint(info.name, url)) from exc
        return Path(path)
    raise WeightsMissingError(
        f"none of {', '.join(info.source.hf_filenames)} is in https://huggingface.co/{info.source.hf_repo}",
        hint="upgrade open-clip-torch (its source list may be newer), or download the weights by hand and run "
             f"`atelier models import {info.name} FILE`",
    )


class _SilentTqdm(tqdm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def download_url(url: str, dest: Path, *, name: str = "", progress: bool = True,
                 timeout_s: float = PULL_TIMEOUT_S, md5_prefix: str = "") -> Path:
    """Downloads `url` to `dest` (via `dest.part`, renamed when complete and checked) and returns `dest`.

    Checks the byte count against Content-Length and, when given, the MD5's leading hex digits. A server
    that does not answer within `timeout_s` raises WeightsMissingError naming the URL; no retries.
    """
    label = name or dest.name
    request = urllib.request.Request(url, headers={"User-Agent": f"atelier/{__version__}"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        raise WeightsMissingError(f"download of {url} failed: HTTP {exc.code} {exc.reason}",
                                  hint=_fetch_hint(label, url)) from exc
    except OSError as exc:  # URLError, socket timeout, DNS failure
        raise WeightsMissingError(f"could not reach {url}: {_reason(exc)}", hint=_fetch_hint(label, url)) from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    md5 = hashlib.md5(usedforsecurity=False)
    written = 0
    try:
        with response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            with tqdm(total=total or None, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                      disable=not progress) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    md5.update(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        if total and written != total:
            raise WeightsMissingError(f"download of {url} stopped after {written} of {total} bytes",
                                      hint="run the pull again")
        if md5_prefix and not md5.hexdigest().startswith(md5_prefix):
            raise WeightsMissingError(f"{url} arrived damaged: its MD5 does not start with {md5_prefix}",
                                      hint="run the pull again")
        os.replace(part, dest)
    except OSError as exc:
        raise WeightsMissingError(f"download of {url} failed: {_reason(exc)}", hint=_fetch_hint(label, url)) from exc
    finally:
        part.unlink(missing_ok=True)
    return dest
