"""The link to the backend: its process (`supervisor`), the connection (`client`, `curve`), the state machine
and jobs (`runtime`, `jobs`), the installer and weights manager, and the two modules that touch bpy: `settings`
(the preferences as plain settings) and `session` (the add-on's one runtime and its timer). Imports only
`core`; everything but `settings` and `session` runs without bpy."""
