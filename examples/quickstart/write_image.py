"""Write a tiny OCI image (one layer, one file) into an image-layout repository.

Used by the quickstart only when umoci/skopeo are not installed, so the demo
still has real OCI images to sign: ``python write_image.py oci:DIR/acme/web:1.0 "text"``.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import tarfile

from tufoci.layout_spec import MANIFEST_MEDIA_TYPE, sha256_digest
from tufoci.reference import parse_reference
from tufoci.store import open_repository


def layer_for(text: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def main(reference: str, text: str) -> None:
    ref = parse_reference(reference)
    store = open_repository(ref.repository)
    layer = layer_for(text)
    diff_id = sha256_digest(gzip.decompress(layer))
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["cat", "/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": store.put_blob(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": store.put_blob(layer),
                    "size": len(layer)}],
    }).encode()
    print(store.put_manifest(ref.tag or "latest", manifest, MANIFEST_MEDIA_TYPE))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
