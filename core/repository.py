"""The model repository: its layout, manifest schema, versions, aliases and integrity.

The one owner of the format: training publishes through :class:`Repository`, the service
reads through it. Layout::

    <root>/<name>/<version>/generator.onnx       (and generator.pt, TorchScript)
    <root>/<name>/<version>/discriminator.onnx   (and discriminator.pt)
    <root>/<name>/<version>/model.json           the manifest, with every artifact's sha256
    <root>/<name>/<version>/samples.png
    <root>/<name>/aliases.json                   {"production": 3}

A version is staged in a hidden folder and renamed into place whole, and aliases.json is
replaced atomically, so a reader never sees half of either. A version's artifacts never change;
its manifest may gain figures computed after it was published (:meth:`Repository.amend_metrics`),
replaced atomically too.

A repository may sit over a read-only ``base`` (the committed models, or the ones an image was
built with): reads see both, the repository's own versions and aliases winning; writes go to the
repository alone, numbered after every version of both, so a new base never shadows them.

    >>> repo = Repository("data/models", base="models")
    >>> version = repo.resolve("mnist-gan", "production")
    >>> manifest = repo.verify("mnist-gan", version)   # sha256 of every artifact checked
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from core.atomic import write_atomic
from core.errors import IntegrityError, InvalidInput, NotFound
from core.identifiers import NAME_RE, shown

SCHEMA_VERSION = 1
MANIFEST = "model.json"
ALIASES = "aliases.json"
SAMPLES = "samples.png"  # a grid made at export
DEFAULT_ALIAS = "production"
LATEST = "latest"


class ManifestError(ValueError):
    """A model.json that does not follow the schema."""


Prior = Literal["normal", "uniform"]


@dataclass(frozen=True)
class Latent:
    dim: int
    prior: Prior


@dataclass(frozen=True)
class Manifest:
    """What a version is, how it was made and how well it does (model.json)."""

    name: str
    version: int
    architecture: str
    latent: Latent
    num_classes: int
    class_names: list[str]
    image_shape: list[int]  # [C, H, W]
    output_range: list[float]  # [lo, hi]
    # role ("generator" | "discriminator") -> {"inputs": [...], "outputs": [...]}
    tensors: dict[str, dict[str, list[str]]]
    opset: int
    artifacts: dict[str, str]  # file name -> sha256
    training: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    parent_version: int | None = None
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        try:
            if data.get("schema_version") != SCHEMA_VERSION:
                raise ManifestError(f"unsupported schema_version {data.get('schema_version')!r}")
            prior = data["latent"]["prior"]
            if prior not in ("normal", "uniform"):
                raise ManifestError(f"unknown latent prior {prior!r}")
            latent = Latent(int(data["latent"]["dim"]), prior)
            manifest = cls(**{**data, "latent": latent})
        except (KeyError, TypeError) as e:
            raise ManifestError(f"malformed manifest: {e}") from e
        manifest.validate()
        return manifest

    def validate(self) -> None:
        check_name(self.name)
        if self.latent.prior not in ("normal", "uniform") or self.latent.dim < 1:
            raise ManifestError(f"bad latent spec {self.latent}")
        if len(self.image_shape) != 3 or self.image_shape[0] not in (1, 3):
            raise ManifestError(
                f"image_shape must be [C, H, W] with C in (1, 3): {self.image_shape}"
            )
        if len(self.output_range) != 2 or not self.output_range[0] < self.output_range[1]:
            raise ManifestError(f"bad output_range {self.output_range}")
        if self.num_classes and len(self.class_names) != self.num_classes:
            raise ManifestError("class_names must name every class")
        for file in self.artifacts:
            if "/" in file or file.startswith(".") or file == MANIFEST:
                raise ManifestError(f"bad artifact name {file!r}")

    def artifact(self, role: str, kind: str) -> str | None:
        """The file for a role ("generator") and kind ("onnx" | "pt"), if this version has it."""
        name = f"{role}.{kind}"
        return name if name in self.artifacts else None


@dataclass(frozen=True)
class Listing:
    """A model's versions and aliases as read at one moment."""

    name: str
    versions: tuple[int, ...]
    aliases: dict[str, int]

    def resolve(self, ref: str | int | None = None) -> int:
        """A version number from a number, an alias, "latest", or None (production or latest)."""
        name, versions, aliases = self.name, self.versions, self.aliases
        if not versions:
            raise NotFound(f"model {name!r} has no versions", field="model")
        if ref is None:
            return aliases.get(DEFAULT_ALIAS, versions[-1])
        number = parse_version(ref)
        if number is not None:
            if number not in versions:
                raise NotFound(f"model {name!r} has no version {number}", field="version")
            return number
        if ref == LATEST:
            return versions[-1]
        if ref not in aliases:
            known = ", ".join(sorted([*aliases, LATEST]))
            raise NotFound(f"model {name!r} has no alias {ref!r} (known: {known})", field="version")
        return aliases[ref]


_VERSION_RE = re.compile(r"[0-9]{1,18}")


def parse_version(ref: str | int) -> int | None:
    """A version reference's number, or None for an alias (``production``, ``latest``).

    Checked here, where every reference from any field ends up: a number is 1 to 18 ASCII digits
    (``str.isdigit`` admits other scripts' digits, and ``int`` refuses past 4,300 digits), an
    alias a name; anything else names no version: NotFound, as an unknown alias is.
    """
    if isinstance(ref, int):
        return ref
    if _VERSION_RE.fullmatch(ref):
        return int(ref)
    if NAME_RE.fullmatch(ref):
        return None
    raise NotFound(
        f"invalid version {ref[:40]!r}: a number, an alias or {LATEST!r}", field="version"
    )


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid name {shown(name)}: use 1-64 of a-z, 0-9, '.', '_', '-', starting with a "
            "letter or digit",
            field="model",
        )
    return name


def check_alias(alias: str) -> str:
    if not NAME_RE.fullmatch(alias) or alias == LATEST or alias.isdigit():
        raise InvalidInput(
            f"invalid alias {shown(alias)}: a name (not a number, not {LATEST!r})", field="alias"
        )
    return alias


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


class Repository:
    """A folder of models, each a set of immutable numbered versions plus movable aliases."""

    def __init__(self, root: str | Path, base: str | Path | None = None) -> None:
        self.root = Path(root)
        # Layers to read, the writable one first; a base that is the root is no second layer.
        self._layers = [self.root]
        if base is not None and Path(base).resolve() != self.root.resolve():
            self._layers.append(Path(base))

    # --- reading -------------------------------------------------------------------------

    def models(self) -> list[str]:
        return sorted(
            {
                p.name
                for layer in self._layers
                if layer.is_dir()
                for p in layer.iterdir()
                if p.is_dir() and NAME_RE.fullmatch(p.name)
            }
        )

    def versions(self, name: str) -> list[int]:
        folders = [layer / check_name(name) for layer in self._layers]
        if not any(folder.is_dir() for folder in folders):
            raise NotFound(f"no model named {name!r}", field="model")
        return sorted(
            {
                int(p.name)
                for folder in folders
                if folder.is_dir()
                for p in folder.iterdir()
                if p.name.isdigit() and (p / MANIFEST).is_file()
            }
        )

    def aliases(self, name: str) -> dict[str, int]:
        merged: dict[str, int] = {}
        for layer in reversed(self._layers):  # the base first, so the writable layer wins
            merged.update(self._own_aliases(layer, name))
        return merged

    def _own_aliases(self, layer: Path, name: str) -> dict[str, int]:
        path = layer / check_name(name) / ALIASES
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise IntegrityError(f"{name}: unreadable {ALIASES}: {e}") from e
        return {str(k): int(v) for k, v in data.items()}

    def resolve(self, name: str, ref: str | int | None = None) -> int:
        """A version number from a number, an alias, "latest", or None (production or latest)."""
        return self.listing(name).resolve(ref)

    def listing(self, name: str) -> Listing:
        return Listing(name, tuple(self.versions(name)), self.aliases(name))

    def version_dir(self, name: str, version: int) -> Path:
        """The folder of a version: the writable layer's when it has one, else the base's."""
        for layer in self._layers:
            folder = layer / check_name(name) / str(int(version))
            if folder.is_dir():
                return folder
        return self.root / name / str(int(version))

    def manifest(self, name: str, version: int) -> Manifest:
        path = self.version_dir(name, version) / MANIFEST
        try:
            return Manifest.from_dict(json.loads(path.read_text()))
        except FileNotFoundError as e:
            raise NotFound(f"model {name!r} has no version {version}", field="version") from e
        except (OSError, ValueError) as e:
            raise IntegrityError(f"{name} v{version}: unreadable manifest: {e}") from e

    def verify(self, name: str, version: int) -> Manifest:
        """The manifest, after checking every artifact's sha256; IntegrityError otherwise."""
        manifest = self.manifest(name, version)
        for file, expected in manifest.artifacts.items():
            self._checked(name, version, file, expected)
        return manifest

    def artifact(self, name: str, version: int, file: str) -> Path:
        """The path of one artifact of a version, after checking its sha256.

        NotFound when the model, the version or the artifact does not exist; IntegrityError
        when the file does not match its manifest.
        """
        self.versions(name)  # NotFound for an unknown model, before the version is looked at
        manifest = self.manifest(name, version)
        if file not in manifest.artifacts:
            raise NotFound(f"{name} v{version} has no {file}", field="file")
        return self._checked(name, version, file, manifest.artifacts[file])

    def _checked(self, name: str, version: int, file: str, expected: str) -> Path:
        path = self.version_dir(name, version) / file
        try:
            actual = sha256_file(path)
        except OSError as e:
            raise IntegrityError(f"{name} v{version}: {file} is unreadable: {e}") from e
        if actual != expected:
            raise IntegrityError(
                f"{name} v{version}: {file} has sha256 {actual[:12]}..., "
                f"the manifest says {expected[:12]}..."
            )
        return path

    def listings(self) -> dict[str, Listing]:
        """Every readable model's versions and aliases, read once: a snapshot to resolve from."""
        out = {}
        for name in self.models():
            try:
                out[name] = self.listing(name)
            except IntegrityError:
                continue
        return out

    # --- writing -------------------------------------------------------------------------

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        folder = self.root / check_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # publishers on one volume take turns
            yield

    @contextmanager
    def staging(self, name: str) -> Iterator[Path]:
        """A hidden folder beside the versions to write artifacts into; removed unless published."""
        folder = self.root / check_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(dir=folder, prefix=".staging-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def publish(
        self, staged: Path, manifest: dict[str, Any], aliases: Sequence[str] = ()
    ) -> Manifest:
        """Seal a staged folder as the next version: hash artifacts, write the manifest, rename.

        ``manifest`` holds every field but name-independent bookkeeping (version, artifacts,
        created, schema_version), which this fills in.
        """
        name = check_name(manifest["name"])
        for alias in aliases:
            check_alias(alias)  # before anything is sealed: a refused publish publishes nothing
        with self._lock(name):
            existing = self.versions(name)
            version = (existing[-1] if existing else 0) + 1
            artifacts = {
                p.name: sha256_file(p)
                for p in sorted(staged.iterdir())
                if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
            }
            sealed = Manifest.from_dict(
                {
                    **manifest,
                    "version": version,
                    "artifacts": artifacts,
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "schema_version": SCHEMA_VERSION,
                }
            )
            _write_json_atomic(staged / MANIFEST, sealed.to_dict())
            staged.chmod(0o755)  # mkdtemp makes it private; replicas may run as other users
            os.rename(staged, self.root / name / str(version))
            staged.mkdir()  # so the staging context's cleanup finds what it made
            for alias in aliases:
                self._set_alias_locked(name, alias, version)
        return sealed

    def amend_metrics(self, name: str, version: int, key: str, figures: dict[str, Any]) -> Manifest:
        """Set ``metrics[key]`` of one of this repository's own versions (not a base's) to
        ``figures``; the rest of the manifest, and so every artifact's sha256, stays."""
        path = self.root / check_name(name) / str(int(version)) / MANIFEST
        if not path.is_file():
            raise NotFound(f"{self.root} holds no {name} v{version} to amend", field="version")
        with self._lock(name):
            manifest = self.manifest(name, version)
            amended = Manifest.from_dict(
                {**manifest.to_dict(), "metrics": {**manifest.metrics, key: figures}}
            )
            _write_json_atomic(path, amended.to_dict())
        return amended

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.versions(name)  # NotFound for an unknown model, before the lock makes its folder
        with self._lock(name):
            self._set_alias_locked(name, alias, version)

    def _set_alias_locked(self, name: str, alias: str, version: int) -> None:
        check_alias(alias)
        if version not in self.versions(name):
            raise NotFound(f"model {name!r} has no version {version}", field="version")
        aliases = self._own_aliases(self.root, name)
        aliases[alias] = int(version)
        _write_json_atomic(self.root / name / ALIASES, aliases)
