"""The server's registrations of other layers' hooks: importing this module makes them.

`release` drops the cached CLIPs (`backend.models.release_all`); `welcome` names the weights present
(`backend.models.present_weights`). They are registered here, on the server's side, so the model layer never
imports the server. Job handlers that cache their own models register theirs beside them (handlers/).
"""

from backend.models import present_weights, release_all
from backend.server.hooks import register_models_lister, register_release_hook

register_release_hook("models.clip", release_all)
register_models_lister("models.weights", present_weights)
