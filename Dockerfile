# mapleak-trace in a container: one static binary on an empty base.
#
#   docker build -t mapleak-trace:0.1.0 .
#   docker run --rm --pid=host --cap-drop ALL \
#     --cap-add BPF --cap-add PERFMON --cap-add SYS_PTRACE --cap-add DAC_READ_SEARCH \
#     --security-opt apparmor=unconfined mapleak-trace:0.1.0 --pid 4242 --duration 1m --json -
#
# The build stage runs the repository's own scripts, the same ones the
# README's set-up and install use, so the image cannot build differently:
# scripts/setup-build.sh (the pinned nightly with rust-src, bpf-linker) and
# scripts/build-release.sh (`cargo install --locked --path tracer-user`,
# glibc linked statically).

FROM rust:1.95-slim-trixie AS build
WORKDIR /src
# The toolchain first: its layer stays cached while the sources change.
COPY scripts/setup-build.sh scripts/
RUN bash scripts/setup-build.sh
COPY . .
RUN bash scripts/build-release.sh /out

# No shell, no libc, no package manager: the binary needs none of them (it
# resolves no host names and reads only /proc and /sys).
FROM scratch
LABEL org.opencontainers.image.title="mapleak-trace" \
      org.opencontainers.image.description="Find the Go maps that leak in running processes, with eBPF uprobes"
COPY --from=build /out/bin/mapleak-trace /usr/local/bin/mapleak-trace
# `kubectl debug node/… -- mapleak-trace …` runs a command by name.
ENV PATH=/usr/local/bin
ENTRYPOINT ["/usr/local/bin/mapleak-trace"]
CMD ["--help"]
