"""`/docs`: Swagger UI, served by this API from files installed with it (the `swagger-ui-py`
wheel's copy of Swagger UI, and our page and start-up script), pointed at `/openapi.json`.
Nothing is fetched from elsewhere: the page's Content-Security-Policy lets the browser load and
connect to this origin only."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from aiohttp import web
from pydantic import Field

from orders_core.params import Params

SWAGGER_UI = Path(str(resources.files("swagger_ui") / "static"))
OURS = Path(str(resources.files("orders_api") / "static"))
# Each file the page loads: where it is installed, and its media type.
FILES = {
    "swagger-ui-bundle.js": (SWAGGER_UI, "text/javascript"),
    "swagger-ui.css": (SWAGGER_UI, "text/css"),
    "favicon-32x32.png": (SWAGGER_UI, "image/png"),
    "docs.js": (OURS, "text/javascript"),
}
MEDIA_TYPES = tuple(sorted({media for _, media in FILES.values()}))
DocsFileName = Literal["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "docs.js"]
# Swagger UI sets inline styles and shows its icons as data: URLs; everything else is ours.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


class DocsFile(Params):
    file: DocsFileName = Field(description="a file of the docs page")


async def docs_page(request: web.Request) -> web.StreamResponse:
    headers = {"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": POLICY}
    return web.FileResponse(OURS / "docs.html", headers=headers)


async def docs_file(request: web.Request, path: DocsFile) -> web.StreamResponse:
    folder, media_type = FILES[path.file]
    return web.FileResponse(folder / path.file, headers={"Content-Type": media_type})


async def root(request: web.Request) -> web.StreamResponse:
    return web.Response(status=302, headers={"Location": "/docs"})
