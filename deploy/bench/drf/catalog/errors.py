"""RFC 9457 problem+json errors, 422 for every invalid search parameter (as the API says)."""
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler


class InvalidParameter(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "invalid search parameter"

    def __init__(self, field: str, message: str):
        super().__init__({field: [message]})


def _flatten(detail) -> list[dict]:
    if isinstance(detail, dict):
        return [{"field": field, "message": str(m)} for field, messages in detail.items()
                for m in (messages if isinstance(messages, list) else [messages])]
    return [{"field": "", "message": str(m)} for m in (detail if isinstance(detail, list) else [detail])]


def problem_exception_handler(exc, context):
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, (ValidationError, InvalidParameter)):
        body = {"type": "validation-failed", "title": "Invalid search parameters", "status": 422,
                "errors": _flatten(exc.detail)}
        return Response(body, status=422, content_type="application/problem+json")
    response.data = {"type": "error", "title": str(exc.detail), "status": response.status_code}
    response.content_type = "application/problem+json"
    return response
