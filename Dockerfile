# One image for the four Stepwise services; the command names the service module:
#   docker run --env-file stepwise.env IMAGE services.intake          (port 8001)
#   docker run --env-file stepwise.env IMAGE services.care_plan       (port 8002)
#   docker run --env-file stepwise.env IMAGE services.notifications   (port 8003)
#   docker run --env-file stepwise.env IMAGE services.authorizations  (port 8004)
# Configuration is environment variables (see services/*/settings.py and docker-compose.yml); a secret setting X may
# instead come from a mounted file named by X_FILE (e.g. API_TOKENS_FILE=/run/secrets/api_tokens).

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/stepwise

WORKDIR /src
COPY requirements.prod.lock pyproject.toml README.md LICENSE ./
COPY shared/ shared/
COPY services/ services/
COPY tools/ tools/

# Runtime dependencies only, from the production lock: every file must match a hash there (--require-hashes), and
# nothing outside it comes in (--no-deps). Then the contract and the services, each as a wheel built here (hatchling,
# pinned in their pyproject.toml) and installed without dependencies: the lock has them all, as pip check confirms.
RUN /opt/stepwise/bin/pip install --require-hashes --no-deps -r requirements.prod.lock \
    && /opt/stepwise/bin/pip wheel --no-deps --wheel-dir /tmp/wheels ./shared . \
    && /opt/stepwise/bin/pip install --no-deps /tmp/wheels/stepwise_contract-*.whl /tmp/wheels/stepwise-*.whl \
    && /opt/stepwise/bin/pip check


FROM python:3.11-slim

# BIND_HOST: a service listens on loopback unless asked; in a container, on every interface (its published port).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BIND_HOST=0.0.0.0 \
    PATH="/opt/stepwise/bin:${PATH}"

RUN groupadd --system --gid 10001 stepwise \
    && useradd --system --uid 10001 --gid stepwise --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin stepwise

COPY --from=build /opt/stepwise /opt/stepwise

# An empty working directory: the code runs from the installed packages, never from a source tree.
WORKDIR /app

USER 10001:10001

EXPOSE 8001 8002 8003 8004 8005

ENTRYPOINT ["python", "-m"]
CMD ["services.intake"]
