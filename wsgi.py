import os

from werkzeug.serving import WSGIRequestHandler

from web import create_app
from web.heap import settle

app = create_app()
settle(app)  # freeze the built heap: the cycle collector then skips it on every request (web/heap.py)


class _Handler(WSGIRequestHandler):
    def version_string(self) -> str:  # no "Werkzeug/x Python/y" banner in the Server header
        return "XiangFlow"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), debug=False, request_handler=_Handler)
