"""Privacy: pseudonymised exports (``--pseudonymise``) and the erasure of a person or of
submissions from every destination (``exporter forget``).

* ``personal``: what of a person the data holds (the users' personal columns and their copies in
  the submissions' metadata), written once for both;
* ``spec``: the ``--pseudonymise`` SPEC syntax, checked before anything is created;
* ``pseudonymise``: the stage the pipeline runs between the source and the destinations;
* ``forget``: the request, the per-destination ``Eraser`` protocol and the audit trail;
* ``cli``: the command-line options and the ``forget`` command.
"""
