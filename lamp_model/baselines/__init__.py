"""The paper's baselines (Table 1), on the same base components as LAMP.

Each module turns SD v1.x components (the motion world's base, or SD v1.4) and a prompt
into uint8 videos [f, h, w, 3] like `LampPipeline`, so one metrics stage scores them all.
"""
