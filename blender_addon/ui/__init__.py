"""What the artist sees: the sidebar panels, the scene's properties, the add-on preferences and their
"Install backend" / weights section. Imports `operators`, `engine` and `core`, never the reverse."""
