"""The device side: agent, spool, collector client, uploads, pause and control, policy sync, tray."""
