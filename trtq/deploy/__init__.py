"""Jetson deployment over SSH (`trtq deploy`): probe the device, push the models, build and
benchmark there, pull the results and write the report. Entry point: `deploy.deploy`."""
