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
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 moodstream
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    MOODSTREAM_HOST=0.0.0.0
USER moodstream
EXPOSE 8000
ENTRYPOINT ["moodstream"]
CMD ["gateway"]
