"""Domain errors → HTTP: 404 not found or outside jurisdiction, 403, 409 conflict, 422 invalid."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from engine.core.errors import (
    CaseExecutionError,
    ConflictError,
    DefinitionError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
)

STATUS = {
    NotFoundError: 404,
    ForbiddenError: 403,
    ConflictError: 409,
    ValidationError: 422,
    DefinitionError: 422,
    CaseExecutionError: 422,
}
TITLES = {400: "请求无效", 401: "请先登录", 403: "无权访问", 404: "未找到", 405: "不允许的请求方式",
          409: "操作冲突", 413: "上传内容过大", 422: "无法处理", 429: "请求过于频繁", 500: "服务器错误"}


def wants_json() -> bool:
    return request.path.startswith("/api/")


def error_response(status: int, message: str, errors: dict | None = None):
    if wants_json():
        body = {"error": TITLES.get(status, "错误"), "message": message}
        if errors:
            body["errors"] = errors
        return jsonify(body), status
    return render_template("error.html", status=status, title=TITLES.get(status, "错误"), message=message), status


def register(app: Flask) -> None:
    for exc_class, status in STATUS.items():
        app.register_error_handler(
            exc_class, lambda exc, status=status: error_response(status, str(exc), getattr(exc, "errors", None)))

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return error_response(400, "页面已过期或请求来源无效,请刷新页面后重试")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return error_response(exc.code or 500, TITLES.get(exc.code or 500, exc.description or ""))
