"""``/docs``: the API's Swagger UI, its script and styles served by the service itself (from the
swagger-ui-bundle package). FastAPI's default loads them from cdn.jsdelivr.net: on an office intranet that
reaches no CDN the page stayed blank, and elsewhere a script from a third party ran in the service's own origin,
beside the pages' session cookie. ReDoc has no such package and is left out."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = "/docs-assets"
# Only what the page loads: the package also holds a stock page pointing at the public petstore demo.
SERVED = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png"}


def mount_docs(app: FastAPI) -> None:
    from swagger_ui_bundle import swagger_ui_path

    @app.get(ASSETS + "/{name}", include_in_schema=False)
    def docs_asset(name: str) -> FileResponse:
        if name not in SERVED:
            raise HTTPException(404, "未找到 / not found")
        return FileResponse(swagger_ui_path / name, media_type=SERVED[name],
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} — 接口文档",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon-32x32.png")
