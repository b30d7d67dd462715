"""The production manager: runs a production's workers and gateway as supervised OS processes.

``supervisor``  Supervisor: start order, restarts with back-off, run-time enable/disable/update
``unit``        Unit: one supervised OS process (an item's worker, the gateway, a helper)
``control``     the control socket: its server in the manager and the one client of it
``status``      what ``status`` shows: per item its state, pids, queue depth and counts
``state``       run-time enable/disable overrides (``state.json``), applied to a production
``rundir``      where a production's pid file, socket, state and logs live under ``HIE_HOME``

Imports go one way: ``supervisor`` uses the others; none of them imports ``supervisor``.
"""
