# shardlm in a container, serving a model over HTTP (docs/serving.md):
#   docker build -t shardlm .
#   docker run --rm -p 8000:8000 -v "$PWD/out:/model:ro" shardlm --model /model --host 0.0.0.0
# Two stages: the build stage installs the Debian packages that `./shardlm.sh
# setup` lists for building (DEB_PACKAGES in shardlm.sh: build tools, LibTorch,
# MPI, HDF5, Boost, JSON/TOML/CLI/fmt, PCRE2, utf8proc, xxHash, ONNX) and builds only
# the `shardlm` binary; the runtime stage holds that binary and the runtime
# packages of the shared libraries it links, nothing else.

# ---- build ---------------------------------------------------------------------
FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake ninja-build g++ pkg-config git ca-certificates \
      libtorch-dev libopenblas0-pthread \
      libopenmpi-dev openmpi-bin libhdf5-dev libboost-dev libboost-system-dev \
      nlohmann-json3-dev libtomlplusplus-dev libcli11-dev libfmt-dev libpcre2-dev \
      libutf8proc-dev zlib1g-dev libxxhash-dev libonnx-dev libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DSHARDLM_BUILD_TESTS=OFF -DSHARDLM_BUILD_BENCH=OFF \
 && cmake --build build --target shardlm \
 && install -D -m 0755 build/launcher/shardlm /out/usr/local/bin/shardlm

# ---- runtime -------------------------------------------------------------------
# (libtorch1.13 brings libonnx1 and libprotobuf32, which ONNX export links too.)
FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libtorch1.13 libopenblas0-pthread libopenmpi3 libhdf5-103-1 libfmt9 \
      libpcre2-8-0 libutf8proc2 libxxhash0 libtomlplusplus3 libcurl4 libssl3 zlib1g libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin shardlm
COPY --from=build /out/ /
# Fails the build when a shared library is missing from the list above.
RUN ldd /usr/local/bin/shardlm > /tmp/ldd.txt && ! grep "not found" /tmp/ldd.txt && rm /tmp/ldd.txt \
 && shardlm --version
USER shardlm
EXPOSE 8000
ENTRYPOINT ["shardlm", "serve"]
CMD ["--help"]
