"""Pure helpers with no bpy and no add-on state: the add-on's error, the wire protocol, the job kinds and
their parameters, mesh/PNG packing, sketch and photo input. Imports nothing else of the add-on."""
