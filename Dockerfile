# One image for web, worker and beat: the project installed with its dependencies.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY src ./src
COPY templates ./templates
COPY examples ./examples
COPY config ./config
COPY worker.py ./
RUN pip install --no-cache-dir -e '.[monitoring]' \
 && useradd --create-home --uid 1000 dispatch \
 && mkdir -p /app/var && chown dispatch /app/var
USER dispatch
EXPOSE 8000
CMD ["dispatch", "web", "--host", "0.0.0.0", "--port", "8000"]
