"""HTTP/JSON transcoding of the tradewire contract (google.api.http), generated at start-up.

``build_http_json_app`` returns the ASGI app (mount it at the root); ``openapi_document``
builds the OpenAPI 3.1 document the app also serves at /openapi.json (and as HTML at /docs).
"""

from .app import HttpJsonApp, build_http_json_app
from .openapi import default_descriptor_set_path, openapi_document

__all__ = ["HttpJsonApp", "build_http_json_app", "openapi_document", "default_descriptor_set_path"]
