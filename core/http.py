from django.http import HttpRequest

# Paths that answer in the API's JSON shape, errors included.
API_PREFIXES = ("/api/", "/oauth/", "/.well-known/", "/auth/")


def client_ip(request: HttpRequest) -> str | None:
    """Return the client's address as the WSGI server saw it.

    Behind a reverse proxy, configure the proxy to set REMOTE_ADDR (e.g.
    gunicorn's --forwarded-allow-ips) rather than trusting X-Forwarded-For here.
    """
    return request.META.get("REMOTE_ADDR") or None


def is_api_request(request: HttpRequest) -> bool:
    """Return whether the request is for the API (JSON errors) rather than a page."""
    return request.path.startswith(API_PREFIXES)
