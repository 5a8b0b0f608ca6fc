"""uvicorn's fast HTTP protocol (httptools) with a bound on the request head.

h11, uvicorn's pure-Python parser, refuses a request line and headers over 16 KiB; httptools buffers
them without a limit, so one client could make a worker hold gigabytes of headers. This protocol
counts the bytes of each request's head as they arrive and answers 431 past `MAX_HEAD` (held at most
that plus one read).
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: the longest request line and headers accepted (huggingface_hub sends well under 2 KiB)
MAX_HEAD = 64 * 1024
_REFUSAL = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 33\r\nconnection: close\r\n\r\nrequest line and headers too long"
)


class BoundedHead(HttpToolsProtocol):
    #: bytes of the current request's head received so far; -1 once its headers are complete
    _head = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head = 0

    def on_headers_complete(self) -> None:
        self._head = -1
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head >= 0:  # the head is still incomplete after this chunk (a body is never counted)
            self._head += len(data)
            if self._head > MAX_HEAD and not self.transport.is_closing():
                self.transport.write(_REFUSAL)
                self.transport.close()
