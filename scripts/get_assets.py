"""Put the project's assets in place: copy them from a local data folder when it
exists (checksums verified against project.yml), else download them with
`spacy project assets`."""
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import srsly


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def main(data_dir: str, assets_dir: str) -> None:
    project = srsly.read_yaml("project.yml")
    source = Path(data_dir)
    if not source.is_dir():
        print(f"{source} not found: downloading the assets instead")
        subprocess.run([sys.executable, "-m", "spacy", "project", "assets"], check=True)
        return
    for asset in project["assets"]:
        dest = Path(asset["dest"])
        rel = dest.relative_to(assets_dir)
        src = source / rel
        if not src.exists():
            sys.exit(f"{src} is missing: fix vars.data_dir or run `spacy project assets` with network")
        if md5(src) != asset["checksum"]:
            sys.exit(f"{src} does not match its checksum in project.yml")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        print(f"copied {src} -> {dest}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
