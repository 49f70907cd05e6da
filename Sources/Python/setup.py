"""Build of the latentwatch Python package: bundles the LatentWatch C library as latentwatch/_lib/liblatentwatch.so.

The library comes from, in order:

1. the file named by the environment variable LATENTWATCH_LIBRARY;
2. ../../.build/release/libLatentWatchC.so relative to this file (a release build of the repository);
3. `swift build -c release --product LatentWatchC` run in the repository root (two levels up), then 2.

The wheel is platform-specific but independent of the Python version (py3-none-linux_x86_64): the package is
pure Python apart from the library, which it loads with ctypes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:  # setuptools >= 70.1 has its own
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # older setuptools: the wheel package's
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RELEASE_LIBRARY = os.path.join(REPO, ".build", "release", "libLatentWatchC.so")
BUNDLED = os.path.join("latentwatch", "_lib", "liblatentwatch.so")


def find_library() -> str:
    """The path of the library to bundle, building it with SwiftPM when no built one is found."""
    env = os.environ.get("LATENTWATCH_LIBRARY")
    if env:
        if not os.path.isfile(env):
            raise SystemExit(f"LATENTWATCH_LIBRARY is {env!r}, which is not a file")
        return env
    if os.path.isfile(RELEASE_LIBRARY):
        return RELEASE_LIBRARY
    if not os.path.isfile(os.path.join(REPO, "Package.swift")):
        raise SystemExit(
            f"no LatentWatch library to bundle: set LATENTWATCH_LIBRARY to a built libLatentWatchC.so "
            f"(this source tree is not inside the LatentWatch repository, so it cannot be built here: {REPO})"
        )
    command = ["swift", "build", "-c", "release", "--product", "LatentWatchC"]
    print(f"latentwatch: building the library: {' '.join(command)} (in {REPO})", flush=True)
    try:
        subprocess.run(command, cwd=REPO, check=True)
    except FileNotFoundError:
        raise SystemExit(
            "no LatentWatch library to bundle and no Swift toolchain to build it: install Swift 6, or set "
            "LATENTWATCH_LIBRARY to a built libLatentWatchC.so"
        ) from None
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"`{' '.join(command)}` failed with status {e.returncode}") from None
    if not os.path.isfile(RELEASE_LIBRARY):
        raise SystemExit(f"`{' '.join(command)}` succeeded but {RELEASE_LIBRARY} does not exist")
    return RELEASE_LIBRARY


def copy_library(source: str, destination: str) -> None:
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    if os.path.exists(destination) and os.path.samefile(source, destination):
        return
    shutil.copyfile(source, destination)
    os.chmod(destination, 0o755)


class BuildPyWithLibrary(build_py):
    """build_py that first puts the library into the package (source tree, for editable installs, and build dir)."""

    def run(self) -> None:
        source = find_library()
        copy_library(source, os.path.join(HERE, BUNDLED))
        super().run()
        copy_library(source, os.path.join(self.build_lib, BUNDLED))


class PlatformWheel(bdist_wheel):
    """A wheel for this platform (it holds a native library) but any Python 3: py3-none-<platform>."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        return "py3", "none", platform


class BinaryDistribution(Distribution):
    """Says the package holds native code, so that it installs into platlib (the wheel's root)."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildPyWithLibrary, "bdist_wheel": PlatformWheel}, distclass=BinaryDistribution)
