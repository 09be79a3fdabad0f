from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """Return the client's address as the WSGI server saw it.

    Behind a reverse proxy, configure the proxy to set REMOTE_ADDR (e.g.
    gunicorn's --forwarded-allow-ips) rather than trusting X-Forwarded-For here.
    """
    return request.META.get("REMOTE_ADDR") or None
