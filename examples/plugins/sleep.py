#!/usr/bin/env python3
"""A Posthorn delivery plugin: the example service of wazo-webhookd's documentation, which is
"very busy and sleeps for N seconds". Posthorn runs it once per attempt with
{"config": ..., "event": ..., "delivery": {"id": ..., "attempt": ...}} as JSON on stdin.

Exit 0: delivered. Exit 75: retry later. Anything else: failed for good. What it prints to stdout
and stderr (16 KiB of each) goes to the attempt log.
"""
import json
import sys
import time

request = json.load(sys.stdin)
tired = request["config"]["sleep_time"]
time.sleep(tired)
print(f"slept {tired} s for {request['event']['name']} (delivery {request['delivery']['id']})")
