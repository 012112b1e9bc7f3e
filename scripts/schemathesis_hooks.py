"""Schemathesis hooks for scripts/schemathesis.sh: request bodies of application/x-tar.

Bodies are either arbitrary bytes or real tar archives made here (a small rootfs, plain or
gzip-compressed), so that /image/create?fromSrc=- and /image/load get past the first byte.
"""

import gzip
import json
import io
import tarfile

import schemathesis
from hypothesis import strategies as st


def _tar(files, compress):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw) if compress else raw


_names = st.sampled_from(
    ["bin/sh", "etc/passwd", "manifest.json", "index.json", "oci-layout", "repositories",
     "blobs/sha256/0", "../escape", "/abs", "a/.wh.b", "dir/"]
) | st.text(min_size=1, max_size=20)

tar_archives = st.builds(
    _tar,
    st.lists(st.tuples(_names, st.binary(max_size=64)), max_size=4),
    st.booleans(),
)

schemathesis.openapi.media_type(
    "application/x-tar", st.one_of(tar_archives, st.binary(max_size=512))
)


# Pull, push and load answer a stream of Docker JSON messages, one a line, as application/json
# (Docker's choice, which the document keeps). Every line is checked here against the
# document's JsonMessage schema; the last one is handed to schemathesis's own
# response_schema_conformance. Every other route's JSON is parsed as one document, as usual.
_STREAMS = {"/image/create", "/image/push", "/images/push", "/image/load"}
_line_validators = {}


def _line_validator(raw_schema):
    key = id(raw_schema)
    if key not in _line_validators:
        import jsonschema_rs

        schema = dict(raw_schema["components"]["schemas"]["JsonMessage"])
        schema["components"] = raw_schema["components"]
        _line_validators[key] = jsonschema_rs.Draft4Validator(schema)
    return _line_validators[key]


@schemathesis.deserializer("application/json")
def json_or_progress_stream(ctx, response):
    text = response.content.decode(response.encoding or "utf-8")
    if ctx.operation.path not in _STREAMS:
        return json.loads(text)
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        raise ValueError("an empty progress stream")
    validator = _line_validator(ctx.operation.schema.raw_schema)
    messages = []
    for n, line in enumerate(lines, 1):
        message = json.loads(line)
        errors = [e.message for e in validator.iter_errors(message)]
        if errors:
            raise ValueError(f"progress line {n} is not a JsonMessage: {line!r}: {errors}")
        if n < len(lines) and isinstance(message, dict) and message.get("error"):
            raise ValueError(f"progress line {n}: an error before the end of the stream: {line!r}")
        messages.append(message)
    return messages[-1]
