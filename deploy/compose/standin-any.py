#!/usr/bin/python3
"""standin-any.py - tools/standin/standin.py (the SendGrid/Twilio stand-in) listening on every
address instead of 127.0.0.1: the compose test's standin service
(deploy/compose/docker-compose.test.yml), which the notification container reaches by its
service name and the host's integration suite through a published port. Same environment as
standin.py; the two files lie side by side in the image (deploy/compose/Dockerfile.test).
"""
import importlib.util
import os
import signal
import sys

_spec = importlib.util.spec_from_file_location(
    "standin", os.path.join(os.path.dirname(os.path.abspath(__file__)), "standin.py"))
standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(standin)


class AnyAddress(standin.Server):
    def __init__(self, address, handler):
        super().__init__(("0.0.0.0", address[1]), handler)


standin.Server = AnyAddress
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # docker-compose stop: exit 0
standin.main()
