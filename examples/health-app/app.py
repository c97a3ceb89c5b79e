"""A tiny app for the show scenario: handle(path) -> (status, body)."""


def index():
    return 200, {"hello": "world"}


ROUTES = {"/": index}


def handle(path):
    route = ROUTES.get(path)
    if route is None:
        return 404, {"error": "not found"}
    return route()
