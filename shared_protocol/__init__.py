"""The Atelier wire protocol: message dataclasses, arrays, limits and the multipart codec.

Standard library only: the Blender add-on imports this package, and so does the backend.

    frames = to_frames(Submit(job="j1", kind="render", params={"views": 8, "size": 256}, mesh=payload))
    msg = from_frames(frames)   # raises ProtocolError with a readable message
"""

from shared_protocol.arrays import DTYPES, Array
from shared_protocol.errors import ProtocolError
from shared_protocol.fields import is_job_id, is_name
from shared_protocol.limits import PROTOCOL_VERSION
from shared_protocol.mesh import IDENTITY, MeshPayload
from shared_protocol.messages import (
    MESSAGE_TYPES, Accepted, Cancel, Error, Hello, Message, Progress, Release, Result, Shutdown, Status, Submit,
    Welcome,
)
from shared_protocol.wire import from_frames, to_frames

__all__ = [
    "Accepted", "Array", "Cancel", "DTYPES", "Error", "Hello", "IDENTITY", "MESSAGE_TYPES", "Message",
    "MeshPayload", "PROTOCOL_VERSION", "Progress", "ProtocolError", "Release", "Result", "Shutdown", "Status",
    "Submit", "Welcome", "from_frames", "is_job_id", "is_name", "to_frames",
]
