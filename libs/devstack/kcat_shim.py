"""Install `.venv/bin/kcat`: Debian's kcat run against a current librdkafka.

Debian 12 ships kcat 1.7.1 linked to librdkafka 2.0.2, which cannot parse the ApiVersions
reply of the embedded Tansu broker ("Read underflow"). The confluent-kafka wheel bundles
a current librdkafka; the wrapper puts it first on LD_LIBRARY_PATH. Against Apache Kafka
the system kcat works as it is.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def install() -> Path | None:
    venv_bin = Path(sys.executable).parent
    try:
        import confluent_kafka
    except ImportError:
        print("kcat shim: confluent-kafka is not installed; skipped", file=sys.stderr)
        return None
    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka-*.so*")) if libs.exists() else []
    if not found:
        print("kcat shim: no bundled librdkafka found; skipped", file=sys.stderr)
        return None
    libdir = venv_bin.parent / "lib" / "rdkafka"
    libdir.mkdir(parents=True, exist_ok=True)
    link = libdir / "librdkafka.so.1"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(found[0])
    wrapper = venv_bin / "kcat"
    wrapper.write_text(
        "#!/bin/sh\n"
        "# kcat with the librdkafka of the confluent-kafka wheel (libs/devstack/kcat_shim.py)\n"
        f'real=$(PATH=$(echo "$PATH" | sed "s#{venv_bin}:##") command -v kcat '
        "|| echo /usr/bin/kcat)\n"
        f'LD_LIBRARY_PATH="{libdir}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" exec "$real" "$@"\n'
    )
    os.chmod(wrapper, 0o755)
    return wrapper


def system_kcat() -> str | None:
    return shutil.which("kcat", path="/usr/local/bin:/usr/bin:/bin")


if __name__ == "__main__":
    install()
