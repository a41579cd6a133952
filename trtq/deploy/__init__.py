"""Jetson deployment over SSH: push, build on the device, benchmark, pull the report back.
Arrives with the deployment issue."""
