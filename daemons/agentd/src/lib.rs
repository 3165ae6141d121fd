//! Agent supervision: specs, processes, restarts with backoff, resource limits, stop/freeze/kill
