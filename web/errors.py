"""The one error path: domain errors and refusals at the edge → HTTP status and a short Chinese message.

404 not found or outside jurisdiction, 403, 409 conflict, 422 invalid (``errors`` names the fields),
400 for a page cursor the list did not hand out, 400/413 from the edge (``Refused``), any other HTTP error with its Chinese title. An unexpected
exception answers 500 with a fixed message: no exception name or detail reaches the client.
"""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from engine.core.errors import (
    CaseExecutionError,
    ConflictError,
    CursorError,
    DefinitionError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
)

STATUS = {
    NotFoundError: 404,
    ForbiddenError: 403,
    ConflictError: 409,
    CursorError: 400,
    ValidationError: 422,
    DefinitionError: 422,
    CaseExecutionError: 422,
}
TITLES = {400: "请求无效", 401: "请先登录", 403: "无权访问", 404: "未找到", 405: "不允许的请求方式",
          409: "操作冲突", 413: "上传内容过大", 422: "无法处理", 429: "请求过于频繁", 500: "服务器错误"}


class Refused(Exception):
    """A request refused at the edge with a status other than 422 (400 bad JSON, 413 too large)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def wants_json() -> bool:
    return request.path.startswith("/api/")


def error_response(status: int, message: str, errors: dict | None = None):
    if wants_json():
        body: dict[str, object] = {"error": TITLES.get(status, "错误"), "message": message}
        if errors:
            body["errors"] = errors
        return jsonify(body), status
    return render_template("error.html", status=status, title=TITLES.get(status, "错误"), message=message,
                           errors=errors or {}), status


def register(app: Flask) -> None:
    for exc_class, status in STATUS.items():
        app.register_error_handler(
            exc_class, lambda exc, status=status: error_response(status, str(exc), getattr(exc, "errors", None)))

    @app.errorhandler(Refused)
    def refused(exc: Refused):
        return error_response(exc.status, str(exc))

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return error_response(400, "页面已过期或请求来源无效,请刷新页面后重试")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        return error_response(status, "服务器内部错误,请稍后重试" if status >= 500 else TITLES.get(status, "请求无效"))
