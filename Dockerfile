# Runtime image for the gateway and the workers (no torch, no compilers in the final stage).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY moodstream moodstream
COPY schemas schemas
COPY gateway gateway
COPY processors processors
COPY producers producers
COPY models models
# No `embedded` extra: images talk to a real Kafka. pip, setuptools and hf-xet are not needed at run time (no model is
# fetched from a hub), so they leave the venv before it is copied.
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir . \
    && /opt/venv/bin/python -m pip uninstall --yes --quiet hf-xet setuptools pip

FROM python:3.11-slim AS runtime
RUN useradd --create-home --uid 10001 moodstream
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    MOODSTREAM_HOST=0.0.0.0
USER moodstream
EXPOSE 8000
ENTRYPOINT ["moodstream"]
CMD ["gateway"]

# `docker build --target gateway` / `--target worker`: the same files, a different default command.
FROM runtime AS gateway
CMD ["gateway"]

FROM runtime AS worker
CMD ["worker"]
