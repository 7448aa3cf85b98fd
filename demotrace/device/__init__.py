"""On the device, around capture: agent wiring, the spool, uploads, pause and control, device state."""
