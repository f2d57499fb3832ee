"""OTLP/JSON as exporters write it, for the tests."""

import base64
import json

from google.protobuf import json_format


def otlp_json(message) -> bytes:
    """OTLP/JSON of a message: proto3 JSON with the trace and span ids in hex."""

    def hex_ids(node):
        if isinstance(node, list):
            return [hex_ids(value) for value in node]
        if isinstance(node, dict):
            return {
                key: base64.b64decode(value).hex() if key in ("traceId", "spanId", "parentSpanId") else hex_ids(value)
                for key, value in node.items()
            }
        return node

    return json.dumps(hex_ids(json_format.MessageToDict(message))).encode()
