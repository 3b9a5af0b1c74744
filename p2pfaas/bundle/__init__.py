"""Function bundles: manifests, packing, verification of hostile bundles, and the node's cache.

    manifest.py  the `p2pfaas.toml` of a function: parsing and the limits it may ask for
    pack.py      a directory packed into a signed, deterministic bundle (`make_bundle`)
    verify.py    checking a bundle from a stranger before anything is written (`verify_bundle`)
    cache.py     atomic extraction and the node's content-addressed cache (`BundleCache`)

Nothing here runs functions, talks to peers or decides who may publish a name.
"""

from p2pfaas.bundle.cache import BundleCache, extract_bundle
from p2pfaas.bundle.manifest import (
    MANIFEST_FILE,
    SUPPORTED_RUNTIMES,
    load_manifest,
    parse_manifest,
    validate_manifest,
)
from p2pfaas.bundle.pack import make_bundle, pack_directory
from p2pfaas.bundle.verify import MAX_FILES, MAX_UNCOMPRESSED_BYTES, verify_bundle

__all__ = [
    "MANIFEST_FILE",
    "MAX_FILES",
    "MAX_UNCOMPRESSED_BYTES",
    "SUPPORTED_RUNTIMES",
    "BundleCache",
    "extract_bundle",
    "load_manifest",
    "make_bundle",
    "pack_directory",
    "parse_manifest",
    "validate_manifest",
    "verify_bundle",
]
