"""Content guardrails: detectors, the profile compiler, input/output scanning, streams.

A team's profiles compile at policy load into one `Guards` (one combined scan per
side); the pipeline asks `guard_input` / `guard_output` for a typed decision and
turns a block into `ContentPolicyViolation`. Scanning is pure; the classifier is
the one adapter that does I/O.
"""
